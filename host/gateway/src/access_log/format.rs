//! The access log line, written straight into a byte buffer, exactly as
//! `tracing-subscriber`'s formatters (without colours) write the same event:
//! the `text` format (`<time>  INFO access: request peer=… method="GET" …`)
//! and the `json` format (`{"timestamp":…,"level":"INFO","fields":{…},"target":"access"}`).
//! The unit tests compare both against `tracing-subscriber` itself.
//!
//! What makes it cheap: the date and time up to the second are formatted
//! once a second per worker ([`Clock`]), strings that need no escaping
//! (nearly all) are copied as they are, and numbers are written by hand.

use std::{
    fmt::Write as _,
    io::Write as _,
    time::{SystemTime, UNIX_EPOCH},
};

use super::Entry;

/// A worker's cached `YYYY-MM-DDTHH:MM:SS` of the current second.
#[derive(Default)]
pub(crate) struct Clock {
    second: u64,
    text: [u8; 19],
}

impl Clock {
    /// Appends `now` as `tracing-subscriber`'s `SystemTime` timer does:
    /// `2026-12-07T11:40:30.123456Z`.
    fn write(&mut self, buf: &mut Vec<u8>, now: SystemTime) {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since.as_secs();
        if second != self.second || self.text[0] == 0 {
            self.second = second;
            let mut text = String::with_capacity(19);
            let (y, mo, d) = civil_from_days((second / 86_400) as i64);
            let rem = second % 86_400;
            let _ = write!(
                text,
                "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60
            );
            if text.len() == 19 {
                self.text.copy_from_slice(text.as_bytes());
            } else {
                // Years past 9999: not worth a fast path.
                buf.extend_from_slice(text.as_bytes());
                let _ = write!(buf, ".{:06}Z", since.subsec_micros());
                self.text[0] = 0;
                return;
            }
        }
        buf.extend_from_slice(&self.text);
        buf.push(b'.');
        let micros = since.subsec_micros();
        let mut digits = [b'0'; 6];
        let mut v = micros;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        buf.extend_from_slice(&digits);
        buf.push(b'Z');
    }
}

/// Year, month, day of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// A peer address as `Display` writes it; IPv4 by hand (the usual case,
/// and `fmt` machinery is a sixth of a line's cost), IPv6 through `fmt`.
fn push_peer(buf: &mut Vec<u8>, peer: std::net::SocketAddr) {
    match peer {
        std::net::SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                push_u64(buf, u64::from(octet));
            }
            buf.push(b':');
            push_u64(buf, u64::from(v4.port()));
        }
        v6 => {
            let _ = write!(buf, "{v6}");
        }
    }
}

/// Printable ASCII with nothing `{:?}` or JSON would escape.
#[inline]
fn plain(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// `s` as `{:?}` writes it (quoted, escaped).
fn push_debug_str(buf: &mut Vec<u8>, s: &str) {
    if plain(s) {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        let _ = write!(buf, "{s:?}");
    }
}

/// `s` as a JSON string, as serde_json writes it.
fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    if plain(s) {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *buf, s);
    }
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// One line in the `text` format.
pub(crate) fn text(
    buf: &mut Vec<u8>,
    clock: &mut Clock,
    now: SystemTime,
    e: &Entry<'_>,
    headers: &str,
) {
    clock.write(buf, now);
    buf.extend_from_slice(b"  INFO access: request peer=");
    push_peer(buf, e.peer);
    buf.extend_from_slice(b" method=");
    push_debug_str(buf, e.method);
    buf.extend_from_slice(b" host=");
    push_debug_str(buf, e.host);
    buf.extend_from_slice(b" path=");
    push_debug_str(buf, e.path);
    buf.extend_from_slice(b" version=");
    buf.extend_from_slice(version(e.version).as_bytes());
    buf.extend_from_slice(b" route=");
    push_debug_str(buf, e.route);
    buf.extend_from_slice(b" upstream=");
    push_debug_str(buf, e.upstream);
    buf.extend_from_slice(b" status=");
    push_u64(buf, u64::from(e.status));
    buf.extend_from_slice(b" duration_us=");
    push_u64(buf, e.elapsed.as_micros() as u64);
    buf.extend_from_slice(b" headers=");
    push_debug_str(buf, headers);
    buf.push(b'\n');
}

/// One line in the `json` format.
pub(crate) fn json(
    buf: &mut Vec<u8>,
    clock: &mut Clock,
    now: SystemTime,
    e: &Entry<'_>,
    headers: &str,
) {
    buf.extend_from_slice(b"{\"timestamp\":\"");
    clock.write(buf, now);
    buf.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\",\"peer\":\"");
    push_peer(buf, e.peer);
    buf.extend_from_slice(b"\",\"method\":");
    push_json_str(buf, e.method);
    buf.extend_from_slice(b",\"host\":");
    push_json_str(buf, e.host);
    buf.extend_from_slice(b",\"path\":");
    push_json_str(buf, e.path);
    buf.extend_from_slice(b",\"version\":\"");
    buf.extend_from_slice(version(e.version).as_bytes());
    buf.extend_from_slice(b"\",\"route\":");
    push_json_str(buf, e.route);
    buf.extend_from_slice(b",\"upstream\":");
    push_json_str(buf, e.upstream);
    buf.extend_from_slice(b",\"status\":");
    push_u64(buf, u64::from(e.status));
    buf.extend_from_slice(b",\"duration_us\":");
    push_u64(buf, e.elapsed.as_micros() as u64);
    buf.extend_from_slice(b",\"headers\":");
    push_json_str(buf, headers);
    buf.extend_from_slice(b"},\"target\":\"access\"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_794), (2026, 12, 7));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let mut clock = Clock::default();
        let mut buf = Vec::new();
        let t = UNIX_EPOCH + std::time::Duration::new(1_796_643_630, 123_456_789);
        clock.write(&mut buf, t);
        assert_eq!(
            std::str::from_utf8(&buf).unwrap(),
            "2026-12-07T11:40:30.123456Z"
        );
        buf.clear();
        clock.write(&mut buf, t + std::time::Duration::from_micros(1));
        assert_eq!(
            std::str::from_utf8(&buf).unwrap(),
            "2026-12-07T11:40:30.123457Z"
        );
    }

    #[test]
    fn numbers_and_strings() {
        let mut buf = Vec::new();
        push_u64(&mut buf, 0);
        buf.push(b' ');
        push_u64(&mut buf, u64::MAX);
        assert_eq!(buf, b"0 18446744073709551615");
        for s in [
            "plain",
            "",
            "a\"b",
            "tab\there",
            "é",
            "\u{7f}",
            "back\\slash",
        ] {
            let mut buf = Vec::new();
            push_debug_str(&mut buf, s);
            assert_eq!(String::from_utf8(buf).unwrap(), format!("{s:?}"));
            let mut buf = Vec::new();
            push_json_str(&mut buf, s);
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    #[test]
    fn peers_as_display_writes_them() {
        for peer in [
            "127.0.0.1:8080",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.20.3.4:443",
            "[::1]:8080",
            "[2001:db8::1%3]:1",
            "[::ffff:1.2.3.4]:80",
        ] {
            let addr: std::net::SocketAddr = peer.parse().unwrap();
            let mut buf = Vec::new();
            push_peer(&mut buf, addr);
            assert_eq!(String::from_utf8(buf).unwrap(), addr.to_string());
        }
    }
}
