//! `secret_header.wasm` signing and verifying HTTP Message Signatures (RFC 9421) through the
//! harness: one instance signs (gateway side), a second one verifies what the first wrote
//! (backend side), with the body buffered for `Content-Digest`, the filter's clock for
//! `created` and `max_age`, and every rejection counted.

use std::time::{Duration, UNIX_EPOCH};
use wasmgate_harness::{Action, Error, Filter, Harness, HttpStream};
use wasmgate_tests::wasm;

type TestResult = Result<(), Error>;

const KEY_NEXT: &str = "k3y-n3xt-0123456789abcdef-0123456";
const KEY_OLD: &str = "k3y-0ld-0123456789abcdef-01234567";

const SIGN: &str = r#"{"sign": {"key_id": "gw-2026-12", "key": "{vault://env/SIGNING_KEY}",
    "components": ["@method", "@authority", "@path", "@query", "content-type"],
    "content_digest": true}}"#;

const VERIFY: &str = r#"{"verify_signature": {
    "keys": {"gw-2026-12": "{vault://env/KEY_NEXT}", "gw-2026-11": "{vault://env/KEY_OLD}"},
    "required_components": ["@method", "@authority", "@path"], "max_age": "30s", "strip": true}}"#;

fn start(config: &str) -> Result<Filter, Error> {
    Harness::load(wasm("secret_header"))?
        .plugin_config(config)
        .env("SIGNING_KEY", KEY_NEXT)
        .env("KEY_NEXT", KEY_NEXT)
        .env("KEY_OLD", KEY_OLD)
        .start()
}

fn base(method: &str, path: &str) -> Vec<(String, Vec<u8>)> {
    [
        (":method", method),
        (":scheme", "http"),
        (":authority", "api.internal"),
        (":path", path),
        ("content-type", "application/json"),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.as_bytes().to_vec()))
    .collect()
}

/// Runs a request through `filter`: headers, then the body in `chunks` (none: bodiless).
/// Returns the stream and the action of the last callback.
fn send(
    filter: &Filter,
    headers: Vec<(String, Vec<u8>)>,
    chunks: &[&[u8]],
) -> Result<(HttpStream, Action), Error> {
    let mut http = filter.http_stream()?;
    let mut action = http.request_headers(headers, chunks.is_empty())?;
    for (i, chunk) in chunks.iter().enumerate() {
        if http.local_response().is_some() {
            break;
        }
        action = http.request_body(chunk, i + 1 == chunks.len())?;
    }
    Ok((http, action))
}

/// The request headers as they would leave the filter.
fn forwarded(http: &HttpStream) -> Vec<(String, Vec<u8>)> {
    http.request_headers_map()
        .iter()
        .map(|(n, v)| (n.to_owned(), v.to_vec()))
        .collect()
}

fn replace(headers: &mut Vec<(String, Vec<u8>)>, name: &str, value: &str) {
    headers.retain(|(n, _)| n != name);
    headers.push((name.to_owned(), value.as_bytes().to_vec()));
}

fn counter(filter: &Filter, name: &str) -> i64 {
    filter.metric(name).map_or(-1, |m| m.value)
}

fn assert_401(http: &HttpStream, action: Action) {
    assert_eq!(action, Action::Pause);
    let local = http.local_response().expect("a local 401");
    assert_eq!(local.status, 401);
    assert_eq!(
        local.headers.get_str("www-authenticate"),
        Some("Signature realm=\"wasmgate\"")
    );
    assert_eq!(local.body, b"unauthorized\n");
}

/// Signs `headers` + `body` with a fresh signing instance whose clock reads `at`.
fn signed_by_gateway(
    at: std::time::SystemTime,
    headers: Vec<(String, Vec<u8>)>,
    body: &[u8],
) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let signer = start(SIGN)?;
    signer.set_time(at);
    let chunks: Vec<&[u8]> = if body.is_empty() { vec![] } else { vec![body] };
    let (http, action) = send(&signer, headers, &chunks)?;
    assert_eq!(action, Action::Continue);
    Ok(forwarded(&http))
}

#[test]
fn a_bodiless_request_is_signed_at_the_filters_clock() -> TestResult {
    let signer = start(SIGN)?;
    let created = signer.now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (http, action) = send(&signer, base("GET", "/v1/items?limit=5"), &[])?;
    assert_eq!(action, Action::Continue);
    assert_eq!(
        http.request_header("signature-input"),
        Some(
            format!(
                "wasmgate=(\"@method\" \"@authority\" \"@path\" \"@query\" \"content-type\" \
                 \"content-digest\");created={created};keyid=\"gw-2026-12\";alg=\"hmac-sha256\""
            )
            .as_str()
        )
    );
    assert_eq!(
        http.request_header("content-digest"),
        Some("sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:")
    );
    let signature = http.request_header("signature").unwrap();
    assert!(
        signature.starts_with("wasmgate=:") && signature.len() == 55,
        "{signature}"
    );
    assert_eq!(counter(&signer, "secret_header.sign.signed"), 1);
    for line in signer.log_messages() {
        assert!(!line.contains(KEY_NEXT), "{line}");
    }
    Ok(())
}

#[test]
fn the_body_is_buffered_and_digested_before_signing() -> TestResult {
    let signer = start(SIGN)?;
    let mut headers = base("POST", "/v1/items");
    headers.push(("signature".into(), b"wasmgate=:c3Bvb2Y=:".to_vec()));
    headers.push(("content-digest".into(), b"sha-256=:c3Bvb2Y=:".to_vec()));
    let mut http = signer.http_stream()?;
    assert_eq!(http.request_headers(headers, false)?, Action::Pause);
    assert_eq!(http.request_body(br#"{"hello": "#, false)?, Action::Pause);
    assert_eq!(
        http.request_header("signature-input"),
        None,
        "not signed yet"
    );
    assert_eq!(http.request_body(br#""world"}"#, true)?, Action::Continue);
    assert_eq!(
        http.request_header_all("content-digest"),
        [&b"sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"[..]],
        "RFC 9530's example digest; the client's copy is gone"
    );
    assert_eq!(http.request_header_all("signature").len(), 1);
    assert_eq!(http.request_body_sent(), br#"{"hello": "world"}"#);
    Ok(())
}

#[test]
fn what_one_instance_signs_the_other_verifies_and_strips() -> TestResult {
    let verifier = start(VERIFY)?;
    let now = verifier.now();
    let body = br#"{"amount": 10}"#;
    let signed = signed_by_gateway(now, base("POST", "/v1/pay?x=1"), body)?;
    let (http, action) = send(&verifier, signed, &[&body[..5], &body[5..]])?;
    assert_eq!(action, Action::Continue);
    assert!(http.local_response().is_none());
    assert_eq!(http.request_header("signature"), None, "stripped");
    assert_eq!(http.request_header("signature-input"), None, "stripped");
    assert!(http.request_header("content-digest").is_some(), "kept");
    assert_eq!(http.request_body_sent(), body);
    assert_eq!(
        counter(&verifier, "secret_header.verify_signature.accepted"),
        1
    );
    Ok(())
}

#[test]
fn every_rejection_is_a_401_counted_by_reason() -> TestResult {
    let verifier = start(VERIFY)?;
    let now = verifier.now();
    let body = br#"{"amount": 10}"#;
    let good = signed_by_gateway(now, base("POST", "/v1/pay"), body)?;

    // missing
    let (http, action) = send(&verifier, base("POST", "/v1/pay"), &[body])?;
    assert_401(&http, action);
    // malformed
    let mut h = good.clone();
    replace(&mut h, "signature", "wasmgate=:???:");
    let (http, action) = send(&verifier, h, &[body])?;
    assert_401(&http, action);
    // unknown key
    let other = start(&SIGN.replace("gw-2026-12", "gw-2025-01"))?;
    other.set_time(now);
    let (http, _) = send(&other, base("POST", "/v1/pay"), &[body])?;
    let (http, action) = send(&verifier, forwarded(&http), &[body])?;
    assert_401(&http, action);
    // a path changed in flight: tampered
    let mut h = good.clone();
    replace(&mut h, ":path", "/v1/admin");
    let (http, action) = send(&verifier, h, &[body])?;
    assert_401(&http, action);
    // the body changed in flight: tampered, refused at the body's end
    let (http, action) = send(&verifier, good.clone(), &[br#"{"amount": 1000}"#])?;
    assert_401(&http, action);
    assert!(http.request_body_sent().is_empty(), "nothing was forwarded");
    // under-covered
    let narrow = start(
        r#"{"sign": {"key_id": "gw-2026-12", "key": "{vault://env/SIGNING_KEY}", "components": ["@method"]}}"#,
    )?;
    narrow.set_time(now);
    let (http, _) = send(&narrow, base("GET", "/"), &[])?;
    let (http, action) = send(&verifier, forwarded(&http), &[])?;
    assert_401(&http, action);
    // replayed after max_age
    verifier.set_time(now + Duration::from_secs(31));
    let (http, action) = send(&verifier, good.clone(), &[body])?;
    assert_401(&http, action);
    // ... while within max_age it still passes
    verifier.set_time(now + Duration::from_secs(30));
    let (_, action) = send(&verifier, good, &[body])?;
    assert_eq!(action, Action::Continue);

    for (reason, count) in [
        ("missing", 1),
        ("malformed", 1),
        ("unknown_key", 1),
        ("tampered", 2),
        ("under_covered", 1),
        ("expired", 1),
    ] {
        let name = format!("secret_header.verify_signature.rejected.{reason}");
        assert_eq!(counter(&verifier, &name), count, "{name}");
    }
    assert_eq!(
        counter(&verifier, "secret_header.verify_signature.accepted"),
        1
    );
    Ok(())
}

#[test]
fn rotation_accepts_the_old_and_the_new_key() -> TestResult {
    let verifier = start(VERIFY)?;
    let old_signer = start(
        r#"{"sign": {"key_id": "gw-2026-11", "key": "{vault://env/KEY_OLD}", "content_digest": true}}"#,
    )?;
    old_signer.set_time(verifier.now());
    let (http, _) = send(&old_signer, base("GET", "/"), &[])?;
    let (_, action) = send(&verifier, forwarded(&http), &[])?;
    assert_eq!(action, Action::Continue);
    let signed = signed_by_gateway(verifier.now(), base("GET", "/"), b"")?;
    let (_, action) = send(&verifier, signed, &[])?;
    assert_eq!(action, Action::Continue);
    Ok(())
}

#[test]
fn a_nonce_is_random_per_request() -> TestResult {
    let signer = start(&SIGN.replace("\"content_digest\": true", "\"nonce\": true"))?;
    let nonce = |http: &HttpStream| {
        let input = http.request_header("signature-input").unwrap().to_owned();
        input.split(";nonce=").nth(1).unwrap().to_owned()
    };
    let (a, _) = send(&signer, base("GET", "/"), &[])?;
    let (b, _) = send(&signer, base("GET", "/"), &[])?;
    assert_eq!(nonce(&a).len(), 26, "16 bytes, base64, quoted");
    assert_ne!(nonce(&a), nonce(&b));
    Ok(())
}
