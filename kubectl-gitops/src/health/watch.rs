//! The watches of a `--wait`: one LIST + WATCH per kind, namespace and label of the waited
//! objects (our ApplySet's label, or a hook run's), plus — once a waited Deployment is seen
//! still rolling out — one of the ReplicaSets and one of the Pods of its namespace, which the
//! rules need to name a doomed rollout early. The wait judges what they hold; a watch the
//! user may not make (RBAC: `get` without `list`/`watch`) is given up, and its objects are
//! polled as before.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher;
use serde_json::Value;
use tokio::sync::mpsc;

use super::verdict::Related;
use crate::cluster::{Cluster, Resolved};
use crate::watched::{Owned, Watched, error_code};

/// Something happened to watch `.0`: an event (`None`) or an error it retries after.
pub struct Note(pub usize, pub Option<Trouble>);

pub struct Trouble {
    pub code: Option<u16>,
    pub message: String,
}

impl Trouble {
    /// Missing rights do not appear by retrying.
    pub fn is_refusal(&self) -> bool {
        matches!(self.code, Some(401 | 403))
    }
}

/// What one watch lists and watches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    api_version: String,
    plural: String,
    namespace: Option<String>,
    labels: Option<String>,
}

struct Group {
    /// `None` once given up.
    watched: Option<Watched>,
    describe: String,
    /// The last error, until the watch lists again.
    trouble: Option<String>,
}

pub struct Watches {
    client: kube::Client,
    groups: Vec<Group>,
    index: BTreeMap<Key, usize>,
    /// Per namespace: the watches of its ReplicaSets and Pods.
    related: BTreeMap<String, (usize, usize)>,
    /// Built once per round from the related watches.
    owned: HashMap<String, Owned>,
    sender: mpsc::UnboundedSender<Note>,
}

impl Watches {
    pub fn new(cluster: &Cluster) -> (Watches, mpsc::UnboundedReceiver<Note>) {
        let (sender, notes) = mpsc::unbounded_channel();
        (
            Watches {
                client: cluster.client.clone(),
                groups: Vec::new(),
                index: BTreeMap::new(),
                related: BTreeMap::new(),
                owned: HashMap::new(),
                sender,
            },
            notes,
        )
    }

    /// The watch holding objects of `resolved` in `namespace` that carry `selector`, started
    /// on first use.
    pub fn group(&mut self, resolved: &Resolved, namespace: Option<&str>, selector: &str) -> usize {
        let namespace = namespace.filter(|_| resolved.namespaced);
        let key = Key {
            api_version: resolved.resource.api_version.clone(),
            plural: resolved.resource.plural.clone(),
            namespace: namespace.map(str::to_string),
            labels: Some(selector.to_string()),
        };
        self.start(key, &resolved.resource)
    }

    fn start(&mut self, key: Key, resource: &ApiResource) -> usize {
        if let Some(&g) = self.index.get(&key) {
            return g;
        }
        let g = self.groups.len();
        let api: Api<DynamicObject> = match &key.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, resource),
            None => Api::all_with(self.client.clone(), resource),
        };
        // A quorum read: what was applied a moment ago is in the list, not only in etcd.
        let mut config =
            watcher::Config::default().list_semantic(watcher::ListSemantic::MostRecent);
        if let Some(l) = &key.labels {
            config = config.labels(l);
        }
        let sender = self.sender.clone();
        let watched = Watched::start(api, config, resource.clone(), Retry::new(), move |seen| {
            let trouble = seen.err().map(|e| Trouble {
                code: error_code(e),
                message: e.to_string(),
            });
            let _ = sender.send(Note(g, trouble));
        });
        let describe = match &key.namespace {
            Some(ns) => format!("{} in {ns}", resource.plural),
            None => resource.plural.clone(),
        };
        self.groups.push(Group {
            watched: Some(watched),
            describe,
            trouble: None,
        });
        self.index.insert(key, g);
        g
    }

    /// Whether watch `g` has listed (and is not given up).
    pub fn listed(&self, g: usize) -> bool {
        self.groups[g].watched.as_ref().is_some_and(Watched::listed)
    }

    pub fn get(&self, g: usize, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.groups[g].watched.as_ref()?.get(namespace, name)
    }

    /// The last error of watch `g`, if it has not listed since.
    pub fn trouble(&self, g: usize) -> Option<&str> {
        self.groups[g].trouble.as_deref()
    }

    /// Takes in a note: a refusal gives the watch up (returned when its objects must be
    /// polled instead); other errors are retried by the watch itself.
    pub fn note(&mut self, Note(g, trouble): Note) -> Option<usize> {
        let related = self
            .related
            .values()
            .any(|&(rs, pods)| g == rs || g == pods);
        let group = &mut self.groups[g];
        let Some(trouble) = trouble else {
            if group.watched.as_ref().is_some_and(Watched::listed) {
                group.trouble = None;
            }
            return None;
        };
        group.watched.as_ref()?;
        if !trouble.is_refusal() {
            crate::log::info(
                4,
                format!(
                    "watching {}: {} (retrying)",
                    group.describe, trouble.message
                ),
            );
            group.trouble = Some(trouble.message);
            return None;
        }
        group.watched = None;
        if related {
            crate::log::info(
                4,
                format!(
                    "not reading the Pods of a Deployment ({}: {})",
                    group.describe, trouble.message
                ),
            );
        } else {
            crate::log::info(
                2,
                format!(
                    "may not list and watch {} ({}): polling its objects instead",
                    group.describe, trouble.message
                ),
            );
        }
        (!related).then_some(g)
    }

    /// A new round of judging: what the related watches hold may have changed.
    pub fn next_round(&mut self) {
        self.owned.clear();
    }

    /// The ReplicaSets and Pods of `deployment` (in `namespace`), when the watches of its
    /// namespace have listed them; the first call for a namespace starts those watches.
    pub fn related(&mut self, namespace: &str, deployment: &Value) -> Option<Related> {
        let (rs, pods) = match self.related.get(namespace) {
            Some(&pair) => pair,
            None => {
                let ns = Some(namespace.to_string());
                let rs = self.start(
                    Key {
                        api_version: "apps/v1".into(),
                        plural: "replicasets".into(),
                        namespace: ns.clone(),
                        labels: None,
                    },
                    &ApiResource::erase::<ReplicaSet>(&()),
                );
                let pods = self.start(
                    Key {
                        api_version: "v1".into(),
                        plural: "pods".into(),
                        namespace: ns,
                        labels: None,
                    },
                    &ApiResource::erase::<Pod>(&()),
                );
                self.related.insert(namespace.to_string(), (rs, pods));
                (rs, pods)
            }
        };
        if !self.listed(rs) || !self.listed(pods) {
            return None;
        }
        if !self.owned.contains_key(namespace) {
            let values = |g: usize| {
                self.groups[g]
                    .watched
                    .as_ref()
                    .map(Watched::values)
                    .unwrap_or_default()
            };
            let owned = Owned::new(values(rs), values(pods));
            self.owned.insert(namespace.to_string(), owned);
        }
        self.owned.get(namespace).map(|o| o.of(deployment))
    }
}

/// Pauses between retries of a failed watch: as the polling paced its GETs (0.5 s growing to
/// 2 s), so that a wait picks up soon after an API server restarts.
struct Retry {
    next: std::time::Duration,
}

impl Retry {
    fn new() -> Retry {
        Retry {
            next: super::wait::FIRST_PAUSE,
        }
    }
}

impl Iterator for Retry {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<Self::Item> {
        let pause = self.next;
        self.next = (pause * 3 / 2).min(super::wait::MAX_PAUSE);
        Some(pause)
    }
}

impl Backoff for Retry {
    fn reset(&mut self) {
        self.next = super::wait::FIRST_PAUSE;
    }
}
