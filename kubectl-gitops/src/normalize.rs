//! Preparing objects for a diff: dropping what the server owns, hiding Secret values, and
//! rendering YAML whose key order does not depend on who produced the object.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// Annotation kubectl's client-side apply writes; it repeats the whole object, Secret values
/// included, so it is noise in a diff at best and a leak at worst.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Metadata the API server maintains; it never comes from git and always differs.
const SERVER_METADATA: [&str; 6] = [
    "managedFields",
    "resourceVersion",
    "uid",
    "generation",
    "creationTimestamp",
    "selfLink",
];

/// Removes server-maintained fields so that live and git objects compare on what users write.
/// Running it again changes nothing.
pub fn normalize(obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    map.remove("status");
    let Some(Value::Object(meta)) = map.get_mut("metadata") else {
        return;
    };
    for key in SERVER_METADATA {
        meta.remove(key);
    }
    if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
        annotations.remove(LAST_APPLIED);
        // Ours, derived from the manifest: it changes exactly when something else does, and an
        // object applied before we stamped it is not changed by the stamp alone.
        annotations.remove(crate::unchanged::DIGEST_ANNOTATION);
    }
    // An empty map and a missing one mean the same to the server; keeping either would show
    // up as a difference against the other side.
    for key in ["annotations", "labels"] {
        let empty = match meta.get(key) {
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            meta.remove(key);
        }
    }
}

fn is_secret(obj: &Value) -> bool {
    obj.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && obj.get("kind").and_then(Value::as_str) == Some("Secret")
}

/// Replaces Secret values with kubectl diff's placeholders: `***` for a key that is equal on
/// both sides or present on one side only, `*** (before)` / `*** (after)` for a changed key.
/// Objects that are not `v1` Secrets are left alone.
pub fn mask_secrets(before: Option<&mut Value>, after: Option<&mut Value>) {
    let before = before.filter(|v| is_secret(v));
    let after = after.filter(|v| is_secret(v));
    let (mut before, mut after) = (before, after);
    for field in ["data", "stringData"] {
        mask_field(before.as_deref_mut(), after.as_deref_mut(), field);
    }
    mask_last_applied(before, after);
}

/// `message` (a server's error about `objects`) with every Secret value of theirs replaced by
/// `***`: the server may quote a value it could not take (`expected string, got
/// &value.valueUnstructured{Value:48151623429999}`). Every scalar inside `data` and
/// `stringData` counts, as text and, for `data`, base64-decoded. A value of fewer than four
/// characters is masked only where it stands alone, so that `1` does not garble `line 1`.
pub fn mask_secret_values_in(message: &str, objects: &[&Value]) -> String {
    let mut values: Vec<String> = Vec::new();
    for obj in objects.iter().filter(|o| is_secret(o)) {
        for field in ["data", "stringData"] {
            collect_scalars(&obj[field], field == "data", &mut values);
        }
    }
    values.retain(|v| !v.is_empty());
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values.dedup();
    let mut out = message.to_string();
    for v in &values {
        out = if v.chars().count() >= 4 {
            out.replace(v.as_str(), "***")
        } else {
            replace_token(&out, v)
        };
    }
    out
}

/// An error about `objects` with their Secret values masked in its message and hint.
pub fn mask_error(mut e: shared::Error, objects: &[&Value]) -> shared::Error {
    e.message = mask_secret_values_in(&e.message, objects);
    e.hint = e.hint.map(|h| mask_secret_values_in(&h, objects));
    e
}

fn collect_scalars(v: &Value, base64_encoded: bool, out: &mut Vec<String>) {
    use base64::Engine as _;
    match v {
        Value::String(s) => {
            out.push(s.clone());
            if base64_encoded
                && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s)
                && let Ok(text) = String::from_utf8(bytes)
            {
                out.push(text);
            }
        }
        Value::Number(n) => {
            out.push(n.to_string());
            // Go prints a whole float without its fraction.
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 1e15
            {
                out.push(format!("{}", f as i64));
            }
        }
        Value::Bool(b) => out.push(b.to_string()),
        Value::Array(items) => items
            .iter()
            .for_each(|i| collect_scalars(i, base64_encoded, out)),
        Value::Object(map) => map
            .values()
            .for_each(|i| collect_scalars(i, base64_encoded, out)),
        Value::Null => {}
    }
}

/// Replaces `token` where neither neighbour is a letter or digit.
fn replace_token(text: &str, token: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut prev: Option<char> = None;
    while let Some(i) = rest.find(token) {
        let before = rest[..i].chars().next_back().or(prev);
        let after = rest[i + token.len()..].chars().next();
        let alone =
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric);
        out.push_str(&rest[..i]);
        out.push_str(if alone { "***" } else { token });
        prev = token.chars().next_back();
        rest = &rest[i + token.len()..];
    }
    out.push_str(rest);
    out
}

/// Takes `obj.field` out as a map of values; anything other than a map or null is replaced
/// wholesale because we cannot tell which part of it is secret.
fn take_map(obj: Option<&mut Value>, field: &str) -> Option<Map<String, Value>> {
    let map = obj?.as_object_mut()?;
    match map.get_mut(field)? {
        Value::Object(m) => Some(std::mem::take(m)),
        Value::Null => None,
        other => {
            *other = Value::String("***".to_string());
            None
        }
    }
}

fn put_map(obj: Option<&mut Value>, field: &str, masked: Map<String, Value>) {
    if let Some(Value::Object(map)) = obj
        && let Some(slot) = map.get_mut(field)
    {
        *slot = Value::Object(masked);
    }
}

fn mask_field(mut before: Option<&mut Value>, mut after: Option<&mut Value>, field: &str) {
    let old = take_map(before.as_deref_mut(), field);
    let new = take_map(after.as_deref_mut(), field);
    if let Some(m) = masked(old.as_ref(), new.as_ref(), "*** (before)") {
        put_map(before, field, m);
    }
    if let Some(m) = masked(new.as_ref(), old.as_ref(), "*** (after)") {
        put_map(after, field, m);
    }
}

/// `side` with every value replaced: `changed` where `other` has the key with a different
/// value, `***` otherwise.
fn masked(
    side: Option<&Map<String, Value>>,
    other: Option<&Map<String, Value>>,
    changed: &str,
) -> Option<Map<String, Value>> {
    let side = side?;
    Some(
        side.iter()
            .map(|(key, value)| {
                let text = match other.and_then(|o| o.get(key)) {
                    Some(theirs) if theirs != value => changed,
                    _ => "***",
                };
                (key.clone(), Value::String(text.to_string()))
            })
            .collect(),
    )
}

fn last_applied(obj: Option<&mut Value>) -> Option<&mut Value> {
    obj?.get_mut("metadata")?
        .get_mut("annotations")?
        .get_mut(LAST_APPLIED)
}

fn mask_last_applied(before: Option<&mut Value>, after: Option<&mut Value>) {
    let slot = last_applied;
    let old = slot(before);
    let new = slot(after);
    let changed = match (&old, &new) {
        (Some(o), Some(n)) => o != n,
        _ => false,
    };
    if let Some(o) = old {
        *o = Value::String(if changed { "*** (before)" } else { "***" }.to_string());
    }
    if let Some(n) = new {
        *n = Value::String(if changed { "*** (after)" } else { "***" }.to_string());
    }
}

/// Serialises a value with `apiVersion`, `kind`, `metadata` first at the top and every map's
/// remaining keys sorted, whatever order the source map kept.
struct Ordered<'a> {
    value: &'a Value,
    top: bool,
}

fn top_rank(key: &str) -> u8 {
    match key {
        "apiVersion" => 0,
        "kind" => 1,
        "metadata" => 2,
        _ => 3,
    }
}

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                if self.top {
                    keys.sort_by(|a, b| top_rank(a).cmp(&top_rank(b)).then_with(|| a.cmp(b)));
                } else {
                    keys.sort();
                }
                let mut out = serializer.serialize_map(Some(keys.len()))?;
                for key in keys {
                    out.serialize_entry(
                        key,
                        &Ordered {
                            value: &map[key],
                            top: false,
                        },
                    )?;
                }
                out.end()
            }
            Value::Array(items) => {
                serializer.collect_seq(items.iter().map(|value| Ordered { value, top: false }))
            }
            other => other.serialize(serializer),
        }
    }
}

/// YAML for a diff: stable key order, multi-line strings as block literals, long lines kept
/// whole (folding them would turn a one-word change into a paragraph of changes).
pub fn to_yaml(v: &Value) -> String {
    let mut options = serde_saphyr::SerializerOptions::default();
    options.folded_wrap_chars = usize::MAX;
    let ordered = Ordered {
        value: v,
        top: true,
    };
    // Every serde_json::Value is representable in YAML; should the serialiser still refuse,
    // JSON is valid YAML and keeps the diff usable.
    serde_saphyr::to_string_with_options(&ordered, options)
        .unwrap_or_else(|_| serde_json::to_string_pretty(v).unwrap_or_default() + "\n")
}

#[cfg(test)]
mod message_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_quoted_in_a_server_message_are_masked() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
            "stringData": {"pw": 48151623429999_u64, "m": {"inner": "Hunter2-Map"}, "s": "x1"},
            "data": {"b": "c2VjcmV0LXZhbHVl"}});
        let msg = ".stringData.pw: expected string, got &value.valueUnstructured{Value:48151623429999}; \
                   map[string]interface {}{\"inner\":\"Hunter2-Map\"} in max1; decoded secret-value; raw c2VjcmV0LXZhbHVl; s=x1";
        let out = mask_secret_values_in(msg, &[&secret]);
        for leaked in [
            "48151623429999",
            "Hunter2-Map",
            "secret-value",
            "c2VjcmV0LXZhbHVl",
        ] {
            assert!(!out.contains(leaked), "{out}");
        }
        assert!(
            out.contains("in max1;"),
            "a short value is masked only on its own: {out}"
        );
        assert!(out.ends_with("s=***"), "{out}");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "visible"}});
        assert_eq!(mask_secret_values_in("visible", &[&cm]), "visible");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live_deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "prod",
                "uid": "0b6f",
                "resourceVersion": "123",
                "generation": 4,
                "creationTimestamp": "2024-01-01T00:00:00Z",
                "selfLink": "/apis/apps/v1/namespaces/prod/deployments/web",
                "managedFields": [{"manager": "kubectl"}],
                "annotations": {LAST_APPLIED: "{}"},
                "labels": {"app": "web"},
            },
            "spec": {"replicas": 2},
            "status": {"readyReplicas": 2},
        })
    }

    #[test]
    fn normalize_drops_server_fields() {
        let mut obj = live_deployment();
        normalize(&mut obj);
        assert_eq!(
            obj,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"}},
                "spec": {"replicas": 2},
            })
        );
    }

    #[test]
    fn normalize_keeps_other_annotations() {
        let mut obj = json!({"metadata": {"name": "a", "annotations": {LAST_APPLIED: "x", "keep": "me"}, "labels": {}}});
        normalize(&mut obj);
        assert_eq!(
            obj,
            json!({"metadata": {"name": "a", "annotations": {"keep": "me"}}})
        );
        let mut scalar = json!("not an object");
        normalize(&mut scalar);
        assert_eq!(scalar, json!("not an object"));
    }

    /// A small deterministic generator so the property test needs no extra crates and every
    /// failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    const KEYS: [&str; 16] = [
        "metadata",
        "status",
        "spec",
        "annotations",
        "labels",
        "managedFields",
        "resourceVersion",
        "uid",
        "generation",
        "creationTimestamp",
        "selfLink",
        "name",
        LAST_APPLIED,
        "data",
        "apiVersion",
        "kind",
    ];

    fn random_value(rng: &mut Rng, depth: u32) -> Value {
        match if depth == 0 {
            rng.below(4)
        } else {
            rng.below(7)
        } {
            0 => Value::Null,
            1 => json!(rng.below(100)),
            2 => json!(format!("s{}", rng.below(10))),
            3 => json!(rng.below(2) == 0),
            4 => Value::Array(
                (0..rng.below(3))
                    .map(|_| random_value(rng, depth - 1))
                    .collect(),
            ),
            _ => {
                let mut map = Map::new();
                for _ in 0..rng.below(6) {
                    let key = KEYS[rng.below(KEYS.len() as u64) as usize];
                    map.insert(key.to_string(), random_value(rng, depth - 1));
                }
                Value::Object(map)
            }
        }
    }

    #[test]
    fn normalize_is_idempotent_over_varied_inputs() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..5000 {
            let mut obj = random_value(&mut rng, 4);
            normalize(&mut obj);
            let once = obj.clone();
            normalize(&mut obj);
            assert_eq!(obj, once);
            if let Some(map) = once.as_object() {
                assert!(!map.contains_key("status"));
                if let Some(Value::Object(meta)) = map.get("metadata") {
                    for key in SERVER_METADATA {
                        assert!(!meta.contains_key(key), "{key} left in {once}");
                    }
                    for key in ["annotations", "labels"] {
                        assert!(
                            !matches!(meta.get(key), Some(Value::Null))
                                && !meta
                                    .get(key)
                                    .and_then(Value::as_object)
                                    .is_some_and(Map::is_empty),
                            "empty {key} left in {once}"
                        );
                    }
                    if let Some(Value::Object(a)) = meta.get("annotations") {
                        assert!(!a.contains_key(LAST_APPLIED));
                    }
                }
            }
        }
    }

    fn secret(data: Value, string_data: Option<Value>) -> Value {
        let mut obj = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": "prod"},
            "type": "Opaque",
            "data": data,
        });
        if let Some(sd) = string_data {
            obj["stringData"] = sd;
        }
        obj
    }

    #[test]
    fn masks_like_kubectl_diff() {
        let mut before = secret(
            json!({"same": "c2FtZQ==", "changed": "b2xk", "gone": "eA=="}),
            None,
        );
        let mut after = secret(
            json!({"same": "c2FtZQ==", "changed": "bmV3", "added": "eQ=="}),
            Some(json!({"plain": "text"})),
        );
        mask_secrets(Some(&mut before), Some(&mut after));
        assert_eq!(
            before["data"],
            json!({"same": "***", "changed": "*** (before)", "gone": "***"})
        );
        assert_eq!(
            after["data"],
            json!({"same": "***", "changed": "*** (after)", "added": "***"})
        );
        assert_eq!(after["stringData"], json!({"plain": "***"}));
        assert!(before.get("stringData").is_none());
        assert_eq!(after["type"], json!("Opaque"));
    }

    #[test]
    fn masks_one_sided_secrets_and_leaves_other_kinds() {
        let mut created = secret(json!({"k": "dg=="}), None);
        mask_secrets(None, Some(&mut created));
        assert_eq!(created["data"], json!({"k": "***"}));

        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
        let copy = cm.clone();
        mask_secrets(Some(&mut cm), None);
        assert_eq!(cm, copy);

        let mut odd = secret(json!("not-a-map"), None);
        mask_secrets(Some(&mut odd), None);
        assert_eq!(odd["data"], json!("***"));
    }

    #[test]
    fn no_secret_value_survives_masking() {
        let value = "hunter2";
        let encoded = "aHVudGVyMg==";
        let longer = "xhunter2y";
        let mut before = secret(json!({"password": encoded, "other": longer}), None);
        let last_applied = serde_json::to_string(&before).unwrap();
        before["metadata"]["annotations"] = json!({LAST_APPLIED: last_applied, "note": "rotated"});
        let mut after = secret(
            json!({"password": encoded}),
            Some(json!({"token": value, "prefixed": format!("{value}-suffix")})),
        );
        let last_applied = serde_json::to_string(&after).unwrap();
        after["metadata"]["annotations"] = json!({LAST_APPLIED: last_applied});

        mask_secrets(Some(&mut before), Some(&mut after));
        for side in [&before, &after] {
            let text = serde_json::to_string(side).unwrap() + &to_yaml(side);
            for needle in [value, encoded, "aHVudGVy", longer] {
                assert!(!text.contains(needle), "{needle} leaked in {text}");
            }
        }
        assert_eq!(
            before["metadata"]["annotations"][LAST_APPLIED],
            json!("*** (before)")
        );
        assert_eq!(
            after["metadata"]["annotations"][LAST_APPLIED],
            json!("*** (after)")
        );
        assert_eq!(before["metadata"]["annotations"]["note"], json!("rotated"));
        assert_eq!(before["data"]["password"], json!("***"));
    }

    #[test]
    fn yaml_has_stable_key_order() {
        let obj = json!({
            "spec": {"b": 1, "a": [{"z": 1, "y": "two\nlines\n"}]},
            "metadata": {"name": "x", "labels": {"b": "1", "a": "yes"}},
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "data": {"long": "word ".repeat(30).trim_end()},
        });
        let yaml = to_yaml(&obj);
        let expected = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels:\n    a: \"yes\"\n    b: \"1\"\n  name: x\ndata:\n  long: {}\nspec:\n  a:\n  - \"y\": |\n      two\n      lines\n    z: 1\n  b: 1\n",
            "word ".repeat(30).trim_end()
        );
        assert_eq!(yaml, expected);
        let back: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back, obj);
    }
}
