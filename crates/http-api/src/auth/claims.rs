//! A token's claims, read so that a name written twice is noticed instead of the last one
//! silently winning (`"role":"user","role":"admin"` must not make an admin: a consumer that
//! keeps the first would disagree with us about who the caller is).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The claims object, and whether any object in it (at any depth) repeats a name.
#[derive(Debug)]
pub(crate) struct Claims {
    pub(crate) map: Map<String, Value>,
    pub(crate) repeats_a_name: bool,
}

impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let checked = deserializer.deserialize_any(CheckedVisitor)?;
        match checked.value {
            Value::Object(map) => Ok(Self {
                map,
                repeats_a_name: checked.repeats_a_name,
            }),
            _ => Err(de::Error::custom("the claims are not a JSON object")),
        }
    }
}

/// A JSON value and whether one of its objects repeats a name.
struct Checked {
    value: Value,
    repeats_a_name: bool,
}

impl Checked {
    fn plain(value: Value) -> Self {
        Self {
            value,
            repeats_a_name: false,
        }
    }
}

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Checked, E> {
        Ok(Checked::plain(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Checked, E> {
        Ok(Checked::plain(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Checked, E> {
        Ok(Checked::plain(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Checked, E> {
        Ok(Checked::plain(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Checked, E> {
        Ok(Checked::plain(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Checked, E> {
        Ok(Checked::plain(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked::plain(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Checked, E> {
        Ok(Checked::plain(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Checked, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        let mut items = Vec::new();
        let mut repeats_a_name = false;
        while let Some(item) = seq.next_element::<Checked>()? {
            repeats_a_name |= item.repeats_a_name;
            items.push(item.value);
        }
        Ok(Checked {
            value: Value::Array(items),
            repeats_a_name,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Checked, A::Error> {
        let mut map = Map::new();
        let mut repeats_a_name = false;
        while let Some(name) = entries.next_key::<String>()? {
            let item = entries.next_value::<Checked>()?;
            repeats_a_name |= item.repeats_a_name;
            repeats_a_name |= map.insert(name, item.value).is_some();
        }
        Ok(Checked {
            value: Value::Object(map),
            repeats_a_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Claims {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_repeated_name_is_noticed_at_any_depth() {
        assert!(read(r#"{"role":"user","role":"admin"}"#).repeats_a_name);
        assert!(read(r#"{"realm":{"roles":["a"],"roles":["admin"]}}"#).repeats_a_name);
        assert!(read(r#"{"groups":[{"id":1,"id":2}]}"#).repeats_a_name);
        let clean = read(r#"{"role":"user","nested":{"role":"admin"},"list":[{"a":1},{"a":2}]}"#);
        assert!(!clean.repeats_a_name);
        assert_eq!(clean.map["nested"]["role"], "admin");
        assert_eq!(clean.map["list"][1]["a"], 2);
    }

    #[test]
    fn a_name_repeated_in_an_escaped_spelling_is_noticed() {
        // `r\u006fle` is `role`: names are compared as the JSON means them, not as written,
        // or a forger smuggles a second role past the check.
        assert!(read(r#"{"role":"user","r\u006fle":"admin"}"#).repeats_a_name);
        assert!(read(r#"{"r\u006fle":"admin","role":"user"}"#).repeats_a_name);
        assert!(read(r#"{"realm":{"\u0072oles":["a"],"roles":["admin"]}}"#).repeats_a_name);
        // A surrogate pair and the character it spells are one name too.
        assert!(read(r#"{"\ud83d\ude00":1,"😀":2}"#).repeats_a_name);
        // Alone, the escaped spelling is simply the name.
        let single = read(r#"{"r\u006fle":"admin"}"#);
        assert!(!single.repeats_a_name);
        assert_eq!(single.map["role"], "admin");
    }

    #[test]
    fn values_read_as_serde_json_reads_them() {
        let claims = read(r#"{"a":null,"b":true,"c":-1,"d":18446744073709551615,"e":1.5,"f":"x"}"#);
        let plain: Map<String, Value> = serde_json::from_str(
            r#"{"a":null,"b":true,"c":-1,"d":18446744073709551615,"e":1.5,"f":"x"}"#,
        )
        .unwrap();
        assert_eq!(claims.map, plain);
        assert!(serde_json::from_str::<Claims>("[1]").is_err());
    }
}
