//! The part of Structured Field Values (RFC 8941) that HTTP Message Signatures use:
//! dictionaries whose members are inner lists (`Signature-Input`) or byte sequences
//! (`Signature`, `Content-Digest`), with parameters, and the serialization of an inner list
//! (the `@signature-params` line of a signature base).
//!
//! Decimals are not supported (no signature field uses them): a field that holds one is
//! refused as a parse error, which a verifier answers like any other malformed field.

use crate::crypto;

/// A bare item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BareItem {
    /// An integer (at most 15 digits).
    Integer(i64),
    /// A string (printable ASCII).
    String(String),
    /// A token.
    Token(String),
    /// A byte sequence.
    Bytes(Vec<u8>),
    /// A boolean.
    Boolean(bool),
}

/// Parameters, in order.
pub type Params = Vec<(String, BareItem)>;

/// An item with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The value.
    pub bare: BareItem,
    /// Its parameters.
    pub params: Params,
}

/// A dictionary member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    /// A single item.
    Item(Item),
    /// An inner list and its parameters.
    InnerList(Vec<Item>, Params),
}

/// Why a field did not parse (the field's text is not kept: it may hold a signature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError;

/// The value of `name` among `params`.
pub fn param<'a>(params: &'a Params, name: &str) -> Option<&'a BareItem> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Parses a dictionary (RFC 8941 §4.2.2). A repeated key keeps its first position and its
/// last value.
///
/// # Errors
/// [`ParseError`] for anything that is not a valid dictionary.
pub fn parse_dictionary(input: &str) -> Result<Vec<(String, Member)>, ParseError> {
    let mut p = Parser {
        s: input.as_bytes(),
        i: 0,
    };
    p.skip(b' ');
    let mut out: Vec<(String, Member)> = Vec::new();
    while !p.done() {
        let key = p.key()?;
        let member = if p.eat(b'=') {
            if p.peek() == Some(b'(') {
                p.inner_list()?
            } else {
                Member::Item(p.item()?)
            }
        } else {
            Member::Item(Item {
                bare: BareItem::Boolean(true),
                params: p.params()?,
            })
        };
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = member,
            None => out.push((key, member)),
        }
        p.skip_ows();
        if p.done() {
            return Ok(out);
        }
        if !p.eat(b',') {
            return Err(ParseError);
        }
        p.skip_ows();
        if p.done() {
            return Err(ParseError);
        }
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn skip(&mut self, c: u8) {
        while self.eat(c) {}
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn key(&mut self) -> Result<String, ParseError> {
        let start = self.i;
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => self.i += 1,
            _ => return Err(ParseError),
        }
        while matches!(self.peek(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c))
        {
            self.i += 1;
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn inner_list(&mut self) -> Result<Member, ParseError> {
        self.i += 1; // '('
        let mut items = Vec::new();
        loop {
            self.skip(b' ');
            if self.eat(b')') {
                return Ok(Member::InnerList(items, self.params()?));
            }
            items.push(self.item()?);
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return Err(ParseError);
            }
        }
    }

    fn item(&mut self) -> Result<Item, ParseError> {
        let bare = self.bare_item()?;
        Ok(Item {
            bare,
            params: self.params()?,
        })
    }

    fn params(&mut self) -> Result<Params, ParseError> {
        let mut params: Params = Vec::new();
        while self.eat(b';') {
            self.skip(b' ');
            let key = self.key()?;
            let value = if self.eat(b'=') {
                self.bare_item()?
            } else {
                BareItem::Boolean(true)
            };
            match params.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => params.push((key, value)),
            }
        }
        Ok(params)
    }

    fn bare_item(&mut self) -> Result<BareItem, ParseError> {
        match self.peek().ok_or(ParseError)? {
            b'-' | b'0'..=b'9' => self.integer(),
            b'"' => self.string(),
            b':' => self.bytes(),
            b'?' => {
                self.i += 1;
                let value = match self.peek() {
                    Some(b'1') => true,
                    Some(b'0') => false,
                    _ => return Err(ParseError),
                };
                self.i += 1;
                Ok(BareItem::Boolean(value))
            }
            c if c.is_ascii_alphabetic() || c == b'*' => {
                let start = self.i;
                self.i += 1;
                while matches!(self.peek(), Some(c) if is_tchar(c) || c == b':' || c == b'/') {
                    self.i += 1;
                }
                Ok(BareItem::Token(
                    String::from_utf8_lossy(&self.s[start..self.i]).into_owned(),
                ))
            }
            _ => Err(ParseError),
        }
    }

    fn integer(&mut self) -> Result<BareItem, ParseError> {
        let negative = self.eat(b'-');
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let digits = &self.s[start..self.i];
        if digits.is_empty() || digits.len() > 15 || self.peek() == Some(b'.') {
            return Err(ParseError);
        }
        let n: i64 = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or(ParseError)?;
        Ok(BareItem::Integer(if negative { -n } else { n }))
    }

    fn string(&mut self) -> Result<BareItem, ParseError> {
        self.i += 1; // '"'
        let mut out = String::new();
        loop {
            let c = self.peek().ok_or(ParseError)?;
            self.i += 1;
            match c {
                b'"' => return Ok(BareItem::String(out)),
                b'\\' => match self.peek() {
                    Some(e @ (b'"' | b'\\')) => {
                        self.i += 1;
                        out.push(char::from(e));
                    }
                    _ => return Err(ParseError),
                },
                0x20..=0x7e => out.push(char::from(c)),
                _ => return Err(ParseError),
            }
        }
    }

    fn bytes(&mut self) -> Result<BareItem, ParseError> {
        self.i += 1; // ':'
        let start = self.i;
        while matches!(self.peek(), Some(c) if c != b':') {
            self.i += 1;
        }
        if !self.eat(b':') {
            return Err(ParseError);
        }
        let text = std::str::from_utf8(&self.s[start..self.i - 1]).map_err(|_| ParseError)?;
        crypto::base64_decode(text)
            .map(BareItem::Bytes)
            .ok_or(ParseError)
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Serializes a string item (RFC 8941 §4.1.6). The caller guarantees printable ASCII.
pub fn serialize_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

fn serialize_bare(item: &BareItem, out: &mut String) {
    match item {
        BareItem::Integer(n) => out.push_str(&n.to_string()),
        BareItem::String(s) => serialize_string(s, out),
        BareItem::Token(t) => out.push_str(t),
        BareItem::Bytes(b) => {
            out.push(':');
            out.push_str(&crypto::base64_encode(b));
            out.push(':');
        }
        BareItem::Boolean(b) => out.push_str(if *b { "?1" } else { "?0" }),
    }
}

fn serialize_params(params: &Params, out: &mut String) {
    for (key, value) in params {
        out.push(';');
        out.push_str(key);
        if *value != BareItem::Boolean(true) {
            out.push('=');
            serialize_bare(value, out);
        }
    }
}

/// Serializes an inner list with its parameters (RFC 8941 §4.1.1.1).
pub fn serialize_inner_list(items: &[Item], params: &Params) -> String {
    let mut out = String::from("(");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        serialize_bare(&item.bare, &mut out);
        serialize_params(&item.params, &mut out);
    }
    out.push(')');
    serialize_params(params, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(s: &str) -> Item {
        Item {
            bare: BareItem::String(s.to_owned()),
            params: Vec::new(),
        }
    }

    #[test]
    fn parses_signature_input_and_serializes_it_back_unchanged() {
        let field = r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#;
        let dict = parse_dictionary(field).unwrap();
        assert_eq!(dict.len(), 1);
        let (label, Member::InnerList(items, params)) = &dict[0] else {
            panic!("inner list expected: {dict:?}");
        };
        assert_eq!(label, "sig-b25");
        assert_eq!(
            items,
            &[string("date"), string("@authority"), string("content-type")]
        );
        assert_eq!(
            param(params, "created"),
            Some(&BareItem::Integer(1_618_884_473))
        );
        assert_eq!(
            format!("{label}={}", serialize_inner_list(items, params)),
            field
        );
    }

    #[test]
    fn parses_several_members_bytes_tokens_and_booleans() {
        let dict =
            parse_dictionary("a=:cGF4:, b=?0;x, c, d=tok/en:1;y=-12, e=(\"x\";sf \"y\")").unwrap();
        let keys: Vec<&str> = dict.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "d", "e"]);
        assert_eq!(
            dict[0].1,
            Member::Item(Item {
                bare: BareItem::Bytes(b"pax".to_vec()),
                params: vec![]
            })
        );
        assert_eq!(
            dict[2].1,
            Member::Item(Item {
                bare: BareItem::Boolean(true),
                params: vec![]
            })
        );
        let Member::Item(d) = &dict[3].1 else {
            panic!()
        };
        assert_eq!(d.bare, BareItem::Token("tok/en:1".into()));
        assert_eq!(param(&d.params, "y"), Some(&BareItem::Integer(-12)));
        let Member::InnerList(items, _) = &dict[4].1 else {
            panic!()
        };
        assert_eq!(
            param(&items[0].params, "sf"),
            Some(&BareItem::Boolean(true))
        );
    }

    #[test]
    fn escapes_round_trip() {
        let dict = parse_dictionary(r#"k=("a\"b\\c")"#).unwrap();
        let Member::InnerList(items, params) = &dict[0].1 else {
            panic!()
        };
        assert_eq!(items[0].bare, BareItem::String("a\"b\\c".into()));
        assert_eq!(serialize_inner_list(items, params), r#"("a\"b\\c")"#);
    }

    #[test]
    fn refuses_malformed_fields() {
        for bad in [
            "",
            "A=1",
            "a=1,",
            "a=1 b=2",
            "a=(\"x\"",
            "a=(\"x\"\"y\")",
            "a=\"unterminated",
            "a=\"bad\\n\"",
            "a=:not base64:",
            "a=:cGF4",
            "a=1.5",
            "a=1234567890123456",
            "a=?2",
            "a=@",
        ] {
            let parsed = parse_dictionary(bad);
            assert!(
                parsed.is_err() || bad.is_empty(),
                "{bad:?} parsed as {parsed:?}"
            );
        }
    }
}
