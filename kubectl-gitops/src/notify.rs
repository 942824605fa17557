//! Notifications: every sync or revert that was meant to write (not `--dry-run`, not declined
//! at its prompt; one that failed while planning too) POSTs one JSON event to each webhook of
//! `--notify`, `--notify-env` and the environment's `notify:` in gitops.yaml, once the run is
//! over: namespace, environment, tag,
//! commit, revision, outcome, user, duration, counts, and a `text` line that Slack and
//! Mattermost incoming webhooks show as is.
//!
//! Delivery never changes the run: the webhooks are tried at once, each retried with backoff
//! within [`BUDGET`] (so a receiver that is down or failing delays the run by at most that
//! much), and a webhook that could not be reached costs one warning. Webhook URLs usually
//! carry a token, so no message, warning or log names one: a target is named by where it came
//! from (`--notify #2`, `--notify-env SLACK_URL`). Events carry names, counts and the first
//! line of an error, never object content, so no Secret value can be in one.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use shared::config::NotifyTarget;
use shared::{Error, Result};

use crate::outcome::{self, Kind};

/// The longest delivery may delay a run, for every webhook together (they are tried at once).
pub const BUDGET: Duration = Duration::from_secs(5);
/// The longest one attempt may take; a slower receiver is retried while the budget lasts.
const ATTEMPT: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// A webhook, named only by where it came from.
pub struct Target {
    origin: String,
    uri: hyper::Uri,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Target {
    fn new(origin: String, url: &str) -> std::result::Result<Target, String> {
        if let Some(problem) = shared::refname::webhook_url_problem(url) {
            return Err(format!("{origin} {problem}"));
        }
        let uri = url
            .parse::<hyper::Uri>()
            .map_err(|_| format!("{origin} is not a valid URL"))?;
        Ok(Target { origin, uri })
    }
}

/// The webhooks of a run: the flags' (an unusable one is an error, exit 2, before anything is
/// written) and the environment's in gitops.yaml (one whose variable is unset here is skipped
/// with a warning: the file is shared by every machine that deploys, the variables are not).
pub fn targets(
    urls: &[String],
    env_names: &[String],
    config: &[NotifyTarget],
    environment: Option<&str>,
) -> Result<Vec<Target>> {
    let mut out = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        out.push(Target::new(format!("--notify #{}", i + 1), url).map_err(Error::invalid)?);
    }
    for name in env_names {
        let origin = format!("--notify-env {name}");
        if let Some(problem) = shared::refname::env_var_problem(name) {
            return Err(Error::invalid(format!("{origin}: the name {problem}")));
        }
        let url = std::env::var(name).unwrap_or_default();
        if url.is_empty() {
            return Err(Error::invalid(format!(
                "{origin}: the environment variable {name} is not set"
            ))
            .hint(format!("export {name}=<webhook URL>, or drop --notify-env")));
        }
        out.push(Target::new(origin, &url).map_err(Error::invalid)?);
    }
    let env = environment.unwrap_or("?");
    for (i, target) in config.iter().enumerate() {
        let origin = format!("notify #{} of environment {env} in gitops.yaml", i + 1);
        let made = match target {
            NotifyTarget::Url(url) => Target::new(origin, url),
            NotifyTarget::Env(name) => match std::env::var(name) {
                Ok(url) if !url.is_empty() => Target::new(format!("{origin} (${name})"), &url),
                _ => {
                    crate::log::warn(format!(
                        "{origin}: the environment variable {name} is not set; no event goes there"
                    ));
                    continue;
                }
            },
        };
        match made {
            Ok(t) => out.push(t),
            Err(problem) => crate::log::warn(format!("{problem}; no event goes there")),
        }
    }
    Ok(out)
}

/// One run, as the webhooks receive it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    /// One line for people; Slack and Mattermost show it as the message.
    pub text: String,
    /// `sync` or `revert`.
    pub verb: &'static str,
    pub namespace: String,
    pub environment: Option<String>,
    pub tag: String,
    pub commit: String,
    /// The revision this run recorded (its last, after a rollback); none if it recorded none.
    pub revision: Option<u64>,
    /// `succeeded`, `failed`, `rolled back` or `interrupted`.
    pub outcome: &'static str,
    /// Why it failed, rolled back or was interrupted: the first line of the run's error.
    pub reason: Option<String>,
    /// With `rolled back`: the revision the namespace went back to.
    pub rolled_back_to: Option<u64>,
    /// The outcome as the revision record says it (`kubectl gitops history`).
    pub recorded_outcome: Option<String>,
    pub user: String,
    pub duration_seconds: f64,
    pub applied: usize,
    pub pruned: usize,
    /// When the run ended, RFC 3339 UTC.
    pub time: String,
    pub tool: String,
}

/// What a run got done, gathered as it goes so that a failure part way loses none of it.
#[derive(Debug, Default)]
pub struct Facts {
    /// Whether it was meant to write: not a dry run, not declined at the prompt. Only such
    /// runs are told.
    pub meant_to_write: bool,
    pub applied: usize,
    pub pruned: usize,
    /// The revision recorded last (the rollback's, after one).
    pub revision: Option<u64>,
    /// That revision's outcome as recorded.
    pub outcome: Option<String>,
}

/// What the run was about; the rest comes from its [`Facts`] and result.
pub struct Run<'a> {
    pub verb: &'static str,
    pub namespace: &'a str,
    pub environment: Option<&'a str>,
    pub tag: &'a str,
    pub commit: &'a str,
    pub user: &'a str,
    pub started: Instant,
}

/// The event of a run that ended with `error` (or none), having got `progress` done.
pub fn event(run: &Run, progress: &Facts, error: Option<&Error>) -> Event {
    let recorded = progress.outcome.clone();
    let recorded_kind = recorded.as_deref().map(outcome::classify);
    let error_line = error.map(|e| first_line(&e.message));
    let kind = match (recorded_kind, &error_line) {
        (Some(Kind::RolledBack), _) => Kind::RolledBack,
        (Some(Kind::Interrupted), _) => Kind::Interrupted,
        (_, Some(_)) => Kind::Failed,
        (_, None) => Kind::Succeeded,
    };
    let reason = match kind {
        Kind::Succeeded => None,
        _ => error_line.or_else(|| {
            recorded
                .as_deref()
                .and_then(outcome::failure_reason)
                .map(str::to_string)
        }),
    };
    let rolled_back_to = recorded.as_deref().and_then(outcome::rolled_back_to);
    let duration = run.started.elapsed();
    let mut e = Event {
        text: String::new(),
        verb: run.verb,
        namespace: run.namespace.to_string(),
        environment: run.environment.map(str::to_string),
        tag: run.tag.to_string(),
        commit: run.commit.to_string(),
        revision: progress.revision,
        outcome: kind.as_str(),
        reason,
        rolled_back_to,
        recorded_outcome: recorded,
        user: run.user.to_string(),
        duration_seconds: (duration.as_millis() as f64) / 1000.0,
        applied: progress.applied,
        pruned: progress.pruned,
        time: jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        tool: format!("kubectl-gitops/{}", shared::VERSION),
    };
    e.text = text(&e);
    e
}

/// The error's first line, with the lines it introduces (`...: ` then a list) until one that
/// stands on its own: one line for a chat message, bounded.
fn first_line(s: &str) -> String {
    const MAX: usize = 400;
    let mut lines = s.lines().map(str::trim);
    let mut out = lines.next().unwrap_or_default().to_string();
    while out.ends_with(':')
        && let Some(next) = lines.next()
    {
        out.push(' ');
        out.push_str(next);
    }
    if out.len() > MAX {
        let cut = (0..=MAX)
            .rev()
            .find(|&i| out.is_char_boundary(i))
            .unwrap_or(0);
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// When this process started: a run's duration includes reading the tag and planning.
pub fn started() -> Instant {
    static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

/// `sync of namespace shop (dev) to deploy/dev/... (abc1234) failed: <reason>; revision 5,
/// 2 applied, 0 pruned, 41.2s, by ann`.
fn text(e: &Event) -> String {
    let env = e
        .environment
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let short: String = e.commit.chars().take(7).collect();
    let what = match (e.outcome, &e.reason, e.rolled_back_to) {
        ("rolled back", reason, Some(n)) => format!(
            "failed and was rolled back to revision {n}{}",
            reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        (kind, Some(reason), _) => format!("{kind}: {reason}"),
        (kind, None, _) => kind.to_string(),
    };
    let mut facts = Vec::new();
    if let Some(r) = e.revision {
        facts.push(format!("revision {r}"));
    }
    facts.push(format!("{} applied, {} pruned", e.applied, e.pruned));
    facts.push(format!("{:.1}s", e.duration_seconds));
    if !e.user.is_empty() {
        facts.push(format!("by {}", e.user));
    }
    format!(
        "kubectl gitops {} of namespace {}{env} to {} ({short}) {what}; {}",
        e.verb,
        e.namespace,
        e.tag,
        facts.join(", ")
    )
}

/// Delivers `event` to every target at once; returns when each has answered 2xx or has used
/// up [`BUDGET`]. Never fails: an undelivered event is one warning per webhook.
pub async fn send(targets: &[Target], event: &Event) {
    if targets.is_empty() {
        return;
    }
    let body = Bytes::from(serde_json::to_vec(event).expect("events serialise"));
    let client = client();
    let deadline = Instant::now() + BUDGET;
    let deliveries = targets.iter().map(|t| {
        let client = &client;
        let body = body.clone();
        async move { (t, deliver(client, t, body, deadline).await) }
    });
    for (target, result) in futures::future::join_all(deliveries).await {
        match result {
            Ok(()) => crate::log::info(2, format!("notification sent to {}", target.origin)),
            Err(why) => crate::log::warn(format!(
                "notification to {} not delivered: {why}; the run's outcome is unchanged",
                target.origin
            )),
        }
    }
}

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn client() -> HttpsClient {
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .unwrap_or_else(|e| {
            // Plain http still works; https then fails verification and says so.
            crate::log::info(2, format!("no CA certificates for notifications: {e}"));
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
        })
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(tls)
}

/// Attempts until one is answered 2xx, the answer says retrying cannot help, or `deadline`.
/// The error says why in words that never include the URL.
async fn deliver(
    client: &HttpsClient,
    target: &Target,
    body: Bytes,
    deadline: Instant,
) -> std::result::Result<(), String> {
    let mut backoff = FIRST_BACKOFF;
    let first = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let request = hyper::Request::post(target.uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                format!("kubectl-gitops/{}", shared::VERSION),
            )
            .body(Full::new(body.clone()))
            .map_err(|_| "the request could not be built".to_string())?;
        let attempt = tokio::time::timeout(left.min(ATTEMPT), async {
            let response = client.request(request).await.map_err(describe)?;
            let status = response.status();
            // Read the answer so the connection is done with before the next attempt.
            let _ = response.into_body().collect().await;
            Ok::<_, String>(status)
        })
        .await;
        let why = match attempt {
            Ok(Ok(status)) if status.is_success() => return Ok(()),
            Ok(Ok(status)) => {
                let why = format!("the webhook answered {status}");
                let retryable = status.is_server_error()
                    || status == hyper::StatusCode::TOO_MANY_REQUESTS
                    || status == hyper::StatusCode::REQUEST_TIMEOUT;
                if !retryable {
                    return Err(why);
                }
                why
            }
            Ok(Err(why)) => why,
            Err(_) => format!("no answer within {:?}", left.min(ATTEMPT)),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left < backoff {
            return Err(format!(
                "{why} (gave up after {attempts} attempt{} in {:.1}s)",
                if attempts == 1 { "" } else { "s" },
                first.elapsed().as_secs_f64()
            ));
        }
        crate::log::info(
            4,
            format!("notification to {}: {why}; retrying", target.origin),
        );
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}

/// A client error in words: its innermost cause (`Connection refused (os error 111)`), which
/// hyper and the connector word without the URL.
fn describe(e: hyper_util::client::legacy::Error) -> String {
    let mut cause: &dyn std::error::Error = &e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    if e.is_connect() {
        format!("could not connect: {cause}")
    } else {
        format!("the request failed: {cause}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> Run<'static> {
        Run {
            verb: "sync",
            namespace: "shop",
            environment: Some("dev"),
            tag: "deploy/dev/20250102T030405Z",
            commit: "0123456789abcdef0123456789abcdef01234567",
            user: "ann",
            started: Instant::now(),
        }
    }

    fn progress(outcome: &str) -> Facts {
        Facts {
            meant_to_write: true,
            applied: 3,
            pruned: 1,
            revision: Some(7),
            outcome: Some(outcome.into()),
        }
    }

    #[test]
    fn a_success_says_what_was_deployed() {
        let e = event(&run(), &progress("succeeded"), None);
        assert_eq!(e.outcome, "succeeded");
        assert_eq!(e.reason, None);
        assert_eq!(e.revision, Some(7));
        assert!(
            e.text.starts_with(
                "kubectl gitops sync of namespace shop (dev) to deploy/dev/20250102T030405Z \
                 (0123456) succeeded; revision 7, 3 applied, 1 pruned, "
            ),
            "{}",
            e.text
        );
        assert!(e.text.ends_with("s, by ann"), "{}", e.text);
    }

    #[test]
    fn a_failure_carries_the_first_line_of_the_error() {
        let err = Error::refused(
            "sync of shop failed after applying 2 of 3: boom\nnot applied: x\nrecorded as revision 7",
        );
        let e = event(&run(), &progress("failed: boom"), Some(&err));
        assert_eq!(e.outcome, "failed");
        assert_eq!(
            e.reason.as_deref(),
            Some("sync of shop failed after applying 2 of 3: boom")
        );
        assert_eq!(e.recorded_outcome.as_deref(), Some("failed: boom"));
        assert!(
            e.text.contains(") failed: sync of shop failed"),
            "{}",
            e.text
        );
        // A message that introduces a list keeps the list's first line.
        let err = Error::refused(
            "fields are owned by another field manager; nothing was written:\n  ConfigMap/shop/a: conflict",
        );
        let e = event(&run(), &Facts::default(), Some(&err));
        assert_eq!(
            e.reason.as_deref(),
            Some(
                "fields are owned by another field manager; nothing was written: ConfigMap/shop/a: conflict"
            )
        );
        // --wait failing after a recorded success is a failed run all the same.
        let e = event(
            &run(),
            &progress("succeeded"),
            Some(&Error::refused("1 object failed: web")),
        );
        assert_eq!(e.outcome, "failed");
        // Failing before anything was recorded: no revision.
        let e = event(
            &run(),
            &Facts::default(),
            Some(&Error::refused("refusing to take over objects")),
        );
        assert_eq!((e.outcome, e.revision), ("failed", None));
    }

    #[test]
    fn interrupted_and_rolled_back_runs_say_so() {
        let e = event(
            &run(),
            &progress("interrupted"),
            Some(&Error::refused("interrupted (Ctrl-C)")),
        );
        assert_eq!(e.outcome, "interrupted");
        let rolled = "rolled back to revision 6 (tag v1) after failed revision 7";
        let e = event(
            &run(),
            &progress(rolled),
            Some(&Error::refused(
                "Deployment.apps/shop/web: ImagePullBackOff",
            )),
        );
        assert_eq!(e.outcome, "rolled back");
        assert_eq!(e.rolled_back_to, Some(6));
        assert!(
            e.text.contains(
                "failed and was rolled back to revision 6: Deployment.apps/shop/web: ImagePullBackOff"
            ),
            "{}",
            e.text
        );
    }

    #[test]
    fn flags_are_checked_without_echoing_the_url() {
        let e = targets(&["ftp://token@example.com".into()], &[], &[], None).unwrap_err();
        assert_eq!(e.message, "--notify #1 is not an http:// or https:// URL");
        let e = targets(&[], &["KGO_TEST_UNSET_VARIABLE".into()], &[], None).unwrap_err();
        assert!(e.message.contains("is not set"), "{e}");
        let t = targets(&["http://127.0.0.1:1/hook/token".into()], &[], &[], None).unwrap();
        assert!(!format!("{t:?}").contains("token"), "{t:?}");
    }
}
