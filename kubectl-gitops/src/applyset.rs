//! ApplySet (KEP-3659) conventions as kubectl ships them, so sets we create can be read by
//! `kubectl apply --prune --applyset` and the other way round.

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Label on the parent object; its value is the set's id.
pub const LABEL_ID: &str = "applyset.kubernetes.io/id";
/// Label on every member object; its value is the id of the set it belongs to.
pub const LABEL_PART_OF: &str = "applyset.kubernetes.io/part-of";
/// Parent annotation `<tool>/<version>`; a tool must leave sets of other tools alone.
pub const ANNOTATION_TOOLING: &str = "applyset.kubernetes.io/tooling";
/// Parent annotation listing the member kinds, which is what makes pruning a bounded search.
pub const ANNOTATION_CONTAINS_GROUP_KINDS: &str = "applyset.kubernetes.io/contains-group-kinds";

/// Parent annotation listing the namespaces, besides the parent's own, that hold members; a
/// prune looks for members of each listed kind in each of them.
pub const ANNOTATION_ADDITIONAL_NAMESPACES: &str = "applyset.kubernetes.io/additional-namespaces";

/// The `additional-namespaces` value: sorted, deduplicated, comma-separated.
pub fn namespaces_annotation<'a>(namespaces: impl IntoIterator<Item = &'a String>) -> String {
    let mut v: Vec<&str> = namespaces.into_iter().map(String::as_str).collect();
    v.sort();
    v.dedup();
    v.join(",")
}

/// The namespaces of an `additional-namespaces` value, tolerant of spaces and empty entries.
pub fn parse_namespaces(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The id of the set whose parent is `kind.group` `namespace/name` (core group: `""`).
pub fn applyset_id(name: &str, namespace: &str, kind: &str, group: &str) -> String {
    let digest = Sha256::digest(format!("{name}.{namespace}.{kind}.{group}"));
    format!(
        "applyset-{}-v1",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

/// The `contains-group-kinds` value for `(kind, group)` pairs: sorted, deduplicated
/// `Kind.group`, core kinds bare.
pub fn group_kinds_annotation<I, K, G>(kinds: I) -> String
where
    I: IntoIterator<Item = (K, G)>,
    K: AsRef<str>,
    G: AsRef<str>,
{
    let mut entries: Vec<String> = kinds
        .into_iter()
        .map(|(kind, group)| {
            let (kind, group) = (kind.as_ref(), group.as_ref());
            if group.is_empty() {
                kind.to_string()
            } else {
                format!("{kind}.{group}")
            }
        })
        .collect();
    entries.sort();
    entries.dedup();
    entries.join(",")
}

/// `(kind, group)` pairs of a `contains-group-kinds` value; tolerant of spaces and empty
/// entries because other tools write this annotation too.
pub fn parse_group_kinds(value: &str) -> Vec<(String, String)> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| match entry.split_once('.') {
            Some((kind, group)) => (kind.to_string(), group.to_string()),
            None => (entry.to_string(), String::new()),
        })
        .collect()
}

/// The Helm release `obj` belongs to, `namespace/name` (or `name` when the release's
/// namespace is not recorded), from the annotations `helm install` and `helm upgrade` set.
pub fn helm_release(obj: &Value) -> Option<String> {
    let annotation = |key: &str| {
        let meta = obj.get("metadata")?;
        meta.get("annotations")
            .and_then(|a| a.get(key))
            .or_else(|| meta.get("labels").and_then(|l| l.get(key)))
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let release = annotation("meta.helm.sh/release-name")?;
    Some(match annotation("meta.helm.sh/release-namespace") {
        Some(ns) => format!("{ns}/{release}"),
        None => release,
    })
}

/// Why `obj` looks managed by someone else (Argo CD, Flux, Helm, kapp, another ApplySet), or
/// `None` when nothing but us (set `our_id`) claims it. Adopting such an object would start a
/// tug of war with the other tool, so callers refuse unless told otherwise.
pub fn foreign_owner(obj: &Value, our_id: &str) -> Option<String> {
    let meta = obj.get("metadata");
    let field = |map: &str, key: &str| -> Option<String> {
        match meta?.get(map)?.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    // The marks are normally labels or annotations as noted, but people copy them around;
    // either place means the same to us.
    let mark = |key: &str| field("annotations", key).or_else(|| field("labels", key));

    let mut owners = Vec::new();
    if let Some(id) = mark("argocd.argoproj.io/tracking-id") {
        owners.push(format!("Argo CD (argocd.argoproj.io/tracking-id: {id})"));
    }
    if let Some(name) = mark("kustomize.toolkit.fluxcd.io/name") {
        let owner = match mark("kustomize.toolkit.fluxcd.io/namespace") {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        };
        owners.push(format!("Flux Kustomization {owner}"));
    }
    // Helm's marks on a member of our own set are not another owner's: a chart we render
    // labels its objects `app.kubernetes.io/managed-by: Helm` (`.Release.Service`), and an
    // object adopted from a `helm install` keeps Helm's release annotations (Helm cannot take
    // over a member of ours, which lacks them, without being told to).
    let ours = field("labels", LABEL_PART_OF).as_deref() == Some(our_id);
    if ours {
    } else if let Some(release) = helm_release(obj) {
        owners.push(format!("Helm release {release}"));
    } else if mark("app.kubernetes.io/managed-by").as_deref() == Some("Helm") {
        owners.push("Helm (app.kubernetes.io/managed-by: Helm)".to_string());
    }
    if let Some(app) = mark("kapp.k14s.io/app") {
        owners.push(format!("kapp app {app}"));
    }
    if let Some(id) = field("labels", LABEL_PART_OF)
        && id != our_id
    {
        owners.push(format!("another ApplySet ({LABEL_PART_OF}: {id})"));
    }
    (!owners.is_empty()).then(|| owners.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn additional_namespaces_round_trip() {
        let v = namespaces_annotation(&["b".to_string(), "a".to_string(), "b".to_string()]);
        assert_eq!(v, "a,b");
        assert_eq!(parse_namespaces(" a, ,b "), ["a", "b"]);
        assert!(parse_namespaces("").is_empty());
    }

    #[test]
    fn id_matches_kubectl_test_vector() {
        assert_eq!(
            applyset_id("my-set", "test", "Secret", ""),
            "applyset-0eFHV8ySqp7XoShsGvyWFQD3s96yqwHmzc4e0HR1dsY-v1"
        );
    }

    #[test]
    fn id_uses_url_safe_alphabet_without_padding() {
        for name in ["a", "b", "prod", "some-longer-name", "x.y"] {
            let id = applyset_id(name, "ns", "ConfigMap", "");
            let body = id
                .strip_prefix("applyset-")
                .and_then(|s| s.strip_suffix("-v1"))
                .unwrap();
            assert_eq!(body.len(), 43, "{id}");
            assert!(
                body.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{id}"
            );
        }
        assert_ne!(
            applyset_id("s", "ns", "Secret", ""),
            applyset_id("s", "ns", "ConfigMap", "")
        );
    }

    #[test]
    fn group_kinds_are_sorted_deduplicated_and_core_is_bare() {
        let value = group_kinds_annotation([
            ("Deployment", "apps"),
            ("ConfigMap", ""),
            ("Deployment", "apps"),
            ("Certificate", "cert-manager.io"),
        ]);
        assert_eq!(
            value,
            "Certificate.cert-manager.io,ConfigMap,Deployment.apps"
        );
        assert_eq!(
            parse_group_kinds(&value),
            vec![
                ("Certificate".to_string(), "cert-manager.io".to_string()),
                ("ConfigMap".to_string(), String::new()),
                ("Deployment".to_string(), "apps".to_string()),
            ]
        );
        assert_eq!(group_kinds_annotation(Vec::<(&str, &str)>::new()), "");
        assert!(parse_group_kinds("").is_empty());
        assert_eq!(
            parse_group_kinds(" Secret , ,Job.batch"),
            vec![
                ("Secret".to_string(), String::new()),
                ("Job".to_string(), "batch".to_string())
            ]
        );
    }

    #[test]
    fn foreign_owner_recognises_other_tools() {
        let ours = "applyset-ours-v1";
        let with = |labels: Value, annotations: Value| json!({"metadata": {"name": "x", "labels": labels, "annotations": annotations}});
        assert_eq!(
            foreign_owner(&with(json!({LABEL_PART_OF: ours}), json!({})), ours),
            None
        );
        assert_eq!(foreign_owner(&json!({"kind": "ConfigMap"}), ours), None);
        // A label every Argo CD user sets for other reasons must not count as ownership.
        assert_eq!(
            foreign_owner(
                &with(json!({"app.kubernetes.io/instance": "webapp"}), json!({})),
                ours
            ),
            None
        );

        let cases = [
            (
                with(
                    json!({}),
                    json!({"argocd.argoproj.io/tracking-id": "app:apps/Deployment:ns/x"}),
                ),
                "Argo CD",
            ),
            (
                with(
                    json!({"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}),
                    json!({}),
                ),
                "Flux Kustomization flux-system/apps",
            ),
            (
                with(
                    json!({"app.kubernetes.io/managed-by": "Helm"}),
                    json!({"meta.helm.sh/release-name": "web", "meta.helm.sh/release-namespace": "prod"}),
                ),
                "Helm release prod/web",
            ),
            (
                with(json!({"app.kubernetes.io/managed-by": "Helm"}), json!({})),
                "Helm (",
            ),
            (
                with(json!({"kapp.k14s.io/app": "1700000000"}), json!({})),
                "kapp app 1700000000",
            ),
            (
                with(json!({LABEL_PART_OF: "applyset-other-v1"}), json!({})),
                "another ApplySet",
            ),
        ];
        for (obj, expected) in cases {
            let owner = foreign_owner(&obj, ours).unwrap_or_default();
            assert!(owner.contains(expected), "{owner:?} lacks {expected:?}");
        }
        assert_eq!(
            foreign_owner(
                &with(
                    json!({"app.kubernetes.io/managed-by": "kustomize"}),
                    json!({})
                ),
                ours
            ),
            None
        );
    }

    #[test]
    fn helm_marks_on_our_own_members_are_ours() {
        let ours = "applyset-ours-v1";
        // What a chart we rendered and applied looks like live.
        let rendered = json!({"metadata": {"name": "web", "labels": {
            "app.kubernetes.io/managed-by": "Helm", LABEL_PART_OF: ours}}});
        assert_eq!(foreign_owner(&rendered, ours), None);
        // Adopted from `helm install`: Helm's annotations stay on the object.
        let adopted = json!({"metadata": {"name": "web",
            "labels": {"app.kubernetes.io/managed-by": "Helm", LABEL_PART_OF: ours},
            "annotations": {"meta.helm.sh/release-name": "web", "meta.helm.sh/release-namespace": "shop"}}});
        assert_eq!(foreign_owner(&adopted, ours), None);
        assert_eq!(helm_release(&adopted).as_deref(), Some("shop/web"));
        // The same object in another set, or in none, is Helm's.
        let installed = json!({"metadata": {"name": "web",
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"meta.helm.sh/release-name": "web", "meta.helm.sh/release-namespace": "shop"}}});
        assert_eq!(
            foreign_owner(&installed, ours).as_deref(),
            Some("Helm release shop/web")
        );
        assert!(foreign_owner(&rendered, "applyset-other-v1").is_some());
    }
}
