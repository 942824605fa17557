#![cfg(unix)]
//! Signed deploys against real keys and the real git: keys made here with ssh-keygen and
//! `gpg --quick-gen-key`, tags and commits signed by `git tag -s` / `git commit -S`, each
//! refusal produced for real, and every verdict cross-checked with `git tag -v` /
//! `git verify-commit` given the same allowed_signers file or keys.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use shared::signature::allowed_signers::AllowedSigners;
use shared::signature::{
    self, Format, Mode, SigningSetup, TagRef, TrustPolicy, TrustedKeys, Verdict, git_config,
};

/// Everything one test needs, in one temp dir; gpg agents started for its keyrings are
/// stopped when it is dropped.
struct Lab {
    tmp: tempfile::TempDir,
    repo: PathBuf,
    gpg_homes: std::cell::RefCell<Vec<PathBuf>>,
    agent: std::cell::RefCell<Option<Child>>,
}

struct SshKey {
    private: PathBuf,
    public_file: PathBuf,
    /// `ssh-ed25519 AAAA... comment`
    public: String,
    /// As `ssh-keygen -l` prints them.
    fingerprint: String,
    key_type: String,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for home in self.gpg_homes.borrow().iter() {
            let _ = Command::new("gpgconf")
                .arg("--homedir")
                .arg(home)
                .args(["--kill", "all"])
                .output();
        }
        if let Some(mut agent) = self.agent.borrow_mut().take() {
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Lab {
    fn new() -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("config");
        std::fs::create_dir(&repo).unwrap();
        let lab = Lab {
            tmp,
            repo,
            gpg_homes: Default::default(),
            agent: Default::default(),
        };
        lab.git(&["init", "-q", "-b", "main"]);
        lab.git(&["config", "user.name", "Ann Operator"]);
        lab.git(&["config", "user.email", "ann@example.com"]);
        lab.git(&["commit", "-q", "--allow-empty", "-m", "first"]);
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A command isolated from the developer's configuration, keyrings and agent.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.repo)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.tmp.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GNUPGHOME", self.path("no-gnupg-home"))
            .env("TZ", "UTC")
            .stdin(Stdio::null());
        cmd
    }

    fn git_output(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        self.command("git")
            .envs(env.iter().copied())
            .args(args)
            .output()
            .unwrap()
    }

    fn git_env(&self, env: &[(&str, &str)], args: &[&str]) -> String {
        let out = self.git_output(env, args);
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn git(&self, args: &[&str]) -> String {
        self.git_env(&[], args)
    }

    /// `git hash-object -t <kind> -w --stdin`.
    fn write_object(&self, kind: &str, bytes: &[u8]) -> String {
        use std::io::Write as _;
        let mut child = self
            .command("git")
            .args(["hash-object", "-t", kind, "-w", "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn repository(&self) -> gix::Repository {
        gix::open_opts(&self.repo, gix::open::Options::isolated()).unwrap()
    }

    fn tag(&self, name: &str) -> TagRef {
        signature::read_tag(&self.repository(), name).unwrap()
    }

    fn ssh_key(&self, name: &str, args: &[&str]) -> SshKey {
        let private = self.path(name);
        let out = self
            .command("ssh-keygen")
            .args(["-q", "-N", "", "-C", name, "-f"])
            .arg(&private)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "ssh-keygen: {}", text(&out));
        let public_file = self.path(&format!("{name}.pub"));
        let public = std::fs::read_to_string(&public_file)
            .unwrap()
            .trim()
            .to_string();
        let listed = self
            .command("ssh-keygen")
            .arg("-lf")
            .arg(&public_file)
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&listed.stdout).trim().to_string();
        // `256 SHA256:... comment (ED25519)`
        let fingerprint = listed.split(' ').nth(1).unwrap().to_string();
        let key_type = listed
            .rsplit('(')
            .next()
            .unwrap()
            .trim_end_matches(')')
            .to_string();
        SshKey {
            private,
            public_file,
            public,
            fingerprint,
            key_type,
        }
    }

    fn write_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// `git tag -s` with an SSH key, optionally at a given date.
    fn ssh_tag(&self, name: &str, key: &SshKey, date: Option<&str>) {
        let key_path = key.private.to_str().unwrap();
        let mut env = vec![];
        if let Some(date) = date {
            env.push(("GIT_COMMITTER_DATE", date));
        }
        self.git_env(
            &env,
            &[
                "-c",
                "gpg.format=ssh",
                "-c",
                &format!("user.signingKey={key_path}"),
                "tag",
                "-s",
                "-m",
                &format!("deploy {name}"),
                name,
            ],
        );
    }

    /// `git commit -S` with an SSH key; returns the commit id.
    fn ssh_commit(&self, key: &SshKey, message: &str) -> String {
        let key_path = key.private.to_str().unwrap();
        self.git(&[
            "-c",
            "gpg.format=ssh",
            "-c",
            &format!("user.signingKey={key_path}"),
            "commit",
            "-q",
            "-S",
            "--allow-empty",
            "-m",
            message,
        ]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Re-writes tag `name` after signing: same signature, one word of the message changed,
    /// the ref moved to the new object.
    fn tamper_tag(&self, name: &str) {
        let raw = self.git(&["cat-file", "tag", name]) + "\n";
        let edited = raw.replacen("deploy ", "deploy-evil ", 1);
        assert_ne!(raw, edited);
        let id = self.write_object("tag", edited.as_bytes());
        self.git(&["update-ref", &format!("refs/tags/{name}"), &id]);
    }

    fn gpg_home(&self, name: &str) -> PathBuf {
        let home = self.path(name);
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        self.gpg_homes.borrow_mut().push(home.clone());
        home
    }

    fn gpg(&self, home: &Path, args: &[&str]) -> Output {
        let out = self
            .command("gpg")
            .arg("--homedir")
            .arg(home)
            .args(["--batch", "--no-tty"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "gpg {args:?}: {}", text(&out));
        out
    }

    /// A new ed25519 key for `uid` in `home`; returns its fingerprint.
    fn gpg_key(&self, home: &Path, uid: &str, extra: &[&str], expire: &str) -> String {
        let mut args = vec!["--passphrase", ""];
        args.extend(extra);
        args.extend(["--quick-gen-key", uid, "future-default", "default", expire]);
        self.gpg(home, &args);
        let out = self.gpg(home, &["--with-colons", "--list-keys", uid]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .unwrap()
            .split(':')
            .nth(9)
            .unwrap()
            .to_string()
    }

    fn gpg_export(&self, home: &Path, uid: &str) -> String {
        String::from_utf8(self.gpg(home, &["--armor", "--export", uid]).stdout).unwrap()
    }

    /// A `gpg` wrapper bound to `home` (and extra options), for `gpg.program`: the test cannot
    /// change its own environment, and git and our code both honour gpg.program.
    fn gpg_program(&self, name: &str, home: &Path, extra: &str) -> PathBuf {
        let script = format!(
            "#!/bin/sh\nexec gpg --homedir '{}' {extra} \"$@\"\n",
            home.display()
        );
        let path = self.write_file(name, &script);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        path
    }

    /// `git -c gpg.program=<verify_with> tag -v`: does git accept it?
    fn git_accepts(
        &self,
        what: &[&str],
        allowed: &Path,
        gnupg_home: Option<&Path>,
    ) -> (bool, String) {
        let mut args = vec![
            "-c".to_string(),
            format!("gpg.ssh.allowedSignersFile={}", allowed.display()),
        ];
        args.extend(what.iter().map(|s| s.to_string()));
        let home = gnupg_home.map(|h| h.to_str().unwrap().to_string());
        let env: Vec<(&str, &str)> = home.iter().map(|h| ("GNUPGHOME", h.as_str())).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.git_output(&env, &args);
        (out.status.success(), text(&out))
    }
}

fn signers(path: &Path) -> AllowedSigners {
    AllowedSigners::parse(
        &path.display().to_string(),
        &std::fs::read_to_string(path).unwrap(),
    )
    .unwrap()
}

fn ssh_trust(path: &Path) -> TrustedKeys {
    TrustedKeys::new(signers(path), None, "gpg".into())
}

/// Our verdict on tag `name` (mode tag) must agree with `git tag -v`.
fn tag_verdict_agrees(
    lab: &Lab,
    keys: &TrustedKeys,
    name: &str,
    allowed: &Path,
    gnupg_home: Option<&Path>,
) -> Verdict {
    let check = keys.check_tag(&lab.tag(name), Mode::Tag).unwrap();
    let verdict = check.checks[0].verdict.clone();
    let (git_ok, git_says) = lab.git_accepts(&["tag", "-v", name], allowed, gnupg_home);
    assert_eq!(
        verdict.is_good(),
        git_ok,
        "tag {name}: we say {verdict}, git says {git_says}"
    );
    verdict
}

fn commit_verdict_agrees(
    lab: &Lab,
    keys: &TrustedKeys,
    tag: &str,
    allowed: &Path,
    gnupg_home: Option<&Path>,
) -> Verdict {
    let decision = keys.check_tag(&lab.tag(tag), Mode::Commit).unwrap();
    let verdict = decision.checks[0].verdict.clone();
    let commit = decision.commit.to_string();
    let (git_ok, git_says) = lab.git_accepts(&["verify-commit", &commit], allowed, gnupg_home);
    assert_eq!(
        verdict.is_good(),
        git_ok,
        "commit of {tag}: we say {verdict}, git says {git_says}"
    );
    verdict
}

fn assert_good(verdict: &Verdict, identity: &str, key: &SshKey) {
    let Verdict::Good { signer } = verdict else {
        panic!("expected a good signature by {identity}, got {verdict}");
    };
    assert_eq!(signer.identity, identity);
    assert_eq!(signer.key.format, Format::Ssh);
    assert_eq!(signer.key.fingerprint, key.fingerprint);
    assert_eq!(signer.key.key_type, key.key_type);
}

#[test]
fn ssh_tag_verdicts_name_each_reason_and_agree_with_git() {
    let lab = Lab::new();
    let alice = lab.ssh_key("alice", &["-t", "ed25519"]);
    let bob = lab.ssh_key("bob", &["-t", "rsa", "-b", "2048"]);
    let carol = lab.ssh_key("carol", &["-t", "ecdsa", "-b", "256"]);
    let dan = lab.ssh_key("dan", &["-t", "ecdsa", "-b", "384"]);
    let erin = lab.ssh_key("erin", &["-t", "ed25519"]);
    let frank = lab.ssh_key("frank", &["-t", "ed25519"]);
    let gina = lab.ssh_key("gina", &["-t", "ed25519"]);
    let mallory = lab.ssh_key("mallory", &["-t", "ed25519"]);
    let allowed = lab.write_file(
        "allowed_signers",
        &format!(
            "# who may deploy\n\
             alice@example.com,alice@ops.example.com {}\n\
             bob@example.com namespaces=\"git\" {}\n\
             \"carol@example.com\" {}\n\
             *@dan.example.com {}\n\
             erin@example.com namespaces=\"file\" {}\n\
             frank@example.com valid-before=\"20200101Z\" {}\n\
             gina@example.com valid-after=\"20990101Z\" {}\n",
            alice.public,
            bob.public,
            carol.public,
            dan.public,
            erin.public,
            frank.public,
            gina.public
        ),
    );
    let keys = ssh_trust(&allowed);
    let agree = |name: &str| tag_verdict_agrees(&lab, &keys, name, &allowed, None);

    // Good signatures, each key type as git and ssh-keygen make them (RSA: rsa-sha2-512).
    for (name, key, identity) in [
        ("deploy/prod/ed25519", &alice, "alice@example.com"),
        ("deploy/prod/rsa", &bob, "bob@example.com"),
        ("deploy/prod/ecdsa-p256", &carol, "carol@example.com"),
        ("deploy/prod/ecdsa-p384", &dan, "*@dan.example.com"),
    ] {
        lab.ssh_tag(name, key, None);
        assert_good(&agree(name), identity, key);
    }

    lab.git(&["tag", "-a", "-m", "deploy unsigned", "deploy/prod/unsigned"]);
    assert_eq!(agree("deploy/prod/unsigned"), Verdict::Unsigned);

    lab.git(&["tag", "deploy/prod/lightweight"]);
    assert_eq!(agree("deploy/prod/lightweight"), Verdict::Lightweight);

    lab.ssh_tag("deploy/prod/other-key", &mallory, None);
    match agree("deploy/prod/other-key") {
        Verdict::UnknownKey {
            format: Format::Ssh,
            key: Some(key),
        } => {
            assert_eq!(key.fingerprint, mallory.fingerprint);
        }
        other => panic!("{other:?}"),
    }

    lab.ssh_tag("deploy/prod/tampered", &alice, None);
    lab.tamper_tag("deploy/prod/tampered");
    match agree("deploy/prod/tampered") {
        Verdict::BadSignature {
            key: Some(key),
            detail,
        } => {
            assert_eq!(key.fingerprint, alice.fingerprint);
            assert!(
                detail.contains("does not match the signed content"),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }

    lab.ssh_tag("deploy/prod/namespace-option", &erin, None);
    match agree("deploy/prod/namespace-option") {
        Verdict::NotAllowed {
            identity, detail, ..
        } => {
            assert_eq!(identity.as_deref(), Some("erin@example.com"));
            assert!(
                detail.ends_with(":6: namespaces=\"file\" does not allow \"git\""),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }

    // valid-before is judged at the tagger date, as git judges it.
    lab.ssh_tag("deploy/prod/expired", &frank, None);
    assert!(matches!(
        agree("deploy/prod/expired"),
        Verdict::ExpiredKey { .. }
    ));
    lab.ssh_tag(
        "deploy/prod/before-expiry",
        &frank,
        Some("2019-06-01T00:00:00Z"),
    );
    assert_good(
        &agree("deploy/prod/before-expiry"),
        "frank@example.com",
        &frank,
    );
    lab.ssh_tag("deploy/prod/not-yet", &gina, None);
    assert!(
        matches!(agree("deploy/prod/not-yet"), Verdict::NotAllowed { detail, .. } if detail.contains("valid-after"))
    );

    // A listed key's signature made for another purpose (namespace "file"), spliced into a tag.
    let head = lab.git(&["rev-parse", "HEAD"]);
    let payload = format!(
        "object {head}\ntype commit\ntag deploy/prod/file-namespace\n\
         tagger Ann Operator <ann@example.com> 1750000000 +0000\n\ndeploy spliced\n"
    );
    let payload_file = lab.write_file("payload", &payload);
    let out = lab
        .command("ssh-keygen")
        .args(["-Y", "sign", "-n", "file", "-f"])
        .arg(&alice.private)
        .arg(&payload_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let sig = std::fs::read_to_string(lab.path("payload.sig")).unwrap();
    let id = lab.write_object("tag", format!("{payload}{sig}").as_bytes());
    lab.git(&["update-ref", "refs/tags/deploy/prod/file-namespace", &id]);
    match agree("deploy/prod/file-namespace") {
        Verdict::NotAllowed { detail, .. } => {
            assert!(detail.contains("signed in namespace \"file\""), "{detail}")
        }
        other => panic!("{other:?}"),
    }

    // git's own configuration gives the same verdicts (promote --verify-source).
    lab.git(&["config", "gpg.ssh.allowedSignersFile", "../allowed_signers"]);
    let repo = lab.repository();
    for (name, good) in [
        ("deploy/prod/ed25519", true),
        ("deploy/prod/rsa", true),
        ("deploy/prod/other-key", false),
        ("deploy/prod/tampered", false),
        ("deploy/prod/unsigned", false),
        ("deploy/prod/lightweight", false),
    ] {
        let check = git_config::verify_tag(&repo, &lab.tag(name)).unwrap();
        assert_eq!(check.verdict.is_good(), good, "{check}");
        assert!(
            check.to_string().starts_with(&format!("tag {name}: ")),
            "{check}"
        );
    }
}

#[test]
fn ssh_commit_verdicts_agree_with_git_verify_commit() {
    let lab = Lab::new();
    let alice = lab.ssh_key("alice", &["-t", "ed25519"]);
    let bob = lab.ssh_key("bob", &["-t", "rsa", "-b", "2048"]);
    let mallory = lab.ssh_key("mallory", &["-t", "ed25519"]);
    let allowed = lab.write_file(
        "allowed_signers",
        &format!(
            "alice@example.com {}\nbob@example.com {}\n",
            alice.public, bob.public
        ),
    );
    let keys = ssh_trust(&allowed);
    let agree = |tag: &str| commit_verdict_agrees(&lab, &keys, tag, &allowed, None);

    lab.ssh_commit(&alice, "signed by alice");
    lab.git(&["tag", "c/alice"]);
    assert_good(&agree("c/alice"), "alice@example.com", &alice);

    // A merge commit with a multi-line message and a mergetag-like body keeps its payload.
    lab.ssh_commit(&bob, "signed by bob\n\nwith a body\n\n  indented line\n");
    lab.git(&["tag", "c/bob"]);
    assert_good(&agree("c/bob"), "bob@example.com", &bob);

    lab.git(&["commit", "-q", "--allow-empty", "-m", "unsigned"]);
    lab.git(&["tag", "c/unsigned"]);
    assert_eq!(agree("c/unsigned"), Verdict::Unsigned);

    lab.ssh_commit(&mallory, "signed by mallory");
    lab.git(&["tag", "c/mallory"]);
    assert!(
        matches!(agree("c/mallory"), Verdict::UnknownKey { key: Some(k), .. } if k.fingerprint == mallory.fingerprint)
    );

    let signed = lab.ssh_commit(&alice, "deploy this");
    let raw = lab.git(&["cat-file", "commit", &signed]) + "\n";
    let id = lab.write_object(
        "commit",
        raw.replacen("deploy this", "deploy that", 1).as_bytes(),
    );
    lab.git(&["tag", "c/tampered", &id]);
    assert!(matches!(agree("c/tampered"), Verdict::BadSignature { .. }));
}

#[test]
fn modes_decide_which_signatures_a_deploy_needs() {
    let lab = Lab::new();
    let alice = lab.ssh_key("alice", &["-t", "ed25519"]);
    let allowed = lab.write_file(
        "allowed_signers",
        &format!("alice@example.com {}\n", alice.public),
    );
    let keys = ssh_trust(&allowed);

    // A signed tag on an unsigned commit, and an unsigned tag on a signed commit.
    let unsigned_commit = lab.git(&["rev-parse", "HEAD"]);
    lab.ssh_tag("deploy/prod/1", &alice, None);
    let signed_commit = lab.ssh_commit(&alice, "signed");
    lab.git(&["tag", "-a", "-m", "deploy unsigned tag", "deploy/prod/2"]);
    lab.git(&["tag", "deploy/prod/3"]);
    lab.ssh_tag("deploy/prod/4", &alice, None);

    let decide = |tag: &str, mode| keys.check_tag(&lab.tag(tag), mode).unwrap();

    let d = decide("deploy/prod/1", Mode::Tag);
    assert!(d.is_trusted());
    assert_eq!(d.commit.to_string(), unsigned_commit);
    assert_eq!(d.signers().count(), 1);
    let d = decide("deploy/prod/1", Mode::Commit);
    assert_eq!(
        d.refusal_message().unwrap(),
        format!(
            "commit {} (tag deploy/prod/1): not signed",
            &unsigned_commit[..7]
        )
    );
    let err = d.require().unwrap_err();
    assert_eq!(err.exit_code(), 1);

    // Mode commit: an unsigned or lightweight tag over a signed commit deploys.
    for tag in ["deploy/prod/2", "deploy/prod/3"] {
        let d = decide(tag, Mode::Commit);
        assert!(d.is_trusted(), "{:?}", d.refusal_message());
        assert_eq!(d.commit.to_string(), signed_commit);
        assert_eq!(d.signers().next().unwrap().identity, "alice@example.com");
    }
    assert_eq!(
        decide("deploy/prod/2", Mode::Tag)
            .refusal_message()
            .unwrap(),
        "tag deploy/prod/2: not signed"
    );

    // Both: each failing signature is named, tag first.
    let d = decide("deploy/prod/4", Mode::TagAndCommit);
    assert!(d.is_trusted());
    assert_eq!(d.signers().count(), 2);
    let d = decide("deploy/prod/3", Mode::TagAndCommit);
    assert_eq!(
        d.refusal_message().unwrap(),
        "tag deploy/prod/3: not signed: a lightweight tag, which has no tag object to sign"
    );
    let d = decide("deploy/prod/2", Mode::TagAndCommit);
    assert_eq!(d.refusals().count(), 1);

    // A signed tag object re-pushed under another name is refused.
    let object = lab.git(&["rev-parse", "refs/tags/deploy/prod/1"]);
    lab.git(&["update-ref", "refs/tags/deploy/prod/9", &object]);
    let d = decide("deploy/prod/9", Mode::Tag);
    assert_eq!(
        d.checks[0].verdict,
        Verdict::NameMismatch {
            signed_name: "deploy/prod/1".into()
        }
    );
}

#[test]
fn gpg_verdicts_name_each_reason_and_agree_with_git() {
    let lab = Lab::new();
    let signing = lab.gpg_home("signing");
    let alice = lab.gpg_key(&signing, "Alice <alice@example.com>", &[], "never");
    // Dave's key expired on 2020-01-02; he signed while it was valid.
    let dave = lab.gpg_key(
        &signing,
        "Dave <dave@example.com>",
        &["--faked-system-time", "20200101T000000"],
        "1d",
    );
    let erin = lab.gpg_key(&signing, "Erin <erin@example.com>", &[], "never");
    let other = lab.gpg_home("mallory");
    let mallory = lab.gpg_key(&other, "Mallory <mallory@example.com>", &[], "never");

    let sign = |tag: &str, home: &Path, key: &str, faked: Option<&str>| {
        let program = match faked {
            Some(time) => {
                lab.gpg_program("gpg-faked", home, &format!("--faked-system-time {time}"))
            }
            None => lab.gpg_program("gpg-signing", home, ""),
        };
        let mut env = vec![];
        if faked.is_some() {
            env.push(("GIT_COMMITTER_DATE", "2020-01-01T12:00:00Z"));
        }
        lab.git_env(
            &env,
            &[
                "-c",
                &format!("gpg.program={}", program.display()),
                "-c",
                &format!("user.signingKey={key}"),
                "tag",
                "-s",
                "-m",
                &format!("deploy {tag}"),
                tag,
            ],
        );
    };
    sign("deploy/prod/alice", &signing, &alice, None);
    sign("deploy/prod/tampered", &signing, &alice, None);
    lab.tamper_tag("deploy/prod/tampered");
    sign("deploy/prod/dave", &signing, &dave, Some("20200101T120000"));
    sign("deploy/prod/erin", &signing, &erin, None);
    sign("deploy/prod/mallory", &other, &mallory, None);
    // Erin's key is revoked after she signed.
    let revocation = std::fs::read_to_string(signing.join(format!("openpgp-revocs.d/{erin}.rev")))
        .unwrap()
        .replace(
            ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        );
    let rev_file = lab.write_file("erin.rev", &revocation);
    lab.gpg(&signing, &["--import", rev_file.to_str().unwrap()]);

    let armoured = ["Alice", "Dave", "Erin"]
        .map(|who| lab.gpg_export(&signing, who))
        .concat();
    let policy = TrustPolicy::from_files(
        Mode::Tag,
        None,
        Some(("team-keys.asc", armoured.clone())),
        Path::new("gpg"),
    )
    .unwrap();
    let listed = policy.gpg_key_list(Path::new("gpg")).unwrap();
    let state: Vec<(&str, bool, bool)> = listed
        .iter()
        .map(|k| (k.fingerprint.as_str(), k.expired, k.revoked))
        .collect();
    assert_eq!(
        state,
        [
            (alice.as_str(), false, false),
            (dave.as_str(), true, false),
            (erin.as_str(), false, true)
        ]
    );
    assert_eq!(listed[0].user_ids, ["Alice <alice@example.com>"]);
    assert_eq!(listed[0].key_type, "EdDSA");

    // A block gpg cannot read is an error, not a key silently left out.
    let corrupt = format!(
        "{armoured}-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQAAAAA=\n=AAAA\n-----END PGP PUBLIC KEY BLOCK-----\n"
    );
    let err = TrustPolicy::from_files(
        Mode::Tag,
        None,
        Some(("team-keys.asc", corrupt)),
        Path::new("gpg"),
    )
    .unwrap_err();
    assert!(
        err.message.starts_with(
            "team-keys.asc: gpg could not import every public key in it: gpg: CRC error"
        ),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);

    // git checks with a keyring holding exactly the policy's keys.
    let verify_home = lab.gpg_home("verify");
    let keys_file = lab.write_file("team-keys.asc", &armoured);
    lab.gpg(&verify_home, &["--import", keys_file.to_str().unwrap()]);
    let keys = policy.trusted_keys("gpg".into());
    let allowed = lab.write_file("allowed_signers", "");
    let agree = |tag: &str| tag_verdict_agrees(&lab, &keys, tag, &allowed, Some(&verify_home));

    match agree("deploy/prod/alice") {
        Verdict::Good { signer } => {
            assert_eq!(signer.identity, "Alice <alice@example.com>");
            assert_eq!(signer.key.fingerprint, alice);
            assert_eq!(signer.key.format, Format::OpenPgp);
            assert_eq!(signer.key.key_type, "EdDSA");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(agree("deploy/prod/tampered"), Verdict::BadSignature { key: Some(k), .. } if k.fingerprint == alice)
    );
    assert!(
        matches!(agree("deploy/prod/dave"), Verdict::ExpiredKey { key, .. } if key.fingerprint == dave)
    );
    assert!(
        matches!(agree("deploy/prod/erin"), Verdict::RevokedKey { key, .. } if key.fingerprint == erin)
    );
    assert!(
        matches!(agree("deploy/prod/mallory"), Verdict::UnknownKey { key: Some(k), .. } if k.fingerprint == mallory)
    );

    // The same policy through its ConfigMap form.
    let stored = TrustPolicy::from_configmap_data(
        "ConfigMap ns/kubectl-gitops-trust",
        &policy.to_configmap_data(),
    )
    .unwrap();
    let keys = stored.trusted_keys("gpg".into());
    assert!(
        stored
            .check_tag(&keys, &lab.tag("deploy/prod/alice"))
            .unwrap()
            .is_trusted()
    );

    // A policy with SSH keys only still names the OpenPGP key it does not trust.
    let alice_ssh = lab.ssh_key("alice-ssh", &["-t", "ed25519"]);
    let ssh_only = TrustPolicy::from_files(
        Mode::Tag,
        Some((
            "allowed_signers",
            format!("alice@example.com {}\n", alice_ssh.public),
        )),
        None,
        Path::new("gpg"),
    )
    .unwrap();
    let decision = ssh_only
        .check_tag(
            &ssh_only.trusted_keys("gpg".into()),
            &lab.tag("deploy/prod/alice"),
        )
        .unwrap();
    assert_eq!(
        decision.refusal_message().unwrap(),
        format!("tag deploy/prod/alice: signed by an unknown key (OpenPGP EdDSA key {alice})")
    );

    // No gpg: a clear error naming what to install, never a verdict.
    let keys = policy.trusted_keys(lab.path("no-such-gpg"));
    let err = keys
        .check_tag(&lab.tag("deploy/prod/alice"), Mode::Tag)
        .unwrap_err();
    assert!(err.message.contains("(GnuPG) is needed"), "{err}");
    assert!(err.hint.unwrap().contains("apt-get install gnupg"));
}

#[test]
fn gpg_commits_and_git_config_trust_agree_with_git() {
    let lab = Lab::new();
    let signing = lab.gpg_home("signing");
    let alice = lab.gpg_key(&signing, "Alice <alice@example.com>", &[], "never");
    let program = lab.gpg_program("gpg-signing", &signing, "");
    lab.git(&["config", "gpg.program", program.to_str().unwrap()]);
    lab.git(&["config", "user.signingKey", &alice]);
    lab.git(&["commit", "-q", "-S", "--allow-empty", "-m", "signed"]);
    lab.git(&["tag", "-s", "-m", "deploy signed", "deploy/prod/1"]);

    let verify_home = lab.gpg_home("verify");
    let armoured = lab.gpg_export(&signing, &alice);
    let keys_file = lab.write_file("keys.asc", &armoured);
    lab.gpg(&verify_home, &["--import", keys_file.to_str().unwrap()]);
    let keys = TrustedKeys::new(
        AllowedSigners::parse("none", "").unwrap(),
        Some(("keys.asc".into(), armoured)),
        "gpg".into(),
    );
    let allowed = lab.write_file("allowed_signers", "");
    let verdict = commit_verdict_agrees(&lab, &keys, "deploy/prod/1", &allowed, Some(&verify_home));
    assert!(verdict.is_good(), "{verdict}");

    // git's own configuration: the signer's keyring (ultimate trust), then gpg.minTrustLevel
    // against a keyring where the key's validity is unknown.
    let repo = lab.repository();
    assert!(
        git_config::verify_tag(&repo, &lab.tag("deploy/prod/1"))
            .unwrap()
            .verdict
            .is_good()
    );
    let verify_program = lab.gpg_program("gpg-verify", &verify_home, "");
    lab.git(&["config", "gpg.program", verify_program.to_str().unwrap()]);
    lab.git(&["config", "gpg.minTrustLevel", "marginal"]);
    let check = git_config::verify_tag(&lab.repository(), &lab.tag("deploy/prod/1")).unwrap();
    assert!(
        matches!(&check.verdict, Verdict::NotAllowed { detail, .. } if detail.contains("gpg.minTrustLevel")),
        "{check}"
    );
    let (git_ok, _) = lab.git_accepts(&["tag", "-v", "deploy/prod/1"], &allowed, None);
    assert!(!git_ok, "git refuses below gpg.minTrustLevel too");
    lab.git(&["config", "--unset", "gpg.minTrustLevel"]);
    let check = git_config::verify_tag(&lab.repository(), &lab.tag("deploy/prod/1")).unwrap();
    assert!(check.verdict.is_good(), "{check}");
}

#[test]
fn git_config_ssh_trust_needs_allowed_signers_and_honours_revocations() {
    let lab = Lab::new();
    let alice = lab.ssh_key("alice", &["-t", "ed25519"]);
    lab.ssh_tag("deploy/prod/1", &alice, None);
    let tag = lab.tag("deploy/prod/1");

    let err = git_config::verify_tag(&lab.repository(), &tag).unwrap_err();
    assert!(
        err.message
            .contains("gpg.ssh.allowedSignersFile is not set"),
        "{err}"
    );

    // Relative to the top of the work tree, as git runs ssh-keygen there.
    std::fs::write(
        lab.repo.join(".allowed_signers"),
        format!("alice@example.com {}\n", alice.public),
    )
    .unwrap();
    lab.git(&["config", "gpg.ssh.allowedSignersFile", ".allowed_signers"]);
    let check = git_config::verify_tag(&lab.repository(), &tag).unwrap();
    assert!(check.verdict.is_good(), "{check}");

    lab.write_file("revoked_keys", &format!("# leaked\n{}\n", alice.public));
    lab.git(&["config", "gpg.ssh.revocationFile", "../revoked_keys"]);
    let check = git_config::verify_tag(&lab.repository(), &tag).unwrap();
    assert!(
        matches!(check.verdict, Verdict::RevokedKey { .. }),
        "{check}"
    );
    let out = lab.git_output(&[], &["tag", "-v", "deploy/prod/1"]);
    assert!(
        !out.status.success(),
        "git refuses a revoked key too: {}",
        text(&out)
    );

    lab.git(&["config", "gpg.ssh.allowedSignersFile", "missing"]);
    let err = git_config::verify_tag(&lab.repository(), &tag).unwrap_err();
    assert!(
        err.message
            .contains("missing (git config gpg.ssh.allowedSignersFile)"),
        "{err}"
    );
    std::fs::write(
        lab.repo.join("missing"),
        format!("alice@example.com cert-authority {}\n", alice.public),
    )
    .unwrap();
    let err = git_config::verify_tag(&lab.repository(), &tag).unwrap_err();
    assert!(err.message.ends_with("missing:1: cert-authority is not supported: SSH certificates cannot be trusted for deploys; list each signer's public key instead"), "{err}");
}

#[test]
fn ssh_signing_follows_git_conventions_and_git_verifies_it() {
    let lab = Lab::new();
    let alice = lab.ssh_key("alice", &["-t", "ed25519"]);
    let allowed = lab.write_file(
        "allowed_signers",
        &format!("alice@example.com {}\n", alice.public),
    );
    let keys = ssh_trust(&allowed);
    lab.git(&["config", "gpg.format", "ssh"]);

    // A private key file: our signature over git's own payload is git's signature (ed25519 is
    // deterministic), and a tag built from it verifies.
    lab.git(&["config", "user.signingKey", alice.private.to_str().unwrap()]);
    lab.ssh_tag("deploy/prod/by-git", &alice, None);
    let by_git = lab.tag("deploy/prod/by-git");
    let signature::TagTarget::Annotated { object, .. } = &by_git.target else {
        panic!("annotated")
    };
    let signed = object.signed.as_ref().unwrap();
    let setup = SigningSetup::from_git_config(&lab.repository()).unwrap();
    assert_eq!(setup.format(), Format::Ssh);
    assert_eq!(
        setup.describe(),
        format!("SSH key {}", alice.private.display())
    );
    assert_eq!(setup.sign(&signed.payload).unwrap(), signed.signature);

    let head = lab.git(&["rev-parse", "HEAD"]);
    let sign_tag = |name: &str| {
        let payload = format!(
            "object {head}\ntype commit\ntag {name}\ntagger Ann Operator <ann@example.com> 1750000000 +0000\n\ndeploy {name}\n"
        );
        let setup = SigningSetup::from_git_config(&lab.repository()).unwrap();
        let raw =
            signature::signed_tag(payload.as_bytes(), &setup.sign(payload.as_bytes()).unwrap());
        let id = lab.write_object("tag", &raw);
        lab.git(&["update-ref", &format!("refs/tags/{name}"), &id]);
        assert_good(
            &tag_verdict_agrees(&lab, &keys, name, &allowed, None),
            "alice@example.com",
            &alice,
        );
    };
    sign_tag("deploy/prod/key-file");

    // A public key or a literal `key::` value: the private key comes from ssh-agent. The agent
    // is reached through gpg.ssh.program, which we honour as git does.
    let socket = lab.path("agent.sock");
    let agent = lab
        .command("ssh-agent")
        .args(["-D", "-a"])
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    *lab.agent.borrow_mut() = Some(agent);
    for _ in 0..200 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = lab
        .command("ssh-add")
        .env("SSH_AUTH_SOCK", &socket)
        .arg(&alice.private)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-add: {}", text(&out));
    let wrapper = lab.write_file(
        "ssh-keygen-with-agent",
        &format!(
            "#!/bin/sh\nSSH_AUTH_SOCK='{}' exec ssh-keygen \"$@\"\n",
            socket.display()
        ),
    );
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    lab.git(&["config", "gpg.ssh.program", wrapper.to_str().unwrap()]);

    // The public key alone, with no private key beside it.
    let lone_public = lab.write_file("only-public.pub", &format!("{}\n", alice.public));
    lab.git(&["config", "user.signingKey", lone_public.to_str().unwrap()]);
    sign_tag("deploy/prod/public-key-file");

    lab.git(&[
        "config",
        "user.signingKey",
        &format!("key::{}", alice.public),
    ]);
    let setup = SigningSetup::from_git_config(&lab.repository()).unwrap();
    assert_eq!(
        setup.describe(),
        format!("SSH key ED25519 {} (from ssh-agent)", alice.fingerprint)
    );
    sign_tag("deploy/prod/literal-key");

    // A commit signed through the same setup verifies with git verify-commit.
    let raw = lab.git(&["cat-file", "commit", "HEAD"]) + "\n";
    let setup = SigningSetup::from_git_config(&lab.repository()).unwrap();
    let signed_commit =
        signature::signed_commit(raw.as_bytes(), &setup.sign(raw.as_bytes()).unwrap());
    let id = lab.write_object("commit", &signed_commit);
    lab.git(&["tag", "c/signed", &id]);
    assert_good(
        &commit_verdict_agrees(&lab, &keys, "c/signed", &allowed, None),
        "alice@example.com",
        &alice,
    );

    // A key the agent does not hold: ssh-keygen's refusal, with what to do.
    let stranger = lab.ssh_key("stranger", &["-t", "ed25519"]);
    lab.git(&[
        "config",
        "user.signingKey",
        &format!("key::{}", stranger.public),
    ]);
    let err = SigningSetup::from_git_config(&lab.repository())
        .unwrap()
        .sign(b"payload\n")
        .unwrap_err();
    assert!(err.message.contains("could not sign with"), "{err}");
    assert!(err.hint.unwrap().contains("ssh-add"));

    lab.git(&["config", "--unset", "user.signingKey"]);
    let err = SigningSetup::from_git_config(&lab.repository()).unwrap_err();
    assert_eq!(err.message, "gpg.format=ssh needs user.signingKey to sign");
    lab.git(&[
        "config",
        "gpg.ssh.defaultKeyCommand",
        &format!("cat {}", alice.public_file.display()),
    ]);
    let setup = SigningSetup::from_git_config(&lab.repository()).unwrap();
    assert!(
        setup.describe().contains(&alice.fingerprint),
        "{}",
        setup.describe()
    );
}

#[test]
fn openpgp_signing_follows_git_conventions_and_git_verifies_it() {
    let lab = Lab::new();
    let home = lab.gpg_home("signing");
    let alice = lab.gpg_key(&home, "Alice <alice@example.com>", &[], "never");
    let program = lab.gpg_program("gpg-signing", &home, "");
    lab.git(&["config", "gpg.program", program.to_str().unwrap()]);
    lab.git(&["config", "user.signingKey", &alice]);
    let setup = SigningSetup::from_git_config(&lab.repository()).unwrap();
    assert_eq!(setup.format(), Format::OpenPgp);
    let head = lab.git(&["rev-parse", "HEAD"]);
    let payload = format!(
        "object {head}\ntype commit\ntag deploy/prod/1\ntagger Ann Operator <ann@example.com> 1750000000 +0000\n\ndeploy\n"
    );
    let raw = signature::signed_tag(payload.as_bytes(), &setup.sign(payload.as_bytes()).unwrap());
    let id = lab.write_object("tag", &raw);
    lab.git(&["update-ref", "refs/tags/deploy/prod/1", &id]);
    lab.git(&["tag", "-v", "deploy/prod/1"]);
    let check = git_config::verify_tag(&lab.repository(), &lab.tag("deploy/prod/1")).unwrap();
    assert!(
        matches!(&check.verdict, Verdict::Good { signer } if signer.key.fingerprint == alice),
        "{check}"
    );

    lab.git(&["config", "gpg.format", "x509"]);
    let err = SigningSetup::from_git_config(&lab.repository()).unwrap_err();
    assert!(err.message.contains("x509"), "{err}");
}
