//! Configuration. In ABI 0.2.x the VM and plugin configurations are buffers
//! (VM_CONFIGURATION, PLUGIN_CONFIGURATION, see `buffers`); this file resolves them, and links
//! the 0.1.0-era `proxy_get_configuration` for older modules.

use wasmtime::{Caller, Linker};

use super::{HostResult, status};
use crate::memory::return_value;
use crate::state::HostState;
use crate::status::{Status, buffer};

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_get_configuration", proxy_get_configuration)?;
    Ok(())
}

/// The configuration buffer of type `ty`, if it is one.
pub(crate) fn config_buffer(state: &HostState, ty: u32) -> Option<&[u8]> {
    let spec = &state.plugin.spec;
    match ty {
        buffer::VM_CONFIGURATION => Some(&spec.vm_config),
        buffer::PLUGIN_CONFIGURATION => Some(&spec.plugin_config),
        _ => None,
    }
}

/// 0.1.0 `proxy_get_configuration(**data, *size)`: the plugin configuration.
fn proxy_get_configuration(
    mut caller: Caller<'_, HostState>,
    ptr_out: u32,
    len_out: u32,
) -> HostResult {
    let len = caller.data().plugin.spec.plugin_config.len();
    return_value(&mut caller, len, ptr_out, len_out, |state, dst| {
        let src = &state.plugin.spec.plugin_config;
        dst.copy_from_slice(src);
        true
    })?;
    status(Status::Ok)
}
