//! A header map in proxy-wasm's serialization (what `proxy_get_header_map_pairs` returns),
//! read in place: the count, each pair's name and value lengths (little-endian `u32`s), then
//! each name and value followed by a NUL.
//!
//! The signer reads the request's headers this way: one hostcall and one allocation for the
//! whole list, where a read per header costs a hostcall and an allocation each, and the
//! SDK's own reader an allocation per name and per value.

/// The pairs of `bytes`, borrowed from it, in order; `None` when `bytes` is not a
/// well-formed map (the caller reads the map some other way). An empty input is the empty map.
pub fn pairs(bytes: &[u8]) -> Option<Pairs<'_>> {
    let all = Pairs::new(bytes)?;
    // The lengths must account for every byte (names and values each followed by one
    // byte, the NUL): checked once here, so that iterating cannot fail.
    let mut end = all.at;
    for i in 0..all.count {
        let lengths = word(bytes, 4 + i * 8)?.checked_add(word(bytes, 8 + i * 8)?)?;
        end = end.checked_add(lengths)?.checked_add(2)?;
    }
    (end == bytes.len()).then_some(all)
}

/// An iterator over a checked serialized map.
#[derive(Debug, Clone)]
pub struct Pairs<'a> {
    bytes: &'a [u8],
    /// Pairs not read yet.
    count: usize,
    /// Where the next pair's lengths are.
    lengths: usize,
    /// Where the next pair's name is.
    at: usize,
}

impl<'a> Pairs<'a> {
    fn new(bytes: &'a [u8]) -> Option<Self> {
        if bytes.is_empty() {
            return Some(Pairs {
                bytes,
                count: 0,
                lengths: 0,
                at: 0,
            });
        }
        let count = word(bytes, 0)?;
        // Every pair takes at least 10 bytes: two lengths and two NULs.
        if count > bytes.len() / 10 {
            return None;
        }
        Some(Pairs {
            bytes,
            count,
            lengths: 4,
            at: 4 + count * 8,
        })
    }

    /// The next pair; `None` at the end or where the map is malformed.
    fn step(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        if self.count == 0 {
            return None;
        }
        let (name_len, value_len) = (
            word(self.bytes, self.lengths)?,
            word(self.bytes, self.lengths + 4)?,
        );
        let name_end = self.at.checked_add(name_len)?;
        let value_start = name_end + 1;
        let value_end = value_start.checked_add(value_len)?;
        let name = self.bytes.get(self.at..name_end)?;
        let value = self.bytes.get(value_start..value_end)?;
        self.count -= 1;
        self.lengths += 8;
        self.at = value_end + 1;
        Some((name, value))
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        self.step()
    }
}

/// The little-endian `u32` at `at`.
fn word(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The serialization, as a host writes it.
    fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (n, v) in pairs {
            out.extend_from_slice(&(n.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (n, v) in pairs {
            for part in [n, v] {
                out.extend_from_slice(part.as_bytes());
                out.push(0);
            }
        }
        out
    }

    #[test]
    fn reads_every_pair_in_order() {
        let list = [(":method", "GET"), (":path", "/a?b"), ("x", ""), ("x", "2")];
        let bytes = serialize(&list);
        let read: Vec<_> = pairs(&bytes).unwrap().collect();
        let expected: Vec<(&[u8], &[u8])> = list
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        assert_eq!(read, expected);
        assert_eq!(pairs(&serialize(&[])).unwrap().count(), 0);
        assert_eq!(pairs(b"").unwrap().count(), 0);
    }

    #[test]
    fn refuses_malformed_maps() {
        let good = serialize(&[("a", "b"), ("cc", "dd")]);
        // Every truncation, a missing NUL, a trailing byte, a count too large.
        for cut in 1..good.len() {
            assert!(pairs(&good[..cut]).is_none(), "cut at {cut}");
        }
        // The lengths decide; the byte after each name and value is skipped unread.
        let mut no_nul = good.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        assert_eq!(pairs(&no_nul).unwrap().count(), 2);
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(pairs(&trailing).is_none());
        let mut huge = good;
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(pairs(&huge).is_none());
    }
}
