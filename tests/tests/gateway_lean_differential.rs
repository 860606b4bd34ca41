//! The hand-written HTTP/1.1 paths earn their place only if they behave as
//! hyper does. Two `wasmgate` processes run the same configuration, one
//! with the lean paths on and one with `WASMGATE_LEAN_HTTP1=off` (hyper
//! everywhere); generated requests and backend responses, valid and
//! malformed, go through both, and the two must agree:
//!
//! - requests: the bytes each backend receives are the same, byte for
//!   byte, and so is the client's answer (status, headers but `date`, body);
//! - responses: each client gets the same answer from the lean upstream
//!   client as from hyper's.
//!
//! A disagreement is shrunk by proptest to a minimal case and printed.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use proptest::{
    prelude::*,
    strategy::ValueTree,
    test_runner::{Config, TestCaseError, TestRunner},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use wasmgate_tests::{
    gateway::{Process, TIMEOUT},
    raw::{RawBackend, Step},
};

/// Cases per property: enough to cover the grammar, within the suite's budget.
const CASES: u32 = 256;

/// A backend and the gateway in front of it, lean paths on or off.
struct Side {
    backend: RawBackend,
    gateway: Process,
}

/// Both sides, answering with whatever `answer` holds.
struct Pair {
    lean: Side,
    hyper: Side,
    answer: Arc<Mutex<Vec<u8>>>,
    _dir: tempfile::TempDir,
}

impl Pair {
    async fn start() -> anyhow::Result<Pair> {
        let answer = Arc::new(Mutex::new(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        ));
        let dir = tempfile::tempdir()?;
        let side = |name: &str, env: &'static [(&'static str, &'static str)]| {
            let answer = answer.clone();
            let dir: PathBuf = dir.path().to_path_buf();
            let name = name.to_string();
            async move {
                let backend = RawBackend::start(move |_| {
                    let bytes = answer.lock().map(|a| a.clone()).unwrap_or_default();
                    // One exchange per connection: a case never leaks into the next.
                    vec![Step::Send(bytes), Step::Close]
                })
                .await?;
                let config = dir.join(format!("{name}.yaml"));
                std::fs::write(
                    &config,
                    format!(
                        r#"
workers: 1
listeners: [{{ address: "127.0.0.1:0" }}]
access_log: {{ disabled: true }}
upstreams:
  backend: {{ url: "http://{}", connect_timeout: 1s, timeout: 2s }}
routes: [{{ name: all, match: {{}}, upstream: backend }}]
"#,
                        backend.addr
                    ),
                )?;
                let gateway = Process::run(&config, env)?;
                anyhow::Ok(Side { backend, gateway })
            }
        };
        Ok(Pair {
            lean: side("lean", &[("WASMGATE_LEAN_HTTP1", "on")]).await?,
            hyper: side("hyper", &[("WASMGATE_LEAN_HTTP1", "off")]).await?,
            answer,
            _dir: dir,
        })
    }
}

/// What a client saw: status, headers (lower-cased, sorted, no `date`),
/// the body as decoded, and whether the message was complete.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: Option<u16>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    complete: bool,
}

/// Sends `request` on a new connection and reads until the server closes.
async fn exchange(gateway: &Process, request: &[u8]) -> anyhow::Result<Answer> {
    let mut tcp = TcpStream::connect(gateway.addr).await?;
    tcp.write_all(request).await?;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut raw)).await;
    Ok(parse_answer(&raw, request.starts_with(b"HEAD ")))
}

fn parse_answer(raw: &[u8], head_request: bool) -> Answer {
    let mut slots = [httparse::EMPTY_HEADER; 128];
    let mut response = httparse::Response::new(&mut slots);
    let Ok(httparse::Status::Complete(len)) = response.parse(raw) else {
        return Answer {
            status: None,
            headers: Vec::new(),
            body: raw.to_vec(),
            complete: false,
        };
    };
    let mut headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .filter(|(n, _)| n != "date")
        .collect();
    headers.sort();
    let rest = &raw[len..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let bodiless = head_request || matches!(response.code, Some(100..=199 | 204 | 304));
    let (body, complete) = if bodiless {
        (rest.to_vec(), true)
    } else if chunked {
        dechunk(rest)
    } else if let Some(n) = length {
        (rest[..rest.len().min(n)].to_vec(), rest.len() >= n)
    } else {
        (rest.to_vec(), true)
    };
    // Chunked or not is compared by what it delivered (the length stays
    // compared: both servers derive it from the body alike).
    headers.retain(|(n, _)| n != "transfer-encoding");
    if !complete {
        // A message cut short is a failure however much of it came (hyper's
        // server may not have flushed the head when the body failed).
        return Answer {
            status: None,
            headers: Vec::new(),
            body: Vec::new(),
            complete: false,
        };
    }
    Answer {
        status: response.code,
        headers,
        body,
        complete,
    }
}

/// The data of a chunked body, and whether its last chunk came.
fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Ok(httparse::Status::Complete((used, size))) = httparse::parse_chunk_size(rest) else {
            return (body, false);
        };
        rest = &rest[used..];
        if size == 0 {
            return (body, true);
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if rest.len() < size + 2 {
            body.extend_from_slice(&rest[..rest.len().min(size)]);
            return (body, false);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Header names a request may carry, tricky ones included.
fn request_header() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        Just("x-custom".to_string()),
        Just("X-Mixed-Case".to_string()),
        Just("connection".to_string()),
        Just("keep-alive".to_string()),
        Just("te".to_string()),
        Just("upgrade".to_string()),
        Just("proxy-connection".to_string()),
        Just("x_under_score".to_string()),
        Just("host".to_string()),
        Just("max-forwards".to_string()),
        Just("accept".to_string()),
        "[a-z][a-z0-9-]{0,12}",
    ];
    let value = prop_oneof![
        Just("close".to_string()),
        Just("keep-alive, x-custom".to_string()),
        Just("trailers".to_string()),
        Just("websocket".to_string()),
        Just("0".to_string()),
        Just(String::new()),
        "[ -~]{0,24}",
        // Bytes a parser must refuse or pass through the same way.
        "[\\x01-\\x08\\x7f\u{80}-\u{ff}]{1,4}",
    ];
    (name, value)
}

/// A request head (and maybe a body), valid or not.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        Just("GET"),
        Just("HEAD"),
        Just("DELETE"),
        Just("OPTIONS"),
        Just("PUT"),
        Just("POST"),
        Just("TRACE"),
        Just("G@T"),
    ];
    let path = prop_oneof![
        "/[a-z0-9./%_~-]{0,20}(\\?[a-z0-9=&]{0,8})?",
        Just("/a/../b".to_string()),
        Just("http://a.test/abs".to_string()),
        Just("*".to_string()),
        Just("/sp ace".to_string()),
    ];
    let version = prop_oneof![
        8 => Just("HTTP/1.1"),
        1 => Just("HTTP/1.0"),
        1 => Just("HTTP/1.2"),
    ];
    let body = prop_oneof![
        6 => Just(None),
        1 => Just(Some(b"hello".to_vec())),
    ];
    (
        method,
        path,
        version,
        proptest::collection::vec(request_header(), 0..6),
        body,
    )
        .prop_map(|(method, path, version, headers, body)| {
            let mut out = format!("{method} {path} {version}\r\nhost: a.test\r\n").into_bytes();
            for (name, value) in headers {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(&value.chars().map(|c| c as u8).collect::<Vec<u8>>());
                out.extend_from_slice(b"\r\n");
            }
            if let Some(body) = &body {
                out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
            }
            out.extend_from_slice(b"connection: close\r\n\r\n");
            if let Some(body) = body {
                out.extend_from_slice(&body);
            }
            out
        })
}

/// A backend response, valid or not.
fn response() -> impl Strategy<Value = Vec<u8>> {
    let status = prop_oneof![
        Just("200 OK"),
        Just("204 No Content"),
        Just("304 Not Modified"),
        Just("404 Not Found"),
        Just("500 Internal Server Error"),
        Just("101 Switching Protocols"),
        Just("100 Continue\r\n\r\nHTTP/1.1 200 OK"),
        Just("999 Odd"),
    ];
    let framing = prop_oneof![
        Just("content-length: 5\r\n\r\nhello".to_string()),
        Just("content-length: 5\r\n\r\nhel".to_string()),
        Just("content-length: 2\r\n\r\nhello".to_string()),
        Just("content-length: +5\r\n\r\nhello".to_string()),
        Just("content-length: 5, 5\r\n\r\nhello".to_string()),
        Just("content-length: 5\r\ncontent-length: 6\r\n\r\nhello!".to_string()),
        Just("transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_string()),
        Just("transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n".to_string()),
        Just("transfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_string()),
        Just(
            "transfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_string()
        ),
        Just("transfer-encoding: chunked\r\n\r\nzz\r\n".to_string()),
        Just("\r\nuntil close".to_string()),
        Just("connection: close\r\ncontent-length: 2\r\n\r\nok".to_string()),
    ];
    let extra = proptest::collection::vec(
        prop_oneof![
            Just("x-up: 1"),
            Just("connection: x-up"),
            Just("keep-alive: timeout=5"),
            Just("upgrade: h2c"),
            Just("x_under: 1"),
            Just("set-cookie: a=1"),
            Just("set-cookie: b=2"),
        ],
        0..3,
    );
    (status, extra, framing).prop_map(|(status, extra, framing)| {
        let mut out = format!("HTTP/1.1 {status}\r\n");
        for h in extra {
            out.push_str(h);
            out.push_str("\r\n");
        }
        out.push_str(&framing);
        out.into_bytes()
    })
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    })
}

fn fail(e: anyhow::Error) -> TestCaseError {
    TestCaseError::fail(format!("{e:#}"))
}

#[test]
fn lean_and_hyper_agree_on_generated_requests_and_responses() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let pair = rt.block_on(Pair::start())?;

    // Requests: same upstream bytes, same answer.
    let result = runner().run(&request(), |bytes| {
        rt.block_on(async {
            let (lean_before, hyper_before) = (
                pair.lean.backend.heads().len(),
                pair.hyper.backend.heads().len(),
            );
            let lean = exchange(&pair.lean.gateway, &bytes).await.map_err(fail)?;
            let hyper = exchange(&pair.hyper.gateway, &bytes).await.map_err(fail)?;
            let text = String::from_utf8_lossy(&bytes);
            prop_assert_eq!(&lean, &hyper, "client answers differ for {:?}", text);
            let lean_heads = pair.lean.backend.heads()[lean_before..].to_vec();
            let hyper_heads = pair.hyper.backend.heads()[hyper_before..].to_vec();
            prop_assert_eq!(
                lean_heads,
                hyper_heads,
                "upstream bytes differ for {:?}",
                text
            );
            Ok(())
        })
    });
    result.map_err(|e| anyhow::anyhow!("{e}"))?;

    // Responses: the lean upstream client (GET) answers as hyper's does.
    let result = runner().run(&response(), |bytes| {
        rt.block_on(async {
            *pair
                .answer
                .lock()
                .map_err(|_| TestCaseError::fail("lock"))? = bytes.clone();
            let request = b"GET /r HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n";
            let lean = exchange(&pair.lean.gateway, request).await.map_err(fail)?;
            let hyper = exchange(&pair.hyper.gateway, request).await.map_err(fail)?;
            let text = String::from_utf8_lossy(&bytes);
            prop_assert_eq!(
                &lean,
                &hyper,
                "client answers differ for response {:?}",
                text
            );
            Ok(())
        })
    });
    result.map_err(|e| anyhow::anyhow!("{e}"))?;
    // Never a panic, whatever came in.
    for side in [&pair.lean, &pair.hyper] {
        let logs = side.gateway.logs().join("\n");
        anyhow::ensure!(!logs.contains("panicked"), "{logs}");
    }
    Ok(())
}

#[test]
fn the_generators_produce_both_kinds() {
    // A sanity check of the grammar itself: bodiless requests (the lean
    // server's) and handed-off ones both occur.
    let mut runner = runner();
    let mut lean_like = 0;
    for _ in 0..200 {
        let tree = request().new_tree(&mut runner).expect("tree");
        let bytes = tree.current();
        let text = String::from_utf8_lossy(&bytes);
        if text.starts_with("GET /") && !text.contains("content-length") {
            lean_like += 1;
        }
    }
    assert!(lean_like > 3, "{lean_like} of 200");
}
