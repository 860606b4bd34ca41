//! `headers.wasm`: every header and trailer map operation, string and bytes variants.

use super::{TestResult, start};
use wasmgate_harness::{Action, HttpStream};

fn text(http: &HttpStream, name: &str) -> Vec<String> {
    http.request_header_all(name)
        .into_iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[test]
fn request_header_reads_and_writes() -> TestResult {
    let filter = start("headers", "")?;
    let mut http = filter.http_stream()?;
    let request: Vec<(&str, &[u8])> = vec![
        (":method", b"GET"),
        (":path", b"/p?q=1"),
        (":authority", b"example.test"),
        ("x-empty", b""),
        ("x-bin", "é".as_bytes()),
        ("x-multi", b"one"),
        ("x-multi", b"two"),
        ("x-replace-me", b"original"),
        ("x-remove-me", b"a"),
        ("x-remove-me-too", b"b"),
    ];
    let count = request.len().to_string();
    assert_eq!(http.request_headers(request, true)?, Action::Continue);

    // What the filter read.
    assert_eq!(
        http.request_header("x-seen-num-headers"),
        Some(count.as_str())
    );
    assert_eq!(http.request_header("x-seen-pairs"), Some(count.as_str()));
    assert_eq!(
        http.request_header("x-seen-pairs-bytes"),
        Some(count.as_str())
    );
    assert_eq!(http.request_header("x-seen-path"), Some("/p?q=1"));
    assert_eq!(http.request_header("x-seen-method"), Some("GET"));
    assert_eq!(http.request_header("x-seen-missing"), Some("none"));
    assert_eq!(http.request_header("x-seen-empty"), Some("empty"));
    assert_eq!(http.request_header("x-seen-bin"), Some("c3a9"));
    assert_eq!(http.request_header("x-seen-multi"), Some("one,two"));
    assert_eq!(http.request_header("x-seen-eos"), Some("true"));

    // What the filter wrote.
    assert_eq!(text(&http, "x-replace-me"), ["replaced"]);
    assert!(text(&http, "x-remove-me").is_empty());
    assert!(text(&http, "x-remove-me-too").is_empty());
    assert_eq!(text(&http, "x-multi"), ["one", "two", "added"]);
    assert_eq!(text(&http, "x-bytes-set"), ["set-bytes"]);
    assert_eq!(text(&http, "x-bytes-add"), ["add-bytes"]);
    assert_eq!(http.request_header(":path"), Some("/p?q=1"));
    Ok(())
}

#[test]
fn replace_adds_an_absent_header_and_reads_see_end_of_stream() -> TestResult {
    let filter = start("headers", "")?;
    let mut http = filter.http_stream()?;
    http.request_headers(super::get("/"), false)?;
    assert_eq!(text(&http, "x-replace-me"), ["replaced"]);
    assert_eq!(http.request_header("x-seen-eos"), Some("false"));
    assert_eq!(http.request_header("x-seen-empty"), Some("none"));
    assert_eq!(http.request_header("x-seen-multi"), Some(""));
    Ok(())
}

#[test]
fn whole_request_map_can_be_replaced_with_strings_or_bytes() -> TestResult {
    let filter = start("headers", "")?;
    for mode in ["strings", "bytes"] {
        let mut http = filter.http_stream()?;
        let mut request = super::get("/map");
        request.push(("x-set-map".into(), mode.into()));
        request.push(("x-keep".into(), "kept".into()));
        http.request_headers(request, true)?;
        assert_eq!(http.request_header("x-map-was-set"), Some(mode));
        assert_eq!(http.request_header("x-set-map"), None);
        assert_eq!(http.request_header("x-keep"), Some("kept"));
        assert_eq!(http.request_header(":path"), Some("/map"));
        assert_eq!(text(&http, "x-multi"), ["added"]);
        http.finish()?;
    }
    Ok(())
}

#[test]
fn response_headers_and_log() -> TestResult {
    let filter = start("headers", "")?;
    let mut http = filter.http_stream()?;
    http.request_headers(super::get("/resp"), true)?;
    let response = [
        (":status", "201"),
        ("x-resp-replace", "old"),
        ("x-resp-remove", "a"),
        ("x-resp-remove-too", "b"),
    ];
    assert_eq!(http.response_headers(response, false)?, Action::Continue);
    assert_eq!(http.response_header("x-resp-seen-status"), Some("201"));
    assert_eq!(http.response_header("x-resp-seen-status-len"), Some("3"));
    assert_eq!(http.response_header("x-resp-seen-pairs"), Some("4"));
    assert_eq!(http.response_header("x-resp-seen-pairs-bytes"), Some("4"));
    assert_eq!(http.response_header("x-resp-replace"), Some("replaced"));
    assert_eq!(http.response_header("x-resp-remove"), None);
    assert_eq!(http.response_header("x-resp-remove-too"), None);
    assert_eq!(http.response_header("x-resp-added"), Some("yes"));
    assert_eq!(http.response_header("x-req-path"), Some("/resp"));
    http.log()?;
    assert!(
        filter
            .log_messages()
            .iter()
            .any(|m| m == "headers: on_log path=/resp status=201"),
        "logs: {:?}",
        filter.log_messages()
    );
    http.finish()?;
    Ok(())
}

#[test]
fn whole_response_map_can_be_replaced() -> TestResult {
    let filter = start("headers", "")?;
    for mode in ["strings", "bytes"] {
        let mut http = filter.http_stream()?;
        http.request_headers(super::get("/"), true)?;
        http.response_headers([(":status", "200"), ("x-resp-set-map", mode)], true)?;
        assert_eq!(http.response_header("x-resp-map-was-set"), Some(mode));
        assert_eq!(http.response_header("x-resp-set-map"), None);
        assert_eq!(http.response_header(":status"), Some("200"));
    }
    Ok(())
}

#[test]
fn request_and_response_trailers() -> TestResult {
    let filter = start("headers", "")?;
    let mut http = filter.http_stream()?;
    http.request_headers(super::get("/t"), false)?;
    let trailers = [
        ("x-t", "tv"),
        ("x-trailer-replace", "old"),
        ("x-trailer-remove", "z"),
    ];
    assert_eq!(http.request_trailers(trailers)?, Action::Continue);
    assert_eq!(http.request_trailer("x-trailer-added"), Some("yes"));
    assert_eq!(http.request_trailer("x-trailer-replace"), Some("replaced"));
    assert_eq!(http.request_trailer("x-trailer-remove"), None);
    assert_eq!(http.request_trailer("x-trailer-seen-pairs"), Some("3"));
    assert_eq!(http.request_trailer("x-trailer-seen-t"), Some("tv"));
    assert_eq!(http.request_trailer("x-trailer-seen-bytes"), Some("3:2"));

    http.response_headers([(":status", "200")], false)?;
    assert_eq!(
        http.response_trailers([("x-trailer-remove", "z")])?,
        Action::Continue
    );
    assert_eq!(http.response_trailer("x-trailer-added"), Some("yes"));
    assert_eq!(http.response_trailer("x-trailer-replace"), Some("replaced"));
    assert_eq!(http.response_trailer("x-trailer-remove"), None);
    assert_eq!(http.response_trailer("x-trailer-seen-pairs"), Some("1"));
    assert_eq!(http.response_trailer("x-trailer-seen-t"), Some("none"));
    assert_eq!(http.response_trailer("x-trailer-seen-bytes"), Some("1:0"));
    Ok(())
}

#[test]
fn whole_trailer_maps_can_be_replaced() -> TestResult {
    let filter = start("headers", "")?;
    let mut http = filter.http_stream()?;
    http.request_headers(super::get("/"), false)?;
    http.request_trailers([("x-trailer-set-map", "1")])?;
    assert_eq!(http.request_trailers_map().len(), 1);
    assert_eq!(
        http.request_trailer("x-trailer-map-was-set"),
        Some("strings")
    );
    http.response_headers([(":status", "200")], false)?;
    http.response_trailers([("x-trailer-set-map-bytes", "1")])?;
    assert_eq!(http.response_trailers_map().len(), 1);
    assert_eq!(
        http.response_trailer("x-trailer-map-was-set"),
        Some("bytes")
    );
    Ok(())
}

#[test]
fn interleaved_streams_keep_their_own_maps() -> TestResult {
    let filter = start("headers", "")?;
    let mut streams = Vec::new();
    for n in 0..3 {
        let mut http = filter.http_stream()?;
        http.request_headers(super::get(&format!("/s{n}")), false)?;
        streams.push(http);
    }
    assert_eq!(filter.instances(), 1);
    // Responses arrive in reverse order; each stream sees only its own request.
    for (n, http) in streams.iter_mut().enumerate().rev() {
        http.response_headers([(":status", "200")], true)?;
        let path = format!("/s{n}");
        assert_eq!(http.response_header("x-req-path"), Some(path.as_str()));
        assert_eq!(http.request_header("x-seen-path"), Some(path.as_str()));
    }
    let ids: std::collections::HashSet<u32> = streams.iter().map(|h| h.context_id()).collect();
    assert_eq!(ids.len(), 3, "every stream has its own context id");
    Ok(())
}
