//! Compiled modules shared by content: one [`Compiled`] (the wasmtime `Module`, linked as an
//! `InstancePre`, with its validated exports) per distinct `.wasm`, keyed by the SHA-256 of its
//! bytes. Twenty routes running the same filter, or a reload that keeps it, compile it once
//! and map its machine code once; every plugin holds an `Arc` of the entry, and the table
//! keeps only `Weak` references, so a module no configuration uses any more is freed with its
//! last plugin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};
use wasmtime::InstancePre;

use crate::plugin::AbiVersion;
use crate::state::HostState;

/// A module compiled, validated and linked: what every plugin of these bytes shares.
pub(crate) struct Compiled {
    pub(crate) pre: InstancePre<HostState>,
    pub(crate) abi: AbiVersion,
    pub(crate) allocator: &'static str,
}

/// The SHA-256 of a module's bytes.
pub(crate) type Digest32 = [u8; 32];

/// The digest of `bytes`.
pub(crate) fn digest(bytes: &[u8]) -> Digest32 {
    Sha256::digest(bytes).into()
}

/// The runtime's table of compiled modules.
#[derive(Default)]
pub(crate) struct Modules {
    map: Mutex<HashMap<Digest32, Weak<Compiled>>>,
}

impl Modules {
    /// The entry for `digest`, or `build`'s result stored under it. The lock is held while
    /// `build` runs, so two loads of the same bytes at once compile once.
    pub(crate) fn get_or_build<E>(
        &self,
        digest: Digest32,
        build: impl FnOnce() -> Result<Compiled, E>,
    ) -> Result<Arc<Compiled>, E> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = map.get(&digest).and_then(Weak::upgrade) {
            return Ok(found);
        }
        let compiled = Arc::new(build()?);
        // Forget modules nothing uses any more.
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(digest, Arc::downgrade(&compiled));
        Ok(compiled)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::{load, spec};

    #[test]
    fn same_bytes_compile_once() {
        let body = "(func (export \"marker_for_same_bytes_compile_once\"))";
        let a = load(spec("a", "", body)).unwrap();
        let b = load(spec("b", "", body)).unwrap();
        assert!(std::sync::Arc::ptr_eq(&a.inner.compiled, &b.inner.compiled));
        assert!(wasmtime::Module::same(
            a.inner.compiled.pre.module(),
            b.inner.compiled.pre.module()
        ));
        // Other bytes, another module.
        let c = load(spec("c", "", "(func (export \"other_marker_xyz\"))")).unwrap();
        assert!(!std::sync::Arc::ptr_eq(
            &a.inner.compiled,
            &c.inner.compiled
        ));
        // Gone with its last plugin.
        let weak = std::sync::Arc::downgrade(&c.inner.compiled);
        drop(c);
        assert!(weak.upgrade().is_none());
    }
}
