//! An ordered JSON object that refuses a key written twice.
//!
//! A plain map would silently keep the last value of a repeated key; for
//! providers and a contract's release list that would hide a mistake, so
//! both are read as a [`UniqueMap`], in the order written.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// What the keys of a [`UniqueMap`] are, for its error messages.
pub trait Keys {
    /// What the map is, after "expected" (`an object of provider ids to providers`).
    const EXPECTING: &'static str;
    /// The message for `key` written twice.
    fn twice(key: &str) -> String;
}

/// A JSON object kept as a list of `(key, value)` in the order written.
pub struct UniqueMap<V, K: Keys> {
    pub entries: Vec<(String, V)>,
    keys: PhantomData<K>,
}

impl<V, K: Keys> UniqueMap<V, K> {
    /// A map of these entries (the caller vouches that keys are distinct).
    pub fn from_entries(entries: Vec<(String, V)>) -> Self {
        Self {
            entries,
            keys: PhantomData,
        }
    }
}

impl<V, K: Keys> Default for UniqueMap<V, K> {
    fn default() -> Self {
        Self::from_entries(Vec::new())
    }
}

impl<V: Clone, K: Keys> Clone for UniqueMap<V, K> {
    fn clone(&self) -> Self {
        Self::from_entries(self.entries.clone())
    }
}

impl<V: PartialEq, K: Keys> PartialEq for UniqueMap<V, K> {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl<V: Eq, K: Keys> Eq for UniqueMap<V, K> {}

impl<V: fmt::Debug, K: Keys> fmt::Debug for UniqueMap<V, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.entries).finish()
    }
}

impl<'de, V: Deserialize<'de>, K: Keys> Deserialize<'de> for UniqueMap<V, K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Seen<V, K>(PhantomData<(V, K)>);
        impl<'de, V: Deserialize<'de>, K: Keys> Visitor<'de> for Seen<V, K> {
            type Value = UniqueMap<V, K>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(K::EXPECTING)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = m.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(K::twice(&key)));
                    }
                    out.push((key, m.next_value()?));
                }
                Ok(UniqueMap::from_entries(out))
            }
        }
        d.deserialize_map(Seen(PhantomData))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    struct Fruit;
    impl Keys for Fruit {
        const EXPECTING: &'static str = "an object of fruit";
        fn twice(key: &str) -> String {
            format!("fruit `{key}` is listed twice")
        }
    }

    #[test]
    fn keys_keep_the_order_they_are_written_in() {
        let m: UniqueMap<u8, Fruit> = serde_json::from_str(r#"{"b": 1, "a": 2}"#).unwrap();
        assert_eq!(m.entries, vec![("b".into(), 1), ("a".into(), 2)]);
    }

    #[test]
    fn a_key_written_twice_is_refused_by_name() {
        let e = serde_json::from_str::<UniqueMap<u8, Fruit>>(r#"{"a": 1, "a": 2}"#).unwrap_err();
        assert!(e.to_string().contains("fruit `a` is listed twice"), "{e}");
        let e = serde_json::from_str::<UniqueMap<u8, Fruit>>("[1]").unwrap_err();
        assert!(e.to_string().contains("an object of fruit"), "{e}");
    }
}
