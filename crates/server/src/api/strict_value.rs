//! A JSON value read the way the OpenAPI document describes it. Serde's derived structs also
//! accept a JSON array of their fields in order (`"capacity": [1, 2048]`), which no schema in
//! the document allows; [`StrictValue`] refuses an array wherever a struct is expected, at any
//! depth, and reads everything else exactly as `serde_json::Value` does.

use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Unexpected,
    Visitor,
};
use serde_json::{Map, Value};

/// A `serde_json::Value` as a deserializer that reads structs from objects only.
pub struct StrictValue(pub Value);

impl<'de> IntoDeserializer<'de, serde_json::Error> for StrictValue {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for StrictValue {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(m) => visitor.visit_map(StrictMap::new(m)),
            Value::Array(a) => visitor.visit_seq(StrictSeq(a.into_iter())),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(m) => visitor.visit_map(StrictMap::new(m)),
            Value::Array(_) => Err(de::Error::invalid_type(Unexpected::Seq, &visitor)),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(m) => visitor.visit_map(StrictMap::new(m)),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(a) => visitor.visit_seq(StrictSeq(a.into_iter())),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(StrictValue(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    // Enums, scalars and the rest read as `Value` reads them (an externally tagged variant's
    // payload is not checked further; the API's enums carry none that is a struct).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct identifier ignored_any
    }
}

/// The entries of an object, each value read strictly.
struct StrictMap {
    entries: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl StrictMap {
    fn new(m: Map<String, Value>) -> StrictMap {
        StrictMap {
            entries: m.into_iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for StrictMap {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(Value::String(k)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let v = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value was asked for before its key"))?;
        seed.deserialize(StrictValue(v))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// The items of an array, each read strictly.
struct StrictSeq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for StrictSeq {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(StrictValue(v)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        cpu: Option<u32>,
        memory: Option<u64>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Outer {
        inner: Option<Inner>,
        #[serde(default)]
        list: Vec<Inner>,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        kind: Option<Kind>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Process,
        Vm,
    }

    fn strict(v: Value) -> Result<Outer, serde_json::Error> {
        Outer::deserialize(StrictValue(v))
    }

    #[test]
    fn objects_read_as_serde_json_reads_them() {
        let v = json!({"inner": {"cpu": 2, "memory": null}, "list": [{"cpu": 1}],
            "labels": {"zone": "a"}, "kind": "vm"});
        let expected: Outer = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(strict(v).unwrap(), expected);
        assert_eq!(strict(json!({"inner": null})).unwrap().inner, None);
    }

    #[test]
    fn an_array_for_a_struct_is_refused_at_any_depth() {
        // The negative control: serde_json itself takes both.
        let top = json!({"inner": [null, null]});
        let nested = json!({"list": [[1, 2]]});
        assert!(serde_json::from_value::<Outer>(top.clone()).is_ok());
        assert!(serde_json::from_value::<Outer>(nested.clone()).is_ok());
        let e = strict(top).unwrap_err().to_string();
        assert!(e.contains("invalid type: sequence"), "{e}");
        assert!(strict(nested).is_err());
        assert!(Outer::deserialize(StrictValue(json!([null, [], {}, null]))).is_err());
    }

    #[test]
    fn wrong_types_are_still_refused() {
        assert!(strict(json!({"inner": {"cpu": "two"}})).is_err());
        assert!(strict(json!({"inner": {"cpu": 1, "gpu": 1}})).is_err());
        assert!(strict(json!({"labels": ["a"]})).is_err());
        assert!(strict(json!({"kind": "container"})).is_err());
    }
}
