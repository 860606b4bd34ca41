//! The driver's rules, on a stream whose flags the tests set as the host functions would.

use super::*;
use crate::signal::StreamOp;
use crate::stream::LocalResponse;

fn local(status: u32) -> StreamOp {
    StreamOp::LocalResponse(Box::new(LocalResponse {
        status,
        details: String::new(),
        body: Vec::new(),
        headers: crate::HeaderMap::new(),
        grpc_status: -1,
    }))
}

#[test]
fn headers_that_continue_go_on() {
    let (mut d, mut s) = (StreamDriver::new(), Stream::new());
    d.after_headers(Side::Request, Action::Continue);
    assert_eq!(d.next(&mut s, Side::Request, false, false), Next::Continue);
    assert!(!d.is_paused(Side::Request));
}

#[test]
fn paused_headers_wait_for_calls_then_signals_then_resume() {
    let (mut d, mut s) = (StreamDriver::new(), Stream::new());
    d.after_headers(Side::Request, Action::Pause);
    assert!(d.is_paused(Side::Request));
    assert_eq!(
        d.next(&mut s, Side::Request, true, false),
        Next::AnswerHttpCall
    );
    assert_eq!(
        d.next(&mut s, Side::Request, false, false),
        Next::WaitForSignal
    );
    assert_eq!(d.next(&mut s, Side::Request, false, true), Next::FeedBody);
    s.apply(StreamOp::ResumeRequest);
    assert_eq!(d.next(&mut s, Side::Request, false, false), Next::Continue);
    assert!(!s.resume_requested(Side::Request), "the resume was taken");
}

#[test]
fn calls_are_answered_before_a_stream_moves_on() {
    let (mut d, mut s) = (StreamDriver::new(), Stream::new());
    d.after_headers(Side::Response, Action::Continue);
    assert_eq!(
        d.next(&mut s, Side::Response, true, false),
        Next::AnswerHttpCall
    );
}

#[test]
fn close_beats_a_local_response_and_a_local_response_beats_a_resume() {
    let (mut d, mut s) = (StreamDriver::new(), Stream::new());
    d.after_headers(Side::Request, Action::Pause);
    s.apply(StreamOp::ResumeRequest);
    s.apply(local(403));
    assert_eq!(d.next(&mut s, Side::Request, true, false), Next::Respond);
    s.apply(StreamOp::Close);
    assert_eq!(d.next(&mut s, Side::Request, true, false), Next::Close);
}

#[test]
fn the_first_local_response_wins() {
    let mut s = Stream::new();
    s.apply(local(401));
    s.apply(local(500));
    assert_eq!(s.local_response().map(|l| l.status), Some(401));
    assert_eq!(s.take_local_response().map(|l| l.status), Some(401));
    assert!(s.local_response().is_none());
}

#[test]
fn a_resume_from_elsewhere_resumes_only_its_side() {
    let (mut d, mut s) = (StreamDriver::new(), Stream::new());
    d.after_headers(Side::Request, Action::Pause);
    d.after_headers(Side::Response, Action::Pause);
    s.apply(StreamOp::ResumeResponse);
    d.take_resumes(&mut s);
    assert!(d.is_paused(Side::Request));
    assert!(!d.is_paused(Side::Response));
}

#[test]
fn paused_chunks_are_held_and_seen_again_with_the_next() {
    let (mut d, mut s) = (StreamDriver::new(), Stream::new());
    assert!(d.load_body(&mut s, Side::Request, b"ab"), "nothing held");
    assert_eq!(
        d.after_body(&mut s, Side::Request, Action::Pause, false),
        BodyNext::Held
    );
    assert!(d.is_paused(Side::Request));
    assert!(
        !d.load_body(&mut s, Side::Request, b"cd"),
        "held bytes first"
    );
    assert_eq!(s.request_body, b"abcd");
    assert_eq!(
        d.after_body(&mut s, Side::Request, Action::Continue, false),
        BodyNext::Pass { changed: false }
    );
    assert!(!d.is_paused(Side::Request));
}

#[test]
fn a_pause_at_the_end_of_the_body_counts_as_continue() {
    let (mut d, mut s) = (StreamDriver::new(), Stream::new());
    d.load_body(&mut s, Side::Response, b"last");
    assert_eq!(
        d.after_body(&mut s, Side::Response, Action::Pause, true),
        BodyNext::Pass { changed: false }
    );
    assert_eq!(s.response_body, b"last");
    assert!(!d.is_paused(Side::Response));
}

#[test]
fn a_filter_holding_the_headers_holds_the_end_of_the_body_too() {
    let (mut d, mut s) = (StreamDriver::new(), Stream::new());
    d.after_headers(Side::Request, Action::Pause);
    d.load_body(&mut s, Side::Request, b"all");
    assert_eq!(
        d.after_body(&mut s, Side::Request, Action::Pause, true),
        BodyNext::Held
    );
    assert!(d.holds_headers(Side::Request));
    assert_eq!(d.take_held(Side::Request), b"all");
}

#[test]
fn a_body_continue_releases_held_headers() {
    let (mut d, mut s) = (StreamDriver::new(), Stream::new());
    d.after_headers(Side::Request, Action::Pause);
    d.load_body_owned(&mut s, Side::Request, b"x".to_vec());
    s.body_changed = true;
    assert_eq!(
        d.after_body(&mut s, Side::Request, Action::Continue, true),
        BodyNext::Pass { changed: true }
    );
    assert!(!d.holds_headers(Side::Request));
    assert_eq!(d.next(&mut s, Side::Request, false, true), Next::Continue);
}

#[test]
fn a_body_callback_can_answer_or_close() {
    let (mut d, mut s) = (StreamDriver::new(), Stream::new());
    d.load_body(&mut s, Side::Request, b"x");
    s.apply(local(413));
    assert_eq!(
        d.after_body(&mut s, Side::Request, Action::Pause, true),
        BodyNext::Respond
    );
    s.apply(StreamOp::Close);
    assert_eq!(
        d.after_body(&mut s, Side::Request, Action::Continue, true),
        BodyNext::Close
    );
}

#[test]
fn trailers_never_wait() {
    let (d, mut s) = (StreamDriver::new(), Stream::new());
    assert_eq!(d.after_trailers(&s), Next::Continue);
    s.apply(local(200));
    assert_eq!(d.after_trailers(&s), Next::Respond);
}

#[test]
fn a_filter_that_dropped_out_is_not_waited_for() {
    let (mut d, mut s) = (StreamDriver::new(), Stream::new());
    d.after_headers(Side::Request, Action::Pause);
    d.load_body(&mut s, Side::Request, b"kept");
    d.after_body(&mut s, Side::Request, Action::Pause, false);
    d.drop_out();
    assert_eq!(d.next(&mut s, Side::Request, false, true), Next::Continue);
    assert_eq!(d.take_held(Side::Request), b"kept");
}
