//! Waiting for applied objects to become ready, judged the way kstatus
//! (sigs.k8s.io/cli-utils/pkg/kstatus) judges them: from the status the controllers publish,
//! never from the spec alone.
//!
//! Tests: the test API server runs no kubelet and no Deployment, ReplicaSet, StatefulSet,
//! DaemonSet or Job controllers, so nothing ever makes a workload ready by itself. An
//! end-to-end test simulates the controller by patching the `status` subresource once the
//! object exists, e.g. for a Deployment with three replicas at generation 1:
//!
//! ```text
//! PATCH /apis/apps/v1/namespaces/NS/deployments/web/status
//! Content-Type: application/merge-patch+json
//! {"status": {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3,
//!             "readyReplicas": 3, "availableReplicas": 3,
//!             "conditions": [{"type": "Available", "status": "True",
//!                             "reason": "MinimumReplicasAvailable",
//!                             "message": "Deployment has minimum availability."}]}}
//! ```
//!
//! (`Api::patch_status` with `Patch::Merge` in kube). `observedGeneration` must equal the
//! object's `metadata.generation`, otherwise the object still counts as unobserved.
//! ConfigMaps, Secrets, Services and other objects without a controller are ready at once.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use crate::manifest::ObjectKey;
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use shared::{Error, Result};
use tokio::time::Instant;

use crate::cluster::{Cluster, Resolved, api_error, status_code};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Health {
    Ready,
    /// Not ready yet; says what it is waiting for.
    InProgress(String),
    /// Will not become ready without someone changing something.
    Failed(String),
}

impl Health {
    fn label(&self) -> &'static str {
        match self {
            Health::Ready => "Ready",
            Health::InProgress(_) => "InProgress",
            Health::Failed(_) => "Failed",
        }
    }

    fn reason(&self) -> &str {
        match self {
            Health::Ready => "",
            Health::InProgress(r) | Health::Failed(r) => r,
        }
    }
}

/// The readiness of `obj`, a full object as the API server returns it.
pub fn health(obj: &Value) -> Health {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let group = obj["apiVersion"]
        .as_str()
        .and_then(|v| v.split_once('/'))
        .map_or("", |(group, _)| group);
    let workload = group == "apps"
        && matches!(
            kind,
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet"
        );
    if let Some(h) = unobserved(obj, workload) {
        return h;
    }
    match (group, kind) {
        ("apps", "Deployment") => deployment(obj),
        ("apps", "ReplicaSet") => replica_set(obj),
        ("apps", "StatefulSet") => stateful_set(obj),
        ("apps", "DaemonSet") => daemon_set(obj),
        ("batch", "Job") => job(obj),
        ("", "Pod") => pod(obj),
        ("", "PersistentVolumeClaim") => pvc(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(obj),
        // Nothing in a bare cluster assigns LoadBalancer addresses, and kstatus does not wait
        // for them either: waiting would hang every sync to a cluster without a cloud provider.
        ("", "Service") => Health::Ready,
        _ => generic(obj),
    }
}

/// A status written for an older spec says nothing about the current one. Objects of the
/// workload kinds always get an `observedGeneration` from their controller, so there a
/// missing one means the controller has not seen the object at all; elsewhere its absence
/// only means the kind does not publish one.
fn unobserved(obj: &Value, required: bool) -> Option<Health> {
    let generation = obj["metadata"]["generation"].as_i64()?;
    let observed = match obj["status"]["observedGeneration"].as_i64() {
        Some(observed) => observed,
        None if required => 0,
        None => return None,
    };
    (generation > observed).then(|| {
        Health::InProgress(format!(
            "waiting for the controller to observe generation {generation}"
        ))
    })
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn is_true(c: Option<&Value>) -> bool {
    c.is_some_and(|c| c["status"] == "True")
}

fn is_false(c: Option<&Value>) -> bool {
    c.is_some_and(|c| c["status"] == "False")
}

/// The condition in its own words: message, else reason, else `fallback`.
fn said(c: Option<&Value>, fallback: &str) -> String {
    let text = |field: &str| {
        c.and_then(|c| c[field].as_str())
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().to_string())
    };
    text("message")
        .or_else(|| text("reason"))
        .unwrap_or_else(|| fallback.to_string())
}

fn count(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn desired_replicas(obj: &Value) -> i64 {
    obj["spec"]["replicas"].as_i64().unwrap_or(1)
}

fn deployment(obj: &Value) -> Health {
    let progressing = condition(obj, "Progressing");
    if progressing.is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded") {
        return Health::Failed(said(progressing, "progress deadline exceeded"));
    }
    let want = desired_replicas(obj);
    let st = &obj["status"];
    let (total, updated) = (count(&st["replicas"]), count(&st["updatedReplicas"]));
    let (ready, available) = (count(&st["readyReplicas"]), count(&st["availableReplicas"]));
    if updated < want {
        return Health::InProgress(format!("{updated} of {want} replicas updated"));
    }
    if total > updated {
        return Health::InProgress(format!(
            "{} old replicas pending termination",
            total - updated
        ));
    }
    if available < want {
        return Health::InProgress(format!("{available} of {want} replicas available"));
    }
    if ready < want {
        return Health::InProgress(format!("{ready} of {want} replicas ready"));
    }
    let avail = condition(obj, "Available");
    if !is_true(avail) {
        return Health::InProgress(said(avail, "waiting for the Available condition"));
    }
    Health::Ready
}

fn replica_set(obj: &Value) -> Health {
    let failure = condition(obj, "ReplicaFailure");
    // Usually a quota or admission refusal that may clear up, so kstatus keeps waiting.
    if is_true(failure) {
        return Health::InProgress(said(failure, "replica failure"));
    }
    let want = desired_replicas(obj);
    let st = &obj["status"];
    let total = count(&st["replicas"]);
    let (ready, available) = (count(&st["readyReplicas"]), count(&st["availableReplicas"]));
    if total < want {
        return Health::InProgress(format!("{total} of {want} replicas created"));
    }
    if total > want {
        return Health::InProgress(format!(
            "{} extra replicas pending termination",
            total - want
        ));
    }
    if available < want {
        return Health::InProgress(format!("{available} of {want} replicas available"));
    }
    if ready < want {
        return Health::InProgress(format!("{ready} of {want} replicas ready"));
    }
    Health::Ready
}

fn stateful_set(obj: &Value) -> Health {
    let want = desired_replicas(obj);
    let st = &obj["status"];
    let (total, ready, updated) = (
        count(&st["replicas"]),
        count(&st["readyReplicas"]),
        count(&st["updatedReplicas"]),
    );
    if total < want {
        return Health::InProgress(format!("{total} of {want} replicas created"));
    }
    if ready < want {
        return Health::InProgress(format!("{ready} of {want} replicas ready"));
    }
    let strategy = &obj["spec"]["updateStrategy"];
    // With OnDelete, pods move to a new revision only when someone deletes them: waiting for
    // the revisions to converge would wait for a human.
    if strategy["type"] == "OnDelete" {
        return Health::Ready;
    }
    let partition = count(&strategy["rollingUpdate"]["partition"]);
    if partition > 0 {
        // Pods below the partition stay at the old revision by design.
        let expected = (want - partition).max(0);
        return if updated < expected {
            Health::InProgress(format!(
                "{updated} of {expected} replicas updated (partition {partition})"
            ))
        } else {
            Health::Ready
        };
    }
    if updated < want {
        return Health::InProgress(format!("{updated} of {want} replicas updated"));
    }
    let (current, update) = (&st["currentRevision"], &st["updateRevision"]);
    if current != update {
        return Health::InProgress(format!(
            "waiting for revision {} to replace {}",
            update.as_str().unwrap_or("?"),
            current.as_str().unwrap_or("?")
        ));
    }
    Health::Ready
}

fn daemon_set(obj: &Value) -> Health {
    let st = &obj["status"];
    let desired = count(&st["desiredNumberScheduled"]);
    let updated = count(&st["updatedNumberScheduled"]);
    let available = count(&st["numberAvailable"]);
    let ready = count(&st["numberReady"]);
    if updated < desired {
        return Health::InProgress(format!("{updated} of {desired} pods updated"));
    }
    if available < desired {
        return Health::InProgress(format!("{available} of {desired} pods available"));
    }
    if ready < desired {
        return Health::InProgress(format!("{ready} of {desired} pods ready"));
    }
    Health::Ready
}

fn job(obj: &Value) -> Health {
    if is_true(condition(obj, "Complete")) {
        return Health::Ready;
    }
    // FailureTarget comes first: the Failed condition follows only once every pod is gone.
    for kind in ["Failed", "FailureTarget"] {
        let c = condition(obj, kind);
        if is_true(c) {
            return Health::Failed(said(c, "the job failed"));
        }
    }
    let suspended = condition(obj, "Suspended");
    if is_true(suspended) {
        return Health::InProgress(format!("suspended: {}", said(suspended, "spec.suspend")));
    }
    let st = &obj["status"];
    let succeeded = count(&st["succeeded"]);
    let mut why = match obj["spec"]["completions"].as_i64() {
        Some(want) => format!("{succeeded} of {want} completions"),
        None => "not complete".to_string(),
    };
    let (active, failed) = (count(&st["active"]), count(&st["failed"]));
    if active > 0 {
        let _ = write!(why, ", {active} running");
    }
    if failed > 0 {
        let _ = write!(why, ", {failed} failed pods");
    }
    Health::InProgress(why)
}

fn pod(obj: &Value) -> Health {
    let st = &obj["status"];
    match st["phase"].as_str().unwrap_or_default() {
        "Succeeded" => Health::Ready,
        "Failed" => Health::Failed(
            [&st["message"], &st["reason"]]
                .into_iter()
                .find_map(|v| v.as_str().filter(|s| !s.is_empty()))
                .unwrap_or("the pod failed")
                .to_string(),
        ),
        phase => {
            let ready = condition(obj, "Ready");
            if phase == "Running" && is_true(ready) {
                return Health::Ready;
            }
            let scheduled = condition(obj, "PodScheduled");
            if is_false(scheduled) {
                return Health::InProgress(said(scheduled, "not scheduled"));
            }
            if let Some(waiting) = container_waiting(st) {
                return Health::InProgress(waiting);
            }
            if phase == "Running" {
                return Health::InProgress(said(ready, "running, not ready"));
            }
            let phase = if phase.is_empty() { "unknown" } else { phase };
            Health::InProgress(format!("phase {phase}"))
        }
    }
}

/// Why the first stuck container waits (ImagePullBackOff, CrashLoopBackOff…), which is what
/// someone watching a rollout needs to know.
fn container_waiting(status: &Value) -> Option<String> {
    ["initContainerStatuses", "containerStatuses"]
        .into_iter()
        .filter_map(|list| status[list].as_array())
        .flatten()
        .find_map(|c| {
            let waiting = &c["state"]["waiting"];
            let reason = waiting["reason"].as_str()?;
            let name = c["name"].as_str().unwrap_or("?");
            Some(
                match waiting["message"].as_str().filter(|m| !m.is_empty()) {
                    Some(message) => format!("container {name}: {reason}: {message}"),
                    None => format!("container {name}: {reason}"),
                },
            )
        })
}

fn pvc(obj: &Value) -> Health {
    match obj["status"]["phase"].as_str().unwrap_or_default() {
        "Bound" => Health::Ready,
        "Lost" => Health::Failed("the bound volume was lost".to_string()),
        "" => Health::InProgress("waiting for a volume".to_string()),
        phase => Health::InProgress(format!("phase {phase}, waiting for a volume")),
    }
}

fn crd(obj: &Value) -> Health {
    let names = condition(obj, "NamesAccepted");
    if is_false(names) {
        return Health::Failed(said(names, "names not accepted"));
    }
    let established = condition(obj, "Established");
    if is_true(established) {
        Health::Ready
    } else {
        Health::InProgress(said(established, "waiting for the Established condition"))
    }
}

/// Custom resources and everything else: the conventions most controllers follow (Ready,
/// plus kstatus's abnormal-true Reconciling and Stalled). Objects that publish no Ready
/// condition have nothing to wait for.
fn generic(obj: &Value) -> Health {
    let stalled = condition(obj, "Stalled");
    if is_true(stalled) {
        return Health::Failed(said(stalled, "stalled"));
    }
    let reconciling = condition(obj, "Reconciling");
    if is_true(reconciling) {
        return Health::InProgress(said(reconciling, "reconciling"));
    }
    let Some(ready) = condition(obj, "Ready") else {
        return Health::Ready;
    };
    // A Ready=True written before the latest spec change is stale.
    if let (Some(generation), Some(seen)) = (
        obj["metadata"]["generation"].as_i64(),
        ready["observedGeneration"].as_i64(),
    ) && seen < generation
    {
        return Health::InProgress(format!(
            "waiting for the controller to observe generation {generation}"
        ));
    }
    if is_true(Some(ready)) {
        Health::Ready
    } else {
        let fallback = format!(
            "Ready condition is {}",
            ready["status"].as_str().unwrap_or("Unknown")
        );
        Health::InProgress(said(Some(ready), &fallback))
    }
}

/// Kinds without a controller behind them: ready once applied, so they are never fetched
/// (which also keeps Secret payloads from being read just to be ignored).
fn needs_no_wait(key: &ObjectKey) -> bool {
    match key.group.as_str() {
        "" => matches!(
            key.kind.as_str(),
            "ConfigMap" | "Secret" | "ServiceAccount" | "Service"
        ),
        "rbac.authorization.k8s.io" => true,
        _ => false,
    }
}

#[derive(Debug, Clone)]
pub struct Waited {
    pub key: ObjectKey,
    pub health: Health,
}

const CONCURRENCY: usize = 16;
/// More lines than this would scroll off a terminal and garble the redraw.
const MAX_LINES: usize = 10;
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Polls `targets` until all are ready, one has failed, or `timeout` has passed (a zero
/// timeout checks once). Shows progress on stderr when it is a terminal and always ends with
/// a table there.
pub async fn wait(
    cluster: &Cluster,
    targets: &[(ObjectKey, Resolved)],
    timeout: Duration,
) -> Result<Vec<Waited>> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let deadline = Instant::now() + timeout;
    let mut state: Vec<Health> = targets
        .iter()
        .map(|(key, _)| {
            if needs_no_wait(key) {
                Health::Ready
            } else {
                Health::InProgress("not checked yet".to_string())
            }
        })
        .collect();
    let mut progress = Progress::new();
    let mut pause = FIRST_PAUSE;
    loop {
        let pending: Vec<usize> = (0..targets.len())
            .filter(|&i| state[i] != Health::Ready)
            .collect();
        if pending.is_empty() {
            break;
        }
        // Even a zero timeout gets one honest look; a hung request must not outlive the
        // deadline by more than that.
        let limit = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_secs(5), Duration::from_secs(30));
        let results: Vec<(usize, Result<Health>)> = futures::stream::iter(pending)
            .map(|i| async move { (i, check(cluster, &targets[i], limit).await) })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (i, result) in results {
            state[i] = result?;
        }
        progress.show(targets, &state);
        let done = state.iter().all(|h| *h == Health::Ready);
        let failed = state.iter().any(|h| matches!(h, Health::Failed(_)));
        let now = Instant::now();
        if done || failed || now >= deadline {
            break;
        }
        tokio::time::sleep_until((now + pause).min(deadline)).await;
        pause = (pause * 3 / 2).min(MAX_PAUSE);
    }
    drop(progress);
    print_table(targets, &state);
    outcome(targets, state, timeout)
}

async fn check(
    cluster: &Cluster,
    (key, resolved): &(ObjectKey, Resolved),
    limit: Duration,
) -> Result<Health> {
    let api = cluster.api(resolved, key.namespace.as_deref());
    let answer = match tokio::time::timeout(limit, api.get_opt(&key.name)).await {
        Ok(answer) => answer,
        Err(_) => {
            return Ok(Health::InProgress(format!(
                "no answer from the API server within {}",
                format_duration(limit)
            )));
        }
    };
    match answer {
        Ok(Some(obj)) => {
            let mut value = serde_json::to_value(&obj)
                .map_err(|e| Error::refused(format!("{key}: reading the status: {e}")))?;
            // health() dispatches on these; fill them in should a response lack them.
            if value["kind"].as_str().is_none_or(str::is_empty) {
                value["kind"] = resolved.resource.kind.clone().into();
                value["apiVersion"] = resolved.resource.api_version.clone().into();
            }
            Ok(health(&value))
        }
        // Something deleted it after the apply (a Job's ttlSecondsAfterFinished, a person):
        // there is nothing left to judge, and waiting longer cannot change that.
        Ok(None) => Ok(Health::Failed(
            "not found: deleted after it was applied".to_string(),
        )),
        // Missing rights will not appear by retrying.
        Err(e) if matches!(status_code(&e), Some(401 | 403)) => {
            Err(api_error(format_args!("reading the status of {key}"), e))
        }
        // Anything else (a restarting API server, a dropped connection) may pass.
        Err(e) => Ok(Health::InProgress(
            api_error(format_args!("reading the status"), e).message,
        )),
    }
}

fn outcome(
    targets: &[(ObjectKey, Resolved)],
    state: Vec<Health>,
    timeout: Duration,
) -> Result<Vec<Waited>> {
    let waited: Vec<Waited> = targets
        .iter()
        .zip(state)
        .map(|((key, _), health)| Waited {
            key: key.clone(),
            health,
        })
        .collect();
    let list = |want: fn(&Health) -> bool| -> Vec<String> {
        waited
            .iter()
            .filter(|w| want(&w.health))
            .map(|w| format!("{}: {}", w.key, w.health.reason()))
            .collect()
    };
    let failed = list(|h| matches!(h, Health::Failed(_)));
    let waiting = list(|h| matches!(h, Health::InProgress(_)));
    if !failed.is_empty() {
        let mut message = format!("{} failed: {}", objects(failed.len()), failed.join("; "));
        if !waiting.is_empty() {
            let _ = write!(
                message,
                "; {} more not ready: {}",
                waiting.len(),
                waiting.join("; ")
            );
        }
        return Err(Error::refused(message)
            .hint("kubectl describe the failed objects (and their pods and events) for details"));
    }
    if !waiting.is_empty() {
        return Err(Error::refused(format!(
            "timed out after {} waiting for {}: {}",
            format_duration(timeout),
            objects(waiting.len()),
            waiting.join("; ")
        ))
        .hint("allow more time with --timeout, or see what is stuck with kubectl describe"));
    }
    Ok(waited)
}

fn objects(n: usize) -> String {
    if n == 1 {
        "1 object".to_string()
    } else {
        format!("{n} objects")
    }
}

/// The live display: a spinner with a count, then one line per object still waiting.
struct Progress {
    multi: MultiProgress,
    header: ProgressBar,
    lines: Vec<ProgressBar>,
}

impl Progress {
    fn new() -> Progress {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let header = multi.add(ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"),
        ));
        header.set_message("waiting for objects to become ready");
        if !multi.is_hidden() {
            header.enable_steady_tick(Duration::from_millis(120));
        }
        Progress {
            multi,
            header,
            lines: Vec::new(),
        }
    }

    fn show(&mut self, targets: &[(ObjectKey, Resolved)], state: &[Health]) {
        let waiting: Vec<String> = targets
            .iter()
            .zip(state)
            .filter(|(_, h)| **h != Health::Ready)
            .map(|((key, _), h)| format!("{key}: {}", h.reason()))
            .collect();
        let ready = targets.len() - waiting.len();
        let mut header = format!("{ready} of {} objects ready", targets.len());
        if waiting.len() > MAX_LINES {
            let _ = write!(header, ", showing {MAX_LINES} of {} waiting", waiting.len());
        }
        self.header.set_message(header);
        let lines = &mut self.lines;
        let shown = waiting.len().min(MAX_LINES);
        while lines.len() > shown {
            if let Some(line) = lines.pop() {
                line.finish_and_clear();
                self.multi.remove(&line);
            }
        }
        while lines.len() < shown {
            let line = ProgressBar::new_spinner()
                .with_style(ProgressStyle::with_template("  {wide_msg}").expect("valid template"));
            lines.push(self.multi.add(line));
        }
        for (line, text) in lines.iter().zip(waiting) {
            line.set_message(text);
        }
    }
}

impl Drop for Progress {
    // Also runs when the wait is cancelled or fails, so the terminal is never left with
    // stale lines.
    fn drop(&mut self) {
        for line in self.lines.drain(..) {
            line.finish_and_clear();
        }
        self.header.finish_and_clear();
        let _ = self.multi.clear();
    }
}

fn print_table(targets: &[(ObjectKey, Resolved)], state: &[Health]) {
    let rows: Vec<(String, &Health)> = targets
        .iter()
        .zip(state)
        .map(|((key, _), h)| (key.to_string(), h))
        .collect();
    let width = rows
        .iter()
        .map(|(k, _)| k.len())
        .chain(["OBJECT".len()])
        .max()
        .unwrap_or(0);
    let status_width = "InProgress".len();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:width$}  {:status_width$}  REASON",
        "OBJECT", "STATUS"
    );
    for (key, h) in rows {
        let style = match h {
            Health::Ready => anstyle::AnsiColor::Green.on_default(),
            Health::InProgress(_) => anstyle::AnsiColor::Yellow.on_default(),
            Health::Failed(_) => anstyle::AnsiColor::Red.on_default(),
        };
        let (label, pad) = (h.label(), status_width - h.label().len());
        let line = format!(
            "{key:width$}  {style}{label}{style:#}{:pad$}  {}",
            "",
            h.reason()
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let _ = anstream::stderr().write_all(out.as_bytes());
}

/// Formats like Go's `time.Duration` (`5m0s`, `1h0m0s`, `1.5s`), the notation kubectl users
/// know from `--timeout`.
pub fn format_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        let ms = d.as_millis();
        return if ms == 0 {
            "0s".to_string()
        } else {
            format!("{ms}ms")
        };
    }
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    let millis = d.subsec_millis();
    let secs = if millis == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{millis:03}").trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn in_progress(h: Health) -> String {
        match h {
            Health::InProgress(why) => why,
            other => panic!("expected InProgress, got {other:?}"),
        }
    }

    fn failed(h: Health) -> String {
        match h {
            Health::Failed(why) => why,
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    fn deployment_obj(status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "generation": 2},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
            "status": status,
        })
    }

    fn available(status: &str) -> Value {
        json!({"type": "Available", "status": status, "reason": "MinimumReplicasAvailable",
               "message": "Deployment has minimum availability."})
    }

    #[test]
    fn deployment_rolled_out_is_ready() {
        let d = deployment_obj(json!({
            "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
            "readyReplicas": 3, "availableReplicas": 3,
            "conditions": [available("True"), {"type": "Progressing", "status": "True",
                "reason": "NewReplicaSetAvailable",
                "message": "ReplicaSet \"web-5d9c\" has successfully progressed."}],
        }));
        assert_eq!(health(&d), Health::Ready);
    }

    #[test]
    fn deployment_without_replicas_defaults_to_one() {
        let mut d = deployment_obj(json!({
            "observedGeneration": 2, "replicas": 1, "updatedReplicas": 1,
            "readyReplicas": 1, "availableReplicas": 1, "conditions": [available("True")],
        }));
        d["spec"].as_object_mut().unwrap().remove("replicas");
        assert_eq!(health(&d), Health::Ready);
        d["status"]["availableReplicas"] = json!(0);
        assert_eq!(in_progress(health(&d)), "0 of 1 replicas available");
    }

    #[test]
    fn deployment_unobserved_generation() {
        let d = deployment_obj(json!({
            "observedGeneration": 1, "replicas": 3, "updatedReplicas": 3,
            "readyReplicas": 3, "availableReplicas": 3, "conditions": [available("True")],
        }));
        assert_eq!(
            in_progress(health(&d)),
            "waiting for the controller to observe generation 2"
        );
        let fresh = deployment_obj(Value::Null);
        assert_eq!(
            in_progress(health(&fresh)),
            "waiting for the controller to observe generation 2"
        );
    }

    #[test]
    fn deployment_rolling_out() {
        let st = json!({
            "observedGeneration": 2, "replicas": 4, "updatedReplicas": 2,
            "readyReplicas": 3, "availableReplicas": 3, "conditions": [available("True")],
        });
        let mut d = deployment_obj(st);
        assert_eq!(in_progress(health(&d)), "2 of 3 replicas updated");
        d["status"]["updatedReplicas"] = json!(3);
        assert_eq!(
            in_progress(health(&d)),
            "1 old replicas pending termination"
        );
        d["status"]["replicas"] = json!(3);
        d["status"]["availableReplicas"] = json!(1);
        assert_eq!(in_progress(health(&d)), "1 of 3 replicas available");
        d["status"]["availableReplicas"] = json!(3);
        d["status"]["readyReplicas"] = json!(2);
        assert_eq!(in_progress(health(&d)), "2 of 3 replicas ready");
        d["status"]["readyReplicas"] = json!(3);
        d["status"]["conditions"] = json!([{"type": "Available", "status": "False",
            "reason": "MinimumReplicasUnavailable",
            "message": "Deployment does not have minimum availability."}]);
        assert_eq!(
            in_progress(health(&d)),
            "Deployment does not have minimum availability."
        );
        d["status"]["conditions"] = json!([]);
        assert_eq!(
            in_progress(health(&d)),
            "waiting for the Available condition"
        );
    }

    #[test]
    fn deployment_progress_deadline_exceeded_fails() {
        let d = deployment_obj(json!({
            "observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
            "readyReplicas": 0, "availableReplicas": 0, "unavailableReplicas": 3,
            "conditions": [available("False"), {"type": "Progressing", "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet \"web-7f8b\" has timed out progressing."}],
        }));
        assert_eq!(
            failed(health(&d)),
            "ReplicaSet \"web-7f8b\" has timed out progressing."
        );
    }

    fn replica_set_obj(status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-5d9c", "generation": 1},
            "spec": {"replicas": 2}, "status": status,
        })
    }

    #[test]
    fn replica_set_rules() {
        let mut rs = replica_set_obj(json!({
            "observedGeneration": 1, "replicas": 2, "fullyLabeledReplicas": 2,
            "readyReplicas": 2, "availableReplicas": 2,
        }));
        assert_eq!(health(&rs), Health::Ready);
        rs["status"]["availableReplicas"] = json!(1);
        assert_eq!(in_progress(health(&rs)), "1 of 2 replicas available");
        rs["status"]["replicas"] = json!(1);
        assert_eq!(in_progress(health(&rs)), "1 of 2 replicas created");
        rs["status"]["replicas"] = json!(3);
        assert_eq!(
            in_progress(health(&rs)),
            "1 extra replicas pending termination"
        );
        rs["status"]["conditions"] = json!([{"type": "ReplicaFailure", "status": "True",
            "reason": "FailedCreate",
            "message": "pods \"web-5d9c-x\" is forbidden: exceeded quota: compute"}]);
        assert_eq!(
            in_progress(health(&rs)),
            "pods \"web-5d9c-x\" is forbidden: exceeded quota: compute"
        );
    }

    fn stateful_set_obj(status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "shop", "generation": 3},
            "spec": {"replicas": 3, "serviceName": "db",
                     "updateStrategy": {"type": "RollingUpdate"}},
            "status": status,
        })
    }

    #[test]
    fn stateful_set_rules() {
        let mut ss = stateful_set_obj(json!({
            "observedGeneration": 3, "replicas": 3, "readyReplicas": 3,
            "currentReplicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
            "currentRevision": "db-6c9f", "updateRevision": "db-6c9f", "collisionCount": 0,
        }));
        assert_eq!(health(&ss), Health::Ready);
        ss["status"]["currentRevision"] = json!("db-5b8e");
        assert_eq!(
            in_progress(health(&ss)),
            "waiting for revision db-6c9f to replace db-5b8e"
        );
        ss["status"]["updatedReplicas"] = json!(1);
        assert_eq!(in_progress(health(&ss)), "1 of 3 replicas updated");
        ss["status"]["readyReplicas"] = json!(2);
        assert_eq!(in_progress(health(&ss)), "2 of 3 replicas ready");
        ss["status"]["replicas"] = json!(2);
        assert_eq!(in_progress(health(&ss)), "2 of 3 replicas created");
        ss["status"]["observedGeneration"] = json!(2);
        assert_eq!(
            in_progress(health(&ss)),
            "waiting for the controller to observe generation 3"
        );
    }

    #[test]
    fn stateful_set_partition_and_on_delete() {
        let mut ss = stateful_set_obj(json!({
            "observedGeneration": 3, "replicas": 3, "readyReplicas": 3,
            "currentReplicas": 2, "updatedReplicas": 1,
            "currentRevision": "db-5b8e", "updateRevision": "db-6c9f",
        }));
        ss["spec"]["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}});
        assert_eq!(health(&ss), Health::Ready);
        ss["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(1);
        assert_eq!(
            in_progress(health(&ss)),
            "1 of 2 replicas updated (partition 1)"
        );
        ss["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        assert_eq!(health(&ss), Health::Ready);
        ss["status"]["readyReplicas"] = json!(0);
        assert_eq!(in_progress(health(&ss)), "0 of 3 replicas ready");
    }

    #[test]
    fn daemon_set_rules() {
        let mut ds = json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "ops", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}},
            "status": {"observedGeneration": 1, "currentNumberScheduled": 3,
                "desiredNumberScheduled": 3, "numberMisscheduled": 0, "numberReady": 3,
                "numberAvailable": 3, "updatedNumberScheduled": 3},
        });
        assert_eq!(health(&ds), Health::Ready);
        ds["status"]["numberReady"] = json!(2);
        assert_eq!(in_progress(health(&ds)), "2 of 3 pods ready");
        ds["status"]["numberAvailable"] = json!(1);
        assert_eq!(in_progress(health(&ds)), "1 of 3 pods available");
        ds["status"]["updatedNumberScheduled"] = json!(0);
        assert_eq!(in_progress(health(&ds)), "0 of 3 pods updated");
        // Nothing scheduled and never observed must not pass as "0 of 0 ready".
        ds["status"] = json!({});
        assert_eq!(
            in_progress(health(&ds)),
            "waiting for the controller to observe generation 1"
        );
    }

    fn job_obj(status: Value) -> Value {
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate", "namespace": "shop", "generation": 1},
            "spec": {"completions": 1, "backoffLimit": 2}, "status": status,
        })
    }

    #[test]
    fn job_rules() {
        let done = job_obj(json!({
            "startTime": "2025-01-01T00:00:00Z", "completionTime": "2025-01-01T00:00:30Z",
            "succeeded": 1,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                 "message": "Reached expected number of succeeded pods"},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                 "message": "Reached expected number of succeeded pods"}],
        }));
        assert_eq!(health(&done), Health::Ready);
        let broke = job_obj(json!({
            "failed": 3,
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}],
        }));
        assert_eq!(
            failed(health(&broke)),
            "Job has reached the specified backoff limit"
        );
        let running = job_obj(json!({"active": 1, "failed": 1, "ready": 0}));
        assert_eq!(
            in_progress(health(&running)),
            "0 of 1 completions, 1 running, 1 failed pods"
        );
        let mut unset = job_obj(json!({}));
        unset["spec"].as_object_mut().unwrap().remove("completions");
        assert_eq!(in_progress(health(&unset)), "not complete");
        let suspended = job_obj(
            json!({"conditions": [{"type": "Suspended", "status": "True",
            "reason": "JobSuspended", "message": "Job suspended"}]}),
        );
        assert_eq!(in_progress(health(&suspended)), "suspended: Job suspended");
    }

    fn pod_obj(status: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "shop"},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            "status": status,
        })
    }

    #[test]
    fn pod_rules() {
        let ready = pod_obj(json!({"phase": "Running", "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True"}]}));
        assert_eq!(health(&ready), Health::Ready);
        assert_eq!(
            health(&pod_obj(json!({"phase": "Succeeded"}))),
            Health::Ready
        );
        let dead = pod_obj(json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory."}));
        assert_eq!(
            failed(health(&dead)),
            "The node was low on resource: memory."
        );
        let crashing = pod_obj(json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
             "message": "containers with unready status: [web]"}],
            "containerStatuses": [{"name": "web", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                    "message": "back-off 1m20s restarting failed container=web"}}}]}));
        assert_eq!(
            in_progress(health(&crashing)),
            "container web: CrashLoopBackOff: back-off 1m20s restarting failed container=web"
        );
        let unready = pod_obj(json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
             "message": "containers with unready status: [web]"}],
            "containerStatuses": [{"name": "web", "state": {"running": {}}}]}));
        assert_eq!(
            in_progress(health(&unready)),
            "containers with unready status: [web]"
        );
        let unschedulable = pod_obj(json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available: 3 Insufficient cpu."}]}));
        assert_eq!(
            in_progress(health(&unschedulable)),
            "0/3 nodes are available: 3 Insufficient cpu."
        );
        assert_eq!(
            in_progress(health(&pod_obj(json!({"phase": "Pending"})))),
            "phase Pending"
        );
    }

    #[test]
    fn pvc_rules() {
        let pvc = |phase: Value| {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": "data", "namespace": "shop"},
                   "spec": {"accessModes": ["ReadWriteOnce"]},
                   "status": {"phase": phase}})
        };
        assert_eq!(health(&pvc(json!("Bound"))), Health::Ready);
        assert_eq!(
            in_progress(health(&pvc(json!("Pending")))),
            "phase Pending, waiting for a volume"
        );
        assert_eq!(
            in_progress(health(&pvc(Value::Null))),
            "waiting for a volume"
        );
        assert_eq!(
            failed(health(&pvc(json!("Lost")))),
            "the bound volume was lost"
        );
    }

    #[test]
    fn crd_rules() {
        let crd = |conditions: Value| {
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "widgets.example.com", "generation": 1},
                   "status": {"conditions": conditions}})
        };
        let established = crd(json!([
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found"},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted"}]));
        assert_eq!(health(&established), Health::Ready);
        let conflict = crd(json!([
            {"type": "NamesAccepted", "status": "False", "reason": "KindConflict",
             "message": "\"Widget\" is already in use"},
            {"type": "Established", "status": "False", "reason": "NotAccepted",
             "message": "not all names are accepted"}]));
        assert_eq!(failed(health(&conflict)), "\"Widget\" is already in use");
        assert_eq!(
            in_progress(health(&crd(json!([])))),
            "waiting for the Established condition"
        );
    }

    #[test]
    fn services_are_ready_even_without_a_load_balancer_address() {
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            "status": {"loadBalancer": {}}});
        assert_eq!(health(&svc), Health::Ready);
    }

    #[test]
    fn objects_without_conditions_are_ready() {
        for obj in [
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                   "data": {"k": "v"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                   "data": {"password": "aHVudGVyMg=="}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": "r"}, "rules": []}),
            json!({"apiVersion": "example.com/v1", "kind": "Widget",
                   "metadata": {"name": "w", "generation": 4}, "spec": {}}),
        ] {
            assert_eq!(health(&obj), Health::Ready, "{obj}");
        }
    }

    fn custom(status: Value) -> Value {
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
               "metadata": {"name": "tls", "namespace": "shop", "generation": 2},
               "spec": {"secretName": "tls"}, "status": status})
    }

    #[test]
    fn custom_resource_rules() {
        let ok = custom(json!({"conditions": [{"type": "Ready", "status": "True",
            "observedGeneration": 2, "reason": "Ready",
            "message": "Certificate is up to date and has not expired"}]}));
        assert_eq!(health(&ok), Health::Ready);
        let issuing = custom(json!({"conditions": [{"type": "Ready", "status": "False",
            "observedGeneration": 2, "reason": "DoesNotExist",
            "message": "Issuing certificate as Secret does not exist"}]}));
        assert_eq!(
            in_progress(health(&issuing)),
            "Issuing certificate as Secret does not exist"
        );
        let unknown = custom(json!({"conditions": [{"type": "Ready", "status": "Unknown"}]}));
        assert_eq!(in_progress(health(&unknown)), "Ready condition is Unknown");
        let stale = custom(json!({"conditions": [{"type": "Ready", "status": "True",
            "observedGeneration": 1}]}));
        assert_eq!(
            in_progress(health(&stale)),
            "waiting for the controller to observe generation 2"
        );
        let old_status = custom(json!({"observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True"}]}));
        assert_eq!(
            in_progress(health(&old_status)),
            "waiting for the controller to observe generation 2"
        );
        let stalled = custom(json!({"conditions": [
            {"type": "Ready", "status": "False", "reason": "Failed"},
            {"type": "Stalled", "status": "True", "reason": "InvalidSpec",
             "message": "spec.issuerRef: issuer \"le\" not found"}]}));
        assert_eq!(
            failed(health(&stalled)),
            "spec.issuerRef: issuer \"le\" not found"
        );
        let reconciling = custom(json!({"conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "Reconciling", "status": "True", "reason": "Progressing",
             "message": "reconciliation in progress"}]}));
        assert_eq!(
            in_progress(health(&reconciling)),
            "reconciliation in progress"
        );
        let no_ready = custom(json!({"conditions": [{"type": "Synced", "status": "True"}]}));
        assert_eq!(health(&no_ready), Health::Ready);
    }

    fn key(group: &str, kind: &str, name: &str) -> ObjectKey {
        ObjectKey {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace: Some("shop".to_string()),
            name: name.to_string(),
        }
    }

    #[test]
    fn kinds_without_a_controller_are_not_fetched() {
        assert!(needs_no_wait(&key("", "Secret", "s")));
        assert!(needs_no_wait(&key("", "ConfigMap", "c")));
        assert!(needs_no_wait(&key(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            "b"
        )));
        assert!(!needs_no_wait(&key("apps", "Deployment", "web")));
        assert!(!needs_no_wait(&key("", "Pod", "p")));
        assert!(!needs_no_wait(&key("example.com", "Secret", "x")));
    }

    fn resolved(group: &str, kind: &str) -> Resolved {
        Resolved {
            resource: kube::discovery::ApiResource {
                group: group.to_string(),
                version: "v1".to_string(),
                api_version: format!("{group}/v1"),
                kind: kind.to_string(),
                plural: format!("{}s", kind.to_lowercase()),
            },
            namespaced: true,
            pending: false,
        }
    }

    #[test]
    fn timeout_names_every_waiting_object_and_why() {
        let targets = vec![
            (
                key("apps", "Deployment", "web"),
                resolved("apps", "Deployment"),
            ),
            (key("", "Secret", "creds"), resolved("", "Secret")),
            (key("batch", "Job", "migrate"), resolved("batch", "Job")),
        ];
        let state = vec![
            Health::InProgress("1 of 3 replicas available".to_string()),
            Health::Ready,
            Health::InProgress("0 of 1 completions, 1 running".to_string()),
        ];
        let err = outcome(&targets, state, Duration::from_secs(300)).unwrap_err();
        assert_eq!(err.kind, shared::error::ErrorKind::Refused);
        assert_eq!(
            err.message,
            "timed out after 5m0s waiting for 2 objects: \
             Deployment.apps/shop/web: 1 of 3 replicas available; \
             Job.batch/shop/migrate: 0 of 1 completions, 1 running"
        );
        assert!(err.hint.unwrap().contains("--timeout"));
    }

    #[test]
    fn failure_is_reported_before_the_waiting() {
        let targets = vec![
            (
                key("apps", "Deployment", "web"),
                resolved("apps", "Deployment"),
            ),
            (key("batch", "Job", "migrate"), resolved("batch", "Job")),
        ];
        let state = vec![
            Health::InProgress("2 of 3 replicas ready".to_string()),
            Health::Failed("Job has reached the specified backoff limit".to_string()),
        ];
        let err = outcome(&targets, state, Duration::from_secs(60)).unwrap_err();
        assert_eq!(
            err.message,
            "1 object failed: Job.batch/shop/migrate: Job has reached the specified backoff \
             limit; 1 more not ready: Deployment.apps/shop/web: 2 of 3 replicas ready"
        );
    }

    #[test]
    fn all_ready_returns_the_list_in_order() {
        let targets = vec![
            (
                key("apps", "Deployment", "web"),
                resolved("apps", "Deployment"),
            ),
            (key("", "ConfigMap", "conf"), resolved("", "ConfigMap")),
        ];
        let waited = outcome(&targets, vec![Health::Ready, Health::Ready], Duration::ZERO)
            .expect("all ready");
        let names: Vec<&str> = waited.iter().map(|w| w.key.name.as_str()).collect();
        assert_eq!(names, ["web", "conf"]);
        assert!(waited.iter().all(|w| w.health == Health::Ready));
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(format_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
