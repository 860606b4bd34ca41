//! Test filter `properties.wasm`: reading the host's standard properties
//! (attributes), setting custom ones and reading them back.
//!
//! Configuration: `get=<dotted.path>[:<encoding>]` entries (`;`-separated)
//! choose the properties read in the request-headers phase; without any, a
//! default list of the common Envoy attributes is read. `rget=` entries, in the
//! same form, are read in the response-headers phase. The encoding says how the
//! value's bytes are rendered (Envoy's serialisation of each attribute type):
//!
//! | suffix | rendered as |
//! |---|---|
//! | (none) | the bytes as text (strings) |
//! | `:int` | a 64-bit little-endian integer, in decimal (int, uint) |
//! | `:bool` | one byte: `true` / `false` |
//! | `:hex` | the bytes in hex |
//! | `:time` | `recent` for a little-endian int64 of nanoseconds since the epoch within a minute of the host clock, else the number |
//! | `:dur` | `short` for a little-endian int64 of nanoseconds from 0 to a minute, else the number |
//! | `:keys` | a serialised map's keys, comma-separated, in order |
//! | `:uuid` | `uuid` for text shaped like a UUID (8-4-4-4-12 hex digits), else the text |
//! | `:len` | the number of bytes (a value's shape where the value itself differs between hosts) |
//! | `:map` | `map` for a well-formed serialised map (empty included) |
//! | `:host` | the text before its last `:` (an address without its port) |
//!
//! A value of the wrong shape for its encoding renders as `bad-<encoding>:<length>`.
//!
//! Each property read becomes a response header `x-prop-<path with '.' and '_'
//! as '-'>` and, for `get=` entries, a request header of the same name (sent
//! upstream; not with the entry `upstream=quiet`): the rendered value, `none`
//! when the host has no such property, or `error:<Status>`.
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

use filter_common::{Config, hex, status_name};
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
    /// Read in the response-headers phase (`rget=`).
    response_paths: Rc<Vec<String>>,
    /// `upstream=quiet`: the values are not sent upstream as request headers.
    quiet: bool,
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
        self.response_paths = Rc::new(config.all("rget").map(str::to_string).collect());
        self.quiet = config.get("upstream") == Some("quiet");
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
            response_paths: self.response_paths.clone(),
            quiet: self.quiet,
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
    response_paths: Rc<Vec<String>>,
    quiet: bool,
    seen: Vec<(String, String)>,
    /// The root context's set_property outcome, reported as a response header.
    root_set: Option<Rc<str>>,
}

impl Properties {
    /// Reads one `path[:encoding]` entry and renders it as header text.
    fn read(&self, entry: &str) -> (String, String) {
        let (path, encoding) = match entry.rsplit_once(':') {
            Some((p, e)) if ENCODINGS.contains(&e) => (p, e),
            _ => (entry, ""),
        };
        let value = match self.get_property_checked(path) {
            Ok(Some(bytes)) => render(&bytes, encoding, self.get_current_time()),
            Ok(None) => "none".to_string(),
            Err(status) => format!("error:{}", status_name(status)),
        };
        (header_name(path), value)
    }

    fn get_property_checked(
        &self,
        path: &str,
    ) -> Result<Option<Vec<u8>>, proxy_wasm::types::Status> {
        proxy_wasm::hostcalls::get_property(split_path(path))
    }
}

const ENCODINGS: &[&str] = &[
    "int", "bool", "hex", "time", "dur", "keys", "uuid", "len", "map", "host",
];

/// The bytes of a property rendered as `encoding` says (see the module docs).
fn render(bytes: &[u8], encoding: &str, now: std::time::SystemTime) -> String {
    let bad = || format!("bad-{encoding}:{}", bytes.len());
    let int = || <[u8; 8]>::try_from(bytes).ok().map(i64::from_le_bytes);
    match encoding {
        "" => String::from_utf8_lossy(bytes).into_owned(),
        "int" => int().map_or_else(bad, |n| n.to_string()),
        "bool" => match bytes {
            [0] => "false".into(),
            [1] => "true".into(),
            _ => bad(),
        },
        "hex" => hex(bytes),
        "time" => int().map_or_else(bad, |n| {
            let now = now
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
            if (now - n).abs() < 60_000_000_000 {
                "recent".into()
            } else {
                n.to_string()
            }
        }),
        "dur" => int().map_or_else(bad, |n| {
            if (0..60_000_000_000).contains(&n) {
                "short".into()
            } else {
                n.to_string()
            }
        }),
        "keys" => map_keys(bytes).unwrap_or_else(bad),
        "map" => map_keys(bytes).map_or_else(bad, |_| "map".into()),
        "len" => bytes.len().to_string(),
        "host" => {
            let text = String::from_utf8_lossy(bytes);
            text.rsplit_once(':')
                .map_or_else(|| text.to_string(), |(host, _)| host.to_string())
        }
        "uuid" => {
            let text = String::from_utf8_lossy(bytes);
            let groups: Vec<usize> = text.split('-').map(str::len).collect();
            let hex_only = text.chars().all(|c| c == '-' || c.is_ascii_hexdigit());
            if hex_only && groups == [8, 4, 4, 4, 12] {
                "uuid".into()
            } else {
                text.into_owned()
            }
        }
        _ => bad(),
    }
}

/// The keys of a map in the proxy-wasm serialisation (count, sizes, NUL-ended
/// data), comma-separated.
fn map_keys(bytes: &[u8]) -> Option<String> {
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0)?;
    let mut data = 4 + count.checked_mul(8)?;
    let mut keys = Vec::with_capacity(count);
    for i in 0..count {
        let (k, v) = (u32_at(4 + i * 8)?, u32_at(8 + i * 8)?);
        keys.push(String::from_utf8_lossy(bytes.get(data..data + k)?).into_owned());
        data += k + 1 + v + 1;
    }
    (data == bytes.len()).then(|| keys.join(","))
}

/// `request.headers.user-agent` -> `["request", "headers", "user-agent"]`.
fn split_path(path: &str) -> Vec<&str> {
    if let Some(name) = path.strip_prefix("request.headers.") {
        vec!["request", "headers", name]
    } else if let Some(name) = path.strip_prefix("response.headers.") {
        vec!["response", "headers", name]
    } else if let Some(name) = path.strip_prefix("response.trailers.") {
        vec!["response", "trailers", name]
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
            let read = self.read(entry);
            self.seen.push(read);
        }
        self.set_property(vec!["wasmgate", "test", "custom"], Some(b"custom-value"));
        let (_, readback) = self.read("wasmgate.test.custom");
        self.seen.push(("x-prop-custom-readback".into(), readback));
        let (_, missing) = self.read("no.such.property");
        self.seen.push(("x-prop-missing".into(), missing));
        if !self.quiet {
            for (name, value) in &self.seen {
                self.set_http_request_header(name, Some(value));
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in &self.seen {
            self.set_http_response_header(name, Some(value));
        }
        let (_, code) = self.read("response.code:int");
        self.set_http_response_header("x-prop-response-code", Some(&code));
        for entry in self.response_paths.iter() {
            let (name, value) = self.read(entry);
            self.set_http_response_header(&name, Some(&value));
        }
        let (_, custom) = self.read("wasmgate.test.custom");
        self.set_http_response_header("x-prop-custom-in-response", Some(&custom));
        if let Some(outcome) = &self.root_set {
            self.set_http_response_header("x-prop-root-set", Some(outcome));
        }
        Action::Continue
    }
}
