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

// ---- The cluster runs workloads: nodes, scheduling, storage, the failure convention ----

fn kubectl_json(args: &[&str]) -> Value {
    let mut command = cluster::cluster().kubectl();
    command.args(args).args(["-o", "json"]);
    serde_json::from_str(&run(command)).expect("kubectl -o json")
}

fn kubectl_apply(ns: &str, manifest: &str) {
    let mut command = cluster::cluster().kubectl();
    command
        .args(["apply", "--server-side", "-n", ns, "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("kubectl apply");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), manifest.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Polls `probe` until it returns `Some`, for at most `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "waited {limit:?} for {what} in vain"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn is_true(obj: &Value, kind: &str) -> bool {
    condition(obj, kind).is_some_and(|c| c["status"] == "True")
}

/// The one Pod labelled `app=<app>` that is not being deleted, once it exists.
fn the_pod(ns: &str, app: &str) -> Value {
    wait_for(&format!("a Pod of {app}"), Duration::from_secs(30), || {
        let pods = kubectl_json(&["get", "pods", "-n", ns, "-l", &format!("app={app}")]);
        let mut live: Vec<Value> = pods["items"]
            .as_array()?
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .cloned()
            .collect();
        (live.len() == 1).then(|| live.remove(0))
    })
}

fn deployment(name: &str, image: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n        - name: main\n          image: {image}\n"
    )
}

#[test]
fn the_cluster_starts_with_ready_nodes_and_a_default_storage_class() {
    let cluster = cluster::cluster();
    if !cluster.is_owned() {
        return; // someone else's cluster has its own nodes and classes
    }
    // No waiting here: the fixture reports ready only once both hold.
    let nodes = kubectl_json(&["get", "nodes"]);
    let nodes = nodes["items"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    for node in nodes {
        assert!(is_true(node, "Ready"), "{node}");
        assert_eq!(node["status"]["allocatable"]["cpu"], "16", "{node}");
        assert!(node["spec"]["taints"].is_null(), "{node}");
        let name = node["metadata"]["name"].as_str().unwrap();
        // KWOK's heartbeat: a Lease per Node, held and renewed.
        let lease = kubectl_json(&["get", "lease", name, "-n", "kube-node-lease"]);
        assert!(lease["spec"]["renewTime"].is_string(), "{lease}");
    }
    let class = kubectl_json(&["get", "storageclass", "standard"]);
    assert_eq!(
        class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
        "true"
    );
}

#[test]
fn a_deployment_rolls_out_onto_the_nodes_and_its_service_gets_endpoints() {
    let cluster = cluster::cluster();
    let ns = cluster.fresh_namespace("smoke-rollout");
    let started = Instant::now();
    kubectl_apply(
        &ns,
        &(deployment("web", "nginx:1.27", 3)
            + "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n    - port: 80\n"),
    );
    let d = wait_for("Deployment web Available", Duration::from_secs(60), || {
        let d = kubectl_json(&["get", "deployment", "web", "-n", &ns]);
        (is_true(&d, "Available") && d["status"]["availableReplicas"] == 3).then_some(d)
    });
    eprintln!("3 replicas available after {:?}", started.elapsed());
    assert_eq!(
        condition(&d, "Progressing").unwrap()["reason"],
        "NewReplicaSetAvailable"
    );
    let pods = kubectl_json(&["get", "pods", "-n", &ns, "-l", "app=web"]);
    let pods = pods["items"].as_array().unwrap();
    assert_eq!(pods.len(), 3);
    let mut nodes: Vec<&str> = Vec::new();
    for pod in pods {
        assert_eq!(pod["status"]["phase"], "Running", "{pod}");
        assert!(is_true(pod, "Ready"), "{pod}");
        assert!(pod["status"]["podIP"].is_string(), "{pod}");
        nodes.push(pod["spec"]["nodeName"].as_str().unwrap());
    }
    // The scheduler spreads the replicas (default topology spreading by hostname).
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    wait_for("3 ready endpoints", Duration::from_secs(30), || {
        let slices = kubectl_json(&[
            "get",
            "endpointslices",
            "-n",
            &ns,
            "-l",
            "kubernetes.io/service-name=web",
        ]);
        let ready = slices["items"]
            .as_array()?
            .iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == true)
            .count();
        (ready == 3).then_some(())
    });
}

#[test]
fn a_claim_binds_to_a_provisioned_volume_and_its_pod_runs() {
    let cluster = cluster::cluster();
    let ns = cluster.fresh_namespace("smoke-pvc");
    kubectl_apply(
        &ns,
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: db\n  labels:\n    app: db\nspec:\n  containers:\n    - name: db\n      image: postgres:16\n      volumeMounts:\n        - name: data\n          mountPath: /var/lib/postgresql\n  volumes:\n    - name: data\n      persistentVolumeClaim:\n        claimName: data\n",
    );
    let pvc = wait_for("the claim to bind", Duration::from_secs(30), || {
        let pvc = kubectl_json(&["get", "pvc", "data", "-n", &ns]);
        (pvc["status"]["phase"] == "Bound").then_some(pvc)
    });
    assert_eq!(pvc["spec"]["storageClassName"], "standard", "{pvc}");
    assert_eq!(pvc["status"]["capacity"]["storage"], "1Gi", "{pvc}");
    let volume = pvc["spec"]["volumeName"].as_str().unwrap();
    let pv = kubectl_json(&["get", "pv", volume]);
    assert_eq!(pv["spec"]["claimRef"]["name"], "data", "{pv}");
    let pod = wait_for("the Pod to run", Duration::from_secs(30), || {
        let pod = the_pod(&ns, "db");
        (pod["status"]["phase"] == "Running").then_some(pod)
    });
    assert!(pod["spec"]["nodeName"].is_string(), "{pod}");
    // A bigger request is granted (the default class allows expansion).
    let mut patch = cluster.kubectl();
    patch.args([
        "patch",
        "pvc",
        "data",
        "-n",
        &ns,
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
    ]);
    run(patch);
    wait_for("the claim to grow", Duration::from_secs(30), || {
        let pvc = kubectl_json(&["get", "pvc", "data", "-n", &ns]);
        (pvc["status"]["capacity"]["storage"] == "2Gi").then_some(())
    });
}

#[test]
fn image_tags_broken_crash_and_fail_fail_the_way_a_kubelet_reports_it() {
    let cluster = cluster::cluster();
    let ns = cluster.fresh_namespace("smoke-failures");
    kubectl_apply(
        &ns,
        &[
            deployment("pulls", "nginx:broken", 1),
            deployment("crashes", "nginx:crash", 1),
            deployment("runs", "nginx:fail", 1),
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: fails\nspec:\n  backoffLimit: 0\n  template:\n    metadata:\n      labels:\n        app: fails\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: task\n          image: busybox:fail\n".to_string(),
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: succeeds\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: task\n          image: busybox:1.36\n".to_string(),
        ]
        .join("---\n"),
    );

    // broken: the image is never pulled.
    let pod = wait_for("ImagePullBackOff", Duration::from_secs(30), || {
        let pod = the_pod(&ns, "pulls");
        (pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff")
            .then_some(pod)
    });
    assert_eq!(pod["status"]["phase"], "Pending", "{pod}");
    assert!(!is_true(&pod, "Ready"), "{pod}");

    // crash: restarts with a growing count, exit code 1.
    let mut counts = Vec::new();
    wait_for("two restarts", Duration::from_secs(30), || {
        let pod = the_pod(&ns, "crashes");
        let status = &pod["status"]["containerStatuses"][0];
        assert!(!is_true(&pod, "Ready"), "{pod}");
        counts.push(status["restartCount"].as_i64()?);
        (status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && status["lastState"]["terminated"]["exitCode"] == 1
            && counts.iter().min() < counts.iter().max())
        .then_some(())
    });

    // fail is for Job Pods: the Pod fails, the Job reaches its backoff limit.
    let job = wait_for("Job fails to fail", Duration::from_secs(30), || {
        let job = kubectl_json(&["get", "job", "fails", "-n", &ns]);
        is_true(&job, "Failed").then_some(job)
    });
    assert_eq!(
        condition(&job, "Failed").unwrap()["reason"],
        "BackoffLimitExceeded"
    );
    let pod = &kubectl_json(&["get", "pods", "-n", &ns, "-l", "app=fails"])["items"][0];
    assert_eq!(pod["status"]["phase"], "Failed", "{pod}");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        1
    );

    // Anything else runs: a Deployment's Pod (even tagged fail) becomes Ready, a Job completes.
    wait_for("Deployment runs Available", Duration::from_secs(30), || {
        let d = kubectl_json(&["get", "deployment", "runs", "-n", &ns]);
        is_true(&d, "Available").then_some(())
    });
    wait_for("Job succeeds complete", Duration::from_secs(30), || {
        let job = kubectl_json(&["get", "job", "succeeds", "-n", &ns]);
        is_true(&job, "Complete").then_some(())
    });
    // The Deployments that never become available are still Progressing, not Available.
    for name in ["pulls", "crashes"] {
        let d = kubectl_json(&["get", "deployment", name, "-n", &ns]);
        assert!(!is_true(&d, "Available"), "{d}");
    }
}

/// A cluster of this test's own, started with `tests/cluster/start DIR ARGS`, stopped (and its
/// directory removed) when dropped.
struct OwnCluster {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl OwnCluster {
    fn start(args: &[&str]) -> OwnCluster {
        let dir = tempfile::Builder::new()
            .prefix("own-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let mut start = std::process::Command::new("bash");
        start
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/cluster/start"))
            .arg(dir.path())
            .args(args);
        let kubeconfig = PathBuf::from(run(start).trim());
        OwnCluster { dir, kubeconfig }
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let program = std::env::var_os("KUBECTL").unwrap_or_else(|| "kubectl".into());
        let mut command = std::process::Command::new(program);
        command.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        run(command)
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/cluster/stop"))
            .arg(self.dir.path())
            .status();
    }
}

/// A Deployment in a new namespace of `cluster`, and what exists in that namespace after 2 s.
fn left_alone(cluster: &OwnCluster) -> String {
    cluster.kubectl(&["create", "namespace", "alone"]);
    cluster.kubectl(&[
        "create",
        "deployment",
        "web",
        "-n",
        "alone",
        "--image=nginx:1.27",
    ]);
    std::thread::sleep(Duration::from_secs(2));
    cluster.kubectl(&[
        "get",
        "replicasets,pods,serviceaccounts",
        "-n",
        "alone",
        "-o",
        "name",
    ])
}

#[test]
fn controllers_false_gives_a_bare_api_server_and_workloads_false_runs_no_pods() {
    if !cluster::cluster().is_owned() {
        return; // GITOPS_TEST_KUBECONFIG: this run builds and starts no cluster of its own
    }
    // Stored, and nothing acts on it: no ReplicaSet, no Pod, not even a ServiceAccount.
    let bare = OwnCluster::start(&["--controllers=false"]);
    assert_eq!(bare.kubectl(&["get", "nodes", "-o", "name"]).trim(), "");
    assert_eq!(
        bare.kubectl(&["get", "storageclasses", "-o", "name"])
            .trim(),
        ""
    );
    assert_eq!(left_alone(&bare).trim(), "");
    drop(bare);
    // The namespace controllers run (a default ServiceAccount appears), workloads do not.
    let housekeeping = OwnCluster::start(&["--workloads=false"]);
    assert_eq!(
        housekeeping.kubectl(&["get", "nodes", "-o", "name"]).trim(),
        ""
    );
    assert_eq!(left_alone(&housekeeping).trim(), "serviceaccount/default");
}
