//! Executing a plan: namespace and ApplySet parent first, then the phases and waves
//! ([`crate::waves`]: objects by rank with server-side apply, hooks, waits, prunes in reverse
//! order), then the revision record. A failure midway says what was applied and what was not,
//! runs the SyncFail hooks, and is recorded as a failed revision; so is a wait that ends
//! without everything ready, and a Ctrl-C (`interrupted`).

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};
use shared::{Error, Result};

use crate::applyset;

use crate::cluster::{Cluster, api_error, idempotent, status_code};
use crate::health;
use crate::lock::Guard;
use crate::plan::{Action, Item, MANAGER, PARENT_NAME, Plan, is_target_namespace};
use crate::record::{self, Meta};
use crate::waves::Stop;

pub struct SyncOptions {
    pub force_conflicts: bool,
    pub concurrency: usize,
    pub history_limit: u32,
    /// `--wait`: wait until what was applied is ready before recording. An ordered plan waits
    /// after each wave anyway.
    pub wait: bool,
    /// How long the waits of a run may take together.
    pub timeout: Duration,
}

/// What a run did, kept outside the run itself so that a Ctrl-C (which drops the run) loses
/// none of it.
#[derive(Default)]
pub struct Progress {
    pub applied: Vec<String>,
    pub pruned: Vec<String>,
    pub hooks: Vec<record::HookRun>,
    /// The latest verdict on every object waited for.
    pub health: Vec<health::Waited>,
}

impl Progress {
    pub fn note_health(&mut self, report: &health::Report) {
        for w in &report.waited {
            match self.health.iter_mut().find(|h| h.key == w.key) {
                Some(h) => *h = w.clone(),
                None => self.health.push(w.clone()),
            }
        }
    }
}

/// Why a run did not succeed.
pub struct Failure {
    /// What to exit with (1), saying what was applied, what failed and the revision.
    pub error: Error,
    /// The objects that failed or were not ready, with their verdicts (empty when the run
    /// stopped for another reason).
    pub not_ready: Vec<health::Waited>,
}

pub struct Outcome {
    pub progress: Progress,
    /// The revision recorded; `None` when a failed run could not be recorded.
    pub revision: Option<u64>,
    /// As recorded: `succeeded`, `failed: ...`, `interrupted`, `reverted to ...`.
    pub outcome: String,
    pub failure: Option<Failure>,
    /// The namespace's lease, still held, when [`Lease::Take`] asked to keep it after a
    /// failure (for a rollback); the caller releases it.
    pub lease: Option<crate::lock::Guard>,
}

/// How a run holds the namespace's lease.
pub enum Lease {
    /// Take it (when anything is written) and release it at the end, unless `keep_on_failure`
    /// and the run failed: then [`Outcome::lease`] hands it on.
    Take { keep_on_failure: bool },
    /// Already held (handed on by a failed run being rolled back): use it, release it at the
    /// end.
    Held(Box<crate::lock::Guard>),
}

/// Refusals that must happen before any write: foreign owners and field conflicts.
pub fn check_blockers(plan: &Plan, adopt: bool, force_conflicts: bool) -> Result<()> {
    let owned: Vec<String> = plan
        .items
        .iter()
        .filter(|i| !adopt && i.owner.is_some())
        .map(|i| format!("{}: {}", i.key, i.owner.as_deref().unwrap_or_default()))
        .collect();
    if !owned.is_empty() {
        let mut hint = "pass --adopt to take them over".to_string();
        if !plan.helm_releases.is_empty() {
            hint.push_str(&format!("; then {}", helm_record_advice(plan)));
        }
        return Err(Error::refused(format!(
            "refusing to take over objects another tool owns; nothing was written:\n  {}",
            owned.join("\n  ")
        ))
        .hint(hint));
    }
    let taken: Vec<String> = plan
        .items
        .iter()
        .filter(|i| i.action == Action::Hook)
        .filter_map(|i| i.owner.as_ref().map(|o| format!("{}: {o}", i.key)))
        .collect();
    if !taken.is_empty() {
        return Err(Error::refused(format!(
            "hooks would delete objects no sync created; nothing was written:\n  {}",
            taken.join("\n  ")
        ))
        .hint("rename the hooks, or delete those objects yourself if they may go"));
    }
    let immutable: Vec<String> = plan
        .items
        .iter()
        .filter(|i| i.action == Action::Update)
        .filter_map(|i| {
            let fields = i.immutable.as_ref()?;
            Some(if crate::plan::protected(&i.key) {
                format!(
                    "{}: {fields} cannot change (a {} is never replaced)",
                    i.key, i.key.kind
                )
            } else {
                format!("{}: {fields} cannot change", i.key)
            })
        })
        .collect();
    if !immutable.is_empty() {
        return Err(Error::refused(format!(
            "applying would change immutable fields; nothing was written:\n  {}",
            immutable.join("\n  ")
        ))
        .hint(format!(
            "to delete and recreate such an object, annotate it {}: Replace=true or pass \
             --replace-immutable (never done for Namespaces, PVCs and CRDs)",
            crate::phases::SYNC_OPTIONS
        )));
    }
    let conflicts: Vec<String> = plan
        .items
        .iter()
        .filter(|i| {
            !force_conflicts
                && matches!(i.action, Action::Create | Action::Update | Action::Replace)
        })
        .filter_map(|i| i.conflict.as_ref().map(|c| format!("{}: {c}", i.key)))
        .collect();
    if !conflicts.is_empty() {
        return Err(Error::refused(format!(
            "fields are owned by another field manager; nothing was written:\n  {}",
            conflicts.join("\n  ")
        ))
        .hint("pass --force-conflicts to take those fields over"));
    }
    Ok(())
}

/// What to do about the records of Helm releases whose objects a sync adopts: while a record
/// exists, `helm upgrade` and `helm uninstall` still act on the objects (an uninstall deletes
/// them). Deleting the record (Helm's default storage: Secrets labelled `owner=helm`,
/// `name=<release>`) leaves the objects alone.
pub fn helm_record_advice(plan: &Plan) -> String {
    let commands: Vec<String> = plan
        .helm_releases
        .iter()
        .map(|release| {
            let (ns, name) = release
                .split_once('/')
                .unwrap_or((plan.namespace.as_str(), release.as_str()));
            format!("kubectl delete secret -n {ns} -l owner=helm,name={name}")
        })
        .collect();
    format!(
        "remove the old Helm release record{} so that `helm upgrade` and `helm uninstall` no \
         longer act on these objects (the objects stay): {}",
        if commands.len() == 1 { "" } else { "s" },
        commands.join("; ")
    )
}

/// What the ApplySet parent lists: the member kinds and the namespaces besides its own.
struct Listing {
    kinds: BTreeSet<(String, String)>,
    namespaces: BTreeSet<String>,
}

fn parent_object(ns: &str, id: &str, listing: &Listing) -> Value {
    let kinds = &listing.kinds;
    let mut parent = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": PARENT_NAME,
            "namespace": ns,
            "labels": { applyset::LABEL_ID: id },
            "annotations": {
                applyset::ANNOTATION_TOOLING: format!("{MANAGER}/{}", shared::VERSION),
                applyset::ANNOTATION_CONTAINS_GROUP_KINDS: applyset::group_kinds_annotation(kinds.iter().map(|(k, g)| (k.as_str(), g.as_str()))),
            }
        },
        "type": "Opaque",
    });
    // Absent rather than empty when there are none: applied without it, the annotation we
    // set before is removed (we own it).
    if !listing.namespaces.is_empty() {
        parent["metadata"]["annotations"][applyset::ANNOTATION_ADDITIONAL_NAMESPACES] =
            json!(applyset::namespaces_annotation(&listing.namespaces));
    }
    parent
}

async fn apply_parent(cluster: &Cluster, plan: &Plan, listing: &Listing) -> Result<()> {
    let secret = cluster
        .resolve("v1", "Secret")
        .expect("v1 Secret is always served");
    let obj = parent_object(&plan.namespace, &plan.applyset_id, listing);
    let api = cluster.api(&secret, Some(&plan.namespace));
    let pp = PatchParams::apply(MANAGER).force();
    let patch = Patch::Apply(&obj);
    idempotent(|| api.patch(PARENT_NAME, &pp, &patch))
        .await
        .map_err(|e| {
            api_error(
                format!(
                    "updating ApplySet parent Secret/{}/{PARENT_NAME}",
                    plan.namespace
                ),
                e,
            )
        })?;
    Ok(())
}

pub async fn apply_item(cluster: &Cluster, item: &Item, force: bool) -> Result<()> {
    let obj = item
        .desired
        .as_ref()
        .expect("applied items have a manifest");
    let api = cluster.api(&item.resolved, obj["metadata"]["namespace"].as_str());
    let mut pp = PatchParams::apply(MANAGER);
    if force {
        pp = pp.force();
    }
    let patch = Patch::Apply(obj);
    idempotent(|| api.patch(&item.key.name, &pp, &patch))
        .await
        .map_err(|e| {
            let err = if status_code(&e) == Some(409) {
                let msg = match &e {
                    kube::Error::Api(s) => s.message.clone(),
                    other => other.to_string(),
                };
                Error::refused(format!("{}: conflict: {msg}", item.key))
                    .hint("pass --force-conflicts to take those fields over")
            } else if let Some(fields) = crate::plan::immutable_fields(&e) {
                Error::refused(format!(
                    "{}: {} cannot change (immutable)",
                    item.key,
                    fields.join(", ")
                ))
                .hint(format!(
                    "to delete and recreate it, annotate it {}: Replace=true or pass \
                     --replace-immutable",
                    crate::phases::SYNC_OPTIONS
                ))
            } else {
                api_error(&item.key, e)
            };
            // The server may quote a Secret's value in its message.
            let known: Vec<&Value> = [item.desired.as_ref(), item.live.as_ref()]
                .into_iter()
                .flatten()
                .collect();
            crate::normalize::mask_error(err, &known)
        })?;
    Ok(())
}

/// Deletes the live object (exactly the one the plan saw) and, once it is gone, applies the
/// manifest: for a change to an immutable field. Its dependents (a Job's Pods, a
/// Deployment's ReplicaSets) are deleted with it.
pub async fn replace_item(
    cluster: &Cluster,
    item: &Item,
    force: bool,
    deadline: tokio::time::Instant,
) -> Result<()> {
    let live = item.live.as_ref().expect("a replaced item is live");
    let uid = live["metadata"]["uid"].as_str().map(str::to_string);
    let ns = live["metadata"]["namespace"].as_str();
    crate::log::info(
        2,
        format!(
            "replacing {}: {} cannot change",
            item.key,
            item.immutable.as_deref().unwrap_or("a field")
        ),
    );
    prune_item(cluster, item).await?;
    crate::hooks::gone(cluster, &item.resolved, ns, &item.key.name, uid, deadline).await?;
    apply_item(cluster, item, force).await
}

/// Custom resources of a CRD can be applied once the server reports it Established. The watch
/// goes through the retry policy like every other request: a dropped watch or a throttled
/// list starts it again rather than failing the sync.
async fn wait_established(cluster: &Cluster, item: &Item) -> Result<()> {
    use kube::runtime::{wait, watcher};
    const LIMIT: Duration = Duration::from_secs(30);
    let api: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    let established = idempotent(|| async {
        match await_condition(
            api.clone(),
            &item.key.name,
            conditions::is_crd_established(),
        )
        .await
        {
            Ok(_) => Ok(Ok(())),
            Err(wait::Error::ProbeFailed(w)) => match w {
                watcher::Error::InitialListFailed(e)
                | watcher::Error::WatchStartFailed(e)
                | watcher::Error::WatchFailed(e) => Err(e),
                watcher::Error::WatchError(status) => Err(kube::Error::Api(status)),
                other => Ok(Err(other)),
            },
        }
    });
    match tokio::time::timeout(LIMIT, established).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(Error::refused(format!(
            "waiting for {} to become Established: {e}",
            item.key
        ))),
        Ok(Err(e)) => Err(api_error(
            format!("waiting for {} to become Established", item.key),
            e,
        )),
        Err(_) => Err(Error::refused(format!(
            "{} did not become Established within {}s",
            item.key,
            LIMIT.as_secs()
        ))
        .with_source(crate::cluster::Transient)),
    }
}

pub async fn prune_item(cluster: &Cluster, item: &Item) -> Result<()> {
    let live = item.live.as_ref().expect("pruned items are live");
    let api = cluster.api(&item.resolved, live["metadata"]["namespace"].as_str());
    // Delete exactly the object we saw: if it was replaced meanwhile, its uid differs.
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid: live["metadata"]["uid"].as_str().map(str::to_string),
            resource_version: None,
        }),
        ..Default::default()
    };
    match idempotent(|| api.delete(&item.key.name, &dp)).await {
        Ok(_) => Ok(()),
        Err(e) if status_code(&e) == Some(404) => Ok(()),
        Err(e) => Err(api_error(format!("pruning {}", item.key), e)),
    }
}

pub struct RecordInfo {
    pub tag: String,
    pub commit: String,
    pub user: String,
    pub reverted_to: Option<u64>,
    /// The outcome recorded on success: `succeeded`, `reverted to revision 3 (tag ...)`.
    pub success: String,
    /// What was checked of the tag's signature (`trust::Gate`).
    pub signature: crate::trust::SignatureRecord,
    /// Recorded on a failed or interrupted run: the revision a rollback will go back to.
    pub rollback_to: Option<u64>,
}

async fn ensure_namespace(cluster: &Cluster, plan: &Plan, applied: &mut Vec<String>) -> Result<()> {
    let ns = &plan.namespace;
    if plan.namespace_exists {
        return Ok(());
    }
    let r = cluster
        .resolve("v1", "Namespace")
        .expect("v1 Namespace is always served");
    let obj = match plan.items.iter().find(|i| is_target_namespace(&i.key, ns)) {
        Some(item) => item.desired.clone().expect("namespace item has a manifest"),
        None => json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    };
    let api = cluster.api(&r, None);
    let pp = PatchParams::apply(MANAGER);
    let patch = Patch::Apply(&obj);
    idempotent(|| api.patch(ns, &pp, &patch))
        .await
        .map_err(|e| api_error(format!("creating namespace {ns}"), e))?;
    applied.push(format!("Namespace/{ns}"));
    Ok(())
}

pub async fn execute(
    cluster: &mut Cluster,
    plan: &Plan,
    opts: &SyncOptions,
    info: RecordInfo,
    lease: Lease,
) -> Result<Outcome> {
    // Before any write: a render too large to record is refused, not applied unrecorded.
    // Serialising and compressing a large render takes a while: off the runtime's thread.
    let blob = tokio::task::block_in_place(|| {
        record::compress(plan.items.iter().filter_map(|i| i.desired.as_ref()))
    })?;
    record::objects_fit(&recorded_objects(plan))?;
    let mut created = Vec::new();
    // From the first write on (the namespace, the Lease) a Ctrl-C is counted, not fatal: one
    // that arrives between taking the Lease and applying stops the run, which records it and
    // releases the Lease, instead of ending the process with the Lease left behind.
    crate::interrupt::arm();
    let seen = crate::interrupt::count();
    let (guard, keep_on_failure) = match lease {
        Lease::Take { keep_on_failure } if plan.writes_objects() => {
            // The lease lives in the namespace, so the namespace comes first; creating it is
            // idempotent, so two racing writers may both do it.
            ensure_namespace(cluster, plan, &mut created).await?;
            let guard =
                crate::lock::acquire(cluster.client.clone(), &plan.namespace, &info.user).await?;
            (Some(guard), keep_on_failure)
        }
        Lease::Take { .. } => {
            // Nothing to change: the record is the only write, so no lease is taken (taking
            // and releasing it would be two more). A run holding the lease means the namespace
            // is changing under this plan: exit 3 as a locking run would. A run that takes the
            // lease after this check records after us (see `record_with_retry`); one that
            // recorded since our plan makes our record's create collide, also exit 3.
            crate::lock::check_free(cluster.client.clone(), &plan.namespace).await?;
            (None, false)
        }
        Lease::Held(guard) => (Some(*guard), false),
    };
    let result = record_and_finish(
        cluster,
        plan,
        opts,
        info,
        &blob,
        guard.as_ref(),
        created,
        seen,
    )
    .await;
    match (result, guard) {
        (Ok(mut outcome), Some(guard)) if keep_on_failure && outcome.failure.is_some() => {
            outcome.lease = Some(guard);
            Ok(outcome)
        }
        (result, guard) => {
            if let Some(guard) = guard {
                guard.release().await;
            }
            result
        }
    }
}

fn changed_meanwhile(ns: &str, newest: Option<&Meta>) -> Error {
    let who = newest
        .map(|m| {
            format!(
                "revision {} was recorded by {} at {} (tag {}, {})",
                m.revision,
                if m.user.is_empty() {
                    "an unknown user"
                } else {
                    &m.user
                },
                m.time,
                m.tag,
                m.outcome
            )
        })
        .unwrap_or_else(|| "its revision records changed".into());
    Error::race(format!(
        "namespace {ns} changed while this run was planning: {who}"
    ))
    .hint("rerun to see the plan against the namespace as it is now")
}

/// The keys a revision records: the objects the plan wants.
fn recorded_objects(plan: &Plan) -> Vec<String> {
    plan.items
        .iter()
        .filter(|i| i.desired.is_some())
        .map(|i| i.key.to_string())
        .collect()
}

/// Writes the record as the next revision. A lease holder whose revision number was taken
/// meanwhile lost it to a run that only recorded (which takes no lease); its changes are
/// applied, so it records under the next number instead of failing.
async fn record_with_retry(
    cluster: &Cluster,
    ns: &str,
    mut meta: Meta,
    blob: &[u8],
    holds_lease: bool,
) -> Result<u64> {
    let mut attempts = 0;
    loop {
        match record::write(cluster, ns, meta.clone(), blob).await {
            Ok(()) => return Ok(meta.revision),
            Err(e) if holds_lease && e.kind == shared::ErrorKind::Race && attempts < 3 => {
                attempts += 1;
                let latest = record::list(cluster, ns).await?;
                meta.revision = latest.next_number(ns)?.max(meta.revision + 1);
                if meta.revision > record::MAX_REVISION {
                    return Err(e);
                }
            }
            Err(e) if e.kind == shared::ErrorKind::Race => {
                // Name the run that got there first, as a held lease names its holder.
                let latest = record::list(cluster, ns).await.unwrap_or_default();
                let winner = latest.trusted.iter().find(|m| m.revision == meta.revision);
                return Err(if winner.is_some() {
                    changed_meanwhile(ns, winner)
                } else {
                    e
                });
            }
            Err(e) => return Err(e),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn record_and_finish(
    cluster: &mut Cluster,
    plan: &Plan,
    opts: &SyncOptions,
    info: RecordInfo,
    blob: &[u8],
    guard: Option<&Guard>,
    created: Vec<String>,
    seen: u32,
) -> Result<Outcome> {
    let previous = record::list(cluster, &plan.namespace).await?;
    let latest = previous.newest_number();
    if let Some(seen) = plan.latest_revision
        && latest != seen
    {
        // Someone synced or reverted since this plan read the namespace: it may be stale.
        return Err(changed_meanwhile(&plan.namespace, previous.newest()));
    }
    let revision = previous.next_number(&plan.namespace)?;
    // A Ctrl-C since `seen` (counted from before the Lease was taken) stops the run, which
    // records it and releases the lease.
    let mut progress = Progress {
        applied: created,
        ..Progress::default()
    };
    // A Ctrl-C during a wait ends the wait itself first, which shows where it was: the stages
    // listen for it themselves, and get a moment to do so (`biased` alone is not enough on a
    // multi-threaded runtime: the signal may land after a stage last looked and before this
    // does).
    let stop = tokio::select! {
        biased;
        r = run(cluster, plan, opts, &mut progress, seen, guard) => r.err(),
        _ = async {
            crate::interrupt::after(seen).await;
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        } => Some(Stop::Interrupted),
    };
    if matches!(stop, Some(Stop::Failed(_)) | Some(Stop::NotReady { .. }))
        && !matches!(&stop, Some(Stop::NotReady { report, .. }) if report.end == health::End::Interrupted)
    {
        let seen = crate::interrupt::count();
        tokio::select! {
            biased;
            () = crate::waves::sync_fail(cluster, plan, opts, &mut progress, guard) => {}
            _ = crate::interrupt::after(seen) => {}
        }
    }
    let interrupted = match &stop {
        Some(Stop::Interrupted) => true,
        Some(Stop::NotReady { report, .. }) => report.end == health::End::Interrupted,
        _ => false,
    };
    // A run that lost the lock records that, not success: its record would claim a namespace
    // someone else is changing now.
    let mut stop = stop;
    if let (None, Some(g)) = (&stop, guard)
        && let Err(e) = g.checkpoint("record").await
    {
        stop = Some(Stop::Failed(e));
    }
    let lost = match &stop {
        Some(Stop::Failed(e)) => e
            .source
            .as_deref()
            .and_then(|s| s.downcast_ref::<crate::lock::Lost>())
            .cloned(),
        _ => None,
    };
    let holds_lease = match guard {
        Some(g) => g.held().await,
        None => false,
    };
    let objects = recorded_objects(plan);
    let outcome = match &stop {
        None => info.success.clone(),
        Some(_) if interrupted => "interrupted".to_string(),
        Some(_) if lost.is_some() => {
            format!("interrupted: {}", lost.as_ref().expect("checked"))
        }
        Some(Stop::NotReady { report, .. }) => report
            .outcome()
            .unwrap_or_else(|| "failed: not ready".to_string()),
        Some(Stop::Failed(e)) => {
            format!("failed: {}", e.message.lines().next().unwrap_or_default())
        }
        Some(Stop::Interrupted) => unreachable!("interrupted is handled above"),
    };
    let meta = Meta {
        revision,
        tag: info.tag,
        commit: info.commit,
        time: jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        user: info.user,
        outcome: outcome.clone(),
        objects,
        object_count: None,
        objects_gz: None,
        parts: 0,
        reverted_to: info.reverted_to,
        signature: Some(info.signature.clone()),
        hooks: progress.hooks.clone(),
        rolled_back_to: if stop.is_some() {
            info.rollback_to
        } else {
            None
        },
    };
    let recorded = record_with_retry(cluster, &plan.namespace, meta, blob, holds_lease).await;
    let revision = match (&stop, recorded) {
        (None, Err(e)) => return Err(e),
        (Some(_), Err(e)) => {
            crate::log::warn(format!(
                "could not record the failed revision: {}",
                e.message
            ));
            None
        }
        (_, Ok(n)) => Some(n),
    };
    let Some(stop) = stop else {
        let revision = revision.expect("recorded");
        // Bounded (a record has at most record::MAX_PARTS parts), and Ctrl-C still stops it.
        let seen = crate::interrupt::count();
        tokio::select! {
            r = record::prune_history(cluster, &plan.namespace, opts.history_limit) => r?,
            _ = crate::interrupt::after(seen) => {
                return Err(Error::refused(format!(
                    "interrupted (Ctrl-C) while deleting revision records beyond \
                     --history-limit {}; the run itself completed and is recorded as revision \
                     {revision}",
                    opts.history_limit
                )));
            }
        }
        return Ok(Outcome {
            progress,
            revision: Some(revision),
            outcome,
            failure: None,
            lease: None,
        });
    };
    let failure = describe_failure(
        plan,
        &progress,
        stop,
        interrupted || lost.is_some(),
        revision,
    );
    Ok(Outcome {
        progress,
        revision,
        outcome,
        failure: Some(failure),
        lease: None,
    })
}

/// The error a failed run exits with: what failed, what was applied and what not, and how it
/// was recorded.
fn describe_failure(
    plan: &Plan,
    progress: &Progress,
    stop: Stop,
    interrupted: bool,
    revision: Option<u64>,
) -> Failure {
    let what = if interrupted { "interrupted" } else { "failed" };
    let changed: Vec<String> = plan
        .items
        .iter()
        .filter(|i| matches!(i.action, Action::Create | Action::Update | Action::Replace))
        .map(|i| i.key.to_string())
        .collect();
    let not_applied: Vec<&String> = changed
        .iter()
        .filter(|k| !progress.applied.contains(k))
        .collect();
    let (e, not_ready) = match stop {
        Stop::Failed(e) => (e, Vec::new()),
        Stop::Interrupted => (Error::refused("interrupted (Ctrl-C)"), Vec::new()),
        Stop::NotReady { report, step } => {
            let mut e = report
                .error()
                .unwrap_or_else(|| Error::refused("not ready"));
            if let Some((phase, wave)) = step {
                e.message = format!("{phase} wave {wave}: {}", e.message);
            }
            let not_ready = report
                .waited
                .iter()
                .filter(|w| !w.verdict.is_ready())
                .cloned()
                .collect();
            (e, not_ready)
        }
    };
    let mut msg = if not_ready.is_empty() || !not_applied.is_empty() {
        format!(
            "sync of {} {what} after applying {} of {} changed objects: {}",
            plan.namespace,
            progress.applied.len(),
            changed.len(),
            e.message
        )
    } else {
        // Everything was applied; what failed is readiness, and the message says which.
        e.message.clone()
    };
    // Thousands of names would bury the error itself.
    const SHOWN: usize = 20;
    if !not_applied.is_empty() {
        let shown: Vec<&str> = not_applied.iter().take(SHOWN).map(|k| k.as_str()).collect();
        msg.push_str(&format!("\nnot applied: {}", shown.join(", ")));
        if not_applied.len() > SHOWN {
            msg.push_str(&format!(" and {} more", not_applied.len() - SHOWN));
        }
    }
    // Rerunning converges after a transient failure (a timeout, a lost connection, 429/5xx
    // beyond the retries), a Ctrl-C or a lost lock; not after a rollout that failed, nor after
    // what fails the same way every time (a full Service range, a quota, a policy, RBAC).
    let rerun = if !not_ready.is_empty() {
        ""
    } else if interrupted || crate::cluster::is_transient(&e) {
        "; rerunning the sync converges"
    } else {
        "; a rerun fails the same way until what the error names is changed"
    };
    match revision {
        Some(revision) => msg.push_str(&format!(
            "\nrecorded as revision {revision} ({what}){rerun}"
        )),
        None => msg.push_str(&format!("\nnot recorded (see the warning above){rerun}")),
    }
    Failure {
        error: Error { message: msg, ..e },
        not_ready,
    }
}

/// Before a step that writes: the lease must still be ours (runs that take no lease write
/// nothing here).
pub async fn checkpoint(guard: Option<&Guard>, at: &str) -> Result<()> {
    match guard {
        Some(g) => g.checkpoint(at).await,
        None => Ok(()),
    }
}

/// The ApplySet parent, then the phases and waves, then the parent again if fewer kinds or
/// namespaces hold members now. Every step that writes first checks that the lease is still
/// ours.
async fn run(
    cluster: &mut Cluster,
    plan: &Plan,
    opts: &SyncOptions,
    progress: &mut Progress,
    seen: u32,
    guard: Option<&Guard>,
) -> std::result::Result<(), Stop> {
    checkpoint(guard, "apply").await?;
    let ns = &plan.namespace;
    let members = Listing {
        kinds: plan.member_kinds(),
        namespaces: plan.member_namespaces(),
    };
    let before = Listing {
        kinds: plan.parent_kinds.clone(),
        namespaces: plan.parent_namespaces.clone(),
    };
    let union = Listing {
        kinds: members.kinds.union(&before.kinds).cloned().collect(),
        namespaces: members
            .namespaces
            .union(&before.namespaces)
            .cloned()
            .collect(),
    };
    let same = |a: &Listing, b: &Listing| a.kinds == b.kinds && a.namespaces == b.namespaces;
    let mut parent_written = false;
    // The parent must list every kind and namespace that may hold members before members are
    // applied, so that a crash never leaves a member that no prune would look for.
    if !plan.parent_exists || !same(&union, &before) {
        if let Some(ns_item) = plan
            .items
            .iter()
            .find(|i| is_target_namespace(&i.key, ns) && i.action != Action::Unchanged)
        {
            apply_item(cluster, ns_item, opts.force_conflicts).await?;
            progress.applied.push(ns_item.key.to_string());
        }
        apply_parent(cluster, plan, &union).await?;
        parent_written = true;
    }
    crate::waves::run(cluster, plan, opts, progress, seen, guard).await?;
    if !same(&members, &union) || (!parent_written && !same(&members, &before)) {
        checkpoint(guard, "parent").await?;
        apply_parent(cluster, plan, &members).await?;
    }
    Ok(())
}

/// After a batch of one kind was applied: its CRDs must be Established, and the server's
/// refreshed discovery known, before custom resources of them are applied.
pub async fn after_crds(cluster: &mut Cluster, batch: &[&Item]) -> Result<()> {
    let crds: Vec<&&Item> = batch
        .iter()
        .filter(|i| i.key.kind == "CustomResourceDefinition")
        .collect();
    for item in &crds {
        wait_established(cluster, item).await?;
    }
    if !crds.is_empty() {
        let client = cluster.client.clone();
        *cluster = Cluster::discover(client).await?;
    }
    Ok(())
}
