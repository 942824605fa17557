//! Property tests of the parsers and transforms that see untrusted input: manifest streams,
//! and the diff normaliser and Secret masker. Case counts are kept modest so the whole file
//! stays well under 20 s in a debug build.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::manifest::parse_stream;
use crate::normalize::{mask_secrets, normalize};

#[path = "../../tests/common/yamlish.rs"]
mod yamlish;
use yamlish::yamlish;

/// A parse that takes this long on a few KiB of input would be a complexity bug (alias
/// expansion, backtracking), not a slow machine.
const PARSE_BUDGET: Duration = Duration::from_secs(5);

fn config() -> ProptestConfig {
    ProptestConfig {
        // Failures print the minimal case; saving them to files in the source tree would
        // leave untracked files behind in a clean clone.
        failure_persistence: None,
        ..ProptestConfig::with_cases(256)
    }
}

fn parse_quickly(file: &str, bytes: &[u8]) {
    let start = Instant::now();
    let _ = parse_stream(file, bytes);
    assert!(
        start.elapsed() < PARSE_BUDGET,
        "{file}: parsing {} bytes took {:?}",
        bytes.len(),
        start.elapsed()
    );
}

/// JSON-ish text: the same idea for the `.json` path.
fn jsonish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("\"apiVersion\"".to_string()),
        Just("\"kind\"".to_string()),
        Just("\"metadata\"".to_string()),
        Just("\"name\"".to_string()),
        Just("\"v1\"".to_string()),
        Just("\"ConfigMap\"".to_string()),
        Just("null".to_string()),
        Just("1e999".to_string()),
        Just("-0".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("\n".to_string()),
        "\\PC{0,4}",
    ];
    prop::collection::vec(token, 0..64).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn manifest_streams_of_arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        parse_quickly("app/x.yaml", &bytes);
        parse_quickly("app/x.json", &bytes);
    }

    #[test]
    fn manifest_streams_of_yamlish_text_never_panic(text in yamlish()) {
        parse_quickly("app/x.yaml", text.as_bytes());
    }

    #[test]
    fn manifest_streams_of_jsonish_text_never_panic(text in jsonish()) {
        parse_quickly("app/x.json", text.as_bytes());
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys drawn mostly from the ones `normalize` looks at, so its branches are reached.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("metadata".to_string()),
        Just("status".to_string()),
        Just("annotations".to_string()),
        Just("labels".to_string()),
        Just("managedFields".to_string()),
        Just("resourceVersion".to_string()),
        Just("uid".to_string()),
        Just("kubectl.kubernetes.io/last-applied-configuration".to_string()),
        "[a-z]{1,6}",
    ]
}

fn json_object() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map(key(), json_value(), 0..6),
        prop::option::of(prop::collection::btree_map(key(), json_value(), 0..6)),
    )
        .prop_map(|(top, meta)| {
            let mut map: Map<String, Value> = top.into_iter().collect();
            if let Some(meta) = meta {
                map.insert("metadata".into(), Value::Object(meta.into_iter().collect()));
            }
            Value::Object(map)
        })
}

/// Secret values long and random enough that finding one in the output can only be a leak.
fn secret_value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9+/=]{12,24}"
}

fn secret_map() -> impl Strategy<Value = Option<Map<String, Value>>> {
    prop::option::of(
        prop::collection::btree_map("k[a-z0-9_.-]{0,8}", secret_value(), 0..5)
            .prop_map(|m| m.into_iter().map(|(k, v)| (k, Value::String(v))).collect()),
    )
}

fn secret() -> impl Strategy<Value = (Value, Vec<String>)> {
    (secret_map(), secret_map(), any::<bool>()).prop_map(|(data, string_data, last_applied)| {
        let mut values: Vec<String> = Vec::new();
        let mut obj = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "namespace": "ns"},
        });
        for (field, map) in [("data", data), ("stringData", string_data)] {
            if let Some(map) = map {
                values.extend(map.values().filter_map(|v| v.as_str().map(str::to_string)));
                obj[field] = Value::Object(map);
            }
        }
        if last_applied {
            // kubectl's client-side apply copies the whole object, values included, here.
            let copy = serde_json::to_string(&obj).unwrap();
            obj["metadata"]["annotations"] =
                json!({"kubectl.kubernetes.io/last-applied-configuration": copy});
        }
        (obj, values)
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn normalize_is_idempotent(obj in json_object()) {
        let mut once = obj;
        normalize(&mut once);
        let mut twice = once.clone();
        normalize(&mut twice);
        prop_assert_eq!(twice, once);
    }

    #[test]
    fn mask_secrets_leaves_no_value_behind(
        (before, before_values) in secret(),
        (after, after_values) in secret(),
        sides in 0u8..3,
    ) {
        let (mut b, mut a) = (before, after);
        match sides {
            0 => mask_secrets(Some(&mut b), Some(&mut a)),
            1 => mask_secrets(Some(&mut b), None),
            _ => mask_secrets(None, Some(&mut a)),
        }
        let mut shown = Vec::new();
        if sides != 2 {
            shown.push(serde_json::to_string(&b).unwrap());
        }
        if sides != 1 {
            shown.push(serde_json::to_string(&a).unwrap());
        }
        for text in &shown {
            for v in before_values.iter().chain(&after_values) {
                prop_assert!(!text.contains(v.as_str()), "{} leaked in {}", v, text);
            }
        }
    }
}
