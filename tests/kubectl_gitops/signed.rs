//! Signed deploys (issue 16): a namespace's trust policy against real keys made here
//! (ssh-keygen, `gpg --quick-gen-key`), tags and commits signed by the real git, on the
//! workload cluster. Every refusal is exit 1, one error naming the tag and the reason, and no
//! resourceVersion in the namespace changes.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

const DEPLOYER: &str = "ci-deployer";

/// A Deployment, its Service and a ConfigMap whose `mode` differs per version, so every
/// refused tag would have changed the namespace.
fn app(repo: &Repo, mode: &str) {
    repo.write(
        "app/settings.yaml",
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: {mode}\n"
        ),
    );
    repo.write(
        "app/web.yaml",
        format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
      annotations: {{mode: {mode}}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports:
  - port: 80
    targetPort: 8080
"#
        ),
    );
}

/// git with extra environment (GNUPGHOME), isolated as every test git is.
fn git_env(repo: &Repo, env: &[(&str, &Path)], args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    cmd.current_dir(&repo.path).args(args);
    repo::isolate(&mut cmd, repo.tmp.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "git {args:?}: {}", err(&o));
    out(&o).trim().to_string()
}

fn commit(repo: &Repo, message: &str) {
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "--allow-empty", "-m", message]);
}

#[path = "../common/ssh_key.rs"]
mod ssh_key_file;
use ssh_key_file::SshKey;

fn ssh_key(repo: &Repo, name: &str) -> SshKey {
    ssh_key_file::make(repo.tmp.path(), name)
}

fn ssh_signing(key: &SshKey) -> [String; 4] {
    [
        "-c".into(),
        "gpg.format=ssh".into(),
        "-c".into(),
        format!("user.signingKey={}", key.private.display()),
    ]
}

/// `git tag -s` with an SSH key.
fn ssh_tag(repo: &Repo, key: &SshKey, name: &str) {
    let mut args: Vec<String> = ssh_signing(key).into();
    args.extend(["tag", "-s", "-m", &format!("release {name}"), name].map(String::from));
    repo.git(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// The allowed_signers file trusting `key` for `principal`.
fn allowed_signers(repo: &Repo, principal: &str, key: &SshKey) -> PathBuf {
    let path = repo.tmp.path().join("allowed_signers");
    std::fs::write(&path, format!("{principal} {}\n", key.public)).unwrap();
    path
}

/// Re-writes tag `name` after it was signed (one word of its message changed, the signature
/// kept) and moves the ref to the new object.
fn tamper(repo: &Repo, name: &str) {
    use std::io::Write as _;
    let raw = repo.git(&["cat-file", "tag", name]) + "\n";
    let forged = raw.replacen("release ", "re1ease ", 1);
    assert_ne!(raw, forged);
    let mut cmd = Command::new("git");
    cmd.current_dir(&repo.path)
        .args(["hash-object", "-t", "tag", "-w", "--stdin"])
        .stdout(std::process::Stdio::piped());
    repo::isolate(&mut cmd, repo.tmp.path());
    // isolate() closes stdin; the object goes in through it.
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(forged.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    let id = out(&o).trim().to_string();
    repo.git(&["update-ref", &format!("refs/tags/{name}"), &id]);
}

fn trust(ns: &str, args: &[&str]) -> Output {
    let mut a = vec!["trust"];
    a.extend_from_slice(args);
    a.extend(["-n", ns]);
    run(&a)
}

/// Every object a sync could write in `ns` with its resourceVersion: the objects of the tests'
/// manifests, revision records and the ApplySet parent (Secrets), and the sync Lease.
fn written(ns: &str) -> Vec<String> {
    let mut v = snapshot(ns);
    v.extend(versions(ns, "leases"));
    v
}

/// Exit 1, one error naming the tag, the reason and what to do, and nothing in the namespace
/// changed (no object, no record, no Lease).
fn assert_refused(repo: &str, tag: &str, ns: &str, reason: &str, extra: &[&str]) {
    let before = written(ns);
    let o = sync_app(repo, tag, ns, extra);
    assert_eq!(o.status.code(), Some(1), "{tag}: {}", err(&o));
    let e = err(&o);
    assert!(
        e.contains(&format!("error: tag {tag}: {reason}")),
        "{tag}: expected {reason:?} in:\n{e}"
    );
    assert!(
        e.contains(&format!(
            "namespace {ns}'s trust policy refuses it, nothing was written"
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "with a key the policy lists (`kubectl gitops trust show -n {ns}`)"
        )),
        "{e}"
    );
    assert_eq!(e.matches("error:").count(), 1, "{e}");
    assert_eq!(written(ns), before, "{tag}: a refused sync wrote nothing");
}

fn history_json(ns: &str) -> Value {
    serde_json::from_str(&out(&ok(run(&["history", "-n", ns, "-o", "json"])))).unwrap()
}

fn newest_signature(ns: &str) -> Value {
    history_json(ns)["revisions"][0]["signature"].clone()
}

#[test]
fn ssh_policy_syncs_what_its_key_signed_and_refuses_everything_else() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("signed-ssh");
    let repo = Repo::new();
    let r = repo.path.to_str().unwrap();
    let alice = ssh_key(&repo, "alice");
    let mallory = ssh_key(&repo, "mallory");
    let allowed = allowed_signers(&repo, "alice@example.com", &alice);

    let o = ok(trust(
        &ns,
        &["set", "--ssh-allowed-signers", allowed.to_str().unwrap()],
    ));
    assert!(
        out(&o).contains(&format!("alice@example.com ED25519 {}", alice.fingerprint)),
        "{}",
        out(&o)
    );
    let shown: Value =
        serde_json::from_str(&out(&ok(trust(&ns, &["show", "-o", "json"])))).unwrap();
    assert_eq!(shown["policy"]["mode"], "tag");
    assert_eq!(
        shown["policy"]["ssh_signers"][0]["fingerprint"],
        alice.fingerprint.as_str()
    );

    app(&repo, "v1");
    commit(&repo, "v1");
    ssh_tag(&repo, &alice, "v1");
    let o = ok(sync_app(r, "v1", &ns, &[]));
    assert!(err(&o).contains("synced"), "{}", err(&o));
    let signature = newest_signature(&ns);
    assert_eq!(signature["status"], "verified");
    assert_eq!(signature["mode"], "tag");
    assert_eq!(signature["signers"][0]["subject"], "tag");
    assert_eq!(signature["signers"][0]["identity"], "alice@example.com");
    assert_eq!(signature["signers"][0]["key"]["format"], "ssh");
    assert_eq!(signature["signers"][0]["key"]["type"], "ED25519");
    assert_eq!(
        signature["signers"][0]["key"]["fingerprint"],
        alice.fingerprint.as_str()
    );
    let table = out(&ok(run(&["history", "-n", &ns])));
    assert!(table.contains("SIGNED BY"), "{table}");
    assert!(table.contains("alice@example.com"), "{table}");
    let status = out(&ok(run(&["status", "-n", &ns])));
    assert!(
        status.contains(&format!(
            "signature: verified (mode tag): tag signed by alice@example.com (SSH ED25519 key {})",
            alice.fingerprint
        )),
        "{status}"
    );
    assert!(!status.contains("kubectl-gitops-trust"), "{status}");
    let status: Value =
        serde_json::from_str(&out(&ok(run(&["status", "-n", &ns, "-o", "json"])))).unwrap();
    assert_eq!(status["revision"]["signature"]["status"], "verified");

    // Each a different change, each refused before any write.
    app(&repo, "v2");
    commit(&repo, "v2");
    repo.git(&["tag", "-a", "-m", "release unsigned", "v2-unsigned"]);
    assert_refused(r, "v2-unsigned", &ns, "not signed;", &[]);
    repo.git(&["tag", "v2-lightweight"]);
    assert_refused(
        r,
        "v2-lightweight",
        &ns,
        "not signed: a lightweight tag, which has no tag object to sign",
        &[],
    );
    ssh_tag(&repo, &mallory, "v2-mallory");
    assert_refused(
        r,
        "v2-mallory",
        &ns,
        &format!(
            "signed by an unknown key (SSH ED25519 key {})",
            mallory.fingerprint
        ),
        &[],
    );
    ssh_tag(&repo, &alice, "v2-rewritten");
    tamper(&repo, "v2-rewritten");
    assert_refused(
        r,
        "v2-rewritten",
        &ns,
        &format!("bad signature from ED25519 key {}", alice.fingerprint),
        &[],
    );
    // Listed keys the policy restricts: carol's only before 2020 (valid-before, judged at the
    // tagger date as git judges it), erin's only for files (namespaces="file", not "git").
    let carol = ssh_key(&repo, "carol");
    let erin = ssh_key(&repo, "erin");
    let restricted = repo.tmp.path().join("allowed_signers_restricted");
    std::fs::write(
        &restricted,
        format!(
            "alice@example.com {}\ncarol@example.com valid-before=\"20200101\" {}\n\
             erin@example.com namespaces=\"file\" {}\n",
            alice.public, carol.public, erin.public
        ),
    )
    .unwrap();
    ok(trust(
        &ns,
        &["set", "--ssh-allowed-signers", restricted.to_str().unwrap()],
    ));
    ssh_tag(&repo, &carol, "v2-carol");
    assert_refused(
        r,
        "v2-carol",
        &ns,
        &format!(
            "signed by carol@example.com with an expired ED25519 key {}",
            carol.fingerprint
        ),
        &[],
    );
    ssh_tag(&repo, &erin, "v2-erin");
    assert_refused(
        r,
        "v2-erin",
        &ns,
        &format!(
            "signed by erin@example.com with ED25519 key {}, which is not allowed",
            erin.fingerprint
        ),
        &[],
    );
    // --dry-run is refused the same way: it shows what sync would do.
    assert_refused(r, "v2-unsigned", &ns, "not signed;", &["--dry-run"]);

    // diff says the same as a warning line, and still diffs (exit 1: differences).
    let o = diff_app(r, "v2-mallory", &ns, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "warning: tag v2-mallory: signed by an unknown key (SSH ED25519 key {}) (namespace {ns} has a trust policy: sync would refuse this tag)",
            mallory.fingerprint
        )),
        "{}",
        err(&o)
    );
    assert!(out(&o).contains("+  mode: v2"), "{}", out(&o));
    let o = diff_app(r, "v2-mallory", &ns, &["-o", "json"]);
    let plan: Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(plan["tag"], "v2-mallory");
    assert_eq!(plan["signature"]["status"], "unverified");

    // --insecure-skip-signature applies it, loudly, and the record says so.
    let o = ok(sync_app(
        r,
        "v2-unsigned",
        &ns,
        &["--insecure-skip-signature"],
    ));
    assert!(
        err(&o).contains(
            "warning: --insecure-skip-signature: the signature of tag v2-unsigned is NOT checked"
        ),
        "{}",
        err(&o)
    );
    assert_eq!(
        newest_signature(&ns),
        serde_json::json!({"status": "skipped"})
    );
    assert_eq!(
        kubectl(&[
            "get",
            "cm",
            "settings",
            "-n",
            &ns,
            "-o",
            "jsonpath={.data.mode}"
        ]),
        "v2"
    );
}

/// A gpg home of the test's own; its agent is stopped when dropped.
struct GnuPg {
    home: PathBuf,
}

impl Drop for GnuPg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--kill", "all"])
            .output();
    }
}

impl GnuPg {
    fn new(repo: &Repo) -> GnuPg {
        let home = repo.tmp.path().join("gnupg");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        GnuPg { home }
    }

    fn gpg(&self, args: &[&str]) -> Output {
        let o = Command::new("gpg")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--batch", "--no-tty"])
            .args(args)
            .output()
            .expect("gpg is needed (Debian package gnupg)");
        assert!(o.status.success(), "gpg {args:?}: {}", err(&o));
        o
    }

    /// A new ed25519 signing key; its fingerprint.
    fn key(&self, uid: &str) -> String {
        self.gpg(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            "ed25519",
            "sign",
            "never",
        ]);
        out(&self.gpg(&["--with-colons", "--list-keys", uid]))
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .unwrap()
            .split(':')
            .nth(9)
            .unwrap()
            .to_string()
    }

    fn export(&self, repo: &Repo, uid: &str) -> PathBuf {
        let path = repo.tmp.path().join("keys.asc");
        std::fs::write(&path, self.gpg(&["--armor", "--export", uid]).stdout).unwrap();
        path
    }

    fn tag(&self, repo: &Repo, fingerprint: &str, name: &str) {
        git_env(
            repo,
            &[("GNUPGHOME", &self.home)],
            &[
                "-c",
                &format!("user.signingKey={fingerprint}"),
                "tag",
                "-s",
                "-m",
                &format!("release {name}"),
                name,
            ],
        );
    }
}

#[test]
fn gpg_policy_syncs_what_its_key_signed_and_refuses_everything_else() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("signed-gpg");
    let repo = Repo::new();
    let r = repo.path.to_str().unwrap();
    let gnupg = GnuPg::new(&repo);
    let ann = gnupg.key("Ann Operator <ann@example.com>");
    let mallory = gnupg.key("Mallory <mallory@example.com>");
    let keys = gnupg.export(&repo, "ann@example.com");
    let o = ok(trust(&ns, &["set", "--gpg-keys", keys.to_str().unwrap()]));
    assert!(out(&o).contains(&ann), "{}", out(&o));
    assert!(!out(&o).contains(&mallory), "{}", out(&o));

    app(&repo, "v1");
    commit(&repo, "v1");
    gnupg.tag(&repo, &ann, "v1");
    ok(sync_app(r, "v1", &ns, &[]));
    let signature = newest_signature(&ns);
    assert_eq!(signature["status"], "verified");
    assert_eq!(
        signature["signers"][0]["identity"],
        "Ann Operator <ann@example.com>"
    );
    assert_eq!(signature["signers"][0]["key"]["format"], "openpgp");
    assert_eq!(signature["signers"][0]["key"]["fingerprint"], ann.as_str());

    app(&repo, "v2");
    commit(&repo, "v2");
    repo.git(&["tag", "-a", "-m", "release unsigned", "v2-unsigned"]);
    assert_refused(r, "v2-unsigned", &ns, "not signed;", &[]);
    repo.git(&["tag", "v2-lightweight"]);
    assert_refused(
        r,
        "v2-lightweight",
        &ns,
        "not signed: a lightweight tag",
        &[],
    );
    gnupg.tag(&repo, &mallory, "v2-mallory");
    assert_refused(
        r,
        "v2-mallory",
        &ns,
        "signed by an unknown key (OpenPGP",
        &[],
    );
    // The policy's keys only, never the caller's keyring: with GNUPGHOME at the keyring that
    // holds (and ultimately trusts) mallory's key, her tag is still refused.
    let before = written(&ns);
    let o = run_env(
        &[
            "sync",
            "--repo",
            r,
            "--tag",
            "v2-mallory",
            "--path",
            "app",
            "-n",
            &ns,
            "--yes",
        ],
        &[("GNUPGHOME", gnupg.home.to_str().unwrap())],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("error: tag v2-mallory: signed by an unknown key (OpenPGP"),
        "{}",
        err(&o)
    );
    assert_eq!(written(&ns), before);
    gnupg.tag(&repo, &ann, "v2-rewritten");
    tamper(&repo, "v2-rewritten");
    assert_refused(r, "v2-rewritten", &ns, "bad signature", &[]);
    gnupg.tag(&repo, &ann, "v2");
    ok(sync_app(r, "v2", &ns, &[]));
    assert_eq!(
        kubectl(&[
            "get",
            "cm",
            "settings",
            "-n",
            &ns,
            "-o",
            "jsonpath={.data.mode}"
        ]),
        "v2"
    );
}

#[test]
fn commit_mode_needs_a_signed_commit_whatever_the_tag() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("signed-commit");
    let repo = Repo::new();
    let r = repo.path.to_str().unwrap();
    let alice = ssh_key(&repo, "alice");
    let allowed = allowed_signers(&repo, "alice@example.com", &alice);
    ok(trust(
        &ns,
        &[
            "set",
            "--ssh-allowed-signers",
            allowed.to_str().unwrap(),
            "--mode",
            "commit",
        ],
    ));

    app(&repo, "v1");
    repo.git(&["add", "-A"]);
    let mut args: Vec<String> = ssh_signing(&alice).into();
    args.extend(["commit", "-q", "-S", "-m", "v1"].map(String::from));
    repo.git(&args.iter().map(String::as_str).collect::<Vec<_>>());
    repo.git(&["tag", "-a", "-m", "release v1", "v1"]);
    ok(sync_app(r, "v1", &ns, &[]));
    let signature = newest_signature(&ns);
    assert_eq!(signature["mode"], "commit");
    assert_eq!(signature["signers"][0]["subject"], "commit");
    assert_eq!(signature["signers"][0]["identity"], "alice@example.com");
    // A lightweight tag on a signed commit is enough in this mode.
    repo.git(&["tag", "v1-lightweight"]);
    ok(sync_app(r, "v1-lightweight", &ns, &[]));

    // A signed tag on an unsigned commit is not.
    app(&repo, "v2");
    commit(&repo, "v2");
    ssh_tag(&repo, &alice, "v2");
    let short = repo.git(&["rev-parse", "--short=7", "v2^{commit}"]);
    let before = snapshot(&ns);
    let o = sync_app(r, "v2", &ns, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!("error: commit {short} (tag v2): not signed")),
        "{}",
        err(&o)
    );
    assert_eq!(snapshot(&ns), before);
}

#[test]
fn revert_follows_what_each_revision_recorded_and_clear_lifts_the_policy() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("signed-revert");
    let repo = Repo::new();
    let r = repo.path.to_str().unwrap();
    let alice = ssh_key(&repo, "alice");
    let allowed = allowed_signers(&repo, "alice@example.com", &alice);

    // Revision 1 under no policy.
    app(&repo, "v1");
    commit(&repo, "v1");
    repo.git(&["tag", "-a", "-m", "release v1", "v1"]);
    ok(sync_app(r, "v1", &ns, &[]));
    assert_eq!(
        newest_signature(&ns),
        serde_json::json!({"status": "no-policy"})
    );

    ok(trust(
        &ns,
        &["set", "--ssh-allowed-signers", allowed.to_str().unwrap()],
    ));
    // Revision 2: signed, verified.
    app(&repo, "v2");
    commit(&repo, "v2");
    ssh_tag(&repo, &alice, "v2");
    ok(sync_app(r, "v2", &ns, &[]));

    // Revision 1 was never verified: its record cannot stand in for a signature now.
    let before = snapshot(&ns);
    let o = run(&["revert", "-n", &ns, "--to-revision", "1", "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(
            "error: revision 1 (tag v1): it was synced while the namespace had no trust policy"
        ),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("--to-tag v1"), "{}", err(&o));
    assert_eq!(snapshot(&ns), before);
    // --to-tag checks the tag now: v1 is not signed.
    let o = run(&[
        "revert", "-n", &ns, "--to-tag", "v1", "-C", r, "--path", "app", "--yes",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("error: tag v1: not signed;"),
        "{}",
        err(&o)
    );
    assert_eq!(snapshot(&ns), before);
    // Skipping is possible, loud and recorded.
    let o = ok(run(&[
        "revert",
        "-n",
        &ns,
        "--to-revision",
        "1",
        "--yes",
        "--insecure-skip-signature",
    ]));
    assert!(
        err(&o).contains(
            "--insecure-skip-signature: the signature of revision 1 (tag v1) is NOT checked"
        ),
        "{}",
        err(&o)
    );
    assert_eq!(
        newest_signature(&ns),
        serde_json::json!({"status": "skipped"})
    );
    // Revision 2 was verified when synced, by a key the policy still lists: allowed, and the
    // revert records that verification.
    ok(run(&["revert", "-n", &ns, "--to-revision", "2", "--yes"]));
    let newest = &history_json(&ns)["revisions"][0];
    assert_eq!(newest["reverted_to"], 2);
    assert_eq!(newest["signature"]["status"], "verified");
    assert_eq!(
        newest["signature"]["signers"][0]["identity"],
        "alice@example.com"
    );
    // Once alice's key leaves the policy, what she signed is no longer enough.
    let bob = ssh_key(&repo, "bob");
    let only_bob = allowed_signers(&repo, "bob@example.com", &bob);
    ok(trust(
        &ns,
        &["set", "--ssh-allowed-signers", only_bob.to_str().unwrap()],
    ));
    let before = snapshot(&ns);
    let o = run(&["revert", "-n", &ns, "--to-revision", "2", "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("whose key the policy no longer lists"),
        "{}",
        err(&o)
    );
    assert_eq!(snapshot(&ns), before);

    // trust clear removes the requirement.
    let o = ok(trust(&ns, &["clear"]));
    assert!(err(&o).contains("removed the trust policy"), "{}", err(&o));
    let o = ok(trust(&ns, &["show"]));
    assert!(out(&o).contains("has no trust policy"), "{}", out(&o));
    app(&repo, "v3");
    commit(&repo, "v3");
    repo.git(&["tag", "-a", "-m", "release v3", "v3-unsigned"]);
    ok(sync_app(r, "v3-unsigned", &ns, &[]));
    assert_eq!(
        newest_signature(&ns),
        serde_json::json!({"status": "no-policy"})
    );
    let o = ok(trust(&ns, &["clear"]));
    assert!(err(&o).contains("nothing to clear"), "{}", err(&o));
}

#[test]
fn a_policy_that_does_not_parse_is_exit_2_and_nothing_is_written() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("signed-broken");
    let repo = Repo::new();
    let r = repo.path.to_str().unwrap();
    app(&repo, "v1");
    commit(&repo, "v1");
    repo.git(&["tag", "-a", "-m", "release v1", "v1"]);
    kubectl(&[
        "create",
        "configmap",
        "kubectl-gitops-trust",
        "-n",
        &ns,
        "--from-literal=mode=HEAD",
        "--from-literal=allowed_signers=alice@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPYRJ08yQd0UL8CY053ysWzf5ap17D9gAEcAzHc740bI",
    ]);
    let before = snapshot(&ns);
    for o in [sync_app(r, "v1", &ns, &[]), diff_app(r, "v1", &ns, &[])] {
        assert_eq!(o.status.code(), Some(2), "{}", err(&o));
        assert!(
            err(&o).contains(&format!(
                "error: ConfigMap {ns}/kubectl-gitops-trust: data.mode: unknown signature mode \"HEAD\""
            )),
            "{}",
            err(&o)
        );
    }
    assert_eq!(snapshot(&ns), before);
    // A manifest may not carry the policy either.
    repo.write(
        "app/trust.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kubectl-gitops-trust\ndata:\n  mode: tag\n",
    );
    commit(&repo, "carry a policy");
    repo.git(&["tag", "-a", "-m", "release v2", "v2"]);
    ok(trust(&ns, &["clear"]));
    let before = snapshot(&ns);
    let o = sync_app(r, "v2", &ns, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("ConfigMap/kubectl-gitops-trust is a namespace's trust policy"),
        "{}",
        err(&o)
    );
    assert_eq!(snapshot(&ns), before);
}

/// The README's Role for a CI identity, for namespace `ns`.
pub(super) fn readme_role(ns: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let block = readme
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .find(|b| b.contains("name: kubectl-gitops-deployer"))
        .expect("README has the deployer Role");
    block.replace("team-a", ns)
}

#[test]
fn rbac_lets_a_ci_identity_sync_but_not_change_the_policy() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("signed-rbac");
    let repo = Repo::new();
    let r = repo.path.to_str().unwrap();
    let alice = ssh_key(&repo, "alice");
    let allowed = allowed_signers(&repo, "alice@example.com", &alice);
    ok(trust(
        &ns,
        &["set", "--ssh-allowed-signers", allowed.to_str().unwrap()],
    ));
    let policy_version = || {
        kubectl(&[
            "get",
            "cm",
            "kubectl-gitops-trust",
            "-n",
            &ns,
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
    };
    let version = policy_version();

    // The CI identity of the README: a ServiceAccount bound to its Role.
    kubectl(&["create", "serviceaccount", DEPLOYER, "-n", &ns]);
    let mut apply = c.kubectl();
    apply
        .args(["apply", "-n", &ns, "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = apply.spawn().unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        readme_role(&ns).as_bytes(),
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "kubectl apply: {}", err(&o));
    let ci = format!("--as=system:serviceaccount:{ns}:{DEPLOYER}");

    app(&repo, "v1");
    commit(&repo, "v1");
    ssh_tag(&repo, &alice, "v1");
    let o = ok(sync_app(r, "v1", &ns, &[&ci]));
    assert!(err(&o).contains("synced"), "{}", err(&o));
    assert_eq!(
        history_json(&ns)["revisions"][0]["user"],
        format!("system:serviceaccount:{ns}:{DEPLOYER}")
    );
    app(&repo, "v2");
    commit(&repo, "v2");
    repo.git(&["tag", "-a", "-m", "release v2", "v2-unsigned"]);
    assert_refused(r, "v2-unsigned", &ns, "not signed;", &[&ci]);

    // It may read the policy, not change or remove it.
    ok(run(&["trust", "show", "-n", &ns, &ci]));
    for args in [
        vec![
            "trust",
            "set",
            "--ssh-allowed-signers",
            allowed.to_str().unwrap(),
        ],
        vec!["trust", "clear"],
    ] {
        let mut a = args.clone();
        a.extend(["-n", &ns, &ci]);
        let o = run(&a);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", err(&o));
        assert!(err(&o).contains("forbidden"), "{args:?}: {}", err(&o));
    }
    assert_eq!(policy_version(), version, "the policy is untouched");

    // The restricted user (read-only in its namespace) cannot set or clear a policy either.
    for args in [
        vec![
            "trust",
            "set",
            "--ssh-allowed-signers",
            allowed.to_str().unwrap(),
        ],
        vec!["trust", "clear"],
    ] {
        let mut a = args.clone();
        a.extend([
            "-n",
            cluster::RESTRICTED_NAMESPACE,
            "--context",
            "restricted",
        ]);
        let o = run(&a);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", err(&o));
        assert!(err(&o).contains("forbidden"), "{args:?}: {}", err(&o));
    }
    let o = run(&[
        "trust",
        "show",
        "-n",
        cluster::RESTRICTED_NAMESPACE,
        "--context",
        "restricted",
    ]);
    assert!(out(&o).contains("has no trust policy"), "{}", err(&o));
}

/// A Helm chart environment is held to its namespace's policy exactly as a plain one: the
/// deploy tag (signed by `git deploy tag --sign` with an SSH key) is checked before Helm runs
/// and before any write, by sync, revert --to-tag and diff alike.
#[test]
fn a_chart_environment_is_verified_before_helm_renders_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let c = cluster::cluster();
    let ns = c.fresh_namespace("signed-chart");
    let repo = Repo::new();
    let r = repo.path.to_str().unwrap();
    let alice = ssh_key(&repo, "alice");
    let mallory = ssh_key(&repo, "mallory");
    let allowed = allowed_signers(&repo, "alice@example.com", &alice);
    ok(trust(
        &ns,
        &["set", "--ssh-allowed-signers", allowed.to_str().unwrap()],
    ));

    // The real helm, through a wrapper that notes each run: a refused tag never reaches it.
    let ran = repo.tmp.path().join("helm-ran");
    let wrapper = repo.tmp.path().join("helm");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            ran.display(),
            tools::helm().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let helm = wrapper.to_str().unwrap().to_string();
    let gitops = |args: &[&str]| run_env(args, &[("HELM_PATH", helm.as_str())]);
    let git_deploy = |args: &[&str]| {
        let mut cmd = Command::new(install_common::git_deploy());
        cmd.current_dir(&repo.path).args(args);
        repo::isolate(&mut cmd, repo.tmp.path());
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "git deploy {args:?}: {}", err(&o));
        out(&o).trim().to_string()
    };
    // A new commit on env/dev whose helm: values set `mode`, deployed by `git deploy tag dev`
    // (signed by `key` when given); the deploy tag's name.
    let deploy = |mode: &str, key: Option<&SshKey>| {
        repo.git(&["checkout", "-q", "env/dev"]);
        repo.write(
            "gitops.yaml",
            format!(
                "environments:\n  - name: dev\n    branch: env/dev\n    path: chart\n    \
                 namespace: {ns}\n    helm:\n      release: web\n      values: {{mode: {mode}}}\n"
            ),
        );
        commit(&repo, mode);
        repo.git(&["checkout", "-q", "main"]);
        match key {
            Some(k) => {
                repo.git(&["config", "user.signingKey", k.private.to_str().unwrap()]);
                git_deploy(&["tag", "dev", "--sign", "-m", mode])
            }
            None => git_deploy(&["tag", "dev", "-m", mode]),
        }
    };
    let mode = || {
        kubectl(&[
            "get",
            "cm",
            "settings",
            "-n",
            &ns,
            "-o",
            "jsonpath={.data.mode}",
        ])
    };

    repo.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    );
    repo.write(
        "chart/templates/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  \
         mode: {{ .Values.mode | quote }}\n  release: {{ .Release.Name | quote }}\n",
    );
    repo.write(
        "gitops.yaml",
        format!(
            "environments:\n  - name: dev\n    branch: env/dev\n    path: chart\n    \
             namespace: {ns}\n    helm:\n      release: web\n"
        ),
    );
    commit(&repo, "a chart environment");
    repo.git(&["config", "gpg.format", "ssh"]);
    git_deploy(&["init"]);
    let sync = ["sync", "--repo", r, "--env", "dev", "--yes"];

    // Signed by alice: rendered by helm, synced, and the record names her.
    let v1 = deploy("v1", Some(&alice));
    let o = ok(gitops(&sync));
    assert!(
        err(&o).contains(&format!("synced {ns} to {v1}")),
        "{}",
        err(&o)
    );
    assert!(ran.exists(), "helm rendered the chart");
    assert_eq!(mode(), "v1");
    let signature = newest_signature(&ns);
    assert_eq!(signature["status"], "verified");
    assert_eq!(signature["signers"][0]["identity"], "alice@example.com");

    // An unsigned deploy, and one signed by a key the policy does not list: refused by sync
    // --tag (the environment comes from the deploy tag's name) and revert --to-tag before helm
    // runs, nothing written; sync --env is refused the same way below.
    let refusals = [
        (deploy("v2", None), "not signed;".to_string()),
        (
            deploy("v3", Some(&mallory)),
            format!(
                "signed by an unknown key (SSH ED25519 key {})",
                mallory.fingerprint
            ),
        ),
    ];
    for (tag, reason) in &refusals {
        for args in [
            vec!["sync", "--repo", r, "--tag", tag, "--yes"],
            vec!["revert", "-C", r, "--to-tag", tag, "-n", &ns, "--yes"],
        ] {
            std::fs::remove_file(&ran).ok();
            let before = written(&ns);
            let o = gitops(&args);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {}", err(&o));
            let e = err(&o);
            assert!(e.contains(&format!("error: tag {tag}: {reason}")), "{e}");
            assert_eq!(e.matches("error:").count(), 1, "{e}");
            assert!(!ran.exists(), "{args:?}: helm ran before the refusal");
            assert_eq!(written(&ns), before, "{args:?}: nothing written");
        }
    }
    let before = written(&ns);
    let o = gitops(&sync);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!("error: tag {}: {}", refusals[1].0, refusals[1].1)),
        "{}",
        err(&o)
    );
    assert!(!ran.exists(), "helm ran before the refusal");
    assert_eq!(written(&ns), before);
    assert_eq!(mode(), "v1");

    // diff warns with the same verdict, and still renders and diffs (exit 1: differences).
    let o = gitops(&["diff", "--repo", r, "--env", "dev"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "warning: tag {}: {} (namespace {ns} has a trust policy: sync would refuse this tag)",
            refusals[1].0, refusals[1].1
        )),
        "{}",
        err(&o)
    );
    assert!(out(&o).contains("+  mode: v3"), "{}", out(&o));
    assert!(ran.exists(), "diff rendered the chart");

    // Signed by alice again: synced.
    let v4 = deploy("v4", Some(&alice));
    let o = ok(gitops(&sync));
    assert!(
        err(&o).contains(&format!("synced {ns} to {v4}")),
        "{}",
        err(&o)
    );
    assert_eq!(mode(), "v4");
    assert_eq!(newest_signature(&ns)["status"], "verified");

    // --set values are in no signed object: refused under the policy before helm runs (diff
    // warns and diffs), applied only with --insecure-skip-signature, which the revision records.
    let set = [
        "sync",
        "--repo",
        r,
        "--tag",
        &v4,
        "--set",
        "mode=evil",
        "--yes",
    ];
    std::fs::remove_file(&ran).ok();
    let before = written(&ns);
    let o = gitops(&set);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains(&format!(
            "error: --set mode=evil: namespace {ns} has a trust policy, which covers what is \
             signed in git, and --set values are not; nothing was written"
        )),
        "{e}"
    );
    assert!(
        e.contains("hint: commit the values in a values file"),
        "{e}"
    );
    assert_eq!(e.matches("error:").count(), 1, "{e}");
    assert!(!ran.exists(), "helm ran before the refusal");
    assert_eq!(written(&ns), before);
    let o = gitops(&["diff", "--repo", r, "--tag", &v4, "--set", "mode=evil"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "warning: --set mode=evil: namespace {ns} has a trust policy"
        )),
        "{}",
        err(&o)
    );
    assert!(out(&o).contains("+  mode: evil"), "{}", out(&o));
    ok(gitops(&[&set[..], &["--insecure-skip-signature"]].concat()));
    assert_eq!(mode(), "evil");
    assert_eq!(
        newest_signature(&ns),
        serde_json::json!({"status": "skipped"})
    );
}
