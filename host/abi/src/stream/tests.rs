//! HeaderMap behaviour and the proxy-wasm map serialization.

use super::*;

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs.iter().map(|(k, v)| (*k, *v)).collect()
}

#[test]
fn names_are_lowercased_and_lookups_ignore_case() {
    let mut m = HeaderMap::new();
    m.add("X-Api-Key", "a");
    assert_eq!(m.iter().next(), Some(("x-api-key", &b"a"[..])));
    assert_eq!(m.get("X-API-KEY"), Some(&b"a"[..]));
    assert_eq!(m.get_str("x-api-key"), Some("a"));
    assert_eq!(m.get("other"), None);
}

#[test]
fn add_keeps_duplicates_in_order() {
    let mut m = map(&[("a", "1"), ("b", "2")]);
    m.add("a", "3");
    assert_eq!(
        m.get_all("A").collect::<Vec<_>>(),
        vec![&b"1"[..], &b"3"[..]]
    );
    assert_eq!(m.get("a"), Some(&b"1"[..]));
    assert_eq!(m.len(), 3);
}

#[test]
fn replace_and_remove_drop_every_copy() {
    let mut m = map(&[("a", "1"), ("b", "2"), ("a", "3")]);
    m.replace("A", "9");
    assert_eq!(m.get_all("a").collect::<Vec<_>>(), vec![&b"9"[..]]);
    m.remove("B");
    assert!(m.get("b").is_none());
    assert_eq!(m.len(), 1);
    m.clear();
    assert!(m.is_empty());
}

#[test]
fn replace_bytes_overwrites_first_in_place_like_envoy() {
    let mut m = map(&[("a", "1"), ("b", "2"), ("a", "3")]);
    m.replace_bytes("a", b"9");
    let pairs: Vec<_> = m.iter().collect();
    assert_eq!(pairs, vec![("a", &b"9"[..]), ("b", &b"2"[..])]);
    m.replace_bytes("C", b"x");
    assert_eq!(m.iter().last(), Some(("c", &b"x"[..])));
}

#[test]
fn values_may_be_binary() {
    let mut m = HeaderMap::new();
    m.add("bin", vec![0xff, 0x00, 0x80]);
    assert_eq!(m.get("bin"), Some(&[0xff, 0x00, 0x80][..]));
    assert_eq!(m.get_str("bin"), None);
}

#[test]
fn serialization_layout_matches_the_spec() {
    let m = map(&[("a", "bc"), ("de", "")]);
    let mut out = Vec::new();
    m.serialize_into(&mut out);
    let mut expected = Vec::new();
    expected.extend_from_slice(&2u32.to_le_bytes());
    expected.extend_from_slice(&1u32.to_le_bytes());
    expected.extend_from_slice(&2u32.to_le_bytes());
    expected.extend_from_slice(&2u32.to_le_bytes());
    expected.extend_from_slice(&0u32.to_le_bytes());
    expected.extend_from_slice(b"a\0bc\0de\0\0");
    assert_eq!(out, expected);
    assert_eq!(m.serialized_len(), expected.len());

    let mut slice = vec![0u8; expected.len()];
    assert!(m.serialize_to_slice(&mut slice));
    assert_eq!(slice, expected);
    assert!(!m.serialize_to_slice(&mut [0u8; 3]));
}

#[test]
fn empty_map_serializes_to_nothing() {
    let m = HeaderMap::new();
    let mut out = Vec::new();
    m.serialize_into(&mut out);
    assert!(out.is_empty());
    assert_eq!(m.serialized_len(), 0);
}

#[test]
fn round_trip() {
    let m = map(&[
        (":path", "/x?y=1"),
        ("x-a", "1"),
        ("x-a", "2"),
        ("empty", ""),
    ]);
    let mut out = Vec::new();
    m.serialize_into(&mut out);
    assert_eq!(deserialize_map(&out, 16).unwrap(), m);
}

#[test]
fn empty_inputs_deserialize_to_empty_map() {
    assert!(deserialize_map(b"", 16).unwrap().is_empty());
    assert!(deserialize_map(b"\0", 16).unwrap().is_empty());
    assert!(deserialize_map(&0u32.to_le_bytes(), 16).unwrap().is_empty());
}

#[test]
fn malformed_maps_are_rejected_not_trusted() {
    // Count says 1 pair, but no sizes follow.
    assert_eq!(
        deserialize_map(&1u32.to_le_bytes(), 16),
        Err(MapError::Truncated)
    );
    // A huge count must not allocate or overflow.
    assert_eq!(
        deserialize_map(&u32::MAX.to_le_bytes(), 16),
        Err(MapError::TooManyPairs(u32::MAX as usize))
    );
    // Sizes point past the end.
    let mut b = Vec::new();
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&u32::MAX.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(b"a\0b\0");
    assert_eq!(deserialize_map(&b, 16), Err(MapError::Truncated));
    // Missing NUL terminator.
    let mut b = Vec::new();
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(b"aXbX");
    assert_eq!(deserialize_map(&b, 16), Err(MapError::MissingNul));
    // Name not UTF-8.
    let mut b = Vec::new();
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(b"\xff\0\0");
    assert_eq!(deserialize_map(&b, 16), Err(MapError::NameNotUtf8));
    // Garbage shorter than a count.
    assert_eq!(deserialize_map(b"\x01\x02", 16), Err(MapError::Truncated));
}

#[test]
fn random_bytes_never_panic() {
    // A small deterministic generator (xorshift): arbitrary inputs, some with plausible headers.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let len = (next() % 64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if len >= 4 && next() % 2 == 0 {
            bytes[..4].copy_from_slice(&((next() % 4) as u32).to_le_bytes());
        }
        if let Ok(map) = deserialize_map(&bytes, 16) {
            // Whatever parses re-serializes to something that parses to the same map.
            let mut out = Vec::new();
            map.serialize_into(&mut out);
            assert_eq!(deserialize_map(&out, 16).unwrap(), map);
        }
    }
}
