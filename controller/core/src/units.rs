//! Units that policies write as text: durations (`30s`, `5m`) and percentages (`1%`).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written the `humantime` way: `500ms`, `30s`, `5m`, `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span(pub Duration);

impl Span {
    /// A span of whole seconds.
    pub const fn secs(s: u64) -> Span {
        Span(Duration::from_secs(s))
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Parses `30s`, `5m`, `1h30m`, `500ms`; a bare number is refused because its unit
    /// would be a guess.
    pub fn parse(text: &str) -> Result<Span, String> {
        let t = text.trim();
        if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(format!(
                "`{t}` has no unit; write a duration with its unit, e.g. {t}s or {t}m"
            ));
        }
        humantime::parse_duration(t)
            .map(Span)
            .map_err(|e| format!("`{t}` is not a duration ({e}); write e.g. 500ms, 30s, 5m, 1h30m"))
    }
}

impl std::str::FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Span, String> {
        Span::parse(s)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Span;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 30s, 5m or 1h30m")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Span, E> {
                Span::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Span, E> {
                Err(E::custom(format!(
                    "`{v}` has no unit; write a duration with its unit, e.g. {v}s or {v}m"
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Span, E> {
                self.visit_u64(v.unsigned_abs())
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Span, E> {
                Err(E::custom(format!(
                    "`{v}` has no unit; write a duration with its unit, e.g. {v}s"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Span {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration with its unit: 500ms, 30s, 5m, 1h30m.",
            "pattern": "^([0-9]+(\\.[0-9]+)?\\s*(ns|us|ms|s|sec|m|min|h|hr|d)\\s*)+$"
        })
    }
}

/// A percentage written with its sign, `1%` or `0.5%`; held as a fraction (0.01).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Percent(f64);

impl Percent {
    /// The percentage as a fraction: `1%` is 0.01.
    pub fn fraction(self) -> f64 {
        self.0
    }

    /// A percentage from its fraction.
    pub fn from_fraction(f: f64) -> Percent {
        Percent(f)
    }

    /// Parses `1%`, `0.5%`, `150%`; the sign is required so that `1` is never read as 100 %.
    pub fn parse(text: &str) -> Result<Percent, String> {
        let t = text.trim();
        let Some(number) = t.strip_suffix('%') else {
            return Err(format!(
                "`{t}` is not a percentage; write it with a percent sign, e.g. 1% or 0.5%"
            ));
        };
        let v: f64 = number.trim().parse().map_err(|_| {
            format!("`{t}` is not a percentage; write a number and a percent sign, e.g. 1%")
        })?;
        if !v.is_finite() || v < 0.0 {
            return Err(format!("`{t}` must be a percentage of zero or more"));
        }
        Ok(Percent(v / 100.0))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0 * 100.0;
        // Round to 9 significant places so 0.07 prints as 7%, not 7.000000000000001%.
        let p = (p * 1e9).round() / 1e9;
        write!(f, "{p}%")
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Percent, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Percent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage such as 1% or 50%")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Percent, E> {
                Percent::parse(v).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Percent, E> {
                Err(E::custom(format!(
                    "`{v}` is not a percentage; write it with a percent sign, e.g. {v}%"
                )))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Percent, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Percent, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> Cow<'static, str> {
        "Percent".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A percentage with its sign: 1%, 0.5%, 50%.",
            "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*%\\s*$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        assert_eq!(Span::parse("5m").unwrap().get(), Duration::from_secs(300));
        assert_eq!(
            Span::parse("500ms").unwrap().get(),
            Duration::from_millis(500)
        );
        assert_eq!(
            Span::parse("1h30m").unwrap().get(),
            Duration::from_secs(5400)
        );
        assert!(Span::parse("30").unwrap_err().contains("no unit"));
        assert!(
            Span::parse("5 minutes please")
                .unwrap_err()
                .contains("not a duration")
        );
        assert_eq!(Span::secs(90).to_string(), "1m 30s");
    }

    #[test]
    fn percents() {
        assert_eq!(Percent::parse("1%").unwrap().fraction(), 0.01);
        assert_eq!(Percent::parse("50%").unwrap().fraction(), 0.5);
        assert!(Percent::parse("1").unwrap_err().contains("percent sign"));
        assert!(Percent::parse("-1%").is_err());
        assert!(Percent::parse("abc%").is_err());
        assert_eq!(Percent::parse("7%").unwrap().to_string(), "7%");
    }

    #[test]
    fn deserialize_from_yaml_like_values() {
        let s: Span = serde_json::from_str("\"30s\"").unwrap();
        assert_eq!(s, Span::secs(30));
        let e = serde_json::from_str::<Span>("30").unwrap_err().to_string();
        assert!(e.contains("no unit"), "{e}");
        let e = serde_json::from_str::<Percent>("0.01")
            .unwrap_err()
            .to_string();
        assert!(e.contains("percent sign"), "{e}");
    }
}
