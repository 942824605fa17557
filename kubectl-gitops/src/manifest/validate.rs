//! What every object must be before it is planned: a mapping with apiVersion, kind and a name
//! the API server accepts, in a namespace it accepts, and no two objects with one key.

use std::collections::HashMap;

use serde_json::Value;

use shared::error::{Error, Result};

use super::{Manifest, ObjectKey, Source};

/// Refuses two objects with the same key: applying both would let the later silently win.
pub fn check_duplicates(manifests: &[Manifest]) -> Result<()> {
    let mut seen: HashMap<ObjectKey, &Source> = HashMap::with_capacity(manifests.len());
    let mut problems = Vec::new();
    for m in manifests {
        let key = ObjectKey::of(&m.object);
        if let Some(first) = seen.get(&key) {
            problems.push(format!(
                "{key} is defined twice: in {first} and in {}",
                m.source
            ));
        } else {
            seen.insert(key, &m.source);
        }
    }
    match problems.len() {
        0 => Ok(()),
        _ => Err(Error::invalid(problems.join("\n"))
            .hint("each object may appear once; remove or rename one of the copies")),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

pub(super) fn check_object(obj: &Value, source: &Source, item: Option<usize>) -> Result<()> {
    let fail = |message: String| match item {
        Some(i) => source.error(format!("list item {i}: {message}")),
        None => source.error(message),
    };
    let Some(map) = obj.as_object() else {
        return Err(fail(format!(
            "expected a Kubernetes object (a mapping), found {}",
            type_name(obj)
        )));
    };
    let required = |field: &str| -> Result<&str> {
        match map.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            None | Some(Value::Null) => Err(fail(format!("missing {field}"))),
            Some(other) => Err(fail(format!(
                "{field} must be a non-empty string, found {}",
                type_name(other)
            ))),
        }
    };
    let api_version = required("apiVersion")?;
    let kind = required("kind")?;
    let meta = match map.get("metadata") {
        Some(Value::Object(meta)) => meta,
        None | Some(Value::Null) => return Err(fail("missing metadata.name".to_string())),
        Some(other) => {
            return Err(fail(format!(
                "metadata must be a mapping, found {}",
                type_name(other)
            )));
        }
    };
    // A hook is created anew by each sync, so it may have the server pick its name; any other
    // object is applied again and again under one name.
    let generated = match meta.get("generateName") {
        Some(Value::String(g)) if !g.is_empty() && crate::phases::is_hook(obj) => {
            Some(format!("{g}x"))
        }
        _ => None,
    };
    let name = match (meta.get("name"), &generated) {
        (Some(Value::String(name)), _) if !name.is_empty() => name,
        (None | Some(Value::Null) | Some(Value::String(_)), Some(generated)) => generated,
        (None | Some(Value::Null) | Some(Value::String(_)), None) => {
            return Err(if meta.contains_key("generateName") {
                fail(format!(
                    "{kind} uses metadata.generateName, which cannot be applied repeatedly or \
                     tracked; give it a fixed metadata.name (or make it a hook, which is created \
                     anew by every sync: gitops.kubectl.io/hook)"
                ))
            } else {
                fail("missing metadata.name".to_string())
            });
        }
        (Some(other), _) => {
            return Err(fail(format!(
                "metadata.name must be a string, found {}",
                type_name(other)
            )));
        }
    };
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    if let Some(rule) = name_problem(group, kind, name) {
        // A generated name is the prefix plus five characters: checked with one of them.
        return Err(fail(match generated.as_deref() {
            Some(g) if g == name => format!(
                "{kind} {:?}: invalid metadata.generateName: {rule}",
                &g[..g.len() - 1]
            ),
            _ => format!("{kind} {name:?}: invalid metadata.name: {rule}"),
        }));
    }
    match meta.get("namespace") {
        None | Some(Value::Null) => {}
        Some(Value::String(ns)) if ns.is_empty() || is_dns_label(ns) => {}
        Some(Value::String(ns)) => {
            return Err(fail(format!(
                "{kind} {name:?}: invalid metadata.namespace {ns:?}: must be a DNS label \
                 (lowercase letters, digits and '-', at most 63 characters)"
            )));
        }
        Some(other) => {
            return Err(fail(format!(
                "{kind} {name:?}: metadata.namespace must be a string, found {}",
                type_name(other)
            )));
        }
    }
    Ok(())
}

/// Why `name` is not valid for `kind`, following the API server's rules: most kinds take DNS
/// subdomains, namespaces and services DNS labels, RBAC objects any path segment (names like
/// `system:controller:foo` are common there).
fn name_problem(group: &str, kind: &str, name: &str) -> Option<&'static str> {
    match (group, kind) {
        ("rbac.authorization.k8s.io", _) => {
            (!is_path_segment(name)).then_some("must not be '.' or '..' or contain '/' or '%'")
        }
        ("", "Namespace") => (!is_dns_label(name)).then_some(
            "must be a DNS label (lowercase letters, digits and '-', starting and ending with a \
             letter or digit, at most 63 characters)",
        ),
        ("", "Service") => {
            (!(is_dns_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase()))).then_some(
                "must be a DNS-1035 label (lowercase letters, digits and '-', starting with a \
                 letter and ending with a letter or digit, at most 63 characters)",
            )
        }
        _ => (!is_dns_subdomain(name)).then_some(
            "must be a DNS subdomain (lowercase letters, digits, '-' and '.', starting and ending \
             with a letter or digit, at most 253 characters)",
        ),
    }
}

fn is_label_part(s: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = s.as_bytes();
    !b.is_empty()
        && alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter().all(|&c| alnum(c) || c == b'-')
}

fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_label_part(s)
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label_part)
}

fn is_path_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '%'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_stream;

    fn parse(file: &str, text: &str) -> Result<Vec<Manifest>> {
        parse_stream(file, text.as_bytes())
    }

    fn err(file: &str, text: &str) -> String {
        parse(file, text).unwrap_err().message
    }

    #[test]
    fn missing_fields_are_named_with_position() {
        let two = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\n";
        assert_eq!(
            err(
                "deploy/x.yaml",
                &format!(
                    "{two}{two}apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {{a: b}}\n"
                )
            ),
            "deploy/x.yaml: document 3 (line 9): missing metadata.name"
        );
        assert_eq!(
            err("f.yaml", "kind: ConfigMap\nmetadata: {name: a}\n"),
            "f.yaml: document 1 (line 1): missing apiVersion"
        );
        assert_eq!(
            err("f.yaml", "apiVersion: v1\nmetadata: {name: a}\n"),
            "f.yaml: document 1 (line 1): missing kind"
        );
        assert!(
            err("f.yaml", "apiVersion: 1\nkind: X\n")
                .contains("apiVersion must be a non-empty string")
        );
        assert!(err("f.yaml", "- a\n").contains("found a sequence"));
        assert!(err("f.yaml", "just text\n").contains("found a string"));
        let e = err(
            "f.yaml",
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: run-\n",
        );
        assert!(
            e.contains("generateName") && e.contains("fixed metadata.name"),
            "{e}"
        );
        // A hook is created anew by every sync: the server may name it.
        let hook = parse(
            "f.yaml",
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: run-\n  annotations:\n    argocd.argoproj.io/hook: PreSync\n",
        )
        .unwrap();
        assert_eq!(ObjectKey::of(&hook[0].object).name, "run-");
        assert!(
            err(
                "f.yaml",
                "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: Run_\n  annotations:\n    gitops.kubectl.io/hook: PreSync\n",
            )
            .contains("Job \"Run_\": invalid metadata.generateName"),
        );
    }

    #[test]
    fn names_follow_api_server_rules() {
        let obj = |api: &str, kind: &str, name: &str| {
            format!("apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name:?}\n")
        };
        for (api, kind, name) in [
            ("v1", "ConfigMap", "a.b-c"),
            (
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                "system:aggregate-to-view",
            ),
            ("v1", "Namespace", "dev"),
            ("v1", "Service", "web-1"),
            ("v1", "ConfigMap", &"a".repeat(253)),
        ] {
            assert!(
                parse("f.yaml", &obj(api, kind, name)).is_ok(),
                "{kind} {name}"
            );
        }
        for (api, kind, name) in [
            ("v1", "ConfigMap", "Upper"),
            ("v1", "ConfigMap", "-lead"),
            ("v1", "ConfigMap", "a..b"),
            ("v1", "ConfigMap", "under_score"),
            ("v1", "ConfigMap", &"a".repeat(254)),
            ("v1", "Namespace", "a.b"),
            ("v1", "Service", "1web"),
            ("rbac.authorization.k8s.io/v1", "Role", "a/b"),
        ] {
            let e = err("f.yaml", &obj(api, kind, name));
            assert!(
                e.contains("invalid metadata.name") && e.contains(kind),
                "{e}"
            );
        }
        let e = err(
            "f.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: Prod}\n",
        );
        assert!(e.contains("invalid metadata.namespace"), "{e}");
    }

    #[test]
    fn duplicates_name_both_sources() {
        let a = parse(
            "a.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: prod}\n",
        )
        .unwrap();
        let b = parse("b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web, namespace: prod}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: prod}\n").unwrap();
        let all: Vec<Manifest> = a.into_iter().chain(b).collect();
        let e = check_duplicates(&all).unwrap_err();
        assert_eq!(
            e.message,
            "Deployment.apps/prod/web is defined twice: in a.yaml document 1 (line 1) and in b.yaml document 2 (line 5)"
        );
        assert!(check_duplicates(&all[1..]).is_ok());
    }
}
