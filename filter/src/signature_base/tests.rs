//! Known answers from RFC 9421 appendix B: the test request (B.2), the HMAC example (B.2.5)
//! with `test-shared-secret` (B.1.5), and the derived components of §2.2.

use super::*;
use crate::crypto;
use crate::sfv::{BareItem, Params};

/// RFC 9421 B.1.5, `test-shared-secret`, base64.
pub const TEST_SHARED_SECRET: &str =
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";

/// RFC 9421 B.2's test request, as a proxy-wasm host presents it.
pub fn test_request() -> Vec<(String, Vec<u8>)> {
    [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", "/foo?param=Value&Pet=dog"),
        ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("content-type", "application/json"),
        (
            "content-digest",
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
        ),
        ("content-length", "18"),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.as_bytes().to_vec()))
    .collect()
}

fn components(ids: &[&str]) -> Vec<Component> {
    ids.iter().map(|id| Component::parse(id).unwrap()).collect()
}

#[test]
fn rfc_9421_b_2_5_signature_base_and_value() {
    let request = test_request();
    let covered = components(&["date", "@authority", "content-type"]);
    let params: Params = vec![
        ("created".into(), BareItem::Integer(1_618_884_473)),
        (
            "keyid".into(),
            BareItem::String("test-shared-secret".into()),
        ),
    ];
    let signature_params = signature_params(&covered, &params);
    assert_eq!(
        signature_params,
        r#"("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#
    );
    let base = build(Message(&request), &covered, &signature_params).unwrap();
    assert_eq!(
        String::from_utf8(base.clone()).unwrap(),
        concat!(
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n",
            "\"@authority\": example.com\n",
            "\"content-type\": application/json\n",
            "\"@signature-params\": (\"date\" \"@authority\" \"content-type\")",
            ";created=1618884473;keyid=\"test-shared-secret\""
        )
    );
    let key = crypto::base64_decode(TEST_SHARED_SECRET).unwrap();
    assert_eq!(key.len(), 64);
    assert_eq!(
        crypto::base64_encode(&crypto::hmac_sha256(&key, &base)),
        "pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8="
    );
}

#[test]
fn derived_components_of_the_test_request() {
    let request = test_request();
    let m = Message(&request);
    let value =
        |id: &str| String::from_utf8(m.value(&Component::parse(id).unwrap()).unwrap()).unwrap();
    assert_eq!(value("@method"), "POST");
    assert_eq!(value("@authority"), "example.com");
    assert_eq!(value("@scheme"), "https");
    assert_eq!(
        value("@target-uri"),
        "https://example.com/foo?param=Value&Pet=dog"
    );
    assert_eq!(value("@request-target"), "/foo?param=Value&Pet=dog");
    assert_eq!(value("@path"), "/foo");
    assert_eq!(value("@query"), "?param=Value&Pet=dog");
}

#[test]
fn derived_component_edge_cases() {
    let req = |pairs: &[(&str, &str)]| -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
            .collect()
    };
    let get = |r: &[(String, Vec<u8>)], c: Component| {
        Message(r).value(&c).map(|v| String::from_utf8(v).unwrap())
    };
    let r = req(&[
        (":scheme", "HTTPS"),
        (":authority", "API.Example.COM:443"),
        (":path", ""),
    ]);
    assert_eq!(get(&r, Component::Authority).unwrap(), "api.example.com");
    assert_eq!(get(&r, Component::Path).unwrap(), "/");
    assert_eq!(get(&r, Component::Query).unwrap(), "?");
    let r = req(&[
        (":scheme", "http"),
        (":authority", "api:8080"),
        (":path", "/a?"),
    ]);
    assert_eq!(get(&r, Component::Authority).unwrap(), "api:8080");
    assert_eq!(get(&r, Component::Query).unwrap(), "?");
    let r = req(&[
        (":scheme", "http"),
        (":authority", "api:80"),
        (":path", "/a"),
    ]);
    assert_eq!(get(&r, Component::Authority).unwrap(), "api");
    // Fields: every line, trimmed, joined with ", "; absent is None.
    let r = req(&[("x-list", " a "), ("X-List", "b,c"), ("x-empty", "")]);
    assert_eq!(
        get(&r, Component::Field("x-list".into())).unwrap(),
        "a, b,c"
    );
    assert_eq!(get(&r, Component::Field("x-empty".into())).unwrap(), "");
    assert_eq!(get(&r, Component::Field("x-absent".into())), None);
    assert_eq!(get(&r, Component::Method), None);
}

#[test]
fn component_identifiers() {
    for id in [
        "@method",
        "@authority",
        "@scheme",
        "@target-uri",
        "@request-target",
        "@path",
        "@query",
        "content-type",
        "x-a.b_c",
    ] {
        assert_eq!(Component::parse(id).unwrap().id(), id);
    }
    for bad in [
        "@status",
        "@query-param",
        "@nope",
        "Content-Type",
        "",
        "a b",
        "a:b",
    ] {
        assert!(Component::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_missing_component_is_reported() {
    let request = test_request();
    let covered = components(&["@method", "x-absent"]);
    assert_eq!(
        build(Message(&request), &covered, "()"),
        Err(&Component::Field("x-absent".into()))
    );
}
