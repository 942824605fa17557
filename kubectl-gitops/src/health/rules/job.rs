//! Jobs: ready when Complete (kstatus: as soon as started), failed with the Job controller's
//! reason (`BackoffLimitExceeded`, `DeadlineExceeded`, `PodFailurePolicy`…), ready while
//! deliberately suspended.

use std::fmt::Write as _;

use serde_json::Value;

use super::{conditions, int, is_true, plural, said, text};
use crate::health::verdict::Verdict;

pub(super) fn job(obj: &Value) -> Verdict {
    let suspend = obj["spec"]["suspend"] == true;
    let mut resuming = false;
    for c in conditions(obj).filter(|c| is_true(c)) {
        match c["type"].as_str() {
            Some("Complete") => return Verdict::ready("Complete", progress(obj)),
            Some("Failed") => {
                return Verdict::failed(
                    text(c, "reason").unwrap_or("JobFailed"),
                    said(c, "the Job failed"),
                );
            }
            // Suspended on purpose: it will not run until someone resumes it, and a deploy
            // that waited for it would wait for that person (kstatus after cli-utils#668).
            Some("Suspended") if suspend => {
                return Verdict::ready("Suspended", "suspended (spec.suspend)");
            }
            // The condition outlives spec.suspend until the controller acts on the resume.
            Some("Suspended") => resuming = true,
            _ => {}
        }
    }
    // The controller's decision, written before the Failed condition, which waits for every
    // Pod to terminate. kstatus reads only Failed; this ends the wait a little earlier.
    if let Some(c) = conditions(obj).find(|c| c["type"] == "FailureTarget" && is_true(c)) {
        return Verdict::failed(
            text(c, "reason").unwrap_or("JobFailed"),
            said(c, "the Job is failing"),
        );
    }
    if resuming {
        return Verdict::in_progress(
            "Resuming",
            "spec.suspend is false: waiting for the Job controller to resume it",
        );
    }
    if text(&obj["status"], "startTime").is_none() {
        let why = if suspend {
            "suspended (spec.suspend): waiting for the Job controller to mark it Suspended"
        } else {
            "not started yet"
        };
        return Verdict::in_progress("JobNotStarted", why);
    }
    // kstatus calls a started Job Current; a deploy must not move on while, say, a migration
    // is still running, so we wait for Complete (as Helm's --wait-for-jobs does).
    Verdict::in_progress("JobNotComplete", progress(obj))
}

/// `3 of 10 completions, 2 running, 1 failed pod`.
fn progress(obj: &Value) -> String {
    let parallelism = int(&obj["spec"]["parallelism"], 1);
    let want = int(&obj["spec"]["completions"], parallelism);
    let st = &obj["status"];
    let (succeeded, active, failed) = (
        int(&st["succeeded"], 0),
        int(&st["active"], 0),
        int(&st["failed"], 0),
    );
    let mut out = format!("{succeeded} of {want} completions");
    if active > 0 {
        let _ = write!(out, ", {active} running");
    }
    if failed > 0 {
        let _ = write!(out, ", {}", plural(failed, "failed pod", "failed pods"));
    }
    out
}
