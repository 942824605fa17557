//! Promotion gates end to end (issue 17): a config repository made by `git deploy` from
//! podinfo's overlays, staging synced and rolled out on the workload cluster, `kubectl gitops
//! verify` recording what the cluster shows as a note in git, and `git deploy promote` reading
//! it. Every git state is read back with git itself.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{BIN, cluster, copy_dir, corpus, err, kubectl, out, run_env};
use crate::install_common::git_deploy as git_deploy_bin;
use crate::repo::{ConfigRepo as Repo, isolate};

/// Who writes git objects in these tests (a pipeline's git identity); kubectl-gitops needs one
/// to write the notes commit, as `git notes` does.
const GIT_ID: [(&str, &str); 6] = [
    ("GIT_CONFIG_NOSYSTEM", "1"),
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ("GIT_AUTHOR_NAME", "CI Runner"),
    ("GIT_AUTHOR_EMAIL", "ci@example.com"),
    ("GIT_COMMITTER_NAME", "CI Runner"),
    ("GIT_COMMITTER_EMAIL", "ci@example.com"),
];

/// A config repository with dev, staging and prod on podinfo's overlays (each retargeted to
/// a namespace of this test), `gates` on prod, and one change deployed to dev and promoted
/// to staging, not yet synced.
struct Pipeline {
    repo: Repo,
    staging_ns: String,
    staging_tag: String,
}

impl Pipeline {
    /// `staging_image`: a podinfo tag for staging's overlay (`broken` never becomes ready).
    fn new(name: &str, gates: &str, staging_image: Option<&str>) -> Pipeline {
        let c = cluster::cluster();
        let staging_ns = c.fresh_namespace(&format!("{name}-staging"));
        let prod_ns = c.fresh_namespace(&format!("{name}-prod"));
        let repo = Repo::new();
        copy_dir(&corpus().join("podinfo/deploy"), &repo.path.join("deploy"));
        let images = staging_image
            .map(|t| format!("images:\n- name: ghcr.io/stefanprodan/podinfo\n  newTag: {t}\n"))
            .unwrap_or_default();
        for (env, overlay, ns, extra) in [
            ("dev", "dev", "dev-unused", String::new()),
            ("staging", "staging", staging_ns.as_str(), images),
            ("prod", "production", prod_ns.as_str(), String::new()),
        ] {
            repo.write(
                &format!("deploy/test-{env}/kustomization.yaml"),
                format!("namespace: {ns}\nresources:\n- ../overlays/{overlay}\n{extra}"),
            );
        }
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-q", "-m", "podinfo"]);
        let p = Pipeline {
            repo,
            staging_ns,
            staging_tag: String::new(),
        };
        p.deploy_ok(&[
            "init",
            "--env",
            "dev=env/dev:deploy/test-dev:dev-unused",
            "--env",
            &format!("staging=env/staging:deploy/test-staging:{}", p.staging_ns),
            "--env",
            &format!("prod=env/prod:deploy/test-prod:{prod_ns}"),
        ]);
        let yaml = std::fs::read_to_string(p.repo.path.join("gitops.yaml")).unwrap();
        std::fs::write(
            p.repo.path.join("gitops.yaml"),
            format!("{}\n{gates}", yaml.trim_end()),
        )
        .unwrap();
        p.repo.git(&["commit", "-q", "-am", "gates for prod"]);
        p.next_release("1")
    }

    /// A change on dev, tagged and promoted to staging (not synced); staging_tag is its tag.
    fn next_release(mut self, n: &str) -> Pipeline {
        self.repo.git(&["checkout", "-q", "env/dev"]);
        self.repo
            .write("deploy/test-dev/release.txt", format!("release {n}\n"));
        self.repo.git(&["add", "-A"]);
        self.repo
            .git(&["commit", "-q", "-m", &format!("release {n}")]);
        self.repo.git(&["checkout", "-q", "main"]);
        self.deploy_ok(&["tag", "dev"]);
        let promoted = self.deploy_ok(&["promote", "dev", "--yes"]);
        self.staging_tag = out(&promoted).trim().to_string();
        assert!(self.staging_tag.starts_with("deploy/staging/"));
        self
    }

    fn deploy(&self, args: &[&str]) -> Output {
        self.deploy_in(&self.repo.path, args)
    }

    fn deploy_in(&self, dir: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(git_deploy_bin());
        cmd.current_dir(dir).args(args);
        isolate(&mut cmd, self.repo.tmp.path());
        cmd.output().unwrap()
    }

    fn deploy_ok(&self, args: &[&str]) -> Output {
        let o = self.deploy(args);
        assert!(o.status.success(), "git deploy {args:?}: {}", err(&o));
        o
    }

    /// `kubectl gitops <args> --repo <dir>` with a git identity.
    fn gitops_in(&self, dir: &Path, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--repo", dir.to_str().unwrap()]);
        run_env(&all, &GIT_ID)
    }

    fn gitops(&self, args: &[&str]) -> Output {
        self.gitops_in(&self.repo.path, args)
    }

    fn sync_staging(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "sync",
            "--env",
            "staging",
            "--yes",
            "--wait",
            "--timeout",
            "120s",
        ];
        args.extend_from_slice(extra);
        self.gitops(&args)
    }

    /// Every ref with its value: compared before and after to prove nothing was written.
    fn refs(&self) -> String {
        self.repo
            .git(&["for-each-ref", "--format=%(refname) %(objectname)"])
    }

    /// The tag object of a tag, which notes are attached to.
    fn tag_object(&self, tag: &str) -> String {
        self.repo.git(&["rev-parse", &format!("refs/tags/{tag}")])
    }

    fn note(&self, dir: &Path, tag: &str) -> String {
        git_in(
            dir,
            &["notes", "--ref=deploy", "show", &self.tag_object(tag)],
        )
    }
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir).args(args);
    isolate(&mut cmd, dir);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "git {args:?}: {}", err(&o));
    out(&o).trim_end().to_string()
}

/// The value of `key` in each verification paragraph of a note.
fn trailer_values(note: &str, key: &str) -> Vec<String> {
    note.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}: ")))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_deploy_verified_healthy_in_staging_opens_the_gate_to_prod() {
    let p = Pipeline::new("gate", "    gates:\n      verified: true\n", None);
    let o = p.sync_staging(&[]);
    assert!(o.status.success(), "{}", err(&o));

    // Not verified yet: refused, every gate listed, no ref changed.
    let before = p.refs();
    let o = p.deploy(&["promote", "staging", "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("verified: no — run kubectl gitops verify --env staging"),
        "{}",
        err(&o)
    );
    assert_eq!(p.refs(), before);

    let o = p.gitops(&["verify", "--env", "staging"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "verified staging: note on {} in refs/notes/deploy",
            p.staging_tag
        )),
        "{}",
        err(&o)
    );
    // git reads the note on the deploy's tag object.
    let note = p.note(&p.repo.path, &p.staging_tag);
    assert_eq!(trailer_values(&note, "Verified-Env"), ["staging"]);
    assert_eq!(
        trailer_values(&note, "Verified-Namespace"),
        [p.staging_ns.as_str()]
    );
    assert_eq!(trailer_values(&note, "Verified-Revision"), ["1"]);
    let server = kubectl(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    assert_eq!(trailer_values(&note, "Verified-Cluster"), [server.trim()]);
    // The user the API server authenticated, as `kubectl auth whoami` reports it.
    let whoami = kubectl(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(trailer_values(&note, "Verified-By"), [whoami.trim()]);
    let at: jiff::Timestamp = trailer_values(&note, "Verified-At")[0].parse().unwrap();
    let age = jiff::Timestamp::now().duration_since(at);
    assert!(
        age >= jiff::SignedDuration::ZERO && age < jiff::SignedDuration::from_mins(5),
        "{at}"
    );
    assert!(trailer_values(&note, "Verified-At")[0].ends_with('Z'));
    // The same verification is on the commit, where `git log --notes=deploy` shows it.
    let log = p.repo.git(&[
        "log",
        "-1",
        "--notes=deploy",
        "--format=%N",
        &format!("{}^{{commit}}", p.staging_tag),
    ]);
    assert_eq!(trailer_values(&log, "Verified-Env"), ["staging"], "{log}");
    assert_eq!(trailer_values(&log, "Verified-Revision"), ["1"], "{log}");
    // The notes commit is the CI's git identity.
    assert_eq!(
        p.repo
            .git(&["log", "-1", "--format=%an <%ae>", "refs/notes/deploy"]),
        "CI Runner <ci@example.com>"
    );

    let o = p.deploy(&["promote", "staging", "--yes"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("verified: yes — "), "{}", err(&o));
    assert_eq!(
        p.repo.git(&["rev-parse", "env/prod"]),
        p.repo.git(&["rev-parse", "env/staging"])
    );
    let show = out(&p.deploy_ok(&["show", &p.staging_tag]));
    assert!(
        show.contains(&format!(
            "staging (namespace {}) on {}",
            p.staging_ns,
            server.trim()
        )),
        "{show}"
    );
}

#[test]
fn verify_of_an_unhealthy_namespace_exits_1_and_writes_nothing() {
    let p = Pipeline::new(
        "broken",
        "    gates:\n      verified: true\n",
        Some("broken"),
    );
    // The rollout fails (ImagePullBackOff), and --wait says so.
    let o = p.sync_staging(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let before = p.refs();
    let objects = p.repo.git(&["count-objects", "-v"]);
    let o = p.gitops(&["verify", "--env", "staging"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains(&format!(
            "{} (staging) is not verified in namespace {}; nothing was written",
            p.staging_tag, p.staging_ns
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "failed: Deployment.apps/{}/backend: ImagePullBackOff",
            p.staging_ns
        )),
        "{e}"
    );
    assert_eq!(p.refs(), before);
    assert!(!before.contains("refs/notes/deploy"));
    assert_eq!(p.repo.git(&["count-objects", "-v"]), objects);
    // -o json names the same reasons for scripts.
    let o = p.gitops(&["verify", "--env", "staging", "-o", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["verified"], false);
    assert!(doc["problems"].as_array().unwrap().len() >= 2, "{doc}");
    p.deploy(&["promote", "staging", "--yes"]);
    assert_eq!(p.refs(), before);
}

#[test]
fn verify_refuses_drift_and_a_namespace_behind_the_latest_deploy() {
    let p = Pipeline::new("drift", "    gates:\n      verified: true\n", None);
    assert!(p.sync_staging(&[]).status.success());
    let before = p.refs();
    // A verification of another namespace would not count for staging's gates.
    let o = p.gitops(&["verify", "--env", "staging", "-n", "default"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "-n default: environment staging runs in namespace {}",
            p.staging_ns
        )),
        "{}",
        err(&o)
    );
    kubectl(&["delete", "service", "backend", "-n", &p.staging_ns]);
    let o = p.gitops(&["verify", "--env", "staging"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!("missing: Service/{}/backend", p.staging_ns)),
        "{}",
        err(&o)
    );
    // A newer deploy of staging that was not synced: revision 1 is not what staging deploys.
    let older = p.staging_tag.clone();
    let p = p.next_release("2");
    let before_release = p.refs();
    assert_ne!(before, before_release);
    let o = p.gitops(&["verify", "--env", "staging"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "revision 1 runs {older}, not staging's latest deploy {}",
            p.staging_tag
        )),
        "{}",
        err(&o)
    );
    assert_eq!(p.refs(), before_release);
    // Synced again (the Service comes back), it verifies.
    assert!(p.sync_staging(&[]).status.success());
    let o = p.gitops(&["verify", "--env", "staging", "-o", "json"]);
    assert!(o.status.success(), "{}", err(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["verified"], true);
    assert_eq!(doc["verification"]["revision"], 2);
    assert_eq!(doc["tag"], p.staging_tag.as_str());
}

#[test]
fn an_unsoaked_deploy_waits_with_the_time_left_unless_overridden() {
    let p = Pipeline::new(
        "soak",
        "    gates:\n      verified: true\n      soak: 1h\n",
        None,
    );
    // sync --wait --verify records the verification once the rollout is ready.
    let o = p.sync_staging(&["--verify"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("verified staging: note on"), "{}", err(&o));
    assert_eq!(
        trailer_values(&p.note(&p.repo.path, &p.staging_tag), "Verified-Env"),
        ["staging"]
    );

    let before = p.refs();
    let o = p.deploy(&["promote", "staging", "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let e = err(&o);
    assert!(e.contains("verified: yes — "), "{e}");
    let soak = e
        .lines()
        .find(|l| l.trim_start().starts_with("soak: "))
        .unwrap();
    assert!(
        soak.contains(" of 1h, ready at ") && soak.ends_with(" UTC"),
        "{e}"
    );
    assert_eq!(p.refs(), before);

    let reason = "INC-7: security fix, approved by the on-call";
    let o = p.deploy(&["promote", "staging", "--yes", "--override-gates", reason]);
    assert!(o.status.success(), "{}", err(&o));
    let prod_tag = out(&o).trim().to_string();
    let trailers = p.repo.git(&[
        "for-each-ref",
        "--format=%(trailers)",
        &format!("refs/tags/{prod_tag}"),
    ]);
    assert!(
        trailers.contains(&format!("Deploy-Gate-Override: {reason}")),
        "{trailers}"
    );
}

/// `kubectl gitops verify` started in the background (to be paused before it writes).
fn spawn_verify(dir: &Path, extra: &[&str], pause: &Path) -> Child {
    let c = cluster::cluster();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "verify",
        "--env",
        "staging",
        "--repo",
        dir.to_str().unwrap(),
    ])
    .args(extra)
    .arg("--kubeconfig")
    .arg(c.kubeconfig())
    .env_remove("KUBECONFIG")
    .env("NO_COLOR", "1")
    .env(shared::git::plan::TEST_PAUSE_ENV, pause)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in GIT_ID {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn wait_until_paused(pause: &Path) {
    let waiting = pause.with_extension("waiting");
    let start = Instant::now();
    while !waiting.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "verify never reached its write"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn concurrent_verifications_keep_both_notes_and_the_loser_exits_3() {
    let p = Pipeline::new("race", "    gates:\n      verified: true\n", None);
    assert!(p.sync_staging(&[]).status.success());
    let remote = p.repo.tmp.path().join("remote.git");
    p.repo.git(&[
        "init",
        "-q",
        "--bare",
        "-b",
        "main",
        remote.to_str().unwrap(),
    ]);
    p.repo
        .git(&["remote", "add", "origin", remote.to_str().unwrap()]);
    p.repo.git(&["push", "-q", "origin", "--all"]);
    p.repo.git(&["push", "-q", "origin", "--tags"]);
    // A second pipeline runner with its own clone.
    let other = p.repo.tmp.path().join("other");
    git_in(
        p.repo.tmp.path(),
        &[
            "clone",
            "-q",
            remote.to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    );

    // The first runner is paused between its plan and its write; the second one pushes.
    let pause = p.repo.tmp.path().join("pause");
    let first = spawn_verify(&p.repo.path, &["--push"], &pause);
    wait_until_paused(&pause);
    let o = p.gitops_in(&other, &["verify", "--env", "staging", "--push"]);
    assert!(o.status.success(), "{}", err(&o));
    std::fs::write(&pause, "").unwrap();
    let o = first.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    let fetch = "git fetch origin refs/notes/deploy:refs/notes/deploy";
    assert!(err(&o).contains(fetch), "{}", err(&o));
    assert!(
        !p.refs().contains("refs/notes/deploy"),
        "the loser wrote nothing locally"
    );
    // What the message says, then the retry appends to the winner's note.
    p.repo.git(&[
        "fetch",
        "-q",
        "origin",
        "refs/notes/deploy:refs/notes/deploy",
    ]);
    let o = p.gitops(&["verify", "--env", "staging", "--push"]);
    assert!(o.status.success(), "{}", err(&o));
    let on_remote = p.note(&remote, &p.staging_tag);
    assert_eq!(
        trailer_values(&on_remote, "Verified-Env"),
        ["staging", "staging"],
        "{on_remote}"
    );
    assert_eq!(p.note(&p.repo.path, &p.staging_tag), on_remote);

    // Without a push, two runs in one clone race on the local compare-and-swap.
    let pause = p.repo.tmp.path().join("pause-local");
    let first = spawn_verify(&p.repo.path, &[], &pause);
    wait_until_paused(&pause);
    assert!(p.gitops(&["verify", "--env", "staging"]).status.success());
    std::fs::write(&pause, "").unwrap();
    let o = first.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(
        err(&o).contains("refs/notes/deploy changed while this command ran")
            && err(&o).contains("another note (a verification) was written first: retry"),
        "{}",
        err(&o)
    );
    let local = p.note(&p.repo.path, &p.staging_tag);
    assert_eq!(trailer_values(&local, "Verified-Env").len(), 3, "{local}");
}
