//! Smoke tests of the test-cluster harness (`tests/cluster`, `tests/common/cluster.rs`): they
//! prove the server is a real kube-apiserver doing what our plugin will depend on — discovery,
//! server-side apply with field ownership and dry-run, RBAC, the controllers — and that the
//! generated kubeconfig works for the real kubectl. Each test works in its own namespace.

#[path = "../common/cluster.rs"]
mod cluster;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{GroupVersionKind, Status};
use kube::discovery::{Discovery, Scope};
use serde_json::{Value, json};

fn demo_manifests() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/corpus/microservices-demo/release/kubernetes-manifests.yaml")
}

/// The documents of the multi-document stream, without the empty ones (comment-only headers).
fn demo_objects() -> Vec<DynamicObject> {
    let path = demo_manifests();
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(&text)
        .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    docs.into_iter()
        .filter(|doc| !doc.is_null())
        .map(|doc| serde_json::from_value(doc).expect("a Kubernetes object"))
        .collect()
}

fn gvk_of(obj: &DynamicObject) -> GroupVersionKind {
    let types = obj.types.as_ref().expect("apiVersion and kind");
    GroupVersionKind::try_from(types).expect("valid apiVersion")
}

fn api_error(result: Result<impl std::fmt::Debug, kube::Error>) -> Box<Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn config_map(name: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": name },
        "data": data,
    })
}

#[tokio::test]
async fn lists_namespaces_with_kube() {
    let cluster = cluster::cluster();
    let ns = cluster.fresh_namespace("smoke-list");
    let namespaces: Api<Namespace> = Api::all(cluster.client().await);
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .expect("list namespaces")
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for expected in [
        "default",
        "kube-system",
        cluster::RESTRICTED_NAMESPACE,
        ns.as_str(),
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[tokio::test]
async fn server_side_applies_the_microservices_demo_and_reads_it_back() {
    let cluster = cluster::cluster();
    let ns = cluster.fresh_namespace("smoke-apply");
    let client = cluster.client().await;
    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("discovery");
    let objects = demo_objects();
    assert_eq!(objects.len(), 35, "documents in the demo manifest");

    let params = PatchParams::apply("smoke");
    let mut applied = Vec::new();
    for obj in &objects {
        let gvk = gvk_of(obj);
        let (resource, caps) = discovery
            .resolve_gvk(&gvk)
            .unwrap_or_else(|| panic!("{gvk:?} not served"));
        assert!(matches!(caps.scope, Scope::Namespaced), "{gvk:?}");
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
        let name = obj.metadata.name.clone().expect("name");
        let live = api
            .patch(&name, &params, &Patch::Apply(obj))
            .await
            .unwrap_or_else(|e| panic!("apply {} {name}: {e}", gvk.kind));
        assert_eq!(live.metadata.namespace.as_deref(), Some(ns.as_str()));
        applied.push((api, name, obj));
    }

    for (api, name, sent) in applied {
        let live = api.get(&name).await.expect("read back");
        let managers: Vec<_> = live
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|m| m.manager.as_deref() == Some("smoke"))
            .map(|m| m.operation.clone())
            .collect();
        // An apply that sets no field beyond the object's identity (the demo's bare
        // ServiceAccounts) owns nothing, and the server records no entry for it.
        let owns_fields = sent.metadata.labels.is_some() || sent.data.get("spec").is_some();
        let expected = if owns_fields {
            vec![Some("Apply".to_owned())]
        } else {
            vec![]
        };
        assert_eq!(managers, expected, "{name}: field managers");
        // The server defaults fields but must keep every label and spec value we sent.
        assert_eq!(live.metadata.labels, sent.metadata.labels, "{name}: labels");
        if let Some(spec) = sent.data.get("spec") {
            assert_spec_contains(&name, spec, &live.data["spec"]);
        }
    }

    let deployments = discovery
        .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
        .expect("apps/v1 Deployment")
        .0;
    let listed = Api::<DynamicObject>::namespaced_with(client, &ns, &deployments)
        .list(&ListParams::default())
        .await
        .expect("list deployments");
    assert_eq!(listed.items.len(), 12);
}

/// Every value in `sent` is present, equal, in `live` (which may have more: defaults).
fn assert_spec_contains(name: &str, sent: &Value, live: &Value) {
    match (sent, live) {
        (Value::Object(s), Value::Object(l)) => {
            for (key, value) in s {
                let got = l
                    .get(key)
                    .unwrap_or_else(|| panic!("{name}: {key} missing from live object"));
                assert_spec_contains(name, value, got);
            }
        }
        (Value::Array(s), Value::Array(l)) => {
            assert_eq!(s.len(), l.len(), "{name}: list length");
            for (s, l) in s.iter().zip(l) {
                assert_spec_contains(name, s, l);
            }
        }
        // Quantities such as "100m" vs "0.1" are normalised by the server; these manifests
        // use canonical forms, so exact equality holds.
        _ => assert_eq!(sent, live, "{name}"),
    }
}

#[tokio::test]
async fn dry_run_apply_leaves_the_live_object_alone() {
    let cluster = cluster::cluster();
    let ns = cluster.fresh_namespace("smoke-dryrun");
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().await, &ns);
    let params = PatchParams::apply("smoke");
    let before = api
        .patch(
            "settings",
            &params,
            &Patch::Apply(config_map("settings", json!({"mode": "blue"}))),
        )
        .await
        .expect("apply");

    let dry = api
        .patch(
            "settings",
            &params.clone().dry_run(),
            &Patch::Apply(config_map("settings", json!({"mode": "green"}))),
        )
        .await
        .expect("dry-run apply");
    assert_eq!(
        dry.data.unwrap()["mode"],
        "green",
        "dry run shows the merge"
    );

    let after = api.get("settings").await.expect("get");
    assert_eq!(after.data.unwrap()["mode"], "blue");
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "a dry run must not write"
    );
}

#[tokio::test]
async fn two_managers_of_one_field_conflict() {
    let cluster = cluster::cluster();
    let ns = cluster.fresh_namespace("smoke-conflict");
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().await, &ns);
    api.patch(
        "shared",
        &PatchParams::apply("alice"),
        &Patch::Apply(config_map("shared", json!({"owner": "alice"}))),
    )
    .await
    .expect("first apply");

    let conflict = api_error(
        api.patch(
            "shared",
            &PatchParams::apply("bob"),
            &Patch::Apply(config_map("shared", json!({"owner": "bob"}))),
        )
        .await,
    );
    assert_eq!(conflict.code, 409, "{conflict:?}");
    assert_eq!(conflict.reason, "Conflict");
    assert!(conflict.message.contains("alice"), "{}", conflict.message);

    // Same value, same field: no conflict, the field becomes co-owned.
    api.patch(
        "shared",
        &PatchParams::apply("carol"),
        &Patch::Apply(config_map("shared", json!({"owner": "alice"}))),
    )
    .await
    .expect("agreeing apply");

    let forced = api
        .patch(
            "shared",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(config_map("shared", json!({"owner": "bob"}))),
        )
        .await
        .expect("forced apply");
    assert_eq!(forced.data.unwrap()["owner"], "bob");
}

#[tokio::test]
async fn restricted_user_reads_its_namespace_and_writes_nothing() {
    let cluster = cluster::cluster();
    let ns = cluster.fresh_namespace("smoke-rbac");
    let admin: Api<ConfigMap> = Api::namespaced(cluster.client().await, &ns);
    admin
        .create(
            &PostParams::default(),
            &serde_json::from_value(config_map("visible-to-admin", json!({}))).unwrap(),
        )
        .await
        .expect("admin creates");
    let marker = format!("{ns}-marker");
    let admin_restricted: Api<ConfigMap> =
        Api::namespaced(cluster.client().await, cluster::RESTRICTED_NAMESPACE);
    admin_restricted
        .create(
            &PostParams::default(),
            &serde_json::from_value(config_map(&marker, json!({"k": "v"}))).unwrap(),
        )
        .await
        .expect("admin creates in restricted-ns");

    let restricted = cluster.restricted_client().await;
    let in_own: Api<ConfigMap> = Api::namespaced(restricted.clone(), cluster::RESTRICTED_NAMESPACE);
    let read = in_own
        .get(&marker)
        .await
        .expect("restricted reads restricted-ns");
    assert_eq!(read.data.unwrap()["k"], "v");

    let denied = api_error(
        in_own
            .create(
                &PostParams::default(),
                &serde_json::from_value(config_map("nope", json!({}))).unwrap(),
            )
            .await,
    );
    assert_eq!(denied.code, 403, "{denied:?}");
    let denied = api_error(
        in_own
            .patch(
                &marker,
                &PatchParams::apply("restricted"),
                &Patch::Apply(config_map(&marker, json!({"k": "changed"}))),
            )
            .await,
    );
    assert_eq!(denied.code, 403, "{denied:?}");

    let elsewhere: Api<ConfigMap> = Api::namespaced(restricted, &ns);
    let denied = api_error(elsewhere.list(&ListParams::default()).await);
    assert_eq!(denied.code, 403, "reading another namespace: {denied:?}");
    let denied = api_error(
        elsewhere
            .create(
                &PostParams::default(),
                &serde_json::from_value(config_map("nope", json!({}))).unwrap(),
            )
            .await,
    );
    assert_eq!(denied.code, 403, "{denied:?}");

    admin_restricted
        .delete(&marker, &DeleteParams::default())
        .await
        .expect("clean up the marker");
}

#[tokio::test]
async fn garbage_collector_deletes_dependents() {
    let cluster = cluster::cluster();
    let ns = cluster.fresh_namespace("smoke-gc");
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().await, &ns);
    let owner = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(config_map("owner", json!({}))).unwrap(),
        )
        .await
        .expect("owner");
    let mut child = config_map("child", json!({}));
    child["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid.unwrap(),
    }]);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(child).unwrap(),
    )
    .await
    .expect("child");
    api.delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");

    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get_opt("child").await.expect("get child").is_some() {
        assert!(
            Instant::now() < deadline,
            "the garbage collector did not delete the dependent within 60s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn run(mut command: std::process::Command) -> String {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {shown}: {e} (is kubectl on PATH? set KUBECTL)"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{shown} failed with {}:\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn real_kubectl_works_with_the_generated_kubeconfig() {
    let cluster = cluster::cluster();
    let ns = cluster.fresh_namespace("smoke-kubectl");

    let mut get_ns = cluster.kubectl();
    get_ns.args(["get", "ns", "-o", "name"]);
    let listed = run(get_ns);
    assert!(
        listed.lines().any(|l| l == format!("namespace/{ns}")),
        "{listed}"
    );

    let mut apply = cluster.kubectl();
    apply
        .args(["apply", "--server-side", "-n", &ns, "-f"])
        .arg(demo_manifests());
    let applied = run(apply);
    assert_eq!(
        applied
            .lines()
            .filter(|l| l.ends_with("serverside-applied"))
            .count(),
        35,
        "{applied}"
    );

    let mut get = cluster.kubectl();
    get.args([
        "get",
        "deployments,services,serviceaccounts",
        "-n",
        &ns,
        "-o",
        "name",
    ]);
    let objects = run(get);
    assert!(
        objects.lines().any(|l| l == "deployment.apps/frontend"),
        "{objects}"
    );
    // 12 Deployments, 12 Services, 11 ServiceAccounts; "default" is the controller's.
    let applied_objects = objects
        .lines()
        .filter(|l| *l != "serviceaccount/default")
        .count();
    assert_eq!(applied_objects, 35, "{objects}");

    let mut restricted = cluster.kubectl();
    restricted.args([
        "--context",
        "restricted",
        "auth",
        "can-i",
        "create",
        "configmaps",
    ]);
    let output = restricted.output().expect("kubectl auth can-i");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "no");
}

#[test]
fn admin_reads_apiserver_metrics() {
    let cluster = cluster::cluster();
    let mut get = cluster.kubectl();
    get.args(["get", "--raw", "/metrics"]);
    let metrics = run(get);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("apiserver_request_total{")),
        "no apiserver_request_total in /metrics"
    );
}
