//! `--push` leases describe what the remote has (issue 13): learned with `git ls-remote` before
//! anything is written, then a remote lacking the ref is pushed with a lease that it still
//! lacks it, a remote at our old value or behind us with a lease on its value, and a remote
//! with commits we lack (or a tag of the same name, or a lock) stops everything, exit 3.
//! Every case runs against a bare remote on a file path.

use std::path::{Path, PathBuf};

use predicates::prelude::*;

use crate::fixture::{Fixture, stderr, stdout};

fn remote_refs(f: &Fixture, remote: &Path) -> String {
    f.git_in(
        remote,
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    )
}

/// A bare remote with main only: a new remote, or environments never pushed.
fn empty_remote(f: &Fixture) -> PathBuf {
    let remote = f.tmp.path().join("new-remote.git");
    f.git(&["init", "-q", "--bare", remote.to_str().unwrap()]);
    f.git_in(&remote, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    f.git(&["remote", "add", "origin", remote.to_str().unwrap()]);
    f.git(&["push", "-q", "origin", "main"]);
    remote
}

/// Someone else's clone commits on `branch` and pushes it.
fn remote_commit(f: &Fixture, remote: &Path, branch: &str) -> String {
    let other = f.tmp.path().join("other");
    if !other.exists() {
        f.git_in(
            f.tmp.path(),
            &[
                "clone",
                "-q",
                remote.to_str().unwrap(),
                other.to_str().unwrap(),
            ],
        );
    }
    f.git_in(&other, &["fetch", "-q", "origin"]);
    f.git_in(
        &other,
        &["checkout", "-q", "-B", branch, &format!("origin/{branch}")],
    );
    std::fs::write(other.join("hotfix.txt"), format!("{branch}\n")).unwrap();
    f.git_in(&other, &["add", "hotfix.txt"]);
    f.git_in(&other, &["commit", "-q", "-m", "remote hotfix"]);
    f.git_in(&other, &["push", "-q", "origin", branch]);
    f.git_in(&other, &["rev-parse", "HEAD"])
}

#[test]
fn a_remote_without_the_branch_gets_it_with_a_lease_that_it_is_still_absent() {
    let f = Fixture::podinfo();
    let remote = empty_remote(&f);
    let (_, dev_commit) = super::deploy_dev_change(&f, "a: 1\n", "one");
    let out = f.output(&["promote", "dev", "--yes", "--push=origin"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tag = stdout(&out).trim().to_string();
    assert_eq!(f.git_in(&remote, &["rev-parse", "env/staging"]), dev_commit);
    assert_eq!(f.git_in(&remote, &["cat-file", "-t", &tag]), "tag");
    assert_eq!(
        f.git_in(&remote, &["rev-parse", "refs/deploy/latest/staging"]),
        f.rev(&tag)
    );
    assert_eq!(f.rev("env/staging"), dev_commit);
}

#[test]
fn a_remote_behind_us_gets_a_lease_on_its_own_value() {
    let f = Fixture::podinfo();
    let remote = super::bare_remote(&f);
    let first = f.commit_on("env/dev", super::DEV_PATCH, "a: 1\n", "one");
    // staging moved locally to an unpushed commit; the remote still has the old staging.
    f.git(&["branch", "-f", "env/staging", &first]);
    let (_, second) = super::deploy_dev_change(&f, "a: 2\n", "two");
    let out = f.output(&["promote", "dev", "--yes", "--push"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(f.git_in(&remote, &["rev-parse", "env/staging"]), second);
    assert_eq!(f.rev("env/staging"), second);
}

#[test]
fn a_remote_with_commits_we_lack_stops_everything_before_any_write() {
    let f = Fixture::podinfo();
    let remote = super::bare_remote(&f);
    remote_commit(&f, &remote, "env/dev");
    f.commit_on("env/dev", super::DEV_PATCH, "a: 1\n", "one");
    let local = f.refs();
    let theirs = remote_refs(&f, &remote);
    // tag --push takes env/dev along (issue 13.2): the remote's env/dev diverged.
    let o = f.output(&["tag", "dev", "--push"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refs/heads/env/dev: it is at")
            && stderr(&o).contains("git fetch origin"),
        "{}",
        stderr(&o)
    );
    assert_eq!(f.refs(), local, "nothing written locally");
    assert_eq!(remote_refs(&f, &remote), theirs, "nothing written there");
}

#[test]
fn tag_push_takes_the_branch_along() {
    let f = Fixture::podinfo();
    let remote = super::bare_remote(&f);
    let commit = f.commit_on("env/dev", super::DEV_PATCH, "a: 1\n", "one");
    let out = f.output(&["tag", "dev", "--push"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tag = stdout(&out).trim().to_string();
    assert_eq!(f.git_in(&remote, &["rev-parse", "env/dev"]), commit);
    assert_eq!(
        f.git_in(&remote, &["rev-parse", &format!("{tag}^{{commit}}")]),
        commit
    );
    // The branch is not moved locally by tag; pushing it again is nothing to do.
    assert_eq!(f.rev("env/dev"), commit);
}

#[test]
fn a_tag_name_taken_on_the_remote_is_a_lost_race() {
    let f = Fixture::podinfo();
    let remote = super::bare_remote(&f);
    let commit = f.commit_on("env/dev", super::DEV_PATCH, "a: 1\n", "one");
    // Another clone made deploy/dev/20260101T204000Z at the same second, on the same commit.
    let name = "deploy/dev/20260101T204000Z";
    f.git(&["tag", "-a", "-m", "theirs", name, &commit]);
    f.git(&["push", "-q", "origin", "env/dev", name]);
    f.git(&["tag", "-d", name]);
    let theirs = remote_refs(&f, &remote);
    let mut cmd = f.cmd(&["tag", "dev", "--push"]);
    cmd.env("GIT_COMMITTER_DATE", "@1767300000 +0000");
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("refs/tags/{name}: it already exists there")),
        "{}",
        stderr(&o)
    );
    assert_eq!(remote_refs(&f, &remote), theirs);
    assert!(f.tags("dev").is_empty(), "no tag written locally");
}

#[test]
fn locks_push_with_leases_and_a_remote_lock_stops_a_pushed_deploy() {
    let f = Fixture::podinfo();
    let remote = super::bare_remote(&f);
    // Locking pushes a lock the remote must not have yet; unlocking deletes exactly ours.
    f.deploy(&["lock", "prod", "-m", "freeze", "--push"])
        .success();
    let lock = f.rev("refs/deploy/locks/prod");
    assert_eq!(
        f.git_in(&remote, &["rev-parse", "refs/deploy/locks/prod"]),
        lock
    );
    f.deploy(&["unlock", "prod", "--push"]).success();
    assert!(!remote_refs(&f, &remote).contains("refs/deploy/locks/prod"));

    // Someone locked staging on the remote; this clone has not fetched it.
    let other = f.tmp.path().join("locker");
    f.git_in(
        f.tmp.path(),
        &[
            "clone",
            "-q",
            remote.to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    );
    let mut cmd = f.cmd(&["lock", "staging", "-m", "release freeze", "--push"]);
    cmd.current_dir(&other);
    assert!(cmd.output().unwrap().status.success());
    super::deploy_dev_change(&f, "a: 1\n", "one");
    let local = f.refs();
    let theirs = remote_refs(&f, &remote);
    let o = f.output(&["promote", "dev", "--yes", "--push"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refs/deploy/locks/staging: origin has it")
            && stderr(&o).contains("environment staging was locked"),
        "{}",
        stderr(&o)
    );
    assert_eq!(f.refs(), local);
    assert_eq!(remote_refs(&f, &remote), theirs);
    // Locking the same environment here and pushing: the remote already has a lock.
    let o = f.output(&["lock", "staging", "-m", "mine", "--push"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("already exists there"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn push_with_a_space_says_to_use_equals() {
    let f = Fixture::podinfo();
    super::bare_remote(&f);
    super::deploy_dev_change(&f, "a: 1\n", "one");
    let before = f.refs();
    for args in [
        vec!["promote", "dev", "staging", "--yes", "--push", "origin"],
        vec!["lock", "prod", "-m", "x", "--push", "origin"],
        // Parses (origin as the revision, or as the target), but origin is a remote.
        vec!["tag", "dev", "--push", "origin"],
        vec!["promote", "dev", "--yes", "--push", "origin"],
    ] {
        f.deploy(&args).code(2).stderr(
            predicate::str::contains("--push takes the remote as --push=origin")
                .and(predicate::str::contains("unexpected argument").not()),
        );
    }
    assert_eq!(f.refs(), before);
    // A word that is not a remote after a bare --push is the positional it looks like.
    f.deploy(&["promote", "--push", "dev", "--yes", "--dry-run"])
        .success();
}

/// `tag --push` from a clone whose branch is behind the remote's: the remote branch already
/// contains the tagged commit, so only the tag is pushed and the branch is left alone.
#[test]
fn tag_push_from_a_clone_behind_the_remote_pushes_only_the_tag() {
    let f = Fixture::podinfo();
    let remote = super::bare_remote(&f);
    let ahead = remote_commit(&f, &remote, "env/dev");
    f.git(&["fetch", "-q", "origin"]);
    let local = f.rev("env/dev");
    let out = f.output(&["tag", "dev", "--push"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tag = stdout(&out).trim().to_string();
    assert_eq!(f.git_in(&remote, &["rev-parse", "env/dev"]), ahead);
    assert_eq!(
        f.git_in(&remote, &["rev-parse", &format!("{tag}^{{commit}}")]),
        local
    );
}
