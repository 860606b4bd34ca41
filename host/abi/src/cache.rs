//! On-disk cache of compiled modules.
//!
//! A module is compiled once per (module bytes, engine configuration): the compiled artifact
//! is stored as `<sha256 of the bytes>-<engine tag>.cwasm` and deserialized on the next load,
//! which skips Cranelift entirely (a restart or a second plugin using the same `.wasm`).
//! Writes go to a temporary file renamed into place, so a reader never sees a partial file.
//! Entries are read into memory rather than mapped, so a file changed on disk later can never
//! fault the process (SIGBUS on a truncated mapping). The cache is best-effort: an unreadable or stale
//! entry is recompiled and replaced, and a failed write only costs the next load a compile.
//!
//! The directory must be trusted like the binary itself: loading a precompiled artifact runs
//! its machine code (the same trust Envoy's `allow_precompiled` asks for).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::{Engine, Module};

/// A directory of compiled modules for one engine configuration.
#[derive(Debug)]
pub(crate) struct ModuleCache {
    dir: PathBuf,
    engine_tag: String,
}

impl ModuleCache {
    /// Uses (and creates) `dir`.
    pub(crate) fn new(dir: &Path, engine: &Engine) -> std::io::Result<ModuleCache> {
        std::fs::create_dir_all(dir)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ModuleCache {
            dir: dir.to_path_buf(),
            engine_tag: format!("{:016x}", hasher.finish()),
        })
    }

    fn path_for(&self, digest: &[u8; 32]) -> PathBuf {
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}-{}.cwasm", self.engine_tag))
    }

    /// The compiled module for `bytes` (whose SHA-256 is `digest`), from the cache or freshly
    /// compiled (and then stored).
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &[u8; 32],
    ) -> wasmtime::Result<Module> {
        let path = self.path_for(digest);
        if let Ok(data) = std::fs::read(&path) {
            // SAFETY: the bytes were written by `store` below from `Module::serialize`, into a
            // directory the operator trusts like the binary (see module docs). wasmtime checks
            // the engine configuration and rejects artifacts of another one.
            match unsafe { Module::deserialize(engine, &data) } {
                Ok(module) => return Ok(module),
                Err(err) => tracing::warn!(
                    path = %path.display(),
                    error = %err,
                    "module cache entry unusable; recompiling"
                ),
            }
        }
        let module = Module::new(engine, bytes)?;
        if let Err(err) = self.store(&path, &module) {
            tracing::warn!(path = %path.display(), error = %err, "cannot write module cache entry");
        }
        Ok(module)
    }

    fn store(&self, path: &Path, module: &Module) -> wasmtime::Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let data = module.serialize()?;
        let tmp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("module"),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&tmp, &data)?;
        if let Err(err) = std::fs::rename(&tmp, path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(err.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_load_comes_from_the_cache() {
        let dir =
            std::env::temp_dir().join(format!("wasmgate-abi-cache-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let engine = Engine::default();
        let cache = ModuleCache::new(&dir, &engine).unwrap();
        let wat = br#"(module (func (export "f") (result i32) (i32.const 7)))"#;
        let digest = crate::modules::digest(wat);
        cache.load_or_compile(&engine, wat, &digest).unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "exactly one entry, no temporary files left");
        let path = files[0].path();
        let written = std::fs::metadata(&path).unwrap().modified().unwrap();

        let module = cache.load_or_compile(&engine, wat, &digest).unwrap();
        assert!(module.get_export("f").is_some());
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            written
        );

        // A corrupt entry is recompiled and replaced, not trusted.
        std::fs::write(&path, b"garbage").unwrap();
        let module = cache.load_or_compile(&engine, wat, &digest).unwrap();
        assert!(module.get_export("f").is_some());
        assert_ne!(std::fs::read(&path).unwrap(), b"garbage");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
