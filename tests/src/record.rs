//! Append-only records shared between a test and what it started: the requests a test
//! server saw ([`Log`] of [`crate::backend::Received`]) and the lines a child process wrote
//! to stderr ([`capture_lines`]), plus small readers of such logs.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A list that several tasks or threads append to and a test reads; cloning shares it.
#[derive(Debug)]
pub struct Log<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for Log<T> {
    fn clone(&self) -> Self {
        Log(self.0.clone())
    }
}

impl<T> Default for Log<T> {
    fn default() -> Self {
        Log(Arc::new(Mutex::new(Vec::new())))
    }
}

impl<T: Clone> Log<T> {
    /// Appends one entry. A panic elsewhere does not poison the log.
    pub fn push(&self, entry: T) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
    }

    /// Every entry so far, oldest first.
    pub fn snapshot(&self) -> Vec<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Reads `reader` line by line on its own thread until it closes (the child exits), keeping
/// every line.
pub fn capture_lines(reader: impl Read + Send + 'static) -> Log<String> {
    let lines = Log::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            sink.push(line);
        }
    });
    lines
}

/// Every `127.0.0.1:<port>` in a log line, in order.
pub fn loopback_addresses(line: &str) -> Vec<SocketAddr> {
    const PREFIX: &str = "127.0.0.1:";
    line.match_indices(PREFIX)
        .filter_map(|(i, _)| {
            let rest = &line[i + PREFIX.len()..];
            let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
            format!("{PREFIX}{port}").parse().ok()
        })
        .collect()
}

/// The last 30 lines of a log, for error messages.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_loopback_address_in_order() {
        let line = "wasmgate serving on 127.0.0.1:8080, admin 127.0.0.1:9901; not 127.0.0.1:x";
        let found = loopback_addresses(line);
        assert_eq!(
            found,
            [
                "127.0.0.1:8080".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:9901".parse().unwrap()
            ]
        );
    }

    #[test]
    fn tail_keeps_the_last_thirty_lines() {
        let log: Vec<String> = (0..40).map(|i| i.to_string()).collect();
        let tail = tail(&log.join("\n"));
        assert_eq!(tail.lines().next(), Some("10"));
        assert_eq!(tail.lines().count(), 30);
    }

    #[test]
    fn captures_lines_until_the_reader_closes() {
        let lines = capture_lines(&b"one\ntwo\n"[..]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while lines.snapshot().len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(lines.snapshot(), ["one", "two"]);
    }
}
