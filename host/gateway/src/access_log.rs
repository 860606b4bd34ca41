//! The access log: one `tracing` event per request (target `access`), in
//! text or JSON as the subscriber is set up. It shows the configured
//! request headers as sent upstream, with the values of sensitive headers
//! and of every header a filter injected or changed replaced by
//! `<redacted>`. The query string is never logged (it often carries keys).
//!
//! The binary installs a writer thread ([`writer::install`]): lines are then
//! formatted by hand into a worker-local buffer ([`format`], the same text
//! as `tracing-subscriber` writes) and handed to that thread in batches,
//! off the request's path ([`writer`]). Without it (the library in tests,
//! or colours on a terminal) each line is a `tracing` event.

mod format;
pub mod writer;

use std::{net::SocketAddr, time::Duration};

use http::HeaderMap;

use crate::config::{AccessLogConfig, LogFormat};

/// Headers whose values are never logged.
const SENSITIVE: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
];

/// Shown instead of a hidden value.
pub const REDACTED: &str = "<redacted>";

/// Access log settings of one configuration.
#[derive(Debug, Clone, Default)]
pub struct AccessLog {
    enabled: bool,
    headers: Vec<http::HeaderName>,
}

/// The facts of one request.
#[derive(Debug)]
pub struct Entry<'a> {
    /// Client address.
    pub peer: SocketAddr,
    /// HTTP method.
    pub method: &'a str,
    /// Path without the query.
    pub path: &'a str,
    /// Host the client asked for.
    pub host: &'a str,
    /// Route name, `-` if none matched.
    pub route: &'a str,
    /// Upstream name, `-` if none.
    pub upstream: &'a str,
    /// Status sent to the client.
    pub status: u16,
    /// Time to response headers.
    pub elapsed: Duration,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub version: http::Version,
}

/// Whether a header's value must not be logged.
pub fn is_sensitive(name: &str) -> bool {
    SENSITIVE.contains(&name)
        || ["token", "secret", "password", "api-key", "apikey"]
            .iter()
            .any(|w| name.contains(w))
}

impl AccessLog {
    /// From the configuration.
    pub fn new(conf: &AccessLogConfig) -> Self {
        Self {
            enabled: !conf.disabled,
            headers: conf
                .headers
                .iter()
                .filter_map(|h| {
                    http::HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok()
                })
                .collect(),
        }
    }

    /// Whether any header is logged (then callers note which headers filters changed).
    pub fn wants_headers(&self) -> bool {
        self.enabled && !self.headers.is_empty()
    }

    /// The configured headers' values before filters ran, to spot injections.
    pub fn before(&self, headers: &HeaderMap) -> Vec<Option<http::HeaderValue>> {
        self.headers
            .iter()
            .map(|n| headers.get(n).cloned())
            .collect()
    }

    /// Emits the line. `sent` are the headers as sent upstream, `before` from
    /// [`AccessLog::before`] (empty when no filter ran).
    pub fn log(
        &self,
        e: &Entry<'_>,
        sent: Option<&HeaderMap>,
        before: &[Option<http::HeaderValue>],
    ) {
        if !self.enabled {
            return;
        }
        if !tracing::enabled!(target: "access", tracing::Level::INFO) {
            return;
        }
        let headers = match sent {
            Some(sent) if !self.headers.is_empty() => self.render_headers(sent, before),
            _ => String::new(),
        };
        if let Some(fmt) = writer::format() {
            let now = std::time::SystemTime::now();
            let appended = writer::append(|local| match fmt {
                LogFormat::Text => format::text(&mut local.buf, &mut local.clock, now, e, &headers),
                LogFormat::Json => format::json(&mut local.buf, &mut local.clock, now, e, &headers),
            });
            if appended {
                return;
            }
        }
        emit(e, &headers);
    }

    fn render_headers(&self, sent: &HeaderMap, before: &[Option<http::HeaderValue>]) -> String {
        let mut out = String::new();
        for (i, name) in self.headers.iter().enumerate() {
            let Some(value) = sent.get(name) else {
                continue;
            };
            let injected = before.get(i).is_some_and(|b| b.as_ref() != Some(value));
            let shown = if injected || is_sensitive(name.as_str()) {
                REDACTED
            } else {
                value.to_str().unwrap_or("<binary>")
            };
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(name.as_str());
            out.push('=');
            out.push_str(shown);
        }
        out
    }
}

/// The line as a `tracing` event (no writer installed).
fn emit(e: &Entry<'_>, headers: &str) {
    tracing::info!(
            target: "access",
        peer = %e.peer,
        method = e.method,
        host = e.host,
        path = e.path,
        version = ?e.version,
        route = e.route,
        upstream = e.upstream,
        status = e.status,
        duration_us = e.elapsed.as_micros() as u64,
        headers = headers,
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_sensitive_and_injected() {
        let log = AccessLog::new(&AccessLogConfig {
            headers: vec![
                "User-Agent".into(),
                "authorization".into(),
                "x-injected".into(),
            ],
            ..Default::default()
        });
        let mut before = HeaderMap::new();
        before.insert("user-agent", "curl".parse().unwrap());
        let before = log.before(&before);
        let mut sent = HeaderMap::new();
        sent.insert("user-agent", "curl".parse().unwrap());
        sent.insert("authorization", "Bearer s3cret".parse().unwrap());
        sent.insert("x-injected", "s3cret".parse().unwrap());
        let text = log.render_headers(&sent, &before);
        assert_eq!(
            text,
            "user-agent=curl, authorization=<redacted>, x-injected=<redacted>"
        );
        assert!(!text.contains("s3cret"));
    }

    /// A `tracing-subscriber` set up as the binary sets it up (no colours),
    /// writing into a buffer.
    fn through_tracing(json: bool, e: &Entry<'_>, headers: &str) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(out.clone());
        let builder = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false);
        if json {
            tracing::subscriber::with_default(builder.json().finish(), || emit(e, headers));
        } else {
            tracing::subscriber::with_default(builder.finish(), || emit(e, headers));
        }
        String::from_utf8(out.lock().unwrap().clone()).unwrap()
    }

    /// The line with its 27-character timestamp cut out.
    fn without_time(line: &str) -> String {
        let at = line.find("20").expect("a timestamp");
        format!("{}{}", &line[..at], &line[at + 27..])
    }

    #[test]
    fn same_text_as_tracing_subscriber() {
        let peers: [SocketAddr; 2] = [
            "127.0.0.1:5555".parse().unwrap(),
            "[::1]:80".parse().unwrap(),
        ];
        let cases = [
            (
                "GET",
                "/hello",
                "a",
                "api",
                "backend",
                200,
                http::Version::HTTP_11,
                "",
            ),
            (
                "POST",
                "/q\"uote\\d/é\t",
                "h:8080",
                "-",
                "-",
                0,
                http::Version::HTTP_2,
                "user-agent=curl, authorization=<redacted>",
            ),
        ];
        for (peer, (method, path, host, route, upstream, status, version, headers)) in
            peers.iter().zip(cases)
        {
            let e = Entry {
                peer: *peer,
                method,
                path,
                host,
                route,
                upstream,
                status,
                elapsed: Duration::from_micros(1234),
                version,
            };
            for json in [false, true] {
                let mut buf = Vec::new();
                let mut clock = format::Clock::default();
                let now = std::time::SystemTime::now();
                if json {
                    format::json(&mut buf, &mut clock, now, &e, headers);
                } else {
                    format::text(&mut buf, &mut clock, now, &e, headers);
                }
                let ours = String::from_utf8(buf).unwrap();
                let theirs = through_tracing(json, &e, headers);
                assert_eq!(without_time(&ours), without_time(&theirs), "json: {json}");
                assert!(ours.ends_with('\n'));
            }
        }
    }
}
