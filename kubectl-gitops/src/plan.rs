//! The plan: everything diff shows and sync executes, computed with reads and server-side
//! dry-runs only. Validation errors surface here, before a single write request.

use std::collections::{BTreeMap, BTreeSet};

use crate::applyset;
use crate::manifest::{Manifest, ObjectKey};
use crate::phases::{self, Phase, Placement};
use futures::StreamExt;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use shared::{Error, Result};

use crate::cluster::{Cluster, Resolved, api_error, idempotent, status_code};

pub const MANAGER: &str = "kubectl-gitops";
/// The ApplySet parent: a Secret in the namespace, as kubectl's own default.
pub const PARENT_NAME: &str = "kubectl-gitops-applyset";
use crate::trust::CONFIGMAP_NAME as TRUST_CONFIGMAP;

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
    /// A hook: created anew by the sync in its phase (see [`crate::hooks`]), never an ApplySet
    /// member.
    Hook,
    /// Changes an immutable field: deleted and created anew (`Replace=true` or
    /// `--replace-immutable`).
    Replace,
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
    /// Phase, wave, hook and sync options from the annotations.
    pub placement: Placement,
    /// The immutable fields the apply would change (`spec.template`); with [`Action::Update`]
    /// the sync refuses (no `Replace=true`, or a kind never replaced), with
    /// [`Action::Replace`] it deletes and recreates.
    pub immutable: Option<String>,
}

impl Item {
    pub fn is_hook(&self) -> bool {
        self.placement.is_hook()
    }

    /// A hook that runs in a successful sync (not only on failure).
    pub fn runs_on_success(&self) -> bool {
        self.action == Action::Hook
            && self
                .placement
                .phases()
                .iter()
                .any(|p| *p != Phase::SyncFail)
    }
}

/// An object of the manifests that is never applied, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub key: ObjectKey,
    pub why: String,
}

#[derive(Clone)]
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
    /// Delete and recreate objects whose apply would change an immutable field, as
    /// `Replace=true` on each would (`--replace-immutable`).
    pub replace_immutable: bool,
    /// An object whose dry-run the server rejects is a finding in [`Plan::rejected`] (diff,
    /// status) rather than an error that ends planning (sync, revert: nothing is written).
    pub report_rejections: bool,
    /// Keep the server's dry-run answer for an object to create: only a plan that is shown
    /// (diff, `--dry-run`, `-o json`) shows it. A sync that only applies needs of a create
    /// that the server accepts it, and at 20,000 objects holding every answer until the plan
    /// is complete costs ~100 MB.
    pub keep_create_answers: bool,
}

/// A wanted object the server will not take as it stands (its dry-run answered 400, 413, 422
/// or a schema error): re-applying it cannot work until the manifest or the live object
/// changes.
#[derive(Debug)]
pub struct Rejection {
    pub key: ObjectKey,
    /// The error, Secret values masked: `dry-run of <key>: <server message> (<code>)`.
    pub error: Error,
    /// Its live copy, if it exists (status judges its health).
    pub live: Option<Value>,
}

impl Rejection {
    /// The server's words without the `dry-run of <key>: ` we put in front.
    pub fn reason(&self) -> &str {
        let prefix = format!("dry-run of {}: ", self.key);
        self.error
            .message
            .strip_prefix(prefix.as_str())
            .unwrap_or(&self.error.message)
    }
}

/// Every rejection as one error (exit 2): one alone as the server gave it, several listed.
pub fn rejections_error(rejected: &[Rejection]) -> Option<Error> {
    match rejected {
        [] => None,
        [one] => Some(Error {
            kind: one.error.kind,
            message: one.error.message.clone(),
            hint: one.error.hint.clone(),
            source: None,
        }),
        many => Some(
            Error::invalid(format!(
                "the server rejects {} objects as they stand:\n  {}",
                many.len(),
                many.iter()
                    .map(|r| format!("{}: {}", r.key, r.reason()))
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ))
            .hint("fix the manifests (or the live objects they clash with) and rerun"),
        ),
    }
}

pub struct Plan {
    pub namespace: String,
    pub namespace_exists: bool,
    pub applyset_id: String,
    pub parent_exists: bool,
    /// Group-kinds recorded on the parent before this run.
    pub parent_kinds: BTreeSet<(String, String)>,
    /// Namespaces other than the target recorded on the parent before this run.
    pub parent_namespaces: BTreeSet<String>,
    pub items: Vec<Item>,
    /// Live objects of the listed kinds that no ApplySet claims (drift for `status`).
    pub unowned: Vec<ObjectKey>,
    /// With `for_write`: the newest recorded revision before the plan read anything (0: none).
    pub latest_revision: Option<u64>,
    /// With `for_write`: the revision records as they were then (what `--rollback-on-failure`
    /// goes back to, and what an earlier sync of the same tag did).
    pub records: crate::record::Records,
    /// Some object carries a hook or wave annotation: the sync goes phase by phase and wave by
    /// wave, each wave applied and ready before the next. Without, it applies everything at
    /// once and waits only with `--wait`.
    pub ordered: bool,
    /// Objects of the manifests that are not applied (`Skip`, Helm tests...).
    pub skipped: Vec<Skipped>,
    /// Hook types of applied objects that are ignored, one line each naming the object.
    pub notes: Vec<String>,
    /// Helm releases (`namespace/name`) that objects of the manifests belong to live, not yet
    /// adopted: taking them over leaves the release's record behind (see `--adopt`).
    pub helm_releases: BTreeSet<String>,
    /// Wanted objects the server rejects, with `report_rejections` (otherwise planning fails).
    pub rejected: Vec<Rejection>,
}

impl Plan {
    pub fn count(&self, action: Action) -> usize {
        self.items.iter().filter(|i| i.action == action).count()
    }

    /// Whether the namespace differs from the manifests. Hooks run on every sync but are not
    /// differences.
    pub fn has_changes(&self) -> bool {
        self.items.iter().any(|i| {
            matches!(
                i.action,
                Action::Create | Action::Update | Action::Prune | Action::Replace
            )
        })
    }

    /// Whether executing the plan writes any object: a change, a hook to run, the namespace,
    /// or the ApplySet parent (missing, or listing other kinds than the members').
    pub fn writes_objects(&self) -> bool {
        self.has_changes()
            || self.items.iter().any(Item::runs_on_success)
            || !self.namespace_exists
            || !self.parent_exists
            || self.member_kinds() != self.parent_kinds
            || self.member_namespaces() != self.parent_namespaces
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
        let replace = self.count(Action::Replace);
        if replace > 0 {
            s.push_str(&format!(", {replace} to replace"));
        }
        let hooks = self.count(Action::Hook);
        if hooks > 0 {
            s.push_str(&format!(
                ", {hooks} hook{}",
                if hooks == 1 { "" } else { "s" }
            ));
        }
        if !self.skipped.is_empty() {
            s.push_str(&format!(", {} skipped", self.skipped.len()));
        }
        s
    }

    /// The phases and waves to run, in order, each with its items (indices into `items`):
    /// objects to apply or wait for and hooks to run, `phase` one of PreSync, Sync, PostSync,
    /// SyncFail. Prunes are not in any.
    pub fn steps(&self, phase: Phase) -> Vec<Step> {
        let mut steps: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (i, item) in self.items.iter().enumerate() {
            if item.desired.is_none() || !item.placement.phases().contains(&phase) {
                continue;
            }
            steps.entry(item.placement.wave).or_default().push(i);
        }
        steps
            .into_iter()
            .map(|(wave, mut items)| {
                items.sort_by_key(|&i| (self.items[i].rank, &self.items[i].key));
                Step { phase, wave, items }
            })
            .collect()
    }

    /// The objects that will be members after the sync (the target Namespace never is).
    fn members(&self) -> impl Iterator<Item = &Item> {
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
                        | Action::Replace
                )
            })
            .filter(|i| !is_target_namespace(&i.key, &self.namespace))
    }

    /// Group-kinds of the objects that will be members after the sync.
    pub fn member_kinds(&self) -> BTreeSet<(String, String)> {
        self.members()
            .map(|i| (i.key.kind.clone(), i.key.group.clone()))
            .collect()
    }

    /// Namespaces other than the target that will hold members after the sync.
    pub fn member_namespaces(&self) -> BTreeSet<String> {
        self.members()
            .filter_map(|i| i.key.namespace.clone())
            .filter(|n| n != &self.namespace)
            .collect()
    }
}

/// One wave of one phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub phase: Phase,
    pub wave: i32,
    pub items: Vec<usize>,
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

pub fn protected(key: &ObjectKey) -> bool {
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

/// Reads and dry-runs everything a sync of `manifests` would touch, writing nothing. Takes the
/// manifests by value: each object moves into the plan rather than being copied, which matters
/// at thousands of objects.
pub async fn build(
    cluster: &mut Cluster,
    manifests: Vec<Manifest>,
    opts: &Options,
) -> Result<Plan> {
    let id = parent_id(&opts.namespace);
    cluster.learn_crds(manifests.iter().map(|m| &m.object));
    let wanted = validate(manifests, opts, &id, |v, k| cluster.resolve(v, k))?;
    let found = discover(cluster, opts, &id, wanted.namespace_in_set).await?;
    let mut live = list_live(cluster, opts, &id, &wanted.objects, &found).await?;
    let (runs, mut rejected) = dry_run(cluster, wanted.objects, &live, &found, opts).await?;
    if !opts.report_rejections
        && let Some(e) = rejections_error(&rejected)
    {
        return Err(e);
    }
    // A rejected object is still wanted: its live copy goes with it, never to the prunes.
    for r in &mut rejected {
        r.live = live.objects.remove(&r.key);
        live.members.remove(&r.key);
    }
    let mut items: Vec<Item> = runs
        .into_iter()
        .map(|run| decide(run, &mut live, &id, opts))
        .collect();
    items.extend(prunes(&mut live, &items, opts));
    let mut plan = assemble(opts, id, found, items, live.unowned, wanted.ordered);
    plan.skipped = wanted.skipped;
    plan.notes = wanted.notes;
    plan.helm_releases = live.helm_releases;
    rejected.sort_by(|a, b| a.key.cmp(&b.key));
    plan.rejected = rejected;
    Ok(plan)
}

/// An object of the manifests, ready to apply: its key, its API resource, and the object with
/// the target namespace and our ApplySet label set.
pub struct Desired {
    pub key: ObjectKey,
    pub resolved: Resolved,
    pub object: Value,
    pub placement: Placement,
}

pub struct Validated {
    pub objects: Vec<Desired>,
    /// The manifests hold a Namespace named like the target (so it may be created).
    pub namespace_in_set: bool,
    /// Some object carries a hook or wave annotation.
    pub ordered: bool,
    pub skipped: Vec<Skipped>,
    pub notes: Vec<String>,
}

/// Step 1, before any request: every object must resolve to a kind the server serves (or a CRD
/// in the set defines), stay in the target namespace and be namespaced unless the flags allow
/// otherwise, and appear once. All problems are reported together.
pub fn validate(
    manifests: Vec<Manifest>,
    opts: &Options,
    id: &str,
    resolve: impl Fn(&str, &str) -> Option<Resolved>,
) -> Result<Validated> {
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
    let mut problems = Vec::new();
    let mut objects = Vec::new();
    let mut namespace_in_set = false;
    let mut ordered = false;
    let mut skipped = Vec::new();
    let mut notes = Vec::new();
    for m in manifests {
        let classified = match phases::classify(&m.object) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("{}: {e}", where_(&m.source)));
                continue;
            }
        };
        ordered |= classified.ordered;
        let Some(placement) = classified.placement else {
            let mut key = ObjectKey::of(&m.object);
            if key.namespace.is_none() {
                key.namespace = Some(ns.to_string());
            }
            skipped.push(Skipped {
                key,
                why: classified.notes.join("; "),
            });
            continue;
        };
        let mut obj = m.object;
        let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let Some(resolved) = resolve(&api_version, &kind) else {
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
        if kind == "ConfigMap" && resolved.resource.group.is_empty() && name == TRUST_CONFIGMAP {
            // A deploy must not carry the policy that judges deploys.
            problems.push(format!(
                "{}: ConfigMap/{name} is a namespace's trust policy, which manifests may not \
                 hold (set it with `kubectl gitops trust set`)",
                where_(&m.source)
            ));
            continue;
        }
        let key = ObjectKey::of(&obj);
        if placement.is_hook() && protected(&key) {
            problems.push(format!(
                "{}: {key} is a hook, but a {} cannot be one (a hook is deleted and created anew)",
                where_(&m.source),
                key.kind
            ));
            continue;
        }
        if placement.is_hook() {
            // Not an ApplySet member: never pruned as one; found again by this label.
            obj["metadata"]["labels"][phases::HOOK_LABEL] = json!(id);
        } else if !is_target_namespace(&key, ns) {
            obj["metadata"]["labels"][applyset::LABEL_PART_OF] = json!(id);
        }
        // Last: the digest covers everything sent.
        crate::unchanged::stamp(&mut obj);
        notes.extend(classified.notes.into_iter().map(|n| format!("{key}: {n}")));
        objects.push(Desired {
            key,
            resolved,
            object: obj,
            placement,
        });
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
    Ok(Validated {
        objects,
        namespace_in_set,
        ordered,
        skipped,
        notes,
    })
}

/// What the namespace holds besides the objects: whether it exists, its newest revision record
/// (for a plan that will be executed), and our ApplySet parent with the kinds it lists.
pub struct Discovered {
    pub namespace_exists: bool,
    pub latest_revision: Option<u64>,
    /// The revision records read for `latest_revision` (empty when not read).
    pub records: crate::record::Records,
    pub parent_exists: bool,
    pub parent_kinds: BTreeSet<(String, String)>,
    pub parent_namespaces: BTreeSet<String>,
}

/// Step 2: the namespace (which must exist, be created by the set, or be allowed to be created),
/// the newest revision record, and the ApplySet parent (which must be ours).
pub async fn discover(
    cluster: &Cluster,
    opts: &Options,
    id: &str,
    namespace_in_set: bool,
) -> Result<Discovered> {
    let ns = opts.namespace.as_str();
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

    // Noted before anything else is read, so execution can tell whether another run recorded
    // (and so changed things) since.
    let mut records = crate::record::Records::default();
    let latest_revision = if opts.for_write && namespace_exists {
        records = crate::record::list(cluster, ns).await?;
        Some(records.newest_number())
    } else if opts.for_write {
        Some(0)
    } else {
        None
    };

    let secret = cluster
        .resolve("v1", "Secret")
        .ok_or_else(|| Error::refused("the server does not serve v1 Secret"))?;
    let mut parent_kinds = BTreeSet::new();
    let mut parent_namespaces = BTreeSet::new();
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
        if labels.get(applyset::LABEL_ID).map(String::as_str) != Some(id) {
            return Err(Error::refused(format!(
                "Secret/{ns}/{PARENT_NAME} carries ApplySet id {:?}, expected {id}",
                labels.get(applyset::LABEL_ID)
            )));
        }
        if let Some(gks) = annotations.get(applyset::ANNOTATION_CONTAINS_GROUP_KINDS) {
            parent_kinds.extend(applyset::parse_group_kinds(gks));
        }
        if let Some(list) = annotations.get(applyset::ANNOTATION_ADDITIONAL_NAMESPACES) {
            parent_namespaces.extend(
                applyset::parse_namespaces(list)
                    .into_iter()
                    .filter(|n| n != ns),
            );
        }
    }
    Ok(Discovered {
        namespace_exists,
        latest_revision,
        records,
        parent_exists,
        parent_kinds,
        parent_namespaces,
    })
}

/// Objects per LIST request (kubectl's default chunk size).
const LIST_PAGE: u32 = 500;

/// The live side: objects of every kind the manifests or the parent name.
pub struct Live {
    /// Live objects without `managedFields`; those proven unchanged only with
    /// `keep_unchanged_live`.
    pub objects: BTreeMap<ObjectKey, Value>,
    /// Objects carrying our ApplySet label.
    pub members: BTreeMap<ObjectKey, Resolved>,
    /// Objects of the listed kinds that no ApplySet claims.
    pub unowned: Vec<ObjectKey>,
    /// Wanted objects an apply would provably not change, with their foreign owner mark (sync
    /// refuses those even unchanged).
    pub proven: BTreeMap<ObjectKey, Option<String>>,
    /// Helm releases that wanted objects outside our set belong to.
    pub helm_releases: BTreeSet<String>,
}

/// Step 3: one LIST per kind in the namespace (cluster-scoped kinds: our members only), one
/// per kind in each other namespace that holds wanted objects or that the parent lists as an
/// additional namespace (with no wanted object there: our members only), plus GETs for
/// wanted cluster-scoped objects. Each object is checked as it arrives: one whose
/// live fields provably match the manifest needs no dry-run, and its field set (often half of
/// it) is dropped at once instead of holding every listed object whole.
pub async fn list_live(
    cluster: &Cluster,
    opts: &Options,
    id: &str,
    wanted: &[Desired],
    found: &Discovered,
) -> Result<Live> {
    let ns = opts.namespace.as_str();
    let mut kinds: BTreeMap<(String, String), Resolved> = BTreeMap::new();
    for d in wanted {
        kinds
            .entry((d.key.kind.clone(), d.key.group.clone()))
            .or_insert_with(|| d.resolved.clone());
    }
    for (kind, group) in &found.parent_kinds {
        if let Some(r) = cluster.resolve_group_kind(group, kind) {
            kinds.entry((kind.clone(), group.clone())).or_insert(r);
        }
    }
    // Where members may live besides the target: the namespaces of wanted objects (with the
    // kinds wanted there) and the parent's additional namespaces (every kind it lists).
    let mut wanted_elsewhere: BTreeSet<(String, String, String)> = BTreeSet::new();
    for d in wanted {
        if let Some(other) = d.key.namespace.as_ref().filter(|n| n.as_str() != ns) {
            wanted_elsewhere.insert((d.key.kind.clone(), d.key.group.clone(), other.clone()));
        }
    }
    let others: BTreeSet<&String> = wanted_elsewhere
        .iter()
        .map(|(_, _, n)| n)
        .chain(found.parent_namespaces.iter())
        .collect();
    let mut lists_to_make: Vec<(Resolved, Option<String>, Scope)> = Vec::new();
    for ((kind, group), r) in &kinds {
        if !r.namespaced {
            lists_to_make.push((r.clone(), None, Scope::Members));
            continue;
        }
        lists_to_make.push((r.clone(), Some(ns.to_string()), Scope::Target));
        for other in &others {
            let scope =
                if wanted_elsewhere.contains(&(kind.clone(), group.clone(), (*other).clone())) {
                    Scope::Wanted
                } else {
                    Scope::Members
                };
            lists_to_make.push((r.clone(), Some((*other).clone()), scope));
        }
    }
    let mut live = Live {
        objects: BTreeMap::new(),
        members: BTreeMap::new(),
        unowned: Vec::new(),
        proven: BTreeMap::new(),
        helm_releases: BTreeSet::new(),
    };
    let selector = format!("{}={id}", applyset::LABEL_PART_OF);
    // Hooks are created anew, never applied over what is there: nothing to prove.
    let wanted_index: BTreeMap<&ObjectKey, &Value> = wanted
        .iter()
        .filter(|d| !d.placement.is_hook())
        .map(|d| (&d.key, &d.object))
        .collect();
    let admit = |key: ObjectKey, mut v: Value, live: &mut Live| {
        if wanted_index.contains_key(&key)
            && v["metadata"]["labels"][applyset::LABEL_PART_OF].as_str() != Some(id)
            && let Some(release) = applyset::helm_release(&v)
        {
            live.helm_releases.insert(release);
        }
        if !opts.check_all
            && let Some(obj) = wanted_index.get(&key)
            && crate::unchanged::apply_is_noop(MANAGER, obj, &v)
        {
            live.proven
                .insert(key.clone(), applyset::foreign_owner(&v, id));
            if !opts.keep_unchanged_live {
                return;
            }
        }
        strip_managed_fields(&mut v);
        live.objects.insert(key, v);
    };
    let namespace_exists = found.namespace_exists;
    // Page by page (LIST_PAGE objects), each page checked and dropped before more are held:
    // a namespace of 20,000 objects listed whole held ~190 MB of them at once.
    let mut lists = futures::stream::iter(lists_to_make.into_iter().map(|(r, in_ns, scope)| {
        let target_missing = scope == Scope::Target && !namespace_exists;
        let api = cluster.api(&r, in_ns.as_deref());
        // Cluster-scoped kinds and other namespaces without wanted objects: only our
        // members (a list of everything there could be huge, and is none of our business).
        let params = match scope {
            Scope::Members => ListParams::default().labels(&selector),
            // Not the revision records: megabytes of compressed manifests per revision at
            // thousands of objects, which the plan would only skip (`infrastructure`).
            Scope::Target | Scope::Wanted if is_secret(&r) => {
                ListParams::default().fields(&format!("type!={}", crate::record::SECRET_TYPE))
            }
            Scope::Target | Scope::Wanted => ListParams::default(),
        }
        .limit(LIST_PAGE);
        let first = (!(r.pending || target_missing)).then(String::new);
        futures::stream::unfold(first, move |next| {
            let (api, r, in_ns, params) = (api.clone(), r.clone(), in_ns.clone(), params.clone());
            async move {
                let token = next?;
                let params = match token.is_empty() {
                    true => params,
                    false => params.continue_token(&token),
                };
                let page = match idempotent(|| api.list(&params)).await {
                    Ok(page) => page,
                    Err(e) => {
                        let place = match (&in_ns, scope) {
                            (None, _) => "the cluster".to_string(),
                            (Some(n), Scope::Target) => format!("namespace {n}"),
                            (Some(n), _) => {
                                format!("namespace {n} (an additional namespace of the ApplySet)")
                            }
                        };
                        let e = api_error(format!("listing {} in {place}", r.resource.plural), e);
                        return Some((Err(e), None));
                    }
                };
                let next = page.metadata.continue_.filter(|c| !c.is_empty());
                Some((Ok::<_, Error>((r, scope, page.items)), next))
            }
        })
        .boxed()
    }))
    .flatten_unordered(opts.concurrency);
    while let Some(result) = lists.next().await {
        let (r, scope, items) = result?;
        for o in items {
            let v = to_value(&o, &r);
            drop(o);
            let key = ObjectKey::of(&v);
            let part_of = v["metadata"]["labels"][applyset::LABEL_PART_OF].as_str();
            if part_of == Some(id) {
                live.members.insert(key.clone(), r.clone());
            } else if scope == Scope::Wanted && !wanted_index.contains_key(&key) {
                // Another namespace: only what we want or own there is ours to look at.
                continue;
            } else if scope == Scope::Target && part_of.is_none() && !infrastructure(&v) {
                live.unowned.push(key.clone());
            }
            admit(key, v, &mut live);
        }
    }
    drop(lists);
    for d in wanted
        .iter()
        .filter(|d| !d.resolved.namespaced && !d.resolved.pending)
    {
        if live.objects.contains_key(&d.key) || live.proven.contains_key(&d.key) {
            continue;
        }
        let api = cluster.api(&d.resolved, None);
        if let Some(o) = idempotent(|| api.get_opt(&d.key.name))
            .await
            .map_err(|e| api_error(&d.key, e))?
        {
            admit(d.key.clone(), to_value(&o, &d.resolved), &mut live);
        }
    }
    crate::log::info(
        2,
        format!(
            "{} of {} objects unchanged without a dry-run",
            live.proven.len(),
            wanted.len()
        ),
    );
    Ok(live)
}

/// What one LIST of [`list_live`] covers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scope {
    /// Every object of the kind in the target namespace (unowned ones are drift).
    Target,
    /// Every object of the kind in another namespace where the manifests want some.
    Wanted,
    /// Only our members (cluster-scoped kinds; additional namespaces with nothing wanted).
    Members,
}

/// A wanted object and what the server says applying it would make of it.
pub struct DryRun {
    pub desired: Desired,
    /// The server's dry-run result; the object itself when it cannot be dry-run yet (its CRD
    /// or namespace does not exist) or when the apply would change an immutable field;
    /// `None` when proven unchanged.
    pub merged: Option<Value>,
    /// A field-manager conflict the dry-run reported.
    pub conflict: Option<String>,
    /// The immutable fields the apply would change, as the server named them.
    pub immutable: Option<Vec<String>>,
}

/// The fields an API error says are immutable: the causes of a 422 Invalid that say the
/// field "is immutable" or "may not change once set" (a Job's `spec.template`, a Service's
/// `spec.clusterIPs[0]`, a Deployment's `spec.selector`, a StatefulSet's fixed spec fields).
pub fn immutable_fields(e: &kube::Error) -> Option<Vec<String>> {
    let kube::Error::Api(s) = e else { return None };
    if s.code != 422 {
        return None;
    }
    let immutable = |m: &str| {
        m.contains("immutable")
            || m.contains("may not change once set")
            || m.contains("updates to statefulset spec for fields other than")
    };
    let mut fields: Vec<String> = s
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .filter(|c| immutable(&c.message))
        .map(|c| {
            if c.field.is_empty() {
                "spec".to_string()
            } else {
                c.field.clone()
            }
        })
        .collect();
    fields.dedup();
    (!fields.is_empty()).then_some(fields)
}

/// A hook is created, not applied: its dry-run is a create. A fixed name taken by the
/// previous run (deleted before the real create) is dry-run under a generated name instead,
/// which checks everything else.
async fn dry_run_hook(cluster: &Cluster, desired: &Desired) -> Result<Value> {
    let created =
        match crate::hooks::create(cluster, &desired.resolved, &desired.object, true).await {
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                let mut renamed = desired.object.clone();
                if let Some(meta) = renamed["metadata"].as_object_mut() {
                    meta.remove("name");
                    meta.insert(
                        "generateName".into(),
                        json!(format!("{}-", desired.key.name)),
                    );
                }
                crate::hooks::create(cluster, &desired.resolved, &renamed, true).await
            }
            other => other,
        };
    let created = created.map_err(|e| dry_run_error(&desired.key, e, &desired.object))?;
    let mut m = to_value(&created, &desired.resolved);
    strip_managed_fields(&mut m);
    Ok(m)
}

/// Step 4: a server-side dry-run of every wanted object not proven unchanged, bounded
/// concurrency. A conflict is noted (and the dry-run repeated with force, to show the
/// result); a change of an immutable field is noted; an object the server rejects as it
/// stands is a [`Rejection`], every one of them found, not only the first; any other failure
/// ends planning.
pub async fn dry_run(
    cluster: &Cluster,
    wanted: Vec<Desired>,
    live: &Live,
    found: &Discovered,
    opts: &Options,
) -> Result<(Vec<DryRun>, Vec<Rejection>)> {
    let namespace_exists = found.namespace_exists;
    let skip_dry_run = |r: &Resolved| r.pending || (r.namespaced && !namespace_exists);
    let outcomes = futures::stream::iter(wanted.into_iter().map(|desired| {
        // Dropped as it arrives, not after every dry-run: it is the plan's peak.
        let keep_answer = opts.keep_create_answers || live.objects.contains_key(&desired.key);
        let api = cluster.api(
            &desired.resolved,
            desired.object["metadata"]["namespace"].as_str(),
        );
        let skip = skip_dry_run(&desired.resolved);
        let known_unchanged = live.proven.contains_key(&desired.key);
        async move {
            let unchecked = |desired: Desired, merged: Option<Value>| DryRun {
                desired,
                merged,
                conflict: None,
                immutable: None,
            };
            if known_unchanged {
                return Ok(Ok(unchecked(desired, None)));
            }
            if skip {
                let merged = keep_answer.then(|| desired.object.clone());
                return Ok(Ok(unchecked(desired, merged)));
            }
            if desired.placement.is_hook() {
                return match dry_run_hook(cluster, &desired).await {
                    Ok(merged) => Ok(Ok(unchecked(desired, Some(merged)))),
                    Err(e) => rejected(&desired.key, e),
                };
            }
            let key = &desired.key;
            let r = &desired.resolved;
            let pp = PatchParams::apply(MANAGER).dry_run();
            let patch = Patch::Apply(&desired.object);
            let result = match idempotent(|| api.patch(&key.name, &pp, &patch)).await {
                Ok(merged) => Ok((merged, None)),
                Err(e) if status_code(&e) == Some(409) => {
                    let conflict = match &e {
                        kube::Error::Api(s) => s.message.clone(),
                        other => other.to_string(),
                    };
                    let forced = pp.clone().force();
                    idempotent(|| api.patch(&key.name, &forced, &patch))
                        .await
                        .map(|merged| {
                            let conflict = crate::normalize::mask_secret_values_in(
                                &conflict,
                                &[&desired.object],
                            );
                            (merged, Some(conflict))
                        })
                }
                Err(e) => Err(e),
            };
            drop(patch);
            match result {
                Ok((merged, conflict)) => {
                    let m = keep_answer.then(|| {
                        let mut m = to_value(&merged, r);
                        strip_managed_fields(&mut m);
                        m
                    });
                    drop(merged);
                    Ok(Ok(DryRun {
                        desired,
                        merged: m,
                        conflict,
                        immutable: None,
                    }))
                }
                Err(e) => match immutable_fields(&e) {
                    // What it will look like when created anew, if it is replaced.
                    Some(fields) => Ok(Ok(DryRun {
                        merged: Some(desired.object.clone()),
                        desired,
                        conflict: None,
                        immutable: Some(fields),
                    })),
                    None => {
                        let err = dry_run_error(key, e, &desired.object);
                        rejected(key, err)
                    }
                },
            }
        }
    }))
    .buffer_unordered(opts.concurrency)
    .collect::<Vec<Result<std::result::Result<DryRun, Rejection>>>>()
    .await;
    let mut runs = Vec::new();
    let mut rejections = Vec::new();
    for outcome in outcomes {
        match outcome? {
            Ok(run) => runs.push(run),
            Err(r) => rejections.push(r),
        }
    }
    Ok((runs, rejections))
}

/// A failed dry-run as an error, Secret values masked (the server may quote them). The server
/// reports a manifest that does not fit the schema as 500 "failed to create typed patch
/// object", and one it cannot decode (a Secret's data that is not base64) as 500 "failed to
/// convert new object": that is bad input, not a failure. So are 400, 422 and 413 (larger
/// than the server accepts in one request): no retry or permission makes them apply.
fn dry_run_error(key: &ObjectKey, e: kube::Error, object: &Value) -> Error {
    let schema = matches!(&e, kube::Error::Api(s) if s.message.contains("failed to create typed patch object") || s.message.contains("failed to convert new object"));
    let invalid = schema || matches!(status_code(&e), Some(400 | 413 | 422));
    let err = crate::normalize::mask_error(api_error(format!("dry-run of {key}"), e), &[object]);
    if invalid {
        Error {
            kind: shared::ErrorKind::Invalid,
            ..err
        }
    } else {
        err
    }
}

/// An invalid-input error is a finding about the object; anything else ends planning.
fn rejected(key: &ObjectKey, error: Error) -> Result<std::result::Result<DryRun, Rejection>> {
    if error.kind == shared::ErrorKind::Invalid {
        Ok(Err(Rejection {
            key: key.clone(),
            error,
            live: None,
        }))
    } else {
        Err(error)
    }
}

/// Step 5, for each wanted object: create, update or unchanged, from the live copy and the
/// dry-run (or the proof), and another tool's ownership mark. Takes the live copy out of
/// `live`; keeps it only where something shows or applies it.
pub fn decide(run: DryRun, live: &mut Live, id: &str, opts: &Options) -> Item {
    let DryRun {
        desired,
        mut merged,
        conflict,
        immutable,
    } = run;
    let key = desired.key;
    let mut live_obj = live.objects.remove(&key);
    if desired.placement.is_hook() {
        let owner = live_obj
            .as_ref()
            .and_then(|l| hook_blocker(l, id, &desired.placement));
        return Item {
            rank: rank(&key.group, &key.kind),
            key,
            action: Action::Hook,
            resolved: desired.resolved,
            desired: Some(desired.object),
            live: live_obj,
            merged,
            conflict: None,
            owner,
            placement: desired.placement,
            immutable: None,
        };
    }
    let (action, owner) = match live.proven.remove(&key) {
        Some(owner) => (Action::Unchanged, owner),
        None => {
            let action = match (&live_obj, &merged) {
                (None, _) => Action::Create,
                (Some(_), _)
                    if immutable.is_some()
                        && (desired.placement.replace || opts.replace_immutable)
                        && !protected(&key) =>
                {
                    Action::Replace
                }
                (Some(_), _) if immutable.is_some() => Action::Update,
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
                .and_then(|l| applyset::foreign_owner(l, id));
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
    Item {
        rank: rank(&key.group, &key.kind),
        key,
        action,
        resolved: desired.resolved,
        desired: Some(desired.object),
        live: live_obj,
        merged,
        conflict,
        owner,
        placement: desired.placement,
        immutable: immutable.map(|f| f.join(", ")),
    }
}

/// Why a hook may not run over the object that holds its name: BeforeHookCreation deletes
/// it, which is only ours to do when a sync created it (as a hook run, or as a member of our
/// ApplySet).
fn hook_blocker(live: &Value, id: &str, placement: &Placement) -> Option<String> {
    let before_creation = placement
        .hook
        .as_ref()
        .is_some_and(|h| h.delete.before_creation);
    let labels = &live["metadata"]["labels"];
    let ours = labels[phases::HOOK_LABEL] == id || labels[applyset::LABEL_PART_OF] == id;
    (before_creation && !ours).then(|| {
        "an object of that name exists that no sync created; the hook's BeforeHookCreation \
         policy would delete it"
            .to_string()
    })
}

/// Step 6: members of our ApplySet that left the manifests: pruned, or kept when protected or
/// with --no-prune. The target Namespace is never pruned by its own sync.
pub fn prunes(live: &mut Live, decided: &[Item], opts: &Options) -> Vec<Item> {
    let wanted: BTreeSet<&ObjectKey> = decided.iter().map(|i| &i.key).collect();
    let members = std::mem::take(&mut live.members);
    let mut out = Vec::new();
    for (key, r) in members {
        if wanted.contains(&key) || is_target_namespace(&key, &opts.namespace) {
            continue;
        }
        let Some(obj) = live.objects.remove(&key) else {
            continue;
        };
        let action = if protected(&key) && !opts.prune_protected {
            Action::Protected
        } else if !opts.prune {
            Action::Kept
        } else {
            Action::Prune
        };
        // Its wave (pruning goes in reverse wave order) is what its last apply said.
        let placement = phases::classify(&obj)
            .ok()
            .and_then(|c| c.placement)
            .map(|p| Placement { hook: None, ..p })
            .unwrap_or_default();
        out.push(Item {
            rank: rank(&key.group, &key.kind),
            key,
            action,
            resolved: r,
            desired: None,
            live: Some(obj),
            merged: None,
            conflict: None,
            owner: None,
            placement,
            immutable: None,
        });
    }
    out
}

/// Step 7: the plan, items in the order they are applied: by kind; when ordered, by phase and
/// wave first, with the prunes last in the order they run (reverse wave, reverse kind).
pub fn assemble(
    opts: &Options,
    id: String,
    found: Discovered,
    mut items: Vec<Item>,
    mut unowned: Vec<ObjectKey>,
    ordered: bool,
) -> Plan {
    if ordered {
        let pruned = |i: &Item| i.desired.is_none();
        items.sort_by(|a, b| match (pruned(a), pruned(b)) {
            (false, false) => (a.placement.first_phase(), a.placement.wave, a.rank, &a.key).cmp(&(
                b.placement.first_phase(),
                b.placement.wave,
                b.rank,
                &b.key,
            )),
            (true, true) => {
                (b.placement.wave, b.rank, &b.key).cmp(&(a.placement.wave, a.rank, &a.key))
            }
            (a, b) => a.cmp(&b),
        });
    } else {
        items.sort_by(|a, b| (a.rank, &a.key).cmp(&(b.rank, &b.key)));
    }
    unowned.sort();
    Plan {
        namespace: opts.namespace.clone(),
        namespace_exists: found.namespace_exists,
        applyset_id: id,
        parent_exists: found.parent_exists,
        parent_kinds: found.parent_kinds,
        parent_namespaces: found.parent_namespaces,
        items,
        unowned,
        latest_revision: found.latest_revision,
        records: found.records,
        ordered,
        skipped: Vec::new(),
        notes: Vec::new(),
        helm_releases: BTreeSet::new(),
        rejected: Vec::new(),
    }
}

/// Objects Kubernetes or this tool put in every namespace: never reported as unowned drift.
fn infrastructure(v: &Value) -> bool {
    let name = v["metadata"]["name"].as_str().unwrap_or_default();
    let kind = v["kind"].as_str().unwrap_or_default();
    matches!(
        (kind, name),
        ("ConfigMap", "kube-root-ca.crt")
            | ("ConfigMap", TRUST_CONFIGMAP)
            | ("ServiceAccount", "default")
            | ("Secret", PARENT_NAME)
    ) || v["type"] == "kubernetes.io/service-account-token"
        || v["type"] == crate::record::SECRET_TYPE
        // A hook's run: created by a sync, kept or deleted by its delete policy.
        || v["metadata"]["labels"][phases::HOOK_LABEL].is_string()
}

fn is_secret(r: &Resolved) -> bool {
    r.resource.group.is_empty() && r.resource.kind == "Secret"
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

#[cfg(test)]
mod tests {
    use kube::discovery::ApiResource;

    use super::*;
    use crate::manifest::Source;

    fn opts(ns: &str) -> Options {
        Options {
            namespace: ns.into(),
            allow_other_namespaces: false,
            allow_cluster_scoped: false,
            create_namespace: false,
            allow_empty: false,
            concurrency: 1,
            prune_protected: false,
            prune: true,
            check_all: false,
            for_write: false,
            keep_unchanged_live: false,
            replace_immutable: false,
            report_rejections: false,
            keep_create_answers: true,
        }
    }

    fn resolved(group: &str, kind: &str, namespaced: bool) -> Resolved {
        Resolved {
            resource: ApiResource {
                group: group.into(),
                version: "v1".into(),
                api_version: if group.is_empty() {
                    "v1".into()
                } else {
                    format!("{group}/v1")
                },
                kind: kind.into(),
                plural: format!("{}s", kind.to_lowercase()),
            },
            namespaced,
            pending: false,
        }
    }

    /// The kinds these tests use, as discovery would resolve them.
    fn resolve(api_version: &str, kind: &str) -> Option<Resolved> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        match kind {
            "ConfigMap" => Some(resolved(group, kind, true)),
            "Namespace" | "ClusterRole" => Some(resolved(group, kind, false)),
            _ => None,
        }
    }

    fn manifest(obj: Value) -> Manifest {
        Manifest {
            object: obj,
            source: Source {
                file: "app/x.yaml".into(),
                document: 1,
                line: 1,
            },
        }
    }

    fn fixtures() -> Vec<Manifest> {
        vec![
            manifest(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})),
            manifest(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "other"}}),
            ),
            manifest(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "wide"}}),
            ),
            manifest(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}})),
        ]
    }

    #[test]
    fn validate_refuses_what_leaves_the_namespace_naming_each_object() {
        let e = validate(fixtures(), &opts("dev"), "id", resolve)
            .err()
            .expect("refused");
        assert_eq!(e.kind, shared::ErrorKind::Invalid);
        assert!(e.message.starts_with("2 invalid objects"), "{}", e.message);
        assert!(e.message.contains("ConfigMap/b is in namespace \"other\""));
        assert!(e.message.contains("ClusterRole/wide is cluster-scoped"));
        let unknown = vec![manifest(
            json!({"apiVersion": "x.io/v1", "kind": "Widget", "metadata": {"name": "w"}}),
        )];
        let e = validate(unknown, &opts("dev"), "id", resolve)
            .err()
            .expect("refused");
        assert!(e.message.contains("unknown kind Widget"), "{}", e.message);
        let e = validate(vec![], &opts("dev"), "id", resolve)
            .err()
            .expect("refused");
        assert!(e.message.contains("no objects"), "{}", e.message);
    }

    #[test]
    fn manifests_may_not_carry_a_trust_policy() {
        let mut o = opts("dev");
        o.allow_other_namespaces = true;
        for ns in [None, Some("other")] {
            let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "kubectl-gitops-trust"}, "data": {"mode": "tag"}});
            if let Some(ns) = ns {
                cm["metadata"]["namespace"] = json!(ns);
            }
            let e = validate(vec![manifest(cm)], &o, "id", resolve)
                .err()
                .expect("refused");
            assert_eq!(e.kind, shared::ErrorKind::Invalid);
            assert!(
                e.message.contains(
                    "app/x.yaml: document 1 (line 1): ConfigMap/kubectl-gitops-trust is a namespace's trust policy"
                ),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn validate_places_objects_in_the_namespace_and_the_set() {
        let mut o = opts("dev");
        o.allow_other_namespaces = true;
        o.allow_cluster_scoped = true;
        let v = validate(fixtures(), &o, "id-1", resolve).unwrap();
        assert!(v.namespace_in_set);
        let by_name = |n: &str| v.objects.iter().find(|d| d.key.name == n).unwrap();
        assert_eq!(by_name("a").object["metadata"]["namespace"], "dev");
        assert_eq!(by_name("b").object["metadata"]["namespace"], "other");
        assert_eq!(
            by_name("a").object["metadata"]["labels"][applyset::LABEL_PART_OF],
            "id-1"
        );
        assert!(
            by_name("wide").object["metadata"]
                .get("namespace")
                .is_none()
        );
        // The target namespace carries no membership label: pruning it is never in question.
        assert!(by_name("dev").object["metadata"].get("labels").is_none());
    }

    fn live() -> Live {
        Live {
            objects: BTreeMap::new(),
            members: BTreeMap::new(),
            unowned: Vec::new(),
            proven: BTreeMap::new(),
            helm_releases: BTreeSet::new(),
        }
    }

    fn run(name: &str, merged: Option<Value>) -> DryRun {
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "dev"}, "data": {"k": "new"}});
        DryRun {
            desired: Desired {
                key: ObjectKey::of(&object),
                resolved: resolved("", "ConfigMap", true),
                object,
                placement: Placement::default(),
            },
            merged,
            conflict: None,
            immutable: None,
        }
    }

    #[test]
    fn decide_compares_live_with_the_dry_run() {
        let o = opts("dev");
        let cm = |v: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": "dev", "resourceVersion": "7"}, "data": {"k": v}})
        };
        let mut l = live();
        assert_eq!(
            decide(run("c", Some(cm("new"))), &mut l, "id", &o).action,
            Action::Create
        );

        let mut l = live();
        l.objects.insert(ObjectKey::of(&cm("old")), cm("old"));
        let item = decide(run("c", Some(cm("new"))), &mut l, "id", &o);
        assert_eq!(item.action, Action::Update);
        assert!(item.live.is_some() && item.merged.is_some());
        assert!(l.objects.is_empty(), "the live copy moves into the item");

        let mut l = live();
        l.objects.insert(ObjectKey::of(&cm("new")), cm("new"));
        let item = decide(run("c", Some(cm("new"))), &mut l, "id", &o);
        assert_eq!(item.action, Action::Unchanged);
        assert!(item.live.is_none() && item.merged.is_none(), "nothing kept");

        let mut l = live();
        l.proven
            .insert(ObjectKey::of(&cm("new")), Some("Helm".into()));
        let item = decide(run("c", None), &mut l, "id", &o);
        assert_eq!(item.action, Action::Unchanged);
        assert_eq!(item.owner.as_deref(), Some("Helm"));
    }

    #[test]
    fn prunes_only_members_that_left_and_keeps_protected_kinds() {
        let member = |kind: &str, name: &str, ns: Option<&str>| {
            let mut v = json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": name}});
            if let Some(ns) = ns {
                v["metadata"]["namespace"] = json!(ns);
            }
            v
        };
        let objects = [
            member("ConfigMap", "gone", Some("dev")),
            member("ConfigMap", "kept", Some("dev")),
            member("PersistentVolumeClaim", "data", Some("dev")),
            member("Namespace", "dev", None),
        ];
        let mut l = live();
        for o in &objects {
            let key = ObjectKey::of(o);
            l.members.insert(
                key.clone(),
                resolved("", &key.kind, key.namespace.is_some()),
            );
            l.objects.insert(key, o.clone());
        }
        let decided = vec![decide(
            run("kept", Some(objects[1].clone())),
            &mut live(),
            "id",
            &opts("dev"),
        )];
        let actions = |o: &Options| {
            let mut l = Live {
                objects: l.objects.clone(),
                members: l.members.clone(),
                unowned: vec![],
                proven: BTreeMap::new(),
                helm_releases: BTreeSet::new(),
            };
            prunes(&mut l, &decided, o)
                .into_iter()
                .map(|i| (i.key.name, i.action))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            actions(&opts("dev")),
            [
                ("gone".to_string(), Action::Prune),
                ("data".to_string(), Action::Protected)
            ]
        );
        let mut keep = opts("dev");
        keep.prune = false;
        keep.prune_protected = true;
        assert_eq!(
            actions(&keep),
            [
                ("gone".to_string(), Action::Kept),
                ("data".to_string(), Action::Kept)
            ]
        );
    }
}
