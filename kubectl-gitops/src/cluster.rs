//! The cluster side: one discovery per run, resolving manifest kinds to API resources
//! (including kinds defined by CRDs in the same set), and API errors turned into messages
//! that name the object and carry the server's words.

use std::collections::BTreeMap;

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

pub fn api_error(what: impl std::fmt::Display, err: kube::Error) -> Error {
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
        other => Error::refused(format!("{what}: {}", with_causes(&other)))
            .hint("check that the API server is reachable (kubectl cluster-info)"),
    }
}

/// A transport error with what caused it: kube and hyper say only "client error (Connect)" at
/// the top, and the cause (connection refused, reset by peer, timed out) is what tells a user
/// whether the server is down, the network cut or the server silent.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        // The timeout's own words ("deadline has elapsed") do not say which deadline.
        let timed_out = cause.is::<tokio::time::error::Elapsed>()
            || cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut);
        let said = if timed_out {
            "timed out waiting for the server (--request-timeout, or the 30s connect timeout)"
                .to_string()
        } else {
            cause.to_string()
        };
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
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
/// server is ridden out and one that stays down fails the run in bounded time.
pub async fn idempotent<T, F, Fut>(f: F) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = kube::Result<T>>,
{
    with_retries(f, |e| match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
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
        match f().await {
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

    #[derive(Debug)]
    struct Top(std::io::Error);
    impl std::fmt::Display for Top {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }
    impl std::error::Error for Top {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn transport_errors_carry_their_cause() {
        let reset = Top(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(
            with_causes(&reset),
            "client error (Connect): connection reset"
        );
        let silent = Top(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "deadline has elapsed",
        ));
        assert_eq!(
            with_causes(&silent),
            "client error (Connect): timed out waiting for the server (--request-timeout, or \
             the 30s connect timeout)"
        );
    }
}
