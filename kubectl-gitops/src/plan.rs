//! The plan: everything diff shows and sync executes, computed with reads and server-side
//! dry-runs only. Validation errors surface here, before a single write request.

use std::collections::{BTreeMap, BTreeSet};

use crate::applyset;
use crate::manifest::{Manifest, ObjectKey};
use futures::StreamExt;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use shared::{Error, Result};

use crate::cluster::{Cluster, Resolved, api_error, idempotent, status_code};

pub const MANAGER: &str = "kubectl-gitops";
/// The ApplySet parent: a Secret in the namespace, as kubectl's own default.
pub const PARENT_NAME: &str = "kubectl-gitops-applyset";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Unchanged,
    Prune,
    /// Would be pruned, but its kind is protected (Namespace, PVC, CRD).
    Protected,
    /// Would be pruned, but --no-prune was given.
    Kept,
}

#[derive(Debug, Clone)]
pub struct Item {
    pub key: ObjectKey,
    pub action: Action,
    pub rank: u8,
    pub resolved: Resolved,
    /// What we apply (with namespace and ApplySet label set).
    pub desired: Option<Value>,
    pub live: Option<Value>,
    /// The server's dry-run result: what the object will look like.
    pub merged: Option<Value>,
    /// Field-manager conflict reported by the dry-run (sync stops unless --force-conflicts).
    pub conflict: Option<String>,
    /// Another tool's ownership mark on the live object (sync stops unless --adopt).
    pub owner: Option<String>,
}

pub struct Options {
    pub namespace: String,
    pub allow_other_namespaces: bool,
    pub allow_cluster_scoped: bool,
    pub create_namespace: bool,
    pub allow_empty: bool,
    pub concurrency: usize,
    pub prune_protected: bool,
    pub prune: bool,
    /// Dry-run every object, even those [`crate::unchanged`] proves unchanged.
    pub check_all: bool,
    /// The plan will be executed: note the newest revision record before reading anything,
    /// so execution can tell whether another run recorded (and so changed things) since.
    pub for_write: bool,
    /// Keep the live copy of unchanged objects too (status reports their health); diff and
    /// sync need only those of objects that change.
    pub keep_unchanged_live: bool,
}

pub struct Plan {
    pub namespace: String,
    pub namespace_exists: bool,
    pub applyset_id: String,
    pub parent_exists: bool,
    /// Group-kinds recorded on the parent before this run.
    pub parent_kinds: BTreeSet<(String, String)>,
    pub items: Vec<Item>,
    /// Live objects of the listed kinds that no ApplySet claims (drift for `status`).
    pub unowned: Vec<ObjectKey>,
    /// With `for_write`: the newest recorded revision before the plan read anything (0: none).
    pub latest_revision: Option<u64>,
}

impl Plan {
    pub fn count(&self, action: Action) -> usize {
        self.items.iter().filter(|i| i.action == action).count()
    }

    pub fn has_changes(&self) -> bool {
        self.items
            .iter()
            .any(|i| matches!(i.action, Action::Create | Action::Update | Action::Prune))
    }

    /// Whether executing the plan writes any object: a change, the namespace, or the ApplySet
    /// parent (missing, or listing other kinds than the members').
    pub fn writes_objects(&self) -> bool {
        self.has_changes()
            || !self.namespace_exists
            || !self.parent_exists
            || self.member_kinds() != self.parent_kinds
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} to create, {} to update, {} to prune, {} unchanged",
            self.count(Action::Create),
            self.count(Action::Update),
            self.count(Action::Prune),
            self.count(Action::Unchanged)
        );
        let protected = self.count(Action::Protected);
        if protected > 0 {
            s.push_str(&format!(", {protected} not pruned (protected)"));
        }
        let kept = self.count(Action::Kept);
        if kept > 0 {
            s.push_str(&format!(", {kept} not pruned (--no-prune)"));
        }
        s
    }

    /// Group-kinds of the objects that will be members after the sync.
    pub fn member_kinds(&self) -> BTreeSet<(String, String)> {
        self.items
            .iter()
            .filter(|i| {
                matches!(
                    i.action,
                    Action::Create
                        | Action::Update
                        | Action::Unchanged
                        | Action::Protected
                        | Action::Kept
                )
            })
            .filter(|i| !is_target_namespace(&i.key, &self.namespace))
            .map(|i| (i.key.kind.clone(), i.key.group.clone()))
            .collect()
    }
}

pub fn is_target_namespace(key: &ObjectKey, namespace: &str) -> bool {
    key.kind == "Namespace" && key.group.is_empty() && key.name == namespace
}

/// Apply order: what others depend on first.
pub fn rank(group: &str, kind: &str) -> u8 {
    match (group, kind) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") | ("", "Namespace") => 0,
        ("", "ServiceAccount") => 1,
        ("rbac.authorization.k8s.io", _) => 2,
        ("", "ConfigMap") | ("", "Secret") => 3,
        ("", "Service") | ("", "PersistentVolumeClaim") => 4,
        ("apps", _) | ("batch", _) | ("", "Pod") | ("", "ReplicationController") => 5,
        _ => 6,
    }
}

fn protected(key: &ObjectKey) -> bool {
    matches!(
        (key.group.as_str(), key.kind.as_str()),
        ("", "Namespace")
            | ("", "PersistentVolumeClaim")
            | ("apiextensions.k8s.io", "CustomResourceDefinition")
    )
}

fn where_(source: &crate::manifest::Source) -> String {
    format!(
        "{}: document {} (line {})",
        source.file, source.document, source.line
    )
}

pub fn parent_id(namespace: &str) -> String {
    applyset::applyset_id(PARENT_NAME, namespace, "Secret", "")
}

/// Takes the manifests by value: each object moves into the plan rather than being copied,
/// which matters at thousands of objects.
pub async fn build(
    cluster: &mut Cluster,
    manifests: Vec<Manifest>,
    opts: &Options,
) -> Result<Plan> {
    let ns = opts.namespace.as_str();
    if let Some(problem) = shared::refname::dns_label_problem(ns) {
        return Err(Error::invalid(format!("namespace {ns:?} {problem}")));
    }
    if manifests.is_empty() && !opts.allow_empty {
        return Err(Error::invalid(
            "the manifests render to no objects; refusing to apply them (it would prune everything)",
        )
        .hint("check --path, or pass --allow-empty if emptying the namespace is intended"));
    }
    crate::manifest::check_duplicates(&manifests)?;
    let id = parent_id(ns);
    cluster.learn_crds(manifests.iter().map(|m| &m.object));

    // Validate and prepare every object before any request that could write.
    let mut problems = Vec::new();
    let mut desired: Vec<(ObjectKey, Resolved, Value)> = Vec::new();
    let mut namespace_in_set = false;
    for m in manifests {
        let mut obj = m.object;
        let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let Some(resolved) = cluster.resolve(&api_version, &kind) else {
            problems.push(format!("{}: unknown kind {kind} (apiVersion {api_version}): the server does not serve it and no CRD in the set defines it", where_(&m.source)));
            continue;
        };
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if resolved.namespaced {
            let obj_ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
            match obj_ns {
                Some(other) if other != ns && !opts.allow_other_namespaces => {
                    problems.push(format!("{}: {kind}/{name} is in namespace {other:?}, not the target {ns:?} (use --allow-other-namespaces to allow)", where_(&m.source)));
                    continue;
                }
                Some(_) => {}
                None => obj["metadata"]["namespace"] = json!(ns),
            }
        } else {
            let is_ns = kind == "Namespace" && resolved.resource.group.is_empty() && name == ns;
            if is_ns {
                namespace_in_set = true;
            } else if !opts.allow_cluster_scoped {
                problems.push(format!(
                    "{}: {kind}/{name} is cluster-scoped (use --allow-cluster-scoped to allow)",
                    where_(&m.source)
                ));
                continue;
            }
            if let Some(meta) = obj["metadata"].as_object_mut() {
                meta.remove("namespace");
            }
        }
        let key = ObjectKey::of(&obj);
        if !is_target_namespace(&key, ns) {
            obj["metadata"]["labels"][applyset::LABEL_PART_OF] = json!(id);
        }
        desired.push((key, resolved, obj));
    }
    if !problems.is_empty() {
        let n = problems.len();
        let mut msg = format!(
            "{n} invalid object{} in the manifests; nothing was applied:",
            if n == 1 { "" } else { "s" }
        );
        for p in problems.iter().take(20) {
            msg.push_str("\n  ");
            msg.push_str(p);
        }
        if n > 20 {
            msg.push_str(&format!("\n  ... and {} more", n - 20));
        }
        return Err(Error::invalid(msg));
    }

    let ns_resolved = cluster
        .resolve("v1", "Namespace")
        .ok_or_else(|| Error::refused("the server does not serve v1 Namespace"))?;
    let ns_api = cluster.api(&ns_resolved, None);
    let namespace_exists = match idempotent(|| ns_api.get_opt(ns)).await {
        Ok(o) => o.is_some(),
        Err(e) => return Err(api_error(format!("reading namespace {ns}"), e)),
    };
    if !namespace_exists && !namespace_in_set && !opts.create_namespace {
        return Err(
            Error::invalid(format!("namespace {ns:?} does not exist")).hint(
                "pass --create-namespace to create it, or add a Namespace object to the manifests",
            ),
        );
    }

    let latest_revision = if opts.for_write && namespace_exists {
        let records = crate::record::list(cluster, ns).await?;
        Some(records.newest_number())
    } else if opts.for_write {
        Some(0)
    } else {
        None
    };

    // The ApplySet parent tells us which kinds may hold members to prune.
    let secret = cluster
        .resolve("v1", "Secret")
        .ok_or_else(|| Error::refused("the server does not serve v1 Secret"))?;
    let mut parent_kinds = BTreeSet::new();
    let mut parent_exists = false;
    let parent_api = cluster.api(&secret, Some(ns));
    if namespace_exists
        && let Some(parent) = idempotent(|| parent_api.get_opt(PARENT_NAME))
            .await
            .map_err(|e| {
                api_error(
                    format!("reading ApplySet parent Secret/{ns}/{PARENT_NAME}"),
                    e,
                )
            })?
    {
        parent_exists = true;
        let annotations = parent.metadata.annotations.clone().unwrap_or_default();
        let labels = parent.metadata.labels.clone().unwrap_or_default();
        let tooling = annotations
            .get(applyset::ANNOTATION_TOOLING)
            .cloned()
            .unwrap_or_default();
        if !tooling.starts_with(&format!("{MANAGER}/")) {
            return Err(Error::refused(format!(
                "Secret/{ns}/{PARENT_NAME} is an ApplySet parent managed by {:?}, not by {MANAGER}; refusing to change it",
                if tooling.is_empty() {
                    "an unknown tool"
                } else {
                    tooling.as_str()
                }
            )));
        }
        if labels.get(applyset::LABEL_ID) != Some(&id) {
            return Err(Error::refused(format!(
                "Secret/{ns}/{PARENT_NAME} carries ApplySet id {:?}, expected {id}",
                labels.get(applyset::LABEL_ID)
            )));
        }
        if let Some(gks) = annotations.get(applyset::ANNOTATION_CONTAINS_GROUP_KINDS) {
            parent_kinds.extend(applyset::parse_group_kinds(gks));
        }
    }

    // Live state: one LIST per kind in the namespace, plus GETs for cluster-scoped objects.
    let mut kinds: BTreeMap<(String, String), Resolved> = BTreeMap::new();
    for (key, r, _) in &desired {
        kinds
            .entry((key.kind.clone(), key.group.clone()))
            .or_insert_with(|| r.clone());
    }
    for (kind, group) in &parent_kinds {
        if let Some(r) = cluster.resolve_group_kind(group, kind) {
            kinds.entry((kind.clone(), group.clone())).or_insert(r);
        }
    }
    let mut live: BTreeMap<ObjectKey, Value> = BTreeMap::new();
    let mut members: BTreeMap<ObjectKey, Resolved> = BTreeMap::new();
    let mut unowned = Vec::new();
    let selector = format!("{}={id}", applyset::LABEL_PART_OF);
    // Objects whose live fields provably match need no dry-run; the rest ask the server.
    // Checked as each object arrives, so that its field set (often half of it) can be
    // dropped at once instead of holding every listed object whole.
    let wanted_index: BTreeMap<&ObjectKey, &Value> =
        desired.iter().map(|(k, _, obj)| (k, obj)).collect();
    // Proven unchanged: the foreign owner mark, if any (sync refuses those even unchanged).
    let mut proven: BTreeMap<ObjectKey, Option<String>> = BTreeMap::new();
    let admit = |key: ObjectKey,
                 mut v: Value,
                 live: &mut BTreeMap<ObjectKey, Value>,
                 proven: &mut BTreeMap<ObjectKey, Option<String>>| {
        if !opts.check_all
            && let Some(obj) = wanted_index.get(&key)
            && crate::unchanged::apply_is_noop(MANAGER, obj, &v)
        {
            proven.insert(key.clone(), applyset::foreign_owner(&v, &id));
            if !opts.keep_unchanged_live {
                return;
            }
        }
        strip_managed_fields(&mut v);
        live.insert(key, v);
    };
    let mut lists = futures::stream::iter(kinds.values().cloned().map(|r| {
        let api = cluster.api(&r, if r.namespaced { Some(ns) } else { None });
        let selector = selector.clone();
        let ns_ok = namespace_exists || !r.namespaced;
        async move {
            if r.pending || !ns_ok {
                return Ok((r, Vec::new()));
            }
            // Cluster-scoped kinds: only our members (a cluster-wide list of everything could be huge).
            let params = if r.namespaced {
                ListParams::default()
            } else {
                ListParams::default().labels(&selector)
            };
            let list = idempotent(|| api.list(&params))
                .await
                .map_err(|e| api_error(format!("listing {} in {ns}", r.resource.plural), e))?;
            Ok::<_, Error>((r, list.items))
        }
    }))
    .buffer_unordered(opts.concurrency);
    while let Some(result) = lists.next().await {
        let (r, items) = result?;
        for o in items {
            let v = to_value(&o, &r);
            drop(o);
            let key = ObjectKey::of(&v);
            let part_of = v["metadata"]["labels"][applyset::LABEL_PART_OF].as_str();
            if part_of == Some(id.as_str()) {
                members.insert(key.clone(), r.clone());
            } else if part_of.is_none() && !infrastructure(&v) {
                unowned.push(key.clone());
            }
            admit(key, v, &mut live, &mut proven);
        }
    }
    drop(lists);
    for (key, r, _) in desired
        .iter()
        .filter(|(_, r, _)| !r.namespaced && !r.pending)
    {
        if live.contains_key(key) || proven.contains_key(key) {
            continue;
        }
        let api = cluster.api(r, None);
        if let Some(o) = idempotent(|| api.get_opt(&key.name))
            .await
            .map_err(|e| api_error(key, e))?
        {
            admit(key.clone(), to_value(&o, r), &mut live, &mut proven);
        }
    }
    drop(wanted_index);
    crate::log::info(
        2,
        format!(
            "{} of {} objects unchanged without a dry-run",
            proven.len(),
            desired.len()
        ),
    );

    // Server-side dry-runs, bounded concurrency.
    let skip_dry_run = |r: &Resolved| r.pending || (r.namespaced && !namespace_exists);
    let runs = futures::stream::iter(desired.into_iter().map(|(key, r, obj)| {
        let api = cluster.api(&r, obj["metadata"]["namespace"].as_str());
        let skip = skip_dry_run(&r);
        let known_unchanged = proven.contains_key(&key);
        async move {
            if known_unchanged {
                return Ok((key, r, obj, None, None));
            }
            if skip {
                return Ok((key, r, obj.clone(), Some(obj), None));
            }
            let pp = PatchParams::apply(MANAGER).dry_run();
            let patch = Patch::Apply(&obj);
            match idempotent(|| api.patch(&key.name, &pp, &patch)).await {
                Ok(merged) => {
                    let mut m = to_value(&merged, &r);
                    strip_managed_fields(&mut m);
                    Ok((key, r, obj, Some(m), None))
                }
                Err(e) if status_code(&e) == Some(409) => {
                    let conflict = match &e {
                        kube::Error::Api(s) => s.message.clone(),
                        other => other.to_string(),
                    };
                    let forced = pp.clone().force();
                    let merged = idempotent(|| api.patch(&key.name, &forced, &patch))
                        .await
                        .map_err(|e| api_error(format!("dry-run of {key}"), e))?;
                    let mut m = to_value(&merged, &r);
                    strip_managed_fields(&mut m);
                    Ok((key, r, obj, Some(m), Some(conflict)))
                }
                Err(e) => {
                    let code = status_code(&e);
                    // The server reports a manifest that does not fit the schema as 500
                    // "failed to create typed patch object", and one it cannot decode (a
                    // Secret's data that is not base64) as 500 "failed to convert new object":
                    // that is bad input, not a failure.
                    let schema = matches!(&e, kube::Error::Api(s) if s.message.contains("failed to create typed patch object") || s.message.contains("failed to convert new object"));
                    let err = api_error(format!("dry-run of {key}"), e);
                    // 413: the object is larger than the server accepts in one request, so no
                    // retry or permission can make it apply; the manifest has to change.
                    Err(if schema || matches!(code, Some(400) | Some(413) | Some(422)) { Error { kind: shared::ErrorKind::Invalid, ..err } } else { err })
                }
            }
        }
    }))
    .buffer_unordered(opts.concurrency)
    .collect::<Vec<_>>()
    .await;

    let mut items = Vec::new();
    let mut wanted = BTreeSet::new();
    for run in runs {
        let (key, r, obj, mut merged, conflict) = run?;
        wanted.insert(key.clone());
        let mut live_obj = live.remove(&key);
        let (action, owner) = match proven.remove(&key) {
            Some(owner) => (Action::Unchanged, owner),
            None => {
                let action = match (&live_obj, &merged) {
                    (None, _) => Action::Create,
                    (Some(_), None) => Action::Unchanged,
                    (Some(l), Some(m)) => {
                        let mut a = l.clone();
                        let mut b = m.clone();
                        crate::normalize::normalize(&mut a);
                        crate::normalize::normalize(&mut b);
                        if a == b {
                            Action::Unchanged
                        } else {
                            Action::Update
                        }
                    }
                };
                let owner = live_obj
                    .as_ref()
                    .and_then(|l| applyset::foreign_owner(l, &id));
                (action, owner)
            }
        };
        if action == Action::Unchanged {
            // Nothing shows or applies it; holding the server's copies would only cost memory.
            merged = None;
            if !opts.keep_unchanged_live {
                live_obj = None;
            }
        }
        items.push(Item {
            rank: rank(&key.group, &key.kind),
            key,
            action,
            resolved: r,
            desired: Some(obj),
            live: live_obj,
            merged,
            conflict,
            owner,
        });
    }
    for (key, r) in members {
        if wanted.contains(&key) || is_target_namespace(&key, ns) {
            continue;
        }
        let Some(obj) = live.remove(&key) else {
            continue;
        };
        let action = if protected(&key) && !opts.prune_protected {
            Action::Protected
        } else if !opts.prune {
            Action::Kept
        } else {
            Action::Prune
        };
        items.push(Item {
            rank: rank(&key.group, &key.kind),
            key,
            action,
            resolved: r,
            desired: None,
            live: Some(obj),
            merged: None,
            conflict: None,
            owner: None,
        });
    }
    items.sort_by(|a, b| (a.rank, &a.key).cmp(&(b.rank, &b.key)));
    unowned.sort();
    Ok(Plan {
        namespace: ns.to_string(),
        namespace_exists,
        applyset_id: id,
        parent_exists,
        parent_kinds,
        items,
        unowned,
        latest_revision,
    })
}

/// Objects Kubernetes or this tool put in every namespace: never reported as unowned drift.
fn infrastructure(v: &Value) -> bool {
    let name = v["metadata"]["name"].as_str().unwrap_or_default();
    let kind = v["kind"].as_str().unwrap_or_default();
    matches!(
        (kind, name),
        ("ConfigMap", "kube-root-ca.crt") | ("ServiceAccount", "default") | ("Secret", PARENT_NAME)
    ) || v["type"] == "kubernetes.io/service-account-token"
        || v["type"] == crate::record::SECRET_TYPE
}

fn strip_managed_fields(v: &mut Value) {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
}

/// A dynamic object as JSON with apiVersion and kind filled in (list items lack them).
pub fn to_value(o: &DynamicObject, r: &Resolved) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    v["apiVersion"] = json!(r.resource.api_version);
    v["kind"] = json!(r.resource.kind);
    v
}
