//! Interoperability of `secret_header.wasm`'s HTTP Message Signatures with an independent
//! implementation, PyPI's `http-message-signatures` (driven by `tests/interop/rfc9421.py`;
//! `.ci/setup` installs it). A request the filter signs verifies there, including its
//! `Content-Digest`, and a request that library signs verifies in `verify_signature`; a
//! changed path fails on both sides. A missing Python module fails the test, with the fix
//! in the message.

use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::UNIX_EPOCH;
use wasmgate_harness::{Action, Error, Filter, Harness};
use wasmgate_tests::wasm;

type TestResult = Result<(), Error>;

const KEY: &str = "interop-key-0123456789abcdef-0123";
const BODY: &str = r#"{"amount": 10}"#;

fn start(config: &str) -> Result<Filter, Error> {
    Harness::load(wasm("secret_header"))?
        .plugin_config(config)
        .env("SIGNING_KEY", KEY)
        .start()
}

/// Runs the Python peer on one JSON request.
fn python(request: &Value) -> (bool, Value) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/rfc9421.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 must be installed (see .ci/setup)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "rfc9421.py gave no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_ne!(
        out.status.code(),
        Some(2),
        "the interop peer cannot run: {}",
        answer["error"]
    );
    (out.status.success() && answer["ok"] == true, answer)
}

/// Splits proxy-wasm headers into a URL and the plain header lines.
fn to_http(headers: &[(String, Vec<u8>)]) -> (String, String, Vec<(String, String)>) {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let url = format!("{}://{}{}", get(":scheme"), get(":authority"), get(":path"));
    let plain = headers
        .iter()
        .filter(|(n, _)| !n.starts_with(':'))
        .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    (get(":method"), url, plain)
}

fn request_headers(path: &str) -> Vec<(String, Vec<u8>)> {
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "api.internal"),
        (":path", path),
        ("content-type", "application/json"),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.as_bytes().to_vec()))
    .collect()
}

#[test]
fn signed_by_the_filter_verifies_in_python() -> TestResult {
    let signer = start(
        r#"{"sign": {"key_id": "gw-2026-12", "key": "{vault://env/SIGNING_KEY}",
            "components": ["@method", "@authority", "@path", "@query", "content-type"],
            "content_digest": true, "nonce": true}}"#,
    )?;
    // The harness clock starts at the wall clock; Python checks max_age against its own.
    let mut http = signer.http_stream()?;
    assert_eq!(
        http.request_headers(request_headers("/v1/pay?x=1"), false)?,
        Action::Pause
    );
    assert_eq!(http.request_body(BODY, true)?, Action::Continue);
    let signed: Vec<(String, Vec<u8>)> = http
        .request_headers_map()
        .iter()
        .map(|(n, v)| (n.to_owned(), v.to_vec()))
        .collect();
    let (method, url, headers) = to_http(&signed);
    let verify = |url: &str, body: &str| {
        python(&json!({
            "op": "verify", "method": method, "url": url, "headers": headers, "body": body,
            "key_id": "gw-2026-12", "key": KEY, "max_age": 60,
            "require": ["@method", "@authority", "@path", "@query", "content-type", "content-digest"],
        }))
    };
    let (ok, answer) = verify(&url, BODY);
    assert!(ok, "python refused the filter's signature: {answer}");
    assert_eq!(answer["label"], "wasmgate");
    // The same check fails for a changed path and for a changed body.
    let (ok, _) = verify(&url.replace("/v1/pay", "/v1/admin"), BODY);
    assert!(!ok, "a changed path must not verify");
    let (ok, _) = verify(&url, r#"{"amount": 1000}"#);
    assert!(!ok, "a changed body must not verify");
    Ok(())
}

#[test]
fn signed_in_python_verifies_in_the_filter() -> TestResult {
    let verifier = start(
        r#"{"verify_signature": {"keys": {"py-2026": "{vault://env/SIGNING_KEY}"},
            "required_components": ["@method", "@authority", "@path", "content-digest"],
            "max_age": "30s"}}"#,
    )?;
    let created = verifier.now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let sign = |path: &str| {
        let (method, url, headers) = to_http(&request_headers(path));
        let (ok, answer) = python(&json!({
            "op": "sign", "method": method, "url": url, "headers": headers, "body": BODY,
            "key_id": "py-2026", "key": KEY, "created": created, "label": "py",
            "components": ["@method", "@authority", "@path", "@query", "content-type"],
        }));
        assert!(ok, "python could not sign: {answer}");
        let mut out = request_headers(path);
        out.retain(|(n, _)| n.starts_with(':'));
        for pair in answer["headers"].as_array().unwrap() {
            let name = pair[0].as_str().unwrap().to_ascii_lowercase();
            out.push((name, pair[1].as_str().unwrap().as_bytes().to_vec()));
        }
        out
    };

    let signed = sign("/v1/pay?x=1");
    assert!(
        signed.iter().any(|(n, _)| n == "content-digest"),
        "{signed:?}"
    );
    let mut http = verifier.http_stream()?;
    assert_eq!(http.request_headers(signed.clone(), false)?, Action::Pause);
    assert_eq!(http.request_body(BODY, true)?, Action::Continue);
    assert!(http.local_response().is_none());

    // A path changed in flight.
    let mut tampered = signed.clone();
    tampered.retain(|(n, _)| n != ":path");
    tampered.push((":path".into(), b"/v1/admin?x=1".to_vec()));
    let mut http = verifier.http_stream()?;
    assert_eq!(http.request_headers(tampered, false)?, Action::Pause);
    assert_eq!(http.local_response().map(|r| r.status), Some(401));

    // The body changed in flight.
    let mut http = verifier.http_stream()?;
    assert_eq!(http.request_headers(signed, false)?, Action::Pause);
    http.request_body(r#"{"amount": 1000}"#, true)?;
    assert_eq!(http.local_response().map(|r| r.status), Some(401));
    Ok(())
}
