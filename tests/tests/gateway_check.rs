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

/// The environment the configurations expect.
const TOKEN: &[(&str, &str)] = &[("BACKEND_TOKEN", "check-token")];

fn good() -> String {
    GOOD.replace("WASM", &format!("\"{}\"", secret_header().display()))
}

#[test]
fn check_reports_each_broken_configuration() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();

    let (code, out) = check(&write(d, "good.yaml", &good()), TOKEN)?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("good.yaml: OK"), "{out}");
    // The secret reference needs the variable: without it the filter
    // refuses its configuration, and check says so.
    let (code, out) = check(&write(d, "good.yaml", &good()), &[])?;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("warning: routes[0] \"api\".filters[0].env: BACKEND_TOKEN is not set in the gateway's environment"), "{out}");
    assert!(
        out.contains("good.yaml: routes[0] \"api\".filters[0]: filter api/0:"),
        "{out}"
    );
    assert!(out.contains("proxy_on_configure returned false"), "{out}");

    // (file, text, what the message must say)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown-key.yaml",
            good().replace("timeout: 30s", "timeout: 30s, retry: 3"),
            vec!["unknown-key.yaml: line 5", "unknown field `retry`"],
        ),
        (
            "bad-duration.yaml",
            good().replace("connect_timeout: 2s", "connect_timeout: 2"),
            vec!["bad-duration.yaml: line 5", "needs a unit"],
        ),
        (
            "unknown-upstream.yaml",
            good().replace("upstream: backend", "upstream: bakend"),
            vec!["routes[0] \"api\".upstream: unknown upstream \"bakend\" (defined: backend)"],
        ),
        (
            "no-match.yaml",
            good().replace(
                "    match: { host: api.example.com, path_prefix: /v1/ }\n",
                "",
            ),
            vec!["routes[0] \"api\".match: missing"],
        ),
        (
            "missing-wasm.yaml",
            good().replace(
                &secret_header().display().to_string(),
                "/nonexistent/filter.wasm",
            ),
            vec!["routes[0] \"api\".filters[0].wasm: file /nonexistent/filter.wasm does not exist"],
        ),
        (
            "not-wasm.yaml",
            good().replace(
                &secret_header().display().to_string(),
                &d.join("good.yaml").display().to_string(),
            ),
            vec!["routes[0] \"api\".filters[0]:"],
        ),
        (
            "bad-filter-config.yaml",
            good().replace(
                "Authorization:Bearer {vault://env/BACKEND_TOKEN}",
                "no colon",
            ),
            vec!["routes[0] \"api\".filters[0]:", "on_configure"],
        ),
        (
            "refused-vm.yaml",
            good().replace(
                &format!("\"{}\"", secret_header().display()),
                &format!(
                    "\"{}\"\n        vm_config: \"false@vm_start\"",
                    wasm("hostile").display()
                ),
            ),
            vec!["routes[0] \"api\".filters[0]:"],
        ),
        (
            "bad-tls.yaml",
            good().replace(
                "http://127.0.0.1:9000\"",
                "http://127.0.0.1:9000\", tls: { ca: ca.pem }",
            ),
            vec!["upstreams.backend.tls: only applies to https:// upstreams"],
        ),
        (
            "not-yaml.yaml",
            "listeners: [".to_string(),
            vec!["not-yaml.yaml: line"],
        ),
    ];
    // Each check is a process that may compile a module: run them side by side.
    let results: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = cases
            .iter()
            .map(|(file, text, _)| {
                let path = write(d, file, text);
                scope.spawn(move || check(&path, TOKEN))
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("check thread"))
            .collect()
    });
    for ((file, _, needles), result) in cases.iter().zip(results) {
        let (code, out) = result?;
        assert_ne!(code, 0, "{file} must fail: {out}");
        for needle in needles {
            assert!(
                out.contains(needle),
                "{file}: missing {needle:?} in:\n{out}"
            );
        }
    }

    // Several problems at once: all reported.
    let many = good()
        .replace("upstream: backend", "upstream: bakend")
        .replace("127.0.0.1:8080", "8080");
    let (code, out) = check(&write(d, "many.yaml", &many), TOKEN)?;
    assert_ne!(code, 0);
    assert!(
        out.contains("listeners[0].address") && out.contains("unknown upstream"),
        "{out}"
    );
    Ok(())
}

#[test]
fn check_warns_about_secrets_over_cleartext() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let text = good().replace("http://127.0.0.1:9000", "http://10.1.2.3:9000");
    let (code, out) = check(&write(dir.path(), "clear.yaml", &text), TOKEN)?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning: route \"api\" runs filters and sends to upstream \"backend\" over plain http://"), "{out}");
    Ok(())
}

#[test]
fn the_example_configuration_checks() -> anyhow::Result<()> {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/gateway/examples/gateway.yaml");
    let text = std::fs::read_to_string(&example)?.replace(
        "../../../target/wasm32-wasip1/release/secret_header.wasm",
        &secret_header().display().to_string(),
    );
    let dir = tempfile::tempdir()?;
    let env = [("ORDERS_TOKEN", "o"), ("PARTNER_KEY", "p")];
    let (code, out) = check(&write(dir.path(), "gateway.yaml", &text), &env)?;
    assert_eq!(code, 0, "{out}");
    Ok(())
}

#[test]
fn run_refuses_a_bad_configuration_with_the_same_errors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write(
        dir.path(),
        "bad.yaml",
        &good().replace("upstream: backend", "upstream: bakend"),
    );
    let out = std::process::Command::new(wasmgate_tests::gateway::binary()?)
        .arg("run")
        .arg("--config")
        .arg(&path)
        .env("NO_COLOR", "1")
        .env("BACKEND_TOKEN", "t")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bad.yaml: routes[0] \"api\".upstream: unknown upstream \"bakend\""),
        "{stderr}"
    );
    Ok(())
}
