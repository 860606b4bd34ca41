//! `queues.wasm`: register/resolve/enqueue/dequeue and `on_queue_ready`, with the
//! `NotFound` statuses for unknown queues.

use super::{TestResult, start};

#[test]
fn enqueued_items_reach_on_queue_ready() -> TestResult {
    let filter = start("queues", "queue=events")?;
    assert_eq!(
        filter.shared_data_str("queues.resolve").as_deref(),
        Some("same")
    );
    assert_eq!(
        filter.shared_data_str("queues.unknown").as_deref(),
        Some("none")
    );

    let mut first = filter.http_stream()?;
    first.request_headers(super::get("/a"), true)?;
    assert_eq!(first.request_header("x-queue-enqueue"), Some("ok"));
    assert_eq!(first.request_header("x-queue-bogus"), Some("NotFound"));
    assert_eq!(first.request_header("x-queue-resolve"), Some("same"));
    assert_eq!(first.request_header("x-queue-unknown"), Some("none"));
    // Delivered after the callback that enqueued, not during it.
    assert_eq!(first.request_header("x-queue-received"), Some("none"));
    assert_eq!(
        filter.shared_data_str("queues.received").as_deref(),
        Some("/a")
    );
    assert_eq!(filter.shared_data_str("queues.ready").as_deref(), Some("1"));
    assert_eq!(
        filter.shared_data_str("queues.bogus").as_deref(),
        Some("NotFound")
    );

    let mut second = filter.http_stream()?;
    second.request_headers(super::get("/b"), true)?;
    assert_eq!(second.request_header("x-queue-received"), Some("/a"));
    assert_eq!(second.request_header("x-queue-ready"), Some("1"));
    assert_eq!(
        second.request_header("x-queue-dequeue-bogus"),
        Some("NotFound")
    );
    assert_eq!(
        filter.shared_data_str("queues.received").as_deref(),
        Some("/a,/b")
    );
    assert_eq!(filter.shared_data_str("queues.ready").as_deref(), Some("2"));
    // Nothing left to deliver.
    filter.deliver_queue_ready()?;
    assert_eq!(filter.shared_data_str("queues.ready").as_deref(), Some("2"));
    Ok(())
}
