//! `wasmgate check` on good and broken configurations: exit code and
//! messages that name the file, the line or key, and what is wrong.

use std::path::Path;

use wasmgate_tests::{
    gateway::{check, secret_header},
    wasm,
};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

const GOOD: &str = r#"
listeners:
  - address: 127.0.0.1:8080
upstreams:
  backend: { url: "http://127.0.0.1:9000", connect_timeout: 2s, timeout: 30s }
routes:
  - name: api
    match: { host: api.example.com, path_prefix: /v1/ }
    upstream: backend
    filters:
      - wasm: WASM
        config: { set: { headers: ["Authorization:Bearer {vault://env/BACKEND_TOKEN}"] } }
        env: [BACKEND_TOKEN]
"#;

fn good() -> String {
    GOOD.replace("WASM", &format!("\"{}\"", secret_header().display()))
}

#[test]
fn check_reports_each_broken_configuration() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();

    let (code, out) = check(&write(d, "good.yaml", &good()))?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("good.yaml: OK"), "{out}");

    // (file, text, what the message must say)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown-key.yaml",
            good().replace("timeout: 30s", "timeout: 30s, retries: 3"),
            vec!["unknown-key.yaml: line 5", "unknown field `retries`"],
        ),
        (
            "bad-duration.yaml",
            good().replace("connect_timeout: 2s", "connect_timeout: 2"),
            vec!["bad-duration.yaml: line 5", "has no unit"],
        ),
        (
            "unknown-upstream.yaml",
            good().replace("upstream: backend", "upstream: bakend"),
            vec!["routes[0] \"api\".upstream: unknown upstream \"bakend\" (defined: backend)"],
        ),
        (
            "no-match.yaml",
            good().replace("    match: { host: api.example.com, path_prefix: /v1/ }\n", ""),
            vec!["routes[0] \"api\".match: missing"],
        ),
        (
            "missing-wasm.yaml",
            good().replace(&secret_header().display().to_string(), "/nonexistent/filter.wasm"),
            vec!["routes[0] \"api\".filters[0].wasm: file /nonexistent/filter.wasm does not exist"],
        ),
        (
            "not-wasm.yaml",
            good().replace(&secret_header().display().to_string(), &d.join("good.yaml").display().to_string()),
            vec!["routes[0] \"api\".filters[0]:"],
        ),
        (
            "bad-filter-config.yaml",
            good().replace("Authorization:Bearer {vault://env/BACKEND_TOKEN}", "no colon"),
            vec!["routes[0] \"api\".filters[0]:", "on_configure"],
        ),
        (
            "refused-vm.yaml",
            good().replace(
                &format!("\"{}\"", secret_header().display()),
                &format!("\"{}\"\n        vm_config: \"false@vm_start\"", wasm("hostile").display()),
            ),
            vec!["routes[0] \"api\".filters[0]:"],
        ),
        (
            "bad-tls.yaml",
            good().replace("http://127.0.0.1:9000\"", "http://127.0.0.1:9000\", tls: { ca: ca.pem }"),
            vec!["upstreams.backend.tls: only applies to https:// upstreams"],
        ),
        ("not-yaml.yaml", "listeners: [".to_string(), vec!["not-yaml.yaml: line"]),
    ];
    for (file, text, needles) in &cases {
        let (code, out) = check(&write(d, file, text))?;
        assert_ne!(code, 0, "{file} must fail: {out}");
        for needle in needles {
            assert!(out.contains(needle), "{file}: missing {needle:?} in:\n{out}");
        }
    }

    // Several problems at once: all reported.
    let many = good().replace("upstream: backend", "upstream: bakend").replace("127.0.0.1:8080", "8080");
    let (code, out) = check(&write(d, "many.yaml", &many))?;
    assert_ne!(code, 0);
    assert!(out.contains("listeners[0].address") && out.contains("unknown upstream"), "{out}");
    Ok(())
}

#[test]
fn check_warns_about_secrets_over_cleartext() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let text = good().replace("http://127.0.0.1:9000", "http://10.1.2.3:9000");
    let (code, out) = check(&write(dir.path(), "clear.yaml", &text))?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning: route \"api\" runs filters and sends to upstream \"backend\" over plain http://"), "{out}");
    Ok(())
}
