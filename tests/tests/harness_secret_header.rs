//! `secret_header.wasm`, built from `filter/`, run through the harness with its
//! configurations: Kong's exact request-transformer config, the `set` anti-spoofing rule,
//! Kong's operation order, vault references resolved from the module's environment, the
//! filter's start-up logs, and bad configurations refused at load with an error naming the
//! module and the filter's reason, never a secret.

use wasmgate_harness::{Action, Error, Filter, Harness, HttpStream, LoadError, LogLevel};
use wasmgate_tests::wasm;

type TestResult = Result<(), Error>;

fn start(config: &str) -> Result<Filter, Error> {
    Harness::load(wasm("secret_header"))?
        .plugin_config(config)
        .start()
}

/// Runs a GET with `extra` request headers through the filter's request phase.
fn request(filter: &Filter, extra: &[(&str, &str)]) -> Result<HttpStream, Error> {
    let mut http = filter.http_stream()?;
    let mut headers = vec![
        (":method", "GET"),
        (":path", "/v1/items"),
        (":authority", "api"),
    ];
    headers.extend_from_slice(extra);
    let action = http.request_headers(headers, true)?;
    assert_eq!(action, Action::Continue);
    Ok(http)
}

fn values(http: &HttpStream, name: &str) -> Vec<String> {
    http.request_header_all(name)
        .into_iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[test]
fn kongs_exact_config_adds_the_header() -> TestResult {
    let filter = start(r#"{"add": {"headers": ["Authorization:Bearer my-secret-key"]}}"#)?;
    let mut http = request(&filter, &[])?;
    assert_eq!(values(&http, "authorization"), ["Bearer my-secret-key"]);
    // The rest of the stream runs and the filter leaves the response alone.
    http.response_headers([(":status", "200")], true)?;
    assert_eq!(http.response_header("authorization"), None);
    http.log()?;
    http.finish()?;
    Ok(())
}

#[test]
fn kong_add_keeps_a_client_sent_header() -> TestResult {
    let filter = start(r#"{"add": {"headers": ["Authorization:Bearer my-secret-key"]}}"#)?;
    let http = request(&filter, &[("authorization", "Bearer from-client")])?;
    assert_eq!(values(&http, "authorization"), ["Bearer from-client"]);
    Ok(())
}

#[test]
fn set_replaces_every_client_copy_with_exactly_one_value() -> TestResult {
    let filter = start(r#"{"set": {"headers": ["Authorization:Bearer my-secret-key"]}}"#)?;
    for spoof in [
        vec![],
        vec![("authorization", "Bearer spoofed")],
        vec![
            ("Authorization", "one"),
            ("AUTHORIZATION", "two"),
            ("authorization", ""),
        ],
    ] {
        let http = request(&filter, &spoof)?;
        assert_eq!(
            values(&http, "authorization"),
            ["Bearer my-secret-key"],
            "client sent {spoof:?}"
        );
    }
    Ok(())
}

#[test]
fn operations_run_in_kongs_order() -> TestResult {
    let filter = start(
        r#"{
            "remove":  {"headers": ["x-remove"]},
            "rename":  {"headers": ["x-old:x-new"]},
            "replace": {"headers": ["x-replace:replaced", "x-absent:never"]},
            "add":     {"headers": ["x-add:added", "x-present:not-this"]},
            "append":  {"headers": ["x-multi:two"]}
        }"#,
    )?;
    let http = request(
        &filter,
        &[
            ("x-remove", "gone"),
            ("x-old", "moved"),
            ("x-replace", "original"),
            ("x-present", "client"),
            ("x-multi", "one"),
        ],
    )?;
    assert_eq!(values(&http, "x-remove"), Vec::<String>::new());
    assert_eq!(values(&http, "x-old"), Vec::<String>::new());
    assert_eq!(values(&http, "x-new"), ["moved"]);
    assert_eq!(values(&http, "x-replace"), ["replaced"]);
    // replace only touches a header that is present; add only sets one that is absent.
    assert_eq!(values(&http, "x-absent"), Vec::<String>::new());
    assert_eq!(values(&http, "x-add"), ["added"]);
    assert_eq!(values(&http, "x-present"), ["client"]);
    assert_eq!(values(&http, "x-multi"), ["one", "two"]);
    Ok(())
}

#[test]
fn vault_references_resolve_from_the_module_environment() -> TestResult {
    let secret = "tok-3f9a1c";
    let filter = Harness::load(wasm("secret_header"))?
        .plugin_config(
            r#"{"set": {"headers": ["Authorization:Bearer {vault://env/BACKEND_TOKEN}"]}}"#,
        )
        .env("BACKEND_TOKEN", secret)
        .start()?;
    let http = request(&filter, &[("authorization", "Bearer spoofed")])?;
    assert_eq!(values(&http, "authorization"), [format!("Bearer {secret}")]);
    // What the filter logged while starting is captured: it says what it configured...
    assert!(
        filter.logged(LogLevel::Info, "secret-header: configured"),
        "{:?}",
        filter.logs()
    );
    assert!(
        filter.logged(LogLevel::Info, "set 1"),
        "{:?}",
        filter.logs()
    );
    // ...and the secret never reaches a log line, at any level, start-up included.
    for record in filter.logs() {
        assert!(
            !record.message.contains(secret),
            "secret logged: {record:?}"
        );
    }
    Ok(())
}

#[test]
fn every_stream_gets_the_header() -> TestResult {
    let filter = start(r#"{"set": {"headers": ["x-api-key:k1"]}}"#)?;
    for _ in 0..5 {
        let mut http = request(&filter, &[])?;
        assert_eq!(http.request_header("x-api-key"), Some("k1"));
        http.finish()?;
    }
    assert_eq!(filter.instances(), 1);
    Ok(())
}

/// Asserts that `config` (with `env`) is refused by `on_configure`, with an error that names
/// the module, says that `on_configure` refused it and quotes the filter's reason (which must
/// contain `reason`, e.g. the offending key), and that neither the error nor anything the
/// filter logged while starting holds a secret: no value of `env`, none of `secrets`.
fn assert_refused(config: &str, env: &[(&str, &str)], reason: &str, secrets: &[&str]) {
    let mut harness = Harness::load(wasm("secret_header"))
        .expect("module exists")
        .plugin_config(config);
    for (name, value) in env {
        harness = harness.env(*name, *value);
    }
    let err = match harness.start() {
        Ok(_) => panic!("configuration {config} was accepted"),
        Err(err) => err,
    };
    assert!(
        matches!(err.load_error(), Some(LoadError::ConfigureFailed { .. })),
        "config {config}: expected ConfigureFailed, got {err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("secret_header"),
        "error does not name the module: {message}"
    );
    assert!(
        message.contains("on_configure"),
        "error does not say which step refused: {message}"
    );
    assert!(
        message.contains("secret-header: invalid configuration"),
        "error does not quote the filter's reason: {message}"
    );
    assert!(
        message.contains(reason),
        "error does not say {reason:?}: {message}"
    );
    // The filter explained itself at error level while starting; that is what is quoted.
    let logs = err.startup_logs();
    assert!(
        logs.iter()
            .any(|r| r.level == LogLevel::Error && r.message.contains(reason)),
        "config {config}: start-up logs lack the reason: {logs:?}"
    );
    let leaks = env
        .iter()
        .map(|(_, value)| *value)
        .chain(secrets.iter().copied());
    for secret in leaks {
        assert!(
            !message.contains(secret),
            "error leaks {secret:?}: {message}"
        );
        for record in logs {
            assert!(
                !record.message.contains(secret),
                "start-up log leaks {secret:?}: {record:?}"
            );
        }
    }
}

#[test]
fn bad_configurations_are_refused_at_load() {
    assert_refused("not json", &[], "not valid JSON", &[]);
    assert_refused(
        r#"{"add": {"headers": ["Authorization:x"]}, "typo": {}}"#,
        &[],
        "typo",
        &[],
    );
    assert_refused(
        r#"{"add": {"headers": ["no-colon-here"]}}"#,
        &[],
        "add.headers[0]",
        &["no-colon-here"],
    );
    assert_refused(
        r#"{"add": {"headers": ["bad name:x"]}}"#,
        &[],
        "add.headers[0]",
        &[],
    );
    assert_refused(
        r#"{"set": {"headers": ["x-api-key:s3cr3t-a\r\nx-injected: b"]}}"#,
        &[],
        "set.headers[0] (header x-api-key)",
        &["s3cr3t-a", "x-injected"],
    );
    assert_refused(
        r#"{"set": {"headers": ["x-api-key:s3cr3t-one", "X-Api-Key:s3cr3t-two"]}}"#,
        &[],
        "set.headers[1]",
        &["s3cr3t-one", "s3cr3t-two"],
    );
    assert_refused(
        r#"{"set": {"headers": ["x-api-key:{vault://env/NOT_GIVEN}"]}}"#,
        &[],
        "NOT_GIVEN",
        &[],
    );
}

#[test]
fn refused_references_never_show_the_resolved_value() {
    // The variable is set, but its value cannot be used: the reason names the variable only.
    assert_refused(
        r#"{"set": {"headers": ["Authorization:Bearer {vault://env/TOKEN}"]}}"#,
        &[("TOKEN", "s3cr3t-tok\r\nx-evil: 1")],
        "TOKEN",
        &["s3cr3t-tok", "x-evil"],
    );
    assert_refused(
        r#"{"set": {"headers": ["x-api-key:{vault://env/KEYS/missing}"]}}"#,
        &[("KEYS", r#"{"present":"s3cr3t-json"}"#)],
        "KEYS",
        &["s3cr3t-json"],
    );
}

#[test]
fn the_module_sees_only_the_environment_it_is_given() {
    // PATH is set in the test process, but the module's WASI environment is empty unless the
    // embedder passes variables: the reference cannot resolve.
    assert!(std::env::var_os("PATH").is_some());
    assert_refused(
        r#"{"set": {"headers": ["x-leak:{vault://env/PATH}"]}}"#,
        &[],
        "PATH",
        &[],
    );
    // A variable given to another name does not help either.
    assert_refused(
        r#"{"set": {"headers": ["x-api-key:{vault://env/WANTED}"]}}"#,
        &[("OTHER", "value-of-other")],
        "WANTED",
        &[],
    );
}
