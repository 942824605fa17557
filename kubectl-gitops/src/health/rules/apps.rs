//! Deployments, ReplicaSets, StatefulSets and DaemonSets: judged from the replica counts and
//! conditions their controllers publish, in kstatus's order, so the first unmet count is the
//! one reported. A Deployment's new Pods add the reason its rollout fails.

use serde_json::Value;

use super::{condition, conditions, int, is_true, plural, pod, said, text};
use crate::health::verdict::{Context, Related, Status, Verdict};

/// The Deployment controller treats this `progressDeadlineSeconds` as "no deadline" and then
/// never writes a `Progressing` condition, so kstatus does not wait for one.
const NO_DEADLINE: i64 = i32::MAX as i64;

pub(super) fn deployment(obj: &Value, ctx: &Context) -> Verdict {
    let own = deployment_status(obj);
    if own.status != Status::InProgress {
        return own;
    }
    match ctx.related {
        Some(related) => with_new_pods(obj, own, related, ctx.now),
        None => own,
    }
}

fn deployment_status(obj: &Value) -> Verdict {
    let deadline = int(&obj["spec"]["progressDeadlineSeconds"], NO_DEADLINE);
    let mut rolled_out = deadline == NO_DEADLINE;
    let mut available = false;
    let mut progressing = None;
    for c in conditions(obj) {
        match c["type"].as_str() {
            Some("Progressing") => {
                if c["reason"] == "ProgressDeadlineExceeded" {
                    return Verdict::failed(
                        "ProgressDeadlineExceeded",
                        said(
                            c,
                            "the rollout made no progress within progressDeadlineSeconds",
                        ),
                    );
                }
                // Written only once the new ReplicaSet is fully available: replica counts
                // alone look complete earlier, while old Pods are still being replaced.
                if is_true(c) && c["reason"] == "NewReplicaSetAvailable" {
                    rolled_out = true;
                }
                progressing = Some(c);
            }
            Some("Available") => available |= is_true(c),
            _ => {}
        }
    }
    let want = int(&obj["spec"]["replicas"], 1);
    let st = &obj["status"];
    let total = int(&st["replicas"], 0);
    let updated = int(&st["updatedReplicas"], 0);
    let ready = int(&st["readyReplicas"], 0);
    let avail = int(&st["availableReplicas"], 0);
    if want > total {
        return Verdict::in_progress(
            "LessReplicas",
            format!("{total} of {want} replicas created"),
        );
    }
    if want > updated {
        return Verdict::in_progress(
            "LessUpdated",
            format!("{updated} of {want} replicas updated"),
        );
    }
    if total > want {
        return Verdict::in_progress(
            "ExtraPods",
            format!(
                "{} pending termination",
                plural(total - want, "old replica", "old replicas")
            ),
        );
    }
    if updated > avail {
        return Verdict::in_progress(
            "LessAvailable",
            format!("{avail} of {updated} updated replicas available"),
        );
    }
    if want > ready {
        return Verdict::in_progress("LessReady", format!("{ready} of {want} replicas ready"));
    }
    if !rolled_out {
        let why = match progressing {
            Some(c) => format!(
                "waiting for the rollout to finish (Progressing is {} with reason {})",
                c["status"].as_str().unwrap_or("Unknown"),
                text(c, "reason").unwrap_or("none")
            ),
            None => "waiting for the Progressing condition".to_string(),
        };
        return Verdict::in_progress("ReplicaSetNotAvailable", why);
    }
    if !available {
        let why = condition(obj, "Available").map_or_else(
            || "waiting for the Available condition".to_string(),
            |c| said(c, "waiting for the Available condition"),
        );
        return Verdict::in_progress("DeploymentNotAvailable", why);
    }
    Verdict::ready("", "")
}

/// A rollout that is still in progress by its own status may already be doomed: a new Pod
/// that cannot pull its image or keeps crashing will not fix itself, and the Deployment
/// reports `ProgressDeadlineExceeded` only after `progressDeadlineSeconds` (10 minutes by
/// default). Otherwise the first new Pod's trouble, if any, explains the wait.
fn with_new_pods(deploy: &Value, own: Verdict, related: &Related, now: jiff::Timestamp) -> Verdict {
    let pods = new_pods(deploy, related);
    let name = |p: &Value| p["metadata"]["name"].as_str().unwrap_or("?").to_string();
    let failed = pods
        .iter()
        .find_map(|p| pod::early_failure(p, now).map(|v| (name(p), v)));
    if let Some((pod, v)) = failed {
        return Verdict::failed(v.reason, format!("pod {pod}: {}", v.message));
    }
    let trouble = pods
        .iter()
        .find_map(|p| pod::trouble(p).map(|(_, message)| (name(p), message)));
    match trouble {
        Some((pod, message)) => {
            Verdict::in_progress(own.reason, format!("{}; pod {pod}: {message}", own.message))
        }
        None => own,
    }
}

/// The Pods of the Deployment's new ReplicaSet: the one it controls whose revision is the
/// Deployment's own. Old ReplicaSets' Pods are on their way out and say nothing about the
/// rollout.
fn new_pods<'a>(deploy: &Value, related: &'a Related) -> Vec<&'a Value> {
    const REVISION: &str = "deployment.kubernetes.io/revision";
    let Some(revision) = deploy["metadata"]["annotations"][REVISION].as_str() else {
        return Vec::new();
    };
    let Some(new_rs) = related
        .replica_sets
        .iter()
        .filter(|rs| controlled_by(rs, deploy))
        .find(|rs| rs["metadata"]["annotations"][REVISION] == revision)
    else {
        return Vec::new();
    };
    related
        .pods
        .iter()
        .filter(|p| controlled_by(p, new_rs))
        .collect()
}

fn controlled_by(obj: &Value, owner: &Value) -> bool {
    let Some(uid) = owner["metadata"]["uid"].as_str() else {
        return false;
    };
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["controller"] == true && r["uid"] == uid)
}

pub(super) fn replica_set(obj: &Value) -> Verdict {
    // Usually a quota or admission refusal that may clear up, so kstatus keeps waiting.
    if let Some(c) = condition(obj, "ReplicaFailure").filter(|c| is_true(c)) {
        return Verdict::in_progress("ReplicaFailure", said(c, "replica failure: check its Pods"));
    }
    let want = int(&obj["spec"]["replicas"], 1);
    let st = &obj["status"];
    let total = int(&st["replicas"], 0);
    let labelled = int(&st["fullyLabeledReplicas"], 0);
    let ready = int(&st["readyReplicas"], 0);
    let avail = int(&st["availableReplicas"], 0);
    if want > labelled {
        return Verdict::in_progress(
            "LessLabelled",
            format!("{labelled} of {want} replicas created with the template's labels"),
        );
    }
    if want > avail {
        return Verdict::in_progress(
            "LessAvailable",
            format!("{avail} of {want} replicas available"),
        );
    }
    if want > ready {
        return Verdict::in_progress("LessReady", format!("{ready} of {want} replicas ready"));
    }
    if total > want {
        return Verdict::in_progress(
            "ExtraPods",
            format!(
                "{} pending termination",
                plural(total - want, "extra replica", "extra replicas")
            ),
        );
    }
    Verdict::ready("", "")
}

/// StatefulSets publish no conditions, so only their counts and revisions tell.
pub(super) fn stateful_set(obj: &Value) -> Verdict {
    let strategy = &obj["spec"]["updateStrategy"];
    // With OnDelete, Pods move to a new revision only when someone deletes them: waiting for
    // the revisions to converge would wait for a human.
    if strategy["type"] == "OnDelete" {
        return Verdict::ready("OnDelete", "updated Pods are replaced by hand (OnDelete)");
    }
    let want = int(&obj["spec"]["replicas"], 1);
    let st = &obj["status"];
    let total = int(&st["replicas"], 0);
    let ready = int(&st["readyReplicas"], 0);
    let current = int(&st["currentReplicas"], 0);
    let updated = int(&st["updatedReplicas"], 0);
    if want > total {
        return Verdict::in_progress(
            "LessReplicas",
            format!("{total} of {want} replicas created"),
        );
    }
    if want > ready {
        return Verdict::in_progress("LessReady", format!("{ready} of {want} replicas ready"));
    }
    if total > want {
        return Verdict::in_progress(
            "ExtraPods",
            format!(
                "{} pending termination",
                plural(total - want, "extra replica", "extra replicas")
            ),
        );
    }
    // The API server fills in partition 0 for every RollingUpdate, so live StatefulSets take
    // this branch: ordinals below the partition stay at the old revision by design.
    if let Some(partition) = strategy["rollingUpdate"]["partition"].as_i64() {
        let expected = want - partition;
        if updated < expected {
            return Verdict::in_progress(
                "PartitionRollout",
                format!("{updated} of {expected} replicas updated (partition {partition})"),
            );
        }
        return Verdict::ready("", "");
    }
    if want > current {
        return Verdict::in_progress(
            "LessCurrent",
            format!("{current} of {want} replicas at the current revision"),
        );
    }
    let (current_rev, update_rev) = (&st["currentRevision"], &st["updateRevision"]);
    if current_rev.as_str().unwrap_or_default() != update_rev.as_str().unwrap_or_default() {
        return Verdict::in_progress(
            "RevisionMismatch",
            format!(
                "waiting for revision {} to replace {}",
                update_rev.as_str().unwrap_or("?"),
                current_rev.as_str().unwrap_or("?")
            ),
        );
    }
    Verdict::ready("", "")
}

pub(super) fn daemon_set(obj: &Value) -> Verdict {
    // The controller always writes both once it has acted, so unlike other kinds their
    // absence means "not seen yet".
    let Some(generation) = obj["metadata"]["generation"].as_i64() else {
        return Verdict::in_progress("NoGeneration", "no metadata.generation yet");
    };
    if obj["status"]["observedGeneration"].as_i64().is_none() {
        return Verdict::in_progress(
            "NoObservedGeneration",
            format!("waiting for the controller to observe generation {generation}"),
        );
    }
    let st = &obj["status"];
    let Some(desired) = st["desiredNumberScheduled"].as_i64() else {
        return Verdict::in_progress(
            "NoDesiredNumber",
            "waiting for the controller to count the nodes to run on",
        );
    };
    let current = int(&st["currentNumberScheduled"], 0);
    let updated = int(&st["updatedNumberScheduled"], 0);
    let avail = int(&st["numberAvailable"], 0);
    let ready = int(&st["numberReady"], 0);
    if desired > current {
        return Verdict::in_progress(
            "LessCurrent",
            format!("{current} of {desired} pods scheduled"),
        );
    }
    if desired > updated {
        return Verdict::in_progress(
            "LessUpdated",
            format!("{updated} of {desired} pods updated"),
        );
    }
    if desired > avail {
        return Verdict::in_progress(
            "LessAvailable",
            format!("{avail} of {desired} pods available"),
        );
    }
    if desired > ready {
        return Verdict::in_progress("LessReady", format!("{ready} of {desired} pods ready"));
    }
    Verdict::ready("", "")
}
