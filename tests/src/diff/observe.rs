//! One request's outcome as named text fields, normalised so that only what a filter could
//! have caused is compared, and the comparison of Envoy's fields with wasmgate's.
//!
//! Fields:
//! - `status` (or `no response` when the stream was reset or closed), `client.header.<name>`
//!   for each chosen response header (values joined by ` | `, `<absent>` when missing),
//!   `client.body`;
//! - `backend.requests`, the number of requests the backend received, and for each of them
//!   `backend.method`, `backend.path`, `backend.version`, `backend.header.<name>` (chosen headers),
//!   `backend.body` (the second request is `backend#1.…`, and so on);
//! - the same under `auth.` for the calls the `http_call` filter made.
//!
//! Normalisation: the hosts' own addresses (listener, client, backends) become `<listener>`,
//! `<client>`, `<backend>`, `<auth>` (a bare port only when it is the whole value), and the
//! echo backend's JSON, wherever it appears (a body, a header the filter copied it into, even
//! upper-cased), keeps only the chosen headers: the headers each proxy adds on its own
//! (`x-request-id`, `x-envoy-*`, `x-forwarded-*`, `via`) are compared only when a scenario
//! chooses them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::backend::Received;

use super::client::Exchange;
use super::{Deliberate, Kind, Scenario};

/// Field name -> normalised value.
pub type Observation = BTreeMap<String, String>;

/// Value of a field one side does not have.
pub const MISSING: &str = "<missing>";

/// How values are normalised for one host.
#[derive(Debug, Clone, Default)]
pub struct Normaliser {
    /// (address text, placeholder), e.g. `("127.0.0.1:40123", "<listener>")`.
    addresses: Vec<(String, String)>,
    /// (port text, placeholder), replaced only when a value is exactly the port.
    ports: Vec<(String, String)>,
    /// Header names kept in echoed JSON (lower-case).
    chosen: Vec<String>,
}

impl Normaliser {
    /// Adds a socket address and its placeholder (its port becomes `<name-port>`).
    pub fn address(mut self, addr: std::net::SocketAddr, name: &str) -> Normaliser {
        self.addresses.push((addr.to_string(), format!("<{name}>")));
        self.ports
            .push((addr.port().to_string(), format!("<{name}-port>")));
        self
    }

    /// Chooses the headers echoed JSON keeps.
    pub fn chosen(mut self, names: &[&str]) -> Normaliser {
        self.chosen = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        self
    }

    /// Normalises one value.
    pub fn apply(&self, value: &str) -> String {
        if let Some((_, placeholder)) = self.ports.iter().find(|(port, _)| port == value) {
            return placeholder.clone();
        }
        let mut text = value.to_string();
        for (from, to) in &self.addresses {
            text = text.replace(from.as_str(), to);
        }
        self.restrict_echo(&text).unwrap_or(text)
    }

    /// The echo backend's JSON (after any prefix) with only the chosen headers.
    fn restrict_echo(&self, text: &str) -> Option<String> {
        let start = text.find('{')?;
        let mut json: serde_json::Value = serde_json::from_str(&text[start..]).ok()?;
        let object = json.as_object_mut()?;
        let key = object
            .keys()
            .find(|k| k.eq_ignore_ascii_case("headers"))?
            .clone();
        let pairs = object.get_mut(&key)?.as_array_mut()?;
        let name = |pair: &serde_json::Value| {
            pair.get(0)
                .and_then(|n| n.as_str())
                .map(str::to_ascii_lowercase)
        };
        pairs.retain(|pair| name(pair).is_some_and(|n| self.chosen.contains(&n)));
        // RFC 9110 5.3: the order of fields with different names carries no meaning (only the
        // order of one name's values does), so compare them sorted by name, stably.
        pairs.sort_by_key(name);
        Some(format!("{}{json}", &text[..start]))
    }
}

/// The fields of one exchange and the requests the backend and the auth service received
/// for it.
pub fn observe(
    scenario: &Scenario,
    exchange: &Exchange,
    backend: &[Received],
    auth: &[Received],
    normaliser: &Normaliser,
) -> Observation {
    let mut fields = Observation::new();
    let norm = |v: &str| normaliser.apply(v);
    match &exchange.response {
        Ok(response) => {
            fields.insert("status".into(), response.status.to_string());
            for name in scenario.client_headers {
                let values: Vec<String> = response
                    .headers
                    .get_all(*name)
                    .iter()
                    .map(|v| norm(&String::from_utf8_lossy(v.as_bytes())))
                    .collect();
                let value = if values.is_empty() {
                    "<absent>".to_string()
                } else {
                    values.join(" | ")
                };
                fields.insert(format!("client.header.{name}"), value);
            }
            fields.insert(
                "client.body".into(),
                norm(&String::from_utf8_lossy(&response.body)),
            );
        }
        Err(_) => {
            fields.insert("status".into(), "no response".into());
        }
    }
    for (prefix, requests) in [("backend", backend), ("auth", auth)] {
        fields.insert(format!("{prefix}.requests"), requests.len().to_string());
        for (i, request) in requests.iter().enumerate() {
            let p = if i == 0 {
                prefix.to_string()
            } else {
                format!("{prefix}#{i}")
            };
            fields.insert(format!("{p}.method"), request.method.clone());
            fields.insert(format!("{p}.path"), norm(&request.path));
            fields.insert(format!("{p}.version"), request.version.clone());
            fields.insert(
                format!("{p}.body"),
                norm(&String::from_utf8_lossy(&request.body)),
            );
            for name in scenario.backend_headers {
                let values: Vec<String> =
                    request.header_all(name).iter().map(|v| norm(v)).collect();
                let value = if values.is_empty() {
                    "<absent>".to_string()
                } else {
                    values.join(" | ")
                };
                fields.insert(format!("{p}.header.{name}"), value);
            }
        }
    }
    fields
}

/// Every field where Envoy and wasmgate differ, except the deliberate differences, which
/// must hold exactly as written (a deliberate difference that went away, or changed, is a
/// failure too, so the README cannot rot).
pub fn compare(
    envoy: &Observation,
    wasmgate: &Observation,
    deliberate: &[Deliberate],
) -> Vec<String> {
    let mut keys: Vec<&str> = envoy
        .keys()
        .chain(wasmgate.keys())
        .map(String::as_str)
        .collect();
    keys.extend(deliberate.iter().map(|d| d.field));
    keys.sort_unstable();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys {
        let e = envoy.get(key).map_or(MISSING, String::as_str);
        let w = wasmgate.get(key).map_or(MISSING, String::as_str);
        match deliberate.iter().find(|d| d.field == key) {
            Some(d) if e != d.envoy || w != d.wasmgate => {
                let what = match d.kind {
                    Kind::Deliberate => "deliberate difference",
                    Kind::Reported => "reported difference (fixed? then remove its entry)",
                };
                let mut line = format!("{key}: {what} ({}) no longer holds:", d.reason);
                let _ = write!(line, " envoy {e:?} (expected {:?}),", d.envoy);
                let _ = write!(line, " wasmgate {w:?} (expected {:?})", d.wasmgate);
                out.push(line);
            }
            Some(_) => {}
            None if e != w => out.push(format!("{key}: envoy {e:?}, wasmgate {w:?}")),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_json_keeps_only_chosen_headers_even_upper_cased() {
        let n = Normaliser::default().chosen(&["x-b", "x-a"]);
        let echo = r#"{"method":"GET","headers":[["x-b","2"],["x-a","1"],["x-request-id","r"],["x-a","0"]]}"#;
        assert_eq!(
            n.apply(echo),
            r#"{"headers":[["x-a","1"],["x-a","0"],["x-b","2"]],"method":"GET"}"#
        );
        let upper = format!("resp:{}", echo.to_ascii_uppercase());
        assert_eq!(
            n.apply(&upper),
            r#"resp:{"HEADERS":[["X-A","1"],["X-A","0"],["X-B","2"]],"METHOD":"GET"}"#
        );
        assert_eq!(n.apply("plain"), "plain");
    }

    #[test]
    fn addresses_and_whole_ports_become_placeholders() {
        let addr: std::net::SocketAddr =
            "127.0.0.1:40123".parse().unwrap_or_else(|e| panic!("{e}"));
        let n = Normaliser::default().address(addr, "client");
        assert_eq!(n.apply("127.0.0.1:40123"), "<client>");
        assert_eq!(n.apply("40123"), "<client-port>");
        assert_eq!(n.apply("140123"), "140123");
    }

    #[test]
    fn deliberate_differences_must_hold_as_written() {
        let e = Observation::from([("status".to_string(), "503".to_string())]);
        let w = Observation::from([("status".to_string(), "200".to_string())]);
        assert_eq!(compare(&e, &w, &[]).len(), 1);
        let d = Deliberate {
            kind: Kind::Deliberate,
            field: "status",
            envoy: "503",
            wasmgate: "200",
            reason: "r",
        };
        assert!(compare(&e, &w, std::slice::from_ref(&d)).is_empty());
        assert_eq!(
            compare(&e, &e, &[d]).len(),
            1,
            "a vanished difference is reported"
        );
    }
}
