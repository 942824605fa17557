//! The exporter behind `kubectl gitops metrics`: what each followed namespace runs and how it
//! fares, as Prometheus metrics, without a controller and without writing anything.
//!
//! It follows the cluster by watches, never by polling objects:
//! - `records.rs`: the revision records' metadata (one watch); each record is fetched once
//!   when it appears, giving the current revision and the last successful one;
//! - the Lease `kubectl-gitops-lock` (one watch), and with `--all-namespaces` the ApplySet
//!   parents (one metadata watch), which say which namespaces are ours;
//! - `members.rs`: the objects of each current revision, with the Pods and ReplicaSets of its
//!   Deployments, one watch per kind (and namespace, unless `--all-namespaces`), changed as
//!   revisions come and go; their health is judged at scrape time from what the watches hold;
//! - `drift.rs`: drift, which costs dry-runs, is recomputed on an interval and after each new
//!   revision, as `status` computes it.
//!
//! A scrape (`exposition.rs`) reads only this state: it sends no request to the API server.
//! `serve.rs` answers `/metrics` and `/healthz`.

mod drift;
mod exposition;
mod members;
mod records;
mod serve;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use prometheus_client::metrics::counter::Counter;

pub use exposition::Format;
pub use serve::serve;

use crate::cli::PlanningArgs;

/// Which namespaces the exporter follows.
#[derive(Debug, Clone)]
pub enum Scope {
    /// These, whatever they hold.
    Namespaces(Vec<String>),
    /// Every namespace holding our ApplySet parent, as they come and go.
    All,
}

impl Scope {
    /// One API per watch: cluster-wide for `All`, else one per namespace (so that a Role in
    /// each namespace is enough RBAC).
    fn apis<K>(&self, client: &kube::Client) -> Vec<Api<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            Scope::All => vec![Api::all(client.clone())],
            Scope::Namespaces(list) => list
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect(),
        }
    }
}

pub struct Options {
    /// `None`: drift is not computed.
    pub drift_interval: Option<Duration>,
    /// Check drift of a namespace only once its Lease is free (serving), or as it is (once).
    pub defer_while_locked: bool,
    pub planning: PlanningArgs,
}

/// The state every part of the exporter shares.
pub struct Exporter {
    client: kube::Client,
    scope: Scope,
    options: Options,
    state: Mutex<State>,
    /// Bumped whenever namespaces, records or leases change: the members and the drift
    /// schedule follow it.
    changed: tokio::sync::watch::Sender<u64>,
    errors: Counter,
    leases: Mutex<Vec<Store<Lease>>>,
    members: members::Watches,
}

#[derive(Default)]
struct State {
    /// Followed namespaces (for `All`: those with our ApplySet parent).
    namespaces: BTreeSet<String>,
    records: BTreeMap<String, records::View>,
    drift: BTreeMap<String, drift::Checked>,
    /// What is known to be missing from a scrape, by where it comes from: `--once` warns
    /// about each and exits 1; a later success clears it.
    problems: BTreeMap<String, String>,
    /// Parts that have read everything once: namespaces (parents), records, leases.
    ready: BTreeSet<&'static str>,
}

impl Exporter {
    /// Starts the watches and the drift schedule; they run until the process ends.
    pub fn start(client: kube::Client, scope: Scope, options: Options) -> Arc<Exporter> {
        let (changed, _) = tokio::sync::watch::channel(0);
        let exporter = Arc::new(Exporter {
            client,
            state: Mutex::new(State {
                namespaces: match &scope {
                    Scope::Namespaces(list) => list.iter().cloned().collect(),
                    Scope::All => BTreeSet::new(),
                },
                ..State::default()
            }),
            scope,
            options,
            changed,
            errors: Counter::default(),
            leases: Mutex::new(Vec::new()),
            members: members::Watches::default(),
        });
        match exporter.scope {
            Scope::All => {
                tokio::spawn(follow_parents(exporter.clone()));
            }
            Scope::Namespaces(_) => exporter.set_ready("namespaces"),
        }
        tokio::spawn(records::follow(exporter.clone()));
        tokio::spawn(follow_leases(exporter.clone()));
        tokio::spawn(members::follow(exporter.clone()));
        if exporter.options.drift_interval.is_some() {
            tokio::spawn(drift::follow(exporter.clone()));
        }
        exporter
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn set_ready(&self, part: &'static str) {
        if self.state().ready.insert(part) {
            self.bump();
        }
    }

    /// Counts an error (`scrape_errors_total`), logs it at -v 2, and remembers it under
    /// `source` until [`Exporter::clear_problem`].
    fn problem(&self, source: impl Into<String>, message: impl Into<String>) {
        let (source, message) = (source.into(), message.into());
        self.errors.inc();
        crate::log::info(2, format!("{source}: {message}"));
        self.state().problems.insert(source, message);
    }

    fn clear_problem(&self, source: &str) {
        self.state().problems.remove(source);
    }

    fn followed(&self) -> BTreeSet<String> {
        self.state().namespaces.clone()
    }

    /// Whether a sync or revert holds the namespace's Lease now.
    fn locked(&self, ns: &str) -> bool {
        let stores = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        stores.iter().any(|store| {
            let key = reflector::ObjectRef::new(crate::lock::LEASE_NAME).within(ns);
            store
                .get(&key)
                .is_some_and(|lease| !crate::lock::expired(&lease))
        })
    }

    /// One scrape in `format`: (body, content type). Reads only what the watches hold.
    pub fn scrape(&self, format: Format) -> (String, &'static str) {
        let namespaces = self.followed();
        let samples = namespaces
            .iter()
            .map(|ns| self.sample(ns))
            .collect::<Vec<_>>();
        exposition::encode(samples, &self.errors, format)
    }

    fn sample(&self, ns: &str) -> exposition::Sample {
        let (view, drift) = {
            let state = self.state();
            (
                state.records.get(ns).cloned().unwrap_or_default(),
                state.drift.get(ns).cloned(),
            )
        };
        let all = matches!(self.scope, Scope::All);
        let health = view
            .current
            .as_ref()
            .and_then(|m| self.members.health(all, ns, &m.objects));
        exposition::Sample {
            namespace: ns.to_string(),
            // Drift of an older revision says nothing about the current one.
            drift: drift.filter(|d| Some(d.revision) == view.current.as_ref().map(|m| m.revision)),
            current: view.current,
            last_success: view.last_success,
            health,
            locked: self.locked(ns),
        }
    }

    /// Waits until every part has read the cluster once (watches listed, records fetched,
    /// drift computed) or has failed, at most `limit`. Returns what is missing, if anything.
    pub async fn settle(&self, limit: Duration) -> Vec<String> {
        let until = Instant::now() + limit;
        let mut changed = self.changed.subscribe();
        loop {
            if self.settled() || Instant::now() >= until {
                break;
            }
            // Progress is signalled, but a member watch becoming ready is not: look again
            // at least every 100 ms (local state only, no request).
            let _ = tokio::time::timeout(Duration::from_millis(100), changed.changed()).await;
        }
        let mut missing: Vec<String> = self
            .state()
            .problems
            .iter()
            .map(|(source, message)| format!("{source}: {message}"))
            .collect();
        if !self.settled() {
            missing.push(format!(
                "not everything was read within {}s: {}",
                limit.as_secs(),
                self.unsettled().join(", ")
            ));
        }
        missing
    }

    fn settled(&self) -> bool {
        self.unsettled().is_empty()
    }

    /// The parts that have not read the cluster once yet, in words.
    fn unsettled(&self) -> Vec<String> {
        let state = self.state();
        let mut out: Vec<String> = ["namespaces", "records", "leases"]
            .into_iter()
            .filter(|p| !state.ready.contains(p) && !state.problems.contains_key(*p))
            .map(|p| format!("{p} (watch not listed yet)"))
            .collect();
        if !out.is_empty() {
            return out;
        }
        for ns in &state.namespaces {
            let Some(current) = state.records.get(ns).and_then(|v| v.current.as_ref()) else {
                continue;
            };
            let all = matches!(self.scope, Scope::All);
            if !self
                .members
                .settled(all, ns, &current.objects, &state.problems)
            {
                out.push(format!("objects of {ns}"));
            }
            let drift_source = drift::source(ns);
            if self.options.drift_interval.is_some()
                && !state.problems.contains_key(&drift_source)
                && state
                    .drift
                    .get(ns)
                    .is_none_or(|d| d.revision != current.revision)
            {
                out.push(format!("drift of {ns}"));
            }
        }
        out
    }
}

/// `--all-namespaces`: the namespaces holding our ApplySet parent, from a metadata watch of
/// Secrets named like it (another tool's parent of that name is not ours).
async fn follow_parents(exporter: Arc<Exporter>) {
    // Metadata only: the parent's annotations are all that is needed.
    let api: Api<PartialObjectMeta<Secret>> = Api::all(exporter.client.clone());
    let config =
        watcher::Config::default().fields(&format!("metadata.name={}", crate::plan::PARENT_NAME));
    let (store, writer) = reflector::store();
    let stream = watcher(api, config).default_backoff().reflect(writer);
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Err(e) => exporter.problem("namespaces", format!("watching ApplySet parents: {e}")),
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Ok(_) => {
                exporter.clear_problem("namespaces");
                let ours: BTreeSet<String> = store
                    .state()
                    .iter()
                    .filter(|p| {
                        p.metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(crate::applyset::ANNOTATION_TOOLING))
                            .is_some_and(|t| t.starts_with(&format!("{}/", crate::plan::MANAGER)))
                    })
                    .filter_map(|p| p.metadata.namespace.clone())
                    .collect();
                let changed = {
                    let mut state = exporter.state();
                    let changed = state.namespaces != ours;
                    state.namespaces = ours;
                    changed
                };
                exporter.set_ready("namespaces");
                if changed {
                    exporter.bump();
                }
            }
        }
    }
}

/// The Lease of each followed namespace, by watch (a field selector on its name).
async fn follow_leases(exporter: Arc<Exporter>) {
    let config =
        watcher::Config::default().fields(&format!("metadata.name={}", crate::lock::LEASE_NAME));
    let apis: Vec<Api<Lease>> = exporter.scope.apis(&exporter.client);
    let mut streams = Vec::new();
    let mut stores = Vec::new();
    for api in apis {
        let (store, writer) = reflector::store();
        stores.push(store);
        streams.push(
            watcher(api, config.clone())
                .default_backoff()
                .reflect(writer)
                .boxed(),
        );
    }
    let total = stores.len();
    *exporter.leases.lock().unwrap_or_else(|e| e.into_inner()) = stores;
    let mut listed = 0;
    let mut stream = futures::stream::select_all(streams);
    while let Some(event) = stream.next().await {
        match event {
            Err(e) => exporter.problem("leases", format!("watching Leases: {e}")),
            Ok(watcher::Event::InitDone) => {
                exporter.clear_problem("leases");
                listed += 1;
                if listed >= total {
                    exporter.set_ready("leases");
                }
                exporter.bump();
            }
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => exporter.bump(),
            Ok(_) => {}
        }
    }
}

/// Parses a record's `objects` entry (`Kind.group/namespace/name`, `Kind/name`) back into a
/// key.
fn parse_key(text: &str) -> Option<crate::manifest::ObjectKey> {
    let (kind_group, rest) = text.split_once('/')?;
    let (kind, group) = kind_group.split_once('.').unwrap_or((kind_group, ""));
    let (namespace, name) = match rest.split_once('/') {
        Some((ns, name)) => (Some(ns.to_string()), name),
        None => (None, rest),
    };
    if kind.is_empty() || name.is_empty() || name.contains('/') {
        return None;
    }
    Some(crate::manifest::ObjectKey {
        group: group.to_string(),
        kind: kind.to_string(),
        namespace,
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ObjectKey;

    #[test]
    fn record_object_names_parse_back_into_keys() {
        for key in [
            ObjectKey {
                group: "apps".into(),
                kind: "Deployment".into(),
                namespace: Some("shop".into()),
                name: "web".into(),
            },
            ObjectKey {
                group: String::new(),
                kind: "ConfigMap".into(),
                namespace: Some("shop".into()),
                name: "a.b".into(),
            },
            ObjectKey {
                group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                namespace: None,
                name: "reader".into(),
            },
            ObjectKey {
                group: String::new(),
                kind: "Namespace".into(),
                namespace: None,
                name: "shop".into(),
            },
        ] {
            assert_eq!(parse_key(&key.to_string()), Some(key.clone()), "{key}");
        }
        assert_eq!(parse_key("nonsense"), None);
        assert_eq!(parse_key("Kind/a/b/c"), None);
    }
}
