//! `kubectl gitops metrics` against the workload-running test cluster: the figures of real
//! syncs (a healthy namespace, one with an image that cannot be pulled, drift made by hand),
//! `--serve` following a new sync, watches rather than polling (counted by the API server's
//! own `apiserver_request_total`), the exposition checked by `promtool check metrics`, the
//! alert rules by `promtool test rules`, the dashboard's queries against what the exporter
//! exports, and the in-cluster manifest's RBAC with its ServiceAccount.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::tools;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn contrib(rel: &str) -> PathBuf {
    workspace().join("contrib").join(rel)
}

/// One sample of an exposition: metric name and labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// The samples of a Prometheus text exposition (comments skipped; label values unescaped).
pub fn parse_scrape(text: &str) -> BTreeMap<Series, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').unwrap())),
            None => (series, BTreeMap::new()),
        };
        out.insert(
            Series {
                name: name.to_string(),
                labels,
            },
            value.parse().unwrap_or_else(|_| panic!("value of {line}")),
        );
    }
    out
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            return out;
        }
        assert_eq!(chars.next(), Some('"'), "{text}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
}

/// The value of `name` in `ns` with the given extra labels, if exported.
pub fn value(
    scrape: &BTreeMap<Series, f64>,
    name: &str,
    ns: &str,
    extra: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .iter()
        .find(|(s, _)| {
            s.name == name
                && s.labels.get("namespace").map(String::as_str) == Some(ns)
                && extra
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
}

/// The labels of `kubectl_gitops_revision_info` for `ns`.
pub fn revision_info(scrape: &BTreeMap<Series, f64>, ns: &str) -> Option<BTreeMap<String, String>> {
    let all: Vec<_> = scrape
        .keys()
        .filter(|s| {
            s.name == "kubectl_gitops_revision_info"
                && s.labels.get("namespace").map(String::as_str) == Some(ns)
        })
        .collect();
    assert!(all.len() <= 1, "one revision_info per namespace: {all:?}");
    all.first().map(|s| s.labels.clone())
}

pub fn metrics_once(args: &[&str]) -> (Output, BTreeMap<Series, f64>) {
    let mut a = vec!["metrics", "--once"];
    a.extend_from_slice(args);
    let o = run(&a);
    let scrape = parse_scrape(&out(&o));
    (o, scrape)
}

fn commit_of(repo: &Repo, tag: &str) -> String {
    repo.git(&["rev-parse", &format!("{tag}^{{commit}}")])
}

fn configmap(name: &str, data: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  {data}\n")
}

/// The health verdict `status` gives an object of the namespace.
fn status_json(ns: &str) -> Value {
    let o = run(&["status", "-n", ns, "-o", "json"]);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", err(&o)))
}

/// drift and health figures as `status -o json` counts them.
fn status_figures(s: &Value) -> BTreeMap<String, f64> {
    let mut f = BTreeMap::new();
    for kind in ["changed", "missing", "extra", "unowned"] {
        f.insert(
            format!("drift {kind}"),
            s["drift"][kind].as_array().unwrap().len() as f64,
        );
    }
    for (status, label) in [
        ("ready", "ready"),
        ("in progress", "in_progress"),
        ("failed", "failed"),
    ] {
        let n = s["health"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["status"] == status)
            .count();
        f.insert(format!("health {label}"), n as f64);
    }
    f
}

fn scrape_figures(scrape: &BTreeMap<Series, f64>, ns: &str) -> BTreeMap<String, f64> {
    let mut f = BTreeMap::new();
    for kind in ["changed", "missing", "extra", "unowned"] {
        let v = value(
            scrape,
            "kubectl_gitops_drift_objects",
            ns,
            &[("kind", kind)],
        );
        f.insert(format!("drift {kind}"), v.unwrap_or(f64::NAN));
    }
    for status in ["ready", "in_progress", "failed"] {
        let v = value(
            scrape,
            "kubectl_gitops_health_objects",
            ns,
            &[("status", status)],
        );
        f.insert(format!("health {status}"), v.unwrap_or(f64::NAN));
    }
    f
}

fn figures(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Two namespaces synced on the workload cluster, one healthy and drifted by hand, one whose
/// image cannot be pulled: `metrics --once --all-namespaces` gives the revision, tag, drift
/// and health figures exactly, and the same figures as `status`.
#[test]
fn once_reports_revision_drift_and_health_of_every_namespace_exactly() {
    let c = cluster::cluster();
    let good = c.fresh_namespace("metrics-good");
    let bad = c.fresh_namespace("metrics-bad");
    let repo = Repo::new();
    repo.write("app/web.yaml", deployment("web", "nginx:1.27"));
    repo.write("app/settings.yaml", configmap("settings", "mode: safe"));
    repo.write(
        "app/creds.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: s3cr3t-Metrics-Value\n",
    );
    repo.tag("v1");
    repo.write("app/web.yaml", deployment("web", "nginx:broken"));
    repo.tag("broken");
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "v1", &good, &["--wait", "--timeout", "60s"]));
    ok(sync_app(r, "broken", &bad, &[]));
    // Drift by hand: a changed object, a deleted one, one of ours that is not in the
    // revision, and one nobody owns.
    kubectl(&[
        "patch",
        "configmap",
        "settings",
        "-n",
        &good,
        "--type",
        "merge",
        "-p",
        r#"{"data":{"mode":"unsafe"}}"#,
    ]);
    kubectl(&["delete", "secret", "creds", "-n", &good]);
    kubectl(&["create", "configmap", "loose", "-n", &good]);
    kubectl(&["create", "configmap", "stray", "-n", &good]);
    let id = applyset_id(&good);
    kubectl(&[
        "label",
        "configmap",
        "stray",
        "-n",
        &good,
        &format!("applyset.kubernetes.io/part-of={id}"),
    ]);
    // The image pull failure counts as failed once the Pod is past its 30 s grace.
    wait_for(
        "the broken rollout to be failed",
        Duration::from_secs(90),
        || {
            let s = status_json(&bad);
            s["health"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| {
                    h["object"] == format!("Deployment.apps/{bad}/web") && h["status"] == "failed"
                })
                .then_some(())
        },
    );

    let (o, scrape) = metrics_once(&["--all-namespaces"]);
    // Other tests' namespaces are in the scrape too; whatever they do, ours are complete.
    for line in err(&o).lines() {
        assert!(!line.contains(&good) && !line.contains(&bad), "{}", err(&o));
    }
    assert!(
        o.status.code() == Some(0) || o.status.code() == Some(1),
        "{}",
        err(&o)
    );
    let good_info = revision_info(&scrape, &good).expect("revision_info of the good namespace");
    assert_eq!(
        good_info,
        [
            ("namespace", good.as_str()),
            ("revision", "1"),
            ("tag", "v1"),
            ("commit", commit_of(&repo, "v1").as_str()),
            ("outcome", "succeeded"),
            // As history's SIGNED BY: the namespace has no trust policy.
            ("signed_by", "no policy"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    );
    let bad_info = revision_info(&scrape, &bad).expect("revision_info of the bad namespace");
    assert_eq!(bad_info["tag"], "broken");
    assert_eq!(bad_info["commit"], commit_of(&repo, "broken"));
    assert_eq!(
        scrape_figures(&scrape, &good),
        figures(&[
            ("drift changed", 1.0),
            ("drift missing", 1.0),
            ("drift extra", 1.0),
            ("drift unowned", 1.0),
            // settings changed but is still a ready ConfigMap; creds is missing.
            ("health ready", 2.0),
            ("health in_progress", 0.0),
            ("health failed", 1.0),
        ])
    );
    assert_eq!(
        scrape_figures(&scrape, &bad),
        figures(&[
            ("drift changed", 0.0),
            ("drift missing", 0.0),
            ("drift extra", 0.0),
            ("drift unowned", 0.0),
            ("health ready", 2.0),
            ("health in_progress", 0.0),
            ("health failed", 1.0),
        ])
    );
    for ns in [&good, &bad] {
        assert_eq!(
            scrape_figures(&scrape, ns),
            status_figures(&status_json(ns)),
            "metrics and status agree on {ns}"
        );
        let recorded = &history(ns)["revisions"][0];
        let time: jiff::Timestamp = recorded["time"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            value(
                &scrape,
                "kubectl_gitops_last_sync_timestamp_seconds",
                ns,
                &[]
            ),
            Some(time.as_second() as f64)
        );
        assert_eq!(
            value(
                &scrape,
                "kubectl_gitops_last_successful_sync_timestamp_seconds",
                ns,
                &[]
            ),
            Some(time.as_second() as f64)
        );
        assert_eq!(
            value(&scrape, "kubectl_gitops_last_sync_success", ns, &[]),
            Some(1.0)
        );
        assert_eq!(
            value(&scrape, "kubectl_gitops_namespace_locked", ns, &[]),
            Some(0.0)
        );
    }
    assert!(!out(&o).contains("s3cr3t-Metrics-Value"));

    // The same two namespaces by name: nothing else read, nothing missing, exit 0.
    let (o, named) = metrics_once(&["-n", &good, "-n", &bad]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let namespaces: BTreeSet<&str> = named
        .keys()
        .filter_map(|s| s.labels.get("namespace").map(String::as_str))
        .collect();
    assert_eq!(namespaces, BTreeSet::from([good.as_str(), bad.as_str()]));
    assert_eq!(
        scrape_figures(&named, &good),
        scrape_figures(&scrape, &good)
    );
}

/// `--env` follows the environment's namespace from gitops.yaml (nothing else), and
/// `namespace_locked` is 1 while a Lease that has not expired is held, 0 once it is gone;
/// the exporter's own series are there.
#[test]
fn once_by_environment_reports_a_held_lease() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("metrics-env");
    let repo = Repo::new();
    repo.write("app/settings.yaml", configmap("settings", "mode: safe"));
    repo.write(
        "gitops.yaml",
        format!(
            "environments:\n  - name: dev\n    branch: env/dev\n    path: app\n    namespace: {ns}\n"
        ),
    );
    repo.deploy_tag("dev", "deploy/dev/20250101T000000Z");
    let r = repo.path.to_str().unwrap();
    ok(run(&["sync", "--repo", r, "--env", "dev", "--yes"]));
    let renewed = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.000000Z");
    let lease = format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: kubectl-gitops-lock\n  namespace: {ns}\nspec:\n  holderIdentity: ann@ci (42)\n  leaseDurationSeconds: 600\n  acquireTime: {renewed}\n  renewTime: {renewed}\n"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), lease).unwrap();
    kubectl(&["apply", "-f", file.path().to_str().unwrap()]);

    let (o, scrape) = metrics_once(&["--env", "dev", "-C", r]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let namespaces: BTreeSet<&str> = scrape
        .keys()
        .filter_map(|s| s.labels.get("namespace").map(String::as_str))
        .collect();
    assert_eq!(namespaces, BTreeSet::from([ns.as_str()]));
    assert_eq!(
        revision_info(&scrape, &ns).unwrap()["tag"],
        "deploy/dev/20250101T000000Z"
    );
    assert_eq!(
        value(&scrape, "kubectl_gitops_namespace_locked", &ns, &[]),
        Some(1.0)
    );
    let own = |name: &str| {
        scrape
            .iter()
            .find(|(s, _)| s.name == name)
            .map(|(s, v)| (s.labels.clone(), *v))
    };
    assert_eq!(
        own("kubectl_gitops_build_info"),
        Some((
            BTreeMap::from([("version".to_string(), env!("CARGO_PKG_VERSION").to_string())]),
            1.0
        ))
    );
    assert_eq!(
        own("kubectl_gitops_scrape_errors_total"),
        Some((BTreeMap::new(), 0.0))
    );

    kubectl(&["delete", "lease", "kubectl-gitops-lock", "-n", &ns]);
    let (o, scrape) = metrics_once(&["--env", "dev", "-C", r]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        value(&scrape, "kubectl_gitops_namespace_locked", &ns, &[]),
        Some(0.0)
    );
}

/// A scrape of `--serve`: status, headers, body.
pub fn http_get(port: u16, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

/// `metrics --serve 127.0.0.1:0 ARGS` with the port it printed; stderr keeps being drained.
pub struct Served {
    pub child: Child,
    pub port: u16,
}

impl Served {
    pub fn start(kubeconfig: &Path, args: &[&str]) -> Served {
        let mut child = Command::new(BIN)
            .args(["metrics", "--serve", "127.0.0.1:0"])
            .args(args)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let port = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = stderr.read_to_string(&mut sink);
        });
        Served { child, port }
    }

    pub fn scrape(&self) -> BTreeMap<Series, f64> {
        let (status, _, body) = http_get(self.port, "/metrics", None);
        assert_eq!(status, 200, "{body}");
        parse_scrape(&body)
    }

    /// SIGTERM, as Kubernetes stops a Pod: the exporter exits 0.
    pub fn stop(mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "exporter exit");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--serve` answers `/metrics` and `/healthz`, and follows a new sync without a restart:
/// the revision label changes, drift and health follow the new revision.
#[test]
fn serve_follows_a_new_sync_without_restart() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("metrics-serve");
    let repo = two_tags();
    let r = repo.path.to_str().unwrap();
    ok(sync_app(r, "A", &ns, &["--wait", "--timeout", "60s"]));
    let served = Served::start(c.kubeconfig(), &["-n", &ns, "--drift-interval", "1h"]);
    let first = wait_for("the first revision", Duration::from_secs(30), || {
        let s = served.scrape();
        (revision_info(&s, &ns).is_some()
            && value(
                &s,
                "kubectl_gitops_drift_objects",
                &ns,
                &[("kind", "changed")],
            )
            .is_some())
        .then_some(s)
    });
    assert_eq!(revision_info(&first, &ns).unwrap()["tag"], "A");
    assert_eq!(
        value(
            &first,
            "kubectl_gitops_health_objects",
            &ns,
            &[("status", "ready")]
        ),
        Some(2.0)
    );
    let (status, _, body) = http_get(served.port, "/healthz", None);
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, head, body) = http_get(
        served.port,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3"),
    );
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains("# TYPE kubectl_gitops_revision info\n"),
        "{body}"
    );
    let (status, _, _) = http_get(served.port, "/nothing", None);
    assert_eq!(status, 404);

    // The exposition is what Prometheus' own tooling accepts.
    let (_, head, text) = http_get(served.port, "/metrics", None);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let mut check = Command::new(tools::promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        out(&checked),
        err(&checked)
    );

    ok(sync_app(r, "B", &ns, &["--wait", "--timeout", "60s"]));
    let after = wait_for(
        "the exporter to see revision 2",
        Duration::from_secs(30),
        || {
            let s = served.scrape();
            let info = revision_info(&s, &ns)?;
            let drift_of_2 = value(
                &s,
                "kubectl_gitops_drift_checked_timestamp_seconds",
                &ns,
                &[],
            )
            .is_some();
            (info["revision"] == "2" && drift_of_2).then_some(s)
        },
    );
    let info = revision_info(&after, &ns).unwrap();
    assert_eq!(info["tag"], "B");
    assert_eq!(info["commit"], commit_of(&repo, "B"));
    assert_eq!(
        scrape_figures(&after, &ns),
        figures(&[
            ("drift changed", 0.0),
            ("drift missing", 0.0),
            ("drift extra", 0.0),
            ("drift unowned", 0.0),
            ("health ready", 2.0),
            ("health in_progress", 0.0),
            ("health failed", 0.0),
        ])
    );
    served.stop();
}

/// A cluster this test owns alone (a bare API server: nothing else sends requests), started
/// with `tests/cluster/start` and stopped when dropped.
pub(super) struct OwnCluster {
    dir: tempfile::TempDir,
}

impl OwnCluster {
    pub(super) fn start(extra: &[&str]) -> OwnCluster {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("metrics");
        std::fs::create_dir_all(&base).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("cluster-")
            .tempdir_in(base)
            .unwrap();
        let o = Command::new("bash")
            .arg(workspace().join("tests/cluster/start"))
            .arg(dir.path())
            .args(extra)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(o.status.success(), "tests/cluster/start: {}", err(&o));
        OwnCluster { dir }
    }

    pub(super) fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub(super) fn kubectl(&self, args: &[&str]) -> String {
        let o = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()))
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "kubectl {args:?}: {}", err(&o));
        out(&o)
    }

    /// `apiserver_request_total` (requests completed) by (verb, resource, scope), from the
    /// API server's /metrics.
    pub(super) fn requests(&self) -> BTreeMap<(String, String, String), f64> {
        self.api_server_metric("apiserver_request_total")
    }

    /// Watches open now, by resource (`apiserver_longrunning_requests`: a watch is counted in
    /// `apiserver_request_total` only once it ends). A watch with a field selector on the
    /// name (the Lease's) has scope "resource", the others "namespace".
    fn open_watches(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for ((verb, resource, _), v) in self.api_server_metric("apiserver_longrunning_requests") {
            if verb == "WATCH" {
                *out.entry(resource).or_insert(0.0) += v;
            }
        }
        out
    }

    fn api_server_metric(&self, name: &str) -> BTreeMap<(String, String, String), f64> {
        let mut out = BTreeMap::new();
        for (s, v) in parse_scrape(&self.kubectl(&["get", "--raw", "/metrics"])) {
            if s.name != name {
                continue;
            }
            let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            *out.entry((l("verb"), l("resource"), l("scope")))
                .or_insert(0.0) += v;
        }
        out
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(workspace().join("tests/cluster/stop"))
            .arg(self.dir.path())
            .status();
    }
}

/// The exporter follows the cluster by watches: once it has listed, scrapes (many) cause no
/// request at all, and what it holds came from WATCH requests, not from polling GETs or LISTs.
/// Counted by the API server itself, on a cluster nothing else talks to.
#[test]
fn the_exporter_watches_and_scrapes_send_no_requests() {
    let own = OwnCluster::start(&["--controllers=false"]);
    let kc = own.kubeconfig();
    own.kubectl(&["create", "namespace", "watched"]);
    let repo = Repo::new();
    repo.write("app/web.yaml", deployment("web", "nginx:1.27"));
    repo.write("app/settings.yaml", configmap("settings", "mode: safe"));
    repo.tag("v1");
    let r = repo.path.to_str().unwrap();
    let sync = Command::new(BIN)
        .args([
            "sync", "--repo", r, "--tag", "v1", "--path", "app", "-n", "watched", "--yes",
        ])
        .arg("--kubeconfig")
        .arg(&kc)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    ok(sync);
    // The API server's own informers watch some of these kinds (in kube-system).
    let baseline = own.open_watches();
    let served = Served::start(&kc, &["-n", "watched", "--drift-interval", "1h"]);
    wait_for(
        "the exporter to have read everything",
        Duration::from_secs(30),
        || {
            let s = served.scrape();
            (value(
                &s,
                "kubectl_gitops_drift_objects",
                "watched",
                &[("kind", "changed")],
            )
            .is_some()
                && value(
                    &s,
                    "kubectl_gitops_health_objects",
                    "watched",
                    &[("status", "ready")],
                )
                .is_some())
            .then_some(())
        },
    );
    // Let requests in flight land in the counters.
    std::thread::sleep(Duration::from_secs(1));
    let ours = [
        "secrets",
        "leases",
        "configmaps",
        "deployments",
        "replicasets",
        "pods",
    ];
    // The API server renews its own identity Lease (GET and PUT, scope "resource") every
    // 10 s: single-object GETs of leases are its, not ours.
    let counted =
        |m: &BTreeMap<(String, String, String), f64>| -> BTreeMap<(String, String, String), f64> {
            m.iter()
                .filter(|((verb, resource, scope), _)| {
                    ours.contains(&resource.as_str())
                        && matches!(verb.as_str(), "GET" | "LIST" | "WATCH")
                        && !(resource == "leases" && verb == "GET" && scope == "resource")
                })
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
    let before = counted(&own.requests());
    let start = Instant::now();
    let mut scrapes = 0;
    while start.elapsed() < Duration::from_secs(6) {
        let s = served.scrape();
        assert!(revision_info(&s, "watched").is_some());
        scrapes += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = counted(&own.requests());
    assert!(scrapes >= 30, "{scrapes}");
    assert_eq!(
        before, after,
        "{scrapes} scrapes over 6 s sent requests (before, after)"
    );
    // What it holds comes from watches, open all along: the record metadata (secrets), the
    // Lease, each kind of the revision, and the Pods and ReplicaSets of its Deployment.
    let open = own.open_watches();
    let count = |m: &BTreeMap<String, f64>, r: &str| m.get(r).copied().unwrap_or(0.0);
    for resource in ours {
        assert!(
            count(&open, resource) > count(&baseline, resource),
            "no open watch of {resource} but the API server's: {open:?}, before {baseline:?}"
        );
    }
    // The counters do see requests: a status run is counted at once.
    let o = Command::new(BIN)
        .args(["status", "-n", "watched", "--kubeconfig"])
        .arg(&kc)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(o.status.code().is_some(), "{}", err(&o));
    assert_ne!(counted(&own.requests()), after);
    // And they were the exporter's: they close with it.
    served.stop();
    wait_for(
        "the exporter's watches to close",
        Duration::from_secs(10),
        || {
            let open = own.open_watches();
            ours.iter()
                .all(|r| count(&open, r) == count(&baseline, r))
                .then_some(())
        },
    );
}

/// The rule file as promtool checks it, and a test in alerts_test.yaml that makes each of its
/// alerts fire.
#[test]
fn every_alert_rule_passes_promtool_and_has_a_test_that_fires_it() {
    let promtool = tools::promtool();
    let check = Command::new(promtool)
        .args(["check", "rules"])
        .arg(contrib("prometheus/alerts.yaml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}{}", out(&check), err(&check));
    let test = Command::new(promtool)
        .args(["test", "rules"])
        .arg(contrib("prometheus/alerts_test.yaml"))
        .output()
        .unwrap();
    assert!(test.status.success(), "{}{}", out(&test), err(&test));
    let rules: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(contrib("prometheus/alerts.yaml")).unwrap(),
    )
    .unwrap();
    let alerts: BTreeSet<String> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect();
    let tests: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(contrib("prometheus/alerts_test.yaml")).unwrap(),
    )
    .unwrap();
    let fired: BTreeSet<String> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap().iter())
        .filter(|a| !a["exp_alerts"].as_array().unwrap().is_empty())
        .map(|a| a["alertname"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(alerts, fired, "alerts without a test that fires them");
    assert!(alerts.len() >= 5, "{alerts:?}");
}

/// Metric names a PromQL expression refers to (ours only).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("kubectl_gitops_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.insert(name);
    }
    out
}

/// The metric names of a real scrape of `ns`.
fn exported_names() -> BTreeSet<String> {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("metrics-names");
    let repo = Repo::new();
    repo.write("app/settings.yaml", configmap("settings", "mode: safe"));
    repo.tag("v1");
    ok(sync_app(repo.path.to_str().unwrap(), "v1", &ns, &[]));
    let (o, scrape) = metrics_once(&["-n", &ns]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    scrape.keys().map(|s| s.name.clone()).collect()
}

/// The dashboard is valid JSON whose every query refers only to metrics the exporter exports
/// and is valid PromQL (promtool checks each as a recording rule); the alert rules refer only
/// to exported metrics too.
#[test]
fn the_dashboard_and_the_alerts_query_only_exported_metrics() {
    let exported = exported_names();
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(contrib("grafana/dashboard.json")).unwrap())
            .expect("dashboard.json is JSON");
    assert_eq!(dashboard["uid"], "kubectl-gitops");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 8, "{exprs:?}");
    let variable = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "namespace")
        .unwrap();
    let variable_query = variable["query"]["query"].as_str().unwrap();
    let rules: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(contrib("prometheus/alerts.yaml")).unwrap(),
    )
    .unwrap();
    let alert_exprs: Vec<String> = rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect();
    for expr in exprs
        .iter()
        .chain(&alert_exprs)
        .map(String::as_str)
        .chain([variable_query])
    {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{expr} queries none of our metrics");
        for name in names {
            assert!(
                exported.contains(&name),
                "{expr} refers to {name}, which the exporter does not export ({exported:?})"
            );
        }
    }
    // Each query is PromQL, once Grafana's variables are filled in.
    let dir = tempfile::tempdir().unwrap();
    let mut file = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let filled = expr
            .replace("$namespace", ".*")
            .replace("$__rate_interval", "5m");
        file.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(&filled).unwrap()
        ));
    }
    let path = dir.path().join("dashboard-queries.yaml");
    std::fs::write(&path, file).unwrap();
    let check = Command::new(tools::promtool())
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}{}", out(&check), err(&check));
}

/// Runs the real alert rules (their annotations left out: the tests in alerts_test.yaml
/// check those) in promtool on `scrape`, held for `minutes`: the alerts firing for `ns` at the
/// end, as `alertname` -> labels.
pub fn alerts_on(scrape: &BTreeMap<Series, f64>, ns: &str, expected: &[(&str, &[(&str, &str)])]) {
    let mut rules: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(contrib("prometheus/alerts.yaml")).unwrap(),
    )
    .unwrap();
    for rule in rules["groups"][0]["rules"].as_array_mut().unwrap() {
        rule.as_object_mut().unwrap().remove("annotations");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alerts.json"), rules.to_string()).unwrap();
    let quote = |v: &str| serde_json::to_string(v).unwrap();
    let series: Vec<Value> = scrape
        .iter()
        .filter(|(s, _)| s.labels.get("namespace").map(String::as_str) == Some(ns))
        .map(|(s, v)| {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={}", quote(v)))
                .collect();
            serde_json::json!({
                "series": format!("{}{{{}}}", s.name, labels.join(",")),
                "values": format!("{v}x40"),
            })
        })
        .collect();
    let cases: Vec<Value> = expected
        .iter()
        .map(|(alert, labels)| {
            let mut l: serde_json::Map<String, Value> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect();
            l.insert("namespace".into(), Value::String(ns.into()));
            serde_json::json!({"eval_time": "35m", "alertname": alert, "exp_alerts": [{"exp_labels": l}]})
        })
        .collect();
    let test = serde_json::json!({
        "rule_files": ["alerts.json"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases}],
    });
    std::fs::write(dir.path().join("test.json"), test.to_string()).unwrap();
    let o = Command::new(tools::promtool())
        .args(["test", "rules"])
        .arg(dir.path().join("test.json"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}\n{test:#}", out(&o), err(&o));
}

/// In a Pod, kubectl-gitops connects with its ServiceAccount (kube's in-cluster
/// configuration); outside one, the same variables without the token give a clear error.
#[test]
fn without_a_kubeconfig_in_a_pod_the_service_account_is_used() {
    let home = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args(["metrics", "--once"])
        .env_remove("KUBECONFIG")
        .env("HOME", home.path())
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("error: in-cluster configuration:"),
        "{}",
        err(&o)
    );
}

/// The manifest of contrib/kubernetes applies (the API server validates every object), and
/// its ServiceAccount with the manifest's ClusterRoles reads everything the exporter needs:
/// the exporter run as that ServiceAccount, with the Deployment's own arguments, gives the
/// figures an admin gets. With the read-only ClusterRole alone, drift of a changed object
/// needs the dry-run rights (a 403, said as such), and `--drift-interval 0` is complete. For
/// named namespaces, RoleBindings of the same ClusterRoles are enough.
#[test]
fn the_in_cluster_manifest_grants_what_the_exporter_needs() {
    let c = cluster::cluster();
    let manifest = contrib("kubernetes/metrics-exporter.yaml");
    kubectl(&["apply", "--server-side", "-f", manifest.to_str().unwrap()]);
    let ns = c.fresh_namespace("metrics-rbac");
    let repo = Repo::new();
    repo.write("app/web.yaml", deployment("web", "nginx:1.27"));
    repo.write("app/settings.yaml", configmap("settings", "mode: safe"));
    repo.write(
        "app/svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n    - port: 80\n",
    );
    repo.write(
        "app/creds.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  k: v\n",
    );
    repo.tag("v1");
    ok(sync_app(
        repo.path.to_str().unwrap(),
        "v1",
        &ns,
        &["--wait", "--timeout", "60s"],
    ));
    kubectl(&[
        "patch",
        "configmap",
        "settings",
        "-n",
        &ns,
        "--type",
        "merge",
        "-p",
        r#"{"data":{"mode":"unsafe"}}"#,
    ]);
    // The Deployment's arguments, served once instead of forever.
    let docs: Vec<Value> = std::fs::read_to_string(&manifest)
        .unwrap()
        .split("\n---")
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(args[..3], ["metrics", "--serve", "0.0.0.0:9464"]);
    let sa = "system:serviceaccount:kubectl-gitops:kubectl-gitops-metrics";
    let mut once: Vec<&str> = vec!["metrics", "--once"];
    once.extend(args[3..].iter().map(String::as_str));
    let (admin, admin_scrape) = metrics_once(&["-n", &ns]);
    assert_eq!(admin.status.code(), Some(0), "{}", err(&admin));
    assert_eq!(
        value(
            &admin_scrape,
            "kubectl_gitops_drift_objects",
            &ns,
            &[("kind", "changed")]
        ),
        Some(1.0)
    );
    let as_sa = run(&[&once[..], &["--as", sa]].concat());
    let sa_scrape = parse_scrape(&out(&as_sa));
    for line in err(&as_sa).lines() {
        assert!(!line.contains(&ns), "{}", err(&as_sa));
    }
    assert_eq!(
        scrape_figures(&sa_scrape, &ns),
        scrape_figures(&admin_scrape, &ns)
    );
    assert_eq!(
        revision_info(&sa_scrape, &ns),
        revision_info(&admin_scrape, &ns)
    );
    let as_sa_named = run(&["metrics", "--once", "-n", &ns, "--as", sa]);
    assert_eq!(as_sa_named.status.code(), Some(0), "{}", err(&as_sa_named));

    // Read rights only: drift of the changed ConfigMap takes a dry-run, refused.
    let reader = "kubectl-gitops-metrics-reader";
    let binding = format!("{ns}-reader");
    kubectl(&[
        "create",
        "clusterrolebinding",
        &binding,
        "--clusterrole=kubectl-gitops-metrics",
        &format!("--serviceaccount={ns}:{reader}"),
    ]);
    let reader_user = format!("system:serviceaccount:{ns}:{reader}");
    let o = run(&["metrics", "--once", "-n", &ns, "--as", &reader_user]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!("warning: incomplete scrape: drift of {ns}:"))
            && err(&o).contains("403"),
        "{}",
        err(&o)
    );
    let scrape = parse_scrape(&out(&o));
    assert!(revision_info(&scrape, &ns).is_some());
    assert_eq!(
        value(
            &scrape,
            "kubectl_gitops_health_objects",
            &ns,
            &[("status", "ready")]
        ),
        Some(4.0)
    );
    let o = run(&[
        "metrics",
        "--once",
        "-n",
        &ns,
        "--as",
        &reader_user,
        "--drift-interval",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        value(
            &parse_scrape(&out(&o)),
            "kubectl_gitops_drift_objects",
            &ns,
            &[("kind", "changed")]
        ),
        None
    );
    kubectl(&["delete", "clusterrolebinding", &binding]);

    // Named namespaces need no cluster-wide rights: the same ClusterRoles bound by
    // RoleBindings in the namespace give the same figures (README: "In the cluster").
    let local = "kubectl-gitops-metrics-local";
    for role in ["kubectl-gitops-metrics", "kubectl-gitops-metrics-dry-run"] {
        kubectl(&[
            "create",
            "rolebinding",
            role,
            "-n",
            &ns,
            &format!("--clusterrole={role}"),
            &format!("--serviceaccount={ns}:{local}"),
        ]);
    }
    let o = run(&[
        "metrics",
        "--once",
        "-n",
        &ns,
        "--as",
        &format!("system:serviceaccount:{ns}:{local}"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let local_scrape = parse_scrape(&out(&o));
    assert_eq!(
        scrape_figures(&local_scrape, &ns),
        scrape_figures(&admin_scrape, &ns)
    );
    assert_eq!(
        revision_info(&local_scrape, &ns),
        revision_info(&admin_scrape, &ns)
    );
}
