//! Executing a plan: namespace and ApplySet parent first, then objects by rank with
//! server-side apply, then prunes in reverse order, then the revision record. A failure
//! midway says what was applied and what was not, and is recorded as a failed revision.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};
use shared::{Error, Result};

use crate::applyset;

use crate::cluster::{Cluster, api_error, idempotent, status_code};
use crate::lock::Guard;
use crate::plan::{Action, Item, MANAGER, PARENT_NAME, Plan, is_target_namespace};
use crate::record::{self, Meta};

pub struct SyncOptions {
    pub force_conflicts: bool,
    pub concurrency: usize,
    pub history_limit: u32,
}

pub struct Outcome {
    pub applied: Vec<String>,
    pub pruned: Vec<String>,
    pub revision: u64,
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
    let conflicts: Vec<String> = plan
        .items
        .iter()
        .filter(|i| !force_conflicts && matches!(i.action, Action::Create | Action::Update))
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

async fn apply_item(cluster: &Cluster, item: &Item, force: bool) -> Result<()> {
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

async fn prune_item(cluster: &Cluster, item: &Item) -> Result<()> {
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
) -> Result<Outcome> {
    let mut applied = Vec::new();
    let mut pruned = Vec::new();
    // Before any write: a render too large to record is refused, not applied unrecorded.
    // Serialising and compressing a large render takes a while: off the runtime's thread.
    let blob = tokio::task::block_in_place(|| {
        record::compress(plan.items.iter().filter_map(|i| i.desired.as_ref()))
    })?;
    if !plan.writes_objects() {
        // Nothing to change: the record is the only write, so no lease is taken (taking and
        // releasing it would be two more). A run holding the lease means the namespace is
        // changing under this plan: exit 3 as a locking run would. A run that takes the lease
        // after this check records after us (see `record_with_retry`); one that recorded since
        // our plan makes our record's create collide, also exit 3.
        crate::lock::check_free(cluster.client.clone(), &plan.namespace).await?;
        return record_and_finish(
            cluster,
            plan,
            opts,
            info,
            &blob,
            &mut applied,
            &mut pruned,
            None,
        )
        .await;
    }
    // The lease lives in the namespace, so the namespace comes first; creating it is
    // idempotent, so two racing writers may both do it.
    ensure_namespace(cluster, plan, &mut applied).await?;
    let guard = crate::lock::acquire(cluster.client.clone(), &plan.namespace, &info.user).await?;
    let result = record_and_finish(
        cluster,
        plan,
        opts,
        info,
        &blob,
        &mut applied,
        &mut pruned,
        Some(&guard),
    )
    .await;
    guard.release().await;
    result
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
    applied: &mut Vec<String>,
    pruned: &mut Vec<String>,
    guard: Option<&Guard>,
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
    let mut interrupted = false;
    let mut result = tokio::select! {
        r = run(cluster, plan, opts, applied, pruned, guard) => r,
        _ = tokio::signal::ctrl_c() => {
            interrupted = true;
            Err(Error::refused("interrupted (Ctrl-C)"))
        }
    };
    // A run that lost the lock records that, not success: its record would claim a namespace
    // someone else is changing now.
    if let (Ok(()), Some(g)) = (&result, guard) {
        result = g.checkpoint("record").await;
    }
    let lost = result
        .as_ref()
        .err()
        .and_then(|e| e.source.as_deref())
        .and_then(|s| s.downcast_ref::<crate::lock::Lost>())
        .cloned();
    let holds_lease = match guard {
        Some(g) => g.held().await,
        None => false,
    };
    let objects: Vec<String> = plan
        .items
        .iter()
        .filter(|i| i.desired.is_some())
        .map(|i| i.key.to_string())
        .collect();
    let outcome = match &result {
        Ok(()) => info.success.clone(),
        Err(_) if interrupted => "interrupted".to_string(),
        Err(_) if lost.is_some() => format!("interrupted: {}", lost.as_ref().expect("checked")),
        Err(e) => format!("failed: {}", e.message.lines().next().unwrap_or_default()),
    };
    let meta = Meta {
        revision,
        tag: info.tag,
        commit: info.commit,
        time: jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        user: info.user,
        outcome,
        objects,
        parts: 0,
        reverted_to: info.reverted_to,
        signature: Some(info.signature),
    };
    let recorded = record_with_retry(cluster, &plan.namespace, meta, blob, holds_lease).await;
    let mut record_written = true;
    let mut revision = revision;
    match (&result, recorded) {
        (Ok(()), Err(e)) => return Err(e),
        (Err(_), Err(e)) => {
            record_written = false;
            crate::log::warn(format!(
                "could not record the failed revision: {}",
                e.message
            ))
        }
        (_, Ok(n)) => revision = n,
    }
    if result.is_ok() {
        // Bounded (a record has at most record::MAX_PARTS parts), and Ctrl-C still stops it.
        tokio::select! {
            r = record::prune_history(cluster, &plan.namespace, opts.history_limit) => r?,
            _ = tokio::signal::ctrl_c() => {
                return Err(Error::refused(format!(
                    "interrupted (Ctrl-C) while deleting revision records beyond \
                     --history-limit {}; the run itself completed and is recorded as revision \
                     {revision}",
                    opts.history_limit
                )));
            }
        }
    }
    match result {
        Ok(()) => Ok(Outcome {
            applied: applied.clone(),
            pruned: pruned.clone(),
            revision,
        }),
        Err(e) => {
            let total = plan
                .items
                .iter()
                .filter(|i| matches!(i.action, Action::Create | Action::Update))
                .count();
            let not_applied: Vec<String> = plan
                .items
                .iter()
                .filter(|i| matches!(i.action, Action::Create | Action::Update))
                .map(|i| i.key.to_string())
                .filter(|k| !applied.contains(k))
                .collect();
            let what = if interrupted || lost.is_some() {
                "interrupted"
            } else {
                "failed"
            };
            let mut msg = format!(
                "sync of {} {what} after applying {} of {total} changed objects: {}",
                plan.namespace,
                applied.len(),
                e.message
            );
            // Thousands of names would bury the error itself.
            const SHOWN: usize = 20;
            if !not_applied.is_empty() {
                msg.push_str(&format!(
                    "\nnot applied: {}",
                    not_applied[..not_applied.len().min(SHOWN)].join(", ")
                ));
                if not_applied.len() > SHOWN {
                    msg.push_str(&format!(" and {} more", not_applied.len() - SHOWN));
                }
            }
            if record_written {
                msg.push_str(&format!("\nrecorded as revision {revision} ({what})"));
            } else {
                msg.push_str("\nnot recorded (see the warning above)");
            }
            // Only a failure a rerun may not meet again is worth a plain rerun; the rest
            // (a full Service range, a quota, a policy, RBAC) fails the same way every time.
            let passing = interrupted || lost.is_some() || crate::cluster::is_transient(&e);
            msg.push_str(if passing {
                "; rerunning the sync converges"
            } else {
                "; a rerun fails the same way until what the error names is changed"
            });
            Err(Error { message: msg, ..e })
        }
    }
}

/// Before a step that writes: the lease must still be ours (runs that take no lease write
/// nothing here).
async fn checkpoint(guard: Option<&Guard>, at: &str) -> Result<()> {
    match guard {
        Some(g) => g.checkpoint(at).await,
        None => Ok(()),
    }
}

async fn run(
    cluster: &mut Cluster,
    plan: &Plan,
    opts: &SyncOptions,
    applied: &mut Vec<String>,
    pruned: &mut Vec<String>,
    guard: Option<&Guard>,
) -> Result<()> {
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
            applied.push(ns_item.key.to_string());
        }
        apply_parent(cluster, plan, &union).await?;
        parent_written = true;
    }
    let mut ranks: Vec<u8> = plan.items.iter().map(|i| i.rank).collect();
    ranks.sort();
    ranks.dedup();
    for rank in ranks {
        checkpoint(guard, &format!("rank-{rank}")).await?;
        let batch: Vec<&Item> = plan
            .items
            .iter()
            .filter(|i| i.rank == rank && matches!(i.action, Action::Create | Action::Update))
            .filter(|i| !applied.contains(&i.key.to_string()))
            .collect();
        let shared_cluster: &Cluster = cluster;
        let mut results = futures::stream::iter(batch.iter().map(|item| async move {
            let r = apply_item(shared_cluster, item, opts.force_conflicts).await;
            (item, r)
        }))
        .buffer_unordered(opts.concurrency);
        // Stop at the first failure: with the API server gone, going on would spend the
        // retry budget once per remaining object. Requests still in flight are dropped; they
        // count as not applied, and a rerun converges either way.
        while let Some((item, r)) = results.next().await {
            r?;
            crate::log::info(4, format!("applied {}", item.key));
            applied.push(item.key.to_string());
        }
        drop(results);
        for item in batch
            .iter()
            .filter(|i| i.key.kind == "CustomResourceDefinition")
        {
            wait_established(cluster, item).await?;
        }
        if batch
            .iter()
            .any(|i| i.key.kind == "CustomResourceDefinition")
        {
            // Custom resources of the new CRDs need the server's refreshed discovery.
            let client = cluster.client.clone();
            *cluster = Cluster::discover(client).await?;
        }
    }
    let mut prunes: Vec<&Item> = plan
        .items
        .iter()
        .filter(|i| i.action == Action::Prune)
        .collect();
    prunes.sort_by(|a, b| (b.rank, &b.key).cmp(&(a.rank, &a.key)));
    if !prunes.is_empty() {
        checkpoint(guard, "prune").await?;
    }
    for item in prunes {
        if let Some(g) = guard {
            g.still_held().await?;
        }
        prune_item(cluster, item).await?;
        crate::log::info(4, format!("pruned {}", item.key));
        pruned.push(item.key.to_string());
    }
    if !same(&members, &union) || (!parent_written && !same(&members, &before)) {
        checkpoint(guard, "parent").await?;
        apply_parent(cluster, plan, &members).await?;
    }
    Ok(())
}
