//! The waiting machinery of `--wait`: watches the applied objects (`watch.rs`; polls those
//! it may not watch), judges each with the rules, shows progress, and ends on all ready, the
//! first failure, or the timeout.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use crate::manifest::ObjectKey;
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use shared::{Error, Result};
use tokio::time::Instant;

use super::live::{judge_live, judge_with};
use super::verdict::{Status, Verdict};
use super::watch::{Note, Watches};
use crate::cluster::{Cluster, Resolved, api_error, status_code};
use shared::duration::format_duration;

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

/// One object to wait for.
#[derive(Debug, Clone)]
pub struct Target {
    pub key: ObjectKey,
    pub resolved: Resolved,
    /// `label=value` the applied object carries (our ApplySet's label, or a hook run's): the
    /// objects of a kind and namespace sharing it are watched together. `None`: polled.
    pub selector: Option<String>,
}

impl Target {
    /// Watched by the label of ours that `applied` (the object as we applied it) carries.
    pub fn of(key: ObjectKey, resolved: Resolved, applied: Option<&Value>) -> Target {
        let labels = applied.map(|o| &o["metadata"]["labels"]);
        let selector = [crate::applyset::LABEL_PART_OF, crate::phases::HOOK_LABEL]
            .into_iter()
            .find_map(|l| Some(format!("{l}={}", labels?[l].as_str()?)));
        Target {
            key,
            resolved,
            selector,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Waited {
    pub key: ObjectKey,
    pub verdict: Verdict,
    /// How long after the wait began the object was first seen ready or failed.
    pub settled: Option<Duration>,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Ready,
    /// At least one object failed (waiting cannot help).
    Failed,
    TimedOut,
    /// `stop` completed (Ctrl-C).
    Interrupted,
}

/// Every object's last verdict, and how the wait ended.
#[derive(Debug, Clone)]
pub struct Report {
    pub waited: Vec<Waited>,
    pub end: End,
    pub timeout: Duration,
}

const CONCURRENCY: usize = 16;
/// More lines than this would scroll off a terminal and garble the redraw.
const MAX_LINES: usize = 10;
/// The pace of polling (objects that cannot be watched), and of retrying a failed watch.
pub(super) const FIRST_PAUSE: Duration = Duration::from_millis(500);
pub(super) const MAX_PAUSE: Duration = Duration::from_secs(2);
/// Verdicts that depend on the time (grace periods, deadlines) change without an event:
/// judged again from what the watches hold this often (no request).
const TICK: Duration = Duration::from_secs(1);
/// Events come in bursts while many objects roll out: judged together at most this often.
const ROUND: Duration = Duration::from_millis(200);

/// Where an object's verdict comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Ready once applied (`needs_no_wait`): never read.
    Applied,
    Watch(usize),
    Poll,
}

/// Waits until all `targets` are ready, one has failed, `timeout` has passed (a zero timeout
/// looks once) or `stop` completes, reading them by watch (by GET when they cannot be
/// watched). Shows progress on stderr when it is a terminal and always ends with a table
/// there. Errs only when the objects cannot be read at all (no rights).
pub async fn wait(
    cluster: &Cluster,
    targets: &[Target],
    timeout: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Report> {
    if targets.is_empty() {
        return Ok(Report {
            waited: Vec::new(),
            end: End::Ready,
            timeout,
        });
    }
    let started = Instant::now();
    let deadline = started + timeout;
    // Even a zero timeout gets one honest look, however slowly the server answers it.
    let grace = timeout.clamp(Duration::from_secs(5), Duration::from_secs(30));
    let last_look = deadline.max(started + grace);
    let (mut watches, mut notes) = Watches::new(cluster);
    let mut source: Vec<Source> = targets
        .iter()
        .map(|t| match &t.selector {
            _ if needs_no_wait(&t.key) => Source::Applied,
            Some(selector) => {
                Source::Watch(watches.group(&t.resolved, t.key.namespace.as_deref(), selector))
            }
            None => Source::Poll,
        })
        .collect();
    let mut state: Vec<Verdict> = source
        .iter()
        .map(|s| match s {
            Source::Applied => Verdict::ready("", ""),
            _ => Verdict::in_progress("NotChecked", "not checked yet"),
        })
        .collect();
    let mut looked: Vec<bool> = source.iter().map(|s| *s == Source::Applied).collect();
    let mut settled: Vec<Option<Duration>> = state
        .iter()
        .map(|v| v.is_ready().then_some(Duration::ZERO))
        .collect();
    let mut progress = Progress::new();
    let mut poll = Poll::new(started);
    let mut stop = std::pin::pin!(stop);
    let end = loop {
        watches.next_round();
        let gone = judge_watched(targets, &source, &mut watches, &mut state, &mut looked);
        for i in gone {
            // Not where its watch looks (deleted, or relabelled by someone): a GET says
            // which, as the polling did.
            crate::log::info(
                4,
                format!("{}: not in its watch; reading it", targets[i].key),
            );
            source[i] = Source::Poll;
            poll.now();
        }
        let polled: Vec<usize> = (0..targets.len())
            .filter(|&i| source[i] == Source::Poll && !state[i].is_ready())
            .collect();
        if !polled.is_empty() && poll.due() {
            let limit = deadline
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_secs(5), Duration::from_secs(30));
            let look = futures::stream::iter(polled)
                .map(|i| async move { (i, check(cluster, &targets[i], limit).await) })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<(usize, Result<Verdict>)>>();
            let results = tokio::select! {
                r = look => r,
                _ = &mut stop => break End::Interrupted,
            };
            for (i, result) in results {
                state[i] = result?;
                looked[i] = true;
            }
            poll.done();
        }
        for (i, v) in state.iter().enumerate() {
            if v.status != Status::InProgress && settled[i].is_none() {
                settled[i] = Some(started.elapsed());
            }
        }
        progress.show(targets, &state);
        if state.iter().all(Verdict::is_ready) {
            break End::Ready;
        }
        if state.iter().any(|v| v.status == Status::Failed) {
            break End::Failed;
        }
        let now = Instant::now();
        if now >= deadline && (looked.iter().all(|l| *l) || now >= last_look) {
            break End::TimedOut;
        }
        // Until something happens, the clock moves the time-based rules, the next poll is
        // due, or time is up.
        let mut wake = now + TICK;
        if source.contains(&Source::Poll) {
            wake = wake.min(poll.next);
        }
        if now < deadline {
            wake = wake.min(deadline);
        } else {
            wake = wake.min(last_look);
        }
        let round = now + ROUND;
        tokio::select! {
            note = notes.recv() => {
                // A burst of events is judged once.
                tokio::select! {
                    _ = tokio::time::sleep_until(round.min(wake)) => {}
                    _ = &mut stop => break End::Interrupted,
                }
                take_notes(note, &mut notes, &mut watches, &mut source, &mut poll);
            }
            _ = tokio::time::sleep_until(wake) => {}
            _ = &mut stop => break End::Interrupted,
        }
    };
    drop(progress);
    if end == End::TimedOut {
        never_listed(&source, &looked, &watches, started.elapsed(), &mut state);
    }
    print_table(targets, &state);
    let waited = targets
        .iter()
        .zip(state)
        .zip(settled)
        .map(|((t, verdict), settled)| Waited {
            key: t.key.clone(),
            verdict,
            settled,
        })
        .collect();
    Ok(Report {
        waited,
        end,
        timeout,
    })
}

/// Takes in `first` and every note waiting behind it; the objects of a watch given up
/// (refused by RBAC) are polled from now on.
fn take_notes(
    first: Option<Note>,
    notes: &mut tokio::sync::mpsc::UnboundedReceiver<Note>,
    watches: &mut Watches,
    source: &mut [Source],
    poll: &mut Poll,
) {
    let mut note = first;
    while let Some(n) = note {
        if let Some(given_up) = watches.note(n) {
            for s in source.iter_mut().filter(|s| **s == Source::Watch(given_up)) {
                *s = Source::Poll;
            }
            poll.now();
        }
        note = notes.try_recv().ok();
    }
}

/// At the timeout, the objects whose watch never listed are said as the polling said them:
/// the last error, or no answer at all.
fn never_listed(
    source: &[Source],
    looked: &[bool],
    watches: &Watches,
    waited: Duration,
    state: &mut [Verdict],
) {
    for (i, s) in source.iter().enumerate() {
        if let Source::Watch(g) = *s
            && !looked[i]
        {
            state[i] = match watches.trouble(g) {
                Some(message) => {
                    Verdict::in_progress("ReadFailed", format!("reading the status: {message}"))
                }
                None => Verdict::in_progress(
                    "NoAnswer",
                    format!(
                        "no answer from the API server within {}",
                        format_duration(waited)
                    ),
                ),
            };
        }
    }
}

/// Judges the watched objects not ready yet from what their watches hold (those whose watch
/// has listed); as with polling, a ready object is not looked at again. Returns those a
/// listed watch does not hold.
fn judge_watched(
    targets: &[Target],
    source: &[Source],
    watches: &mut Watches,
    state: &mut [Verdict],
    looked: &mut [bool],
) -> Vec<usize> {
    let mut gone = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let Source::Watch(g) = source[i] else {
            continue;
        };
        if state[i].is_ready() || !watches.listed(g) {
            continue;
        }
        let namespace = t.key.namespace.as_deref();
        let Some(obj) = watches.get(g, namespace, &t.key.name) else {
            gone.push(i);
            continue;
        };
        state[i] = judge_with(&obj, || watches.related(namespace?, &obj));
        looked[i] = true;
    }
    gone
}

/// When the objects that are polled are read next: soon at first, then every 2 s.
struct Poll {
    next: Instant,
    pause: Duration,
}

impl Poll {
    fn new(now: Instant) -> Poll {
        Poll {
            next: now,
            pause: FIRST_PAUSE,
        }
    }

    fn due(&self) -> bool {
        Instant::now() >= self.next
    }

    fn now(&mut self) {
        self.next = Instant::now();
    }

    fn done(&mut self) {
        self.next = Instant::now() + self.pause;
        self.pause = (self.pause * 3 / 2).min(MAX_PAUSE);
    }
}

/// Reads one object by GET and judges it: how objects that cannot be watched are waited for.
async fn check(cluster: &Cluster, target: &Target, limit: Duration) -> Result<Verdict> {
    let (key, resolved) = (&target.key, &target.resolved);
    let api = cluster.api(resolved, key.namespace.as_deref());
    let answer = match tokio::time::timeout(limit, api.get_opt(&key.name)).await {
        Ok(answer) => answer,
        Err(_) => {
            return Ok(Verdict::in_progress(
                "NoAnswer",
                format!(
                    "no answer from the API server within {}",
                    format_duration(limit)
                ),
            ));
        }
    };
    match answer {
        Ok(Some(obj)) => {
            let mut value = serde_json::to_value(&obj)
                .map_err(|e| Error::refused(format!("{key}: reading the status: {e}")))?;
            // The rules dispatch on these; fill them in should a response lack them.
            if value["kind"].as_str().is_none_or(str::is_empty) {
                value["kind"] = resolved.resource.kind.clone().into();
                value["apiVersion"] = resolved.resource.api_version.clone().into();
            }
            Ok(judge_live(cluster, &value, limit).await)
        }
        // Something deleted it after the apply (a Job's ttlSecondsAfterFinished, a person):
        // there is nothing left to judge, and waiting longer cannot change that.
        Ok(None) => Ok(Verdict::failed("NotFound", "deleted after it was applied")),
        // Missing rights will not appear by retrying.
        Err(e) if matches!(status_code(&e), Some(401 | 403)) => {
            Err(api_error(format_args!("reading the status of {key}"), e))
        }
        // Anything else (a restarting API server, a dropped connection) may pass.
        Err(e) => Ok(Verdict::in_progress(
            "ReadFailed",
            api_error(format_args!("reading the status"), e).message,
        )),
    }
}

impl Report {
    pub fn is_ready(&self) -> bool {
        self.end == End::Ready
    }

    fn with(&self, want: Status) -> impl Iterator<Item = &Waited> {
        self.waited.iter().filter(move |w| w.verdict.status == want)
    }

    /// The objects that failed, each with its verdict.
    pub fn failed(&self) -> impl Iterator<Item = &Waited> {
        self.with(Status::Failed)
    }

    /// The objects still in progress when the wait ended.
    pub fn waiting(&self) -> impl Iterator<Item = &Waited> {
        self.with(Status::InProgress)
    }

    /// What went wrong, for people: each object that is not ready with its reason. `None`
    /// when everything became ready.
    pub fn error(&self) -> Option<Error> {
        let list = |want: Status| -> Vec<String> {
            self.with(want)
                .map(|w| format!("{}: {}", w.key, w.verdict.summary()))
                .collect()
        };
        let failed = list(Status::Failed);
        let waiting = list(Status::InProgress);
        match self.end {
            End::Ready => None,
            End::Failed => {
                let mut message =
                    format!("{} failed: {}", objects(failed.len()), failed.join("; "));
                if !waiting.is_empty() {
                    let _ = write!(
                        message,
                        "; {} more not ready: {}",
                        waiting.len(),
                        waiting.join("; ")
                    );
                }
                Some(Error::refused(message).hint(
                    "kubectl describe the failed objects (and their pods and events) for details",
                ))
            }
            End::TimedOut => Some(
                Error::refused(format!(
                    "timed out after {} waiting for {}: {}",
                    format_duration(self.timeout),
                    objects(waiting.len()),
                    waiting.join("; ")
                ))
                .hint("allow more time with --timeout, or see what is stuck with kubectl describe"),
            ),
            End::Interrupted => Some(Error::refused(format!(
                "interrupted (Ctrl-C) while waiting for {}{}",
                objects(waiting.len() + failed.len()),
                if waiting.is_empty() {
                    String::new()
                } else {
                    format!(": {}", waiting.join("; "))
                }
            ))),
        }
    }

    /// The outcome a revision record keeps, short: `failed: <object>: <reason>, ...` or
    /// `failed: not ready within <timeout>: <object> (<reason>), ...`; `interrupted`.
    pub fn outcome(&self) -> Option<String> {
        const SHOWN: usize = 5;
        let listed = |items: Vec<String>| {
            let mut s = items[..items.len().min(SHOWN)].join(", ");
            if items.len() > SHOWN {
                let _ = write!(s, " and {} more", items.len() - SHOWN);
            }
            s
        };
        match self.end {
            End::Ready => None,
            End::Interrupted => Some("interrupted".to_string()),
            End::Failed => Some(format!(
                "failed: {}",
                listed(
                    self.failed()
                        .map(|w| format!("{}: {}", w.key, w.verdict.reason))
                        .collect()
                )
            )),
            End::TimedOut => Some(format!(
                "failed: not ready within {}: {}",
                format_duration(self.timeout),
                listed(
                    self.waiting()
                        .map(|w| match w.verdict.reason.as_str() {
                            "" => w.key.to_string(),
                            r => format!("{} ({r})", w.key),
                        })
                        .collect()
                )
            )),
        }
    }
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

    fn show(&mut self, targets: &[Target], state: &[Verdict]) {
        let waiting: Vec<String> = targets
            .iter()
            .zip(state)
            .filter(|(_, v)| !v.is_ready())
            .map(|(t, v)| format!("{}: {}", t.key, v.summary()))
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

fn print_table(targets: &[Target], state: &[Verdict]) {
    let rows: Vec<(String, &Verdict)> = targets
        .iter()
        .zip(state)
        .map(|(t, v)| (t.key.to_string(), v))
        .collect();
    let width = |column: &str, cell: fn(&(String, &Verdict)) -> usize| {
        rows.iter()
            .map(cell)
            .chain([column.len()])
            .max()
            .unwrap_or(0)
    };
    let key_width = width("OBJECT", |(k, _)| k.len());
    let reason_width = width("REASON", |(_, v)| v.reason.len());
    let status_width = "InProgress".len();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:key_width$}  {:status_width$}  {:reason_width$}  MESSAGE",
        "OBJECT", "STATUS", "REASON"
    );
    for (key, v) in rows {
        let style = match v.status {
            Status::Ready => anstyle::AnsiColor::Green.on_default(),
            Status::InProgress => anstyle::AnsiColor::Yellow.on_default(),
            Status::Failed => anstyle::AnsiColor::Red.on_default(),
        };
        let label = v.status.label();
        let pad = status_width - label.len();
        let line = format!(
            "{key:key_width$}  {style}{label}{style:#}{:pad$}  {:reason_width$}  {}",
            "", v.reason, v.message
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let _ = anstream::stderr().write_all(out.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn objects_are_watched_by_the_label_of_ours_they_carry() {
        let resolved = Resolved {
            resource: kube::discovery::ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(
                &(),
            ),
            namespaced: true,
            pending: false,
        };
        let of = |labels: serde_json::Value| {
            Target::of(
                key("apps", "Deployment", "web"),
                resolved.clone(),
                Some(&serde_json::json!({"metadata": {"labels": labels}})),
            )
            .selector
        };
        assert_eq!(
            of(
                serde_json::json!({"app": "web", "applyset.kubernetes.io/part-of": "applyset-x-v1"})
            )
            .as_deref(),
            Some("applyset.kubernetes.io/part-of=applyset-x-v1")
        );
        assert_eq!(
            of(serde_json::json!({"gitops.kubectl.io/hook-of": "applyset-x-v1"})).as_deref(),
            Some("gitops.kubectl.io/hook-of=applyset-x-v1")
        );
        // The target Namespace carries neither: it is polled.
        assert_eq!(of(serde_json::json!({"app": "web"})), None);
        assert_eq!(
            Target::of(key("apps", "Deployment", "web"), resolved.clone(), None).selector,
            None
        );
    }

    fn report(keys: Vec<ObjectKey>, state: Vec<Verdict>, end: End, timeout: Duration) -> Report {
        Report {
            waited: keys
                .into_iter()
                .zip(state)
                .map(|(key, verdict)| Waited {
                    key,
                    verdict,
                    settled: None,
                })
                .collect(),
            end,
            timeout,
        }
    }

    #[test]
    fn timeout_names_every_waiting_object_and_why() {
        let r = report(
            vec![
                key("apps", "Deployment", "web"),
                key("", "Secret", "creds"),
                key("batch", "Job", "migrate"),
            ],
            vec![
                Verdict::in_progress("LessAvailable", "1 of 3 updated replicas available"),
                Verdict::ready("", ""),
                Verdict::in_progress("JobNotComplete", "0 of 1 completions, 1 running"),
            ],
            End::TimedOut,
            Duration::from_secs(300),
        );
        let err = r.error().unwrap();
        assert_eq!(err.kind, shared::error::ErrorKind::Refused);
        assert_eq!(
            err.message,
            "timed out after 5m0s waiting for 2 objects: \
             Deployment.apps/shop/web: LessAvailable: 1 of 3 updated replicas available; \
             Job.batch/shop/migrate: JobNotComplete: 0 of 1 completions, 1 running"
        );
        assert!(err.hint.unwrap().contains("--timeout"));
        assert_eq!(
            r.outcome().unwrap(),
            "failed: not ready within 5m0s: Deployment.apps/shop/web (LessAvailable), \
             Job.batch/shop/migrate (JobNotComplete)"
        );
    }

    #[test]
    fn failure_is_reported_before_the_waiting() {
        let r = report(
            vec![
                key("apps", "Deployment", "web"),
                key("batch", "Job", "migrate"),
            ],
            vec![
                Verdict::in_progress("LessReady", "2 of 3 replicas ready"),
                Verdict::failed(
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                ),
            ],
            End::Failed,
            Duration::from_secs(60),
        );
        assert_eq!(
            r.error().unwrap().message,
            "1 object failed: Job.batch/shop/migrate: BackoffLimitExceeded: Job has reached the \
             specified backoff limit; 1 more not ready: Deployment.apps/shop/web: LessReady: 2 of \
             3 replicas ready"
        );
        assert_eq!(
            r.outcome().unwrap(),
            "failed: Job.batch/shop/migrate: BackoffLimitExceeded"
        );
        let names: Vec<&str> = r.failed().map(|w| w.key.name.as_str()).collect();
        assert_eq!(names, ["migrate"]);
    }

    #[test]
    fn all_ready_is_no_error_and_interrupted_is_recorded_as_such() {
        let keys = || {
            vec![
                key("apps", "Deployment", "web"),
                key("", "ConfigMap", "conf"),
            ]
        };
        let ready = report(
            keys(),
            vec![Verdict::ready("", ""), Verdict::ready("", "")],
            End::Ready,
            Duration::ZERO,
        );
        assert!(ready.is_ready() && ready.error().is_none() && ready.outcome().is_none());
        let stopped = report(
            keys(),
            vec![
                Verdict::in_progress("LessAvailable", "0 of 1"),
                Verdict::ready("", ""),
            ],
            End::Interrupted,
            Duration::from_secs(60),
        );
        assert_eq!(stopped.outcome().unwrap(), "interrupted");
        assert!(
            stopped
                .error()
                .unwrap()
                .message
                .starts_with("interrupted (Ctrl-C) while waiting for 1 object: Deployment"),
        );
    }
}
