//! secret-header: a proxy-wasm filter that injects a shared-secret header into requests on
//! their way to a backend, configured like Kong's request-transformer.
//!
//! Build: `cargo build --release --target wasm32-wasip1 -p secret-header` gives
//! `target/wasm32-wasip1/release/secret_header.wasm`, which runs unchanged in Envoy, Istio,
//! Kong (filter chains) and wasmgate.
//!
//! # Layout
//! - [`config`]: plugin configuration (JSON) → a validated [`config::Plan`], with
//!   `{vault://env/NAME}` references resolved at configure time.
//! - [`transform`]: the pure function that applies a plan to a request's headers.
//! - [`verify`]: the backend's check of a shared secret (constant time, several values).
//! - [`sign`] and [`verify_signature`]: HTTP Message Signatures (RFC 9421, HMAC-SHA256),
//!   on the gateway's side and on the backend's; [`signature_base`] builds what both sign,
//!   [`sfv`] reads and writes the structured fields they travel in.
//! - [`crypto`]: SHA-256, HMAC-SHA256, constant-time comparison and base64.
//! - [`error`]: configuration errors that name the key and entry, never a secret.
//! - this file: the proxy-wasm wiring only, compiled for wasm32. The plan is parsed once in
//!   `on_configure` and shared with every request through an `Rc`. A request runs
//!   `verify`, then `verify_signature` (a refused request gets a local 401 and goes no
//!   further), then [`transform::apply`] straight against the host's header map, then
//!   `sign`. When a signature covers `content-digest`, or `sign` adds one, the request is
//!   paused until the whole body has arrived. Counters are proxy-wasm metrics, defined in
//!   `on_configure`.

pub mod config;
pub mod crypto;
pub mod error;
pub mod serialized_map;
pub mod sfv;
pub mod sign;
pub mod signature_base;
pub mod transform;
pub mod verify;
pub mod verify_signature;

#[cfg(target_arch = "wasm32")]
mod wiring {
    use crate::config::Plan;
    use crate::crypto::{self, Digest32};
    use crate::transform::{self, Headers};
    use crate::{serialized_map, sign, verify, verify_signature};
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
    use std::cell::RefCell;
    use std::rc::Rc;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        proxy_wasm::set_root_context(|_| Box::new(Root { shared: None }));
    }}

    /// The plugin: holds the plan of the last successful `on_configure`.
    struct Root {
        shared: Option<Rc<Shared>>,
    }

    /// What every request of one configuration reads.
    struct Shared {
        plan: Plan,
        metrics: Metrics,
        /// Where `sign` builds its values (one request runs at a time in a VM).
        sign_buffers: RefCell<sign::Buffers>,
    }

    /// Counter ids by name, defined once per configuration (a host hands back the same id
    /// for a name it already knows).
    #[derive(Default)]
    struct Metrics(Vec<(&'static str, u32)>);

    impl Metrics {
        fn define(&mut self, names: impl IntoIterator<Item = &'static str>) {
            for name in names {
                match hostcalls::define_metric(MetricType::Counter, name) {
                    Ok(id) => self.0.push((name, id)),
                    Err(status) => log::warn!("secret-header: metric {name}: {status:?}"),
                }
            }
        }

        fn increment(&self, name: &str) {
            if let Some((_, id)) = self.0.iter().find(|(n, _)| *n == name) {
                let _ = hostcalls::increment_metric(*id, 1);
            }
        }
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _size: usize) -> bool {
            let config = self.get_plugin_configuration().unwrap_or_default();
            match Plan::parse(&config, &|name| std::env::var(name).ok()) {
                Ok(plan) => {
                    log::info!("secret-header: configured: {}", plan.summary());
                    let mut metrics = Metrics::default();
                    if plan.verify.is_some() {
                        metrics.define([verify::ACCEPTED_METRIC]);
                        metrics.define(verify::Rejection::ALL.map(verify::Rejection::metric));
                    }
                    if plan.verify_signature.is_some() {
                        metrics.define([verify_signature::ACCEPTED_METRIC]);
                        metrics.define(
                            verify_signature::Rejection::ALL
                                .map(verify_signature::Rejection::metric),
                        );
                    }
                    if plan.sign.is_some() {
                        metrics.define([sign::SIGNED_METRIC]);
                    }
                    self.shared = Some(Rc::new(Shared {
                        plan,
                        metrics,
                        sign_buffers: RefCell::default(),
                    }));
                    true
                }
                Err(e) => {
                    log::error!("secret-header: invalid configuration: {e}");
                    false
                }
            }
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Request {
                shared: self.shared.clone(),
                body_digest: None,
                sign_at_end: false,
            }))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    /// One request.
    struct Request {
        shared: Option<Rc<Shared>>,
        /// The SHA-256 a verified signature says the body has, checked at the body's end.
        body_digest: Option<Digest32>,
        /// `sign` with `content_digest` waits for the whole body.
        sign_at_end: bool,
    }

    impl Context for Request {}

    impl HttpContext for Request {
        fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
            let Some(shared) = self.shared.clone() else {
                // Hosts do not run a plugin whose on_configure failed; if one does anyway,
                // fail closed rather than forward the request without its secret.
                self.send_http_response(500, vec![], Some(b"secret-header: not configured\n"));
                return Action::Pause;
            };
            let (plan, metrics) = (&shared.plan, &shared.metrics);
            if let Some(verify) = &plan.verify {
                let mut headers = HostHeaders(self);
                match verify.check(&headers.values(&verify.header)) {
                    Ok(()) => {
                        metrics.increment(verify::ACCEPTED_METRIC);
                        if verify.strip {
                            headers.remove(&verify.header);
                        }
                    }
                    Err(reason) => {
                        metrics.increment(reason.metric());
                        self.unauthorized(&verify.challenge);
                        return Action::Pause;
                    }
                }
            }
            if let Some(check) = &plan.verify_signature {
                let mut headers = HostHeaders(self);
                match check.check(&headers.pairs(), self.now()) {
                    Ok(verified) => {
                        if check.strip {
                            headers.remove("signature");
                            headers.remove("signature-input");
                        }
                        match verified.content_digest {
                            Some(digest) if end_of_stream => {
                                if let Err(reason) = verify_signature::check_body(&digest, b"") {
                                    metrics.increment(reason.metric());
                                    self.unauthorized(verify_signature::CHALLENGE);
                                    return Action::Pause;
                                }
                                metrics.increment(verify_signature::ACCEPTED_METRIC);
                            }
                            Some(digest) => self.body_digest = Some(digest),
                            None => metrics.increment(verify_signature::ACCEPTED_METRIC),
                        }
                    }
                    Err(reason) => {
                        metrics.increment(reason.metric());
                        self.unauthorized(verify_signature::CHALLENGE);
                        return Action::Pause;
                    }
                }
            }
            transform::apply(plan, &mut HostHeaders(self));
            if let Some(signer) = &plan.sign {
                if signer.content_digest && !end_of_stream {
                    self.sign_at_end = true;
                } else {
                    let body: &[u8] = b"";
                    self.sign(&shared, signer, signer.content_digest.then_some(body));
                }
            }
            if self.body_digest.is_some() || self.sign_at_end {
                // Nothing goes upstream until the body has been seen (in Envoy and wasmgate
                // this needs allow_on_headers_stop_iteration, or body callbacks never come).
                return Action::Pause;
            }
            Action::Continue
        }

        fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
            if self.body_digest.is_none() && !self.sign_at_end {
                return Action::Continue;
            }
            if !end_of_stream {
                return Action::Pause;
            }
            self.finish_body(body_size)
        }

        fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
            if self.body_digest.is_none() && !self.sign_at_end {
                return Action::Continue;
            }
            self.finish_body(usize::MAX)
        }
    }

    impl Request {
        /// The Unix time in seconds, from the host's clock (the hostcall itself: the SDK's
        /// `get_current_time` goes through `SystemTime` arithmetic on every request).
        fn now(&self) -> u64 {
            let mut nanos = 0u64;
            // SAFETY: the host writes one u64 into `nanos`, which outlives the call.
            let status = unsafe { proxy_get_current_time_nanoseconds(&mut nanos) };
            if status != 0 {
                return 0;
            }
            nanos / 1_000_000_000
        }

        /// The whole body has arrived: check its digest, then sign, then let it go.
        fn finish_body(&mut self, body_size: usize) -> Action {
            let Some(shared) = self.shared.clone() else {
                return Action::Continue;
            };
            let metrics = &shared.metrics;
            let body = self.get_http_request_body(0, body_size).unwrap_or_default();
            if let Some(digest) = self.body_digest.take() {
                match verify_signature::check_body(&digest, &body) {
                    Ok(()) => metrics.increment(verify_signature::ACCEPTED_METRIC),
                    Err(reason) => {
                        metrics.increment(reason.metric());
                        self.sign_at_end = false;
                        self.unauthorized(verify_signature::CHALLENGE);
                        return Action::Pause;
                    }
                }
            }
            if std::mem::take(&mut self.sign_at_end)
                && let Some(signer) = &shared.plan.sign
            {
                self.sign(&shared, signer, Some(&body));
            }
            Action::Continue
        }

        /// Signs the request: its headers read in one hostcall, the values built in the
        /// plugin's buffers.
        fn sign(&self, shared: &Shared, signer: &sign::Sign, body: Option<&[u8]>) {
            let nonce = signer.nonce.then(random_nonce);
            let nonce = nonce.as_deref();
            let created = self.now();
            let mut fresh = sign::Buffers::default();
            let mut reused = shared.sign_buffers.try_borrow_mut();
            let buffers = reused.as_deref_mut().unwrap_or(&mut fresh);
            let map = request_header_map();
            let mut headers = HostHeaders(self);
            match serialized_map::pairs(&map) {
                Some(pairs) => {
                    signer.apply_to(&mut headers, pairs, body, created, nonce, buffers);
                }
                None => {
                    let pairs = self.get_http_request_headers_bytes();
                    let pairs = pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_slice()));
                    signer.apply_to(&mut headers, pairs, body, created, nonce, buffers);
                }
            }
            shared.metrics.increment(sign::SIGNED_METRIC);
        }

        /// The one answer every rejection gets: 401, a challenge, and a body that says nothing.
        fn unauthorized(&self, challenge: &str) {
            self.send_http_response(
                401,
                vec![
                    ("www-authenticate", challenge),
                    ("content-type", "text/plain"),
                    ("cache-control", "no-store"),
                ],
                Some(verify::REJECTION_BODY),
            );
        }
    }

    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        fn proxy_get_header_map_pairs(map_type: u32, data: *mut *mut u8, size: *mut usize) -> u32;
        fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    }

    /// The request's header map as the host serializes it (see [`serialized_map`]); empty
    /// when the host has none to give.
    fn request_header_map() -> Vec<u8> {
        const HTTP_REQUEST_HEADERS: u32 = 0;
        let (mut data, mut size) = (std::ptr::null_mut(), 0);
        // SAFETY: the host writes a pointer and a size into the two locals; the pointer is null
        // or from `proxy_on_memory_allocate(size)` (the SDK's allocator: a boxed slice of
        // `size` bytes, which the host has filled), so this Vec owns exactly that allocation,
        // as the SDK's own readers take it.
        unsafe {
            let status = proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS, &mut data, &mut size);
            if status != 0 || data.is_null() {
                return Vec::new();
            }
            Vec::from_raw_parts(data, size, size)
        }
    }

    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        fn random_get(buf: *mut u8, len: usize) -> u16;
    }

    /// 16 random bytes from the host (WASI `random_get`), base64.
    fn random_nonce() -> String {
        let mut bytes = [0u8; 16];
        // SAFETY: the pointer and length describe `bytes`, which outlives the call.
        let errno = unsafe { random_get(bytes.as_mut_ptr(), bytes.len()) };
        if errno != 0 {
            // Unique enough for a nonce (nobody relies on it being secret): time and address.
            let seed = format!("{:?}{:p}", std::time::SystemTime::now(), &bytes);
            bytes.copy_from_slice(&crypto::sha256(seed.as_bytes())[..16]);
        }
        crypto::base64_encode(&bytes)
    }

    /// The host's request header map; each method is one hostcall (`values` fetches the map).
    struct HostHeaders<'a>(&'a Request);

    impl Headers for HostHeaders<'_> {
        fn contains(&self, name: &str) -> bool {
            self.0.get_http_request_header_bytes(name).is_some()
        }

        fn values(&self, name: &str) -> Vec<Vec<u8>> {
            self.0
                .get_http_request_headers_bytes()
                .into_iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
                .collect()
        }

        fn first(&self, name: &str) -> Option<Vec<u8>> {
            self.0.get_http_request_header_bytes(name)
        }

        fn remove(&mut self, name: &str) {
            self.0.set_http_request_header_bytes(name, None);
        }

        fn add(&mut self, name: &str, value: &[u8]) {
            self.0.add_http_request_header_bytes(name, value);
        }

        fn replace(&mut self, name: &str, value: &[u8]) {
            self.0.set_http_request_header_bytes(name, Some(value));
        }

        fn pairs(&self) -> Vec<(String, Vec<u8>)> {
            self.0.get_http_request_headers_bytes()
        }
    }
}
