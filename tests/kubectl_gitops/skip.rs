//! Objects whose live fields provably match the manifest are not dry-run (that is what makes a
//! diff of a large, mostly unchanged namespace fast). These tests hold that shortcut to the
//! API server's own answer: after edits by other field managers, the plan with the shortcut
//! and the plan with `--check-all` (one dry-run per object) must be identical. Values the server
//! completes (a Deployment's fieldRef) are proven by the digest annotation of our last apply;
//! the second test holds each part of that rule.

use super::*;

const MANIFESTS: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-a
  labels: {app: shop}
data:
  mode: normal
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-b
  annotations: {team: payments}
data:
  level: info
---
apiVersion: v1
kind: Secret
metadata:
  name: s-a
type: Opaque
data:
  password: czNjcjN0
---
apiVersion: v1
kind: Service
metadata:
  name: svc
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: sa
automountServiceAccountToken: false
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: role
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: nginx:1.27
        ports: [{containerPort: 8080, name: http}]
        env:
        - {name: LEVEL, value: info}
        - {name: REGION, value: eu}
        resources: {requests: {cpu: 100m, memory: 64Mi}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: worker
spec:
  replicas: 1
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec:
      tolerations:
      - {key: dedicated, operator: Equal, value: batch, effect: NoExecute}
      containers:
      - name: app
        image: busybox:1.36
        env:
        - name: POD
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
"#;

/// `diff -o json` of `tag`, with and without the shortcut; both must agree.
fn both_plans(repo: &Repo, tag: &str, ns: &str) -> Value {
    let r = repo.path.to_str().unwrap();
    let diff = |extra: &[&str]| {
        let mut a = vec![
            "diff", "--repo", r, "--tag", tag, "--path", "app", "-n", ns, "-o", "json",
        ];
        a.extend_from_slice(extra);
        run(&a)
    };
    let fast = diff(&[]);
    let full = diff(&["--check-all"]);
    assert!(matches!(fast.status.code(), Some(0 | 1)), "{}", err(&fast));
    assert_eq!(
        fast.status.code(),
        full.status.code(),
        "{}{}",
        err(&fast),
        err(&full)
    );
    let fast: Value = serde_json::from_slice(&fast.stdout).unwrap();
    let full: Value = serde_json::from_slice(&full.stdout).unwrap();
    assert_eq!(
        fast, full,
        "the shortcut disagrees with the server's dry-runs"
    );
    fast
}

fn objects(plan: &Value, list: &str) -> Vec<String> {
    let mut v: Vec<String> = plan[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            o.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| o["object"].as_str().unwrap().to_string())
        })
        .collect();
    v.sort();
    v
}

/// "N of M objects unchanged without a dry-run", from `-v 2`.
fn skipped(repo: &Repo, tag: &str, ns: &str, extra: &[&str]) -> (usize, usize) {
    let mut a = vec![
        "diff",
        "--repo",
        repo.path.to_str().unwrap(),
        "--tag",
        tag,
        "--path",
        "app",
        "-n",
        ns,
        "-v",
        "2",
    ];
    a.extend_from_slice(extra);
    let o = run(&a);
    let line = err(&o)
        .lines()
        .find(|l| l.contains("unchanged without a dry-run"))
        .unwrap_or_else(|| panic!("no skip line in:\n{}", err(&o)))
        .to_string();
    let nums: Vec<usize> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

#[test]
fn unchanged_objects_skip_the_dry_run_and_agree_with_the_server() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("skip");
    let repo = Repo::new();
    repo.write("app/all.yaml", MANIFESTS);
    repo.tag("t1");
    // t2 changes values inside maps and lists, drops a field we own (cm-b's annotation) and a
    // list element we own (web's REGION variable): all changes only the values or our field
    // set can reveal.
    repo.write(
        "app/all.yaml",
        MANIFESTS
            .replace("  annotations: {team: payments}\n", "")
            .replace("password: czNjcjN0", "password: bmV3LXBhc3M=")
            .replace("targetPort: 8080", "targetPort: 8081")
            .replace("        - {name: REGION, value: eu}\n", ""),
    );
    repo.tag("t2");
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "t1", &ns, &[]));

    // Right after the sync: nothing to do, and all of it known without asking the server
    // (worker's fieldRef, an atomic value the server completes with a default apiVersion, by
    // the digest of our last apply).
    let plan = both_plans(&repo, "t1", &ns);
    assert_eq!(plan["summary"]["update"], 0, "{plan:#}");
    assert_eq!(skipped(&repo, "t1", &ns, &[]), (8, 8));
    assert_eq!(skipped(&repo, "t1", &ns, &["--check-all"]).0, 0);

    // Other managers edit the live objects.
    let k = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["-n", ns.as_str()]);
        kubectl(&a);
    };
    k(&["scale", "deployment/web", "--replicas=5"]);
    k(&["label", "configmap/cm-b", "extra=added-by-someone"]);
    k(&[
        "patch",
        "configmap/cm-a",
        "--type=merge",
        "-p",
        r#"{"data":{"mode":"maintenance"}}"#,
    ]);
    k(&[
        "patch",
        "deployment/worker",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/spec/template/spec/tolerations/0/tolerationSeconds","value":30}]"#,
    ]);
    k(&[
        "patch",
        "role/role",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/rules/0/verbs/-","value":"watch"}]"#,
    ]);
    k(&[
        "patch",
        "service/svc",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/spec/ports/-","value":{"name":"metrics","port":9090,"targetPort":9090}}]"#,
    ]);
    k(&[
        "patch",
        "serviceaccount/sa",
        "--type=merge",
        "-p",
        r#"{"metadata":{"annotations":{"note":"foreign"}}}"#,
    ]);

    let plan = both_plans(&repo, "t1", &ns);
    assert_eq!(
        objects(&plan, "updates"),
        [
            format!("ConfigMap/{ns}/cm-a"),
            format!("Deployment.apps/{ns}/web"),
            format!("Deployment.apps/{ns}/worker"),
            format!("Role.rbac.authorization.k8s.io/{ns}/role"),
        ],
        "{plan:#}"
    );
    // Additions by others that our apply leaves alone are not changes.
    assert_eq!(
        objects(&plan, "unchanged"),
        [
            format!("ConfigMap/{ns}/cm-b"),
            format!("Secret/{ns}/s-a"),
            format!("Service/{ns}/svc"),
            format!("ServiceAccount/{ns}/sa"),
        ],
        "{plan:#}"
    );

    // Converge on t1 again: the plan is empty, whatever others added stays.
    ok(sync_app(r, "t1", &ns, &["--force-conflicts"]));
    let plan = both_plans(&repo, "t1", &ns);
    assert_eq!(plan["summary"]["update"], 0, "{plan:#}");

    let plan = both_plans(&repo, "t2", &ns);
    assert_eq!(
        objects(&plan, "updates"),
        [
            format!("ConfigMap/{ns}/cm-b"),
            format!("Deployment.apps/{ns}/web"),
            format!("Secret/{ns}/s-a"),
            format!("Service/{ns}/svc"),
        ],
        "{plan:#}"
    );

    ok(sync_app(r, "t2", &ns, &[]));
    let plan = both_plans(&repo, "t2", &ns);
    assert_eq!(plan["summary"]["update"], 0, "{plan:#}");
    assert!(skipped(&repo, "t2", &ns, &[]).0 >= 5);
}

const DIGEST: &str = "gitops.kubectl.io/applied-digest";

fn digest(ns: &str, object: &str) -> String {
    kubectl(&[
        "get",
        object,
        "-n",
        ns,
        "-o",
        "jsonpath={.metadata.annotations.gitops\\.kubectl\\.io/applied-digest}",
    ])
}

/// The digest rule: values the server completes never equal the manifest (worker's atomic
/// fieldRef gains `apiVersion: v1`), and are proven by the digest annotation of our last
/// apply together with our field set. Each part of the rule has a case here where skipping it
/// would call a changed object unchanged: the digest must be the one of the manifest at hand
/// (t2 changes only inside the completed value), the field must still be ours (another manager
/// edits the fieldRef), the annotation must still be ours (another manager forges t2's digest
/// on an object at t1), and an object without the annotation (applied before it existed) is
/// proven by equal values alone.
#[test]
fn the_digest_of_our_last_apply_proves_completed_values_and_nothing_more() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("digest");
    let repo = Repo::new();
    repo.write("app/all.yaml", MANIFESTS);
    repo.tag("t1");
    repo.write(
        "app/all.yaml",
        MANIFESTS.replace(
            "valueFrom: {fieldRef: {fieldPath: metadata.name}}",
            "valueFrom: {fieldRef: {fieldPath: metadata.namespace}}",
        ),
    );
    repo.tag("t2");
    let r = repo.path.to_str().unwrap();
    let worker = || vec![format!("Deployment.apps/{ns}/worker")];
    ok(sync_app(r, "t1", &ns, &[]));
    let stamped = digest(&ns, "deployment/worker");
    assert!(stamped.starts_with("sha256:"), "{stamped:?}");
    assert_eq!(both_plans(&repo, "t1", &ns)["summary"]["update"], 0);
    assert_eq!(skipped(&repo, "t1", &ns, &[]), (8, 8));

    // The manifest changed inside the completed value: another digest, so the dry-run decides.
    let plan = both_plans(&repo, "t2", &ns);
    assert_eq!(objects(&plan, "updates"), worker(), "{plan:#}");

    // Another manager changes the fieldRef: it is theirs now, and the digest alone is no proof.
    kubectl(&[
        "patch",
        "deployment/worker",
        "-n",
        &ns,
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/env/0/valueFrom/fieldRef/fieldPath","value":"metadata.uid"}]"#,
    ]);
    let plan = both_plans(&repo, "t1", &ns);
    assert_eq!(objects(&plan, "updates"), worker(), "{plan:#}");
    ok(sync_app(r, "t1", &ns, &["--force-conflicts"]));
    assert_eq!(both_plans(&repo, "t1", &ns)["summary"]["update"], 0);
    assert_eq!(skipped(&repo, "t1", &ns, &[]), (8, 8));

    // A forged digest: the object is at t1, another manager writes t2's digest on it.
    ok(sync_app(r, "t2", &ns, &[]));
    let t2_digest = digest(&ns, "deployment/worker");
    assert_ne!(t2_digest, stamped);
    ok(sync_app(r, "t1", &ns, &[]));
    assert_eq!(digest(&ns, "deployment/worker"), stamped);
    kubectl(&[
        "annotate",
        "deployment/worker",
        "-n",
        &ns,
        "--overwrite",
        &format!("{DIGEST}={t2_digest}"),
    ]);
    let plan = both_plans(&repo, "t2", &ns);
    assert_eq!(objects(&plan, "updates"), worker(), "{plan:#}");

    // No annotation (as on objects applied before it existed): the stamp alone is no change,
    // and only equal values prove anything.
    kubectl(&[
        "annotate",
        "deployment/worker",
        "-n",
        &ns,
        &format!("{DIGEST}-"),
    ]);
    assert_eq!(digest(&ns, "deployment/worker"), "");
    let plan = both_plans(&repo, "t1", &ns);
    assert_eq!(plan["summary"]["update"], 0, "{plan:#}");
    assert_eq!(skipped(&repo, "t1", &ns, &[]), (7, 8));
    let plan = both_plans(&repo, "t2", &ns);
    assert_eq!(objects(&plan, "updates"), worker(), "{plan:#}");
}
