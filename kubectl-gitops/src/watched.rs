//! A kind's objects held by a watch: one LIST, then a WATCH from its resourceVersion (and a
//! new LIST only when the watch expires, 410 Gone). What the exporter's health and `--wait`
//! read instead of polling objects one by one.

use std::collections::HashMap;

use futures::{FutureExt, StreamExt};
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use crate::health::Related;

/// What a watch task tells its owner: every event, or the error it will retry after.
pub type Seen<'a> = Result<&'a watcher::Event<DynamicObject>, &'a watcher::Error>;

/// A running watch and what it holds. Dropping it ends the watch.
pub struct Watched {
    pub resource: ApiResource,
    pub store: Store<DynamicObject>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watched {
    /// Starts listing and watching what `api` and `config` select; `on` sees every event and
    /// error (after the store has taken it in), in a task of its own. Errors are retried after
    /// `backoff`'s pauses.
    pub fn start(
        api: Api<DynamicObject>,
        config: watcher::Config,
        resource: ApiResource,
        backoff: impl Backoff + 'static,
        mut on: impl FnMut(Seen<'_>) + Send + 'static,
    ) -> Watched {
        let writer = reflector::store::Writer::new(resource.clone());
        let store = writer.as_reader();
        let kind = resource.kind.clone();
        let stream = watcher(api, config)
            .backoff(backoff)
            .modify(move |o| trim(o, &kind))
            .reflect(writer);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                on(event.as_ref());
            }
        });
        Watched {
            resource,
            store,
            task,
        }
    }

    /// Whether the first LIST is done (the store holds what the server has).
    pub fn listed(&self) -> bool {
        self.store.wait_until_ready().now_or_never().is_some()
    }

    /// The object named so, as the rules want it.
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Value> {
        let mut r = ObjectRef::new_with(name, self.resource.clone());
        if let Some(ns) = namespace {
            r = r.within(ns);
        }
        self.store.get(&r).map(|o| value(&o, &self.resource))
    }

    /// Everything it holds, as the rules want it.
    pub fn values(&self) -> Vec<Value> {
        self.store
            .state()
            .iter()
            .map(|o| value(o, &self.resource))
            .collect()
    }
}

/// The HTTP status a watch failed with, if the server answered.
pub fn error_code(e: &watcher::Error) -> Option<u16> {
    match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => crate::cluster::status_code(e),
        watcher::Error::WatchError(s) => Some(s.code),
        watcher::Error::NoResourceVersion => None,
    }
}

/// As the rules want it: JSON with apiVersion and kind (list items lack them).
pub fn value(o: &DynamicObject, r: &ApiResource) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    v["apiVersion"] = json!(r.api_version);
    v["kind"] = json!(r.kind);
    v
}

/// What health never looks at is not kept: managed fields, the last-applied copy, and the
/// values of Secrets and ConfigMaps.
pub fn trim(o: &mut DynamicObject, kind: &str) {
    o.metadata.managed_fields = None;
    if let Some(a) = o.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    if matches!(kind, "Secret" | "ConfigMap")
        && let Some(fields) = o.data.as_object_mut()
    {
        for f in ["data", "stringData", "binaryData"] {
            fields.remove(f);
        }
    }
}

/// ReplicaSets and Pods by the uid of their controller, so that a Deployment's come out
/// without scanning a namespace's every Pod once per Deployment.
#[derive(Default)]
pub struct Owned {
    replica_sets: HashMap<String, Vec<Value>>,
    pods: HashMap<String, Vec<Value>>,
}

impl Owned {
    pub fn new(replica_sets: Vec<Value>, pods: Vec<Value>) -> Owned {
        Owned {
            replica_sets: by_controller(replica_sets),
            pods: by_controller(pods),
        }
    }

    /// The ReplicaSets `deployment` controls and their Pods.
    pub fn of(&self, deployment: &Value) -> Related {
        let replica_sets = deployment["metadata"]["uid"]
            .as_str()
            .and_then(|uid| self.replica_sets.get(uid))
            .cloned()
            .unwrap_or_default();
        let pods = replica_sets
            .iter()
            .filter_map(|rs| rs["metadata"]["uid"].as_str())
            .filter_map(|uid| self.pods.get(uid))
            .flatten()
            .cloned()
            .collect();
        Related { replica_sets, pods }
    }
}

fn by_controller(items: Vec<Value>) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for item in items {
        let controller = item["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["controller"] == true)
            .and_then(|r| r["uid"].as_str())
            .map(str::to_string);
        if let Some(uid) = controller {
            out.entry(uid).or_default().push(item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned_by(name: &str, uid: &str, owner: &str) -> Value {
        json!({"metadata": {"name": name, "uid": uid,
            "ownerReferences": [{"uid": owner, "controller": true}]}})
    }

    #[test]
    fn a_deployments_replica_sets_and_pods_come_out_of_the_index() {
        let owned = Owned::new(
            vec![
                owned_by("web-1", "rs1", "d1"),
                owned_by("web-2", "rs2", "d1"),
                owned_by("api-1", "rs3", "d2"),
            ],
            vec![
                owned_by("web-1-a", "p1", "rs1"),
                owned_by("web-2-a", "p2", "rs2"),
                owned_by("api-1-a", "p3", "rs3"),
                json!({"metadata": {"name": "bare", "uid": "p4"}}),
            ],
        );
        let r = owned.of(&json!({"metadata": {"uid": "d1"}}));
        let names = |v: &[Value]| {
            let mut n: Vec<String> = v
                .iter()
                .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(&r.replica_sets), ["web-1", "web-2"]);
        assert_eq!(names(&r.pods), ["web-1-a", "web-2-a"]);
        let none = owned.of(&json!({"metadata": {"uid": "d9"}}));
        assert!(none.replica_sets.is_empty() && none.pods.is_empty());
    }

    #[test]
    fn values_of_secrets_are_not_kept() {
        let mut o: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "managedFields": [{"manager": "x"}],
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"k\":\"djE=\"}}"}},
            "data": {"k": "djE="}, "type": "Opaque"
        }))
        .unwrap();
        trim(&mut o, "Secret");
        let v = serde_json::to_string(&o).unwrap();
        assert!(!v.contains("djE="), "{v}");
        assert!(!v.contains("managedFields"), "{v}");
        assert!(v.contains("Opaque"), "{v}");
    }
}
