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
        "connect_timeout: 500ms\n    retries: 3",
    );
    let e = parse(&bad).unwrap_err().to_string();
    assert!(
        e.starts_with("test.yaml: line 8 column 5: upstreams.backend: "),
        "{e}"
    );
    assert!(e.contains("unknown field `retries`"), "{e}");
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
