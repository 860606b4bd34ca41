//! Unit tests of parsing, validation and redaction.

use super::*;

fn parse(yaml: &str) -> Result<Config, ConfigErrors> {
    Config::parse(yaml, "test.yaml")
}

const GOOD: &str = r#"
listeners:
  - address: 127.0.0.1:0
upstreams:
  backend:
    url: http://127.0.0.1:9
    connect_timeout: 500ms
routes:
  - name: api
    match: { host: API.example.com, path_prefix: /v1/ }
    upstream: backend
"#;

#[test]
fn parses_a_good_file() {
    let c = parse(GOOD).unwrap().validate().unwrap();
    assert_eq!(c.routes[0].name, "api");
    assert_eq!(
        c.upstreams["backend"].connect_timeout,
        Duration::from_millis(500)
    );
    assert_eq!(c.upstreams["backend"].timeout, Duration::from_secs(30));
}

#[test]
fn json_is_accepted() {
    let json = r#"{"listeners":[{"address":"127.0.0.1:0"}],
        "upstreams":{"b":{"url":"http://127.0.0.1:9"}},
        "routes":[{"name":"r","match":{},"upstream":"b"}]}"#;
    Config::parse(json, "c.json").unwrap().validate().unwrap();
}

#[test]
fn unknown_key_names_line_and_key() {
    let bad = GOOD.replace(
        "connect_timeout: 500ms",
        "connect_timeout: 500ms\n    retry: 3",
    );
    let e = parse(&bad).unwrap_err().to_string();
    assert!(
        e.starts_with("test.yaml: line 8 column 5: upstreams.backend: "),
        "{e}"
    );
    assert!(e.contains("unknown field `retry`"), "{e}");
}

#[test]
fn bad_duration_is_explained() {
    let bad = GOOD.replace("500ms", "500");
    let e = parse(&bad).unwrap_err().to_string();
    assert!(e.contains("needs a unit"), "{e}");
}

#[test]
fn collects_every_semantic_error() {
    let bad = r#"
listeners:
  - address: localhost
upstreams:
  backend:
    url: ftp://x
routes:
  - name: a
    upstream: nowhere
  - name: a
    match: { path_prefix: v1 }
"#;
    let errors = parse(bad).unwrap().validate().unwrap_err();
    let text = errors.to_string();
    for needle in [
        "listeners[0].address: \"localhost\" is not an ip:port",
        "upstreams.backend.url: \"ftp://x\" must start with http:// or https://",
        "routes[0] \"a\".match: missing",
        "routes[0] \"a\".upstream: unknown upstream \"nowhere\" (defined: backend)",
        "routes[1] \"a\".name: another route has the same name",
        "routes[1] \"a\".match.path_prefix: \"v1\" must start with '/'",
        "routes[1] \"a\".upstream: missing",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(
        errors
            .messages()
            .iter()
            .all(|m| m.starts_with("test.yaml: "))
    );
}

#[test]
fn redaction_keeps_names_hides_values() {
    let mut c = parse(GOOD).unwrap();
    c.routes[0].filters.push(FilterConfig {
        wasm: "f.wasm".into(),
        name: None,
        config: Some(
            serde_json::json!({"add": {"headers": ["Authorization:Bearer s3cret"]}, "n": 5}),
        ),
        vm_config: Some(serde_json::json!("raw s3cret")),
        root_id: None,
        env: vec!["TOKEN".into()],
        on_error: OnError::Deny,
        allow_on_headers_stop_iteration: false,
        env_defaults: BTreeMap::new(),
    });
    let shown = serde_json::to_string(&c.redacted()).unwrap();
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("Authorization:<redacted>"), "{shown}");
    assert!(shown.contains("TOKEN"), "{shown}");
}

const ENDPOINTS: &str = r#"
listeners:
  - address: 127.0.0.1:0
upstreams:
  orders:
    endpoints: [http://127.0.0.1:9001, "http://127.0.0.1:9002", http://orders.internal:9003]
    balance: least_request
    health_check: { path: /healthz, interval: 5s, timeout: 1s, healthy: 2, unhealthy: 3 }
    outlier: { consecutive_failures: 5, eject_for: 30s, max_ejected_percent: 50 }
    retries: { attempts: 2, on: [connect_failure, refused_stream, "503", 502, 5xx], per_try_timeout: 2s }
    dns_refresh: 30s
routes:
  - name: api
    match: {}
    upstream: orders
"#;

#[test]
fn endpoints_parse_with_every_key() {
    let c = parse(ENDPOINTS).unwrap().validate().unwrap();
    let up = &c.upstreams["orders"];
    assert_eq!(up.endpoint_urls().len(), 3);
    assert_eq!(up.balance, Balance::LeastRequest);
    let retries = up.retries.as_ref().unwrap();
    assert_eq!(
        retries.on,
        [
            RetryOn::ConnectFailure,
            RetryOn::RefusedStream,
            RetryOn::Status(503),
            RetryOn::Status(502),
            RetryOn::Status5xx
        ]
    );
    assert_eq!(up.health_check.as_ref().unwrap().healthy, 2);
    // Shown on /config as written.
    let shown = serde_json::to_string(&c.redacted()).unwrap();
    assert!(
        shown.contains(r#""on":["connect_failure","refused_stream","503","502","5xx"]"#),
        "{shown}"
    );
}

#[test]
fn endpoint_defaults() {
    let yaml = ENDPOINTS
        .replace("    balance: least_request\n", "")
        .replace("{ path: /healthz, interval: 5s, timeout: 1s, healthy: 2, unhealthy: 3 }", "{ path: /healthz }")
        .replace("{ consecutive_failures: 5, eject_for: 30s, max_ejected_percent: 50 }", "{}")
        .replace(r#"{ attempts: 2, on: [connect_failure, refused_stream, "503", 502, 5xx], per_try_timeout: 2s }"#, "{}");
    let c = parse(&yaml).unwrap().validate().unwrap();
    let up = &c.upstreams["orders"];
    assert_eq!(up.balance, Balance::RoundRobin);
    let check = up.health_check.as_ref().unwrap();
    assert_eq!(
        (check.interval, check.timeout),
        (Duration::from_secs(5), Duration::from_secs(1))
    );
    assert_eq!((check.healthy, check.unhealthy), (2, 3));
    let outlier = up.outlier.as_ref().unwrap();
    assert_eq!(outlier.consecutive_failures, 5);
    assert_eq!(outlier.max_ejected_percent, 50);
    let retries = up.retries.as_ref().unwrap();
    assert_eq!(retries.attempts, 1);
    assert_eq!(
        retries.on,
        [RetryOn::ConnectFailure, RetryOn::RefusedStream]
    );
    assert_eq!(retries.per_try_timeout, None);
}

fn errors_of(yaml: &str) -> String {
    match parse(yaml) {
        Err(e) => e.to_string(),
        Ok(c) => c.validate().unwrap_err().to_string(),
    }
}

#[test]
fn endpoint_errors_name_file_key_and_problem() {
    let cases = [
        (
            ENDPOINTS.replace(
                "    endpoints:",
                "    url: http://127.0.0.1:1\n    endpoints:",
            ),
            "test.yaml: upstreams.orders: give either url or endpoints, not both",
        ),
        (
            ENDPOINTS.replace(
                r#"[http://127.0.0.1:9001, "http://127.0.0.1:9002", http://orders.internal:9003]"#,
                "[]",
            ),
            "test.yaml: upstreams.orders.endpoints: must list at least one URL",
        ),
        (
            ENDPOINTS.replace("http://127.0.0.1:9002", "https://127.0.0.1:9002"),
            "test.yaml: upstreams.orders.endpoints[1]: \"https://127.0.0.1:9002\" must have the scheme and path of endpoints[0]",
        ),
        (
            ENDPOINTS.replace("http://127.0.0.1:9002", "http://127.0.0.1:9001"),
            "test.yaml: upstreams.orders.endpoints[1]: \"http://127.0.0.1:9001\" is listed twice",
        ),
        (
            ENDPOINTS.replace("http://127.0.0.1:9002", "ftp://x"),
            "test.yaml: upstreams.orders.endpoints[1]: \"ftp://x\" must start with http:// or https://",
        ),
        (
            ENDPOINTS.replace("balance: least_request", "balance: hash"),
            "test.yaml: upstreams.orders.hash_header: missing: balance: hash needs the name of the header to hash",
        ),
        (
            ENDPOINTS.replace("balance: least_request", "hash_header: x-user"),
            "test.yaml: upstreams.orders.hash_header: only applies to balance: hash",
        ),
        (
            ENDPOINTS.replace("attempts: 2", "attempts: 9"),
            "test.yaml: upstreams.orders.retries.attempts: 9 is out of range (1 to 5)",
        ),
        (
            ENDPOINTS.replace("attempts: 2", "attempts: 0"),
            "test.yaml: upstreams.orders.retries.attempts: 0 is out of range (1 to 5)",
        ),
        (
            ENDPOINTS.replace("path: /healthz", "path: healthz"),
            "test.yaml: upstreams.orders.health_check.path: \"healthz\" must be a path starting with '/'",
        ),
        (
            ENDPOINTS.replace("healthy: 2", "healthy: 0"),
            "test.yaml: upstreams.orders.health_check.healthy: must be at least 1",
        ),
        (
            ENDPOINTS.replace("interval: 5s", "interval: 0s"),
            "test.yaml: upstreams.orders.health_check.interval: must be more than 0",
        ),
        (
            ENDPOINTS.replace("max_ejected_percent: 50", "max_ejected_percent: 150"),
            "test.yaml: upstreams.orders.outlier.max_ejected_percent: 150 is more than 100",
        ),
        (
            ENDPOINTS.replace("dns_refresh: 30s", "dns_refresh: 10ms"),
            "test.yaml: upstreams.orders.dns_refresh: must be at least 1s",
        ),
        (
            ENDPOINTS.replace("eject_for: 30s", "eject_for: 30"),
            "needs a unit",
        ),
        (
            ENDPOINTS.replace(r#""503""#, "404"),
            "retries.on takes connect_failure, refused_stream, reset, timeout, 5xx or a status from 500 to 599",
        ),
    ];
    for (yaml, expected) in cases {
        let text = errors_of(&yaml);
        assert!(text.contains(expected), "expected {expected:?} in:\n{text}");
    }
    let neither = GOOD.replace("    url: http://127.0.0.1:9\n", "");
    assert!(
        errors_of(&neither).contains("test.yaml: upstreams.backend: missing url (or endpoints)"),
        "{}",
        errors_of(&neither)
    );
}
