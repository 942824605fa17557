//! The ref writer under failure (issues 22 and 23): a permission error is a failure with its
//! cause, not a race; a ref another process holds is a race; a push that succeeded before the
//! local update failed says so; a shallow clone is named as the reason a history question
//! cannot be answered; a lock taken between plan and write stops the write; parallel deploys
//! of one environment leave one tag per previous deploy; `init` writes nothing it cannot
//! finish.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{Fixture, stderr, stdout};

/// Makes `path` unwritable for the duration of the guard: `chmod` for ordinary users, and
/// for root (which ignores modes) the immutable attribute (`chattr +i`).
struct ReadOnly(PathBuf, bool);

impl ReadOnly {
    fn new(path: &Path) -> ReadOnly {
        use std::os::unix::fs::PermissionsExt;
        let dir = path.is_dir();
        let mode = if dir { 0o555 } else { 0o444 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        let probe = if dir {
            std::fs::write(path.join(".probe"), b"").is_ok()
        } else {
            std::fs::OpenOptions::new().append(true).open(path).is_ok()
        };
        if probe {
            let _ = std::fs::remove_file(path.join(".probe"));
            let out = Command::new("chattr").arg("+i").arg(path).output();
            assert!(
                out.as_ref().is_ok_and(|o| o.status.success()),
                "running as root, and chattr +i {} failed: {out:?}",
                path.display()
            );
            return ReadOnly(path.to_path_buf(), true);
        }
        ReadOnly(path.to_path_buf(), false)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.1 {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).output();
        }
        let mode = if self.0.is_dir() { 0o755 } else { 0o644 };
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(mode));
    }
}

#[test]
fn a_permission_error_on_refs_is_a_failure_with_its_cause_not_a_race() {
    let f = Fixture::podinfo();
    f.commit_on("env/dev", super::DEV_PATCH, "a: 1\n", "one");
    let tags = f.repo.join(".git/refs/tags");
    std::fs::create_dir_all(&tags).unwrap();
    let before = f.refs();
    let o = {
        let _ro = ReadOnly::new(&tags);
        f.output(&["tag", "dev"])
    };
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("Permission denied") || err.contains("Operation not permitted"),
        "the OS error is named: {err}"
    );
    assert!(
        err.contains("refs/tags/deploy/dev"),
        "the ref is named: {err}"
    );
    assert!(!err.contains("retry") && !err.contains("race"), "{err}");
    assert_eq!(f.refs(), before);
}

#[test]
fn a_ref_locked_by_another_process_is_a_lost_race() {
    let f = Fixture::podinfo();
    super::deploy_dev_change(&f, "a: 1\n", "one");
    let lock = f.repo.join(".git/refs/heads/env/staging.lock");
    std::fs::write(&lock, b"").unwrap();
    let before = f.refs();
    let o = f.output(&["promote", "dev", "--yes"]);
    std::fs::remove_file(&lock).unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refs/heads/env/staging") && stderr(&o).contains("retry"),
        "{}",
        stderr(&o)
    );
    assert_eq!(f.refs(), before);
}

#[test]
fn a_push_that_succeeded_before_the_local_update_failed_says_so() {
    let f = Fixture::podinfo();
    let remote = super::bare_remote(&f);
    let (_, dev_commit) = super::deploy_dev_change(&f, "a: 1\n", "one");
    let staging = f.rev("env/staging");
    let reflog = f.repo.join(".git/logs/refs/heads/env/staging");
    assert!(reflog.is_file());
    let o = {
        let _ro = ReadOnly::new(&reflog);
        f.output(&["promote", "dev", "--yes", "--push"])
    };
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(!err.contains("nothing was written"), "{err}");
    assert!(
        err.contains("origin already has the update") && err.contains("git fetch origin"),
        "{err}"
    );
    assert!(err.contains("refs/heads/env/staging unchanged"), "{err}");
    assert_eq!(f.git_in(&remote, &["rev-parse", "env/staging"]), dev_commit);
    assert_eq!(f.rev("env/staging"), staging);
}

/// A clone made with `--depth 1`: env/dev is two commits ahead of env/staging, but the cut
/// history cannot show it. Promote must not call that diverged (nor merge it), and tag must
/// not call staging's commit "not on env/dev": both name the shallow clone, exit 2.
#[test]
fn a_shallow_clone_is_named_instead_of_a_wrong_answer() {
    let f = Fixture::podinfo();
    super::bare_remote(&f);
    // Two commits ahead, so the clone's env/dev tip lacks its parent.
    f.commit_on("env/dev", super::DEV_PATCH, "a: 1\n", "one");
    let (dev_tag, _) = super::deploy_dev_change(&f, "a: 2\n", "two");
    f.git(&["push", "-q", "origin", "env/dev", &dev_tag]);
    let url = format!("file://{}", f.tmp.path().join("remote.git").display());
    let shallow = f.tmp.path().join("shallow");
    f.git_in(
        f.tmp.path(),
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            "--no-single-branch",
            &url,
            shallow.to_str().unwrap(),
        ],
    );
    for b in ["env/dev", "env/staging"] {
        f.git_in(&shallow, &["branch", "-q", b, &format!("origin/{b}")]);
    }
    let before = f.git_in(
        &shallow,
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    );
    let staging = f.git_in(&shallow, &["rev-parse", "env/staging"]);
    for args in [
        vec!["promote", "dev", "--yes"],
        vec!["promote", "dev", "--yes", "--strategy", "merge"],
        vec!["tag", "dev", staging.as_str()],
    ] {
        let mut cmd = f.cmd(&args);
        cmd.current_dir(&shallow);
        let o = cmd.output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("shallow clone") && stderr(&o).contains("git fetch --unshallow"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(!stderr(&o).contains("not on branch"), "{}", stderr(&o));
    }
    assert_eq!(
        f.git_in(
            &shallow,
            &["for-each-ref", "--format=%(refname) %(objectname)"]
        ),
        before
    );
}

fn wait_for(path: &Path, child: &mut Child) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the command ended before reaching its write"
        );
        assert!(started.elapsed() < Duration::from_secs(30), "never paused");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

/// The environment lock is part of the compare-and-swap: taken after promote checked it (here
/// while promote is paused between its plan and its write, where a confirmation prompt would
/// wait), it stops the promotion, exit 3, and nothing is written.
#[test]
fn a_lock_taken_between_plan_and_write_stops_the_promotion() {
    let f = Fixture::podinfo();
    super::deploy_dev_change(&f, "a: 1\n", "one");
    let before = f.refs();
    let gate = f.tmp.path().join("gate");
    let mut cmd = f.cmd(&["promote", "dev", "--yes"]);
    cmd.env("GITOPS_TEST_PAUSE_BEFORE_WRITE", &gate)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    wait_for(&gate.with_file_name("gate.waiting"), &mut child);
    f.deploy(&["lock", "staging", "-m", "incident"]).success();
    let locked = f.refs();
    std::fs::write(&gate, b"").unwrap();
    let o = finish(child);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("environment staging was locked while this command ran"),
        "{}",
        stderr(&o)
    );
    assert_eq!(f.refs(), locked, "nothing but the lock was written");
    assert_ne!(locked, before);
}

/// Eight `tag dev` at once on one commit: the environment's deploys are serialised by the
/// compare-and-swap of refs/deploy/latest/dev, so there is one new tag per previous deploy;
/// every other run exits 3 (lost the race) or 0 (already deployed, when it started after).
#[test]
fn parallel_tags_of_one_environment_leave_one_tag_per_previous_deploy() {
    let f = Fixture::podinfo();
    f.deploy(&["tag", "dev"]).success();
    f.commit_on("env/dev", super::DEV_PATCH, "a: 1\n", "one");
    let children: Vec<Child> = (0..8)
        .map(|_| {
            let mut cmd = f.cmd(&["tag", "dev"]);
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let outs: Vec<Output> = children.into_iter().map(finish).collect();
    let mut won = 0;
    for o in &outs {
        match o.status.code() {
            Some(0) if stdout(o).trim().starts_with("deploy/dev/") => won += 1,
            Some(0) => assert!(stderr(o).contains("already deployed"), "{}", stderr(o)),
            Some(3) => assert!(stderr(o).contains("retry"), "{}", stderr(o)),
            other => panic!("unexpected exit {other:?}: {}", stderr(o)),
        }
    }
    assert_eq!(won, 1, "exactly one run tags the commit");
    let tags = f.tags("dev");
    assert_eq!(tags.len(), 2, "{tags:?}");
    let mut previous: Vec<String> = tags
        .iter()
        .map(|t| f.trailer(t, "Deploy-Previous-Tag"))
        .collect();
    previous.sort();
    previous.dedup();
    assert_eq!(
        previous.len(),
        2,
        "each tag names a different previous: {previous:?}"
    );
}

#[test]
fn init_refuses_a_symlinked_gitops_yaml() {
    let f = Fixture::empty();
    std::fs::write(f.repo.join("README"), "config\n").unwrap();
    f.git(&["add", "README"]);
    f.git(&["commit", "-q", "-m", "start"]);
    let outside = f.tmp.path().join("outside.yaml");
    std::os::unix::fs::symlink(&outside, f.repo.join("gitops.yaml")).unwrap();
    let before = f.refs();
    let o = f.output(&["init"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("is a symbolic link"), "{}", stderr(&o));
    assert!(!outside.exists(), "init wrote through the link");
    assert_eq!(f.refs(), before, "nothing committed, no branch");
}

#[test]
fn init_checks_every_branch_name_before_writing_anything() {
    let f = Fixture::empty();
    std::fs::write(f.repo.join("README"), "config\n").unwrap();
    f.git(&["add", "README"]);
    f.git(&["commit", "-q", "-m", "start"]);
    // A branch `env` exists, so `env/dev` cannot be created next to it.
    f.git(&["branch", "env"]);
    let before = f.refs();
    let o = f.output(&["init", "--env", "dev=env/dev", "--env", "prod=main-prod"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot create refs/heads/env/dev: refs/heads/env exists"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("committed"), "{}", stderr(&o));
    assert!(!f.repo.join("gitops.yaml").exists());
    assert_eq!(f.refs(), before);
}

/// The same on the remote's side of a push: its ref held by another push is a lost race
/// (exit 3), its refs directory unwritable is a refusal with the remote's words (exit 1); in
/// both cases the atomic push wrote nothing there and nothing was written here.
#[test]
fn remote_lock_contention_is_a_race_and_a_remote_permission_error_is_not() {
    let f = Fixture::podinfo();
    let remote = super::bare_remote(&f);
    super::deploy_dev_change(&f, "a: 1\n", "one");
    let before = f.refs();
    let held = remote.join("refs/heads/env/staging.lock");
    std::fs::write(&held, b"").unwrap();
    let o = f.output(&["promote", "dev", "--yes", "--push"]);
    std::fs::remove_file(&held).unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("File exists"), "{}", stderr(&o));
    assert_eq!(f.refs(), before);

    let tags = remote.join("refs/tags");
    std::fs::create_dir_all(&tags).unwrap();
    let o = {
        let _ro = ReadOnly::new(&tags);
        f.output(&["promote", "dev", "--yes", "--push"])
    };
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("push to origin refused")
            && stderr(&o).contains("refs/tags/deploy/staging"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("retry"), "{}", stderr(&o));
    assert_eq!(f.refs(), before);
    assert!(
        f.git_in(&remote, &["tag", "--list", "deploy/staging/*"])
            .is_empty()
    );
}

/// Another push lands on the remote after our lease was checked and before the remote's ref
/// transaction (made deterministic with a pre-receive hook that writes the refs, as that push
/// would): the remote's compare-and-swap fails, which is a lost race (exit 3), nothing written
/// on either side. Once for a ref the other push created, once for a branch it moved.
#[test]
fn a_push_overtaken_on_the_remote_itself_is_a_lost_race() {
    use std::os::unix::fs::PermissionsExt;
    for (case, script) in [
        (
            "created",
            "git update-ref refs/deploy/latest/staging refs/heads/main",
        ),
        (
            "moved",
            "git update-ref refs/heads/env/staging \"$(git commit-tree -p refs/heads/env/staging -m other refs/heads/env/staging^{tree})\"",
        ),
    ] {
        let f = Fixture::podinfo();
        let remote = super::bare_remote(&f);
        super::deploy_dev_change(&f, "a: 1\n", "one");
        let hook = remote.join("hooks/pre-receive");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\ncat >/dev/null\nunset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES\n{script}\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let before = f.refs();
        let o = f.output(&["promote", "dev", "--yes", "--push"]);
        assert_eq!(o.status.code(), Some(3), "{case}: {}", stderr(&o));
        assert!(stderr(&o).contains("retry"), "{case}: {}", stderr(&o));
        assert_eq!(f.refs(), before, "{case}");
        assert!(
            f.git_in(&remote, &["tag", "--list", "deploy/staging/*"])
                .is_empty(),
            "{case}"
        );
    }
}
