//! Lenient decoding helpers for upstream JSON (docs/api.md): any field may be missing or `null`,
//! a number may arrive as an integer, a float or a numeric string, and a field of an unexpected
//! shape (an object where a number belongs, say) is read as absent instead of failing the whole
//! response. Every helper is meant for `#[serde(default, deserialize_with = "...")]`.

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// What a lenient scalar field held.
enum Scalar {
    /// An integer as written (kept exact: 19-digit ICCIDs do not fit an f64).
    Int(i128),
    Num(f64),
    Str(String),
    Bool(bool),
    Absent,
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(i128::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Int(i128::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Num(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Str(v))
    }
    fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Absent)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Absent)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Absent)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Absent)
    }
}

/// Parses a numeric string leniently: surrounding whitespace is ignored; only finite values count.
pub fn parse_number(s: &str) -> Option<f64> {
    let v: f64 = s.trim().parse().ok()?;
    v.is_finite().then_some(v)
}

/// A number from an integer, a float or a numeric string; anything else is `None`.
pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match d.deserialize_any(ScalarVisitor)? {
        Scalar::Int(v) => Some(v as f64),
        Scalar::Num(v) if v.is_finite() => Some(v),
        Scalar::Str(s) => parse_number(&s),
        _ => None,
    })
}

/// An integer code (status, type, ...): integral numbers, floats with no fraction
/// (`8.0`) and numeric strings; anything else is `None`.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(opt_f64(d)?.and_then(f64_to_i64))
}

/// Converts an integral, in-range float to `i64`.
pub fn f64_to_i64(v: f64) -> Option<i64> {
    (v.fract() == 0.0 && v.abs() < 9.0e15).then_some(v as i64)
}

/// A string; numbers and booleans are turned into their text, other shapes are `None`.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match d.deserialize_any(ScalarVisitor)? {
        Scalar::Str(s) => Some(s),
        Scalar::Int(v) => Some(v.to_string()),
        // An integral float beyond 2^53 (e.g. a 20-digit ICCID sent as a number) has lost
        // digits already: absent is better than a wrong identifier.
        Scalar::Num(v) if v.fract() == 0.0 && v.abs() > 9_007_199_254_740_992.0 => None,
        Scalar::Num(v) => Some(match f64_to_i64(v) {
            Some(i) => i.to_string(),
            None => v.to_string(),
        }),
        Scalar::Bool(b) => Some(b.to_string()),
        Scalar::Absent => None,
    })
}

/// A boolean from `true`/`false`, `1`/`0` or their string forms; anything else is `None`.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match d.deserialize_any(ScalarVisitor)? {
        Scalar::Bool(b) => Some(b),
        Scalar::Int(1) | Scalar::Num(1.0) => Some(true),
        Scalar::Int(0) => Some(false),
        Scalar::Num(0.0) => Some(false),
        Scalar::Str(s) => match s.trim() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    })
}

/// A list whose elements are decoded one by one; elements that fail to decode are dropped,
/// and a value that is not a list (or `null`) is an empty list.
pub fn lenient_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter_map(|item| serde_json::from_value(item).ok())
            .collect(),
        _ => Vec::new(),
    })
}

/// An object decoded leniently; a value of another shape (or one that fails) is `None`.
pub fn lenient_obj<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Object(_) => serde_json::from_value(v).ok(),
        _ => None,
    })
}
