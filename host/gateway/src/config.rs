//! The gateway's configuration file: serde types, parsing (YAML or JSON) and
//! validation.
//!
//! Parsing and validation are separate steps so tests can build a
//! configuration from an inline string: [`Config::parse`] parses,
//! [`Config::validate`] checks what serde cannot (references between
//! sections, addresses, files) and reports *every* problem it finds, each
//! naming the file, the key and what is wrong. [`Config::load`] does both for a
//! file on disk.
//!
//! Every table uses `deny_unknown_fields`, so a typo fails loudly instead of
//! being ignored.

mod duration;
mod validate;

pub use duration::Duration;
pub use validate::ConfigErrors;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where clients connect. At least one.
    pub listeners: Vec<ListenerConfig>,
    /// The admin endpoint (/ready, /metrics, /config, POST /reload). Optional.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Named upstreams: route targets and the valid `http_call` targets of filters.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Routes, tried in order; the first match wins.
    pub routes: Vec<RouteConfig>,
    /// Protocol limits that protect the gateway from clients.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Access log format and which headers it shows.
    #[serde(default)]
    pub access_log: AccessLogConfig,
    /// Worker threads, each with its own event loop and filter instances.
    /// Default: one per available core.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Directory for precompiled modules (faster start). Default: memory only.
    #[serde(default)]
    pub module_cache: Option<PathBuf>,
    /// Where relative paths in this file are resolved from; set by `load`
    /// to the file's directory (not part of the file format).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file this was read from, for error messages.
    #[serde(skip)]
    pub source: String,
}

/// One listening socket.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `ip:port`; port 0 picks a free port (tests).
    pub address: String,
    /// Serve HTTPS with this certificate; ALPN offers h2 and http/1.1.
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
}

/// A server certificate and its key (PEM files).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The admin listener.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `ip:port` of the admin endpoint; keep it on loopback.
    pub address: String,
    /// Name of an environment variable holding a token that `POST`
    /// requests must send as `authorization: Bearer <token>` (the token
    /// itself never stands in the file).
    #[serde(default)]
    pub token_env: Option<String>,
}

/// Which HTTP version to speak to an upstream.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// https: whatever ALPN picks (h2 preferred); http: HTTP/1.1.
    #[default]
    Auto,
    /// Always HTTP/1.1.
    Http1,
    /// Always HTTP/2 (prior knowledge on http://).
    Http2,
}

/// A named backend: one `url`, or several `endpoints` with a balancing
/// policy, health checks, outlier ejection and retries.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `http://host:port` or `https://host:port` (an optional path prefix is
    /// prepended to every request path). Exactly one of `url` and `endpoints`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Several instances of the service, as URLs of the same scheme and path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
    /// How a request's endpoint is chosen.
    #[serde(default)]
    pub balance: Balance,
    /// The request header whose value picks the endpoint (`balance: hash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_header: Option<String>,
    /// Active health checks: an HTTP GET to every endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckConfig>,
    /// Passive health: consecutive failures eject an endpoint for a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier: Option<OutlierConfig>,
    /// Sending a failed request again, to another endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryConfig>,
    /// Re-resolve hostname endpoints this often; every address is an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_refresh: Option<Duration>,
    /// How https upstreams are verified, and the client certificate for mTLS.
    #[serde(default)]
    pub tls: Option<UpstreamTlsConfig>,
    /// HTTP version to use.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Time allowed to open a connection (and finish TLS); failure is a 502.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Time allowed for the upstream's response headers; exceeded is a 504.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Longest the upstream may leave a response body waiting for its next
    /// bytes once the head arrived (each wait timed on its own); exceeded,
    /// the response is cut and the connection closed.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: Duration,
    /// Most connections each worker opens to this upstream (idle and busy);
    /// requests beyond wait for one to come free, within `timeout`.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl UpstreamConfig {
    /// The endpoint URLs with the key each stands at (`url`, or
    /// `endpoints[i]`).
    pub fn endpoint_urls(&self) -> Vec<(String, &str)> {
        match (&self.url, &self.endpoints) {
            (Some(url), _) => vec![("url".to_string(), url.as_str())],
            (None, Some(list)) => list
                .iter()
                .enumerate()
                .map(|(i, url)| (format!("endpoints[{i}]"), url.as_str()))
                .collect(),
            (None, None) => Vec::new(),
        }
    }
}

fn default_max_connections() -> usize {
    128
}

/// How an upstream with several endpoints picks one for a request.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// The endpoint with the fewest requests waiting for their response.
    LeastRequest,
    /// By the value of `hash_header` (rendezvous hashing): a value keeps
    /// its endpoint while that endpoint is available.
    Hash,
}

/// Active health checks (`upstreams.NAME.health_check`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Path requested with `GET`; a 2xx answer is a success.
    pub path: String,
    /// Time between two checks of an endpoint.
    #[serde(default = "default_check_interval")]
    pub interval: Duration,
    /// Time allowed for a check's answer (connecting included).
    #[serde(default = "default_check_timeout")]
    pub timeout: Duration,
    /// Consecutive successes that make an unhealthy endpoint healthy.
    #[serde(default = "default_healthy")]
    pub healthy: u32,
    /// Consecutive failures that make a healthy endpoint unhealthy.
    #[serde(default = "default_unhealthy")]
    pub unhealthy: u32,
}

fn default_check_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_check_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_healthy() -> u32 {
    2
}

fn default_unhealthy() -> u32 {
    3
}

/// Passive health (`upstreams.NAME.outlier`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierConfig {
    /// Connect failures, broken exchanges and 5xx answers in a row that
    /// eject an endpoint.
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
    /// How long an ejected endpoint gets no requests.
    #[serde(default = "default_eject_for")]
    pub eject_for: Duration,
    /// Most endpoints ejected at once, in percent of the upstream's.
    #[serde(default = "default_max_ejected_percent")]
    pub max_ejected_percent: u32,
}

fn default_consecutive_failures() -> u32 {
    5
}

fn default_eject_for() -> Duration {
    Duration::from_secs(30)
}

fn default_max_ejected_percent() -> u32 {
    50
}

/// Retries (`upstreams.NAME.retries`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Most retries after the first try (1 to 5).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Which failures are retried.
    #[serde(default = "default_retry_on")]
    pub on: Vec<RetryOn>,
    /// Time allowed for each try's response headers (default: the
    /// upstream's `timeout`, which bounds all tries together anyway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
}

fn default_attempts() -> u32 {
    1
}

fn default_retry_on() -> Vec<RetryOn> {
    vec![RetryOn::ConnectFailure, RetryOn::RefusedStream]
}

/// A failure that may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "RetryOnText", into = "String")]
pub enum RetryOn {
    /// No connection (refused, DNS, TLS, `connect_timeout`): nothing was sent.
    ConnectFailure,
    /// An HTTP/2 stream the upstream refused before processing it.
    RefusedStream,
    /// The exchange broke before the response headers.
    Reset,
    /// No response headers within `per_try_timeout`.
    Timeout,
    /// Any 5xx answer.
    Status5xx,
    /// This status (500 to 599).
    Status(u16),
}

/// `on` entries as written: a name, or a status code quoted or not.
#[derive(Deserialize)]
#[serde(untagged)]
enum RetryOnText {
    Code(u16),
    Text(String),
}

impl TryFrom<RetryOnText> for RetryOn {
    type Error = String;

    fn try_from(value: RetryOnText) -> Result<Self, Self::Error> {
        let text = match value {
            RetryOnText::Code(code) => code.to_string(),
            RetryOnText::Text(text) => text,
        };
        Ok(match text.as_str() {
            "connect_failure" => RetryOn::ConnectFailure,
            "refused_stream" => RetryOn::RefusedStream,
            "reset" => RetryOn::Reset,
            "timeout" => RetryOn::Timeout,
            "5xx" => RetryOn::Status5xx,
            code => match code.parse::<u16>() {
                Ok(code) if (500..=599).contains(&code) => RetryOn::Status(code),
                _ => {
                    return Err(
                        "retries.on takes connect_failure, refused_stream, reset, timeout, \
                         5xx or a status from 500 to 599"
                            .to_string(),
                    );
                }
            },
        })
    }
}

impl From<RetryOn> for String {
    fn from(value: RetryOn) -> String {
        match value {
            RetryOn::ConnectFailure => "connect_failure".into(),
            RetryOn::RefusedStream => "refused_stream".into(),
            RetryOn::Reset => "reset".into(),
            RetryOn::Timeout => "timeout".into(),
            RetryOn::Status5xx => "5xx".into(),
            RetryOn::Status(code) => code.to_string(),
        }
    }
}

/// TLS towards an upstream. Verification cannot be turned off.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM CA bundle to trust instead of the system roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Name to send in SNI and to verify; default: the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM client certificate chain (mTLS); needs `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM client private key (mTLS); needs `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

/// One route: a match, an upstream and a filter chain.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name used in logs and metrics.
    pub name: String,
    /// Which requests this route takes. Required (use `{}` to match all).
    #[serde(rename = "match")]
    pub matcher: Option<MatchConfig>,
    /// Name of an entry in `upstreams`.
    pub upstream: Option<String>,
    /// proxy-wasm filters run in order on this route's requests.
    #[serde(default)]
    pub filters: Vec<FilterConfig>,
}

/// Request matching: all given conditions must hold.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Host (from `:authority` or `Host`), compared ignoring case and port.
    #[serde(default)]
    pub host: Option<String>,
    /// The path must start with this.
    #[serde(default)]
    pub path_prefix: Option<String>,
}

/// What happens to a request when its filter fails (trap, deadline, ...).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Fail closed: answer 503.
    #[default]
    Deny,
    /// Fail open: skip this filter for the request.
    Allow,
}

/// One proxy-wasm filter in a route's chain.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Path of the `.wasm` module.
    pub wasm: PathBuf,
    /// The filter's name: its `plugin_name` property, and its name in logs
    /// and metrics (default `<route>/<index>`); unique in the file.
    #[serde(default)]
    pub name: Option<String>,
    /// Plugin configuration: a mapping is passed as JSON, a string as is.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// VM configuration (on_vm_start): same encoding as `config`.
    #[serde(default)]
    pub vm_config: Option<serde_json::Value>,
    /// Root context id the module sees; default empty.
    #[serde(default)]
    pub root_id: Option<String>,
    /// Host environment variables the module may read (and nothing else).
    #[serde(default)]
    pub env: Vec<String>,
    /// Failure policy.
    #[serde(default)]
    pub on_error: OnError,
    /// Envoy's key of the same name: a filter that pauses
    /// `on_http_request_headers` (or `..._response_headers`) on a message
    /// with a body gets the body callbacks while the headers are held, and
    /// the headers go on when it resumes (`Continue` from a body callback,
    /// or `proxy_continue_stream`). Default `false`: the body waits, unread,
    /// until the filter resumes.
    #[serde(default)]
    pub allow_on_headers_stop_iteration: bool,
    /// Values for `env` names the host does not set (the embedded demo's
    /// harmless default secret; not part of the file format).
    #[serde(skip)]
    pub env_defaults: BTreeMap<String, String>,
}

/// Limits against abusive or broken clients.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request head (request line + headers) in bytes; over it: 431.
    pub max_header_bytes: usize,
    /// Most request headers; over it: 431.
    pub max_headers: usize,
    /// Largest request body in bytes; over it: 413.
    pub max_body_bytes: u64,
    /// Time a client has to send a complete request head (HTTP/1; also
    /// bounds the TLS handshake). Enforced by the connection's watchdog,
    /// so a connection is closed up to an eighth of the smaller of the two
    /// timeouts after it expires.
    pub header_read_timeout: Duration,
    /// A connection with nothing read, written or in flight for this long
    /// is closed (same precision).
    pub idle_timeout: Duration,
    /// Time to finish in-flight requests on SIGTERM before closing.
    pub drain_timeout: Duration,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Request headers whose name has an `_` (`Content_Length`): `drop`
    /// (default, as nginx), `reject` (400) or `allow`. CGI-style backends
    /// read `_` as `-`, so such a header can pose as another one.
    pub headers_with_underscores: UnderscorePolicy,
    /// Paths with an encoded `/` or `\\` (`%2F`, `%5C`), a raw `\\`, or a
    /// `..;` / `.;` segment, which backends read in different ways (nginx,
    /// IIS and Tomcat as a separator or a dot segment): `reject` (default,
    /// 400) or `keep` (forwarded as sent, for APIs that encode `/` in a
    /// segment). Routing never decodes them.
    pub path_with_escaped_slashes: EscapedSlashes,
}

/// What happens to a request path with an encoded slash or backslash.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EscapedSlashes {
    /// The request is answered 400.
    #[default]
    Reject,
    /// Forwarded as sent (matched as sent).
    Keep,
}

/// What happens to a request header whose name has an `_`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UnderscorePolicy {
    /// Removed before the filters run.
    #[default]
    Drop,
    /// The request is answered 400.
    Reject,
    /// Passed on.
    Allow,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_body_bytes: 16 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            max_concurrent_streams: 256,
            headers_with_underscores: UnderscorePolicy::Drop,
            path_with_escaped_slashes: EscapedSlashes::Reject,
        }
    }
}

/// Access log output.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// Turn the access log off.
    pub disabled: bool,
    /// `text` or `json` (applies to all of the binary's log output).
    pub format: LogFormat,
    /// Request headers to show (as sent upstream); sensitive and injected
    /// ones are shown as `<redacted>`.
    pub headers: Vec<String>,
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_read_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Config {
    /// Parses YAML (JSON is valid YAML; a `.json` source uses the JSON parser
    /// for its sharper errors). `source` names the file in errors.
    ///
    /// # Errors
    /// A syntax error, an unknown key or a wrong type, with line and column.
    pub fn parse(text: &str, source: &str) -> Result<Config, ConfigErrors> {
        let parsed = if source.ends_with(".json") {
            serde_json::from_str::<Config>(text)
                .map_err(|e| format!("{source}: line {} column {}: {e}", e.line(), e.column()))
        } else {
            serde_norway::from_str::<Config>(text).map_err(|e| match e.location() {
                Some(l) => format!(
                    "{source}: line {} column {}: {}",
                    l.line(),
                    l.column(),
                    strip_location(&e.to_string())
                ),
                None => format!("{source}: {e}"),
            })
        };
        let mut config = parsed.map_err(|m| ConfigErrors::new(vec![m]))?;
        config.source = source.to_string();
        Ok(config)
    }

    /// Reads, parses and validates a file; relative paths in it are resolved
    /// from the file's directory.
    ///
    /// # Errors
    /// Every problem found, each naming the file and the key.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors::new(vec![format!("{source}: cannot read: {e}")]))?;
        let mut config = Config::parse(&text, &source)?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        config.validate()
    }

    /// Resolves a path from the file against the file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() || self.base_dir.as_os_str().is_empty() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// A copy safe to show on the admin page: filter configurations keep
    /// their shape but every value is replaced, since a literal secret may
    /// stand there (`"Authorization:Bearer s3cret"`).
    pub fn redacted(&self) -> Config {
        let mut copy = self.clone();
        for route in &mut copy.routes {
            for filter in &mut route.filters {
                for value in [&mut filter.config, &mut filter.vm_config]
                    .into_iter()
                    .flatten()
                {
                    redact_value(value);
                }
            }
        }
        copy
    }
}

/// serde_norway appends " at line L column C" to its messages; we print the
/// location first instead.
fn strip_location(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

fn redact_value(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            *s = match s.split_once(':') {
                Some((name, _)) if !name.is_empty() && !name.contains(' ') => {
                    format!("{name}:<redacted>")
                }
                _ => "<redacted>".to_string(),
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::Object(map) => map.values_mut().for_each(redact_value),
        Value::Number(_) | Value::Bool(_) => *value = Value::String("<redacted>".into()),
        Value::Null => {}
    }
}

#[cfg(test)]
mod tests;
