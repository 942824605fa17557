//! One writer per namespace: sync and revert hold a `coordination.k8s.io/v1` Lease while they
//! write, renewed in the background and at every checkpoint of the run (before each rank,
//! before pruning, before the record). A run that loses it (someone else holds it, or it was
//! not renewed in time) stops before its next write.
//!
//! Whether another run's Lease has expired is judged as client-go's leader election judges
//! it, never from the holder's `renewTime` against this machine's clock: the Lease must be
//! seen unchanged (same resourceVersion) for its whole `leaseDurationSeconds`, timed by this
//! process's monotonic clock. So that a run does not wait that long every time it meets a live
//! holder, the clock is used the other way only: a Lease renewed within its duration by this
//! machine's clock (or "in the future") is taken as live at once (exit 3); one that looks
//! expired is watched before it is taken over. A clock running ahead thus costs a wait, never
//! a second writer; one running behind makes a run refuse a little longer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, DynamicObject, ObjectMeta, PostParams, Preconditions};
use kube::discovery::ApiResource;
use shared::{Error, Result};

use crate::cluster::{api_error, idempotent, status_code, when_throttled};

pub const LEASE_NAME: &str = "kubectl-gitops-lock";
const DURATION_SECONDS: i32 = 30;
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// A holder that could not renew for this long stops writing: another run may take the Lease
/// over once it has seen it unchanged for the full 30 s, and this leaves 10 s to spare.
const RENEW_DEADLINE: Duration = Duration::from_secs(20);
/// The longest a run spends giving its Lease back (the server may be gone).
const RELEASE_LIMIT: Duration = Duration::from_secs(5);
/// How often a Lease that looks expired is read while it is watched.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// The longest a Lease is watched, whatever duration it claims (anyone may write one).
const MAX_WATCH: Duration = Duration::from_secs(300);

/// Test-only: `KUBECTL_GITOPS_TEST_PAUSE_BEFORE=<checkpoint>:<file>` makes a run that holds
/// the Lease stop at that checkpoint (`apply`, `rank-<n>`, `prune`, `parent`, `record`), create
/// `<file>.paused`, and wait until `<file>` exists. The faults tests use it to act on the Lease
/// while a run holds it; there is no other way to hit that window reliably.
const TEST_PAUSE: &str = "KUBECTL_GITOPS_TEST_PAUSE_BEFORE";
/// Test-only: `KUBECTL_GITOPS_TEST_CLOCK_OFFSET=<duration>` (e.g. `40s`, `-40s`) shifts this
/// process's wall clock, as a machine whose clock is off would see time. Only the Lease's
/// timestamps use the wall clock.
const TEST_CLOCK_OFFSET: &str = "KUBECTL_GITOPS_TEST_CLOCK_OFFSET";

fn wall_clock() -> jiff::Timestamp {
    let offset = std::env::var(TEST_CLOCK_OFFSET)
        .ok()
        .and_then(|v| {
            let (negative, d) = match v.trim().strip_prefix('-') {
                Some(rest) => (true, rest.to_string()),
                None => (false, v),
            };
            let d = jiff::SignedDuration::try_from(shared::duration::parse(&d).ok()?).ok()?;
            Some(if negative { -d } else { d })
        })
        .unwrap_or_default();
    jiff::Timestamp::now()
        .checked_add(offset)
        .unwrap_or_else(|_| jiff::Timestamp::now())
}

pub fn holder_identity(user: &str) -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    let user = if user.is_empty() {
        "unknown-user"
    } else {
        user
    };
    format!("{user}@{host} (pid {})", std::process::id())
}

/// Text from a Lease, which anyone who may write Leases in the namespace can set: control
/// characters (a newline that would start a forged `error:` line) are shown escaped.
fn escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Whether the Lease's holder stopped renewing it in time by this machine's clock (or it was
/// never filled in): what the exporter reports as not locked. Never used to take a Lease
/// over: a writer judges that by observation ([`acquire`]).
pub fn expired(lease: &Lease) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let (Some(renew), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return true;
    };
    renew
        .0
        .checked_add(jiff::SignedDuration::from_secs(secs as i64))
        .is_ok_and(|until| until < jiff::Timestamp::now())
}

/// A Lease as read, tolerantly: its timestamps are kept as text, since any value the server
/// accepts (year 9999, say) must be judged rather than fail the read.
#[derive(Clone, Debug)]
struct Seen {
    resource_version: String,
    uid: Option<String>,
    holder: Option<String>,
    acquired: Option<String>,
    renewed: Option<String>,
    duration_seconds: Option<i64>,
    transitions: Option<i32>,
}

impl Seen {
    fn from(o: DynamicObject) -> Seen {
        let spec = &o.data["spec"];
        let text = |k: &str| spec[k].as_str().map(str::to_string);
        Seen {
            resource_version: o.metadata.resource_version.unwrap_or_default(),
            uid: o.metadata.uid,
            holder: text("holderIdentity").filter(|h| !h.is_empty()),
            acquired: text("acquireTime"),
            renewed: text("renewTime"),
            duration_seconds: spec["leaseDurationSeconds"].as_i64(),
            transitions: spec["leaseTransitions"]
                .as_i64()
                .and_then(|t| i32::try_from(t).ok()),
        }
    }

    fn holder(&self) -> String {
        escape(self.holder.as_deref().unwrap_or("another process"))
    }

    fn duration(&self) -> Duration {
        let secs = self.duration_seconds.unwrap_or(DURATION_SECONDS as i64);
        Duration::from_secs(secs.max(1) as u64).min(MAX_WATCH)
    }

    /// Live by this machine's clock: renewed within its duration, or at a time this clock has
    /// not reached (or that is not a time at all). Never used to decide that a Lease expired.
    fn looks_live(&self, now: jiff::Timestamp) -> bool {
        let Some(text) = &self.renewed else {
            return false;
        };
        let Ok(renewed) = text.parse::<jiff::Timestamp>() else {
            return true;
        };
        let lasts = jiff::SignedDuration::try_from(self.duration()).unwrap_or_default();
        match renewed.checked_add(lasts) {
            Ok(until) => until > now,
            Err(_) => true,
        }
    }
}

fn held_error(ns: &str, seen: &Seen) -> Error {
    let since = seen
        .acquired
        .as_deref()
        .map(escape)
        .unwrap_or_else(|| "an unknown time".into());
    let renewed = seen
        .renewed
        .as_deref()
        .map(escape)
        .unwrap_or_else(|| "never".into());
    Error::race(format!(
        "namespace {ns} is being changed by {} since {since} (Lease {ns}/{LEASE_NAME}, last renewed {renewed})",
        seen.holder()
    ))
    .hint(format!(
        "wait for it to finish and retry; a holder that died is taken over once its Lease has \
         gone {}s without renewal. If you know it is gone: kubectl delete lease -n {ns} {LEASE_NAME}",
        seen.duration().as_secs()
    ))
}

/// Why a run that held the Lease no longer does. The error that stops the run carries it as
/// its source, so the record can say `interrupted: <this>`.
#[derive(Clone, Debug)]
pub enum Lost {
    To(String),
    Deleted,
    NotRenewed(Duration),
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::To(holder) => write!(f, "lost the namespace lock to {holder}"),
            Lost::Deleted => write!(f, "lost the namespace lock: its Lease was deleted"),
            Lost::NotRenewed(d) => write!(
                f,
                "lost the namespace lock: it could not be renewed for {}s",
                d.as_secs()
            ),
        }
    }
}

impl std::error::Error for Lost {}

impl Lost {
    fn error(&self, ns: &str) -> Error {
        Error::race(self.to_string())
            .with_source(self.clone())
            .hint(format!(
                "another run may be changing namespace {ns}: check `kubectl gitops history -n {ns}` and rerun"
            ))
    }
}

/// The Lease, as typed (to write it) and as raw objects (to read any value).
#[derive(Clone)]
struct Leases {
    typed: Api<Lease>,
    raw: Api<DynamicObject>,
    ns: String,
}

impl Leases {
    fn new(client: kube::Client, ns: &str) -> Leases {
        Leases {
            typed: Api::namespaced(client.clone(), ns),
            raw: Api::namespaced_with(client, ns, &ApiResource::erase::<Lease>(&())),
            ns: ns.to_string(),
        }
    }

    async fn read(&self) -> Result<Option<Seen>> {
        idempotent(|| self.raw.get_opt(LEASE_NAME))
            .await
            .map(|o| o.map(Seen::from))
            .map_err(|e| api_error(format!("reading Lease {}/{LEASE_NAME}", self.ns), e))
    }

    /// Writes our claim: a create without `resource_version`, else a compare-and-swap on it.
    async fn write(
        &self,
        identity: &str,
        acquired: &MicroTime,
        resource_version: Option<&str>,
        transitions: Option<i32>,
    ) -> kube::Result<Lease> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(LEASE_NAME.into()),
                resource_version: resource_version.map(str::to_string),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity.to_string()),
                acquire_time: Some(acquired.clone()),
                renew_time: Some(MicroTime(wall_clock())),
                lease_duration_seconds: Some(DURATION_SECONDS),
                lease_transitions: transitions,
                ..Default::default()
            }),
        };
        let pp = PostParams::default();
        match resource_version {
            None => when_throttled(|| self.typed.create(&pp, &lease)).await,
            Some(_) => when_throttled(|| self.typed.replace(LEASE_NAME, &pp, &lease)).await,
        }
    }

    /// After a write that collided: who holds it now.
    async fn held_now(&self) -> Error {
        match self.read().await {
            Ok(Some(seen)) => held_error(&self.ns, &seen),
            Ok(None) => Error::race(format!(
                "the Lease {}/{LEASE_NAME} changed while this run took it",
                self.ns
            ))
            .hint("retry"),
            Err(e) => e,
        }
    }
}

enum Watched {
    /// Not renewed for its whole duration: its holder is gone.
    Unchanged(Seen),
    /// Renewed, taken over, or released while watched.
    Changed(Option<Seen>),
}

/// Watches a Lease that looks expired until it changes or has stayed the same for its whole
/// duration on this process's monotonic clock. Ctrl-C stops the wait; nothing was written.
async fn watch(leases: &Leases, seen: Seen, before: &str) -> Result<Watched> {
    let lasts = seen.duration();
    crate::log::warn(format!(
        "Lease {}/{LEASE_NAME} held by {} was last renewed {}, longer ago than its {}s by this \
         machine's clock; watching it for {}s before {before}",
        leases.ns,
        seen.holder(),
        seen.renewed
            .as_deref()
            .map(escape)
            .unwrap_or_else(|| "never".into()),
        lasts.as_secs(),
        lasts.as_secs()
    ));
    let started = Instant::now();
    loop {
        let left = lasts.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Ok(Watched::Unchanged(seen));
        }
        tokio::select! {
            _ = tokio::time::sleep(left.min(WATCH_EVERY)) => {}
            _ = tokio::signal::ctrl_c() => {
                return Err(Error::refused(
                    "interrupted (Ctrl-C) while waiting for the namespace lock; nothing was written",
                ));
            }
        }
        let now = leases.read().await?;
        if now.as_ref().map(|s| &s.resource_version) != Some(&seen.resource_version) {
            return Ok(Watched::Changed(now));
        }
    }
}

/// Fails with exit 3 naming the holder if another run holds the namespace's lease; writes
/// nothing. For runs that only record (a sync with nothing to change).
pub async fn check_free(client: kube::Client, ns: &str) -> Result<()> {
    let leases = Leases::new(client, ns);
    let Some(seen) = leases.read().await? else {
        return Ok(());
    };
    if seen.looks_live(wall_clock()) {
        return Err(held_error(ns, &seen));
    }
    match watch(&leases, seen, "recording").await? {
        Watched::Changed(Some(now)) => Err(held_error(ns, &now)),
        Watched::Changed(None) | Watched::Unchanged(_) => Ok(()),
    }
}

/// Takes the namespace's lease or fails with exit 3 naming who holds it.
pub async fn acquire(client: kube::Client, ns: &str, user: &str) -> Result<Guard> {
    let leases = Leases::new(client, ns);
    let identity = holder_identity(user);
    let acquired = MicroTime(wall_clock());
    let found = match leases.read().await? {
        Some(seen) if seen.looks_live(wall_clock()) => return Err(held_error(ns, &seen)),
        Some(seen) => match watch(&leases, seen, "taking it over").await? {
            Watched::Changed(Some(now)) => return Err(held_error(ns, &now)),
            Watched::Changed(None) => None,
            Watched::Unchanged(seen) => Some(seen),
        },
        None => None,
    };
    let written = match &found {
        None => leases.write(&identity, &acquired, None, None).await,
        Some(seen) => {
            crate::log::warn(format!(
                "taking over expired Lease {ns}/{LEASE_NAME} from {}: not renewed for {}s",
                seen.holder(),
                seen.duration().as_secs()
            ));
            // Guarded by the resourceVersion watched: of several runs waiting, one wins.
            let transitions = seen.transitions.unwrap_or(0).saturating_add(1);
            leases
                .write(
                    &identity,
                    &acquired,
                    Some(&seen.resource_version),
                    Some(transitions),
                )
                .await
        }
    };
    let renewed = Instant::now();
    match written {
        Ok(_) => {}
        Err(e) if status_code(&e) == Some(409) => return Err(leases.held_now().await),
        Err(e) => return Err(api_error(format!("taking Lease {ns}/{LEASE_NAME}"), e)),
    }
    let inner = Arc::new(Inner {
        leases,
        identity,
        acquired,
        state: tokio::sync::Mutex::new(State {
            lost: None,
            renewed,
        }),
        lost: std::sync::atomic::AtomicBool::new(false),
    });
    let background = inner.clone();
    let renewer = tokio::spawn(async move {
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            let mut state = background.state.lock().await;
            background.renew(&mut state).await;
            if let Some(lost) = &state.lost {
                crate::log::warn(format!("{lost}; the run stops before its next write"));
                return;
            }
        }
    });
    Ok(Guard { inner, renewer })
}

struct State {
    lost: Option<Lost>,
    /// When the last successful renewal was sent (monotonic).
    renewed: Instant,
}

struct Inner {
    leases: Leases,
    identity: String,
    acquired: MicroTime,
    state: tokio::sync::Mutex<State>,
    /// Set once the Lease is lost: readable without waiting for a renewal in flight (which,
    /// with the server gone, spends its retries while holding `state`).
    lost: std::sync::atomic::AtomicBool,
}

impl Inner {
    /// Renews through the retry policy. A Lease held by someone else or gone is lost at once;
    /// failing requests only once the last renewal is older than [`RENEW_DEADLINE`].
    async fn renew(&self, state: &mut State) {
        if state.lost.is_some() {
            return;
        }
        let sent = Instant::now();
        match self.leases.read().await {
            Ok(None) => state.lost = Some(Lost::Deleted),
            Ok(Some(seen)) if seen.holder.as_deref() != Some(self.identity.as_str()) => {
                state.lost = Some(Lost::To(seen.holder()))
            }
            Ok(Some(seen)) => {
                let written = self
                    .leases
                    .write(
                        &self.identity,
                        &self.acquired,
                        Some(&seen.resource_version),
                        seen.transitions,
                    )
                    .await;
                match written {
                    Ok(_) => state.renewed = sent,
                    // Written by someone else since we read it: the next read says who.
                    Err(e) if status_code(&e) == Some(409) => {
                        if let Ok(Some(now)) = self.leases.read().await
                            && now.holder.as_deref() != Some(self.identity.as_str())
                        {
                            state.lost = Some(Lost::To(now.holder()));
                        }
                    }
                    Err(e) => crate::log::info(4, format!("renewing the namespace lock: {e}")),
                }
            }
            Err(e) => crate::log::info(4, format!("renewing the namespace lock: {}", e.message)),
        }
        if state.lost.is_none() && state.renewed.elapsed() > RENEW_DEADLINE {
            state.lost = Some(Lost::NotRenewed(RENEW_DEADLINE));
        }
        if state.lost.is_some() {
            self.lost.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

pub struct Guard {
    inner: Arc<Inner>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Guard {
    /// Before a step that writes: renews the Lease, or fails (exit 3, carrying [`Lost`]) if it
    /// is no longer ours.
    pub async fn checkpoint(&self, at: &str) -> Result<()> {
        pause_for_tests(at).await;
        let mut state = self.inner.state.lock().await;
        self.inner.renew(&mut state).await;
        match &state.lost {
            Some(lost) => Err(lost.error(&self.inner.leases.ns)),
            None => Ok(()),
        }
    }

    /// Between writes of one step: what the renewer last found, without a request.
    pub async fn still_held(&self) -> Result<()> {
        let mut state = self.inner.state.lock().await;
        if state.lost.is_none() && state.renewed.elapsed() > RENEW_DEADLINE {
            state.lost = Some(Lost::NotRenewed(RENEW_DEADLINE));
        }
        match &state.lost {
            Some(lost) => Err(lost.error(&self.inner.leases.ns)),
            None => Ok(()),
        }
    }

    /// Whether the Lease is still ours as far as this run knows, without waiting for a
    /// renewal in flight.
    pub async fn held(&self) -> bool {
        !self.inner.lost.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Gives the lease back, only if it is still ours (uid and resourceVersion preconditions).
    /// Best effort and bounded: a server that does not answer gets [`RELEASE_LIMIT`], then the
    /// Lease is left to expire, which the next run judges by observation.
    pub async fn release(self) {
        self.renewer.abort();
        let ns = self.inner.leases.ns.clone();
        if tokio::time::timeout(RELEASE_LIMIT, self.give_back())
            .await
            .is_err()
        {
            crate::log::warn(format!(
                "could not release Lease {ns}/{LEASE_NAME} within {}s; it expires on its own",
                RELEASE_LIMIT.as_secs()
            ));
        }
    }

    async fn give_back(&self) {
        let leases = &self.inner.leases;
        let Ok(Some(seen)) = leases.read().await else {
            return;
        };
        if seen.holder.as_deref() != Some(self.inner.identity.as_str()) {
            return;
        }
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: seen.uid.clone(),
                resource_version: Some(seen.resource_version.clone()),
            }),
            ..Default::default()
        };
        if let Err(e) = idempotent(|| leases.typed.delete(LEASE_NAME, &dp)).await
            && !matches!(status_code(&e), Some(404 | 409))
        {
            crate::log::warn(format!(
                "could not release Lease {}/{LEASE_NAME}: {e}; it expires on its own",
                leases.ns
            ));
        }
    }
}

async fn pause_for_tests(at: &str) {
    let Ok(v) = std::env::var(TEST_PAUSE) else {
        return;
    };
    let Some((point, file)) = v.split_once(':') else {
        return;
    };
    if point != at {
        return;
    }
    let _ = std::fs::write(format!("{file}.paused"), "");
    while !std::path::Path::new(file).exists() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_names_user_host_and_pid() {
        let id = holder_identity("ann");
        let host = id
            .strip_prefix("ann@")
            .and_then(|rest| rest.split(" (pid ").next())
            .unwrap();
        assert!(!host.is_empty() && host != "unknown-host", "{id}");
        assert!(
            id.ends_with(&format!("(pid {})", std::process::id())),
            "{id}"
        );
        assert!(holder_identity("").starts_with("unknown-user@"));
    }

    fn seen(renewed: Option<&str>, secs: Option<i64>) -> Seen {
        Seen {
            resource_version: "1".into(),
            uid: None,
            holder: Some("a@b (pid 1)".into()),
            acquired: None,
            renewed: renewed.map(str::to_string),
            duration_seconds: secs,
            transitions: None,
        }
    }

    #[test]
    fn the_clock_only_ever_says_live() {
        let now: jiff::Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let live = seen(Some("2026-01-01T11:59:45.000000Z"), Some(30));
        assert!(live.looks_live(now));
        let old = seen(Some("2026-01-01T11:59:00.000000Z"), Some(30));
        assert!(
            !old.looks_live(now),
            "expired by the clock: watched, not taken"
        );
        // A time this clock has not reached, or no time at all: live.
        assert!(seen(Some("2026-01-01T13:00:00.000000Z"), Some(30)).looks_live(now));
        assert!(seen(Some("9999-12-31T23:59:59.999999Z"), Some(30)).looks_live(now));
        assert!(!seen(None, Some(30)).looks_live(now));
    }

    #[test]
    fn a_claimed_duration_is_bounded() {
        assert_eq!(seen(None, None).duration(), Duration::from_secs(30));
        assert_eq!(seen(None, Some(0)).duration(), Duration::from_secs(1));
        assert_eq!(seen(None, Some(-5)).duration(), Duration::from_secs(1));
        assert_eq!(seen(None, Some(i64::MAX)).duration(), MAX_WATCH);
    }

    #[test]
    fn lease_text_cannot_start_a_line() {
        assert_eq!(escape("a\nerror: x\r\t"), "a\\nerror: x\\r\\t");
        assert_eq!(escape("ann@host (pid 1)"), "ann@host (pid 1)");
    }
}
