//! The one form of a request path that routes are matched on and that is
//! forwarded: percent-encoded unreserved characters decoded (RFC 3986
//! §2.3: `%2e` is `.`, `%41` is `A`), hex digits of the escapes that stay
//! in upper case, and dot segments removed (§5.2.4). Without this,
//! `/api/../public/x` would match a route for `/api/` and carry its secret
//! to a backend that normalises paths and serves `/public/x`.
//!
//! Everything else is left as the client sent it: reserved characters stay
//! encoded (`%2F` is not `/`), and a path that needs no change costs one
//! scan and no allocation.

/// Why a path would mean different things to different backends, if it
/// would: an encoded `/` or `\\` (`%2F`, `%5C`), a raw `\\`, or a segment
/// `..;…` / `.;…` (Tomcat and Spring read it as a dot segment). Checked on
/// the normal form, so `%2e%2e;` counts too.
pub fn ambiguous(path: &str) -> Option<&'static str> {
    let bytes = path.as_bytes();
    if bytes.contains(&b'\\') {
        return Some("backslash in the path");
    }
    let escaped = bytes.windows(3).any(|w| {
        w[0] == b'%'
            && (w[1] == b'2' && w[2].eq_ignore_ascii_case(&b'f')
                || w[1] == b'5' && w[2].eq_ignore_ascii_case(&b'c'))
    });
    if escaped {
        return Some("encoded slash or backslash in the path");
    }
    if path
        .split('/')
        .any(|s| s.starts_with(".;") || s.starts_with("..;"))
    {
        return Some("dot segment with parameters in the path");
    }
    None
}

/// The normalised form of `path` (no query), or `None` when it is already
/// normal. Only origin-form paths (starting with `/`) are normalised.
pub fn normalize(path: &str) -> Option<String> {
    if !path.starts_with('/') || !needs_work(path.as_bytes()) {
        return None;
    }
    let decoded = decode_unreserved(path);
    let normal = remove_dot_segments(&decoded);
    (normal != path).then_some(normal)
}

/// Whether the path has an escape or a `.` segment (`/.` followed by `/`,
/// `.` or the end).
fn needs_work(path: &[u8]) -> bool {
    path.iter()
        .enumerate()
        .any(|(i, &b)| b == b'%' || (b == b'.' && i > 0 && path[i - 1] == b'/'))
}

/// Decodes `%XX` escapes of unreserved characters; other escapes keep
/// their meaning and get upper-case hex digits.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&c| hex(c)),
                bytes.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            let c = h * 16 + l;
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(c));
            } else {
                out.push('%');
                out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
            }
            i += 3;
            continue;
        }
        // Multi-byte UTF-8 is copied whole (only ASCII is ever matched).
        let ch = path[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §5.2.4 for an absolute path: `.` segments go, `..` removes the
/// segment before it (never above the root).
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = path.split('/').skip(1).peekable();
    // Whether the output ends in `/` (a trailing `.` or `..` leaves one).
    let mut trailing_slash = false;
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        match segment {
            "." => trailing_slash = last,
            ".." => {
                segments.pop();
                trailing_slash = last;
            }
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> String {
        normalize(path).unwrap_or_else(|| path.to_string())
    }

    #[test]
    fn dot_segments_go() {
        assert_eq!(norm("/api/../public/x"), "/public/x");
        assert_eq!(norm("/api/./../public/x"), "/public/x");
        assert_eq!(norm("/api/%2e%2e/x"), "/x");
        assert_eq!(norm("/api/%2E%2e/x"), "/x");
        assert_eq!(norm("/a/b/."), "/a/b/");
        assert_eq!(norm("/a/b/.."), "/a/");
        assert_eq!(norm("/../../x"), "/x");
        assert_eq!(norm("/.."), "/");
        assert_eq!(norm("/a//b/../c"), "/a//c");
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_kept() {
        assert_eq!(norm("/%41pi/x"), "/Api/x");
        assert_eq!(norm("/a%2fb"), "/a%2Fb");
        assert_eq!(norm("/a%2Fb/..%2f"), "/a%2Fb/..%2F");
        assert_eq!(norm("/bad%zz"), "/bad%zz");
        assert_eq!(norm("/caf\u{e9}/%7e"), "/caf\u{e9}/~");
    }

    #[test]
    fn ambiguous_separators_are_named() {
        for p in [
            "/api/..%2Fpublic",
            "/a%2fb",
            "/api/..%5Cx",
            "/api/..\\x",
            "/api/..;/x",
            "/.;x/y",
        ] {
            assert!(ambiguous(p).is_some(), "{p}");
        }
        for p in ["/api/x", "/a;b=1/c", "/a/..b;/c", "/%41", "/a%20b"] {
            assert_eq!(ambiguous(p), None, "{p}");
        }
    }

    #[test]
    fn normal_paths_are_left_alone() {
        for p in ["/", "/api/x", "/a.b/c.d", "/.well-known/x", "/a/..b", "*"] {
            assert_eq!(normalize(p), None, "{p}");
        }
    }
}
