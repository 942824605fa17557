#![cfg(unix)]
//! `manifest::load_at` against real repositories built with the `git` binary, using the
//! podinfo and microservices-demo corpus.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::manifest::{self, Manifest, ObjectKey};
use shared::git::Repo;
use shared::{Error, ErrorKind};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus")
}

/// kubectl for kustomize tests: `KUBECTL_PATH` (what kubectl sets for plugins) or `kubectl`
/// from PATH. The tests need it (tests/run checks for it); a missing kubectl fails them rather
/// than skipping, so a machine without it cannot pass by testing less.
fn kubectl() -> Option<PathBuf> {
    let candidate = std::env::var_os("KUBECTL_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubectl"));
    let runs = Command::new(&candidate)
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        runs,
        "kubectl is needed for the kustomize tests: install it or set KUBECTL_PATH"
    );
    Some(candidate)
}

struct TestRepo {
    dir: tempfile::TempDir,
}

impl TestRepo {
    fn new() -> TestRepo {
        let repo = TestRepo {
            dir: tempfile::tempdir().unwrap(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self, args: &[&str]) {
        let out = Command::new("git")
            .args(args)
            .current_dir(self.path())
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Test Author")
            .env("GIT_AUTHOR_EMAIL", "author@example.com")
            .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
            .env("GIT_COMMITTER_NAME", "Test Committer")
            .env("GIT_COMMITTER_EMAIL", "committer@example.com")
            .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn symlink(&self, rel: &str, target: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, path).unwrap();
    }

    fn copy_dir(&self, from: &Path, to: &str) {
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let rel = format!("{to}/{}", entry.file_name().to_str().unwrap());
            if entry.file_type().unwrap().is_dir() {
                self.copy_dir(&entry.path(), &rel);
            } else {
                self.write(&rel, &std::fs::read_to_string(entry.path()).unwrap());
            }
        }
    }

    fn commit(&self, message: &str) -> (Repo, gix::ObjectId) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        let repo = Repo::open(self.path()).unwrap();
        let head = repo.resolve_commit("HEAD").unwrap();
        (repo, head)
    }
}

fn keys(manifests: &[Manifest]) -> Vec<String> {
    manifests
        .iter()
        .map(|m| ObjectKey::of(&m.object).to_string())
        .collect()
}

fn load(repo: &Repo, commit: gix::ObjectId, path: &str) -> Result<Vec<Manifest>, Error> {
    let kubectl = kubectl().unwrap_or_else(|| PathBuf::from("kubectl"));
    manifest::load_at(repo, commit, path, &kubectl)
}

fn podinfo_repo() -> TestRepo {
    let t = TestRepo::new();
    t.copy_dir(&corpus().join("podinfo/deploy"), "deploy");
    t
}

#[test]
fn podinfo_overlays_render_with_kustomize() {
    let Some(kubectl) = kubectl() else { return };
    let t = podinfo_repo();
    let (repo, commit) = t.commit("podinfo");

    let dev = manifest::load_at(&repo, commit, "deploy/overlays/dev", &kubectl).unwrap();
    manifest::check_duplicates(&dev).unwrap();
    assert_eq!(dev.len(), 25);
    let keys = keys(&dev);
    for expected in [
        "Namespace/dev",
        "ServiceAccount/dev/database",
        "ServiceAccount/dev/frontend",
        "Service/dev/backend",
        "Service/dev/cache",
        "Deployment.apps/dev/backend",
        "Deployment.apps/dev/frontend",
        "Deployment.apps/dev/cache",
        "Deployment.apps/dev/database-replica",
        "StatefulSet.apps/dev/database-primary",
        "PersistentVolumeClaim/dev/database-primary",
        "CronJob.batch/dev/backup-daily",
        "CronJob.batch/dev/warm-cache",
        "HorizontalPodAutoscaler.autoscaling/dev/frontend",
    ] {
        assert!(
            keys.iter().any(|k| k == expected),
            "{expected} not in {keys:?}"
        );
    }
    // The generated ConfigMap carries kustomize's content hash.
    assert!(
        keys.iter()
            .any(|k| k.starts_with("ConfigMap/dev/redis-config-")),
        "{keys:?}"
    );
    for m in &dev {
        assert_eq!(m.source.file, "kustomize build deploy/overlays/dev");
        assert_eq!(
            m.object["metadata"]["labels"]["app.kubernetes.io/environment"],
            "dev",
            "{}",
            ObjectKey::of(&m.object)
        );
    }
    assert_eq!(dev[0].source.line, 1);
    assert_eq!(dev[1].source.document, 2);

    for env in ["staging", "production"] {
        let objects = load(&repo, commit, &format!("deploy/overlays/{env}")).unwrap();
        assert_eq!(objects.len(), 25, "{env}");
        assert!(keys_contain(
            &objects,
            &format!("Deployment.apps/{env}/backend")
        ));
        assert!(keys_contain(&objects, &format!("Namespace/{env}")));
    }
}

fn keys_contain(manifests: &[Manifest], key: &str) -> bool {
    keys(manifests).iter().any(|k| k == key)
}

#[test]
fn podinfo_plain_directories_load_recursively() {
    let t = podinfo_repo();
    let (repo, commit) = t.commit("podinfo");
    let webapp = load(&repo, commit, "deploy/webapp").unwrap();
    manifest::check_duplicates(&webapp).unwrap();
    let files: Vec<&str> = webapp.iter().map(|m| m.source.file.as_str()).collect();
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(files, sorted, "files are read in path order");
    assert!(files.contains(&"deploy/webapp/common/reconciler-rbac.yaml"));
    assert!(keys_contain(&webapp, "Deployment.apps/webapp/backend"));
}

#[test]
fn microservices_stream_yields_every_object() {
    let t = TestRepo::new();
    let stream = std::fs::read_to_string(
        corpus().join("microservices-demo/release/kubernetes-manifests.yaml"),
    )
    .unwrap();
    t.write("release/kubernetes-manifests.yaml", &stream);
    t.write("release/README.md", "# not a manifest\n");
    let (repo, commit) = t.commit("microservices");

    let objects = load(&repo, commit, "release").unwrap();
    assert_eq!(objects.len(), 35);
    manifest::check_duplicates(&objects).unwrap();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for m in &objects {
        *kinds.entry(ObjectKey::of(&m.object).kind).or_default() += 1;
    }
    assert_eq!(
        kinds,
        BTreeMap::from([
            ("Deployment".to_string(), 12),
            ("Service".to_string(), 12),
            ("ServiceAccount".to_string(), 11),
        ])
    );
    // The stream opens with a licence comment and a `---`, so document 1 starts after it.
    let first = &objects[0];
    assert_eq!(first.source.document, 1);
    assert_eq!(
        stream.lines().nth(first.source.line - 1).unwrap(),
        "apiVersion: apps/v1"
    );
    assert_eq!(objects[34].source.document, 35);
    assert!(keys_contain(&objects, "Deployment.apps/frontend"));

    // A file path loads just that file, and the root loads everything.
    let single = load(&repo, commit, "release/kubernetes-manifests.yaml").unwrap();
    assert_eq!(single.len(), 35);
    assert_eq!(load(&repo, commit, "").unwrap().len(), 35);
}

#[test]
fn directory_with_list_empty_document_json_and_extras() {
    let t = TestRepo::new();
    t.write(
        "env/b/list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: from-list-1}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: from-list-2}\n",
    );
    t.write(
        "env/a.yaml",
        "---\n# only a comment\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n  namespace: app\n---\n",
    );
    t.write(
        "env/c.json",
        r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "app"}, "stringData": {"k": "v"}}"#,
    );
    t.write(
        "env/d.yml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: app\n",
    );
    t.write("env/notes.txt", "not: [valid yaml\n");
    t.write(".github/workflows/ci.yml", "on: push\n");
    t.write("env/.hidden/skip.yaml", "not a manifest\n");
    t.symlink("env/link.yaml", "d.yml");
    let (repo, commit) = t.commit("mixed");

    let objects = load(&repo, commit, "env").unwrap();
    assert_eq!(
        keys(&objects),
        [
            "ServiceAccount/app/sa",
            "ConfigMap/from-list-1",
            "ConfigMap/from-list-2",
            "Secret/app/s",
            "Namespace/app",
        ]
    );
    assert_eq!(objects[0].source.document, 2);
    assert_eq!(objects[0].source.line, 4);
    assert_eq!(objects[1].source.file, "env/b/list.yaml");
    // The root skips dot-directories such as .github.
    assert_eq!(load(&repo, commit, "/env/").unwrap().len(), 5);
    assert_eq!(load(&repo, commit, "").unwrap().len(), 5);
}

#[test]
fn reads_the_commit_not_the_work_tree() {
    let t = TestRepo::new();
    t.write(
        "env/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\n",
    );
    let (_, first) = t.commit("one");
    t.write(
        "env/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: two}\n",
    );
    let (_, second) = t.commit("two");
    t.write(
        "env/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dirty}\n",
    );
    t.write(
        "env/untracked.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: untracked}\n",
    );
    let repo = Repo::open(t.path()).unwrap();
    assert_eq!(keys(&load(&repo, first, "env").unwrap()), ["ConfigMap/one"]);
    assert_eq!(
        keys(&load(&repo, second, "env").unwrap()),
        ["ConfigMap/two"]
    );
}

#[test]
fn many_files_parse_in_path_order() {
    let t = TestRepo::new();
    for i in 0..300 {
        t.write(
            &format!("env/d{}/f{i:03}.yaml", i % 7),
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\n"),
        );
    }
    t.write(
        "env/d3/zz-bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
    );
    t.write("env/d5/zz-bad.yaml", "apiVersion: v1\nkind: [\n");
    let (repo, commit) = t.commit("many");
    // With several bad files the first in path order is reported, whichever thread saw it.
    let e = load(&repo, commit, "env").unwrap_err();
    assert_eq!(
        e.message,
        "env/d3/zz-bad.yaml: document 1 (line 1): missing metadata.name"
    );
    t.git(&["rm", "-q", "env/d3/zz-bad.yaml", "env/d5/zz-bad.yaml"]);
    let (repo, commit) = t.commit("fixed");
    let objects = load(&repo, commit, "env").unwrap();
    assert_eq!(objects.len(), 300);
    let files: Vec<&str> = objects.iter().map(|m| m.source.file.as_str()).collect();
    assert!(files.windows(2).all(|w| w[0] < w[1]));
}

fn load_err(files: &[(&str, &str)], path: &str) -> Error {
    let t = TestRepo::new();
    for (rel, text) in files {
        t.write(rel, text);
    }
    let (repo, commit) = t.commit("case");
    let e = load(&repo, commit, path).expect_err("load should fail");
    assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
    e
}

#[test]
fn bad_yaml_reports_document_line_and_column() {
    let e = load_err(
        &[(
            "env/x.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n   labels: x\n",
        )],
        "env",
    );
    assert!(
        e.message
            .starts_with("env/x.yaml: document 2 (line 9, column "),
        "{e}"
    );
}

#[test]
fn missing_name_is_reported_with_position() {
    let e = load_err(
        &[(
            "env/x.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n---\n\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n",
        )],
        "env",
    );
    assert_eq!(
        e.message,
        "env/x.yaml: document 3 (line 10): missing metadata.name"
    );
}

#[test]
fn duplicates_across_files_name_both() {
    let t = TestRepo::new();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: same, namespace: app}\n";
    t.write("env/a.yaml", cm);
    t.write("env/sub/b.yaml", &format!("---\n{cm}"));
    let (repo, commit) = t.commit("dup");
    let objects = load(&repo, commit, "env").unwrap();
    let e = manifest::check_duplicates(&objects).unwrap_err();
    assert_eq!(
        e.message,
        "ConfigMap/app/same is defined twice: in env/a.yaml document 1 (line 1) and in env/sub/b.yaml document 1 (line 2)"
    );
}

#[test]
fn missing_path_names_path_and_commit() {
    let t = TestRepo::new();
    t.write(
        "env/a.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
    );
    let (repo, commit) = t.commit("one");
    let e = load(&repo, commit, "deploy/prod").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    let short = repo.short(commit);
    assert!(
        e.message.contains("\"deploy/prod\"") && e.message.contains(&short),
        "{e}"
    );
    let e = load(&repo, commit, "env/../env").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
}

#[test]
fn alias_bomb_and_deep_nesting_fail_fast() {
    let mut bomb = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n  a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"];
    for w in names.windows(2) {
        let refs = vec![format!("*{}", w[0]); 9].join(",");
        bomb.push_str(&format!("  {}: &{} [{refs}]\n", w[1], w[1]));
    }
    let started = std::time::Instant::now();
    let e = load_err(&[("env/bomb.yaml", &bomb)], "env");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        e.message.starts_with("env/bomb.yaml: document 1 (line "),
        "{e}"
    );
    assert!(e.hint.is_some());

    let deep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\ndata: {}1{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let e = load_err(&[("env/deep.yaml", &deep)], "env");
    assert!(
        e.message.starts_with("env/deep.yaml: document 1 (line 4"),
        "{e}"
    );
    let deep_block = format!("{}1\n", "- ".repeat(10_000));
    load_err(&[("env/deep.yaml", &deep_block)], "env");
}

#[test]
fn remote_kustomize_resources_are_refused() {
    let base = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n";
    for (entry, field) in [
        (
            "  - https://github.com/stefanprodan/podinfo//kustomize?ref=6.0.0\n",
            "",
        ),
        (
            "  - github.com/stefanprodan/podinfo/kustomize?ref=master\n",
            "",
        ),
        ("  - git@github.com:org/repo.git\n", ""),
        ("  - ../missing\n", "does not exist"),
    ] {
        let e = load_err(
            &[
                ("deploy/dev/kustomization.yaml", &format!("{base}{entry}")),
                (
                    "deploy/dev/cm.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
                ),
            ],
            "deploy/dev",
        );
        assert!(
            e.message.starts_with("deploy/dev/kustomization.yaml: "),
            "{e}"
        );
        assert!(e.message.contains(field), "{e}");
    }
    // A remote reference in a base the overlay includes is found too.
    let e = load_err(
        &[
            (
                "deploy/dev/kustomization.yaml",
                &format!("{base}  - ../base\n"),
            ),
            (
                "deploy/base/kustomization.yaml",
                "resources:\n  - cm.yaml\ncomponents:\n  - https://example.com/components/x.tar.gz\n",
            ),
            (
                "deploy/base/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
            ),
        ],
        "deploy/dev",
    );
    assert!(
        e.message
            .starts_with("deploy/base/kustomization.yaml: components entry"),
        "{e}"
    );
    let e = load_err(
        &[(
            "deploy/dev/kustomization.yaml",
            "helmCharts:\n- name: podinfo\n  repo: https://stefanprodan.github.io/podinfo\n  version: 6.0.0\n",
        )],
        "deploy/dev",
    );
    assert!(e.message.contains("helmCharts"), "{e}");
    let e = load_err(
        &[(
            "deploy/dev/kustomization.yaml",
            "resources: []\npatches:\n- path: https://example.com/patch.yaml\n",
        )],
        "deploy/dev",
    );
    assert!(e.message.contains("patches entry"), "{e}");
}

#[test]
fn kustomize_failures_carry_kubectl_stderr() {
    let Some(_) = kubectl() else { return };
    let e = load_err(
        &[
            (
                "deploy/dev/kustomization.yaml",
                "resources:\n  - cm.yaml\npatches:\n- path: patch.yaml\n",
            ),
            (
                "deploy/dev/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
            ),
        ],
        "deploy/dev",
    );
    assert!(
        e.message
            .starts_with("kustomize build deploy/dev at commit "),
        "{e}"
    );
    assert!(e.message.contains("patch.yaml"), "{e}");
    assert!(
        !e.message.contains("gitops-kustomize-"),
        "temporary path leaked: {e}"
    );
}

#[test]
fn missing_kubectl_is_a_refusal() {
    let t = TestRepo::new();
    t.write("deploy/dev/kustomization.yaml", "resources:\n  - cm.yaml\n");
    t.write(
        "deploy/dev/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    );
    let (repo, commit) = t.commit("k");
    let e = manifest::load_at(
        &repo,
        commit,
        "deploy/dev",
        Path::new("/nonexistent/kubectl"),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused, "{e}");
    assert!(e.hint.is_some());
}

#[test]
fn escaping_symlinks_are_refused() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";
    for (link, target, scope) in [
        ("env/leak.yaml", "/etc/passwd", "the repository"),
        ("env/leak.yaml", "../../outside.yaml", "the repository"),
        ("env/leak.yaml", "../other/cm.yaml", "\"env\""),
        ("env/sub/dir", "../../other", "\"env\""),
    ] {
        let t = TestRepo::new();
        t.write("env/cm.yaml", cm);
        t.write("other/cm.yaml", cm);
        t.symlink(link, target);
        let (repo, commit) = t.commit("link");
        let e = load(&repo, commit, "env").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(
            e.message.starts_with(&format!("{link}: symbolic link")) && e.message.contains(scope),
            "{e}"
        );
    }
}

#[test]
fn kustomize_symlinks_may_point_inside_but_not_out() {
    let Some(_) = kubectl() else { return };
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";
    let t = TestRepo::new();
    t.write("shared/base/cm.yaml", cm);
    t.write(
        "shared/base/kustomization.yaml",
        "resources:\n  - cm.yaml\n",
    );
    t.write("deploy/dev/kustomization.yaml", "resources:\n  - base\n");
    t.symlink("deploy/dev/base", "../../shared/base");
    let (repo, commit) = t.commit("inside");
    assert_eq!(
        keys(&load(&repo, commit, "deploy/dev").unwrap()),
        ["ConfigMap/a"]
    );

    // Each link reads as inside the repository, but `a/..` goes through the link `a -> .`.
    t.symlink("deploy/dev/a", ".");
    t.symlink("dot", ".");
    t.symlink("up", "dot/..");
    let (repo, commit) = t.commit("through a link");
    let e = load(&repo, commit, "deploy/dev").unwrap_err();
    assert!(e.message.starts_with("up: symbolic link"), "{e}");

    let t = TestRepo::new();
    t.write("deploy/dev/kustomization.yaml", "resources:\n  - cm.yaml\n");
    t.symlink("deploy/dev/cm.yaml", "/etc/hostname");
    let (repo, commit) = t.commit("outside");
    let e = load(&repo, commit, "deploy/dev").unwrap_err();
    assert!(
        e.message.starts_with("deploy/dev/cm.yaml: symbolic link"),
        "{e}"
    );
}
