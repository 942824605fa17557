//! Deciding, without asking the API server, that applying a manifest would change nothing.
//!
//! A server-side apply by our field manager changes an object only if (a) a field in the
//! manifest has a different value live, or (b) a field we owned is missing from the manifest
//! (the server removes it). Both are visible in the live object: its values, and the field set
//! the server recorded for our manager in `metadata.managedFields`. When every field of the
//! manifest is still ours with exactly the live value, and we own nothing else, the apply is a
//! no-op and the dry-run can be skipped. This is what makes a diff of a large, mostly unchanged
//! namespace cost a few requests instead of one dry-run per object.
//!
//! The check is conservative: anything it cannot prove (a field someone else took over, a
//! list whose element count changed, a value the server normalised, an unknown field-set
//! entry, a different apiVersion) answers "don't know", and the server's dry-run decides.
//! Values inside a field we own as a whole (a scalar or an atomic list/map) must be equal,
//! not merely contained, because applying an atomic value replaces it entirely.
//!
//! Some values never equal the manifest: the server completes atomic values with defaults
//! (a Deployment's `env[].valueFrom.fieldRef` gains `apiVersion: v1`) or normalises numbers
//! and quantities. For those the proof is the digest annotation ([`DIGEST_ANNOTATION`]): every
//! object we apply carries the SHA-256 of the manifest we sent. When the live object carries
//! the digest of the manifest we would send now and we still own that annotation, our last
//! apply was this very manifest (any other apply by us would have written another digest,
//! and anyone else changing the annotation would have taken it from us). Since then, a field
//! we still own cannot have changed value: a write by any other manager that changes a field
//! moves it to that manager. So a field we own as a whole holds what the server made of this
//! manifest's value, whatever the server normalised; the field set must still cover the
//! manifest exactly, as above. (This trusts the server to complete a value the same way it
//! did at our apply, which Kubernetes' API rules require within an API version.)

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Annotation every applied object carries: `sha256:<hex>` of the manifest as sent, without
/// this annotation. It is ours alone, so a diff neither shows it nor counts it as a change.
pub const DIGEST_ANNOTATION: &str = "gitops.kubectl.io/applied-digest";

/// Sets [`DIGEST_ANNOTATION`] on `obj` to the digest of `obj` without it (a value a manifest
/// brought for it is replaced). serde_json's maps are ordered by key, so the digest does not
/// depend on the key order in the file.
pub fn stamp(obj: &mut Value) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
        annotations.remove(DIGEST_ANNOTATION);
        if annotations.is_empty() {
            meta.remove("annotations");
        }
    }
    let bytes = serde_json::to_vec(obj).expect("a JSON value serialises");
    let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
    obj["metadata"]["annotations"][DIGEST_ANNOTATION] = Value::String(digest);
}

fn digest_of(obj: &Map<String, Value>) -> Option<&str> {
    obj.get("metadata")?
        .get("annotations")?
        .get(DIGEST_ANNOTATION)?
        .as_str()
}

/// `desired` without its digest annotation, for live objects our last apply did not stamp
/// (applied by an earlier version): the annotation alone is not a change worth a write.
fn without_digest(desired: &Value) -> Value {
    let mut d = desired.clone();
    if let Some(Value::Object(annotations)) =
        d.get_mut("metadata").and_then(|m| m.get_mut("annotations"))
    {
        annotations.remove(DIGEST_ANNOTATION);
        if annotations.is_empty() {
            d["metadata"]
                .as_object_mut()
                .map(|m| m.remove("annotations"));
        }
    }
    d
}

/// True when a server-side apply of `desired` by `manager` onto `live` provably changes no
/// value. `live` must be the object as the server returns it (with `managedFields`).
pub fn apply_is_noop(manager: &str, desired: &Value, live: &Value) -> bool {
    let (Some(d), Some(l)) = (desired.as_object(), live.as_object()) else {
        return false;
    };
    match (digest_of(d), digest_of(l)) {
        (Some(_), None) => {
            let d = without_digest(desired);
            return d.as_object().is_some_and(|d| noop_by(manager, d, l, false));
        }
        (Some(want), Some(have)) if want == have => return noop_by(manager, d, l, true),
        _ => {}
    }
    noop_by(manager, d, l, false)
}

/// The proof itself; `same_digest`: the live object carries the digest of `d`, so values we
/// still own need not equal the manifest (see the module comment; that we still own the
/// annotation is checked with the rest of the metadata).
fn noop_by(
    manager: &str,
    d: &Map<String, Value>,
    l: &Map<String, Value>,
    same_digest: bool,
) -> bool {
    let api_version = d.get("apiVersion");
    if api_version.is_none() || api_version != l.get("apiVersion") || d.get("kind") != l.get("kind")
    {
        return false;
    }
    let Some(fields) = our_fields(manager, l, api_version.and_then(Value::as_str)) else {
        return false;
    };
    // apiVersion, kind, name and namespace identify the object; they are never in a field set.
    let (Some(dm), Some(lm)) = (
        d.get("metadata").and_then(Value::as_object),
        l.get("metadata").and_then(Value::as_object),
    ) else {
        return false;
    };
    for key in ["name", "namespace"] {
        if dm.get(key) != lm.get(key) {
            return false;
        }
    }
    let meta_fields = fields.get("f:metadata").and_then(Value::as_object);
    for (key, dv) in d {
        match key.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                let Some(mf) = meta_fields else { return false };
                if !map_covered(dm, lm, mf, &["name", "namespace"], same_digest) {
                    return false;
                }
            }
            _ => {
                let (Some(lv), Some(f)) = (l.get(key), field(fields, key)) else {
                    return false;
                };
                if !covered(dv, lv, f, same_digest) {
                    return false;
                }
            }
        }
    }
    // Fields we own at the top level that the manifest no longer has would be removed.
    entries(fields).all(|k| {
        k.strip_prefix("f:")
            .is_some_and(|name| d.contains_key(name))
    })
}

/// The field set the server recorded for our last apply (not an update, not a subresource).
fn our_fields<'a>(
    manager: &str,
    live: &'a Map<String, Value>,
    api_version: Option<&str>,
) -> Option<&'a Map<String, Value>> {
    let entries = live.get("metadata")?.get("managedFields")?.as_array()?;
    let mut ours = entries.iter().filter(|e| {
        e.get("manager").and_then(Value::as_str) == Some(manager)
            && e.get("operation").and_then(Value::as_str) == Some("Apply")
            && e.get("subresource")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
    });
    let entry = ours.next()?;
    if ours.next().is_some()
        || entry.get("fieldsType").and_then(Value::as_str) != Some("FieldsV1")
        || entry.get("apiVersion").and_then(Value::as_str) != api_version
    {
        return None;
    }
    entry.get("fieldsV1")?.as_object()
}

fn field<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Map<String, Value>> {
    fields.get(&format!("f:{name}"))?.as_object()
}

/// Field-set children, without the "." entry that marks the node itself as owned.
fn entries(fields: &Map<String, Value>) -> impl Iterator<Item = &String> {
    fields.keys().filter(|k| k.as_str() != ".")
}

/// Whether applying `d` where the server has `l` and we own `f` changes no value.
fn covered(d: &Value, l: &Value, f: &Map<String, Value>, same_digest: bool) -> bool {
    if entries(f).next().is_none() {
        // We own this value as a whole: a scalar, or an atomic list or map. With the digest
        // of this manifest live, it is what the server made of this value.
        return d == l || same_digest;
    }
    match (d, l) {
        (Value::Object(dm), Value::Object(lm)) => map_covered(dm, lm, f, &[], same_digest),
        (Value::Array(da), Value::Array(la)) => list_covered(da, la, f, same_digest),
        _ => false,
    }
}

fn map_covered(
    d: &Map<String, Value>,
    l: &Map<String, Value>,
    f: &Map<String, Value>,
    identity: &[&str],
    same_digest: bool,
) -> bool {
    let owned_all_present = entries(f).all(|k| {
        k.strip_prefix("f:")
            .is_some_and(|name| d.contains_key(name) && !identity.contains(&name))
    });
    owned_all_present
        && d.iter()
            .filter(|(k, _)| !identity.contains(&k.as_str()))
            .all(|(k, dv)| match (l.get(k), field(f, k)) {
                (Some(lv), Some(sub)) => covered(dv, lv, sub, same_digest),
                _ => false,
            })
}

/// A granular list: one field-set entry per element, by key (`k:`), value (`v:`) or index
/// (`i:`). Elements are matched to the live list position by position, so an element added
/// by someone else (a different length) falls back to the server.
fn list_covered(d: &[Value], l: &[Value], f: &Map<String, Value>, same_digest: bool) -> bool {
    if d.len() != l.len() || entries(f).count() != d.len() {
        return false;
    }
    d.iter().zip(l).enumerate().all(|(i, (dv, lv))| {
        let mut matches = entries(f).filter(|k| element_matches(k, i, lv));
        let (Some(key), None) = (matches.next(), matches.next()) else {
            return false;
        };
        if key.starts_with("v:") {
            return dv == lv;
        }
        match f.get(key).and_then(Value::as_object) {
            Some(sub) => covered(dv, lv, sub, same_digest),
            None => false,
        }
    })
}

fn element_matches(entry: &str, index: usize, live: &Value) -> bool {
    if let Some(json) = entry.strip_prefix("k:") {
        let Ok(Value::Object(key)) = serde_json::from_str::<Value>(json) else {
            return false;
        };
        !key.is_empty() && key.iter().all(|(k, v)| live.get(k) == Some(v))
    } else if let Some(json) = entry.strip_prefix("v:") {
        serde_json::from_str::<Value>(json).is_ok_and(|v| &v == live)
    } else if let Some(i) = entry.strip_prefix("i:") {
        i.parse::<usize>() == Ok(index)
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A Deployment as the API server returns it after `kubectl-gitops` applied `desired()`:
    /// defaults filled in, and the field set it records for that apply.
    fn live() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "7",
                "labels": {"app": "web", "team": "a"},
                "managedFields": [
                    {"manager": "kubectl-gitops", "operation": "Apply", "apiVersion": "apps/v1",
                     "fieldsType": "FieldsV1", "fieldsV1": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {
                            "f:replicas": {},
                            "f:selector": {},
                            "f:template": {"f:spec": {
                                "f:containers": {"k:{\"name\":\"app\"}": {
                                    ".": {}, "f:name": {}, "f:image": {},
                                    "f:ports": {"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}},
                                    "f:args": {}
                                }},
                                "f:finalizersLike": {"v:\"a\"": {}, "v:\"b\"": {}}
                            }}
                        }
                    }},
                    {"manager": "kubectl-label", "operation": "Update", "apiVersion": "v1",
                     "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:team": {}}}}},
                    {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
                     "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}
                ]
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {
                    "containers": [{"name": "app", "image": "web:1", "imagePullPolicy": "IfNotPresent",
                                     "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                     "args": ["--port", "8080"]}],
                    "finalizersLike": ["a", "b"]
                }}
            },
            "status": {"replicas": 2}
        })
    }

    fn desired() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {
                    "containers": [{"name": "app", "image": "web:1",
                                     "ports": [{"containerPort": 8080}],
                                     "args": ["--port", "8080"]}],
                    "finalizersLike": ["a", "b"]
                }}
            }
        })
    }

    fn noop(d: &Value, l: &Value) -> bool {
        apply_is_noop("kubectl-gitops", d, l)
    }

    #[test]
    fn unchanged_manifest_with_server_defaults_and_foreign_fields_is_a_noop() {
        assert!(noop(&desired(), &live()));
    }

    #[test]
    fn a_changed_value_is_not() {
        let mut d = desired();
        d["spec"]["replicas"] = json!(3);
        assert!(!noop(&d, &live()));
        let mut d = desired();
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("web:2");
        assert!(!noop(&d, &live()));
    }

    #[test]
    fn a_field_dropped_from_the_manifest_is_not() {
        let mut d = desired();
        d["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("app");
        assert!(!noop(&d, &live()));
        let mut d = desired();
        d["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("args");
        assert!(!noop(&d, &live()));
    }

    #[test]
    fn a_field_we_do_not_own_is_not() {
        // The "team" label has the same value live, but another manager owns it.
        let mut d = desired();
        d["metadata"]["labels"]["team"] = json!("a");
        assert!(!noop(&d, &live()));
    }

    #[test]
    fn an_atomic_value_must_be_equal_not_contained() {
        // The selector is owned as a whole; someone added to it.
        let mut l = live();
        l["spec"]["selector"]["matchLabels"]["extra"] = json!("x");
        assert!(!noop(&desired(), &l));
        let mut l = live();
        l["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["--port", "9090"]);
        assert!(!noop(&desired(), &l));
    }

    #[test]
    fn list_elements_added_removed_or_reordered_are_not() {
        let mut l = live();
        l["spec"]["template"]["spec"]["finalizersLike"] = json!(["a", "b", "c"]);
        assert!(!noop(&desired(), &l));
        let mut l = live();
        l["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "sidecar", "image": "s:1"}));
        assert!(!noop(&desired(), &l));
        let mut d = desired();
        d["spec"]["template"]["spec"]["finalizersLike"] = json!(["b", "a"]);
        assert!(!noop(&d, &live()));
    }

    #[test]
    fn without_our_apply_entry_or_at_another_version_it_is_not() {
        let mut l = live();
        l["metadata"]["managedFields"][0]["operation"] = json!("Update");
        assert!(!noop(&desired(), &l));
        let mut l = live();
        l["metadata"]["managedFields"][0]["apiVersion"] = json!("apps/v1beta2");
        assert!(!noop(&desired(), &l));
        let mut l = live();
        l["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        assert!(!noop(&desired(), &l));
        assert!(!apply_is_noop("someone-else", &desired(), &live()));
    }

    #[test]
    fn identity_and_unknown_top_level_fields() {
        let mut d = desired();
        d["metadata"]["namespace"] = json!("other");
        assert!(!noop(&d, &live()));
        let mut d = desired();
        d["status"] = json!({"replicas": 2});
        assert!(!noop(&d, &live()), "status is not ours to apply");
        let mut d = desired();
        d["kind"] = json!("StatefulSet");
        assert!(!noop(&d, &live()));
    }

    #[test]
    fn a_number_the_server_would_normalise_is_not_proven() {
        let mut d = desired();
        d["spec"]["replicas"] = json!(2.0);
        assert!(!noop(&d, &live()));
    }

    /// A Deployment whose env var's atomic fieldRef the server completed, applied by us with
    /// the digest of `stamped_desired()`.
    fn stamped_desired() -> Value {
        let mut d = desired();
        d["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]);
        stamp(&mut d);
        d
    }

    fn stamped_live() -> Value {
        let d = stamped_desired();
        let mut l = live();
        l["metadata"]["annotations"] = d["metadata"]["annotations"].clone();
        let fields = &mut l["metadata"]["managedFields"][0]["fieldsV1"];
        fields["f:metadata"]["f:annotations"] = json!({ format!("f:{DIGEST_ANNOTATION}"): {} });
        fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]["f:env"] = json!({"k:{\"name\":\"POD\"}": {".": {}, "f:name": {}, "f:valueFrom": {"f:fieldRef": {}}}});
        l["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "POD",
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}]);
        l
    }

    #[test]
    fn the_stamp_is_the_digest_of_the_rest() {
        let a = stamped_desired();
        let mut again = a.clone();
        stamp(&mut again);
        assert_eq!(a, again, "stamping a stamped object changes nothing");
        let mut forged = a.clone();
        forged["metadata"]["annotations"][DIGEST_ANNOTATION] = json!("sha256:00");
        stamp(&mut forged);
        assert_eq!(forged, a, "a value brought by the manifest is replaced");
        let mut other = desired();
        other["spec"]["replicas"] = json!(3);
        stamp(&mut other);
        assert_ne!(
            other["metadata"]["annotations"][DIGEST_ANNOTATION],
            a["metadata"]["annotations"][DIGEST_ANNOTATION]
        );
    }

    #[test]
    fn a_completed_atomic_value_is_proven_by_the_digest_of_this_manifest_only() {
        assert!(noop(&stamped_desired(), &stamped_live()));
        // The same live object without the digest: the completed value is not equal.
        let mut l = stamped_live();
        l["metadata"].as_object_mut().unwrap().remove("annotations");
        l["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"]
            .as_object_mut()
            .unwrap()
            .remove("f:annotations");
        assert!(!noop(&stamped_desired(), &l));
        // Another manifest: another digest.
        let mut d = stamped_desired();
        d["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] =
            json!("metadata.namespace");
        stamp(&mut d);
        assert!(!noop(&d, &stamped_live()));
    }

    #[test]
    fn the_digest_proves_nothing_we_no_longer_own() {
        // Someone else changed the fieldRef: it left our field set.
        let mut l = stamped_live();
        l["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]
            ["f:containers"]["k:{\"name\":\"app\"}"]["f:env"]["k:{\"name\":\"POD\"}"]
            .as_object_mut()
            .unwrap()
            .remove("f:valueFrom");
        l["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] =
            json!("metadata.uid");
        assert!(!noop(&stamped_desired(), &l));
        // Someone else wrote the annotation (a forged digest): it is not ours.
        let mut l = stamped_live();
        l["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"]
            .as_object_mut()
            .unwrap()
            .remove("f:annotations");
        assert!(!noop(&stamped_desired(), &l));
    }

    #[test]
    fn an_object_applied_before_the_stamp_is_proven_by_equal_values() {
        // The plain rule, with the stamp left out of the comparison.
        let mut d = desired();
        stamp(&mut d);
        assert!(noop(&d, &live()));
        let mut d = desired();
        d["spec"]["replicas"] = json!(3);
        stamp(&mut d);
        assert!(!noop(&d, &live()));
    }
}
