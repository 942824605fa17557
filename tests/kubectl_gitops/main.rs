//! End-to-end tests of `kubectl gitops diff` and `sync` against the project's real test API
//! server, each test in its own namespace, with config repositories made by the git binary.

#[path = "../common/cluster.rs"]
mod cluster;
mod gates;
mod health;
mod helm;
#[path = "../install/common.rs"]
mod install_common;
mod large_record;
mod metrics;
mod notify;
#[path = "../common/repo.rs"]
mod repo;
mod rollback;
mod rollouts;
mod signed;
mod skip;
#[path = "../common/tools.rs"]
mod tools;
mod wait;
mod waves;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use repo::ConfigRepo as Repo;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-gitops");

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn run(args: &[&str]) -> Output {
    run_env(args, &[])
}

fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let c = cluster::cluster();
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .env_remove("KUBECONFIG")
        .env("HOME", home.path())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// `sync --repo REPO --tag TAG --path app -n NS --yes EXTRA...`: how most tests sync.
fn sync_app(repo: &str, tag: &str, ns: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "sync", "--repo", repo, "--tag", tag, "--path", "app", "-n", ns, "--yes",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// `diff --repo REPO --tag TAG --path app -n NS EXTRA...`.
fn diff_app(repo: &str, tag: &str, ns: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "diff", "--repo", repo, "--tag", tag, "--path", "app", "-n", ns,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> Output {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out(&o),
        err(&o)
    );
    o
}

fn kubectl(args: &[&str]) -> String {
    let o = cluster::cluster().kubectl().args(args).output().unwrap();
    assert!(o.status.success(), "kubectl {args:?}: {}", err(&o));
    out(&o)
}

fn kubectl_json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&kubectl(&a)).unwrap()
}

/// Polls `probe` (kubectl reads) until it returns `Some`, for at most `limit`.
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
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The Pods of `app=<name>` that are not being deleted.
fn live_pods(ns: &str, app: &str) -> Vec<Value> {
    let pods = kubectl_json(&["get", "pods", "-n", ns, "-l", &format!("app={app}")]);
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .cloned()
        .collect()
}

fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// What lives in a namespace, to prove a refused command wrote nothing.
fn snapshot(ns: &str) -> Vec<String> {
    versions(
        ns,
        "configmaps,secrets,services,deployments,serviceaccounts,roles",
    )
}

/// `Kind/name@resourceVersion` of every object of `kinds` in the namespace, sorted.
fn versions(ns: &str, kinds: &str) -> Vec<String> {
    let v = kubectl_json(&["get", kinds, "-n", ns]);
    let mut out: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}/{}@{}",
                i["kind"].as_str().unwrap(),
                i["metadata"]["name"].as_str().unwrap(),
                i["metadata"]["resourceVersion"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

fn applyset_id(ns: &str) -> String {
    let s = kubectl_json(&["get", "secret", "kubectl-gitops-applyset", "-n", ns]);
    s["metadata"]["labels"]["applyset.kubernetes.io/id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn boutique() -> String {
    std::fs::read_to_string(corpus().join("microservices-demo/release/kubernetes-manifests.yaml"))
        .unwrap()
}

/// The Online Boutique stream without the documents for which `drop` is true.
fn boutique_without(drop: impl Fn(&str) -> bool) -> String {
    boutique()
        .split("\n---")
        .filter(|d| !drop(d))
        .collect::<Vec<_>>()
        .join("\n---")
}

#[test]
fn podinfo_overlay_syncs_and_then_diff_is_empty() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("podinfo");
    let repo = Repo::new();
    copy_dir(&corpus().join("podinfo/deploy"), &repo.path.join("deploy"));
    // A test-owned overlay retargets podinfo's dev overlay (Namespace included) to this test's namespace.
    repo.write(
        "deploy/test/kustomization.yaml",
        format!("namespace: {ns}\nresources:\n- ../overlays/dev\n"),
    );
    repo.write(
        "gitops.yaml",
        format!("environments:\n  - name: dev\n    branch: env/dev\n    path: deploy/test\n    namespace: {ns}\n"),
    );
    repo.deploy_tag("dev", "deploy/dev/20260101T000000Z");
    let repo_arg = repo.path.to_str().unwrap();

    let diff = run(&["diff", "--repo", repo_arg, "--env", "dev"]);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "differences before the first sync: {}",
        err(&diff)
    );
    assert!(
        out(&diff).contains("# create Deployment.apps/"),
        "{}",
        out(&diff)
    );
    assert!(
        out(&diff).contains("24 to create") || out(&diff).contains("to create"),
        "{}",
        out(&diff)
    );

    let sync = ok(run(&["sync", "--repo", repo_arg, "--env", "dev", "--yes"]));
    assert!(err(&sync).contains("revision 1"), "{}", err(&sync));
    let deployments = kubectl_json(&["get", "deployments", "-n", &ns]);
    assert_eq!(
        names(&deployments),
        ["backend", "cache", "database-replica", "frontend"]
    );
    assert_eq!(
        names(&kubectl_json(&["get", "statefulsets", "-n", &ns])),
        ["database-primary"]
    );
    assert_eq!(
        names(&kubectl_json(&["get", "cronjobs", "-n", &ns])).len(),
        4
    );

    // ApplySet: parent and members readable by kubectl.
    let id = applyset_id(&ns);
    assert!(id.starts_with("applyset-") && id.ends_with("-v1"), "{id}");
    let parent = kubectl_json(&["get", "secret", "kubectl-gitops-applyset", "-n", &ns]);
    let ann = &parent["metadata"]["annotations"];
    assert!(
        ann["applyset.kubernetes.io/tooling"]
            .as_str()
            .unwrap()
            .starts_with("kubectl-gitops/v")
            || ann["applyset.kubernetes.io/tooling"]
                .as_str()
                .unwrap()
                .starts_with("kubectl-gitops/")
    );
    let gks = ann["applyset.kubernetes.io/contains-group-kinds"]
        .as_str()
        .unwrap();
    assert!(
        gks.contains("Deployment.apps")
            && gks.contains("ConfigMap")
            && gks.contains("CronJob.batch"),
        "{gks}"
    );
    let members = kubectl_json(&[
        "get",
        "deployments",
        "-n",
        &ns,
        "-l",
        &format!("applyset.kubernetes.io/part-of={id}"),
    ]);
    assert_eq!(members["items"].as_array().unwrap().len(), 4);

    let again = run(&["diff", "--repo", repo_arg, "--env", "dev"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "diff after sync must be empty:\n{}\n{}",
        out(&again),
        err(&again)
    );
    assert!(
        out(&again).contains("0 to create, 0 to update, 0 to prune"),
        "{}",
        out(&again)
    );
}

#[test]
fn boutique_stream_prunes_what_left_the_tag_and_nothing_else() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("boutique");
    let repo = Repo::new();
    repo.write("manifests/all.yaml", boutique());
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    ok(run(&[
        "sync",
        "--repo",
        r,
        "--tag",
        "v1",
        "--path",
        "manifests",
        "-n",
        &ns,
        "--yes",
    ]));
    let deployments = names(&kubectl_json(&["get", "deployments", "-n", &ns]));
    assert_eq!(deployments.len(), 12, "{deployments:?}");

    // Someone else's object in the same namespace, applied with another field manager.
    let foreign = repo.tmp.path().join("foreign.yaml");
    std::fs::write(
        &foreign,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: not-ours\ndata:\n  a: b\n",
    )
    .unwrap();
    kubectl(&[
        "apply",
        "--server-side",
        "--field-manager",
        "someone-else",
        "-n",
        &ns,
        "-f",
        foreign.to_str().unwrap(),
    ]);

    // v2 drops the load generator and scales the frontend.
    let v2 = boutique_without(|d| d.contains("name: loadgenerator"));
    let v2 = v2.replacen(
        "  name: frontend\n  labels:\n    app: frontend\nspec:\n  selector:",
        "  name: frontend\n  labels:\n    app: frontend\nspec:\n  replicas: 3\n  selector:",
        1,
    );
    assert!(v2.contains("replicas: 3"), "fixture edit must apply");
    repo.write("manifests/all.yaml", &v2);
    repo.tag("v2");

    let diff = run(&[
        "diff",
        "--repo",
        r,
        "--tag",
        "v2",
        "--path",
        "manifests",
        "-n",
        &ns,
    ]);
    assert_eq!(diff.status.code(), Some(1), "{}", err(&diff));
    let text = out(&diff);
    assert!(
        text.contains(&format!("# update Deployment.apps/{ns}/frontend")),
        "{text}"
    );
    assert!(
        text.contains("+  replicas: 3"),
        "the changed field is shown: {text}"
    );
    assert!(
        text.contains(&format!("# prune Deployment.apps/{ns}/loadgenerator")),
        "{text}"
    );
    assert!(
        !text.contains("not-ours"),
        "foreign objects are not in the plan: {text}"
    );
    assert!(
        text.contains("0 to create, 1 to update, 2 to prune"),
        "{text}"
    );
    let json = run(&[
        "diff",
        "--repo",
        r,
        "--tag",
        "v2",
        "--path",
        "manifests",
        "-n",
        &ns,
        "-o",
        "json",
    ]);
    assert_eq!(json.status.code(), Some(1), "{}", err(&json));
    let plan: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(plan["summary"]["prune"], 2);

    ok(run(&[
        "sync",
        "--repo",
        r,
        "--tag",
        "v2",
        "--path",
        "manifests",
        "-n",
        &ns,
        "--yes",
    ]));
    let after = names(&kubectl_json(&["get", "deployments", "-n", &ns]));
    assert!(!after.contains(&"loadgenerator".to_string()), "{after:?}");
    assert_eq!(after.len(), 11);
    assert_eq!(
        kubectl_json(&["get", "deployment", "frontend", "-n", &ns])["spec"]["replicas"],
        3
    );
    let foreign_after = kubectl_json(&["get", "configmap", "not-ours", "-n", &ns]);
    assert_eq!(
        foreign_after["data"]["a"], "b",
        "the foreign object is untouched"
    );
    let clean = run(&[
        "diff",
        "--repo",
        r,
        "--tag",
        "v2",
        "--path",
        "manifests",
        "-n",
        &ns,
    ]);
    assert_eq!(clean.status.code(), Some(0), "{}", out(&clean));

    // Two revision records, in order.
    let records = kubectl_json(&[
        "get",
        "secrets",
        "-n",
        &ns,
        "-l",
        "gitops.kubectl.io/revision",
    ]);
    let mut revs: Vec<String> = records["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["metadata"]["labels"]["gitops.kubectl.io/revision"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    revs.sort();
    assert_eq!(revs, ["1", "2"]);
}

const SECRET_VALUE: &str = "hunter2-Sup3rS3cret";

fn secret_repo(ns_value: &str) -> Repo {
    let repo = Repo::new();
    repo.write(
        "app/secret.yaml",
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {ns_value}\n  user: admin\n"),
    );
    repo.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: safe\n",
    );
    repo
}

fn assert_no_secret(o: &Output, values: &[&str]) {
    use base64::Engine;
    for v in values {
        let b64 = base64::engine::general_purpose::STANDARD.encode(v);
        for text in [out(o), err(o)] {
            assert!(!text.contains(v), "secret value leaked:\n{text}");
            assert!(!text.contains(&b64), "base64 secret value leaked:\n{text}");
        }
    }
}

#[test]
fn secret_values_never_appear_in_any_output() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("secrets");
    let repo = secret_repo(SECRET_VALUE);
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let common = ["--repo", r, "--tag", "v1", "--path", "app", "-n", &ns];
    for args in [
        [&["diff"][..], &common[..]].concat(),
        [&["diff", "-o", "json"][..], &common[..]].concat(),
        [&["sync", "--dry-run", "-v", "9"][..], &common[..]].concat(),
        [&["sync", "--yes", "-v", "9"][..], &common[..]].concat(),
    ] {
        let o = run(&args);
        assert!(o.status.code().unwrap() <= 1, "{args:?}: {}", err(&o));
        assert_no_secret(&o, &[SECRET_VALUE]);
    }
    let changed = secret_repo("n3w-Secr3t-Value");
    repo.write(
        "app/secret.yaml",
        std::fs::read_to_string(changed.path.join("app/secret.yaml")).unwrap(),
    );
    repo.tag("v2");
    let common2 = ["--repo", r, "--tag", "v2", "--path", "app", "-n", &ns];
    let diff = run(&[&["diff"][..], &common2[..]].concat());
    assert_eq!(diff.status.code(), Some(1), "{}", err(&diff));
    let text = out(&diff);
    assert!(
        text.contains("*** (before)") && text.contains("*** (after)"),
        "{text}"
    );
    assert_no_secret(&diff, &[SECRET_VALUE, "n3w-Secr3t-Value", "admin"]);
    let json = run(&[&["diff", "-o", "json"][..], &common2[..]].concat());
    assert_no_secret(&json, &[SECRET_VALUE, "n3w-Secr3t-Value"]);
    // --show-secrets is the explicit way to see them.
    let shown = run(&[&["diff", "--show-secrets"][..], &common2[..]].concat());
    assert!(
        out(&shown).contains("n3w-Secr3t-Value") || out(&shown).contains("bjN3LVNlY3IzdC1WYWx1ZQ"),
        "{}",
        out(&shown)
    );
}

#[test]
fn field_conflicts_stop_the_sync_unless_forced() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("conflict");
    let repo = Repo::new();
    repo.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: safe\n",
    );
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "v1", &ns, &[]));
    let other = repo.tmp.path().join("other.yaml");
    std::fs::write(
        &other,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n",
    )
    .unwrap();
    kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager",
        "hotfixer",
        "-n",
        &ns,
        "-f",
        other.to_str().unwrap(),
    ]);
    repo.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: careful\n",
    );
    repo.tag("v2");
    let before = snapshot(&ns);
    let o = sync_app(r, "v2", &ns, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let e = err(&o);
    assert!(e.contains(&format!("ConfigMap/{ns}/settings")), "{e}");
    assert!(
        e.contains("hotfixer") && e.contains(".data.mode"),
        "names manager and field: {e}"
    );
    assert!(e.contains("--force-conflicts"), "{e}");
    assert_eq!(snapshot(&ns), before, "nothing written");
    ok(sync_app(r, "v2", &ns, &["--force-conflicts"]));
    assert_eq!(
        kubectl_json(&["get", "configmap", "settings", "-n", &ns])["data"]["mode"],
        "careful"
    );
}

fn expect_invalid(ns: &str, repo: &Repo, tag: &str, extra: &[&str], needle: &str) {
    let before = snapshot(ns);
    let o = sync_app(repo.path.to_str().unwrap(), tag, ns, extra);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{tag}: expected exit 2\n{}\n{}",
        out(&o),
        err(&o)
    );
    assert!(
        err(&o).contains(needle),
        "{tag}: expected {needle:?} in:\n{}",
        err(&o)
    );
    assert_eq!(snapshot(ns), before, "{tag}: nothing may be written");
}

#[test]
fn validation_errors_exit_2_and_write_nothing() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("invalid");
    let repo = Repo::new();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\ndata:\n  a: b\n";
    let cases: Vec<(&str, String, Vec<&str>, &str)> = vec![
        (
            "other-ns",
            format!(
                "{cm}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: elsewhere\n"
            ),
            vec![],
            "not the target",
        ),
        (
            "cluster-scoped",
            format!(
                "{cm}---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: wide\nrules: []\n"
            ),
            vec![],
            "cluster-scoped",
        ),
        (
            "unknown-kind",
            format!("{cm}---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n"),
            vec![],
            "unknown kind Widget",
        ),
        (
            "duplicate",
            format!("{cm}---\n{cm}"),
            vec![],
            "defined twice",
        ),
        (
            "bad-yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: [\n".to_string(),
            vec![],
            "app/all.yaml",
        ),
        (
            "no-name",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n".to_string(),
            vec![],
            "name",
        ),
        (
            "empty",
            "# nothing here\n".to_string(),
            vec![],
            "no objects",
        ),
        (
            "bad-field",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ndata: 12\n".to_string(),
            vec![],
            "ConfigMap",
        ),
    ];
    for (tag, content, extra, needle) in &cases {
        repo.write("app/all.yaml", content);
        repo.tag(tag);
        expect_invalid(&ns, &repo, tag, extra, needle);
    }
    // A namespace that does not exist is refused with a pointer to --create-namespace.
    repo.write("app/all.yaml", cm);
    repo.tag("good");
    let missing = format!("{ns}-missing");
    let r = repo.path.to_str().unwrap();
    let o = sync_app(r, "good", &missing, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("--create-namespace"), "{}", err(&o));
    let gone = cluster::cluster()
        .kubectl()
        .args(["get", "namespace", &missing])
        .output()
        .unwrap();
    assert!(
        !gone.status.success(),
        "the namespace must not have been created"
    );
    ok(sync_app(r, "good", &missing, &["--create-namespace"]));
    assert_eq!(
        names(&kubectl_json(&[
            "get",
            "configmaps",
            "-n",
            &missing,
            "-l",
            "applyset.kubernetes.io/part-of"
        ])),
        ["ok"]
    );
    // Unknown tag, bad flags.
    let o = sync_app(r, "nope", &ns, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("nope"), "{}", err(&o));
    let o = run(&[
        "diff", "--repo", r, "--tag", "good", "--path", "../etc", "-n", &ns,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let o = diff_app(r, "good", &ns, &["--context", "no-such-context"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("no-such-context"), "{}", err(&o));
}

#[test]
fn dry_run_and_missing_terminal_write_nothing() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("dryrun");
    let repo = secret_repo(SECRET_VALUE);
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let before = snapshot(&ns);
    let o = ok(run(&[
        "sync",
        "--repo",
        r,
        "--tag",
        "v1",
        "--path",
        "app",
        "-n",
        &ns,
        "--dry-run",
    ]));
    assert!(
        out(&o).contains(&format!("# create ConfigMap/{ns}/settings")),
        "{}",
        out(&o)
    );
    assert!(err(&o).contains("nothing was written"), "{}", err(&o));
    assert_eq!(snapshot(&ns), before);
    let o = run(&[
        "sync", "--repo", r, "--tag", "v1", "--path", "app", "-n", &ns,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("--yes"), "{}", err(&o));
    assert_eq!(snapshot(&ns), before);
}

#[test]
fn refuses_to_adopt_objects_other_tools_own() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("adopt");
    let owned = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(owned.path(), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels:\n    app.kubernetes.io/managed-by: Helm\n  annotations:\n    meta.helm.sh/release-name: web\ndata:\n  mode: helm\n").unwrap();
    kubectl(&[
        "apply",
        "--server-side",
        "--field-manager",
        "helm",
        "-n",
        &ns,
        "-f",
        owned.path().to_str().unwrap(),
    ]);
    let repo = Repo::new();
    repo.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: ours\n",
    );
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let before = snapshot(&ns);
    let o = sync_app(r, "v1", &ns, &["--force-conflicts"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("Helm") && err(&o).contains("--adopt"),
        "{}",
        err(&o)
    );
    assert_eq!(snapshot(&ns), before);
    ok(sync_app(r, "v1", &ns, &["--force-conflicts", "--adopt"]));
    assert_eq!(
        kubectl_json(&["get", "configmap", "settings", "-n", &ns])["data"]["mode"],
        "ours"
    );
}

#[test]
fn runs_as_a_kubectl_plugin() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("plugin");
    let repo = Repo::new();
    repo.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: safe\n",
    );
    repo.tag("v1");
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let r = repo.path.to_str().unwrap();
    // Global flags before the subcommand, as kubectl users type them.
    // kubectl refuses flags before a plugin name, so the kubeconfig comes from KUBECONFIG.
    let plugin = || {
        let mut k = Command::new("kubectl");
        k.env("PATH", &path)
            .env("KUBECONFIG", c.kubeconfig())
            .stdin(std::process::Stdio::null());
        k
    };
    let o = plugin()
        .args([
            "gitops", "-n", &ns, "sync", "--repo", r, "--tag", "v1", "--path", "app", "--yes",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let o = plugin()
        .args([
            "gitops", "diff", "--repo", r, "--tag", "v1", "--path", "app", "-n", &ns,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let help = plugin().args(["gitops", "--help"]).output().unwrap();
    assert!(
        out(&help).contains("Usage: kubectl gitops"),
        "{}",
        out(&help)
    );
    let id = applyset_id(&ns);
    assert_eq!(
        names(&kubectl_json(&[
            "get",
            "configmaps",
            "-n",
            &ns,
            "-l",
            &format!("applyset.kubernetes.io/part-of={id}")
        ])),
        ["settings"]
    );
}

// ---- revert, history, status, lock, --wait ----

fn deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n        - name: app\n          image: {image}\n"
    )
}

fn history(ns: &str) -> Value {
    serde_json::from_slice(&ok(run(&["history", "-n", ns, "-o", "json"])).stdout).unwrap()
}

/// Tag A: web (v1) + cm-a; tag B: web (v2) + cm-b (cm-a removed).
fn two_tags() -> Repo {
    let repo = Repo::new();
    repo.write("app/web.yaml", deployment("web", "nginx:1.25"));
    repo.write(
        "app/cm-a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: only-in-a\ndata:\n  a: '1'\n",
    );
    repo.tag("A");
    std::fs::remove_file(repo.path.join("app/cm-a.yaml")).unwrap();
    repo.write("app/web.yaml", deployment("web", "nginx:1.27"));
    repo.write(
        "app/cm-b.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: only-in-b\ndata:\n  b: '2'\n",
    );
    repo.tag("B");
    repo
}

#[test]
fn revert_brings_back_the_previous_revision_without_git() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("revert");
    let repo = two_tags();
    let r = repo.path.to_str().unwrap().to_string();
    ok(sync_app(&r, "A", &ns, &[]));
    ok(sync_app(&r, "B", &ns, &[]));
    let foreign = repo.tmp.path().join("foreign.yaml");
    std::fs::write(
        &foreign,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: theirs\ndata:\n  x: 'y'\n",
    )
    .unwrap();
    kubectl(&[
        "apply",
        "--server-side",
        "--field-manager",
        "other",
        "-n",
        &ns,
        "-f",
        foreign.to_str().unwrap(),
    ]);
    // The git repository is gone: revert reads the manifests from the record in the cluster.
    let tag_a_commit = repo.git(&["rev-parse", "A^{commit}"]);
    std::fs::remove_dir_all(&repo.path).unwrap();
    let dry = ok(run(&["revert", "-n", &ns, "--dry-run"]));
    assert!(
        out(&dry).contains(&format!("# prune ConfigMap/{ns}/only-in-b")),
        "{}",
        out(&dry)
    );
    assert!(out(&dry).contains("nginx:1.25"), "{}", out(&dry));
    let o = ok(run(&["revert", "-n", &ns, "--yes"]));
    assert!(err(&o).contains("revision 1 (tag A)"), "{}", err(&o));
    let web = kubectl_json(&["get", "deployment", "web", "-n", &ns]);
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );
    let cms = names(&kubectl_json(&["get", "configmaps", "-n", &ns]));
    assert!(
        cms.contains(&"only-in-a".to_string()) && !cms.contains(&"only-in-b".to_string()),
        "{cms:?}"
    );
    assert!(
        cms.contains(&"theirs".to_string()),
        "other owners untouched: {cms:?}"
    );
    let h = history(&ns);
    let revs = h["revisions"].as_array().unwrap();
    assert_eq!(revs.len(), 3);
    assert_eq!(revs[0]["revision"], 3);
    assert_eq!(revs[0]["outcome"], "reverted to revision 1 (tag A)");
    assert_eq!(revs[0]["tag"], "A");
    assert_eq!(revs[0]["commit"], tag_a_commit);
    assert_eq!(revs[1]["tag"], "B");
    assert_eq!(revs[2]["revision"], 1);
    assert_eq!(revs[2]["outcome"], "succeeded");
    let table = out(&ok(run(&["history", "-n", &ns])));
    assert!(table.starts_with("REVISION"), "{table}");
    // After the revert, status (a dry-run diff against the current record) shows no drift.
    let s: Value =
        serde_json::from_slice(&ok(run(&["status", "-n", &ns, "-o", "json"])).stdout).unwrap();
    assert_eq!(s["in_sync"], true, "{s}");
    assert_eq!(s["revision"]["revision"], 3);
    // Reverting to a revision that does not exist is invalid input.
    let o = run(&["revert", "-n", &ns, "--to-revision", "42", "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("no revision 42"), "{}", err(&o));
    // And to an explicit revision, B again.
    ok(run(&["revert", "-n", &ns, "--to-revision", "2", "--yes"]));
    assert_eq!(
        kubectl_json(&["get", "deployment", "web", "-n", &ns])["spec"]["template"]["spec"]["containers"]
            [0]["image"],
        "nginx:1.27"
    );
}

#[test]
fn revert_to_a_tag_reads_git() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("totag");
    let repo = two_tags();
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "B", &ns, &[]));
    ok(run(&[
        "revert", "--repo", r, "--to-tag", "A", "--path", "app", "-n", &ns, "--yes",
    ]));
    let d = diff_app(r, "A", &ns, &[]);
    assert_eq!(d.status.code(), Some(0), "{}", out(&d));
    assert_eq!(history(&ns)["revisions"][0]["outcome"], "reverted to tag A");
}

#[test]
fn status_reports_drift_and_health() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("status");
    let repo = two_tags();
    let r = repo.path.to_str().unwrap();
    // The cluster's controllers and KWOK's nodes roll the Deployment out by themselves.
    ok(sync_app(r, "A", &ns, &["--wait", "--timeout", "60s"]));
    let o = run(&["status", "-n", &ns, "--exit-code"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("(in sync)"), "{}", out(&o));
    // Someone edits an object with kubectl: drift.
    kubectl(&[
        "patch",
        "configmap",
        "only-in-a",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"data":{"a":"edited"}}"#,
    ]);
    kubectl(&[
        "create",
        "configmap",
        "stray",
        "-n",
        &ns,
        "--from-literal=k=v",
    ]);
    let o = run(&["status", "-n", &ns, "--exit-code", "-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        s["drift"]["changed"],
        serde_json::json!([format!("ConfigMap/{ns}/only-in-a")])
    );
    assert_eq!(
        s["drift"]["unowned"],
        serde_json::json!([format!("ConfigMap/{ns}/stray")])
    );
    assert_eq!(s["in_sync"], false);
    // status never writes.
    let before = snapshot(&ns);
    ok(run(&["status", "-n", &ns]));
    assert_eq!(snapshot(&ns), before);
}

#[test]
fn a_held_lease_makes_a_second_writer_exit_3() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("lease");
    let repo = two_tags();
    let r = repo.path.to_str().unwrap();
    let now = jiff_now();
    let lease = format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: kubectl-gitops-lock\nspec:\n  holderIdentity: alice@laptop (pid 1)\n  acquireTime: \"{now}\"\n  renewTime: \"{now}\"\n  leaseDurationSeconds: 300\n"
    );
    let f = repo.tmp.path().join("lease.yaml");
    std::fs::write(&f, lease).unwrap();
    kubectl(&["apply", "-n", &ns, "-f", f.to_str().unwrap()]);
    let before = snapshot(&ns);
    let o = sync_app(r, "A", &ns, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(
        err(&o).contains("alice@laptop"),
        "names the holder: {}",
        err(&o)
    );
    assert_eq!(snapshot(&ns), before, "nothing written");
    // An expired lease (holder killed) is taken over, once it has been seen unchanged for its
    // whole duration (2 s here).
    let stale = "2020-01-01T00:00:00.000000Z";
    patch_lease(
        &ns,
        &format!(r#"{{"renewTime":"{stale}","leaseDurationSeconds":2}}"#),
    );
    let o = ok(sync_app(r, "A", &ns, &[]));
    assert!(err(&o).contains("watching it for 2s"), "{}", err(&o));
    let leases = kubectl_json(&["get", "leases", "-n", &ns]);
    assert!(
        leases["items"].as_array().unwrap().is_empty(),
        "the lease is released after the sync"
    );
}

/// Every object in the namespace that anyone may write, with its resourceVersion.
fn all_versions(ns: &str) -> Vec<String> {
    versions(
        ns,
        "configmaps,secrets,services,deployments,serviceaccounts,roles,leases",
    )
}

#[test]
fn a_sync_with_nothing_to_change_writes_only_its_record() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("noop");
    let repo = two_tags();
    let r = repo.path.to_str().unwrap();
    let sync = || sync_app(r, "A", &ns, &[]);
    ok(sync());
    // A lease left by a dead run: a sync that takes the lease would take this one over.
    let lease = "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: kubectl-gitops-lock\nspec:\n  holderIdentity: dead@host (pid 1)\n  acquireTime: \"2020-01-01T00:00:00.000000Z\"\n  renewTime: \"2020-01-01T00:00:00.000000Z\"\n  leaseDurationSeconds: 2\n";
    let f = repo.tmp.path().join("lease.yaml");
    std::fs::write(&f, lease).unwrap();
    kubectl(&["apply", "-n", &ns, "-f", f.to_str().unwrap()]);
    let before = all_versions(&ns);

    let o = ok(sync());
    assert!(
        err(&o).contains("0 to create, 0 to update, 0 to prune"),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("revision 2"), "{}", err(&o));
    let after = all_versions(&ns);
    let added: Vec<&String> = after.iter().filter(|v| !before.contains(v)).collect();
    let gone: Vec<&String> = before.iter().filter(|v| !after.contains(v)).collect();
    assert!(gone.is_empty(), "nothing changed or deleted: {gone:?}");
    assert_eq!(added.len(), 1, "only the record: {added:?}");
    assert!(
        added[0].starts_with("Secret/kubectl-gitops.rev.2@"),
        "{added:?}"
    );
    let h = history(&ns);
    assert_eq!(h["revisions"][0]["revision"], 2);
    assert_eq!(h["revisions"][0]["tag"], "A");
    assert_eq!(h["revisions"][0]["outcome"], "succeeded");

    // Another run holding the lease means the namespace is changing: exit 3, nothing written.
    let now = jiff_now();
    patch_lease(
        &ns,
        &format!(
            r#"{{"holderIdentity":"alice@laptop (pid 2)","renewTime":"{now}","leaseDurationSeconds":300}}"#
        ),
    );
    let before = all_versions(&ns);
    let o = sync();
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("alice@laptop"), "{}", err(&o));
    assert_eq!(all_versions(&ns), before, "nothing written");
}

/// Merges `spec` (JSON) into the namespace's lock Lease, as another run would have left it.
fn patch_lease(ns: &str, spec: &str) {
    kubectl(&[
        "patch",
        "lease",
        "kubectl-gitops-lock",
        "-n",
        ns,
        "--type=merge",
        "-p",
        &format!(r#"{{"spec":{spec}}}"#),
    ]);
}

fn jiff_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.000000Z"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn concurrent_syncs_never_lose_or_duplicate_records() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("race");
    let repo = Repo::new();
    repo.write("manifests/all.yaml", boutique());
    repo.tag("v1");
    let r = repo.path.to_str().unwrap().to_string();
    let kubeconfig = c.kubeconfig().to_path_buf();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (r, ns, kubeconfig) = (r.clone(), ns.clone(), kubeconfig.clone());
            std::thread::spawn(move || {
                Command::new(BIN)
                    .args([
                        "sync",
                        "--repo",
                        &r,
                        "--tag",
                        "v1",
                        "--path",
                        "manifests",
                        "-n",
                        &ns,
                        "--yes",
                        "--kubeconfig",
                    ])
                    .arg(&kubeconfig)
                    .env_remove("KUBECONFIG")
                    .stdin(std::process::Stdio::null())
                    .output()
                    .unwrap()
            })
        })
        .collect();
    let outs: Vec<Output> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut winners = 0;
    for o in &outs {
        match o.status.code() {
            Some(0) => winners += 1,
            // Losers name the lease holder, or the run that recorded while they planned.
            Some(3) => assert!(
                err(o).contains("is being changed by")
                    || err(o).contains("changed while this run was planning: revision"),
                "{}",
                err(o)
            ),
            other => panic!("unexpected exit {other:?}: {}", err(o)),
        }
    }
    assert!(winners >= 1);
    let revs: Vec<u64> = history(&ns)["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=winners as u64).rev().collect();
    assert_eq!(
        revs, expected,
        "one record per successful sync, numbered without gaps or duplicates"
    );
}

#[test]
fn records_larger_than_one_mebibyte_are_split_and_revert_exactly() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("bigrecord");
    let repo = Repo::new();
    // Incompressible data: two ConfigMaps of ~700 KB each make a record well over 1 MiB.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut noise = |n: usize| -> String {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (b'a' + (seed % 26) as u8) as char
            })
            .collect()
    };
    let big_a = noise(700_000);
    let big_b = noise(700_000);
    repo.write(
        "app/a.yaml",
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big-a\ndata:\n  blob: {big_a}\n"
        ),
    );
    repo.write(
        "app/b.yaml",
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big-b\ndata:\n  blob: {big_b}\n"
        ),
    );
    repo.tag("big");
    std::fs::remove_file(repo.path.join("app/b.yaml")).unwrap();
    repo.write(
        "app/a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big-a\ndata:\n  blob: small\n",
    );
    repo.tag("small");
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "big", &ns, &[]));
    let parts = kubectl_json(&[
        "get",
        "secrets",
        "-n",
        &ns,
        "-l",
        "gitops.kubectl.io/part-of-revision=1",
    ]);
    assert!(
        !parts["items"].as_array().unwrap().is_empty(),
        "the record is split across several Secrets"
    );
    ok(sync_app(r, "small", &ns, &[]));
    ok(run(&["revert", "-n", &ns, "--yes"]));
    assert_eq!(
        kubectl_json(&["get", "configmap", "big-a", "-n", &ns])["data"]["blob"],
        big_a.as_str()
    );
    assert_eq!(
        kubectl_json(&["get", "configmap", "big-b", "-n", &ns])["data"]["blob"],
        big_b.as_str()
    );
}

// ---- more of diff/sync's contract ----

#[test]
fn a_crd_and_its_custom_resources_sync_together() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("crd");
    let group = format!("{ns}.example.com");
    let repo = Repo::new();
    repo.write(
        "app/crd.yaml",
        format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.{group}\nspec:\n  group: {group}\n  scope: Namespaced\n  names:\n    kind: Widget\n    plural: widgets\n    singular: widget\n  versions:\n    - name: v1\n      served: true\n      storage: true\n      schema:\n        openAPIV3Schema:\n          type: object\n          properties:\n            spec:\n              type: object\n              properties:\n                size:\n                  type: integer\n"
        ),
    );
    repo.write(
        "app/widget.yaml",
        format!("apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n"),
    );
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let d = diff_app(r, "v1", &ns, &["--allow-cluster-scoped"]);
    assert_eq!(d.status.code(), Some(1), "{}", err(&d));
    assert!(
        out(&d).contains(&format!("# create Widget.{group}/{ns}/w1")),
        "{}",
        out(&d)
    );
    ok(sync_app(r, "v1", &ns, &["--allow-cluster-scoped"]));
    let w = kubectl_json(&["get", &format!("widgets.{group}"), "w1", "-n", &ns]);
    assert_eq!(w["spec"]["size"], 3);
    let d = diff_app(r, "v1", &ns, &["--allow-cluster-scoped"]);
    assert_eq!(d.status.code(), Some(0), "{}", out(&d));
    // The CRD left the tag: protected from pruning unless asked.
    std::fs::remove_file(repo.path.join("app/crd.yaml")).unwrap();
    repo.tag("v2");
    let o = ok(sync_app(r, "v2", &ns, &["--allow-cluster-scoped"]));
    assert!(err(&o).contains("1 not pruned (protected)"), "{}", err(&o));
    kubectl(&["get", "crd", &format!("widgets.{group}")]);
    kubectl(&["delete", "crd", &format!("widgets.{group}"), "--wait=false"]);
}

#[test]
fn external_diff_tool_is_honoured() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("extdiff");
    let repo = Repo::new();
    repo.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: safe\n",
    );
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let o = run_env(
        &[
            "diff", "--repo", r, "--tag", "v1", "--path", "app", "-n", &ns,
        ],
        &[("KUBECTL_EXTERNAL_DIFF", "diff -r -u -N")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let text = out(&o);
    assert!(
        text.contains(&format!("MERGED/v1.ConfigMap.{ns}.settings")),
        "files named like kubectl's: {text}"
    );
    assert!(text.contains("mode: safe"), "{text}");
}

#[test]
fn refuses_an_applyset_parent_of_another_tool_and_honours_history_limit() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("tooling");
    let repo = Repo::new();
    repo.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: safe\n",
    );
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    for _ in 0..4 {
        ok(sync_app(r, "v1", &ns, &["--history-limit", "2"]));
    }
    let revs: Vec<u64> = history(&ns)["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revs, [4, 3], "only the newest two records are kept");
    kubectl(&[
        "annotate",
        "secret",
        "kubectl-gitops-applyset",
        "-n",
        &ns,
        "--overwrite",
        "applyset.kubernetes.io/tooling=kubectl/v1.32.0",
    ]);
    let before = snapshot(&ns);
    let o = sync_app(r, "v1", &ns, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("kubectl/v1.32.0"), "{}", err(&o));
    assert_eq!(snapshot(&ns), before);
}

#[cfg(unix)]
#[test]
fn an_interrupted_sync_is_recorded_and_a_rerun_converges() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("sigint");
    let repo = Repo::new();
    // Enough objects that the sync is still applying when the signal arrives.
    let mut stream = String::new();
    for i in 0..600 {
        stream.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  i: '{i}'\n"
        ));
    }
    repo.write("app/all.yaml", &stream);
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "sync",
            "--repo",
            r,
            "--tag",
            "v1",
            "--path",
            "app",
            "-n",
            &ns,
            "--yes",
            "--concurrency",
            "2",
            "--kubeconfig",
        ])
        .arg(c.kubeconfig())
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The lease appears when writing starts: interrupt then.
    let mut held = false;
    for _ in 0..300 {
        let o = c
            .kubectl()
            .args(["get", "lease", "kubectl-gitops-lock", "-n", &ns])
            .output()
            .unwrap();
        if o.status.success() {
            held = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(held, "the sync never took the namespace lease");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        stderr.contains("(interrupted); rerunning the sync converges"),
        "{stderr}"
    );
    let h = history(&ns);
    assert_eq!(h["revisions"][0]["outcome"], "interrupted", "{h}");
    assert!(
        kubectl_json(&["get", "leases", "-n", &ns])["items"]
            .as_array()
            .unwrap()
            .is_empty(),
        "Ctrl-C releases the lease"
    );
    ok(sync_app(r, "v1", &ns, &[]));
    let d = diff_app(r, "v1", &ns, &[]);
    assert_eq!(d.status.code(), Some(0), "{}", out(&d));
    assert_eq!(history(&ns)["revisions"][0]["outcome"], "succeeded");
}

#[test]
fn diff_errors_never_exit_1() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("differr");
    let repo = Repo::new();
    repo.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: safe\n",
    );
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    // An API server that is not there: a failure, which must not read as "differences".
    let o = diff_app(
        r,
        "v1",
        &ns,
        &["--server", "https://127.0.0.1:1", "--request-timeout", "5s"],
    );
    assert!(
        o.status.code().unwrap_or(0) >= 2,
        "exit {:?}: {}",
        o.status.code(),
        err(&o)
    );
    // The restricted user may not even read this namespace: also >= 2.
    let o = diff_app(r, "v1", &ns, &["--context", "restricted"]);
    assert!(
        o.status.code().unwrap_or(0) >= 2,
        "exit {:?}: {}",
        o.status.code(),
        err(&o)
    );
    assert!(
        err(&o).contains("403") || err(&o).contains("forbidden"),
        "{}",
        err(&o)
    );
    // An external diff tool that cannot be started is an error too, not "differences".
    let o = run_env(
        &[
            "diff", "--repo", r, "--tag", "v1", "--path", "app", "-n", &ns,
        ],
        &[("KUBECTL_EXTERNAL_DIFF", "/nonexistent/difftool -u")],
    );
    assert!(
        o.status.code().unwrap_or(0) >= 2,
        "exit {:?}: {}",
        o.status.code(),
        err(&o)
    );
    assert!(err(&o).contains("/nonexistent/difftool"), "{}", err(&o));
}

/// `... -o json | head -1` on a big output: the reader goes away and the tool ends quietly with
/// its usual exit code, as other CLIs do, instead of panicking on the broken pipe.
#[test]
fn json_to_a_reader_that_went_away_ends_quietly() {
    use std::io::Read;
    let c = cluster::cluster();
    let ns = c.fresh_namespace("closedpipe");
    let repo = Repo::new();
    repo.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: safe\n",
    );
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "v1", &ns, &[]));
    for args in [
        vec![
            "diff", "--repo", r, "--tag", "v1", "--path", "app", "-n", &ns, "-o", "json",
        ],
        vec!["history", "-n", &ns, "-o", "json"],
        vec!["status", "-n", &ns, "-o", "json"],
    ] {
        let home = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .args(&args)
            .arg("--kubeconfig")
            .arg(c.kubeconfig())
            .env_remove("KUBECONFIG")
            .env("HOME", home.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the tool has connected, let alone written.
        drop(child.stdout.take());
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// KEP-3659's `additional-namespaces`: members in another namespace are listed on the
/// ApplySet parent, so diff, status and prune see them.
#[test]
fn objects_in_another_namespace_are_tracked_reported_and_pruned() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("home");
    let far = c.fresh_namespace("far");
    let repo = Repo::new();
    let cm = |name: &str, in_ns: Option<&str>| {
        let meta_ns = in_ns
            .map(|n| format!("  namespace: {n}\n"))
            .unwrap_or_default();
        format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{meta_ns}data:\n  k: v\n"
        )
    };
    repo.write(
        "app/all.yaml",
        format!(
            "{}{}{}",
            cm("local", None),
            cm("far-a", Some(&far)),
            cm("far-b", Some(&far))
        ),
    );
    repo.tag("A");
    repo.write(
        "app/all.yaml",
        format!("{}{}", cm("local", None), cm("far-a", Some(&far))),
    );
    repo.tag("B");
    repo.write("app/all.yaml", cm("local", None));
    repo.tag("C");
    let r = repo.path.to_str().unwrap();
    let allow = ["--allow-other-namespaces"];
    ok(sync_app(r, "A", &ns, &allow));
    let parent = kubectl_json(&["get", "secret", "kubectl-gitops-applyset", "-n", &ns]);
    assert_eq!(
        parent["metadata"]["annotations"]["applyset.kubernetes.io/additional-namespaces"],
        far.as_str(),
        "{parent}"
    );
    let o = run(&["status", "-n", &ns, "--exit-code"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));

    // Drift in the other namespace is drift.
    kubectl(&[
        "patch",
        "configmap",
        "far-a",
        "-n",
        &far,
        "--type=merge",
        "-p",
        r#"{"data":{"k":"edited"}}"#,
    ]);
    let o = run(&["status", "-n", &ns, "--exit-code", "-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        s["drift"]["changed"],
        serde_json::json!([format!("ConfigMap/{far}/far-a")]),
        "{s}"
    );
    assert_eq!(s["drift"]["missing"], serde_json::json!([]), "{s}");

    // What left the tag is pruned there too, and diff says so first.
    let d = diff_app(r, "B", &ns, &allow);
    assert_eq!(d.status.code(), Some(1), "{}", err(&d));
    assert!(
        out(&d).contains(&format!("# prune ConfigMap/{far}/far-b")),
        "{}",
        out(&d)
    );
    // The edit above took the field from us: taking it back is a conflict like any other.
    ok(sync_app(
        r,
        "B",
        &ns,
        &["--allow-other-namespaces", "--force-conflicts"],
    ));
    let left = names(&kubectl_json(&[
        "get",
        "configmaps",
        "-n",
        &far,
        "-l",
        "applyset.kubernetes.io/part-of",
    ]));
    assert_eq!(left, ["far-a"]);

    // Nothing left there: pruned, and the parent no longer lists the namespace.
    ok(sync_app(r, "C", &ns, &allow));
    let left = names(&kubectl_json(&[
        "get",
        "configmaps",
        "-n",
        &far,
        "-l",
        "applyset.kubernetes.io/part-of",
    ]));
    assert!(left.is_empty(), "{left:?}");
    let parent = kubectl_json(&["get", "secret", "kubectl-gitops-applyset", "-n", &ns]);
    assert!(
        parent["metadata"]["annotations"]
            .get("applyset.kubernetes.io/additional-namespaces")
            .is_none(),
        "{parent}"
    );
}

/// A user who may work in the target namespace but not in an additional one gets an error
/// naming that namespace, not a partial answer.
#[test]
fn an_additional_namespace_the_user_may_not_read_is_named() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("home");
    let far = c.fresh_namespace("far");
    let repo = Repo::new();
    repo.write(
        "app/all.yaml",
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: away\n  namespace: {far}\n"),
    );
    repo.tag("A");
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "A", &ns, &["--allow-other-namespaces"]));
    let user = format!("only-{ns}");
    kubectl(&[
        "create",
        "rolebinding",
        "admin",
        "-n",
        &ns,
        "--clusterrole=admin",
        &format!("--user={user}"),
    ]);
    let o = run(&["status", "-n", &ns, "--as", &user]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "namespace {far} (an additional namespace of the ApplySet)"
        )) && err(&o).contains("forbidden"),
        "{}",
        err(&o)
    );
}

/// A Service whose only port someone renamed by hand (`kubectl patch`, as in issue 13):
/// re-applying ours would give two ports named `http`, so the server rejects the dry-run (422).
fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector:\n    app: {name}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n"
    )
}

/// A rejected dry-run is a finding about one object, not the end of the report: `status`
/// lists every such object as drift (`cannot re-apply: <server message>`) beside the drift and
/// health of the others (exit 1 with --exit-code); `diff` shows every diff it could compute and
/// then all rejections in one error (exit 2); `sync` refuses before any write, naming them all.
#[test]
fn rejected_objects_are_reported_beside_the_rest() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("rejected");
    let repo = Repo::new();
    repo.write("app/frontend.yaml", service("frontend"));
    repo.write("app/backend.yaml", service("backend"));
    repo.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n",
    );
    repo.tag("A");
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "A", &ns, &[]));
    for svc in ["frontend", "backend"] {
        kubectl(&[
            "patch",
            "svc",
            svc,
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"ports":[{"name":"http","port":81,"targetPort":8080}]}}"#,
        ]);
    }
    kubectl(&[
        "patch",
        "configmap",
        "settings",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"data":{"a":"edited"}}"#,
    ]);
    let rejected = [
        format!("Service/{ns}/backend"),
        format!("Service/{ns}/frontend"),
    ];

    // status: every finding, the rejected ones as drift.
    let o = run(&["status", "-n", &ns, "--exit-code", "-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", out(&o), err(&o));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        s["drift"]["changed"],
        serde_json::json!([format!("ConfigMap/{ns}/settings")]),
        "{s:#}"
    );
    let objects: Vec<&str> = s["drift"]["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["object"].as_str().unwrap())
        .collect();
    assert_eq!(objects, rejected, "{s:#}");
    assert!(
        s["drift"]["rejected"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Duplicate value"),
        "{s:#}"
    );
    assert_eq!(s["in_sync"], false);
    assert_eq!(
        s["health"].as_array().unwrap().len(),
        3,
        "every object's health, rejected ones too: {s:#}"
    );
    let o = run(&["status", "-n", &ns, "--exit-code"]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", out(&o), err(&o));
    for k in &rejected {
        assert!(
            out(&o).contains(&format!("cannot re-apply: {k}: ")),
            "{}",
            out(&o)
        );
    }
    assert!(out(&o).contains(&format!("changed: ConfigMap/{ns}/settings")));

    // diff: the ConfigMap's diff, then both rejections in one error.
    let o = diff_app(r, "A", &ns, &[]);
    assert_eq!(o.status.code(), Some(2), "{}\n{}", out(&o), err(&o));
    assert!(
        out(&o).contains("edited"),
        "the computable diff: {}",
        out(&o)
    );
    let errors = err(&o).lines().filter(|l| l.starts_with("error:")).count();
    assert_eq!(errors, 1, "{}", err(&o));
    for k in &rejected {
        assert!(err(&o).contains(k.as_str()), "{}", err(&o));
    }
    let o = diff_app(r, "A", &ns, &["-o", "json"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let d: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(d["rejected"].as_array().map(Vec::len), Some(2), "{d:#}");
    assert_eq!(d["summary"]["update"], 1, "{d:#}");

    // sync: refused before any write, both named.
    let before = snapshot(&ns);
    let o = sync_app(r, "A", &ns, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    for k in &rejected {
        assert!(err(&o).contains(k.as_str()), "{}", err(&o));
    }
    assert_eq!(snapshot(&ns), before, "nothing written");
}

/// A first sync keeps nothing of the server's dry-run answers for the objects it creates (they
/// are only shown by diff, `--dry-run` and `-o json`), but what the server rejects at dry-run
/// is still found, every object named in one error, before any write: the fine objects are
/// not created and no revision is recorded.
#[test]
fn a_first_sync_names_every_create_the_server_rejects_and_writes_nothing() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("first-rejected");
    let repo = Repo::new();
    for i in 0..3 {
        repo.write(
            &format!("app/cm-{i}.yaml"),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  a: b\n"),
        );
    }
    // Two ports named `http`: the server refuses to create it (422, Duplicate value).
    repo.write(
        "app/svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: twice\nspec:\n  selector:\n    app: x\n  ports:\n  - name: http\n    port: 80\n  - name: http\n    port: 81\n",
    );
    // A negative replica count: refused too (422, must be greater than or equal to 0).
    repo.write(
        "app/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: negative\nspec:\n  replicas: -1\n  selector:\n    matchLabels:\n      app: x\n  template:\n    metadata:\n      labels:\n        app: x\n    spec:\n      containers:\n      - name: c\n        image: example.com/x:1\n",
    );
    repo.tag("A");
    let r = repo.path.to_str().unwrap();
    let before = snapshot(&ns);
    assert!(
        !before.iter().any(|v| v.starts_with("ConfigMap/cm-")),
        "a namespace without the objects: {before:?}"
    );
    for extra in [&[][..], &["-o", "json"][..]] {
        let o = sync_app(r, "A", &ns, extra);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{extra:?}\n{}\n{}",
            out(&o),
            err(&o)
        );
        let errors = err(&o).lines().filter(|l| l.starts_with("error:")).count();
        assert_eq!(errors, 1, "{}", err(&o));
        for (k, why) in [
            (
                format!("Deployment.apps/{ns}/negative"),
                "greater than or equal to 0",
            ),
            (format!("Service/{ns}/twice"), "Duplicate value"),
        ] {
            assert!(
                err(&o).contains(&k) && err(&o).contains(why),
                "{extra:?}: {k} ({why}) in:\n{}",
                err(&o)
            );
        }
        assert_eq!(snapshot(&ns), before, "{extra:?}: nothing written");
    }
}

/// A sync that fails on something every rerun meets again (here an admission policy that
/// refuses the real write but not its dry-run, as a full Service IP range or a quota would)
/// does not tell the user that rerunning converges; it says what must change. An interrupted
/// one still does (`an_interrupted_sync_is_recorded_and_a_rerun_converges`).
#[test]
fn a_failure_a_rerun_meets_again_is_not_called_transient() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("refused");
    let repo = Repo::new();
    repo.write(
        "app/fine.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\ndata:\n  a: b\n",
    );
    repo.write(
        "app/refused.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: refused\ndata:\n  a: b\n",
    );
    repo.tag("v1");
    let policy = format!("{ns}-no-real-writes");
    let yaml = format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata:\n  name: {policy}\nspec:\n  failurePolicy: Fail\n  matchConstraints:\n    resourceRules:\n    - apiGroups: ['']\n      apiVersions: [v1]\n      operations: [CREATE, UPDATE]\n      resources: [configmaps]\n  validations:\n  - expression: \"request.dryRun == true || !object.metadata.name.startsWith('refused')\"\n    message: test policy refuses real writes\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata:\n  name: {policy}\nspec:\n  policyName: {policy}\n  validationActions: [Deny]\n  matchResources:\n    namespaceSelector:\n      matchLabels:\n        kubernetes.io/metadata.name: {ns}\n"
    );
    let file = repo.tmp.path().join("policy.yaml");
    std::fs::write(&file, yaml).unwrap();
    kubectl(&["apply", "-f", file.to_str().unwrap()]);
    // Policies take effect within a second or so: wait until a real write is refused.
    wait_for("the policy to take effect", Duration::from_secs(30), || {
        let o = c
            .kubectl()
            .args(["create", "configmap", "refused-probe", "-n", &ns])
            .output()
            .unwrap();
        if o.status.success() {
            kubectl(&["delete", "configmap", "refused-probe", "-n", &ns]);
            None
        } else {
            Some(())
        }
    });
    let r = repo.path.to_str().unwrap();
    let o = sync_app(r, "v1", &ns, &[]);
    let _ = c
        .kubectl()
        .args([
            "delete",
            "validatingadmissionpolicybinding,validatingadmissionpolicy",
            &policy,
        ])
        .output();
    let stderr = err(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("test policy refuses real writes"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("(failed); a rerun fails the same way until what the error names is changed"),
        "{stderr}"
    );
    assert!(!stderr.contains("converges"), "{stderr}");
}
