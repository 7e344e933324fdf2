//! The names of a parameter type's fields, read from its `Deserialize` derive: the list that
//! validates a step's `with:` (through `deny_unknown_fields`) is the list the docs are checked
//! against (`Executor::params`), so the two cannot drift apart.

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The field names `T`'s derive accepts (aliases included), or none when `T` is not a plain
/// struct (a `#[serde(flatten)]` struct reads a map and names no fields: keep parameter types
/// flat).
pub fn names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut found = None;
    // The capture always answers an error: it only wants to see which fields are asked for.
    let _ = T::deserialize(Capture { found: &mut found });
    found.unwrap_or(&[])
}

/// A deserializer that records the field list of the struct asked of it, then stops.
struct Capture<'a> {
    found: &'a mut Option<&'static [&'static str]>,
}

/// The capture's only answer.
#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names captured")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for Capture<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        *self.found = Some(fields);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::names;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Flat {
        url: String,
        #[serde(default, rename = "expect_status")]
        status: Option<u16>,
    }

    #[test]
    fn a_plain_struct_names_its_fields_as_written_in_yaml() {
        assert_eq!(names::<Flat>(), &["url", "expect_status"]);
    }

    #[test]
    fn a_map_names_no_fields() {
        assert!(names::<std::collections::BTreeMap<String, String>>().is_empty());
    }
}
