//! The cluster side: one discovery per run, resolving manifest kinds to API resources
//! (including kinds defined by CRDs in the same set), the retry policy and time bounds every
//! request goes through, and API errors turned into messages that name the object and carry
//! the server's words.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use kube::api::{Api, DynamicObject};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use serde_json::Value;
use shared::{Error, Result};

pub struct Cluster {
    pub client: kube::Client,
    discovery: Discovery,
    /// Kinds defined by CRDs in the manifest set that the server does not serve yet.
    pending_crds: BTreeMap<(String, String), (ApiResource, bool)>,
}

#[derive(Clone, Debug)]
pub struct Resolved {
    pub resource: ApiResource,
    pub namespaced: bool,
    /// Defined by a CRD in this set and not yet served: it cannot be dry-run before the CRD
    /// is applied.
    pub pending: bool,
}

/// Marks (as an error's source) a failure that a later run may not meet: a timeout, a lost
/// connection, throttling or an API server that is unavailable (429, 502, 503, 504). Anything
/// else (a 500 such as "range is full", a refusal by RBAC, quota or an admission policy) the
/// server answers the same way until something changes.
#[derive(Debug, Clone, Copy)]
pub struct Transient;

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a transient failure: a rerun may not meet it")
    }
}

impl std::error::Error for Transient {}

/// Whether `e`, or an error it was made from, is [`Transient`].
pub fn is_transient(e: &Error) -> bool {
    e.causes().any(|c| c.is::<Transient>())
}

pub fn api_error(what: impl std::fmt::Display, err: kube::Error) -> Error {
    let transient = match &err {
        kube::Error::Api(s) => matches!(s.code, 429 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    };
    let e = describe_api_error(what, err);
    if transient {
        e.with_source(Transient)
    } else {
        e
    }
}

fn describe_api_error(what: impl std::fmt::Display, err: kube::Error) -> Error {
    match err {
        kube::Error::Api(status) => {
            let verb_hint = match status.code {
                401 => Some("the credentials were rejected: check the kubeconfig user or --token"),
                403 => Some("ask for RBAC rights on this resource, or use a context that has them"),
                _ => None,
            };
            let code = if status.reason.is_empty() {
                status.code.to_string()
            } else {
                format!("{} {}", status.code, status.reason)
            };
            let e = Error::refused(format!("{what}: {} ({code})", status.message));
            match verb_hint {
                Some(h) => e.hint(h),
                None => e,
            }
        }
        kube::Error::Auth(auth) => Error::refused(format!("{what}: {}", describe_auth(&auth)))
            .hint(
                "check the kubeconfig user's credentials (its exec plugin, token or certificate)",
            ),
        other if is_timeout(&other) => Error::refused(format!(
            "{what}: no answer from the API server within {}",
            timeout_that_fired(&other)
        ))
        .hint(
            "check that the API server is reachable (kubectl cluster-info); \
             --request-timeout sets how long to wait for each request",
        ),
        other => Error::refused(format!("{what}: {}", transport_chain(&other)))
            .hint("check that the API server is reachable (kubectl cluster-info)"),
    }
}

/// Errors of the kubeconfig user's credentials, without what kube's own messages quote: a
/// failing exec plugin's stdout (which may hold a token, complete or truncated), the command
/// with its environment, or a parser's excerpt of the output. As kubectl does, the plugin's
/// exit status and its stderr are shown, nothing else.
pub fn describe_auth(err: &kube::client::AuthError) -> String {
    use kube::client::AuthError as A;
    match err {
        A::AuthExecRun { out, .. } => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stderr = stderr.trim();
            let status = match out.status.code() {
                Some(code) => format!("exit code {code}"),
                None => out.status.to_string(),
            };
            if stderr.is_empty() {
                format!("the exec credential plugin failed with {status}")
            } else {
                let indented: Vec<String> = stderr.lines().map(|l| format!("  {l}")).collect();
                format!(
                    "the exec credential plugin failed with {status}; its stderr:\n{}",
                    indented.join("\n")
                )
            }
        }
        A::AuthExecParse(_) => "the exec credential plugin's output is not an ExecCredential \
             (JSON with status.token or a client certificate); its output is not shown, as it \
             may hold credentials"
            .to_string(),
        A::AuthExecStart(e) => format!("the exec credential plugin cannot be started: {e}"),
        // kube's text for these may quote what a provider printed.
        A::AuthExec(_) => "the kubeconfig user's auth provider failed (its output is not \
             shown, as it may hold credentials)"
            .to_string(),
        other => other.to_string(),
    }
}

/// Every cause of a transport error, outermost first, without repeats (kube's wrapper quotes
/// its source in its own message).
fn transport_chain(err: &kube::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    if next.is_none() {
        return err.to_string();
    }
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

fn causes(err: &kube::Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(std::error::Error::source(err), |e| e.source())
}

/// A request that got no answer within its bound: connecting (TCP and TLS), or the response.
pub fn is_timeout(err: &kube::Error) -> bool {
    causes(err).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

fn timeout_that_fired(err: &kube::Error) -> String {
    let connecting = causes(err).any(|e| {
        e.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(|h| h.is_connect())
    });
    let bounds = bounds();
    let d = if connecting {
        bounds.connect
    } else {
        bounds.response.unwrap_or(bounds.connect)
    };
    let text = shared::duration::format_duration(d);
    if connecting {
        format!("{text} (connecting, TLS handshake included)")
    } else {
        text
    }
}

/// How long a request may wait (README "Time limits"). kubectl waits for ever by default; a
/// tool that writes must not, so: connecting (TCP and TLS) within [`CONNECT_TIMEOUT`] (or
/// `--request-timeout`, if shorter), and each answer within `--request-timeout`, default
/// [`DEFAULT_REQUEST_TIMEOUT`]; `--request-timeout 0` waits for answers without a limit, as
/// kubectl's 0 does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    pub connect: Duration,
    pub response: Option<Duration>,
}

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

impl Bounds {
    /// From `--request-timeout`: absent, 0, or a duration.
    pub fn from_flag(request_timeout: Option<Duration>) -> Bounds {
        match request_timeout {
            None => Bounds {
                connect: CONNECT_TIMEOUT,
                response: Some(DEFAULT_REQUEST_TIMEOUT),
            },
            Some(t) if t.is_zero() => Bounds {
                connect: CONNECT_TIMEOUT,
                response: None,
            },
            Some(t) => Bounds {
                connect: t.min(CONNECT_TIMEOUT),
                response: Some(t),
            },
        }
    }
}

/// Set once per run by `kubeconf::connect`; the retry policy reads it for every attempt.
static BOUNDS: OnceLock<Bounds> = OnceLock::new();

pub fn set_bounds(b: Bounds) {
    let _ = BOUNDS.set(b);
}

fn bounds() -> Bounds {
    BOUNDS.get().copied().unwrap_or(Bounds::from_flag(None))
}

pub fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// kube's built-in retry is switched off (`kubeconf::connect`): it repeats every method,
/// creates included, on 503 and 504, its backoff grows to minutes (a throttled sync stalled
/// for over a minute on one request), and it never retries a refused or reset connection.
/// Requests that may safely run twice (server-side apply, get, list, delete by uid) go
/// through this instead: 429, 503, 504 and transport errors, backoff capped at 2 s (or the
/// server's Retry-After, up to 2 s), about 15 s in all, so a restarting or throttling API
/// server is ridden out and one that stays down fails the run in bounded time. A request that
/// timed out is not repeated: the user's bound (`--request-timeout`) is what they asked to
/// wait, and a server that accepts connections but never answers would otherwise hold the run
/// for eleven times that.
pub async fn idempotent<T, F, Fut>(f: F) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = kube::Result<T>>,
{
    with_retries(f, |e| match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 503 | 504),
        e @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => !is_timeout(e),
        _ => false,
    })
    .await
}

/// For creates and compare-and-swap replaces: only on 429, which in-flight limits and
/// priority-and-fairness answer before the request reaches storage. After a 503, 504 or a lost
/// connection the write may have happened, and repeating it would report our own write as a
/// conflict with another writer.
pub async fn when_throttled<T, F, Fut>(f: F) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = kube::Result<T>>,
{
    with_retries(f, |e| status_code(e) == Some(429)).await
}

async fn with_retries<T, F, Fut>(
    mut f: F,
    retryable: impl Fn(&kube::Error) -> bool,
) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = kube::Result<T>>,
{
    const RETRIES: u32 = 10;
    const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(2);
    let mut delay = std::time::Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        // Each attempt as a whole (all of a discovery's requests, a response trickling in) is
        // bounded too, not only each read.
        let result = match bounds().response {
            Some(limit) => tokio::time::timeout(limit, f())
                .await
                .unwrap_or_else(|_| Err(timed_out(limit))),
            None => f().await,
        };
        match result {
            Err(e) if attempt < RETRIES && retryable(&e) => {
                let asked = match &e {
                    kube::Error::Api(s) => s
                        .details
                        .as_ref()
                        .map(|d| std::time::Duration::from_secs(d.retry_after_seconds.into())),
                    _ => None,
                };
                let wait = asked.unwrap_or_default().clamp(delay, MAX_DELAY);
                crate::log::info(6, format!("retrying in {wait:?} after: {e}"));
                tokio::time::sleep(jitter(wait)).await;
                delay = (delay * 2).min(MAX_DELAY);
                attempt += 1;
            }
            result => return result,
        }
    }
}

fn timed_out(limit: Duration) -> kube::Error {
    kube::Error::Service(Box::new(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "no answer within {}",
            shared::duration::format_duration(limit)
        ),
    )))
}

/// Up to 25% more, so that writers throttled together do not come back together.
fn jitter(d: std::time::Duration) -> std::time::Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let quarter = d.as_millis() as u64 / 4;
    d + std::time::Duration::from_millis(h.finish() % (quarter + 1))
}

impl Cluster {
    pub async fn discover(client: kube::Client) -> Result<Cluster> {
        let discovery = idempotent(|| Discovery::new(client.clone()).run_aggregated())
            .await
            .map_err(|e| api_error("API discovery", e))?;
        Ok(Cluster {
            client,
            discovery,
            pending_crds: BTreeMap::new(),
        })
    }

    /// What a Helm chart's templates see as `Capabilities`: the server's version (`GET
    /// /version`) and, from this run's discovery, every `group/version` it serves and every
    /// `group/version/Kind`, as Helm itself lists them when it installs.
    pub async fn capabilities(&self) -> Result<crate::manifest::helm::Capabilities> {
        let info = idempotent(|| self.client.apiserver_version())
            .await
            .map_err(|e| api_error("reading the server's version", e))?;
        let mut api_versions = std::collections::BTreeSet::new();
        for group in self.discovery.groups() {
            for version in group.versions() {
                let group_version = if group.name().is_empty() {
                    version.to_string()
                } else {
                    format!("{}/{version}", group.name())
                };
                for (resource, _) in group.versioned_resources(version) {
                    api_versions.insert(format!("{group_version}/{}", resource.kind));
                }
                api_versions.insert(group_version);
            }
        }
        Ok(crate::manifest::helm::Capabilities {
            kube_version: info.git_version,
            api_versions: api_versions.into_iter().collect(),
        })
    }

    /// Makes the kinds that CRDs in `objects` define resolvable before they are installed.
    pub fn learn_crds<'a>(&mut self, objects: impl IntoIterator<Item = &'a Value>) {
        for o in objects {
            if o["kind"] != "CustomResourceDefinition"
                || !o["apiVersion"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("apiextensions.k8s.io/")
            {
                continue;
            }
            let spec = &o["spec"];
            let (Some(group), Some(kind), Some(plural)) = (
                spec["group"].as_str(),
                spec["names"]["kind"].as_str(),
                spec["names"]["plural"].as_str(),
            ) else {
                continue;
            };
            let namespaced = spec["scope"].as_str() != Some("Cluster");
            for v in spec["versions"].as_array().into_iter().flatten() {
                let Some(version) = v["name"].as_str() else {
                    continue;
                };
                let ar = ApiResource {
                    group: group.to_string(),
                    version: version.to_string(),
                    api_version: format!("{group}/{version}"),
                    kind: kind.to_string(),
                    plural: plural.to_string(),
                };
                self.pending_crds
                    .insert((ar.api_version.clone(), kind.to_string()), (ar, namespaced));
            }
        }
    }

    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<Resolved> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
        if let Some((resource, caps)) = self.discovery.resolve_gvk(&gvk) {
            return Some(Resolved {
                resource,
                namespaced: is_namespaced(&caps),
                pending: false,
            });
        }
        self.pending_crds
            .get(&(api_version.to_string(), kind.to_string()))
            .map(|(ar, namespaced)| Resolved {
                resource: ar.clone(),
                namespaced: *namespaced,
                pending: true,
            })
    }

    /// The preferred version of a group/kind, for listing kinds recorded without a version
    /// (ApplySet's contains-group-kinds).
    pub fn resolve_group_kind(&self, group: &str, kind: &str) -> Option<Resolved> {
        let g = self.discovery.get(group)?;
        let (resource, caps) = g.recommended_kind(kind)?;
        Some(Resolved {
            resource,
            namespaced: is_namespaced(&caps),
            pending: false,
        })
    }

    pub fn api(&self, r: &Resolved, namespace: Option<&str>) -> Api<DynamicObject> {
        match (r.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &r.resource),
            _ => Api::all_with(self.client.clone(), &r.resource),
        }
    }
}

fn is_namespaced(caps: &ApiCapabilities) -> bool {
    matches!(caps.scope, Scope::Namespaced)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("test", "Test")
                .with_code(code)
                .boxed(),
        )
    }

    /// Fails with `code` `failures` times, then succeeds; counts the calls.
    async fn flaky(code: u16, failures: u32, calls: &AtomicU32) -> kube::Result<u32> {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        if n < failures { Err(api(code)) } else { Ok(n) }
    }

    #[tokio::test(start_paused = true)]
    async fn idempotent_requests_ride_out_throttling_and_unavailability() {
        for code in [429, 503, 504] {
            let calls = AtomicU32::new(0);
            let r = idempotent(|| flaky(code, 3, &calls)).await;
            assert_eq!(r.unwrap(), 3, "{code} is retried");
            assert_eq!(calls.load(Ordering::SeqCst), 4);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_bounded() {
        let calls = AtomicU32::new(0);
        let r = idempotent(|| flaky(503, u32::MAX, &calls)).await;
        assert_eq!(status_code(&r.unwrap_err()), Some(503));
        assert_eq!(calls.load(Ordering::SeqCst), 11, "one try and ten retries");
    }

    #[tokio::test(start_paused = true)]
    async fn errors_that_will_not_change_are_not_retried() {
        for code in [400, 403, 404, 409, 422, 500] {
            let calls = AtomicU32::new(0);
            let r = idempotent(|| flaky(code, 1, &calls)).await;
            assert_eq!(status_code(&r.unwrap_err()), Some(code));
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{code} is not retried");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_timed_out_is_not_repeated() {
        let calls = AtomicU32::new(0);
        let r = idempotent(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<u32, _>(timed_out(Duration::from_secs(2)))
        })
        .await;
        assert!(is_timeout(&r.unwrap_err()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_that_never_comes_ends_at_the_bound() {
        let started = tokio::time::Instant::now();
        let r: kube::Result<u32> = idempotent(std::future::pending).await;
        let e = r.unwrap_err();
        assert!(is_timeout(&e), "{e}");
        assert_eq!(
            started.elapsed(),
            DEFAULT_REQUEST_TIMEOUT,
            "one attempt, not eleven"
        );
        assert!(
            api_error("listing", e)
                .message
                .contains("no answer from the API server within 1m"),
        );
    }

    #[test]
    fn request_timeout_flag_sets_the_bounds() {
        let b = Bounds::from_flag(None);
        assert_eq!(
            (b.connect, b.response),
            (CONNECT_TIMEOUT, Some(DEFAULT_REQUEST_TIMEOUT))
        );
        let b = Bounds::from_flag(Some(Duration::ZERO));
        assert_eq!((b.connect, b.response), (CONNECT_TIMEOUT, None));
        let b = Bounds::from_flag(Some(Duration::from_secs(2)));
        assert_eq!(
            (b.connect, b.response),
            (Duration::from_secs(2), Some(Duration::from_secs(2)))
        );
        let b = Bounds::from_flag(Some(Duration::from_secs(300)));
        assert_eq!(b.connect, CONNECT_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_that_may_have_happened_are_not_repeated() {
        // After a 503/504 a create may have reached storage: repeating it would turn our own
        // write into a conflict. Only 429, sent before storage, is retried.
        for code in [503, 504, 500] {
            let calls = AtomicU32::new(0);
            let r = when_throttled(|| flaky(code, 1, &calls)).await;
            assert_eq!(status_code(&r.unwrap_err()), Some(code));
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
        let calls = AtomicU32::new(0);
        assert!(when_throttled(|| flaky(429, 2, &calls)).await.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
