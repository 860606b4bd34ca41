//! `verify_signature`: the RFC 9421 B.2.5 example verifies, and each rejection reason.

use super::*;
use crate::config::Plan;
use crate::sign::Sign;
use crate::signature_base::tests::{TEST_SHARED_SECRET, test_request};
use crate::transform::{HeaderList, Headers};

const KEY: &str = "0123456789abcdef0123456789abcdef";
const OTHER_KEY: &str = "fedcba9876543210fedcba9876543210";
const NOW: u64 = 1_700_000_000;

fn env(name: &str) -> Option<String> {
    match name {
        "KEY_NEXT" => Some(KEY.to_owned()),
        "KEY_OLD" => Some(OTHER_KEY.to_owned()),
        "RFC_KEY" => Some(format!("base64:{TEST_SHARED_SECRET}")),
        _ => None,
    }
}

fn verifier(config: &str) -> VerifySignature {
    Plan::parse(config.as_bytes(), &env)
        .unwrap()
        .verify_signature
        .expect("verify_signature section")
}

const ISSUE: &str = r#"{"verify_signature": {"keys": {"gw-2026-12": "{vault://env/KEY_NEXT}", "gw-2026-11": "{vault://env/KEY_OLD}"},
    "required_components": ["@method", "@authority", "@path"], "max_age": "30s", "strip": true}}"#;

fn signer(key_id: &str, key_var: &str, components: &str) -> Sign {
    let config = format!(
        r#"{{"sign": {{"key_id": "{key_id}", "key": "{{vault://env/{key_var}}}", "components": {components}, "content_digest": true}}}}"#
    );
    Plan::parse(config.as_bytes(), &env).unwrap().sign.unwrap()
}

/// A request signed at `created` by key `gw-2026-12`, with `body`.
fn signed(created: u64, body: &[u8]) -> HeaderList {
    let mut headers = HeaderList::from_pairs(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "api.internal"),
        (":path", "/v1/items?x=1"),
        ("content-type", "application/json"),
    ]);
    signer(
        "gw-2026-12",
        "KEY_NEXT",
        r#"["@method", "@authority", "@path", "@query", "content-type"]"#,
    )
    .apply(&mut headers, Some(body), created, None);
    headers
}

fn set(headers: &mut HeaderList, name: &str, value: &str) {
    headers.remove(name);
    headers.add(name, value.as_bytes());
}

#[test]
fn rfc_9421_b_2_5_verifies() {
    let v = verifier(
        r#"{"verify_signature": {"keys": {"test-shared-secret": "{vault://env/RFC_KEY}"},
        "required_components": ["@authority", "date"], "max_age": 60}}"#,
    );
    let mut request = test_request();
    request.push((
        "signature-input".into(),
        br#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#.to_vec(),
    ));
    request.push((
        "signature".into(),
        b"sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:".to_vec(),
    ));
    let verified = v.check(&request, 1_618_884_473 + 10).unwrap();
    assert_eq!(verified.label, "sig-b25");
    assert_eq!(verified.content_digest, None);
    // One bit of the signature changed: tampered.
    let last = request.len() - 1;
    request[last].1 = b"sig-b25=:qxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:".to_vec();
    assert_eq!(v.check(&request, 1_618_884_473), Err(Rejection::Tampered));
}

#[test]
fn the_issue_configuration_parses() {
    let v = verifier(ISSUE);
    assert_eq!(
        v.key_ids(),
        ["gw-2026-11", "gw-2026-12"],
        "serde_json sorts keys"
    );
    assert_eq!(v.max_age, 30);
    assert!(v.strip);
    let text = format!("{v:?}");
    assert!(!text.contains(KEY) && !text.contains(OTHER_KEY), "{text}");
}

#[test]
fn a_fresh_signature_passes_with_either_key() {
    let v = verifier(ISSUE);
    let h = signed(NOW, b"{}");
    let verified = v.check(&h.0, NOW + 3).unwrap();
    assert_eq!(verified.content_digest, Some(crypto::sha256(b"{}")));
    assert_eq!(check_body(&verified.content_digest.unwrap(), b"{}"), Ok(()));

    let mut old = HeaderList::from_pairs(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "a"),
        (":path", "/"),
    ]);
    signer(
        "gw-2026-11",
        "KEY_OLD",
        r#"["@method", "@authority", "@path"]"#,
    )
    .apply(&mut old, Some(b""), NOW, None);
    assert!(v.check(&old.0, NOW).is_ok());
}

#[test]
fn missing() {
    let v = verifier(ISSUE);
    let h = HeaderList::from_pairs(&[(":method", "GET"), (":path", "/")]);
    assert_eq!(v.check(&h.0, NOW), Err(Rejection::Missing));
}

#[test]
fn malformed() {
    let v = verifier(ISSUE);
    let good = signed(NOW, b"");
    for (name, value) in [
        ("signature", None),
        ("signature-input", None),
        ("signature", Some("wasmgate=:not base64:")),
        ("signature", Some("wasmgate=\"a string\"")),
        ("signature", Some("other=:AAAA:")),
        ("signature-input", Some("wasmgate=(")),
        (
            "signature-input",
            Some(r#"wasmgate=("@method");keyid="gw-2026-12""#),
        ),
        (
            "signature-input",
            Some(r#"wasmgate=("@method" "@method");created=1700000000;keyid="gw-2026-12""#),
        ),
        (
            "signature-input",
            Some(
                r#"wasmgate=("@method";req "@authority" "@path");created=1700000000;keyid="gw-2026-12""#,
            ),
        ),
        (
            "signature-input",
            Some(
                r#"wasmgate=("@method" "@authority" "@path");created=1700000000;keyid="gw-2026-12";alg="rsa-pss-sha512""#,
            ),
        ),
        (
            "signature-input",
            Some(
                r#"wasmgate=("@method" "@authority" "@path");created="1700000000";keyid="gw-2026-12""#,
            ),
        ),
    ] {
        let mut h = good.clone();
        match value {
            None => h.remove(name),
            Some(value) => set(&mut h, name, value),
        }
        assert_eq!(
            v.check(&h.0, NOW),
            Err(Rejection::Malformed),
            "{name}: {value:?}"
        );
    }
}

#[test]
fn unknown_key() {
    let v = verifier(r#"{"verify_signature": {"keys": {"gw-2026-11": "{vault://env/KEY_OLD}"}}}"#);
    assert_eq!(
        v.check(&signed(NOW, b"").0, NOW),
        Err(Rejection::UnknownKey)
    );
    // No keyid at all: the same.
    let mut h = signed(NOW, b"");
    set(
        &mut h,
        "signature-input",
        r#"wasmgate=("@method");created=1700000000"#,
    );
    assert_eq!(v.check(&h.0, NOW), Err(Rejection::UnknownKey));
}

#[test]
fn expired_or_from_the_future() {
    let v = verifier(ISSUE);
    let h = signed(NOW, b"");
    assert!(v.check(&h.0, NOW + 30).is_ok(), "max_age is inclusive");
    assert_eq!(
        v.check(&h.0, NOW + 31),
        Err(Rejection::Expired),
        "replayed after max_age"
    );
    assert!(
        v.check(&h.0, NOW - CLOCK_SKEW).is_ok(),
        "small skew allowed"
    );
    assert_eq!(v.check(&h.0, NOW - CLOCK_SKEW - 1), Err(Rejection::Expired));
    // expires, when present, is honoured (the signature must then cover it: signed here).
    let rfc_signer = signer("gw-2026-12", "KEY_NEXT", r#"["@method"]"#);
    let mut h = HeaderList::from_pairs(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "a"),
        (":path", "/"),
    ]);
    rfc_signer.apply(&mut h, Some(b""), NOW, None);
    let input = h.get_all("signature-input")[0].replace(";alg=", ";expires=1700000001;alg=");
    set(&mut h, "signature-input", &input);
    let lax = verifier(
        r#"{"verify_signature": {"keys": {"gw-2026-12": "{vault://env/KEY_NEXT}"}, "required_components": ["@method"]}}"#,
    );
    assert_eq!(lax.check(&h.0, NOW + 2), Err(Rejection::Expired));
}

#[test]
fn under_covered() {
    let v = verifier(ISSUE);
    let mut h = HeaderList::from_pairs(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "a"),
        (":path", "/"),
    ]);
    signer("gw-2026-12", "KEY_NEXT", r#"["@method", "@authority"]"#).apply(
        &mut h,
        Some(b""),
        NOW,
        None,
    );
    assert_eq!(v.check(&h.0, NOW), Err(Rejection::UnderCovered));
}

#[test]
fn tampered_component_signature_or_body() {
    let v = verifier(ISSUE);
    let good = signed(NOW, b"{\"amount\":1}");
    for (name, value) in [
        (":path", "/v1/admin?x=1"),
        (":path", "/v1/items?x=2"),
        (":method", "DELETE"),
        (":authority", "evil.example"),
        ("content-type", "text/plain"),
        (
            "content-digest",
            "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:",
        ),
    ] {
        let mut h = good.clone();
        set(&mut h, name, value);
        assert_eq!(v.check(&h.0, NOW), Err(Rejection::Tampered), "{name}");
    }
    // A covered field removed in flight.
    let mut h = good.clone();
    h.remove("content-type");
    assert_eq!(v.check(&h.0, NOW), Err(Rejection::Tampered));
    // A signature computed with another key under this key id.
    let mut h = good.clone();
    let forged = signer(
        "gw-2026-12",
        "KEY_OLD",
        r#"["@method", "@authority", "@path", "@query", "content-type"]"#,
    );
    forged.apply(&mut h, Some(b"{\"amount\":1}"), NOW, None);
    assert_eq!(v.check(&h.0, NOW), Err(Rejection::Tampered));
    // The headers are intact but the body changed.
    let verified = v.check(&good.0, NOW).unwrap();
    assert_eq!(
        check_body(&verified.content_digest.unwrap(), b"{\"amount\":1000}"),
        Err(Rejection::Tampered)
    );
}

#[test]
fn a_second_signature_from_another_hop_is_ignored() {
    let v = verifier(ISSUE);
    let mut h = signed(NOW, b"");
    let input = h.get_all("signature-input")[0].clone();
    let sig = h.get_all("signature")[0].clone();
    set(
        &mut h,
        "signature-input",
        &format!(r#"proxy=("@method");created=1;keyid="elsewhere", {input}"#),
    );
    set(&mut h, "signature", &format!("proxy=:AAAA:, {sig}"));
    assert_eq!(v.check(&h.0, NOW).unwrap().label, "wasmgate");
}

#[test]
fn metric_names_are_distinct() {
    let mut names: Vec<&str> = Rejection::ALL.iter().map(|r| r.metric()).collect();
    names.push(ACCEPTED_METRIC);
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 7);
}

#[test]
fn durations() {
    for (value, seconds) in [("30", 30), ("30s", 30), ("5m", 300), ("1h", 3600)] {
        let config = format!(
            r#"{{"verify_signature": {{"keys": {{"k": "{KEY}"}}, "max_age": "{value}"}}}}"#
        );
        assert_eq!(verifier(&config).max_age, seconds, "{value}");
    }
    assert_eq!(
        verifier(&format!(
            r#"{{"verify_signature": {{"keys": {{"k": "{KEY}"}}, "max_age": 45}}}}"#
        ))
        .max_age,
        45
    );
    for bad in [
        r#""0s""#,
        r#""-1s""#,
        r#""1d""#,
        r#""s""#,
        r#""1.5s""#,
        "0",
        "-3",
        "true",
    ] {
        let config =
            format!(r#"{{"verify_signature": {{"keys": {{"k": "{KEY}"}}, "max_age": {bad}}}}}"#);
        let err = Plan::parse(config.as_bytes(), &env).expect_err(bad);
        assert_eq!(
            (err.at.as_str(), &err.problem),
            ("verify_signature.max_age", &Problem::InvalidDuration),
            "{bad}"
        );
    }
}

#[test]
fn bad_configurations_name_the_key() {
    for (config, at) in [
        (r#"{"verify_signature": {}}"#, "verify_signature"),
        (
            r#"{"verify_signature": {"keys": {}}}"#,
            "verify_signature.keys",
        ),
        (
            r#"{"verify_signature": {"keys": ["a"]}}"#,
            "verify_signature.keys",
        ),
        (
            r#"{"verify_signature": {"keys": {"k\"": "{vault://env/KEY_NEXT}"}}}"#,
            "verify_signature.keys[0]",
        ),
        (
            r#"{"verify_signature": {"keys": {"k": "short"}}}"#,
            "verify_signature.keys.k",
        ),
        (
            r#"{"verify_signature": {"keys": {"k": "{vault://env/KEY_GONE}"}}}"#,
            "verify_signature.keys.k",
        ),
        (
            r#"{"verify_signature": {"keys": {"k": 5}}}"#,
            "verify_signature.keys.k",
        ),
        (
            r#"{"verify_signature": {"keys": {"k": "{vault://env/KEY_NEXT}"}, "required_components": []}}"#,
            "verify_signature.required_components",
        ),
        (
            r#"{"verify_signature": {"keys": {"k": "{vault://env/KEY_NEXT}"}, "required_components": ["@status"]}}"#,
            "verify_signature.required_components[0]",
        ),
        (
            r#"{"verify_signature": {"keys": {"k": "{vault://env/KEY_NEXT}"}, "strip": 1}}"#,
            "verify_signature.strip",
        ),
        (
            r#"{"verify_signature": {"keys": {"k": "{vault://env/KEY_NEXT}"}, "nonce": true}}"#,
            "verify_signature",
        ),
    ] {
        let err = Plan::parse(config.as_bytes(), &env).expect_err(config);
        assert_eq!(err.at, at, "{config}");
        assert!(!err.to_string().contains(KEY), "{err}");
    }
}
