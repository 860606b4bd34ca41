//! The chunked transfer coding (RFC 9112 §7.1), decoded as bytes arrive:
//! data as it comes, trailers at the end. Chunk extensions are skipped.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::MAX_HEADERS;

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Chunk {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk: bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
}

/// What one step of the chunked decoder produced.
pub(crate) enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    End,
    /// Needs more bytes.
    More,
}

/// Decodes what the buffer holds of a chunked body.
pub(crate) fn decode(state: &mut Chunk, buf: &mut BytesMut) -> Result<Decoded, &'static str> {
    loop {
        match *state {
            Chunk::Size => match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((used, 0))) => {
                    buf.advance(used);
                    *state = Chunk::Trailers;
                }
                Ok(httparse::Status::Complete((used, size))) => {
                    buf.advance(used);
                    *state = Chunk::Data(size);
                }
                Ok(httparse::Status::Partial) => return Ok(Decoded::More),
                Err(_) => return Err("invalid chunk size"),
            },
            Chunk::Data(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let data = buf.split_to(n).freeze();
                let left = left - n as u64;
                *state = if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                };
                return Ok(Decoded::Data(data));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Decoded::More);
                }
                if &buf[..2] != b"\r\n" {
                    return Err("chunk not followed by CRLF");
                }
                buf.advance(2);
                *state = Chunk::Size;
            }
            Chunk::Trailers => {
                if buf.starts_with(b"\r\n") {
                    buf.advance(2);
                    return Ok(Decoded::End);
                }
                let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                return match httparse::parse_headers(buf, &mut slots) {
                    Ok(httparse::Status::Complete((used, fields))) => {
                        let mut trailers = HeaderMap::new();
                        for f in fields {
                            if let (Ok(n), Ok(v)) = (
                                HeaderName::from_bytes(f.name.as_bytes()),
                                HeaderValue::from_bytes(f.value),
                            ) {
                                trailers.append(n, v);
                            }
                        }
                        buf.advance(used);
                        Ok(Decoded::Trailers(trailers))
                    }
                    Ok(httparse::Status::Partial) => Ok(Decoded::More),
                    Err(_) => Err("invalid trailers"),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` one after the other, collecting data and trailers.
    fn dechunk(pieces: &[&[u8]]) -> Result<(Vec<u8>, Option<HeaderMap>, bool), &'static str> {
        let (mut state, mut buf) = (Chunk::Size, BytesMut::new());
        let (mut data, mut trailers) = (Vec::new(), None);
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                match decode(&mut state, &mut buf)? {
                    Decoded::Data(d) => data.extend_from_slice(&d),
                    Decoded::Trailers(t) => {
                        trailers = Some(t);
                        return Ok((data, trailers, buf.is_empty()));
                    }
                    Decoded::End => return Ok((data, trailers, buf.is_empty())),
                    Decoded::More => break,
                }
            }
        }
        Err("unfinished")
    }

    #[test]
    fn chunked_bodies_split_anywhere() {
        let body: &[u8] = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        for cut in 1..body.len() {
            let (data, trailers, clean) = dechunk(&[&body[..cut], &body[cut..]]).unwrap();
            assert_eq!(data, b"hello world", "cut at {cut}");
            assert!(trailers.is_none() && clean);
        }
        let (data, trailers, _) = dechunk(&[b"2\r\nok\r\n0\r\nx-t: 1\r\nx-u: 2\r\n\r\n"]).unwrap();
        assert_eq!(data, b"ok");
        let trailers = trailers.unwrap();
        assert_eq!(trailers["x-t"], "1");
        assert_eq!(trailers["x-u"], "2");
        assert_eq!(dechunk(&[b"zz\r\n"]).unwrap_err(), "invalid chunk size");
        assert_eq!(
            dechunk(&[b"2\r\nokXX"]).unwrap_err(),
            "chunk not followed by CRLF"
        );
    }
}
