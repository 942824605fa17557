//! Helm charts as a source (issue 18), against the workload-running test cluster, with the real
//! charts of the corpus (podinfo's, with hook Jobs and `helm test` Pods; Online Boutique's)
//! and the real `helm` built from its Go module (`tests/tools/build helm`): kubectl-gitops
//! renders with it, and the tests run it too, to compare and to install a release the way
//! teams did before.

use std::process::Command;

use serde_json::json;

use super::*;

/// kubectl-gitops with the pinned helm (`HELM_PATH`), whatever the machine has on PATH.
fn gitops(args: &[&str]) -> Output {
    let helm = tools::helm().to_str().unwrap().to_string();
    run_env(args, &[("HELM_PATH", &helm)])
}

/// The real helm in empty homes of its own, pointed at the test cluster (for `install` and
/// `list`; `template` never connects).
struct RealHelm {
    home: tempfile::TempDir,
}

impl RealHelm {
    fn new() -> RealHelm {
        RealHelm {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let home = self.home.path();
        let o = Command::new(tools::helm())
            .args(args)
            .env_clear()
            .env("HOME", home)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env("KUBECONFIG", cluster::cluster().kubeconfig())
            .output()
            .unwrap();
        assert!(o.status.success(), "helm {args:?}: {}", err(&o));
        out(&o)
    }

    /// `helm template` of `chart` as a release in `ns`, with `extra` arguments (values), for
    /// the server's version: the chart's own objects (hooks, which a sync runs in their phases
    /// and never applies as plain objects, and `helm test` Pods left out).
    fn template(&self, chart: &Path, release: &str, ns: &str, extra: &[&str]) -> Vec<Value> {
        let version = server_version();
        let mut args = vec![
            "template",
            release,
            chart.to_str().unwrap(),
            "--namespace",
            ns,
            "--kube-version",
            &version,
            "--skip-tests",
        ];
        args.extend_from_slice(extra);
        let text = self.run(&args);
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        docs.into_iter()
            .filter(|d| d.is_object())
            .filter(|d| d["metadata"]["annotations"]["helm.sh/hook"].is_null())
            .collect()
    }
}

fn server_version() -> String {
    let v: Value = serde_json::from_str(&kubectl(&["version", "-o", "json"])).unwrap();
    v["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `Kind/name` of each object.
fn kinds_and_names(objects: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    v.sort();
    v
}

/// `Kind/name` of the namespace's members of our ApplySet, of the kinds these charts render.
fn members(ns: &str) -> Vec<String> {
    let id = applyset_id(ns);
    let list = kubectl_json(&[
        "get",
        "deployments,services,configmaps,secrets,serviceaccounts,horizontalpodautoscalers,poddisruptionbudgets,jobs",
        "-n",
        ns,
        "-l",
        &format!("applyset.kubernetes.io/part-of={id}"),
    ]);
    kinds_and_names(list["items"].as_array().unwrap())
}

fn podinfo_chart() -> PathBuf {
    corpus().join("podinfo/charts/podinfo")
}

/// A config repository with podinfo's chart at `deploy/podinfo`.
fn podinfo_repo() -> Repo {
    let repo = Repo::new();
    copy_dir(&podinfo_chart(), &repo.path.join("deploy/podinfo"));
    repo
}

/// gitops.yaml with a dev and a prod environment on podinfo's chart: dev with the chart's
/// defaults and `dev_values`, prod with values-prod.yaml and 3 replicas. The test cluster runs
/// no HorizontalPodAutoscaler controller, and with values-prod.yaml's HPA the chart leaves the
/// replica count to it, so prod turns the HPA off to run its 3 replicas.
fn podinfo_envs(dev: &str, prod: &str, dev_values: &str) -> String {
    format!(
        "environments:
  - name: dev
    branch: env/dev
    path: deploy/podinfo
    namespace: {dev}
    helm:
      release: podinfo
      values: {dev_values}
  - name: prod
    branch: env/prod
    path: deploy/podinfo
    namespace: {prod}
    helm:
      release: podinfo
      valuesFiles: [values.yaml, values-prod.yaml]
      values: {{replicaCount: 3, hpa: {{enabled: false}}}}
"
    )
}

/// What prod's entry in gitops.yaml gives helm.
fn prod_values(chart: &Path) -> Vec<String> {
    vec![
        "--values".into(),
        chart.join("values.yaml").to_str().unwrap().into(),
        "--values".into(),
        chart.join("values-prod.yaml").to_str().unwrap().into(),
        "--set".into(),
        "replicaCount=3,hpa.enabled=false".into(),
    ]
}

/// The live Deployment matches the render: replicas, all of them available.
fn assert_rolled_out_as_rendered(ns: &str, rendered: &[Value]) {
    for d in rendered.iter().filter(|o| o["kind"] == "Deployment") {
        let name = d["metadata"]["name"].as_str().unwrap();
        let live = kubectl_json(&["get", "deployment", name, "-n", ns]);
        let want = d["spec"]["replicas"].as_u64().unwrap_or(1);
        assert_eq!(live["spec"]["replicas"], want, "{ns}/{name}");
        assert_eq!(
            live["status"]["availableReplicas"], want,
            "{ns}/{name}: {live}"
        );
        let available = live["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Available" && c["status"] == "True");
        assert!(available, "{ns}/{name} is not Available: {live}");
    }
}

/// The `+`/`-` lines of a unified diff, without the file headers.
fn changed_lines(diff: &str) -> Vec<String> {
    diff.lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn podinfo_chart_synced_per_environment_matches_helm_template() {
    let c = cluster::cluster();
    let dev = c.fresh_namespace("helm-dev");
    let prod = c.fresh_namespace("helm-prod");
    let repo = podinfo_repo();
    repo.write("gitops.yaml", podinfo_envs(&dev, &prod, "{}"));
    repo.deploy_tag("dev", "deploy/dev/20260101T000000Z");
    repo.deploy_tag("prod", "deploy/prod/20260101T000000Z");
    let r = repo.path.to_str().unwrap();

    for env in ["dev", "prod"] {
        ok(gitops(&[
            "sync",
            "--repo",
            r,
            "--env",
            env,
            "--yes",
            "--wait",
            "--timeout",
            "120s",
        ]));
    }
    let helm = RealHelm::new();
    let chart = repo.path.join("deploy/podinfo");
    let rendered_dev = helm.template(&chart, "podinfo", &dev, &[]);
    let prod_values = prod_values(&chart);
    let prod_values: Vec<&str> = prod_values.iter().map(String::as_str).collect();
    let rendered_prod = helm.template(&chart, "podinfo", &prod, &prod_values);
    assert_eq!(members(&dev), kinds_and_names(&rendered_dev));
    assert_eq!(members(&prod), kinds_and_names(&rendered_prod));
    // values-prod.yaml adds redis.
    assert!(members(&prod).contains(&"Deployment/podinfo-redis".to_string()));
    assert_rolled_out_as_rendered(&dev, &rendered_dev);
    assert_rolled_out_as_rendered(&prod, &rendered_prod);
    assert_eq!(
        kubectl_json(&["get", "deployment", "podinfo", "-n", &dev])["spec"]["replicas"],
        1
    );
    assert_eq!(
        kubectl_json(&["get", "deployment", "podinfo", "-n", &prod])["spec"]["replicas"],
        3
    );

    for env in ["dev", "prod"] {
        let again = gitops(&["diff", "--repo", r, "--env", env]);
        assert_eq!(
            again.status.code(),
            Some(0),
            "{env}: {}\n{}",
            out(&again),
            err(&again)
        );
        assert!(
            out(&again).contains("0 to create, 0 to update, 0 to prune"),
            "{}",
            out(&again)
        );
    }

    // A values change in gitops.yaml shows as exactly that field.
    repo.write(
        "gitops.yaml",
        podinfo_envs(&dev, &prod, "{replicaCount: 2}"),
    );
    repo.deploy_tag("dev", "deploy/dev/20260101T000001Z");
    let diff = gitops(&["diff", "--repo", r, "--env", "dev"]);
    assert_eq!(diff.status.code(), Some(1), "{}", err(&diff));
    let text = out(&diff);
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("# ")).collect();
    assert_eq!(
        headers,
        [format!("# update Deployment.apps/{dev}/podinfo")],
        "{text}"
    );
    assert_eq!(
        changed_lines(&text),
        ["-  replicas: 1", "+  replicas: 2"],
        "{text}"
    );
    assert!(
        text.contains("0 to create, 1 to update, 0 to prune"),
        "{text}"
    );
}

#[test]
fn online_boutique_chart_syncs_with_wait() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("helm-shop");
    let repo = Repo::new();
    copy_dir(
        &corpus().join("microservices-demo/helm-chart"),
        &repo.path.join("chart"),
    );
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let sync = ok(gitops(&[
        "sync",
        "--repo",
        r,
        "--tag",
        "v1",
        "--path",
        "chart",
        "-n",
        &ns,
        "--yes",
        "--wait",
        "--timeout",
        "180s",
    ]));
    assert!(err(&sync).contains("synced"), "{}", err(&sync));
    let rendered = RealHelm::new().template(&repo.path.join("chart"), "onlineboutique", &ns, &[]);
    assert_eq!(members(&ns), kinds_and_names(&rendered));
    assert_eq!(
        rendered
            .iter()
            .filter(|o| o["kind"] == "Deployment")
            .count(),
        12,
        "the chart's twelve services"
    );
    assert_rolled_out_as_rendered(&ns, &rendered);
    let again = gitops(&[
        "diff", "--repo", r, "--tag", "v1", "--path", "chart", "-n", &ns,
    ]);
    assert_eq!(again.status.code(), Some(0), "{}", out(&again));
}

const SMALL_CHART: &str = "apiVersion: v2\nname: web\nversion: 0.1.0\n";

fn config_map_template(name: &str, data: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{data}")
}

#[test]
fn a_dependency_not_vendored_exits_2_writes_nothing_and_says_what_to_do() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("helm-deps");
    let repo = Repo::new();
    repo.write(
        "chart/Chart.yaml",
        format!("{SMALL_CHART}dependencies:\n  - name: redis\n    version: 19.6.4\n    repository: https://charts.bitnami.com/bitnami\n"),
    );
    repo.write(
        "chart/Chart.lock",
        "dependencies:\n- name: redis\n  repository: https://charts.bitnami.com/bitnami\n  version: 19.6.4\ndigest: sha256:0000000000000000000000000000000000000000000000000000000000000000\ngenerated: \"2026-01-01T00:00:00Z\"\n",
    );
    repo.write(
        "chart/templates/cm.yaml",
        config_map_template("web", "  a: b\n"),
    );
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let before = snapshot(&ns);
    for verb in [&["diff"][..], &["sync", "--yes"][..]] {
        let o = gitops(
            &[
                verb,
                &["--repo", r, "--tag", "v1", "--path", "chart", "-n", &ns][..],
            ]
            .concat(),
        );
        assert_eq!(o.status.code(), Some(2), "{verb:?}: {}", err(&o));
        let e = err(&o);
        assert_eq!(e.matches("error:").count(), 1, "{e}");
        assert!(
            e.contains("redis 19.6.4 (https://charts.bitnami.com/bitnami)"),
            "{e}"
        );
        assert!(e.contains("not vendored in chart/charts/"), "{e}");
        assert!(
            e.contains("helm dependency build chart") && e.contains("commit chart/charts/"),
            "{e}"
        );
    }
    assert_eq!(snapshot(&ns), before);
}

#[test]
fn vendored_dependencies_render_from_a_directory_and_a_tgz() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("helm-vendored");
    let repo = Repo::new();
    repo.write(
        "chart/Chart.yaml",
        format!("{SMALL_CHART}dependencies:\n  - name: cache\n    version: 1.0.0\n    repository: https://example.com/charts\n  - name: queue\n    version: 2.0.0\n    repository: https://example.com/charts\n"),
    );
    repo.write(
        "chart/templates/cm.yaml",
        config_map_template("web", "  a: b\n"),
    );
    // `cache` vendored as a directory, `queue` as the archive `helm dependency build` writes.
    repo.write(
        "chart/charts/cache/Chart.yaml",
        "apiVersion: v2\nname: cache\nversion: 1.0.0\n",
    );
    repo.write(
        "chart/charts/cache/templates/cm.yaml",
        config_map_template("cache", "  from: directory\n"),
    );
    let src = tempfile::tempdir().unwrap();
    let queue = src.path().join("queue");
    std::fs::create_dir_all(queue.join("templates")).unwrap();
    std::fs::write(
        queue.join("Chart.yaml"),
        "apiVersion: v2\nname: queue\nversion: 2.0.0\n",
    )
    .unwrap();
    std::fs::write(
        queue.join("templates/cm.yaml"),
        config_map_template("queue", "  from: archive\n"),
    )
    .unwrap();
    std::fs::create_dir_all(repo.path.join("chart/charts")).unwrap();
    RealHelm::new().run(&[
        "package",
        queue.to_str().unwrap(),
        "-d",
        repo.path.join("chart/charts").to_str().unwrap(),
    ]);
    assert!(repo.path.join("chart/charts/queue-2.0.0.tgz").is_file());
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    ok(gitops(&[
        "sync", "--repo", r, "--tag", "v1", "--path", "chart", "-n", &ns, "--yes",
    ]));
    assert_eq!(
        kubectl_json(&["get", "configmap", "cache", "-n", &ns])["data"]["from"],
        "directory"
    );
    assert_eq!(
        kubectl_json(&["get", "configmap", "queue", "-n", &ns])["data"]["from"],
        "archive"
    );
    assert_eq!(
        members(&ns),
        ["ConfigMap/cache", "ConfigMap/queue", "ConfigMap/web"]
    );
}

fn timestamp(v: &Value, pointer: &str) -> jiff::Timestamp {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no {pointer} in {v}"))
        .parse()
        .unwrap()
}

fn condition_since(obj: &Value, kind: &str) -> jiff::Timestamp {
    let c = obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} condition: {obj}"));
    timestamp(c, "/lastTransitionTime")
}

#[test]
fn podinfo_hooks_run_in_their_phases_and_helm_test_pods_never_appear() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("helm-hooks");
    let repo = podinfo_repo();
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    // Every hook type the chart has; pre- and post-install keep their Job
    // (before-hook-creation) so its timestamps can be compared, the others delete theirs once
    // it succeeded or failed, as the chart says by default.
    let hooks = "hooks.preInstall.job.enabled=true,hooks.postInstall.job.enabled=true,\
                 hooks.preUpgrade.job.enabled=true,hooks.postUpgrade.job.enabled=true,\
                 hooks.preDelete.job.enabled=true,hooks.preRollback.job.enabled=true,\
                 hooks.preInstall.job.hookDeletePolicy=before-hook-creation,\
                 hooks.postInstall.job.hookDeletePolicy=before-hook-creation";
    let args = |extra: &str| -> Vec<String> {
        [
            "--repo",
            r,
            "--tag",
            "v1",
            "--path",
            "deploy/podinfo",
            "-n",
            &ns,
            "--set",
            &format!("{hooks}{extra}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    fn strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    // The same render with the real helm has the hook Jobs (and, without --skip-tests, the
    // `helm test` Pods).
    let helm = RealHelm::new();
    let full = helm.run(&[
        "template",
        "podinfo",
        repo.path.join("deploy/podinfo").to_str().unwrap(),
        "--set",
        hooks,
        "--kube-version",
        &server_version(),
    ]);
    assert_eq!(
        full.matches("\"helm.sh/hook\": pre-install").count(),
        1,
        "{full}"
    );
    assert!(full.contains("\"helm.sh/hook\": test-success"), "{full}");

    // The plan shows each hook in its phase, and the hook types a sync never runs.
    let dry = ok(gitops(
        &[
            &["sync", "--dry-run", "-o", "json"][..],
            &strs(&args(""))[..],
        ]
        .concat(),
    ));
    let plan: Value = serde_json::from_slice(&dry.stdout).unwrap();
    let phases: Vec<(String, String)> = plan["hooks"]
        .as_array()
        .unwrap_or_else(|| panic!("no hooks in {plan}"))
        .iter()
        .map(|h| {
            (
                h["object"].as_str().unwrap().to_string(),
                h["phase"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (job, phase) in [
        ("pre-install", "PreSync"),
        ("pre-upgrade", "PreSync"),
        ("post-install", "PostSync"),
        ("post-upgrade", "PostSync"),
    ] {
        let object = format!("Job.batch/{ns}/podinfo-{job}");
        assert!(
            phases.contains(&(object.clone(), phase.to_string())),
            "{object} in {phase}: {phases:?}"
        );
    }
    assert_eq!(phases.len(), 4, "{phases:?}");
    let notes = err(&dry);
    for skipped in ["pre-delete", "pre-rollback"] {
        assert!(
            notes.lines().any(|l| l.starts_with("note: ")
                && l.contains(&format!("podinfo-{skipped}"))
                && l.contains("skipped")),
            "{notes}"
        );
    }

    let sync = ok(gitops(
        &[
            &["sync", "--yes", "--wait", "--timeout", "120s"][..],
            &strs(&args(""))[..],
        ]
        .concat(),
    ));
    let stderr = err(&sync);
    assert!(
        !stderr.lines().any(|l| l.starts_with("warning:")),
        "no warning about hooks: {stderr}"
    );
    assert!(stderr.contains("4 hooks run"), "{stderr}");
    // The pre-install Job completed before the Deployment was created; the post-install Job
    // was created once the Deployment was Available.
    let deploy = kubectl_json(&["get", "deployment", "podinfo", "-n", &ns]);
    let pre = kubectl_json(&["get", "job", "podinfo-pre-install", "-n", &ns]);
    let post = kubectl_json(&["get", "job", "podinfo-post-install", "-n", &ns]);
    assert!(
        timestamp(&pre, "/status/completionTime")
            <= timestamp(&deploy, "/metadata/creationTimestamp"),
        "pre-install {pre}\ndeployment {deploy}"
    );
    assert!(
        timestamp(&post, "/metadata/creationTimestamp") >= condition_since(&deploy, "Available"),
        "post-install {post}\ndeployment {deploy}"
    );
    // hook-succeeded: the upgrade hooks' Jobs are gone; the skipped types never ran.
    let jobs = names(&kubectl_json(&["get", "jobs", "-n", &ns]));
    assert_eq!(
        jobs,
        ["podinfo-post-install", "podinfo-pre-install"],
        "{jobs:?}"
    );
    // Hooks are not ApplySet members.
    assert!(
        pre["metadata"]["labels"]["applyset.kubernetes.io/part-of"].is_null(),
        "{pre}"
    );
    let pods = names(&kubectl_json(&["get", "pods", "-n", &ns]));
    assert!(
        !pods.iter().any(|p| p.contains("test")),
        "no helm test Pod: {pods:?}"
    );
    // The record keeps the hooks' runs, in their phases.
    let recorded = history(&ns);
    let runs: Vec<(String, String, String)> = recorded["revisions"][0]["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["object"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
                h["phase"].as_str().unwrap().to_string(),
                h["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut sorted = runs.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("podinfo-post-install", "PostSync", "succeeded"),
            ("podinfo-post-upgrade", "PostSync", "succeeded"),
            ("podinfo-pre-install", "PreSync", "succeeded"),
            ("podinfo-pre-upgrade", "PreSync", "succeeded"),
        ]
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())),
        "{recorded}"
    );
    assert!(
        runs.iter().take(2).all(|r| r.1 == "PreSync"),
        "PreSync hooks ran first: {runs:?}"
    );
    let diff = gitops(&[&["diff"][..], &strs(&args(""))[..]].concat());
    assert_eq!(diff.status.code(), Some(0), "{}", out(&diff));

    // A pre-upgrade hook that fails (image tag `fail`: the hook Jobs' Pods exit 1, the
    // Deployment's run) stops the sync before the chart's objects change.
    let before = kubectl_json(&["get", "deployment", "podinfo", "-n", &ns]);
    let image = before["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    let failed = gitops(
        &[
            &["sync", "--yes", "--timeout", "120s"][..],
            &strs(&args(",image.tag=fail"))[..],
        ]
        .concat(),
    );
    assert_eq!(failed.status.code(), Some(1), "{}", err(&failed));
    let e = err(&failed);
    assert!(
        e.contains("PreSync") && e.contains(&format!("Job.batch/{ns}/podinfo-pre-")),
        "{e}"
    );
    assert!(e.contains("BackoffLimitExceeded"), "{e}");
    let after = kubectl_json(&["get", "deployment", "podinfo", "-n", &ns]);
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][0]["image"], image,
        "the Deployment is untouched"
    );
    assert_eq!(
        after["metadata"]["generation"], before["metadata"]["generation"],
        "{after}"
    );
    let recorded = history(&ns);
    assert!(
        recorded["revisions"][0]["outcome"]
            .as_str()
            .unwrap()
            .starts_with("failed: "),
        "{recorded}"
    );
}

const HELM_SECRET: &str = "hunter2-Helm-S3cret";

#[test]
fn secrets_a_chart_renders_are_never_shown() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("helm-secret");
    let repo = Repo::new();
    repo.write("chart/Chart.yaml", SMALL_CHART);
    repo.write(
        "chart/templates/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {{ .Values.password | quote }}\ndata:\n  token: {{ .Values.token | b64enc | quote }}\n",
    );
    repo.write(
        "chart/templates/cm.yaml",
        config_map_template("settings", "  mode: safe\n"),
    );
    repo.write("chart/values.yaml", "password: \"\"\ntoken: \"\"\n");
    // Values from a values file in the tag, and from --set.
    repo.write("secret-values.yaml", format!("password: {HELM_SECRET}\n"));
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let token = "t0ken-Helm-S3cret";
    let set = format!("token={token}");
    let common = [
        "--repo",
        r,
        "--tag",
        "v1",
        "--path",
        "chart",
        "-n",
        &ns,
        "--values",
        "secret-values.yaml",
        "--set",
        &set,
    ];
    for args in [
        [&["diff"][..], &common[..]].concat(),
        [&["diff", "-o", "json"][..], &common[..]].concat(),
        [&["sync", "--dry-run", "-v", "9"][..], &common[..]].concat(),
        [&["sync", "--dry-run", "-o", "json"][..], &common[..]].concat(),
        [&["sync", "--yes", "-v", "9"][..], &common[..]].concat(),
    ] {
        let o = gitops(&args);
        assert!(o.status.code().unwrap() <= 1, "{args:?}: {}", err(&o));
        assert_no_secret(&o, &[HELM_SECRET, token]);
    }
    let live = kubectl_json(&["get", "secret", "db", "-n", &ns]);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(
        live["data"]["password"],
        b64.encode(HELM_SECRET),
        "the value did reach the cluster"
    );
    assert_eq!(live["data"]["token"], b64.encode(token));

    // A changed value: the diff says the Secret changes, never how.
    let changed = "n3w-Helm-S3cret";
    let set2 = format!("token={changed}");
    let common2 = [
        "--repo",
        r,
        "--tag",
        "v1",
        "--path",
        "chart",
        "-n",
        &ns,
        "--values",
        "secret-values.yaml",
        "--set",
        &set2,
    ];
    let diff = gitops(&[&["diff"][..], &common2[..]].concat());
    assert_eq!(diff.status.code(), Some(1), "{}", err(&diff));
    assert!(
        out(&diff).contains("*** (before)") && out(&diff).contains("*** (after)"),
        "{}",
        out(&diff)
    );
    assert_no_secret(&diff, &[HELM_SECRET, token, changed]);

    // Errors about the render name the object or file, never the values: a Secret placed
    // in another namespace, then a chart file that renders invalid YAML around a value.
    repo.write(
        "chart/templates/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: elsewhere\nstringData:\n  password: {{ .Values.password | quote }}\n",
    );
    repo.tag("v2");
    let v2 = [
        "sync",
        "--yes",
        "--repo",
        r,
        "--tag",
        "v2",
        "--path",
        "chart",
        "-n",
        &ns,
        "--values",
        "secret-values.yaml",
    ];
    let o = gitops(&v2);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("Secret/db is in namespace \"elsewhere\""),
        "{}",
        err(&o)
    );
    assert_no_secret(&o, &[HELM_SECRET]);
    repo.write(
        "chart/templates/cm.yaml",
        config_map_template(
            "settings",
            "  mode: safe\n  copy: {{ .Values.password }}: not yaml\n",
        ),
    );
    repo.tag("v3");
    let v3 = [
        "sync",
        "--yes",
        "--repo",
        r,
        "--tag",
        "v3",
        "--path",
        "chart",
        "-n",
        &ns,
        "--values",
        "secret-values.yaml",
    ];
    let o = gitops(&v3);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("chart/templates/cm.yaml"), "{}", err(&o));
    assert_no_secret(&o, &[HELM_SECRET]);
}

#[test]
fn a_render_error_exits_2_with_helms_message_naming_the_chart_file() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("helm-error");
    let repo = Repo::new();
    repo.write("deploy/web/Chart.yaml", SMALL_CHART);
    repo.write(
        "deploy/web/templates/ok.yaml",
        config_map_template("ok", "  a: b\n"),
    );
    repo.write(
        "deploy/web/templates/cm.yaml",
        config_map_template("broken", "  a: {{ .Values.missing.deep }}\n"),
    );
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let before = snapshot(&ns);
    let o = gitops(&[
        "sync",
        "--repo",
        r,
        "--tag",
        "v1",
        "--path",
        "deploy/web",
        "-n",
        &ns,
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let e = err(&o);
    assert_eq!(e.matches("error:").count(), 1, "{e}");
    assert!(
        e.contains("helm template of the chart at deploy/web"),
        "{e}"
    );
    assert!(
        e.contains("deploy/web/templates/cm.yaml:6:"),
        "the chart file, as a repository path: {e}"
    );
    assert!(
        e.contains("nil pointer evaluating"),
        "Helm's own words: {e}"
    );
    assert!(
        !e.contains("gitops-helm-") && !e.contains("--debug"),
        "no temporary paths or foreign advice: {e}"
    );
    assert_eq!(snapshot(&ns), before);
}

#[test]
fn a_missing_helm_is_a_clear_error_naming_what_to_install() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("helm-missing");
    let repo = Repo::new();
    repo.write("chart/Chart.yaml", SMALL_CHART);
    repo.write(
        "chart/templates/cm.yaml",
        config_map_template("web", "  a: b\n"),
    );
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let args = [
        "sync", "--repo", r, "--tag", "v1", "--path", "chart", "-n", &ns, "--yes",
    ];
    let before = snapshot(&ns);
    // No HELM_PATH, and a PATH without helm.
    let empty = tempfile::tempdir().unwrap();
    let o = run_env(
        &args,
        &[("HELM_PATH", ""), ("PATH", empty.path().to_str().unwrap())],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains("helm is not installed") && e.contains("chart"),
        "{e}"
    );
    assert!(
        e.contains("hint: install Helm") && e.contains("HELM_PATH"),
        "{e}"
    );
    let o = run_env(&args, &[("HELM_PATH", "/nonexistent/helm")]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("HELM_PATH=/nonexistent/helm is not an executable file"),
        "{}",
        err(&o)
    );
    assert_eq!(snapshot(&ns), before);
}

#[test]
fn a_release_installed_with_helm_install_is_adopted_only_with_adopt() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("helm-adopt");
    let helm = RealHelm::new();
    helm.run(&[
        "install",
        "podinfo",
        podinfo_chart().to_str().unwrap(),
        "-n",
        &ns,
    ]);
    let records = |ns: &str| {
        names(&kubectl_json(&[
            "get",
            "secrets",
            "-n",
            ns,
            "-l",
            "owner=helm",
        ]))
    };
    assert_eq!(records(&ns), ["sh.helm.release.v1.podinfo.v1"]);
    let repo = podinfo_repo();
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let args = [
        "sync",
        "--repo",
        r,
        "--tag",
        "v1",
        "--path",
        "deploy/podinfo",
        "-n",
        &ns,
        "--yes",
    ];

    let before = snapshot(&ns);
    let o = gitops(&args);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains(&format!(
            "Deployment.apps/{ns}/podinfo: Helm release {ns}/podinfo"
        )),
        "{e}"
    );
    assert!(e.contains("--adopt"), "{e}");
    let removal = format!("kubectl delete secret -n {ns} -l owner=helm,name=podinfo");
    assert!(e.contains(&removal), "{e}");
    assert_eq!(snapshot(&ns), before);

    let adopted = ok(gitops(&[&args[..], &["--adopt"][..]].concat()));
    assert!(
        err(&adopted).contains(&format!(
            "warning: adopted objects of Helm release {ns}/podinfo"
        )),
        "{}",
        err(&adopted)
    );
    assert!(err(&adopted).contains(&removal), "{}", err(&adopted));
    let id = applyset_id(&ns);
    let d = kubectl_json(&["get", "deployment", "podinfo", "-n", &ns]);
    assert_eq!(
        d["metadata"]["labels"]["applyset.kubernetes.io/part-of"],
        id.as_str()
    );

    // What the warning says to run removes Helm's record and leaves the objects.
    let args_of = removal.split(' ').skip(1).collect::<Vec<_>>();
    kubectl(&args_of);
    assert!(records(&ns).is_empty());
    assert_eq!(helm.run(&["list", "-n", &ns, "-q"]).trim(), "");
    assert_eq!(
        kubectl_json(&["get", "deployment", "podinfo", "-n", &ns])["metadata"]["uid"],
        d["metadata"]["uid"]
    );
    // From now on the objects are ours: no --adopt needed, nothing to change.
    ok(gitops(&args));
    let diff = gitops(&[
        "diff",
        "--repo",
        r,
        "--tag",
        "v1",
        "--path",
        "deploy/podinfo",
        "-n",
        &ns,
    ]);
    assert_eq!(diff.status.code(), Some(0), "{}", out(&diff));
}

#[test]
fn templates_see_the_servers_capabilities_and_values_in_helms_order_and_lookup_is_empty() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("helm-caps");
    let repo = Repo::new();
    repo.write("chart/Chart.yaml", SMALL_CHART);
    repo.write("chart/values.yaml", "a: chart\nb: chart\nc: chart\n");
    repo.write(
        "chart/templates/cm.yaml",
        config_map_template(
            "facts",
            "  kube: {{ .Capabilities.KubeVersion.Version | quote }}
  deployments: {{ .Capabilities.APIVersions.Has \"apps/v1/Deployment\" | quote }}
  batch: {{ .Capabilities.APIVersions.Has \"batch/v1\" | quote }}
  unserved: {{ .Capabilities.APIVersions.Has \"example.com/v1\" | quote }}
  lookup: {{ lookup \"v1\" \"ConfigMap\" .Release.Namespace \"kube-root-ca.crt\" | quote }}
  namespace: {{ .Release.Namespace | quote }}
  release: {{ .Release.Name | quote }}
  a: {{ .Values.a | quote }}
  b: {{ .Values.b | quote }}
  c: {{ .Values.c | quote }}
",
        ),
    );
    repo.write("values/extra.yaml", "b: file\nc: file\n");
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    ok(gitops(&[
        "sync",
        "--repo",
        r,
        "--tag",
        "v1",
        "--path",
        "chart",
        "-n",
        &ns,
        "--yes",
        "--values",
        "values/extra.yaml",
        "--set",
        "c=set",
    ]));
    let data = &kubectl_json(&["get", "configmap", "facts", "-n", &ns])["data"];
    assert_eq!(data["kube"], server_version().as_str());
    assert_eq!(data["deployments"], "true");
    assert_eq!(data["batch"], "true");
    assert_eq!(data["unserved"], "false");
    // Rendering reaches no cluster: lookup finds nothing although the ConfigMap exists.
    kubectl(&["get", "configmap", "kube-root-ca.crt", "-n", &ns]);
    assert_eq!(data["lookup"], "map[]");
    assert_eq!(data["namespace"], ns.as_str());
    assert_eq!(data["release"], "web", "no environment: the chart's name");
    assert_eq!(
        (&data["a"], &data["b"], &data["c"]),
        (&json!("chart"), &json!("file"), &json!("set"))
    );

    // A values file that is not in the tag, and chart settings where there is no chart.
    let o = gitops(&[
        "diff",
        "--repo",
        r,
        "--tag",
        "v1",
        "--path",
        "chart",
        "-n",
        &ns,
        "--values",
        "values/missing.yaml",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains(
            "--values \"values/missing.yaml\": values/missing.yaml is not a file at commit"
        ),
        "{}",
        err(&o)
    );
    let o = gitops(&[
        "diff", "--repo", r, "--tag", "v1", "--path", "values", "-n", &ns, "--set", "a=b",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("is not a Helm chart (it has no Chart.yaml)"),
        "{}",
        err(&o)
    );
}

#[test]
fn chart_settings_in_gitops_yaml_are_checked() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("helm-settings");
    let repo = Repo::new();
    repo.write("chart/Chart.yaml", SMALL_CHART);
    repo.write(
        "chart/templates/cm.yaml",
        config_map_template("web", "  a: b\n"),
    );
    repo.write("plain/cm.yaml", config_map_template("plain", "  a: b\n"));
    repo.write(
        "gitops.yaml",
        format!("environments:\n  - name: dev\n    branch: env/dev\n    path: chart\n    namespace: {ns}\n    helm:\n      valuesFiles: [values-dev.yaml]\n  - name: qa\n    branch: env/qa\n    path: plain\n    namespace: {ns}\n    helm: {{release: web}}\n"),
    );
    repo.deploy_tag("dev", "deploy/dev/20260101T000000Z");
    repo.deploy_tag("qa", "deploy/qa/20260101T000000Z");
    let r = repo.path.to_str().unwrap();
    let o = gitops(&["diff", "--repo", r, "--env", "dev"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("environment dev: helm.valuesFiles entry \"values-dev.yaml\": chart/values-dev.yaml is not a file at commit"), "{}", err(&o));
    let o = gitops(&["diff", "--repo", r, "--env", "qa"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("environment qa has a helm: block in gitops.yaml, but \"plain\""),
        "{}",
        err(&o)
    );
    // What an environment deploys is in git: no values from the command line.
    let o = gitops(&["diff", "--repo", r, "--env", "dev", "--set", "a=b"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("'--env <env>' cannot be used with '--set <key=value>'"),
        "{}",
        err(&o)
    );
    // An unknown key in the block, with its line and column.
    repo.write(
        "gitops.yaml",
        format!("environments:\n  - name: dev\n    branch: env/dev\n    path: chart\n    namespace: {ns}\n    helm:\n      valueFiles: [values.yaml]\n"),
    );
    repo.deploy_tag("dev", "deploy/dev/20260101T000001Z");
    let o = gitops(&["diff", "--repo", r, "--env", "dev"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains(":7:7: unknown field `valueFiles`"),
        "{}",
        err(&o)
    );
}

#[test]
fn crds_of_a_chart_are_applied_first_and_never_pruned() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("helm-crds");
    let group = format!("{ns}.example.com");
    let repo = Repo::new();
    repo.write("chart/Chart.yaml", SMALL_CHART);
    repo.write(
        "chart/crds/widgets.yaml",
        format!("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.{group}\nspec:\n  group: {group}\n  scope: Namespaced\n  names: {{plural: widgets, singular: widget, kind: Widget}}\n  versions:\n    - name: v1\n      served: true\n      storage: true\n      schema:\n        openAPIV3Schema:\n          type: object\n          x-kubernetes-preserve-unknown-fields: true\n"),
    );
    repo.write(
        "chart/templates/widget.yaml",
        format!("apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  size: 3\n"),
    );
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let args = |tag: &'static str| -> Vec<String> {
        [
            "sync",
            "--repo",
            r,
            "--tag",
            tag,
            "--path",
            "chart",
            "-n",
            &ns,
            "--yes",
            "--allow-cluster-scoped",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let v1: Vec<String> = args("v1");
    ok(gitops(&v1.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(
        kubectl_json(&["get", &format!("widgets.{group}"), "w", "-n", &ns])["spec"]["size"],
        3
    );
    // The next version drops the CRD and its resource: the resource goes, the CRD stays.
    std::fs::remove_dir_all(repo.path.join("chart/crds")).unwrap();
    repo.write(
        "chart/templates/widget.yaml",
        config_map_template("instead", "  a: b\n"),
    );
    repo.tag("v2");
    let v2: Vec<String> = args("v2");
    let o = ok(gitops(&v2.iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(err(&o).contains("1 not pruned (protected)"), "{}", err(&o));
    kubectl(&["get", "crd", &format!("widgets.{group}")]);
    let left = kubectl_json(&["get", &format!("widgets.{group}"), "-n", &ns]);
    assert_eq!(left["items"], Value::Array(vec![]));
    // revert --to-tag renders the chart as sync does.
    ok(gitops(&[
        "revert",
        "--repo",
        r,
        "--to-tag",
        "v1",
        "--path",
        "chart",
        "-n",
        &ns,
        "--yes",
        "--allow-cluster-scoped",
    ]));
    assert_eq!(
        kubectl_json(&["get", &format!("widgets.{group}"), "w", "-n", &ns])["spec"]["size"],
        3
    );
}

#[test]
fn a_symlink_in_a_chart_leaving_the_tree_is_refused() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("helm-link");
    let repo = Repo::new();
    repo.write("chart/Chart.yaml", SMALL_CHART);
    repo.write(
        "chart/templates/cm.yaml",
        config_map_template("web", "  a: b\n"),
    );
    std::os::unix::fs::symlink("/etc/passwd", repo.path.join("chart/templates/passwd.yaml"))
        .unwrap();
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let before = snapshot(&ns);
    let o = gitops(&[
        "sync", "--repo", r, "--tag", "v1", "--path", "chart", "-n", &ns, "--yes",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("chart/templates/passwd.yaml: symbolic link to \"/etc/passwd\" points outside the repository"),
        "{}",
        err(&o)
    );
    assert!(!err(&o).contains("root:"), "{}", err(&o));
    assert_eq!(snapshot(&ns), before);
}

#[test]
fn podinfo_chart_promoted_with_git_deploy_and_synced_per_environment() {
    let c = cluster::cluster();
    let dev = c.fresh_namespace("helm-promote-dev");
    let prod = c.fresh_namespace("helm-promote-prod");
    let repo = podinfo_repo();
    // Prod takes only deploys verified healthy in dev: verify renders the chart as sync does.
    // prod is the last entry: its gates close the file.
    let envs = podinfo_envs(&dev, &prod, "{}") + "    gates: {verified: true}\n";
    assert!(envs.contains("gates:"));
    repo.write("gitops.yaml", envs);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "podinfo's chart, two environments"]);
    let git_deploy = |args: &[&str]| {
        let mut cmd = Command::new(install_common::git_deploy());
        cmd.current_dir(&repo.path).args(args);
        repo::isolate(&mut cmd, repo.tmp.path());
        let o = cmd.output().unwrap();
        assert!(
            o.status.success(),
            "git deploy {args:?}: {}\n{}",
            out(&o),
            err(&o)
        );
        o
    };
    git_deploy(&["init"]);
    git_deploy(&["tag", "dev", "-m", "first"]);
    let r = repo.path.to_str().unwrap();
    ok(gitops(&[
        "sync",
        "--repo",
        r,
        "--env",
        "dev",
        "--yes",
        "--wait",
        "--timeout",
        "120s",
    ]));

    // A change on dev's branch: a new version of the chart's app.
    repo.git(&["checkout", "-q", "env/dev"]);
    let chart = repo.path.join("deploy/podinfo/Chart.yaml");
    let text = std::fs::read_to_string(&chart).unwrap();
    assert!(text.contains("appVersion: 6.14.1\n"), "{text}");
    std::fs::write(
        &chart,
        text.replace("appVersion: 6.14.1\n", "appVersion: 6.14.2\n"),
    )
    .unwrap();
    repo.git(&["commit", "-q", "-am", "podinfo 6.14.2"]);
    repo.git(&["checkout", "-q", "main"]);
    git_deploy(&["tag", "dev"]);
    ok(gitops(&[
        "sync",
        "--repo",
        r,
        "--env",
        "dev",
        "--yes",
        "--wait",
        "--timeout",
        "120s",
    ]));
    let identity = [
        ("GIT_AUTHOR_NAME", "CI Runner"),
        ("GIT_AUTHOR_EMAIL", "ci@example.com"),
        ("GIT_COMMITTER_NAME", "CI Runner"),
        ("GIT_COMMITTER_EMAIL", "ci@example.com"),
        ("HELM_PATH", tools::helm().to_str().unwrap()),
    ];
    ok(run_env(&["verify", "--repo", r, "--env", "dev"], &identity));
    git_deploy(&["promote", "dev", "--yes"]);
    ok(gitops(&[
        "sync",
        "--repo",
        r,
        "--env",
        "prod",
        "--yes",
        "--wait",
        "--timeout",
        "120s",
    ]));

    let deployed = |ns: &str| {
        let d = kubectl_json(&["get", "deployment", "podinfo", "-n", ns]);
        (
            d["metadata"]["labels"]["app.kubernetes.io/version"].clone(),
            d["spec"]["replicas"].clone(),
            d["status"]["availableReplicas"].clone(),
        )
    };
    assert_eq!(deployed(&dev), (json!("6.14.2"), json!(1), json!(1)));
    assert_eq!(deployed(&prod), (json!("6.14.2"), json!(3), json!(3)));
    assert!(
        members(&prod).contains(&"Deployment/podinfo-redis".to_string()),
        "prod's values file"
    );
    assert!(!members(&dev).contains(&"Deployment/podinfo-redis".to_string()));
    for env in ["dev", "prod"] {
        let diff = gitops(&["diff", "--repo", r, "--env", env]);
        assert_eq!(diff.status.code(), Some(0), "{env}: {}", out(&diff));
    }
}
