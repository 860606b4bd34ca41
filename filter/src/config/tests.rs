//! Parsing, validation, references and every kind of bad configuration.

use super::*;
use crate::error::ReferenceProblem;
use std::collections::HashMap;

/// The secret used throughout: every error message is checked not to contain it.
const SECRET: &str = "s3cr3t-Value";

fn env_with(vars: &[(&str, &str)]) -> HashMap<String, String> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn parse_with(config: &str, vars: &[(&str, &str)]) -> Result<Plan, ConfigError> {
    let env = env_with(vars);
    Plan::parse(config.as_bytes(), &|name| env.get(name).cloned())
}

fn parse(config: &str) -> Result<Plan, ConfigError> {
    parse_with(config, &[("BACKEND_TOKEN", SECRET)])
}

/// Parses a config that must fail, and checks the message never leaks the secret.
fn error(config: &str) -> ConfigError {
    let err = parse(config).expect_err("configuration should be refused");
    let text = err.to_string();
    assert!(!text.contains(SECRET), "error leaks the secret: {text}");
    assert!(
        !text.contains("my-secret"),
        "error leaks a literal value: {text}"
    );
    assert!(!text.contains('\n'), "error must be one line: {text:?}");
    err
}

fn h(name: &str, value: &str) -> Header {
    Header {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

// === valid configurations ===

#[test]
fn kong_guide_config_loads_unchanged() {
    let plan = parse(r#"{"add":{"headers":["Authorization:Bearer my-secret-key"]}}"#).unwrap();
    assert_eq!(plan.add, vec![h("authorization", "Bearer my-secret-key")]);
    assert!(plan.remove.is_empty() && plan.set.is_empty());
}

#[test]
fn every_section_parses_in_kong_shape() {
    let plan = parse(
        r#"{"remove":{"headers":["X-Debug","x-trace"]},
            "rename":{"headers":["X-Old:X-New"]},
            "replace":{"headers":["x-env:prod"]},
            "add":{"headers":["x-a:1"]},
            "append":{"headers":["x-tag:gw"]},
            "set":{"headers":["authorization:Bearer t"]}}"#,
    )
    .unwrap();
    assert_eq!(plan.remove, vec!["x-debug", "x-trace"]);
    assert_eq!(
        plan.rename,
        vec![Rename {
            from: "x-old".into(),
            to: "x-new".into()
        }]
    );
    assert_eq!(plan.replace, vec![h("x-env", "prod")]);
    assert_eq!(plan.add, vec![h("x-a", "1")]);
    assert_eq!(plan.append, vec![h("x-tag", "gw")]);
    assert_eq!(plan.set, vec![h("authorization", "Bearer t")]);
}

#[test]
fn value_keeps_colons_and_follows_kong_split() {
    let plan =
        parse(r#"{"add":{"headers":["x-url:http://a:1/b", "x-k::v", "x-s:  padded  "]}}"#).unwrap();
    assert_eq!(plan.add[0].value, "http://a:1/b");
    // Kong's `^([^:]+):*(.-)$` skips a run of colons after the name.
    assert_eq!(plan.add[1].value, "v");
    // Optional whitespace around the value is trimmed.
    assert_eq!(plan.add[2].value, "padded");
}

#[test]
fn full_kong_export_with_empty_other_keys_loads() {
    let plan = parse(
        r#"{"http_method":null,
            "remove":{"headers":[],"querystring":[],"body":[]},
            "rename":{"headers":[],"querystring":[],"body":[]},
            "replace":{"headers":[],"querystring":[],"body":[],"uri":null},
            "add":{"headers":["Authorization:Bearer my-secret-key"],"querystring":[],"body":[]},
            "append":{"headers":null,"querystring":[],"body":[]}}"#,
    )
    .unwrap();
    assert_eq!(plan.add.len(), 1);
}

// === references ===

#[test]
fn reference_resolves_inside_a_value() {
    let plan = parse(r#"{"set":{"headers":["Authorization:Bearer {vault://env/BACKEND_TOKEN}"]}}"#)
        .unwrap();
    assert_eq!(
        plan.set,
        vec![h("authorization", &format!("Bearer {SECRET}"))]
    );
}

#[test]
fn reference_name_is_upper_cased_and_dashes_become_underscores() {
    let plan = parse(r#"{"set":{"headers":["x-t:{vault://env/backend-token}"]}}"#).unwrap();
    assert_eq!(plan.set[0].value, SECRET);
    assert_eq!(env_variable_name("my-secret-value"), "MY_SECRET_VALUE");
}

#[test]
fn several_references_and_json_key() {
    let plan = parse_with(
        r#"{"set":{"headers":["x-creds:{vault://env/user}:{vault://env/pg-creds/password}"]}}"#,
        &[
            ("USER", "alice"),
            ("PG_CREDS", r#"{"username":"u","password":"pw"}"#),
        ],
    )
    .unwrap();
    assert_eq!(plan.set[0].value, "alice:pw");
}

#[test]
fn debug_output_redacts_values() {
    let plan = parse(r#"{"set":{"headers":["Authorization:Bearer {vault://env/BACKEND_TOKEN}"]}}"#)
        .unwrap();
    let shown = format!("{plan:?} {}", plan.summary());
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("authorization"), "{shown}");
}

// === bad configurations ===

#[test]
fn not_json() {
    let err = error(r#"{"add":{"headers":["Authorization:Bearer my-secret-key"]"#);
    assert!(matches!(err.problem, Problem::NotJson(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("configuration is not valid JSON"),
        "{err}"
    );
}

#[test]
fn empty_or_no_operations() {
    for config in ["", "  ", "{}", r#"{"add":{"headers":[]}}"#] {
        assert_eq!(error(config).problem, Problem::NoOperations, "{config:?}");
    }
}

#[test]
fn not_an_object() {
    let err = error(r#"["Authorization:Bearer my-secret-key"]"#);
    assert_eq!(
        err.problem,
        Problem::WrongType {
            expected: "a JSON object"
        }
    );
}

#[test]
fn unknown_top_level_key() {
    let err = error(r#"{"ad":{"headers":["x:y"]}}"#);
    assert!(
        matches!(&err.problem, Problem::UnknownKey { key, .. } if key == "ad"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "unknown key \"ad\" (known: remove, rename, replace, add, append, set, verify, verify_signature, sign)"
    );
}

#[test]
fn unknown_key_inside_a_section() {
    let err = error(r#"{"add":{"header":["x:y"]}}"#);
    assert_eq!(err.at, "add");
    assert!(
        err.to_string()
            .starts_with("add: unknown key \"header\" (known: headers"),
        "{err}"
    );
    // `set` is ours and has no Kong extras.
    let err = error(r#"{"set":{"headers":["x:y"],"body":[]}}"#);
    assert_eq!(
        err.to_string(),
        "set: unknown key \"body\" (known: headers)"
    );
}

#[test]
fn kong_keys_that_would_do_something_are_refused() {
    let err = error(r#"{"add":{"headers":["x:y"],"querystring":["q:1"]}}"#);
    assert_eq!(err.at, "add.querystring");
    assert_eq!(err.problem, Problem::UnsupportedKongKey);
    assert_eq!(
        error(r#"{"http_method":"POST","add":{"headers":["x:y"]}}"#).at,
        "http_method"
    );
    assert_eq!(
        error(r#"{"replace":{"uri":"/x"},"add":{"headers":["x:y"]}}"#).at,
        "replace.uri"
    );
}

#[test]
fn wrong_types_do_not_echo_values() {
    // serde's own message would quote this string; ours must not.
    let err = error(r#"{"add":{"headers":"Authorization:Bearer my-secret-key"}}"#);
    assert_eq!(err.at, "add.headers");
    assert_eq!(
        err.problem,
        Problem::WrongType {
            expected: "an array of strings"
        }
    );
    let err = error(r#"{"add":{"headers":[42]}}"#);
    assert_eq!(err.at, "add.headers[0]");
    let err = error(r#"{"add":"Authorization:Bearer my-secret-key"}"#);
    assert_eq!(err.at, "add");
}

#[test]
fn entry_without_colon() {
    let err = error(r#"{"add":{"headers":["x-ok:1","Bearer my-secret-key"]}}"#);
    assert_eq!(err.at, "add.headers[1]");
    assert_eq!(
        err.problem,
        Problem::MissingColon {
            expected: "name:value"
        }
    );
    assert_eq!(
        err.to_string(),
        "add.headers[1]: entry has no ':' (expected \"name:value\")"
    );
    let err = error(r#"{"rename":{"headers":["x-old"]}}"#);
    assert_eq!(
        err.problem,
        Problem::MissingColon {
            expected: "old:new"
        }
    );
}

#[test]
fn invalid_header_names() {
    let err = error(r#"{"add":{"headers":["Authorization Bearer my-secret-key:x"]}}"#);
    assert_eq!(err.at, "add.headers[0]");
    assert!(
        matches!(
            err.problem,
            Problem::InvalidName {
                which: "header name",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("' ' at byte 13"), "{err}");
    assert!(matches!(
        error(r#"{"add":{"headers":[":x"]}}"#).problem,
        Problem::InvalidName { .. }
    ));
    assert!(matches!(
        error(r#"{"remove":{"headers":["x y"]}}"#).problem,
        Problem::InvalidName { .. }
    ));
    assert!(matches!(
        error(r#"{"rename":{"headers":["x-a:x b"]}}"#).problem,
        Problem::InvalidName {
            which: "new name",
            ..
        }
    ));
    assert!(matches!(
        error(r#"{"set":{"headers":["x\u00e9:1"]}}"#).problem,
        Problem::InvalidName { .. }
    ));
}

#[test]
fn reserved_names() {
    for name in ["Host", "content-length", "Transfer-Encoding", "connection"] {
        let err = error(&format!(r#"{{"set":{{"headers":["{name}:x"]}}}}"#));
        assert!(
            matches!(err.problem, Problem::ReservedName { .. }),
            "{name}: {err}"
        );
    }
}

#[test]
fn value_with_cr_or_lf() {
    for value in [r"x\r\nx-injected: 1", r"a\nb", r"a\rb", r"a\u0000b"] {
        let err = error(&format!(r#"{{"add":{{"headers":["x-v:{value}"]}}}}"#));
        assert_eq!(err.problem, Problem::ValueControlChar, "{value}");
        assert_eq!(err.header.as_deref(), Some("x-v"));
    }
    // A tab is allowed inside a value.
    assert!(parse(r#"{"add":{"headers":["x-v:a\tb"]}}"#).is_ok());
}

#[test]
fn empty_value_rename_to_self_duplicate_set_and_templates() {
    assert_eq!(
        error(r#"{"add":{"headers":["x-v:"]}}"#).problem,
        Problem::EmptyValue
    );
    assert_eq!(
        error(r#"{"rename":{"headers":["X-A:x-a"]}}"#).problem,
        Problem::RenameToSelf
    );
    let err = error(r#"{"set":{"headers":["a:1","A:2"]}}"#);
    assert_eq!(
        (err.at.as_str(), err.problem),
        ("set.headers[1]", Problem::DuplicateSet)
    );
    assert_eq!(
        error(r#"{"add":{"headers":["x:$(headers.host)"]}}"#).problem,
        Problem::Template
    );
}

#[test]
fn unresolvable_reference() {
    let err = error(r#"{"set":{"headers":["Authorization:Bearer {vault://env/missing-token}"]}}"#);
    assert_eq!(err.at, "set.headers[0]");
    assert_eq!(err.header.as_deref(), Some("authorization"));
    assert_eq!(
        err.problem,
        Problem::Reference {
            reference: "{vault://env/missing-token}".into(),
            problem: ReferenceProblem::NotSet {
                variable: "MISSING_TOKEN".into()
            },
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("MISSING_TOKEN") && text.contains("host_env_keys"),
        "{text}"
    );
}

#[test]
fn malformed_and_unsupported_references() {
    let cases = [
        (r#"x:{vault://env/TOKEN"#, ReferenceProblem::Unterminated),
        (
            r#"x:{vault://aws/TOKEN}"#,
            ReferenceProblem::UnsupportedVault,
        ),
        (
            r#"x:{vault://env}"#,
            ReferenceProblem::Malformed("no '/' after the vault name"),
        ),
        (
            r#"x:{vault://env/TOKEN#2}"#,
            ReferenceProblem::Malformed("query and version are not supported"),
        ),
        (
            r#"x:{vault://env/my secret}"#,
            ReferenceProblem::Malformed("NAME must be letters, digits, '_' or '-'"),
        ),
    ];
    for (entry, want) in cases {
        let err = error(&format!(r#"{{"set":{{"headers":["{entry}"]}}}}"#));
        match err.problem {
            Problem::Reference { reference, problem } => {
                assert_eq!(problem, want, "{entry}");
                assert_eq!(
                    reference, "{vault://...}",
                    "malformed references are not echoed"
                );
            }
            other => panic!("{entry}: unexpected {other:?}"),
        }
    }
}

#[test]
fn resolved_values_are_checked_without_being_shown() {
    let check = |vars: &[(&str, &str)], entry: &str| {
        let err = parse_with(&format!(r#"{{"set":{{"headers":["{entry}"]}}}}"#), vars).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("evil") && !text.contains(SECRET), "{text}");
        err.problem
    };
    let Problem::Reference { problem, .. } = check(&[("T", "a\r\nevil: 1")], "x:{vault://env/T}")
    else {
        panic!("expected a reference problem")
    };
    assert_eq!(
        problem,
        ReferenceProblem::ControlChar {
            variable: "T".into()
        }
    );
    let Problem::Reference { problem, .. } = check(&[("T", "")], "x:{vault://env/T}") else {
        panic!("expected a reference problem")
    };
    assert_eq!(
        problem,
        ReferenceProblem::Empty {
            variable: "T".into()
        }
    );
    let Problem::Reference { problem, .. } =
        check(&[("T", r#"{"user":"evil"}"#)], "x:{vault://env/T/password}")
    else {
        panic!("expected a reference problem")
    };
    assert_eq!(
        problem,
        ReferenceProblem::NoSuchKey {
            variable: "T".into(),
            key: "password".into()
        }
    );
}
