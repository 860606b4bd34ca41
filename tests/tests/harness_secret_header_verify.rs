//! `secret_header.wasm`'s backend half, `verify`, through the harness: accepted values
//! (rotation), each rejection answered with the same 401, the header stripped before the
//! request goes on, per-reason counters as proxy-wasm metrics, and no value in any log line.

use wasmgate_harness::{Action, Error, Filter, Harness, HttpStream};
use wasmgate_tests::wasm;

type TestResult = Result<(), Error>;

const NEXT: &str = "n3xt-9b1e";
const CURRENT: &str = "curr-77a0";

const ROTATION: &str = r#"{"verify": {"header": "Authorization",
    "accept": ["Bearer {vault://env/TOKEN_NEXT}", "Bearer {vault://env/TOKEN_CURRENT}"],
    "strip": true}}"#;

fn start(config: &str) -> Result<Filter, Error> {
    Harness::load(wasm("secret_header"))?
        .plugin_config(config)
        .env("TOKEN_NEXT", NEXT)
        .env("TOKEN_CURRENT", CURRENT)
        .start()
}

fn request(filter: &Filter, extra: &[(&str, &str)]) -> Result<(HttpStream, Action), Error> {
    let mut http = filter.http_stream()?;
    let mut headers = vec![
        (":method", "GET"),
        (":path", "/v1/items"),
        (":authority", "api"),
        (":scheme", "http"),
    ];
    headers.extend_from_slice(extra);
    let action = http.request_headers(headers, true)?;
    Ok((http, action))
}

fn counter(filter: &Filter, name: &str) -> i64 {
    filter
        .metric(name)
        .unwrap_or_else(|| panic!("metric {name} not defined: {:?}", filter.metrics()))
        .value
}

/// The request was refused with the one 401 every rejection gets.
fn assert_refused(http: &HttpStream, action: Action, challenge: &str) {
    assert_eq!(action, Action::Pause);
    let local = http.local_response().expect("a local response");
    assert_eq!(local.status, 401);
    assert_eq!(local.headers.get_str("www-authenticate"), Some(challenge));
    assert_eq!(local.body, b"unauthorized\n");
}

#[test]
fn either_accepted_value_passes_and_is_stripped() -> TestResult {
    let filter = start(ROTATION)?;
    for token in [NEXT, CURRENT] {
        let (http, action) = request(&filter, &[("authorization", &format!("Bearer {token}"))])?;
        assert_eq!(action, Action::Continue);
        assert!(http.local_response().is_none());
        assert_eq!(http.request_header("authorization"), None, "stripped");
        assert_eq!(http.request_header(":path"), Some("/v1/items"));
    }
    assert_eq!(counter(&filter, "secret_header.verify.accepted"), 2);
    Ok(())
}

#[test]
fn strip_false_keeps_the_header() -> TestResult {
    let filter = start(
        r#"{"verify": {"header": "x-api-key", "accept": ["{vault://env/TOKEN_NEXT}"], "strip": false}}"#,
    )?;
    let (http, action) = request(&filter, &[("x-api-key", NEXT)])?;
    assert_eq!(action, Action::Continue);
    assert_eq!(http.request_header("x-api-key"), Some(NEXT));
    Ok(())
}

#[test]
fn each_rejection_is_the_same_401_and_counted_by_reason() -> TestResult {
    let filter = start(ROTATION)?;
    let challenge = "Bearer realm=\"wasmgate\"";

    let (http, action) = request(&filter, &[])?;
    assert_refused(&http, action, challenge);

    let good = format!("Bearer {NEXT}");
    let (http, action) = request(
        &filter,
        &[("authorization", &good), ("Authorization", &good)],
    )?;
    assert_refused(&http, action, challenge);

    for bad in [
        "Bearer wrong",
        &format!("Bearer {NEXT}0"),
        &format!("Bearer {}", &NEXT[..4]),
    ] {
        let (http, action) = request(&filter, &[("authorization", bad)])?;
        assert_refused(&http, action, challenge);
    }

    assert_eq!(counter(&filter, "secret_header.verify.rejected.missing"), 1);
    assert_eq!(
        counter(&filter, "secret_header.verify.rejected.repeated"),
        1
    );
    assert_eq!(
        counter(&filter, "secret_header.verify.rejected.mismatch"),
        3
    );
    assert_eq!(counter(&filter, "secret_header.verify.accepted"), 0);
    Ok(())
}

#[test]
fn verify_runs_before_the_header_operations() -> TestResult {
    // A backend-side sidecar: check the caller's key, then tag the request.
    let filter = start(
        r#"{"verify": {"header": "x-api-key", "accept": ["{vault://env/TOKEN_NEXT}"]},
            "set": {"headers": ["x-caller:gateway"]}}"#,
    )?;
    let (http, action) = request(&filter, &[("x-api-key", NEXT), ("x-caller", "spoofed")])?;
    assert_eq!(action, Action::Continue);
    assert_eq!(http.request_header("x-caller"), Some("gateway"));
    assert_eq!(http.request_header("x-api-key"), None);

    // A refused request is not transformed: the answer is the 401 alone.
    let (http, action) = request(&filter, &[("x-api-key", "nope")])?;
    assert_refused(&http, action, "Secret realm=\"wasmgate\"");
    Ok(())
}

#[test]
fn no_value_reaches_a_log_line() -> TestResult {
    let filter = start(ROTATION)?;
    let _ = request(&filter, &[("authorization", &format!("Bearer {NEXT}"))])?;
    let _ = request(&filter, &[("authorization", "Bearer guess")])?;
    let logs = filter.log_messages();
    assert!(
        logs.iter()
            .any(|m| m.contains("verify authorization (2 accepted values")),
        "{logs:?}"
    );
    for line in &logs {
        assert!(
            !line.contains(NEXT) && !line.contains(CURRENT) && !line.contains("guess"),
            "{line}"
        );
    }
    Ok(())
}

#[test]
fn a_bad_verify_configuration_is_refused_at_load() {
    let err = Harness::load(wasm("secret_header"))
        .and_then(|h| {
            h.plugin_config(r#"{"verify": {"header": "authorization", "accept": ["Bearer {vault://env/TOKEN_GONE}"]}}"#)
                .start()
        })
        .expect_err("refused");
    let text = format!("{err:#}");
    assert!(text.contains("verify.accept[0]"), "{text}");
    assert!(text.contains("TOKEN_GONE"), "{text}");
}
