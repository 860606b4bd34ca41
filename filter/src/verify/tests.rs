//! `verify`: configuration, each rejection reason, rotation, and errors that hold no secret.

use super::*;
use crate::config::Plan;
use crate::error::ReferenceProblem;

const NEXT: &str = "n3xt-t0ken";
const CURRENT: &str = "curr3nt-t0ken";

fn env(name: &str) -> Option<String> {
    match name {
        "TOKEN_NEXT" => Some(NEXT.to_owned()),
        "TOKEN_CURRENT" => Some(CURRENT.to_owned()),
        _ => None,
    }
}

fn parse(config: &str) -> Result<Plan, ConfigError> {
    Plan::parse(config.as_bytes(), &env)
}

fn verify(config: &str) -> Verify {
    parse(config).unwrap().verify.expect("verify section")
}

const ROTATION: &str = r#"{"verify": {"header": "Authorization",
    "accept": ["Bearer {vault://env/TOKEN_NEXT}", "Bearer {vault://env/TOKEN_CURRENT}"],
    "strip": true}}"#;

fn one(value: &str) -> Vec<Vec<u8>> {
    vec![value.as_bytes().to_vec()]
}

#[test]
fn a_verify_only_configuration_is_valid() {
    let plan = parse(ROTATION).unwrap();
    assert!(!plan.is_empty());
    assert!(plan.set.is_empty() && plan.add.is_empty());
    let v = plan.verify.as_ref().unwrap();
    assert_eq!(v.header, "authorization");
    assert_eq!(v.accepted_values(), 2);
    assert!(v.strip);
    assert!(
        plan.summary()
            .contains("verify authorization (2 accepted values, strip true)")
    );
}

#[test]
fn verify_combines_with_header_operations() {
    let plan = parse(
        r#"{"verify": {"header": "x-api-key", "accept": ["k1"]},
            "set": {"headers": ["x-verified:1"]}}"#,
    )
    .unwrap();
    assert_eq!(plan.set.len(), 1);
    assert!(plan.verify.unwrap().strip, "strip defaults to true");
}

#[test]
fn every_accepted_value_passes() {
    let v = verify(ROTATION);
    assert_eq!(v.check(&one(&format!("Bearer {NEXT}"))), Ok(()));
    assert_eq!(v.check(&one(&format!("Bearer {CURRENT}"))), Ok(()));
}

#[test]
fn missing_header_is_rejected() {
    assert_eq!(verify(ROTATION).check(&[]), Err(Rejection::Missing));
}

#[test]
fn repeated_header_is_rejected_even_when_one_copy_is_right() {
    let good = format!("Bearer {NEXT}");
    let v = verify(ROTATION);
    let values = [good.as_bytes().to_vec(), good.as_bytes().to_vec()];
    assert_eq!(v.check(&values), Err(Rejection::Repeated));
    let values = [good.as_bytes().to_vec(), b"Bearer x".to_vec()];
    assert_eq!(v.check(&values), Err(Rejection::Repeated));
}

#[test]
fn anything_else_is_a_mismatch() {
    let v = verify(ROTATION);
    for bad in [
        String::new(),
        "Bearer".to_owned(),
        format!("Bearer {NEXT}x"),
        format!("Bearer {}", &NEXT[..NEXT.len() - 1]),
        format!("bearer {NEXT}"),
        format!("Bearer  {NEXT}"),
        NEXT.to_owned(),
        format!("Basic {NEXT}"),
    ] {
        assert_eq!(v.check(&one(&bad)), Err(Rejection::Mismatch), "{bad:?}");
    }
    // Non-UTF-8 bytes are just another wrong value.
    assert_eq!(v.check(&[vec![0xff, 0xfe]]), Err(Rejection::Mismatch));
}

#[test]
fn rotation_is_a_configuration_change() {
    // Step 1: the verifier accepts old and new; step 3: only the new one.
    let both = verify(ROTATION);
    let only_next = verify(
        r#"{"verify": {"header": "Authorization", "accept": ["Bearer {vault://env/TOKEN_NEXT}"]}}"#,
    );
    let old = format!("Bearer {CURRENT}");
    assert_eq!(both.check(&one(&old)), Ok(()));
    assert_eq!(only_next.check(&one(&old)), Err(Rejection::Mismatch));
}

#[test]
fn challenge_names_the_scheme_of_bearer_values_only() {
    assert_eq!(verify(ROTATION).challenge, "Bearer realm=\"wasmgate\"");
    let generic = verify(r#"{"verify": {"header": "x-api-key", "accept": ["Bearer k"]}}"#);
    assert_eq!(generic.challenge, "Secret realm=\"wasmgate\"");
    let mixed =
        verify(r#"{"verify": {"header": "authorization", "accept": ["Bearer a", "Basic b"]}}"#);
    assert_eq!(mixed.challenge, "Secret realm=\"wasmgate\"");
    let bare = verify(r#"{"verify": {"header": "authorization", "accept": ["token"]}}"#);
    assert_eq!(bare.challenge, "Secret realm=\"wasmgate\"");
}

#[test]
fn metric_names_are_distinct() {
    let mut names: Vec<&str> = Rejection::ALL.iter().map(|r| r.metric()).collect();
    names.push(ACCEPTED_METRIC);
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 4);
}

#[test]
fn debug_output_holds_no_value() {
    let text = format!("{:?}", verify(ROTATION));
    assert!(!text.contains(NEXT) && !text.contains(CURRENT), "{text}");
}

/// Each refused configuration: where it points, and that it never quotes a value.
#[test]
fn bad_configurations_name_the_key_and_entry() {
    for (config, at, problem) in [
        (r#"{"verify": []}"#, "verify", None),
        (
            r#"{"verify": {"accept": ["a"]}}"#,
            "verify",
            Some(Problem::MissingKey { key: "header" }),
        ),
        (
            r#"{"verify": {"header": "x-k"}}"#,
            "verify",
            Some(Problem::MissingKey { key: "accept" }),
        ),
        (
            r#"{"verify": {"header": "x-k", "accept": []}}"#,
            "verify.accept",
            Some(Problem::EmptyList),
        ),
        (
            r#"{"verify": {"header": "x-k", "accept": [""]}}"#,
            "verify.accept[0]",
            Some(Problem::EmptyValue),
        ),
        (
            r#"{"verify": {"header": "x-k", "accept": ["a", 7]}}"#,
            "verify.accept[1]",
            None,
        ),
        (
            r#"{"verify": {"header": "x k", "accept": ["a"]}}"#,
            "verify.header",
            None,
        ),
        (
            r#"{"verify": {"header": "host", "accept": ["a"]}}"#,
            "verify.header",
            None,
        ),
        (
            r#"{"verify": {"header": "x-k", "accept": ["a"], "strip": "yes"}}"#,
            "verify.strip",
            None,
        ),
        (
            r#"{"verify": {"header": "x-k", "accept": ["a"], "bogus": 1}}"#,
            "verify",
            None,
        ),
        (
            r#"{"verify": {"header": "x-k", "accept": ["a\nb"]}}"#,
            "verify.accept[0]",
            Some(Problem::ValueControlChar),
        ),
    ] {
        let err = parse(config).expect_err(config);
        assert_eq!(err.at, at, "{config}");
        if let Some(problem) = problem {
            assert_eq!(err.problem, problem, "{config}");
        }
    }
    let many = format!(
        r#"{{"verify": {{"header": "x-k", "accept": [{}]}}}}"#,
        vec!["\"v\""; MAX_ACCEPT + 1].join(",")
    );
    assert_eq!(
        parse(&many).unwrap_err().problem,
        Problem::TooMany { max: MAX_ACCEPT }
    );
}

#[test]
fn unset_reference_names_the_variable_not_a_value() {
    let err = parse(
        r#"{"verify": {"header": "authorization",
            "accept": ["Bearer {vault://env/TOKEN_NEXT}", "Bearer {vault://env/TOKEN_OLD}"]}}"#,
    )
    .unwrap_err();
    assert_eq!(err.at, "verify.accept[1]");
    assert_eq!(err.header.as_deref(), Some("authorization"));
    assert!(matches!(
        err.problem,
        Problem::Reference { problem: ReferenceProblem::NotSet { ref variable }, .. } if variable == "TOKEN_OLD"
    ));
    let text = err.to_string();
    assert!(!text.contains(NEXT), "{text}");
}
