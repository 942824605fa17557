//! The verdict rules: pure functions of an object as the API server returns it (plus the time
//! and, for a Deployment, its Pods), in kstatus's order: properties every kind shares, then
//! the kind's own rule, then a `Ready` condition, else ready.

mod apps;
mod job;
mod other;
mod pod;

#[cfg(test)]
mod kstatus_table;
#[cfg(test)]
mod tests;

use serde_json::Value;

use super::verdict::{Context, Verdict};

/// How long a Pod may stay unschedulable before it counts as failed (kstatus's
/// `ScheduleWindow`).
pub const SCHEDULE_WINDOW_SECS: i64 = 15;
/// How long a container may wait on an image it cannot pull, or on a configuration it cannot
/// build (a missing Secret key), before its Pod counts as failed. Ours, not kstatus's.
pub const STUCK_GRACE_SECS: i64 = 30;
/// How many restarts a container of a Deployment's new Pods may crash through before the
/// rollout counts as failed. Ours, not kstatus's.
pub const CRASH_LOOP_RESTARTS: i64 = 3;

/// The verdict on `obj`, a full object as the API server returns it.
pub fn judge(obj: &Value, ctx: &Context) -> Verdict {
    if let Some(v) = shared_properties(obj) {
        return v;
    }
    let (group, kind) = group_kind(obj);
    match (group, kind) {
        ("apps" | "extensions", "Deployment") => apps::deployment(obj, ctx),
        ("apps" | "extensions", "ReplicaSet") => apps::replica_set(obj),
        ("apps", "StatefulSet") => apps::stateful_set(obj),
        ("apps" | "extensions", "DaemonSet") => apps::daemon_set(obj),
        ("batch", "Job") => job::job(obj),
        ("", "Pod") => pod::pod(obj, ctx.now),
        ("", "PersistentVolumeClaim") => other::pvc(obj),
        ("", "Service") => other::service(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => other::crd(obj),
        ("", "ConfigMap" | "Secret") | ("batch", "CronJob") | ("policy", "PodDisruptionBudget") => {
            Verdict::ready("", "")
        }
        _ => other::ready_condition(obj).unwrap_or_else(|| Verdict::ready("", "")),
    }
}

fn group_kind(obj: &Value) -> (&str, &str) {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let group = obj["apiVersion"]
        .as_str()
        .and_then(|v| v.split_once('/'))
        .map_or("", |(group, _)| group);
    (group, kind)
}

/// What kstatus checks on every kind before the kind's own rule: deletion, the generation the
/// controller has seen, and the standard `Reconciling` and `Stalled` conditions.
fn shared_properties(obj: &Value) -> Option<Verdict> {
    if obj["metadata"]["deletionTimestamp"]
        .as_str()
        .is_some_and(|t| !t.is_empty())
    {
        return Some(Verdict::in_progress("Terminating", "being deleted"));
    }
    // A status written for an older spec says nothing about the current one. Kinds that
    // publish no observedGeneration cannot be checked this way.
    if let (Some(generation), Some(seen)) = (
        obj["metadata"]["generation"].as_i64(),
        obj["status"]["observedGeneration"].as_i64(),
    ) && generation != seen
    {
        return Some(unobserved(generation));
    }
    conditions(obj).find_map(|c| match (c["type"].as_str(), is_true(c)) {
        (Some("Reconciling"), true) => Some(Verdict::in_progress(
            text(c, "reason").unwrap_or("Reconciling"),
            said(c, "reconciling"),
        )),
        (Some("Stalled"), true) => Some(Verdict::failed(
            text(c, "reason").unwrap_or("Stalled"),
            said(c, "stalled"),
        )),
        _ => None,
    })
}

fn unobserved(generation: i64) -> Verdict {
    Verdict::in_progress(
        "LatestGenerationNotObserved",
        format!("waiting for the controller to observe generation {generation}"),
    )
}

fn conditions(obj: &Value) -> impl Iterator<Item = &Value> {
    obj["status"]["conditions"].as_array().into_iter().flatten()
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    conditions(obj).find(|c| c["type"] == kind)
}

fn is_true(c: &Value) -> bool {
    c["status"] == "True"
}

/// A non-blank string field of `v`, trimmed.
fn text<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v[field].as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// A condition in its own words: message, else reason, else `fallback`.
fn said(c: &Value, fallback: &str) -> String {
    text(c, "message")
        .or_else(|| text(c, "reason"))
        .unwrap_or(fallback)
        .to_string()
}

/// An integer field, `default` when absent or not an integer (as kstatus reads them).
fn int(v: &Value, default: i64) -> i64 {
    v.as_i64().unwrap_or(default)
}

/// The seconds from `obj`'s creation to `now`. An object without a readable
/// creationTimestamp counts as created long ago, as in kstatus (Go's zero time).
fn age_secs(obj: &Value, now: jiff::Timestamp) -> i64 {
    obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or(i64::MAX, |created| {
            now.as_second().saturating_sub(created.as_second())
        })
}

fn plural(n: i64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}
