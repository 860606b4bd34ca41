//! Each operation's semantics, their order, and `set`'s anti-spoofing rule.

use super::*;
use crate::config::Plan;

fn plan(config: &str) -> Plan {
    Plan::parse(config.as_bytes(), &|name| {
        (name == "TOKEN").then(|| "t0k3n".to_owned())
    })
    .expect("valid configuration")
}

fn run(config: &str, request: &[(&str, &str)]) -> HeaderList {
    let mut headers = HeaderList::from_pairs(request);
    apply(&plan(config), &mut headers);
    headers
}

const BASE: &[(&str, &str)] = &[(":path", "/"), ("accept", "*/*")];

#[test]
fn kong_guide_add_sets_an_absent_header() {
    let out = run(
        r#"{"add":{"headers":["Authorization:Bearer my-secret-key"]}}"#,
        BASE,
    );
    assert_eq!(out.get_all("authorization"), ["Bearer my-secret-key"]);
    assert_eq!(out.get_all("accept"), ["*/*"], "other headers untouched");
}

#[test]
fn add_keeps_a_client_sent_header() {
    // Kong's documented behaviour: add is skipped when the client sent the header.
    let out = run(
        r#"{"add":{"headers":["Authorization:Bearer my-secret-key"]}}"#,
        &[("Authorization", "Bearer client")],
    );
    assert_eq!(out.get_all("authorization"), ["Bearer client"]);
}

#[test]
fn remove_drops_every_copy_and_ignores_absent() {
    let out = run(
        r#"{"remove":{"headers":["x-debug","x-absent"]}}"#,
        &[("x-debug", "1"), ("accept", "a"), ("X-Debug", "2")],
    );
    assert!(out.get_all("x-debug").is_empty());
    assert_eq!(out.get_all("accept"), ["a"]);
}

#[test]
fn rename_moves_every_value_and_overwrites_the_target() {
    let out = run(
        r#"{"rename":{"headers":["x-old:x-new","x-absent:x-other"]}}"#,
        &[("x-old", "1"), ("x-new", "stale"), ("x-old", "2")],
    );
    assert!(out.get_all("x-old").is_empty());
    assert_eq!(out.get_all("x-new"), ["1", "2"]);
    assert!(
        out.get_all("x-other").is_empty(),
        "absent header: nothing renamed"
    );
}

#[test]
fn replace_only_touches_a_present_header_and_leaves_one_value() {
    let config = r#"{"replace":{"headers":["x-env:prod"]}}"#;
    assert!(run(config, BASE).get_all("x-env").is_empty());
    let out = run(config, &[("x-env", "dev"), ("x-env", "test")]);
    assert_eq!(out.get_all("x-env"), ["prod"]);
}

#[test]
fn append_adds_another_value() {
    let config = r#"{"append":{"headers":["x-tag:gw"]}}"#;
    assert_eq!(run(config, BASE).get_all("x-tag"), ["gw"]);
    assert_eq!(
        run(config, &[("x-tag", "client")]).get_all("x-tag"),
        ["client", "gw"]
    );
}

#[test]
fn set_replaces_every_spoofed_copy_with_exactly_one_value() {
    let config = r#"{"set":{"headers":["Authorization:Bearer {vault://env/TOKEN}"]}}"#;
    let out = run(
        config,
        &[
            ("authorization", "Bearer spoof-1"),
            ("accept", "a"),
            ("Authorization", "Bearer spoof-2"),
        ],
    );
    assert_eq!(out.get_all("authorization"), ["Bearer t0k3n"]);
    // And a client that sends none still gets it (it cannot suppress the secret).
    assert_eq!(run(config, BASE).get_all("authorization"), ["Bearer t0k3n"]);
}

#[test]
fn operations_run_in_kong_order_then_set() {
    // Each step sees the result of the previous one:
    // remove x-a; rename x-b -> x-a (so x-a exists again); replace x-a (present now);
    // add x-a is skipped (present); append x-a adds one; set x-c overrides the client.
    let out = run(
        r#"{"set":{"headers":["x-c:set"]},
            "append":{"headers":["x-a:appended"]},
            "add":{"headers":["x-a:added","x-d:added"]},
            "replace":{"headers":["x-a:replaced"]},
            "rename":{"headers":["x-b:x-a"]},
            "remove":{"headers":["x-a"]}}"#,
        &[
            ("x-a", "client-a"),
            ("x-b", "client-b"),
            ("x-c", "client-c"),
        ],
    );
    assert_eq!(out.get_all("x-a"), ["replaced", "appended"]);
    assert!(out.get_all("x-b").is_empty());
    assert_eq!(out.get_all("x-c"), ["set"]);
    assert_eq!(out.get_all("x-d"), ["added"]);
}

#[test]
fn remove_then_add_overrides_a_client_value_as_kong_advises() {
    let out = run(
        r#"{"remove":{"headers":["authorization"]},"add":{"headers":["authorization:mine"]}}"#,
        &[("authorization", "client")],
    );
    assert_eq!(out.get_all("authorization"), ["mine"]);
}

#[test]
fn non_utf8_values_survive_a_rename() {
    let mut headers = HeaderList(vec![("x-old".into(), vec![0xff, b'a'])]);
    apply(
        &plan(r#"{"rename":{"headers":["x-old:x-new"]}}"#),
        &mut headers,
    );
    assert_eq!(headers.0, vec![("x-new".to_owned(), vec![0xff, b'a'])]);
}
