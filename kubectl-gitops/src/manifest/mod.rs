//! Kubernetes manifests read straight from git objects at a commit, never from a checkout, so
//! what we diff and apply is exactly what was committed, whatever the work tree holds. One file
//! per job: `tree` walks the commit's tree and reads the blobs, `parse` splits YAML and JSON
//! streams into documents with located errors, `validate` checks each object, `kustomize`
//! renders a kustomization and `helm` a Helm chart from an export of the tree (`export`). This
//! file holds what they share.

mod export;
pub mod helm;
mod kustomize;
#[cfg(test)]
mod load_tests;
mod parse;
mod tree;
mod validate;

use std::fmt;

use serde_json::Value;

use shared::error::Error;

pub use parse::from_values;
#[cfg(test)]
pub use parse::parse_stream;
#[cfg(test)]
pub use tree::load_at;
pub use tree::open_at;
pub use validate::check_duplicates;

/// What a path at a commit holds: objects, or a Helm chart, which can only be rendered once the
/// cluster's version and APIs are known (its templates may ask for them).
pub enum Content {
    Objects(Vec<Manifest>),
    Chart(helm::Chart),
}

/// One object from git, and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub object: Value,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    /// Repository-relative path, `kustomize build <path>` for a kustomization's output, or the
    /// chart file that rendered it, `<file> (rendered by helm template)`.
    pub file: String,
    /// 1-based position in the file's document stream, counting empty documents too, so it
    /// matches what a reader counts between `---` lines.
    pub document: usize,
    /// 1-based line where the document's content starts.
    pub line: usize,
}

impl Source {
    fn error(&self, message: impl fmt::Display) -> Error {
        Error::invalid(format!(
            "{}: document {} (line {}): {message}",
            self.file, self.document, self.line
        ))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} document {} (line {})",
            self.file, self.document, self.line
        )
    }
}

/// What identifies an object to the API server.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// API group, empty for the core group.
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    /// The key of `obj`; missing fields become empty, which only happens for objects that
    /// [`parse_stream`] would have refused.
    pub fn of(obj: &Value) -> ObjectKey {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let group = match api_version.split_once('/') {
            Some((group, _version)) => group.to_string(),
            None => String::new(),
        };
        let meta = obj.get("metadata");
        ObjectKey {
            group,
            kind: text(obj.get("kind")),
            namespace: meta
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .map(str::to_string),
            // A hook the server names (generateName) is known by its prefix until created.
            name: meta
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .or_else(|| {
                    meta.and_then(|m| m.get("generateName"))
                        .and_then(Value::as_str)
                })
                .unwrap_or_default()
                .to_string(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, "/{ns}")?;
        }
        write!(f, "/{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_order_and_display() {
        let key = |v: Value| ObjectKey::of(&v);
        let ns = key(
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}}),
        );
        assert_eq!(ns.to_string(), "Namespace/dev");
        assert_eq!(ns.group, "");
        assert_eq!(ns.namespace, None);
        let crd = key(
            serde_json::json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "c", "namespace": "web"}}),
        );
        assert_eq!(crd.to_string(), "Certificate.cert-manager.io/web/c");
        assert!(ns < crd);
    }
}
