//! A JSON tree for one NDJSON line that borrows its strings from the line.
//!
//! `serde_json::Value` owns everything: a `String` for every key and every string value
//! and a `BTreeMap` per object, all allocated for each FHIR resource and freed again a few
//! microseconds later (about 7% of a load's time, BENCHMARKS.md). [`Json`] is read by the
//! same `serde_json` parser through the same `deserialize_any` calls, so it accepts and
//! rejects exactly the lines `Value` does and reads the same numbers; only its storage
//! differs. Strings without escapes borrow from the line, and an object is a `Vec` of its
//! members.
//!
//! A key sent twice is looked up as its last value, which is what `Value` keeps (its map
//! overwrites). [`Json::into_owned`] detaches a tree from its line, for the resources that
//! outlive it (Patients and Medications).

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;
use std::borrow::Cow;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Members in the order sent, repeated keys included (see [`Json::get`]).
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// The value of `key` when this is an object holding it: the last one sent, as
    /// `serde_json::Value::get` gives.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The same tree with every string owned, so it can outlive the line it was read from.
    pub fn into_owned(self) -> Json<'static> {
        match self {
            Json::Null => Json::Null,
            Json::Bool(b) => Json::Bool(b),
            Json::Number(n) => Json::Number(n),
            Json::String(s) => Json::String(Cow::Owned(s.into_owned())),
            Json::Array(items) => Json::Array(items.into_iter().map(Json::into_owned).collect()),
            Json::Object(members) => Json::Object(
                members
                    .into_iter()
                    .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                    .collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

/// Mirrors `serde_json`'s own visitor for `Value`, case for case, but keeps borrowed
/// strings borrowed.
struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(i.into()))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(u.into()))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Json<'de>, E> {
        Ok(Number::from_f64(f).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s)))
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json<'de>, D::Error> {
        Deserialize::deserialize(deserializer)
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(Key(key)) = map.next_key()? {
            members.push((key, map.next_value()?));
        }
        Ok(Json::Object(members))
    }
}

/// An object's key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The `Value` a tree stands for: members inserted in order, so a repeated key ends
    /// as its last value, as in `serde_json`'s own map.
    fn to_value(json: &Json<'_>) -> Value {
        match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.to_string()),
            Json::Array(items) => Value::Array(items.iter().map(to_value).collect()),
            Json::Object(members) => {
                let mut map = serde_json::Map::new();
                for (k, v) in members {
                    map.insert(k.to_string(), to_value(v));
                }
                Value::Object(map)
            }
        }
    }

    /// Both readings of one line: `Ok` with the same value, or both `Err`.
    fn same_as_value(line: &[u8]) {
        let ours = serde_json::from_slice::<Json<'_>>(line);
        let theirs = serde_json::from_slice::<Value>(line);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(&to_value(a), b, "{}", String::from_utf8_lossy(line)),
            (Err(_), Err(_)) => {}
            _ => panic!(
                "{}: Json {:?} but Value {:?}",
                String::from_utf8_lossy(line),
                ours.is_ok(),
                theirs.is_ok()
            ),
        }
    }

    #[test]
    fn reads_every_line_as_value_does() {
        let lines: &[&[u8]] = &[
            br#"{"resourceType":"Encounter","class":{"code":"HH"},"period":{"start":"2025-09-09"}}"#,
            br#"{"a":1,"b":-2,"c":2.5,"d":1e3,"e":-0,"f":18446744073709551615,"g":18446744073709551616}"#,
            br#"{"a":0.1,"b":1E-400,"c":123456789012345678901234567890,"d":-9223372036854775809}"#,
            br#"{"a":null,"b":true,"c":false,"d":[],"e":{},"f":[null,[1,[2]],{"x":{}}]}"#,
            br#"{"esc":"line\nbreak \"quoted\" \u00e9 \ud83d\ude00","k\u0065y":"v"}"#,
            br#"{"dup":1,"dup":"two","nested":{"dup":[1],"dup":{"x":1}}}"#,
            br#"  {"padded":true}  "#,
            br#"[1,2,3]"#,
            br#""just a string""#,
            br#"42"#,
            "{\"utf8\":\"caf\u{e9} \u{1f600}\"}".as_bytes(),
            // Rejected by both:
            br#"{"a":1e400}"#,
            br#"{"a":-1e400}"#,
            br#"{"a":"\ud800"}"#,
            br#"{"a":"\udc00x"}"#,
            br#"{"a":"\x"}"#,
            b"{\"a\":\"\xff\"}",
            b"{\"\xc3\":1}",
            b"{\"a\":\"tab\there\"}",
            br#"{"a":1,}"#,
            br#"{"a":1} {"b":2}"#,
            br#"{"a":1"#,
            br#"{a:1}"#,
            br#"{"a":01}"#,
            br#"{"a":NaN}"#,
            b"",
            b"   ",
        ];
        for line in lines {
            same_as_value(line);
        }
        // Nested past `serde_json`'s recursion limit: both refuse.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        same_as_value(deep.as_bytes());
        let deep_objects = format!("{}1{}", r#"{"a":"#.repeat(130), "}".repeat(130));
        same_as_value(deep_objects.as_bytes());
    }

    #[test]
    fn get_takes_the_last_of_a_repeated_key() {
        let json: Json<'_> = serde_json::from_str(r#"{"id":"first","x":1,"id":"second"}"#).expect("parses");
        assert_eq!(json.get("id").and_then(Json::as_str), Some("second"));
        assert_eq!(json.get("missing"), None);
        assert_eq!(json.get("x").and_then(Json::as_str), None);
        let array: Json<'_> = serde_json::from_str(r#"[{"id":"x"}]"#).expect("parses");
        assert_eq!(array.get("id"), None);
    }

    #[test]
    fn strings_without_escapes_borrow_the_line() {
        let line = r#"{"plain":"abc","escaped":"a\"b"}"#;
        let json: Json<'_> = serde_json::from_str(line).expect("parses");
        let Json::Object(members) = &json else {
            panic!("an object");
        };
        assert!(members.iter().all(|(k, _)| matches!(k, Cow::Borrowed(_))));
        assert!(matches!(json.get("plain"), Some(Json::String(Cow::Borrowed("abc")))));
        assert!(matches!(json.get("escaped"), Some(Json::String(Cow::Owned(s))) if s == "a\"b"));
    }

    #[test]
    fn owned_trees_equal_their_borrowed_originals() {
        let line = br#"{"id":"p1","code":{"coding":[{"system":"s","code":"c\u0041"}]},"n":[1.5,true,null]}"#;
        let json: Json<'_> = serde_json::from_slice(line).expect("parses");
        let owned = json.clone().into_owned();
        assert_eq!(owned, json);
    }
}
