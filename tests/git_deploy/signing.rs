//! Signed deploy tags: `--sign` with SSH keys (gpg.format=ssh) checked by the real
//! `git tag -v`, `git deploy show`'s signature line, and `promote --verify-source`. Keys are
//! made here with ssh-keygen; nothing of the developer's configuration is used.

use std::path::PathBuf;
use std::process::Command;

use crate::fixture::{Fixture, stderr, stdout};
use crate::json;

#[path = "../common/ssh_key.rs"]
mod ssh_key_file;
use ssh_key_file::SshKey;

fn ssh_key(f: &Fixture, name: &str) -> SshKey {
    ssh_key_file::make(f.tmp.path(), name)
}

/// An allowed_signers file trusting `key` for `principal`; returns its path.
fn allowed_signers(f: &Fixture, name: &str, principal: &str, key: &SshKey) -> PathBuf {
    let path = f.tmp.path().join(name);
    std::fs::write(&path, format!("{principal} {}\n", key.public)).unwrap();
    path
}

/// Signs with `key` from now on, as a team using SSH keys configures git.
fn sign_with(f: &Fixture, key: &SshKey) {
    f.git(&["config", "gpg.format", "ssh"]);
    f.git(&["config", "user.signingKey", key.private.to_str().unwrap()]);
}

fn trust_only(f: &Fixture, allowed: &std::path::Path) {
    f.git(&[
        "config",
        "gpg.ssh.allowedSignersFile",
        allowed.to_str().unwrap(),
    ]);
}

/// `git tag -v` by git itself; (accepted, what git printed).
fn git_verifies(f: &Fixture, tag: &str) -> (bool, String) {
    let mut cmd = Command::new("git");
    cmd.current_dir(&f.repo).args(["tag", "-v", tag]);
    f.env(&mut cmd);
    let out = cmd.output().unwrap();
    (out.status.success(), stderr(&out))
}

fn new_dev_tag(f: &Fixture, content: &str, extra: &[&str]) -> String {
    f.commit_on(
        "env/dev",
        "deploy/overlays/dev/patch.yaml",
        content,
        content,
    );
    let mut args = vec!["tag", "dev"];
    args.extend_from_slice(extra);
    let out = f.output(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

fn show_line(f: &Fixture, tag: &str) -> String {
    let out = f.output(&["show", tag]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .find(|l| l.starts_with("Signature"))
        .unwrap_or_else(|| panic!("no Signature line in:\n{}", stdout(&out)))
        .to_string()
}

#[test]
fn promote_sign_with_an_ssh_key_is_verified_by_git_tag_v() {
    let f = Fixture::podinfo();
    let ann = ssh_key(&f, "ann");
    sign_with(&f, &ann);
    let dev = new_dev_tag(&f, "# one\n", &["--sign"]);

    let dry = f.output(&["promote", "dev", "--sign", "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let key_file = ann.private.display().to_string();
    assert!(
        stderr(&dry).contains(&format!("the tag would be signed with SSH key {key_file}")),
        "{}",
        stderr(&dry)
    );

    let out = f.output(&["promote", "dev", "--sign", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let staging = stdout(&out).trim().to_string();
    assert!(staging.starts_with("deploy/staging/"), "{staging}");

    // git needs an allowed_signers file to check SSH signatures; with one listing ann's key,
    // both tags verify, signed in git's "git" namespace.
    let allowed = allowed_signers(&f, "allowed_signers", "ann@example.com", &ann);
    trust_only(&f, &allowed);
    for tag in [&dev, &staging] {
        let (ok, said) = git_verifies(&f, tag);
        assert!(ok, "git tag -v {tag}: {said}");
        assert!(
            said.contains(&format!(
                "Good \"git\" signature for ann@example.com with ED25519 key {}",
                ann.fingerprint
            )),
            "{said}"
        );
    }
    let raw = f.git(&["cat-file", "tag", &staging]);
    assert!(raw.contains("-----BEGIN SSH SIGNATURE-----"), "{raw}");
    // The record is intact under the signature.
    let shown = json(&f.output(&["show", &staging, "-o", "json"]));
    assert_eq!(shown["action"], "promote");
    assert_eq!(shown["source_tag"], dev.as_str());
    assert_eq!(shown["signed"], true);
    assert_eq!(shown["signature"]["verdict"], "good");
    assert_eq!(shown["signature"]["signer"]["identity"], "ann@example.com");
    assert_eq!(
        shown["signature"]["signer"]["key"]["fingerprint"],
        ann.fingerprint.as_str()
    );
    f.fsck();
}

#[test]
fn a_signing_setup_that_cannot_sign_fails_before_anything_is_written() {
    let f = Fixture::podinfo();
    new_dev_tag(&f, "# one\n", &[]);
    f.git(&["config", "gpg.format", "ssh"]);
    f.git(&["config", "user.signingKey", "/nonexistent/key"]);
    let before = (f.refs(), f.object_count());
    let out = f.output(&["promote", "dev", "--sign", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("could not sign with /nonexistent/key"),
        "{}",
        stderr(&out)
    );
    assert_eq!((f.refs(), f.object_count()), before, "nothing is written");
}

#[test]
fn show_prints_the_signature_as_git_config_trusts_it() {
    let f = Fixture::podinfo();
    let ann = ssh_key(&f, "ann");
    let mallory = ssh_key(&f, "mallory");
    let unsigned = new_dev_tag(&f, "# unsigned\n", &[]);
    sign_with(&f, &ann);
    let by_ann = new_dev_tag(&f, "# ann\n", &["--sign"]);
    sign_with(&f, &mallory);
    let by_mallory = new_dev_tag(&f, "# mallory\n", &["--sign"]);

    // Without gpg.ssh.allowedSignersFile git cannot check an SSH signature at all.
    let line = show_line(&f, &by_ann);
    assert!(
        line.contains("cannot check: an SSH signature cannot be checked: git's gpg.ssh.allowedSignersFile is not set"),
        "{line}"
    );

    let allowed = allowed_signers(&f, "allowed_signers", "ann@example.com", &ann);
    trust_only(&f, &allowed);
    assert_eq!(
        show_line(&f, &by_ann),
        format!(
            "Signature        good: SSH signature by ann@example.com (ED25519 key {})",
            ann.fingerprint
        )
    );
    assert_eq!(
        show_line(&f, &by_mallory),
        format!(
            "Signature        unknown-key: signed by an unknown key (SSH ED25519 key {})",
            mallory.fingerprint
        )
    );
    assert_eq!(
        show_line(&f, &unsigned),
        "Signature        unsigned: not signed"
    );
    assert!(!git_verifies(&f, &by_mallory).0);

    // The tag object changed after ann signed it: the signature no longer matches.
    let raw = f.git(&["cat-file", "tag", &by_ann]) + "\n";
    let forged = raw.replacen("Deploy-Action: tag", "Deploy-Action: tag ", 1);
    assert_ne!(raw, forged);
    let id = hash_object(&f, "tag", forged.as_bytes());
    f.git(&["update-ref", &format!("refs/tags/{by_ann}"), &id]);
    let line = show_line(&f, &by_ann);
    assert!(
        line.starts_with(&format!(
            "Signature        bad-signature: bad signature from ED25519 key {}",
            ann.fingerprint
        )),
        "{line}"
    );
    assert!(!git_verifies(&f, &by_ann).0);
    let shown = json(&f.output(&["show", &by_ann, "-o", "json"]));
    assert_eq!(shown["signature"]["verdict"], "bad-signature");
}

fn hash_object(f: &Fixture, kind: &str, bytes: &[u8]) -> String {
    use std::io::Write as _;
    let mut cmd = Command::new("git");
    cmd.current_dir(&f.repo)
        .args(["hash-object", "-t", kind, "-w", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    f.env(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    stdout(&out).trim().to_string()
}

#[test]
fn verify_source_refuses_a_source_tag_git_does_not_trust() {
    let f = Fixture::podinfo();
    let ann = ssh_key(&f, "ann");
    let mallory = ssh_key(&f, "mallory");
    let allowed = allowed_signers(&f, "allowed_signers", "ann@example.com", &ann);
    trust_only(&f, &allowed);

    let refused = |tag: &str, reason: &str, args: &[&str]| {
        let before = (f.refs(), f.object_count());
        let out = f.output(args);
        assert_eq!(out.status.code(), Some(1), "{tag}: {}", stderr(&out));
        let expected = format!("will not promote: tag {tag}: {reason}");
        assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
        assert_eq!(
            (f.refs(), f.object_count()),
            before,
            "{tag}: nothing is written"
        );
    };

    let unsigned = new_dev_tag(&f, "# unsigned\n", &[]);
    refused(
        &unsigned,
        "not signed",
        &["promote", "dev", "--verify-source", "--yes"],
    );
    // deploy.verifySource=true asks the same without the flag.
    f.git(&["config", "deploy.verifySource", "true"]);
    refused(&unsigned, "not signed", &["promote", "dev", "--yes"]);

    sign_with(&f, &mallory);
    let by_mallory = new_dev_tag(&f, "# mallory\n", &["--sign"]);
    refused(
        &by_mallory,
        &format!(
            "signed by an unknown key (SSH ED25519 key {})",
            mallory.fingerprint
        ),
        &["promote", "dev", "--yes"],
    );

    sign_with(&f, &ann);
    let by_ann = new_dev_tag(&f, "# ann\n", &["--sign"]);
    let out = f.output(&["promote", "dev", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "source tag {by_ann}: good SSH signature by ann@example.com"
        )),
        "{}",
        stderr(&out)
    );
    let staging = stdout(&out).trim().to_string();
    assert_eq!(f.rev("env/staging"), f.rev(&format!("{by_ann}^{{commit}}")));
    assert!(staging.starts_with("deploy/staging/"), "{staging}");
}

/// ssh-agent on a socket of the test's own; killed (by its pid) when dropped.
struct Agent {
    child: std::process::Child,
    socket: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent_with(f: &Fixture, key: &SshKey) -> Agent {
    let socket = f.tmp.path().join("agent.sock");
    let child = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent is needed (Debian package openssh-client)");
    let agent = Agent { child, socket };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !agent.socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "ssh-agent did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = Command::new("ssh-add")
        .arg(&key.private)
        .env("SSH_AUTH_SOCK", &agent.socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-add: {}", stderr(&out));
    agent
}

#[test]
fn rollback_sign_with_a_literal_key_signs_through_ssh_agent() {
    let f = Fixture::podinfo();
    let ann = ssh_key(&f, "ann");
    let agent = agent_with(&f, &ann);
    let first = new_dev_tag(&f, "# one\n", &[]);
    new_dev_tag(&f, "# two\n", &[]);
    // git's convention for a key held by the agent: user.signingKey = key::<public key>.
    f.git(&["config", "gpg.format", "ssh"]);
    f.git(&["config", "user.signingKey", &format!("key::{}", ann.public)]);

    let dry = f
        .cmd(&["rollback", "dev", &first, "--sign", "--dry-run"])
        .output()
        .unwrap();
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stderr(&dry).contains(&format!(
            "the tag would be signed with SSH key ED25519 {} (from ssh-agent)",
            ann.fingerprint
        )),
        "{}",
        stderr(&dry)
    );
    let out = f
        .cmd(&["rollback", "dev", &first, "--sign", "--yes"])
        .env("SSH_AUTH_SOCK", &agent.socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let tag = stdout(&out).trim().to_string();
    let allowed = allowed_signers(&f, "allowed_signers", "ann@example.com", &ann);
    trust_only(&f, &allowed);
    let (ok, said) = git_verifies(&f, &tag);
    assert!(ok, "git tag -v {tag}: {said}");
    assert!(
        said.contains("Good \"git\" signature for ann@example.com"),
        "{said}"
    );
    let shown = json(&f.output(&["show", &tag, "-o", "json"]));
    assert_eq!(shown["action"], "rollback");
    assert_eq!(shown["signature"]["verdict"], "good");
}
