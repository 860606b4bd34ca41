//! Kong-style secret references, `{vault://env/NAME}`, resolved once at configure time.
//!
//! A value may hold any number of references among literal text, e.g.
//! `"Bearer {vault://env/backend-token}"`. Only Kong's `env` vault exists here: it reads the
//! module's environment (WASI `environ`: in Envoy `vm_config.environment_variables`, in
//! wasmgate the filter's `env` list).
//!
//! Name mapping, as Kong's env vault documents it (`{vault://env/my-secret-value}` reads
//! `MY_SECRET_VALUE`): NAME is upper-cased and every `-` becomes `_`. So
//! `{vault://env/BACKEND_TOKEN}` and `{vault://env/backend-token}` read the same variable.
//! `{vault://env/NAME/KEY}` reads field KEY of a variable holding a flat JSON object of strings
//! (Kong's `export PG_CREDS='{"password":"..."}'` form). Kong's `?query` and `#version` parts
//! are refused rather than ignored.

use crate::error::{Problem, ReferenceProblem};

/// Where references begin.
const OPEN: &str = "{vault://";

/// Looks a variable up in the module's environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Returns `raw` with every reference replaced by its value.
///
/// # Errors
/// [`Problem::Reference`], naming the reference (only when it is well formed) and the
/// variable, never the value it holds.
pub fn resolve(raw: &str, env: Env<'_>) -> Result<String, Problem> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find('}') else {
            return Err(unnamed(ReferenceProblem::Unterminated));
        };
        out.push_str(&lookup(&after[..end], env)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves the inside of one reference, e.g. `env/backend-token` or `env/pg-creds/password`.
fn lookup(inner: &str, env: Env<'_>) -> Result<String, Problem> {
    let Some((vault, path)) = inner.split_once('/') else {
        return Err(unnamed(ReferenceProblem::Malformed(
            "no '/' after the vault name",
        )));
    };
    if vault != "env" {
        return Err(unnamed(ReferenceProblem::UnsupportedVault));
    }
    if path.contains(['?', '#']) {
        return Err(unnamed(ReferenceProblem::Malformed(
            "query and version are not supported",
        )));
    }
    let (resource, key) = match path.split_once('/') {
        Some((resource, key)) => (resource, Some(key)),
        None => (path, None),
    };
    if resource.is_empty() || !resource.bytes().all(is_name_byte) {
        return Err(unnamed(ReferenceProblem::Malformed(
            "NAME must be letters, digits, '_' or '-'",
        )));
    }
    if let Some(key) = key
        && (key.is_empty() || !key.bytes().all(|b| is_name_byte(b) || b == b'.'))
    {
        return Err(unnamed(ReferenceProblem::Malformed(
            "KEY must be letters, digits, '_', '-' or '.'",
        )));
    }

    // Well formed from here on, so the reference itself may be named in errors.
    let named = |problem| Problem::Reference {
        reference: format!("{{vault://{inner}}}"),
        problem,
    };
    let variable = env_variable_name(resource);
    let Some(raw) = env(&variable) else {
        return Err(named(ReferenceProblem::NotSet { variable }));
    };
    let value = match key {
        None => raw,
        Some(key) => match json_field(&raw, key) {
            Some(value) => value,
            None => {
                return Err(named(ReferenceProblem::NoSuchKey {
                    variable,
                    key: key.to_owned(),
                }));
            }
        },
    };
    if value.is_empty() {
        return Err(named(ReferenceProblem::Empty { variable }));
    }
    if value.bytes().any(is_forbidden_value_byte) {
        return Err(named(ReferenceProblem::ControlChar { variable }));
    }
    Ok(value)
}

/// Kong's env vault mapping: upper-case, `-` to `_`.
pub fn env_variable_name(resource: &str) -> String {
    resource.to_ascii_uppercase().replace('-', "_")
}

/// Field `key` of a flat JSON object held in an environment variable.
fn json_field(raw: &str, key: &str) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(raw).ok()? {
        serde_json::Value::Object(mut map) => match map.remove(key)? {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Bytes a header value may not hold: control characters other than horizontal tab, and DEL.
/// (RFC 9110 §5.5; CR and LF are what header injection needs.)
pub fn is_forbidden_value_byte(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// A reference problem found before the reference was known to be well formed: it is not
/// echoed, since a malformed one may be a pasted secret.
fn unnamed(problem: ReferenceProblem) -> Problem {
    Problem::Reference {
        reference: "{vault://...}".to_owned(),
        problem,
    }
}
