//! Races (issue 8): many promotions of one environment at once, locally and through `--push`
//! from several clones of one bare remote while someone else pushes to the same branch.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{Fixture, stderr, stdout};

/// Bounded wait: a hung promotion fails the test instead of stalling the suite.
fn finish(mut child: Child) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Every deploy tag in `dir` points at a commit its environment's branch has had: the
/// branch contains it. `branch_prefix` is `env/` locally (and in a bare remote).
fn assert_tags_on_their_branches(f: &Fixture, dir: &Path) {
    let tags = f.git_in(dir, &["tag", "--list", "deploy/*"]);
    for tag in tags.lines().filter(|l| !l.is_empty()) {
        let env = tag.split('/').nth(1).unwrap();
        let mut cmd = std::process::Command::new("git");
        cmd.current_dir(dir).args([
            "merge-base",
            "--is-ancestor",
            &format!("{tag}^{{commit}}"),
            &format!("refs/heads/env/{env}"),
        ]);
        f.env(&mut cmd);
        let o = cmd.output().unwrap();
        assert!(
            o.status.success(),
            "{}: tag {tag} points at a commit env/{env} never had",
            dir.display()
        );
    }
}

/// Tallies outcomes: exit 0 with a new tag wins; exit 0 "nothing to promote" (started after
/// the winner) and exit 3 (lost the race, says to retry) lose; anything else fails the test.
fn winners(outs: &[Output]) -> usize {
    let mut winners = 0;
    for o in outs {
        match o.status.code() {
            Some(0) if stdout(o).trim().starts_with("deploy/staging/") => winners += 1,
            Some(0) => assert!(stderr(o).contains("nothing to promote"), "{}", stderr(o)),
            Some(3) => assert!(stderr(o).contains("retry"), "{}", stderr(o)),
            other => panic!("unexpected exit {other:?}: {}", stderr(o)),
        }
    }
    winners
}

#[test]
fn ten_promotions_at_once_have_one_winner_and_tags_stay_on_their_branch() {
    let f = Fixture::podinfo();
    let (_, dev_commit) = super::deploy_dev_change(&f, "a: 1\n", "one");
    let children: Vec<Child> = (0..10)
        .map(|_| {
            let mut cmd = f.cmd(&["promote", "dev", "--yes"]);
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let outs: Vec<Output> = children.into_iter().map(finish).collect();
    assert_eq!(winners(&outs), 1, "exactly one promotion wins");
    assert_eq!(f.rev("env/staging"), dev_commit);
    assert_eq!(f.tags("staging").len(), 1);
    assert_tags_on_their_branches(&f, &f.repo);
    f.fsck();
}

fn clone(f: &Fixture, remote: &Path, name: &str) -> PathBuf {
    let dir = f.tmp.path().join(name);
    f.git_in(
        f.tmp.path(),
        &[
            "clone",
            "-q",
            remote.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
    );
    // Local environment branches, as a user of git-deploy has them.
    for b in ["env/dev", "env/staging", "env/prod"] {
        f.git_in(&dir, &["branch", "-q", b, &format!("origin/{b}")]);
    }
    dir
}

#[test]
fn pushed_promotions_from_many_clones_racing_a_plain_push_have_one_winner() {
    let f = Fixture::podinfo();
    let remote = super::bare_remote(&f);
    let (dev_tag, dev_commit) = super::deploy_dev_change(&f, "a: 1\n", "one");
    f.git(&["push", "-q", "origin", "env/dev", &dev_tag]);
    let staging_before = f.git_in(&remote, &["rev-parse", "env/staging"]);

    let clones: Vec<PathBuf> = (0..6)
        .map(|i| clone(&f, &remote, &format!("clone-{i}")))
        .collect();
    // Someone else prepares a hotfix on staging, to push at the same moment.
    let hotfixer = clone(&f, &remote, "hotfixer");
    f.git_in(&hotfixer, &["checkout", "-q", "env/staging"]);
    std::fs::write(hotfixer.join("hotfix.txt"), "x\n").unwrap();
    f.git_in(&hotfixer, &["add", "hotfix.txt"]);
    f.git_in(&hotfixer, &["commit", "-q", "-m", "hotfix"]);
    let hotfix = f.git_in(&hotfixer, &["rev-parse", "HEAD"]);

    let mut children: Vec<Child> = clones
        .iter()
        .map(|dir| {
            let mut cmd = f.cmd(&["promote", "dev", "--yes", "--push"]);
            cmd.current_dir(dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let mut push = std::process::Command::new("git");
    push.current_dir(&hotfixer)
        .args(["push", "-q", "origin", "env/staging"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    f.env(&mut push);
    children.insert(3, push.spawn().unwrap());
    let mut outs: Vec<Output> = children.into_iter().map(finish).collect();
    let push_out = outs.remove(3);
    let hotfix_won = push_out.status.success();

    let promoted = winners(&outs);
    assert_eq!(
        promoted + usize::from(hotfix_won),
        1,
        "exactly one writer wins (hotfix push won: {hotfix_won}): {}",
        stderr(&push_out)
    );
    let remote_staging = f.git_in(&remote, &["rev-parse", "env/staging"]);
    if hotfix_won {
        assert_eq!(remote_staging, hotfix);
        assert!(
            f.git_in(&remote, &["tag", "--list", "deploy/staging/*"])
                .is_empty(),
            "no staging tag on the remote"
        );
    } else {
        assert_eq!(remote_staging, dev_commit);
        assert_eq!(
            f.git_in(&remote, &["tag", "--list", "deploy/staging/*"])
                .lines()
                .count(),
            1
        );
    }
    assert_ne!(staging_before, remote_staging);
    // Losers wrote nothing locally; the winner moved its branch and tag together.
    for dir in &clones {
        assert_tags_on_their_branches(&f, dir);
        let local = f.git_in(dir, &["rev-parse", "env/staging"]);
        assert!(local == staging_before || local == dev_commit, "{local}");
    }
    assert_tags_on_their_branches(&f, &remote);
}
