//! Test filter `properties.wasm`: reading the host's standard properties
//! (attributes), setting custom ones and reading them back.
//!
//! Configuration: `get=<dotted.path>[:int]` entries (`;`-separated) choose the
//! properties read in the request-headers phase; without any, a default list
//! of the common Envoy attributes is read. `:int` decodes the value as a
//! 64-bit little-endian integer (how Envoy encodes ports, ids and codes).
//!
//! Each property read becomes a request header (sent upstream) and a response
//! header `x-prop-<path with '.' as '-'>`: the value as text, `none` when the
//! host has no such property, or `error:<Status>`.
//!
//! It also sets the custom property `wasmgate.test.custom` to `custom-value`
//! and writes the read-back value to `x-prop-custom-readback`, and reads
//! `no.such.property` (expected `none`) into `x-prop-missing`. In the response
//! phase, `response.code` is read into `x-prop-response-code`.
//!
//! With the entry `root=set`, the root context also sets `wasmgate.test.root` to
//! `root-value` in `on_configure` and stores what it reads back in shared data
//! `properties.root` (`none` if nothing). It calls `proxy_set_property` directly
//! rather than through the SDK, which panics on any status but Ok: Envoy answers
//! NotFound outside a stream, and a panic in `on_configure` would make it refuse
//! the module. The status it got (`ok` or `error:<Status>`) goes to shared data
//! `properties.root_set` and to every stream as response header `x-prop-root-set`.
//! Without the entry the root context sets nothing, so the module loads in Envoy.

use filter_common::{Config, status_name};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;

const DEFAULT_PATHS: &[&str] = &[
    "request.path",
    "request.url_path",
    "request.host",
    "request.scheme",
    "request.method",
    "request.protocol",
    "request.headers.user-agent",
    "source.address",
    "source.port:int",
    "destination.address",
    "destination.port:int",
    "plugin_name",
    "plugin_root_id",
    "plugin_vm_id",
];

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    paths: Rc<Vec<String>>,
    /// Outcome of the root context's set_property (`root=set`), if it tried.
    root_set: Option<Rc<str>>,
}

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    /// The ABI's `proxy_set_property`, returning the raw status (the SDK's wrapper panics
    /// on anything but Ok).
    #[link_name = "proxy_set_property"]
    fn raw_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
}

/// Sets a property through the raw import; `ok` or `error:<Status>`.
fn try_set_property(path: &[&str], value: &[u8]) -> String {
    // The ABI's path encoding: segments separated by NUL.
    let path = path.join("\0");
    // SAFETY: both pointers and lengths describe live buffers for the whole call; the host
    // only reads them.
    let status =
        unsafe { raw_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) };
    let name = match status {
        0 => return "ok".to_string(),
        1 => "NotFound",
        2 => "BadArgument",
        3 => "SerializationFailure",
        4 => "ParseFailure",
        7 => "Empty",
        8 => "CasMismatch",
        10 => "InternalFailure",
        other => return format!("error:{other}"),
    };
    format!("error:{name}")
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = Config::parse(self.get_plugin_configuration().as_deref());
        let mut paths: Vec<String> = config.all("get").map(str::to_string).collect();
        if paths.is_empty() {
            paths = DEFAULT_PATHS.iter().map(|p| p.to_string()).collect();
        }
        self.paths = Rc::new(paths);
        if config.get("root") == Some("set") {
            // A property set by the root context, read back, kept in shared data.
            let outcome = try_set_property(&["wasmgate", "test", "root"], b"root-value");
            let root = proxy_wasm::hostcalls::get_property(vec!["wasmgate", "test", "root"])
                .ok()
                .flatten()
                .unwrap_or_else(|| b"none".to_vec());
            proxy_wasm::hostcalls::set_shared_data("properties.root", Some(&root), None).ok();
            proxy_wasm::hostcalls::set_shared_data(
                "properties.root_set",
                Some(outcome.as_bytes()),
                None,
            )
            .ok();
            self.root_set = Some(Rc::from(outcome));
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Properties {
            paths: self.paths.clone(),
            seen: Vec::new(),
            root_set: self.root_set.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Properties {
    paths: Rc<Vec<String>>,
    seen: Vec<(String, String)>,
    /// The root context's set_property outcome, reported as a response header.
    root_set: Option<Rc<str>>,
}

impl Properties {
    /// Reads one property and renders it as header text.
    fn read(&self, path: &str, as_int: bool) -> String {
        match self.get_property_checked(path) {
            Ok(Some(bytes)) if as_int => match <[u8; 8]>::try_from(bytes.as_slice()) {
                Ok(le) => i64::from_le_bytes(le).to_string(),
                Err(_) => format!("bad-int:{}", bytes.len()),
            },
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(None) => "none".to_string(),
            Err(status) => format!("error:{}", status_name(status)),
        }
    }

    fn get_property_checked(
        &self,
        path: &str,
    ) -> Result<Option<Vec<u8>>, proxy_wasm::types::Status> {
        proxy_wasm::hostcalls::get_property(split_path(path))
    }
}

/// `request.headers.user-agent` -> `["request", "headers", "user-agent"]`.
fn split_path(path: &str) -> Vec<&str> {
    if let Some(name) = path.strip_prefix("request.headers.") {
        vec!["request", "headers", name]
    } else if let Some(name) = path.strip_prefix("response.headers.") {
        vec!["response", "headers", name]
    } else {
        path.split('.').collect()
    }
}

fn header_name(path: &str) -> String {
    format!("x-prop-{}", path.replace(['.', '_'], "-"))
}

impl Context for Properties {}

impl HttpContext for Properties {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let paths = self.paths.clone();
        for entry in paths.iter() {
            let (path, as_int) = match entry.strip_suffix(":int") {
                Some(p) => (p, true),
                None => (entry.as_str(), false),
            };
            let value = self.read(path, as_int);
            self.seen.push((header_name(path), value));
        }
        self.set_property(vec!["wasmgate", "test", "custom"], Some(b"custom-value"));
        let readback = self.read("wasmgate.test.custom", false);
        self.seen.push(("x-prop-custom-readback".into(), readback));
        let missing = self.read("no.such.property", false);
        self.seen.push(("x-prop-missing".into(), missing));
        for (name, value) in &self.seen {
            self.set_http_request_header(name, Some(value));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in &self.seen {
            self.set_http_response_header(name, Some(value));
        }
        let code = self.read("response.code", true);
        self.set_http_response_header("x-prop-response-code", Some(&code));
        let custom = self.read("wasmgate.test.custom", false);
        self.set_http_response_header("x-prop-custom-in-response", Some(&custom));
        if let Some(outcome) = &self.root_set {
            self.set_http_response_header("x-prop-root-set", Some(outcome));
        }
        Action::Continue
    }
}
