//! Judging a live object: the rules, plus — for a Deployment still in progress — its
//! ReplicaSets and Pods, read so that a doomed rollout can be named for what dooms it.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde::Serialize;
use serde_json::Value;

use super::rules::judge;
use super::verdict::{Context, Related, Status, Verdict};
use crate::cluster::Cluster;

/// The verdict on `obj` as of now. Reads the Pods only when they can change the verdict: a
/// Deployment whose own status says it is still rolling out.
pub async fn judge_live(cluster: &Cluster, obj: &Value, limit: Duration) -> Verdict {
    let own = judge(obj, &Context::now());
    if !needs_related(obj, &own) {
        return own;
    }
    match tokio::time::timeout(limit, related(cluster, obj)).await {
        Ok(Some(related)) => judge(
            obj,
            &Context {
                now: jiff::Timestamp::now(),
                related: Some(&related),
            },
        ),
        _ => own,
    }
}

/// The verdict on `obj` as of now, with its ReplicaSets and Pods taken from `related` (any
/// superset: the rules pick those the Deployment controls) rather than read from the cluster:
/// for a reader that already holds them, such as the exporter's watches.
pub fn judge_known(obj: &Value, related: impl FnOnce() -> Related) -> Verdict {
    judge_with(obj, || Some(related()))
}

/// As [`judge_known`], for a reader that may not hold them (yet): `None` gives the verdict
/// the Deployment's own status gives. `related` is called only when they can change the
/// verdict, which also tells the reader that it needs them.
pub fn judge_with(obj: &Value, related: impl FnOnce() -> Option<Related>) -> Verdict {
    let own = judge(obj, &Context::now());
    if !needs_related(obj, &own) {
        return own;
    }
    let Some(related) = related() else {
        return own;
    };
    judge(
        obj,
        &Context {
            now: jiff::Timestamp::now(),
            related: Some(&related),
        },
    )
}

/// Whether the Pods can change the verdict: a Deployment whose own status says it is still
/// rolling out.
fn needs_related(obj: &Value, own: &Verdict) -> bool {
    let deployment = obj["kind"] == "Deployment"
        && obj["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("apps/"));
    own.status == Status::InProgress && deployment
}

/// The ReplicaSets and Pods the Deployment's selector matches. None when they cannot be read:
/// a deployer without the right to list Pods still gets the verdict the Deployment's own
/// status gives.
async fn related(cluster: &Cluster, deployment: &Value) -> Option<Related> {
    let namespace = deployment["metadata"]["namespace"].as_str()?;
    let selector = label_selector(&deployment["spec"]["selector"])?;
    let params = ListParams::default().labels(&selector);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let (replica_sets, pods) = futures::join!(replica_sets.list(&params), pods.list(&params));
    match (replica_sets, pods) {
        (Ok(replica_sets), Ok(pods)) => Some(Related {
            replica_sets: values(&replica_sets.items),
            pods: values(&pods.items),
        }),
        (Err(e), _) | (_, Err(e)) => {
            crate::log::info(
                4,
                format!("not reading the Pods of a Deployment in {namespace}: {e}"),
            );
            None
        }
    }
}

fn values<T: Serialize>(items: &[T]) -> Vec<Value> {
    items
        .iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .collect()
}

/// A LabelSelector as the `labelSelector` query parameter spells it.
fn label_selector(selector: &Value) -> Option<String> {
    let mut terms: Vec<String> = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str()?;
        let values = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(",");
        terms.push(match e["operator"].as_str()? {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        });
    }
    // An empty selector would list every Pod of the namespace; a Deployment never has one.
    (!terms.is_empty()).then(|| terms.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_become_query_parameters() {
        let s = json!({"matchLabels": {"app": "web", "tier": "front"},
            "matchExpressions": [
                {"key": "track", "operator": "In", "values": ["stable", "canary"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["a"]},
                {"key": "team", "operator": "Exists"}]});
        assert_eq!(
            label_selector(&s).as_deref(),
            Some("app=web,tier=front,track in (stable,canary),!legacy,zone notin (a),team")
        );
        assert_eq!(label_selector(&json!({})), None);
        assert_eq!(
            label_selector(&json!({"matchExpressions": [{"key": "k", "operator": "Gt"}]})),
            None
        );
    }
}
