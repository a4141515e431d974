//! How the records a shard hands to another step (SPEC §9's parts) are written as JSON: serde
//! for the types that cross, with exact amounts (`rust_decimal`'s `serde-str`: amounts are
//! strings, never JSON numbers) and the few shapes JSON has no word for.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// A name read back as the `&'static str` the engine keeps file, column and fate names as.
/// Names come from a small fixed set (files, columns, fates, ledger kinds), so each distinct
/// name is leaked once and shared after.
pub fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// `#[serde(with = "crate::serial::static_keys")]`: a map keyed by `&'static str`.
pub mod static_keys {
    use super::intern;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<V: Serialize, S: Serializer>(
        map: &BTreeMap<&'static str, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        map.serialize(s)
    }

    pub fn deserialize<'de, V: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<&'static str, V>, D::Error> {
        let map: BTreeMap<String, V> = BTreeMap::deserialize(d)?;
        Ok(map.into_iter().map(|(k, v)| (intern(&k), v)).collect())
    }
}

/// `#[serde(with = "crate::serial::pairs")]`: a map whose key is not text (JSON's keys are),
/// written as a list of `[key, value]` pairs in key order.
pub mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let pairs: Vec<(K, V)> = Vec::deserialize(d)?;
        Ok(pairs.into_iter().collect())
    }
}

/// Serde for a type that is written as its text (`Display`) and read back by `FromStr`.
macro_rules! as_text {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text: String = serde::Deserialize::deserialize(d)?;
                text.parse::<$t>().map_err(|_| {
                    serde::de::Error::custom(format!("{text:?}: not a {}", stringify!($t)))
                })
            }
        }
    };
}
pub(crate) use as_text;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn interned_names_are_shared() {
        let a = intern("bill_lines.csv");
        let b = intern(&String::from("bill_lines.csv"));
        assert!(std::ptr::eq(a, b));
    }

    #[test]
    fn pairs_round_trip_a_map_keyed_by_tuples() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Carry {
            #[serde(with = "pairs")]
            carry: BTreeMap<(String, u32), String>,
        }
        let carry = Carry {
            carry: [(("P1".to_string(), 2), "-1.50".to_string())].into(),
        };
        let json = serde_json::to_string(&carry).unwrap();
        assert_eq!(json, r#"{"carry":[[["P1",2],"-1.50"]]}"#);
        assert_eq!(serde_json::from_str::<Carry>(&json).unwrap(), carry);
    }
}
