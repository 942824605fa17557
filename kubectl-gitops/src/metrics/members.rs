//! The objects of each followed namespace's current revision, held by watches: one per kind
//! (per namespace, unless `--all-namespaces`, where one cluster-wide watch per kind serves every
//! namespace), selected by our ApplySet label, plus the Pods and ReplicaSets of namespaces
//! whose revision has a Deployment (the rules need them to name a doomed rollout). The set of
//! watches follows the revisions: a kind that leaves every current revision stops being
//! watched.
//!
//! Health is judged at scrape time from what the watches hold, with the rules of `status` and
//! `--wait` (some verdicts depend on the time, such as a Pod stuck pulling its image past its
//! grace period). An object of the revision that its watch does not hold is missing, hence
//! failed, as `status` says; one whose watch has not listed (or may not: RBAC) is not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::Value;

use super::{Exporter, Scope, parse_key};
use crate::applyset::LABEL_PART_OF;
use crate::cluster::Cluster;
use crate::health::{self, Related, Status};
use crate::manifest::ObjectKey;
use crate::watched::{Watched, value};

/// Objects of a revision by health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    pub ready: usize,
    pub in_progress: usize,
    pub failed: usize,
}

/// What one watch lists and watches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct WatchKey {
    /// `None`: cluster-wide (cluster-scoped kinds, and everything with `--all-namespaces`).
    namespace: Option<String>,
    group: String,
    kind: String,
    labels: Option<String>,
    fields: Option<String>,
}

impl WatchKey {
    fn describe(&self, plural: &str) -> String {
        match &self.namespace {
            Some(ns) => format!("watch of {plural} in {ns}"),
            None => format!("watch of {plural}"),
        }
    }
}

#[derive(Default)]
pub struct Watches {
    watches: Mutex<BTreeMap<WatchKey, Watched>>,
}

/// The watch that holds `key` (an object of the revision of `target`), and for a Deployment
/// those of its namespace's ReplicaSets and Pods.
fn keys_for(all: bool, target: &str, key: &ObjectKey) -> Vec<WatchKey> {
    let ours = if all {
        LABEL_PART_OF.to_string()
    } else {
        format!("{LABEL_PART_OF}={}", crate::plan::parent_id(target))
    };
    let watch = |namespace: Option<&String>, group: &str, kind: &str| WatchKey {
        namespace: namespace.filter(|_| !all).cloned(),
        group: group.to_string(),
        kind: kind.to_string(),
        labels: None,
        fields: None,
    };
    let mut out = Vec::new();
    match &key.namespace {
        Some(ns) => out.push(WatchKey {
            labels: Some(ours),
            ..watch(Some(ns), &key.group, &key.kind)
        }),
        // The target namespace carries no ApplySet label (it is not a member).
        None if key.group.is_empty() && key.kind == "Namespace" => out.push(WatchKey {
            fields: (!all).then(|| format!("metadata.name={}", key.name)),
            ..watch(None, "", "Namespace")
        }),
        None => out.push(WatchKey {
            labels: Some(LABEL_PART_OF.to_string()),
            ..watch(None, &key.group, &key.kind)
        }),
    }
    if key.group == "apps" && key.kind == "Deployment" {
        out.push(watch(key.namespace.as_ref(), "apps", "ReplicaSet"));
        out.push(watch(key.namespace.as_ref(), "", "Pod"));
    }
    out
}

enum Found {
    Object(Value),
    Missing,
    Unknown,
}

impl Watches {
    /// Health of `objects` (a record's `objects`) of namespace `ns`, or `None` when none of
    /// them could be looked up.
    pub fn health(&self, all: bool, ns: &str, objects: &[String]) -> Option<Health> {
        let watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        let mut health = Health::default();
        let mut unknown = 0;
        for key in objects.iter().filter_map(|o| parse_key(o)) {
            let keys = keys_for(all, ns, &key);
            let status = match lookup(&watches, &keys[0], &key) {
                Found::Object(obj) => {
                    health::judge_known(&obj, || related(&watches, &keys[1..], &key)).status
                }
                Found::Missing => Status::Failed,
                Found::Unknown => {
                    unknown += 1;
                    continue;
                }
            };
            match status {
                Status::Ready => health.ready += 1,
                Status::InProgress => health.in_progress += 1,
                Status::Failed => health.failed += 1,
            }
        }
        (objects.is_empty() || unknown < objects.len()).then_some(health)
    }

    /// Whether every watch `objects` need has listed, or failed (and said why in
    /// `problems`).
    pub fn settled(
        &self,
        all: bool,
        ns: &str,
        objects: &[String],
        problems: &BTreeMap<String, String>,
    ) -> bool {
        let watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        objects
            .iter()
            .filter_map(|o| parse_key(o))
            .flat_map(|key| keys_for(all, ns, &key))
            .all(|k| match watches.get(&k) {
                Some(w) => w.listed() || problems.contains_key(&k.describe(&w.resource.plural)),
                None => false,
            })
    }
}

fn lookup(watches: &BTreeMap<WatchKey, Watched>, at: &WatchKey, key: &ObjectKey) -> Found {
    let Some(w) = watches.get(at).filter(|w| w.listed()) else {
        return Found::Unknown;
    };
    let mut r = ObjectRef::new_with(&key.name, w.resource.clone());
    if let Some(ns) = &key.namespace {
        r = r.within(ns);
    }
    match w.store.get(&r) {
        Some(o) => Found::Object(value(&o, &w.resource)),
        None => Found::Missing,
    }
}

/// The ReplicaSets and Pods of the Deployment's namespace, from their watches.
fn related(watches: &BTreeMap<WatchKey, Watched>, keys: &[WatchKey], key: &ObjectKey) -> Related {
    let mut out = Related::default();
    for k in keys {
        let Some(w) = watches.get(k) else { continue };
        let items: Vec<Value> = w
            .store
            .state()
            .iter()
            .filter(|o| o.metadata.namespace == key.namespace)
            .map(|o| value(o, &w.resource))
            .collect();
        if k.kind == "Pod" {
            out.pods = items;
        } else {
            out.replica_sets = items;
        }
    }
    out
}

/// Keeps the watches in line with the current revisions, whenever something changed.
pub async fn follow(exporter: Arc<Exporter>) {
    let mut changed = exporter.changed.subscribe();
    let mut cluster: Option<Cluster> = None;
    loop {
        reconcile(&exporter, &mut cluster).await;
        if changed.changed().await.is_err() {
            return;
        }
    }
}

async fn reconcile(exporter: &Arc<Exporter>, cluster: &mut Option<Cluster>) {
    let all = matches!(exporter.scope, Scope::All);
    let wanted: BTreeSet<WatchKey> = {
        let state = exporter.state();
        state
            .namespaces
            .iter()
            .filter_map(|ns| Some((ns, state.records.get(ns)?.current.as_ref()?)))
            .flat_map(|(ns, meta)| {
                meta.objects
                    .iter()
                    .filter_map(|o| parse_key(o))
                    .flat_map(|key| keys_for(all, ns, &key))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    // The state lock is never taken while the watches' is held (scrapes take them the
    // other way round).
    let (gone, missing) = {
        let mut watches = exporter
            .members
            .watches
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let gone_keys: Vec<WatchKey> = watches
            .keys()
            .filter(|k| !wanted.contains(k))
            .cloned()
            .collect();
        let gone: Vec<(WatchKey, Watched)> = gone_keys
            .into_iter()
            .filter_map(|k| watches.remove(&k).map(|w| (k, w)))
            .collect();
        let missing: Vec<WatchKey> = wanted
            .into_iter()
            .filter(|k| !watches.contains_key(k))
            .collect();
        (gone, missing)
    };
    for (k, w) in gone {
        exporter.clear_problem(&k.describe(&w.resource.plural));
    }
    if missing.is_empty() {
        return;
    }
    let mut rediscovered = false;
    for key in missing {
        let resource = loop {
            if cluster.is_none() || rediscovered {
                match Cluster::discover(exporter.client.clone()).await {
                    Ok(c) => *cluster = Some(c),
                    Err(e) => {
                        exporter.problem("discovery", e.message);
                        return;
                    }
                }
                exporter.clear_problem("discovery");
            }
            let found = cluster
                .as_ref()
                .and_then(|c| c.resolve_group_kind(&key.group, &key.kind));
            match found {
                Some(r) => break Some(r.resource),
                // A kind a CRD defined after the last discovery: look once more.
                None if !rediscovered => rediscovered = true,
                None => break None,
            }
        };
        let Some(resource) = resource else {
            let gk = if key.group.is_empty() {
                key.kind.clone()
            } else {
                format!("{}.{}", key.kind, key.group)
            };
            exporter.problem(
                format!("kind {gk}"),
                "the server does not serve it; its objects are not counted in health",
            );
            continue;
        };
        let watched = start(exporter.clone(), &key, resource);
        exporter
            .members
            .watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, watched);
    }
}

fn start(exporter: Arc<Exporter>, key: &WatchKey, resource: ApiResource) -> Watched {
    let api: Api<DynamicObject> = match &key.namespace {
        Some(ns) => Api::namespaced_with(exporter.client.clone(), ns, &resource),
        None => Api::all_with(exporter.client.clone(), &resource),
    };
    let mut config = watcher::Config::default();
    if let Some(l) = &key.labels {
        config = config.labels(l);
    }
    if let Some(f) = &key.fields {
        config = config.fields(f);
    }
    let source = key.describe(&resource.plural);
    Watched::start(
        api,
        config,
        resource,
        watcher::DefaultBackoff::default(),
        move |event| match event {
            Err(e) => exporter.problem(source.clone(), e.to_string()),
            Ok(watcher::Event::InitDone) => {
                exporter.clear_problem(&source);
                exporter.bump();
            }
            Ok(_) => {}
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(group: &str, kind: &str, ns: Option<&str>, name: &str) -> ObjectKey {
        ObjectKey {
            group: group.into(),
            kind: kind.into(),
            namespace: ns.map(str::to_string),
            name: name.into(),
        }
    }

    #[test]
    fn one_watch_per_kind_and_namespace_or_per_kind_for_all_namespaces() {
        let web = key("apps", "Deployment", Some("shop"), "web");
        let id = crate::plan::parent_id("shop");
        let per_ns = keys_for(false, "shop", &web);
        assert_eq!(per_ns.len(), 3, "{per_ns:?}");
        assert_eq!(per_ns[0].namespace.as_deref(), Some("shop"));
        assert_eq!(
            per_ns[0].labels.as_deref(),
            Some(format!("{LABEL_PART_OF}={id}").as_str())
        );
        assert_eq!(
            (per_ns[2].kind.as_str(), per_ns[2].labels.as_deref()),
            ("Pod", None)
        );
        let all = keys_for(true, "shop", &web);
        assert_eq!(all[0].namespace, None);
        assert_eq!(all[0].labels.as_deref(), Some(LABEL_PART_OF));
        // Two namespaces share a cluster-wide watch with --all-namespaces.
        let other = keys_for(
            true,
            "other",
            &key("apps", "Deployment", Some("other"), "x"),
        );
        assert_eq!(all, other);
        let ns = keys_for(false, "shop", &key("", "Namespace", None, "shop"));
        assert_eq!(ns[0].fields.as_deref(), Some("metadata.name=shop"));
        assert_eq!(ns[0].labels, None);
        let cm = keys_for(false, "shop", &key("", "ConfigMap", Some("shop"), "c"));
        assert_eq!(cm.len(), 1);
    }
}
