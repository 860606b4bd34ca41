//! Durations written the way people write them: `"2s"`, `"500ms"`, `"1m"`,
//! `"1h"`, `"250us"`. A bare number is refused: `30` could mean anything.
//! Errors never quote the text: a secret pasted into the wrong field must
//! not end up in `check`'s output or a log.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A `std::time::Duration` that (de)serializes as `"2s"` / `"500ms"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// Whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// Milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    /// The std duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// Parses `"<number><unit>"` with unit `us`, `ms`, `s`, `m` or `h`.
    ///
    /// # Errors
    /// A message saying what was expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| {
                "a duration needs a unit (write e.g. \"2s\" or \"500ms\")".to_string()
            })?;
        let (number, unit) = text.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| "a duration starts with a number (e.g. \"2s\")".to_string())?;
        let secs = match unit.trim() {
            "us" | "µs" => value / 1_000_000.0,
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => {
                return Err("a duration's unit is us, ms, s, m or h".to_string());
            }
        };
        if !secs.is_finite() || secs > 365.0 * 86400.0 {
            return Err("a duration is at most a year".to_string());
        }
        Ok(Self(std::time::Duration::from_secs_f64(secs)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            write!(f, "{}s", d.as_secs())
        } else if d.as_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}ms", d.as_millis())
        } else {
            write!(f, "{}us", d.as_micros())
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"2s\" or \"500ms\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::Duration;

    #[test]
    fn parses_units() {
        assert_eq!(Duration::parse("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(
            Duration::parse("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(Duration::parse("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(
            Duration::parse("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(Duration::parse("250us").unwrap().get().as_micros(), 250);
    }

    #[test]
    fn refuses_bare_numbers_and_unknown_units() {
        assert!(Duration::parse("30").unwrap_err().contains("needs a unit"));
        assert!(
            Duration::parse("3 days")
                .unwrap_err()
                .contains("unit is us, ms, s, m or h")
        );
        assert!(
            Duration::parse("s")
                .unwrap_err()
                .contains("starts with a number")
        );
        // A secret pasted into a duration field is never quoted back.
        for secret in ["Bearer s3cr3t-token", "12s3cr3t", "s3cr3t"] {
            assert!(!Duration::parse(secret).unwrap_err().contains("s3cr3t"));
        }
    }

    #[test]
    fn displays_round_trip() {
        for text in ["2s", "500ms", "250us"] {
            assert_eq!(Duration::parse(text).unwrap().to_string(), text);
        }
    }
}
