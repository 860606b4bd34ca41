//! The scenarios: every filter configuration the suite runs through both hosts, the requests
//! sent through each, the fields compared, and the differences expected on purpose (each one
//! explained in `envoy-example/README.md`, "Deliberate differences from Envoy").

use super::{Deliberate, Kind, Refusal, Request, Scenario, Setup};

/// The secret the `secret_header` setups read from `BACKEND_TOKEN`.
pub const TOKEN: &str = "diff-token-9c41e7";

// Deliberate differences; each has an entry in envoy-example/README.md.
const OWN_REQUEST_HEADERS: &str = "each proxy adds its own request headers before the filters run";
const OWN_RESPONSE_HEADERS: &str =
    "Envoy adds x-envoy-upstream-service-time before the response filters run";
const BODY_CHUNKS: &str =
    "body callbacks follow the transport's chunks; Envoy's HTTP/1 codec ends with an empty one";
const FAILED_FILTER_BODY: &str = "wasmgate's 503 for a failed filter names the filter";
const FAIL_OPEN_REQUEST: &str = "on_error: allow lets the failing request through without the filter; Envoy's FAIL_OPEN fails it";
const FRESH_INSTANCE: &str =
    "after a fault wasmgate replaces the instance, Envoy's VM stays failed";
const CUSTOM_PROPERTY: &str = "wasmgate keeps a property the filter sets per stream and readable back; \
     Envoy stores only declared filter state, so a multi-segment custom path reads back nothing";
const ROUTE_NAME: &str = "wasmgate's routes always have a name; the example's Envoy route has none";
const SHORT_NAMES: &str = "wasmgate also answers the short cluster_name older Envoys had; Envoy 1.40 only xds.cluster_name";
const NO_VIRTUAL_HOSTS: &str = "wasmgate has no virtual hosts";
const UPSTREAM_LOCAL: &str =
    "wasmgate does not track the local address of a pooled upstream connection";
const ROOT_PROPERTY: &str = "wasmgate lets the root context set properties (kept per instance); \
     Envoy answers NotFound outside a stream";

/// Every setup, in the order the tests run them.
pub fn setups() -> Vec<Setup> {
    vec![
        secret_set(),
        secret_operations(),
        kong_guide(),
        headers(),
        bodies(),
        local_response(),
        properties(),
        properties_root(),
        properties_attributes(),
        http_call(),
        shared_data(),
        trap(),
        trap_fail_open(),
        trap_in_response(),
        trap_grpc(),
        postpone(),
        postpone_respond(),
        assemblyscript(),
    ]
}

/// The setup called `name`.
///
/// # Panics
/// When there is none (a test named after a setup that was removed).
pub fn setup(name: &str) -> Setup {
    setups()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no differential setup named {name:?}"))
}

fn scenario(name: &'static str, request: Request) -> Scenario {
    Scenario {
        name,
        request,
        client_headers: &[],
        backend_headers: &[],
        deliberate: Vec::new(),
    }
}

impl Scenario {
    fn client(mut self, names: &'static [&'static str]) -> Scenario {
        self.client_headers = names;
        self
    }

    fn backend(mut self, names: &'static [&'static str]) -> Scenario {
        self.backend_headers = names;
        self
    }

    /// A deliberate difference (explained in the README).
    fn differs(
        mut self,
        field: &'static str,
        envoy: &'static str,
        wasmgate: &'static str,
        reason: &'static str,
    ) -> Scenario {
        self.deliberate.push(Deliberate {
            kind: Kind::Deliberate,
            field,
            envoy,
            wasmgate,
            reason,
        });
        self
    }

    /// Only wasmgate forwarded the request (a `GET` of `path` with no body) to the backend:
    /// the count and every recorded field differ, Envoy's side missing.
    fn only_wasmgate_forwarded(self, path: &'static str, reason: &'static str) -> Scenario {
        self.differs("backend.requests", "0", "1", reason)
            .differs("backend.method", "<missing>", "GET", reason)
            .differs("backend.version", "<missing>", "HTTP/1.1", reason)
            .differs("backend.path", "<missing>", path, reason)
            .differs("backend.body", "<missing>", "", reason)
    }

    /// The same difference in several fields.
    fn differs_in(
        self,
        fields: &[&'static str],
        envoy: &'static str,
        wasmgate: &'static str,
        reason: &'static str,
    ) -> Scenario {
        fields
            .iter()
            .fold(self, |s, f| s.differs(f, envoy, wasmgate, reason))
    }
}

/// The example's own configuration: `set` with a secret from the environment.
fn secret_set() -> Setup {
    const BACKEND: &[&str] = &["authorization"];
    let spoofed = [
        ("authorization", "Bearer spoof-1"),
        ("authorization", "Bearer spoof-2"),
    ];
    Setup {
        name: "secret_set",
        wasm: "secret_header",
        config: r#"{"set": {"headers": ["Authorization:Bearer {vault://env/BACKEND_TOKEN}"]}}"#,
        token: Some(TOKEN),
        fail_open: false,
        scenarios: vec![
            scenario("no client copy", Request::get("/v1/items?x=1", &[])).backend(BACKEND),
            scenario("two spoofed copies", Request::get("/", &spoofed)).backend(BACKEND),
            scenario(
                "two spoofed copies over h2",
                Request::get("/h2", &spoofed).h2(),
            )
            .backend(BACKEND),
            scenario(
                "a POST body passes untouched",
                Request::post("/upload", "payload"),
            )
            .backend(BACKEND),
            scenario("headers each proxy adds", Request::get("/", &[]))
                .backend(&[
                    "x-forwarded-for",
                    "x-forwarded-proto",
                    "x-forwarded-host",
                    "x-envoy-expected-rq-timeout-ms",
                    "via",
                ])
                .differs(
                    "backend.header.x-forwarded-for",
                    "<absent>",
                    "127.0.0.1",
                    OWN_REQUEST_HEADERS,
                )
                .differs(
                    "backend.header.x-forwarded-host",
                    "<absent>",
                    "example.test",
                    OWN_REQUEST_HEADERS,
                )
                .differs(
                    "backend.header.x-envoy-expected-rq-timeout-ms",
                    "15000",
                    "<absent>",
                    OWN_REQUEST_HEADERS,
                ),
        ],
    }
}

/// Every operation at once, each on its own header.
fn secret_operations() -> Setup {
    const BACKEND: &[&str] = &[
        "x-remove",
        "x-old",
        "x-new",
        "x-replace",
        "x-add",
        "x-append",
        "x-api-key",
    ];
    let all = [
        ("x-remove", "r1"),
        ("x-remove", "r2"),
        ("x-old", "moved"),
        ("x-new", "overwritten"),
        ("x-replace", "c1"),
        ("x-replace", "c2"),
        ("x-add", "client"),
        ("x-append", "client"),
        ("x-api-key", "spoof-1"),
        ("x-api-key", "spoof-2"),
    ];
    Setup {
        name: "secret_operations",
        wasm: "secret_header",
        config: concat!(
            r#"{"remove":{"headers":["x-remove"]},"rename":{"headers":["x-old:x-new"]},"#,
            r#""replace":{"headers":["x-replace:replaced"]},"add":{"headers":["x-add:added"]},"#,
            r#""append":{"headers":["x-append:appended"]},"#,
            r#""set":{"headers":["x-api-key:{vault://env/backend-token}"]}}"#
        ),
        token: Some(TOKEN),
        fail_open: false,
        scenarios: vec![
            scenario("no client headers", Request::get("/", &[])).backend(BACKEND),
            scenario("every header sent by the client", Request::get("/", &all)).backend(BACKEND),
            scenario(
                "every header sent by the client over h2",
                Request::get("/", &all).h2(),
            )
            .backend(BACKEND),
        ],
    }
}

/// Kong's guide configuration, unchanged.
fn kong_guide() -> Setup {
    const BACKEND: &[&str] = &["authorization"];
    Setup {
        name: "kong_guide",
        wasm: "secret_header",
        config: r#"{"add":{"headers":["Authorization:Bearer my-secret-key"]}}"#,
        token: None,
        fail_open: false,
        scenarios: vec![
            scenario("adds the header", Request::get("/v1/items", &[])).backend(BACKEND),
            scenario(
                "a client copy wins",
                Request::get("/", &[("authorization", "Bearer client")]),
            )
            .backend(BACKEND),
        ],
    }
}

/// `headers.wasm`: reads and writes of the request and response header maps.
fn headers() -> Setup {
    const BACKEND: &[&str] = &[
        "x-seen-num-headers",
        "x-seen-pairs",
        "x-seen-pairs-bytes",
        "x-seen-path",
        "x-seen-method",
        "x-seen-missing",
        "x-seen-empty",
        "x-seen-bin",
        "x-seen-multi",
        "x-seen-eos",
        "x-replace-me",
        "x-remove-me",
        "x-remove-me-too",
        "x-multi",
        "x-bytes-set",
        "x-bytes-add",
        "x-set-map",
        "x-map-was-set",
        "x-kept",
    ];
    const CLIENT: &[&str] = &[
        "x-resp-seen-status",
        "x-resp-seen-pairs",
        "x-resp-seen-status-len",
        "x-resp-seen-pairs-bytes",
        "x-resp-added",
        "x-req-path",
        "content-type",
    ];
    let sent = [
        ("x-replace-me", "original"),
        ("x-remove-me", "gone"),
        ("x-remove-me-too", "gone"),
        ("x-multi", "one"),
        ("x-multi", "two"),
        ("x-empty", ""),
        ("x-bin", "b\u{ef}n"),
        ("x-kept", "kept"),
    ];
    let counted = |s: Scenario, envoy, wasmgate| {
        s.backend(BACKEND)
            .client(CLIENT)
            .differs_in(
                &[
                    "backend.header.x-seen-num-headers",
                    "backend.header.x-seen-pairs",
                    "backend.header.x-seen-pairs-bytes",
                ],
                envoy,
                wasmgate,
                OWN_REQUEST_HEADERS,
            )
            .differs_in(
                &[
                    "client.header.x-resp-seen-pairs",
                    "client.header.x-resp-seen-pairs-bytes",
                ],
                "5",
                "4",
                OWN_RESPONSE_HEADERS,
            )
    };
    Setup {
        name: "headers",
        wasm: "headers",
        config: "",
        token: None,
        fail_open: false,
        // Envoy shows the filter x-forwarded-proto and x-request-id, wasmgate x-forwarded-for,
        // -proto and -host: one header more. Envoy's response also has
        // x-envoy-upstream-service-time: one header more.
        scenarios: vec![
            counted(
                scenario("reads and writes", Request::get("/read?q=1", &sent)),
                "14",
                "15",
            ),
            counted(
                scenario(
                    "reads and writes over h2",
                    Request::get("/read-h2", &sent).h2(),
                ),
                "14",
                "15",
            ),
            counted(
                scenario("with a body", Request::post("/post", "body")),
                "7",
                "8",
            ),
            counted(
                scenario(
                    "set_map with strings",
                    Request::get("/map", &[("x-set-map", "strings"), ("x-kept", "k")]),
                ),
                "8",
                "9",
            ),
            counted(
                scenario(
                    "set_map with bytes",
                    Request::get("/map", &[("x-set-map", "bytes"), ("x-kept", "k")]),
                ),
                "8",
                "9",
            ),
        ],
    }
}

/// `bodies.wasm`: buffering and rewriting request and response bodies.
fn bodies() -> Setup {
    const CLIENT: &[&str] = &[
        "x-req-body-len",
        "x-req-body-chunks",
        "x-req-body-peek",
        "x-req-body-final",
    ];
    const LARGE: &[&str] = &["x-req-body-len", "x-req-body-peek", "x-req-body-final"];
    const BACKEND: &[&str] = &["content-length", "transfer-encoding"];
    Setup {
        name: "bodies",
        wasm: "bodies",
        config: "",
        token: None,
        fail_open: false,
        scenarios: vec![
            scenario(
                "wraps the request body",
                Request::post("/wrap", "hello world"),
            )
            .client(CLIENT)
            .backend(BACKEND)
            .differs("client.header.x-req-body-chunks", "2", "1", BODY_CHUNKS),
            scenario(
                "replaces the request body",
                Request::post("/replace", "please REPLACE me"),
            )
            .client(CLIENT)
            .backend(BACKEND)
            .differs("client.header.x-req-body-chunks", "2", "1", BODY_CHUNKS),
            scenario("over h2", Request::post("/h2", "over h2").h2())
                .client(CLIENT)
                .backend(BACKEND),
            scenario("no request body", Request::get("/empty", &[]))
                .client(CLIENT)
                .backend(BACKEND),
            // How many chunks 32 KiB arrive in depends on the network; the result does not.
            scenario("a 32 KiB body", Request::post_large("/large", 32 * 1024))
                .client(LARGE)
                .backend(BACKEND),
            scenario(
                "a 32 KiB body over h2",
                Request::post_large("/large-h2", 32 * 1024).h2(),
            )
            .client(LARGE)
            .backend(BACKEND),
        ],
    }
}

/// `local_response.wasm`: answers from each phase, and a closed stream.
fn local_response() -> Setup {
    const CLIENT: &[&str] = &[
        "x-local",
        "content-type",
        "content-length",
        "x-upstream-status",
    ];
    // The echoed body's length depends on the headers each proxy adds.
    const PASSED: &[&str] = &["x-local", "content-type", "x-upstream-status"];
    Setup {
        name: "local_response",
        wasm: "local_response",
        config: "",
        token: None,
        fail_open: false,
        scenarios: vec![
            scenario("403 from request headers", Request::get("/deny", &[])).client(CLIENT),
            scenario("403 over h2", Request::get("/deny-h2", &[]).h2()).client(CLIENT),
            scenario("204 without a body", Request::get("/empty", &[])).client(CLIENT),
            scenario(
                "413 from the request body",
                Request::post("/deny-body", "0123456789"),
            )
            .client(CLIENT),
            scenario(
                "418 replaces the upstream response",
                Request::get("/replace-response", &[]),
            )
            .client(CLIENT),
            scenario(
                "403 to a gRPC request",
                Request {
                    method: "POST",
                    path: "/deny-grpc",
                    headers: vec![("content-type", "application/grpc"), ("te", "trailers")],
                    body: bytes::Bytes::from_static(b"\0\0\0\0\0"),
                    h2: true,
                },
            )
            .client(&["content-type", "grpc-status", "grpc-message", "x-local"]),
            scenario("passes otherwise", Request::get("/pass", &[])).client(PASSED),
            scenario("closed stream", Request::get("/reset", &[])).client(CLIENT),
        ],
    }
}

/// `postpone.wasm`: a request paused in its headers and resumed from `on_tick` through
/// `set_effective_context` (the Go SDK's `postpone_requests`); Envoy answers it as soon as
/// the tick comes, and so must wasmgate (issue 14).
fn postpone() -> Setup {
    Setup {
        name: "postpone",
        wasm: "postpone",
        config: "period_ms=50",
        token: None,
        fail_open: false,
        scenarios: vec![
            scenario("resumed by a tick", Request::get("/later", &[]))
                .client(&["x-postpone"])
                .backend(&["x-postponed"]),
            scenario(
                "not postponed",
                Request::get("/now", &[("x-postpone", "no")]),
            )
            .client(&["x-postpone"])
            .backend(&["x-postponed"]),
        ],
    }
}

/// `postpone.wasm` answering the paused request from `on_tick` with a local response.
fn postpone_respond() -> Setup {
    Setup {
        name: "postpone_respond",
        wasm: "postpone",
        config: "period_ms=50;then=respond",
        token: None,
        fail_open: false,
        scenarios: vec![
            scenario("answered by a tick", Request::get("/later", &[]))
                .client(&["x-answered-by", "content-type"]),
        ],
    }
}

/// `as_headers.wasm`, built with AssemblyScript on `@solo-io/proxy-runtime` (issue 14):
/// header edits in both directions and a local response.
fn assemblyscript() -> Setup {
    const CLIENT: &[&str] = &["x-as-response", "x-as-denied", "content-type"];
    Setup {
        name: "assemblyscript",
        wasm: "as_headers",
        config: "from-config",
        token: None,
        fail_open: false,
        scenarios: vec![
            scenario("headers edited", Request::get("/hello", &[]))
                .client(CLIENT)
                .backend(&["x-as-config", "x-as-path"]),
            scenario("answered locally", Request::get("/deny", &[])).client(CLIENT),
        ],
    }
}

/// `properties.wasm`: the attributes both hosts offer.
fn properties() -> Setup {
    const CLIENT: &[&str] = &[
        "x-prop-request-path",
        "x-prop-request-url-path",
        "x-prop-request-host",
        "x-prop-request-scheme",
        "x-prop-request-method",
        "x-prop-request-query",
        "x-prop-request-headers-user-agent",
        "x-prop-request-useragent",
        "x-prop-source-address",
        "x-prop-destination-address",
        "x-prop-plugin-name",
        "x-prop-plugin-root-id",
        "x-prop-plugin-vm-id",
        // x-prop-custom-readback is left out: it holds the same as x-prop-custom-in-response,
        // and as a request header it would show up a second time in the echoed body.
        "x-prop-missing",
        "x-prop-response-code",
        "x-prop-custom-in-response",
    ];
    Setup {
        name: "properties",
        wasm: "properties",
        config: concat!(
            "get=request.path;get=request.url_path;get=request.host;get=request.scheme;",
            "get=request.method;get=request.query;get=request.headers.user-agent;",
            "get=request.useragent;get=source.address;get=destination.address;",
            "get=plugin_name;get=plugin_root_id;get=plugin_vm_id"
        ),
        token: None,
        fail_open: false,
        scenarios: vec![
            scenario(
                "request attributes",
                Request::get("/a/b?x=1&y=2", &[("user-agent", "diff-agent/1")]),
            )
            .client(CLIENT)
            .differs(
                "client.header.x-prop-custom-in-response",
                "none",
                "custom-value",
                CUSTOM_PROPERTY,
            ),
            scenario(
                "over h2",
                Request::get("/h2?z", &[("user-agent", "diff-agent/2")]).h2(),
            )
            .client(CLIENT)
            .differs(
                "client.header.x-prop-custom-in-response",
                "none",
                "custom-value",
                CUSTOM_PROPERTY,
            ),
        ],
    }
}

/// `properties.wasm` with `root=set`: the root context sets a property in `on_configure`
/// (through the raw import, so Envoy's NotFound does not make the SDK panic) and every
/// stream reports the status it got.
fn properties_root() -> Setup {
    Setup {
        name: "properties_root",
        wasm: "properties",
        config: "root=set;get=request.path",
        token: None,
        fail_open: false,
        scenarios: vec![
            scenario("root context set_property", Request::get("/root", &[]))
                .client(&["x-prop-root-set", "x-prop-request-path"])
                .differs(
                    "client.header.x-prop-root-set",
                    "error:NotFound",
                    "ok",
                    ROOT_PROPERTY,
                ),
        ],
    }
}

/// Every attribute of the runtime's property table (`wasmgate_abi::properties`), read in the
/// request phase (`get=`) or the response phase (`rget=`) with the encoding of its type.
const ATTRIBUTES: &[&str] = &[
    "get=request.path",
    "get=request.url_path",
    "get=request.host",
    "get=request.scheme",
    "get=request.method",
    "get=request.referer",
    "get=request.useragent",
    "get=request.query",
    "get=request.id:uuid",
    "get=request.protocol",
    "get=request.time:time",
    "get=request.duration:dur",
    "get=request.size:int",
    "get=request.total_size:len",
    "get=request.headers:map",
    "get=request.headers.x-custom",
    "get=source.address",
    "get=source.port:int",
    "get=destination.address",
    "get=destination.port:int",
    "get=connection.id:len",
    "get=connection.mtls:bool",
    "get=connection.requested_server_name",
    "get=connection.tls_version",
    "get=connection.subject_local_certificate",
    "get=connection.subject_peer_certificate",
    "get=connection.dns_san_local_certificate",
    "get=connection.dns_san_peer_certificate",
    "get=connection.uri_san_local_certificate",
    "get=connection.uri_san_peer_certificate",
    "get=connection.sha256_peer_certificate_digest",
    "get=connection.termination_details",
    "get=connection.transport_failure_reason",
    "get=connection_id:len",
    "get=xds.route_name",
    "get=xds.cluster_name",
    "get=xds.virtual_host_name",
    "get=route_name",
    "get=cluster_name",
    "get=plugin_name",
    "get=plugin_root_id",
    "get=plugin_vm_id",
    "get=listener_direction:int",
    "get=node:hex",
    "rget=response.code_details",
    "rget=response.flags:int",
    "rget=response.grpc_status:int",
    "rget=response.headers:map",
    "rget=response.headers.content-type",
    "rget=response.trailers:map",
    "rget=response.size:int",
    "rget=response.total_size:len",
    "rget=upstream.address",
    "rget=upstream.port:int",
    "rget=upstream.tls_version",
    "rget=upstream.local_address:host",
    "rget=upstream.transport_failure_reason",
    "rget=upstream.request_attempt_count:int",
];

/// The response headers the `properties` filter writes for `entries`.
fn prop_headers(entries: &[&str]) -> &'static [&'static str] {
    let names: Vec<&'static str> = entries
        .iter()
        .map(|e| {
            let path = e.split_once('=').map_or(*e, |(_, p)| p);
            let path = path.split_once(':').map_or(path, |(p, _)| p);
            &*format!("x-prop-{}", path.replace(['.', '_'], "-")).leak()
        })
        .collect();
    names.leak()
}

/// `properties.wasm` reading every attribute of the table: the property conformance test.
/// Values that differ between any two proxies (connection ids, sizes that count each
/// proxy's own headers, maps) are compared by shape (`:len`, `:map`), times and ids by form
/// (`:time`, `:dur`, `:uuid`); addresses and ports become placeholders.
fn properties_attributes() -> Setup {
    let config = format!("upstream=quiet;{}", ATTRIBUTES.join(";"));
    let differences = |s: Scenario| {
        s.client(prop_headers(ATTRIBUTES))
            .differs(
                "client.header.x-prop-route-name",
                "none",
                "diff",
                ROUTE_NAME,
            )
            .differs(
                "client.header.x-prop-xds-route-name",
                "none",
                "diff",
                ROUTE_NAME,
            )
            .differs(
                "client.header.x-prop-cluster-name",
                "none",
                "backend",
                SHORT_NAMES,
            )
            .differs(
                "client.header.x-prop-xds-virtual-host-name",
                "backend",
                "none",
                NO_VIRTUAL_HOSTS,
            )
            .differs(
                "client.header.x-prop-upstream-local-address",
                "127.0.0.1",
                "none",
                UPSTREAM_LOCAL,
            )
    };
    Setup {
        name: "properties_attributes",
        wasm: "properties",
        config: config.leak(),
        token: None,
        fail_open: false,
        scenarios: vec![
            differences(scenario(
                "every attribute",
                Request::get(
                    "/attr/x?k=v",
                    &[
                        ("user-agent", "diff-agent/3"),
                        ("referer", "http://ref.test/"),
                        ("x-custom", "c1"),
                    ],
                ),
            )),
            differences(scenario(
                "every attribute over h2",
                Request::get("/attr/h2", &[("x-custom", "c2")]).h2(),
            )),
        ],
    }
}

/// `http_call.wasm`: a call to the `auth` upstream/cluster that pauses the request.
fn http_call() -> Setup {
    const CLIENT: &[&str] = &["x-auth-status", "x-call-error", "content-type"];
    const BACKEND: &[&str] = &[
        "x-auth-status",
        "x-auth-body",
        "x-auth-header",
        "x-auth-trailers",
        "x-original-path",
        "authorization",
        "host",
        "content-length",
    ];
    Setup {
        name: "http_call",
        wasm: "http_call",
        config: "upstream=auth;path=/auth;timeout_ms=1000",
        token: None,
        fail_open: false,
        scenarios: vec![
            scenario(
                "allowed",
                Request::get("/allowed?q=1", &[("authorization", "Bearer user")]),
            )
            .client(CLIENT)
            .backend(BACKEND),
            scenario("allowed over h2", Request::get("/allowed-h2", &[]).h2())
                .client(CLIENT)
                .backend(BACKEND),
            scenario("denied by the auth service", Request::get("/deny-me", &[]))
                .client(CLIENT)
                .backend(BACKEND),
            scenario("a call that times out", Request::get("/slow", &[]))
                .client(CLIENT)
                .backend(BACKEND),
            scenario(
                "upstream that refuses connections",
                Request::get("/x", &[("x-call-upstream", "dead")]),
            )
            .client(CLIENT)
            .backend(BACKEND),
            scenario(
                "unknown upstream",
                Request::get("/x", &[("x-call-upstream", "nosuch")]),
            )
            .client(CLIENT)
            .backend(BACKEND),
            scenario(
                "call without :authority",
                Request::get("/x", &[("x-call-no-authority", "1")]),
            )
            .client(CLIENT)
            .backend(BACKEND),
        ],
    }
}

/// `shared_data.wasm`: the key-value store with compare-and-swap, over several requests.
fn shared_data() -> Setup {
    const CLIENT: &[&str] = &[
        "x-shared-before",
        "x-shared-set",
        "x-shared-after",
        "x-shared-stale",
        "x-shared-missing",
        "x-shared-missing-cas",
        "x-shared-blind",
        "x-shared-write-result",
        "x-shared-now",
    ];
    Setup {
        name: "shared_data",
        wasm: "shared_data",
        config: "key=counter",
        token: None,
        fail_open: false,
        scenarios: vec![
            scenario("first", Request::get("/1", &[])).client(CLIENT),
            scenario("second", Request::get("/2", &[])).client(CLIENT),
            scenario(
                "seeds a value",
                Request::get("/3", &[("x-shared-write", "counter=41")]),
            )
            .client(CLIENT),
            scenario("after the seed", Request::get("/4", &[]).h2()).client(CLIENT),
        ],
    }
}

/// `hostile.wasm`: a filter that traps on demand.
fn trap() -> Setup {
    const BACKEND: &[&str] = &["x-hostile-ok"];
    Setup {
        name: "trap",
        wasm: "hostile",
        config: "",
        token: None,
        fail_open: false,
        scenarios: vec![
            scenario("before the trap", Request::get("/1", &[])).backend(BACKEND),
            scenario(
                "trap in request headers",
                Request::get("/trap", &[("x-hostile", "trap")]),
            )
            .backend(BACKEND)
            .differs(
                "client.body",
                "",
                "filter diff/0 failed\n",
                FAILED_FILTER_BODY,
            ),
            scenario("after the trap", Request::get("/2", &[]))
                .backend(BACKEND)
                .differs("status", "503", "200", FRESH_INSTANCE)
                .differs(
                    "client.body",
                    "",
                    r#"{"body":"","headers":[],"method":"GET","path":"/2","version":"HTTP/1.1"}"#,
                    FRESH_INSTANCE,
                )
                .only_wasmgate_forwarded("/2", FRESH_INSTANCE)
                .differs(
                    "backend.header.x-hostile-ok",
                    "<missing>",
                    "1",
                    FRESH_INSTANCE,
                ),
        ],
    }
}

/// `hostile.wasm` failing open: the failed request goes on without the filter.
fn trap_fail_open() -> Setup {
    const BACKEND: &[&str] = &["x-hostile-ok"];
    Setup {
        name: "trap_fail_open",
        wasm: "hostile",
        config: "",
        token: None,
        fail_open: true,
        scenarios: vec![
            scenario("before the trap", Request::get("/1", &[])).backend(BACKEND),
            scenario(
                "trap in request headers",
                Request::get("/trap", &[("x-hostile", "trap")]),
            )
            .backend(BACKEND)
            .differs("status", "503", "200", FAIL_OPEN_REQUEST)
            .differs(
                "client.body",
                "",
                r#"{"body":"","headers":[],"method":"GET","path":"/trap","version":"HTTP/1.1"}"#,
                FAIL_OPEN_REQUEST,
            )
            .only_wasmgate_forwarded("/trap", FAIL_OPEN_REQUEST)
            .differs(
                "backend.header.x-hostile-ok",
                "<missing>",
                "<absent>",
                FAIL_OPEN_REQUEST,
            ),
            // Envoy skips its failed VM from now on; wasmgate runs a fresh instance.
            scenario("after the trap", Request::get("/2", &[]))
                .backend(BACKEND)
                .differs(
                    "backend.header.x-hostile-ok",
                    "<absent>",
                    "1",
                    FRESH_INSTANCE,
                ),
        ],
    }
}

/// `hostile.wasm` trapping in the response phase of every request.
fn trap_in_response() -> Setup {
    const BACKEND: &[&str] = &["x-hostile-ok"];
    Setup {
        name: "trap_in_response",
        wasm: "hostile",
        config: "trap@response_headers",
        token: None,
        fail_open: false,
        scenarios: vec![
            scenario("first request", Request::get("/1", &[]))
                .backend(BACKEND)
                .differs(
                    "client.body",
                    "",
                    "filter diff/0 failed\n",
                    FAILED_FILTER_BODY,
                ),
            // Envoy's VM is dead: 503 before the backend. wasmgate's fresh instance forwards the
            // request and fails again in the response phase: 503 after the backend.
            scenario("second request", Request::get("/2", &[]))
                .backend(BACKEND)
                .differs(
                    "client.body",
                    "",
                    "filter diff/0 failed\n",
                    FAILED_FILTER_BODY,
                )
                .only_wasmgate_forwarded("/2", FRESH_INSTANCE)
                .differs(
                    "backend.header.x-hostile-ok",
                    "<missing>",
                    "1",
                    FRESH_INSTANCE,
                ),
        ],
    }
}

/// Configurations of `secret_header.wasm` that both hosts must refuse to start with.
pub fn refusals() -> Vec<Refusal> {
    vec![
        Refusal {
            name: "not JSON, with a literal secret",
            wasm: "secret_header",
            config: r#"{"add":{"headers":["Authorization:Bearer my-secret-key"]"#,
            error: "secret-header: invalid configuration: ",
            secret: Some("my-secret-key"),
        },
        Refusal {
            name: "a variable not given to the module",
            wasm: "secret_header",
            config: r#"{"set":{"headers":["Authorization:Bearer {vault://env/NOT_PASSED}"]}}"#,
            error: "environment variable NOT_PASSED is not set",
            secret: None,
        },
        Refusal {
            name: "a header the proxy manages",
            wasm: "secret_header",
            config: r#"{"set":{"headers":["host:evil.example"]}}"#,
            error: "secret-header: invalid configuration: set.headers[0]",
            secret: None,
        },
    ]
}

/// `hostile.wasm` trapping on a gRPC request: both answer as gRPC clients
/// read errors, `200` with `grpc-status: 14` (UNAVAILABLE) and no body.
fn trap_grpc() -> Setup {
    const CLIENT: &[&str] = &["content-type", "grpc-status"];
    let grpc = |path| Request {
        method: "POST",
        path,
        headers: vec![
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("x-hostile", "trap"),
        ],
        body: bytes::Bytes::from_static(b"\0\0\0\0\0"),
        h2: true,
    };
    Setup {
        name: "trap_grpc",
        wasm: "hostile",
        config: "",
        token: None,
        fail_open: false,
        scenarios: vec![scenario("trap on a gRPC request", grpc("/pkg.Svc/Call")).client(CLIENT)],
    }
}
