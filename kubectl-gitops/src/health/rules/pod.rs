//! Pods: kstatus's rule (Running and Ready, finished, crash-looping, unschedulable past the
//! schedule window), our failure of a Pod that finished `Failed`, and the early failure
//! signals a Deployment's new Pods share.

use serde_json::Value;

use super::{
    CRASH_LOOP_RESTARTS, SCHEDULE_WINDOW_SECS, STUCK_GRACE_SECS, age_secs, condition, int, is_true,
    plural, said, text,
};
use crate::health::verdict::Verdict;

/// Waiting reasons that retrying does not cure without someone changing the image reference,
/// the registry or a referenced ConfigMap or Secret.
const STUCK: [&str; 5] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
];

/// Waiting reasons every starting Pod goes through: not worth reporting.
const ROUTINE: [&str; 2] = ["ContainerCreating", "PodInitializing"];

pub(super) fn pod(obj: &Value, now: jiff::Timestamp) -> Verdict {
    let st = &obj["status"];
    match st["phase"].as_str().unwrap_or_default() {
        "Succeeded" => Verdict::ready("PodSucceeded", "completed"),
        // kstatus calls a finished Pod Current whatever its outcome. A bare Pod we applied
        // and that failed will not run again, so waiting on it can only end in a timeout.
        "Failed" => finished_failed(st),
        "Running" => {
            if condition(obj, "Ready").is_some_and(is_true) {
                return Verdict::ready("", "");
            }
            let crashing = containers(st, "containerStatuses")
                .find(|c| c["state"]["waiting"]["reason"] == "CrashLoopBackOff");
            if let Some(c) = crashing {
                return Verdict::failed("CrashLoopBackOff", crash_message(c));
            }
            if let Some(failed) = early_failure(obj, now) {
                return failed;
            }
            let why = match trouble(obj) {
                Some((_, message)) => message,
                None => condition(obj, "Ready").map_or_else(
                    || "running, not ready".to_string(),
                    |c| said(c, "running, not ready"),
                ),
            };
            Verdict::in_progress("PodRunningNotReady", why)
        }
        "Pending" => {
            let unscheduled = condition(obj, "PodScheduled")
                .filter(|c| c["status"] == "False" && c["reason"] == "Unschedulable");
            if let Some(c) = unscheduled {
                // The scheduler may yet find room (a node joining, a Pod leaving), so it gets
                // a moment before the Pod counts as failed.
                return if age_secs(obj, now) < SCHEDULE_WINDOW_SECS {
                    Verdict::in_progress("PodNotScheduled", said(c, "not scheduled yet"))
                } else {
                    Verdict::failed("Unschedulable", said(c, "no node can run it"))
                };
            }
            if let Some(failed) = early_failure(obj, now) {
                return failed;
            }
            let why = trouble(obj).map_or_else(|| "pending".to_string(), |(_, m)| m);
            Verdict::in_progress("PodPending", why)
        }
        "" => Verdict::in_progress("PodNotObserved", "no phase yet"),
        phase => Verdict::in_progress("PodPhaseUnknown", format!("phase {phase}")),
    }
}

/// Why a finished Pod failed: the Pod's own reason (Evicted, DeadlineExceeded…), else its
/// first container that ended badly.
fn finished_failed(st: &Value) -> Verdict {
    if let Some(reason) = text(st, "reason") {
        return Verdict::failed(reason, text(st, "message").unwrap_or("the Pod failed"));
    }
    let ended = containers(st, "initContainerStatuses")
        .chain(containers(st, "containerStatuses"))
        .find_map(|c| {
            let t = &c["state"]["terminated"];
            (int(&t["exitCode"], 0) != 0).then_some((c, t))
        });
    match ended {
        Some((c, t)) => Verdict::failed(
            text(t, "reason").unwrap_or("Error"),
            format!(
                "container {} exited with code {}{}",
                name(c),
                int(&t["exitCode"], 0),
                text(t, "message").map_or_else(String::new, |m| format!(": {m}"))
            ),
        ),
        None => Verdict::failed("PodFailed", text(st, "message").unwrap_or("the Pod failed")),
    }
}

/// Our early failure signals, for any Pod we judge (bare, or a Deployment's new Pods): a
/// container waiting on one of the [`STUCK`] reasons in a Pod older than the grace period, or
/// crash-looping through more than a few restarts. kstatus would keep waiting on both until
/// the timeout.
pub(super) fn early_failure(pod: &Value, now: jiff::Timestamp) -> Option<Verdict> {
    let st = &pod["status"];
    let old_enough = age_secs(pod, now) >= STUCK_GRACE_SECS;
    containers(st, "initContainerStatuses")
        .chain(containers(st, "containerStatuses"))
        .find_map(|c| {
            let reason = c["state"]["waiting"]["reason"].as_str()?;
            if old_enough && STUCK.contains(&reason) {
                return Some(Verdict::failed(reason, waiting_message(c)));
            }
            if reason == "CrashLoopBackOff" && int(&c["restartCount"], 0) >= CRASH_LOOP_RESTARTS {
                return Some(Verdict::failed(reason, crash_message(c)));
            }
            None
        })
}

/// What holds a Pod up that is worth telling (not the routine ContainerCreating): a waiting
/// container's reason, else the scheduler's. `(reason, message)`.
pub(super) fn trouble(pod: &Value) -> Option<(String, String)> {
    let st = &pod["status"];
    let waiting = containers(st, "initContainerStatuses")
        .chain(containers(st, "containerStatuses"))
        .find_map(|c| {
            let reason = c["state"]["waiting"]["reason"].as_str()?;
            (!ROUTINE.contains(&reason)).then(|| (reason.to_string(), waiting_message(c)))
        });
    waiting.or_else(|| {
        condition(pod, "PodScheduled")
            .filter(|c| c["status"] == "False")
            .map(|c| {
                let reason = text(c, "reason").unwrap_or("NotScheduled").to_string();
                (reason, format!("not scheduled: {}", said(c, "no node yet")))
            })
    })
}

fn containers<'a>(status: &'a Value, list: &str) -> impl Iterator<Item = &'a Value> {
    status[list].as_array().into_iter().flatten()
}

fn name(container: &Value) -> &str {
    container["name"].as_str().unwrap_or("?")
}

fn waiting_message(c: &Value) -> String {
    let waiting = &c["state"]["waiting"];
    let reason = text(waiting, "reason").unwrap_or("waiting");
    match text(waiting, "message") {
        Some(message) => format!("container {}: {reason}: {message}", name(c)),
        None => format!("container {}: {reason}", name(c)),
    }
}

fn crash_message(c: &Value) -> String {
    let restarts = int(&c["restartCount"], 0);
    let last = &c["lastState"]["terminated"];
    let mut message = format!(
        "container {} keeps crashing ({}",
        name(c),
        plural(restarts, "restart", "restarts")
    );
    if last.is_object() {
        message.push_str(&format!(", last exit code {}", int(&last["exitCode"], 0)));
        if let Some(reason) = text(last, "reason") {
            message.push_str(&format!(" ({reason})"));
        }
    }
    message.push(')');
    if let Some(m) = text(&c["state"]["waiting"], "message") {
        message.push_str(&format!(": {m}"));
    }
    message
}
