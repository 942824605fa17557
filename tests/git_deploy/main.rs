//! End-to-end tests of `git deploy` against real repositories, checked with the real `git`.

mod fixture;
mod gates;
mod push;
mod races;
mod signing;
mod trust;
mod writer;

use std::process::Command;

use fixture::{Fixture, stderr, stdout};
use predicates::prelude::*;

const DEV_PATCH: &str = "deploy/overlays/dev/patch.yaml";

/// dev gets a change and a deploy tag; returns (tag, commit).
fn deploy_dev_change(f: &Fixture, content: &str, msg: &str) -> (String, String) {
    let commit = f.commit_on("env/dev", DEV_PATCH, content, msg);
    let out = f.output(&["tag", "dev"]);
    assert!(out.status.success(), "{}", stderr(&out));
    (stdout(&out).trim().to_string(), commit)
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn init_commits_gitops_yaml_and_creates_branches() {
    let f = Fixture::podinfo();
    let head = f.rev("main");
    let yaml = f.read("main", "gitops.yaml");
    assert!(yaml.contains("name: \"staging\""), "{yaml}");
    assert!(
        yaml.contains("path: \"deploy/overlays/production\""),
        "{yaml}"
    );
    assert_eq!(
        f.git(&["log", "-1", "--format=%s", "main"]),
        "Add gitops.yaml (git deploy init)"
    );
    for b in ["env/dev", "env/staging", "env/prod"] {
        assert_eq!(f.rev(b), head, "{b} should start at HEAD");
    }
    // Never overwrites, and is idempotent without --env.
    f.deploy(&["init", "--env", "x=env/x"])
        .code(1)
        .stderr(predicate::str::contains("refusing to overwrite"));
    f.deploy(&["init"])
        .success()
        .stderr(predicate::str::contains("nothing to create"));
    f.git(&["branch", "-D", "env/prod"]);
    f.deploy(&["init"]).success();
    assert_eq!(f.rev("env/prod"), head);
    f.fsck();
}

#[test]
fn init_defaults_and_dry_run() {
    let f = Fixture::empty();
    std::fs::write(f.repo.join("README"), "config\n").unwrap();
    f.git(&["add", "README"]);
    f.git(&["commit", "-q", "-m", "start"]);
    let before = f.refs();
    f.deploy(&["init", "--dry-run"])
        .success()
        .stdout(predicate::str::contains("env/staging"));
    assert_eq!(f.refs(), before);
    assert!(!f.repo.join("gitops.yaml").exists());
    f.deploy(&["init"]).success();
    for b in ["env/dev", "env/staging", "env/prod"] {
        assert!(f.git_ok(&["rev-parse", "--verify", b]), "{b}");
    }
}

#[test]
fn init_rejects_bad_env_flags_and_bare_repositories() {
    let f = Fixture::empty();
    f.deploy(&["init", "--env", "dev"])
        .code(2)
        .stderr(predicate::str::contains("missing '='"));
    f.deploy(&["init", "--env", "dev=env..dev"])
        .code(2)
        .stderr(predicate::str::contains("contains '..'"));
    f.deploy(&["init", "--env", "a/b=env/x"])
        .code(2)
        .stderr(predicate::str::contains("environment name"));
    f.deploy(&["init", "--env", "a=env/a", "--env", "a=env/b"])
        .code(2)
        .stderr(predicate::str::contains("duplicate"));
    assert!(!f.repo.join("gitops.yaml").exists());
    let bare = f.tmp.path().join("bare.git");
    f.git(&["init", "-q", "--bare", bare.to_str().unwrap()]);
    let mut cmd = f.cmd(&["init"]);
    cmd.current_dir(&bare);
    assert_cmd::assert::Assert::new(cmd.output().unwrap())
        .code(2)
        .stderr(predicate::str::contains("bare repository"));
}

#[test]
fn tag_creates_an_annotated_tag_with_trailers_git_can_read() {
    let f = Fixture::podinfo();
    let out = f.output(&["tag", "dev", "-m", "First deploy of dev."]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tag = stdout(&out).trim().to_string();
    assert!(
        regex_like_tag(&tag, "dev"),
        "tag name {tag} should be deploy/dev/<YYYYMMDD>T<HHMMSS>Z"
    );
    assert_eq!(f.git(&["cat-file", "-t", &tag]), "tag", "must be annotated");
    assert_eq!(f.rev(&format!("{tag}^{{commit}}")), f.rev("env/dev"));
    assert_eq!(f.trailer(&tag, "Deploy-Env"), "dev");
    assert_eq!(f.trailer(&tag, "Deploy-Action"), "tag");
    assert_eq!(f.trailer(&tag, "Deploy-Branch"), "env/dev");
    assert_eq!(
        f.trailer(&tag, "Deploy-Tool"),
        format!("git-deploy/{}", env!("CARGO_PKG_VERSION"))
    );
    let subject = f.git(&[
        "for-each-ref",
        "--format=%(contents:subject)",
        &format!("refs/tags/{tag}"),
    ]);
    assert_eq!(
        subject,
        format!("deploy dev: tag {}", &f.rev("env/dev")[..7])
    );
    assert_eq!(
        f.git(&[
            "for-each-ref",
            "--format=%(taggername) %(taggeremail)",
            &format!("refs/tags/{tag}")
        ]),
        "Ann Operator <ann@example.com>"
    );
    f.fsck();
    // Tagging the already-tagged head again is a no-op.
    let before = f.refs();
    f.deploy(&["tag", "dev"])
        .success()
        .stderr(predicate::str::contains("already deployed"));
    assert_eq!(f.refs(), before);
}

fn regex_like_tag(tag: &str, env: &str) -> bool {
    let Some(stamp) = tag.strip_prefix(&format!("deploy/{env}/")) else {
        return false;
    };
    let b = stamp.as_bytes();
    b.len() >= 16
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
}

#[test]
fn tag_names_collide_into_numbered_suffixes() {
    let f = Fixture::podinfo();
    // Same committer second for both tags: the second one gets -2.
    let a = f.commit_on("env/dev", DEV_PATCH, "a: 1\n", "a");
    let mut cmd = f.cmd(&["tag", "dev", &a]);
    cmd.env("GIT_COMMITTER_DATE", "@1767300000 +0000");
    let first = stdout(&cmd.output().unwrap()).trim().to_string();
    f.commit_on("env/dev", DEV_PATCH, "a: 2\n", "b");
    let mut cmd = f.cmd(&["tag", "dev"]);
    cmd.env("GIT_COMMITTER_DATE", "@1767300000 +0000");
    let second = stdout(&cmd.output().unwrap()).trim().to_string();
    assert_eq!(first, "deploy/dev/20260101T204000Z");
    assert_eq!(second, "deploy/dev/20260101T204000Z-2");
    // And -2 sorts after the plain name: it is the latest.
    let log = json(&f.output(&["log", "dev", "-o", "json"]));
    assert_eq!(log["tags"][0]["name"], second);
}

#[test]
fn tag_refuses_bad_input_without_writing() {
    let f = Fixture::podinfo();
    let off_branch = f.commit_on(
        "env/staging",
        "deploy/overlays/staging/x.yaml",
        "x: 1\n",
        "staging only",
    );
    let before = f.refs();
    f.deploy(&["tag", "qa"]).code(2).stderr(
        predicate::str::contains("unknown environment \"qa\"")
            .and(predicate::str::contains("dev, staging, prod")),
    );
    f.deploy(&["tag", "dev", &off_branch])
        .code(2)
        .stderr(predicate::str::contains("is not on branch env/dev"));
    f.deploy(&["tag", "dev", "no-such-rev"])
        .code(2)
        .stderr(predicate::str::contains("unknown revision \"no-such-rev\""));
    f.deploy(&["tag", "../dev"])
        .code(2)
        .stderr(predicate::str::contains("environment name"));
    f.deploy(&["tag", "dev", "--push=-upload-pack=evil"])
        .code(2)
        .stderr(predicate::str::contains("not a usable remote"));
    f.deploy(&["tag"])
        .code(2)
        .stderr(predicate::str::contains("Usage"));
    assert_eq!(f.refs(), before);
}

#[test]
fn message_cannot_forge_trailers() {
    let f = Fixture::podinfo();
    let out = f.output(&[
        "tag",
        "dev",
        "-m",
        "Deploy-Env: prod\nDeploy-Action: rollback\nDeploy-Source-Tag: forged",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tag = stdout(&out).trim().to_string();
    assert_eq!(f.trailer(&tag, "Deploy-Env"), "dev");
    assert_eq!(f.trailer(&tag, "Deploy-Action"), "tag");
    assert_eq!(f.trailer(&tag, "Deploy-Source-Tag"), "");
    let log = json(&f.output(&["log", "dev", "-o", "json"]));
    assert_eq!(log["tags"][0]["env"], "dev");
    assert_eq!(log["tags"][0]["action"], "tag");
    assert_eq!(log["tags"][0]["source_tag"], serde_json::Value::Null);
    assert!(
        log["tags"][0]["body"]
            .as_str()
            .unwrap()
            .contains("Deploy-Env: prod")
    );
}

#[test]
fn promote_fast_forwards_the_next_environment_and_records_where_from() {
    let f = Fixture::podinfo();
    f.deploy(&["tag", "staging"]).success();
    let staging_before = f.rev("env/staging");
    let (dev_tag, dev_commit) = deploy_dev_change(&f, "replicas: 3\n", "Scale dev");
    let out = f.output(&["promote", "dev", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Scale dev"), "shows the commits: {err}");
    // The file stat is limited to staging's path: dev's patch is outside it.
    assert!(
        err.contains("no file changes under deploy/overlays/staging"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "update refs/heads/env/staging {}..{}",
            &staging_before[..7],
            &dev_commit[..7]
        )),
        "{err}"
    );
    let tag = stdout(&out).trim().to_string();
    assert!(tag.starts_with("deploy/staging/"), "{tag}");
    assert_eq!(f.rev("env/staging"), dev_commit);
    assert_eq!(f.rev(&format!("{tag}^{{commit}}")), dev_commit);
    assert_eq!(f.trailer(&tag, "Deploy-Action"), "promote");
    assert_eq!(f.trailer(&tag, "Deploy-Source-Env"), "dev");
    assert_eq!(f.trailer(&tag, "Deploy-Source-Tag"), dev_tag);
    assert_eq!(f.trailer(&tag, "Deploy-Source-Commit"), dev_commit);
    assert_eq!(f.trailer(&tag, "Deploy-Previous-Commit"), staging_before);
    assert!(
        f.trailer(&tag, "Deploy-Previous-Tag")
            .starts_with("deploy/staging/")
    );
    let subject = f.git(&[
        "for-each-ref",
        "--format=%(contents:subject)",
        &format!("refs/tags/{tag}"),
    ]);
    assert_eq!(
        subject,
        format!(
            "deploy staging: promote dev {dev_tag} ({})",
            &dev_commit[..7]
        )
    );
    // Promoting again finds nothing to do, and says so without a new tag.
    let before = f.refs();
    f.deploy(&["promote", "dev", "--yes"])
        .success()
        .stderr(predicate::str::contains("nothing to promote"));
    assert_eq!(f.refs(), before);
    // And on to prod, through `git deploy` as git runs it, with an explicit target.
    let path = format!(
        "{}:{}",
        std::path::Path::new(fixture::BIN)
            .parent()
            .unwrap()
            .display(),
        std::env::var("PATH").unwrap()
    );
    let mut git = Command::new("git");
    git.current_dir(&f.repo)
        .args(["deploy", "promote", "staging", "prod", "--yes"]);
    f.env(&mut git);
    git.env("PATH", path);
    let out = git.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(f.rev("env/prod"), dev_commit);
    f.fsck();
}

#[test]
fn promote_shows_file_changes_under_the_target_path() {
    let f = Fixture::podinfo();
    let commit = f.commit_on(
        "env/dev",
        "deploy/overlays/staging/extra.yaml",
        "a: 1\nb: 2\n",
        "Prepare staging",
    );
    f.deploy(&["tag", "dev"]).success();
    let out = f.output(&["promote", "dev", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("deploy/overlays/staging/extra.yaml | 2 ++ (new)"),
        "{err}"
    );
    assert!(
        err.contains("1 file changed, 2 insertions(+), 0 deletions(-)"),
        "{err}"
    );
    let plan = stdout(&out);
    assert!(plan.contains("update refs/heads/env/staging"), "{plan}");
    assert!(plan.contains(&commit[..7]), "{plan}");
    assert!(plan.contains("create refs/tags/deploy/staging/"), "{plan}");
}

#[test]
fn promote_dry_run_and_missing_terminal_write_nothing() {
    let f = Fixture::podinfo();
    deploy_dev_change(&f, "x: 1\n", "change");
    let refs = f.refs();
    let objects = f.object_count();
    f.deploy(&["promote", "dev", "--dry-run"])
        .success()
        .stderr(predicate::str::contains("nothing was written"));
    assert_eq!(f.refs(), refs);
    assert_eq!(
        f.object_count(),
        objects,
        "a dry run writes no objects either"
    );
    f.deploy(&["promote", "dev"])
        .code(1)
        .stderr(predicate::str::contains("no terminal").and(predicate::str::contains("--yes")));
    assert_eq!(f.refs(), refs);
    assert_eq!(f.object_count(), objects);
}

#[test]
fn promote_refuses_a_diverged_target_and_offers_merge_or_tree() {
    let f = Fixture::podinfo();
    let hotfix = f.commit_on(
        "env/staging",
        "deploy/overlays/staging/hotfix.yaml",
        "fix: true\n",
        "Hotfix staging",
    );
    let (dev_tag, dev_commit) = deploy_dev_change(&f, "x: 1\n", "Dev change");
    let refs = f.refs();
    f.deploy(&["promote", "dev", "--yes"]).code(1).stderr(
        predicate::str::contains("cannot fast-forward env/staging")
            .and(predicate::str::contains(&hotfix[..7]))
            .and(predicate::str::contains("Hotfix staging"))
            .and(predicate::str::contains("--strategy merge"))
            .and(predicate::str::contains("--strategy tree")),
    );
    assert_eq!(f.refs(), refs);

    // merge keeps the hotfix and brings dev's change, in a two-parent commit.
    let out = f.output(&["promote", "dev", "--strategy", "merge", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let head = f.rev("env/staging");
    assert_eq!(
        f.git(&["rev-list", "--parents", "-n1", &head]),
        format!("{head} {hotfix} {dev_commit}")
    );
    assert_eq!(
        f.read("env/staging", "deploy/overlays/staging/hotfix.yaml"),
        "fix: true"
    );
    assert_eq!(f.read("env/staging", DEV_PATCH), "x: 1");
    let tag = stdout(&out).trim().to_string();
    assert_eq!(f.trailer(&tag, "Deploy-Source-Tag"), dev_tag);
    assert_eq!(f.rev(&format!("{tag}^{{commit}}")), head);
    f.fsck();
}

#[test]
fn promote_with_tree_strategy_takes_the_source_tree_without_rewriting() {
    let f = Fixture::podinfo();
    let hotfix = f.commit_on(
        "env/staging",
        "deploy/overlays/staging/hotfix.yaml",
        "fix: true\n",
        "Hotfix staging",
    );
    let (_, dev_commit) = deploy_dev_change(&f, "x: 1\n", "Dev change");
    let out = f.output(&["promote", "dev", "--strategy", "tree", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let head = f.rev("env/staging");
    assert_eq!(
        f.rev("env/staging^{tree}"),
        f.rev(&format!("{dev_commit}^{{tree}}"))
    );
    assert!(
        f.git_ok(&["merge-base", "--is-ancestor", &hotfix, &head]),
        "history is kept"
    );
    assert_eq!(
        f.git(&["rev-list", "--parents", "-n1", &head]),
        format!("{head} {hotfix} {dev_commit}"),
        "one new commit whose parents are the old head and the source"
    );
    // Afterwards staging counts as up to date with dev.
    let status = json(&f.output(&["status", "-o", "json"]));
    assert_eq!(status["environments"][1]["pending"], 0);
}

#[test]
fn merge_conflicts_are_listed_and_nothing_is_written() {
    let f = Fixture::podinfo();
    f.commit_on(
        "env/staging",
        "deploy/overlays/staging/shared.yaml",
        "value: staging\n",
        "staging edit",
    );
    f.commit_on(
        "env/dev",
        "deploy/overlays/staging/shared.yaml",
        "value: dev\n",
        "dev edit",
    );
    f.deploy(&["tag", "dev"]).success();
    let refs = f.refs();
    f.deploy(&["promote", "dev", "--strategy", "merge", "--yes"])
        .code(1)
        .stderr(
            predicate::str::contains("conflicts in").and(predicate::str::contains(
                "deploy/overlays/staging/shared.yaml",
            )),
        );
    assert_eq!(f.refs(), refs);
}

#[test]
fn promote_errors_name_what_is_wrong() {
    let f = Fixture::podinfo();
    f.deploy(&["promote", "dev", "--yes"])
        .code(2)
        .stderr(predicate::str::contains("has no deploy tag"));
    f.deploy(&["promote", "qa", "--yes"])
        .code(2)
        .stderr(predicate::str::contains("unknown environment \"qa\""));
    f.deploy(&["tag", "dev"]).success();
    f.deploy(&["promote", "dev", "dev", "--yes"])
        .code(2)
        .stderr(predicate::str::contains("to itself"));
    f.deploy(&[
        "promote",
        "dev",
        "--tag",
        "deploy/dev/20990101T000000Z",
        "--yes",
    ])
    .code(2)
    .stderr(predicate::str::contains("no tag named"));
    f.deploy(&["promote", "dev", "--tag", "v1", "--yes"])
        .code(2)
        .stderr(predicate::str::contains("not a deploy tag"));
    f.deploy(&["tag", "prod"]).success();
    f.deploy(&["promote", "prod", "--yes"])
        .code(2)
        .stderr(predicate::str::contains("last environment"));
}

#[test]
fn malformed_gitops_yaml_is_reported_with_file_and_line() {
    let f = Fixture::podinfo();
    let yaml = f.read("main", "gitops.yaml");
    std::fs::write(
        f.repo.join("gitops.yaml"),
        format!("{yaml}\n    colour: blue\n"),
    )
    .unwrap();
    f.git(&["commit", "-q", "-am", "break config"]);
    let refs = f.refs();
    let out = f.output(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("gitops.yaml at HEAD"), "{err}");
    assert!(
        err.contains(&format!(":{}:", yaml.lines().count() + 1)),
        "names the line: {err}"
    );
    assert!(err.contains("colour"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    f.deploy(&["tag", "dev"]).code(2);
    assert_eq!(f.refs(), refs);
}

#[test]
fn outside_a_repository_is_invalid_input() {
    let f = Fixture::empty();
    let dir = f.tmp.path().join("not-a-repo");
    std::fs::create_dir(&dir).unwrap();
    let mut cmd = f.cmd(&["status"]);
    cmd.current_dir(&dir)
        .env("GIT_CEILING_DIRECTORIES", f.tmp.path());
    assert_cmd::assert::Assert::new(cmd.output().unwrap())
        .code(2)
        .stderr(predicate::str::contains("not a git repository"));
}

#[test]
fn rollback_adds_a_commit_restoring_the_previous_deploy() {
    let f = Fixture::podinfo();
    let (good_tag, good) = deploy_dev_change(&f, "version: good\n", "Good");
    let (bad_tag, bad) = deploy_dev_change(&f, "version: bad\n", "Bad");
    let out = f.output(&["rollback", "dev", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tag = stdout(&out).trim().to_string();
    let head = f.rev("env/dev");
    assert_eq!(
        f.rev(&format!("{head}^")),
        bad,
        "one new commit on top: nothing rewritten"
    );
    assert_eq!(f.rev("env/dev^{tree}"), f.rev(&format!("{good}^{{tree}}")));
    assert_eq!(f.read("env/dev", DEV_PATCH), "version: good");
    assert_eq!(f.trailer(&tag, "Deploy-Action"), "rollback");
    assert_eq!(f.trailer(&tag, "Deploy-Source-Tag"), good_tag);
    assert_eq!(f.trailer(&tag, "Deploy-Previous-Tag"), bad_tag);
    assert_eq!(f.trailer(&tag, "Deploy-Previous-Commit"), bad);
    // Rolling back again goes back to the bad deploy (the one before the rollback), like helm.
    f.deploy(&["rollback", "dev", &bad_tag, "--yes"]).success();
    assert_eq!(f.read("env/dev", DEV_PATCH), "version: bad");
    f.fsck();
}

#[test]
fn rollback_refusals() {
    let f = Fixture::podinfo();
    f.deploy(&["rollback", "dev", "--yes"])
        .code(2)
        .stderr(predicate::str::contains("no deploy tags"));
    let (dev_tag, _) = deploy_dev_change(&f, "a: 1\n", "a");
    f.deploy(&["rollback", "dev", "--yes"])
        .code(2)
        .stderr(predicate::str::contains("no earlier deploy"));
    f.deploy(&["tag", "staging"]).success();
    f.deploy(&["rollback", "staging", &dev_tag, "--yes"])
        .code(2)
        .stderr(predicate::str::contains(
            "deploy tag of dev, not of staging",
        ));
    deploy_dev_change(&f, "a: 2\n", "b");
    let refs = f.refs();
    f.deploy(&["rollback", "dev"])
        .code(1)
        .stderr(predicate::str::contains("no terminal"));
    f.deploy(&["rollback", "dev", "--dry-run"])
        .success()
        .stdout(predicate::str::contains("update refs/heads/env/dev"));
    assert_eq!(f.refs(), refs);
}

#[test]
fn log_lists_deploys_newest_first() {
    let f = Fixture::podinfo();
    let (t1, c1) = deploy_dev_change(&f, "a: 1\n", "one");
    let (t2, _) = deploy_dev_change(&f, "a: 2\n", "two");
    let out = f.output(&["rollback", "dev", "--yes"]);
    let t3 = stdout(&out).trim().to_string();
    let log = json(&f.output(&["log", "dev", "-o", "json"]));
    let names: Vec<&str> = log["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [t3.as_str(), t2.as_str(), t1.as_str()]);
    assert_eq!(log["tags"][0]["action"], "rollback");
    assert_eq!(log["tags"][0]["source_tag"], t1);
    assert_eq!(log["tags"][2]["commit"], c1);
    assert_eq!(log["tags"][2]["tagger"], "Ann Operator");
    assert!(
        log["tags"][2]["date"]
            .as_str()
            .unwrap()
            .starts_with("2026-01-01T")
    );
    let limited = json(&f.output(&["log", "dev", "-n", "1", "-o", "json"]));
    assert_eq!(limited["tags"].as_array().unwrap().len(), 1);
    let table = stdout(&f.output(&["log", "dev"]));
    assert!(table.starts_with("TAG"), "{table}");
    assert!(table.contains(&t2) && table.contains("rollback"), "{table}");
    f.deploy(&["log", "qa"])
        .code(2)
        .stderr(predicate::str::contains("unknown environment"));
}

#[test]
fn show_prints_a_tags_record() {
    let f = Fixture::podinfo();
    let (dev_tag, dev_commit) = deploy_dev_change(&f, "a: 1\n", "one");
    let out = f.output(&["promote", "dev", "--yes", "-m", "Ship it."]);
    let tag = stdout(&out).trim().to_string();
    let shown = json(&f.output(&["show", &tag, "-o", "json"]));
    assert_eq!(shown["env"], "staging");
    assert_eq!(shown["action"], "promote");
    assert_eq!(shown["source_tag"], dev_tag);
    assert_eq!(shown["commit"], dev_commit);
    assert_eq!(shown["body"], "Ship it.");
    assert_eq!(shown["branch"], "env/staging");
    let text = stdout(&f.output(&["show", &format!("refs/tags/{tag}")]));
    assert!(
        text.contains("Source tag") && text.contains(&dev_tag),
        "{text}"
    );
    f.deploy(&["show", "deploy/dev/20990101T000000Z"])
        .code(2)
        .stderr(predicate::str::contains("no tag named"));
}

#[test]
fn diff_shows_commits_and_changes_one_environment_lacks() {
    let f = Fixture::podinfo();
    f.commit_on(
        "env/dev",
        "deploy/overlays/staging/new.yaml",
        "a: 1\n",
        "Add new.yaml",
    );
    f.commit_on(
        "env/dev",
        "deploy/overlays/dev/kustomization.yaml",
        "resources: []\n",
        "Empty dev",
    );
    let stat = stdout(&f.output(&["diff", "dev", "staging", "--stat"]));
    assert!(
        stat.contains("2 commits in dev (env/dev) not in staging (env/staging)"),
        "{stat}"
    );
    assert!(
        stat.contains("Add new.yaml") && stat.contains("Empty dev"),
        "{stat}"
    );
    assert!(stat.contains("deploy/overlays/staging/new.yaml"), "{stat}");
    assert!(!stat.contains("+a: 1"), "--stat shows no content: {stat}");
    let full = stdout(&f.output(&["diff", "dev", "staging"]));
    assert!(full.contains("+a: 1"), "{full}");
    assert!(full.contains("+resources: []"), "{full}");
    let back = stdout(&f.output(&["diff", "staging", "dev", "--stat"]));
    assert!(back.contains("0 commits in staging"), "{back}");
    let j = json(&f.output(&["diff", "dev", "staging", "-o", "json"]));
    assert_eq!(j["commits"].as_array().unwrap().len(), 2);
    assert_eq!(j["files"].as_array().unwrap().len(), 2);
    f.deploy(&["diff", "dev", "qa"]).code(2);
}

#[test]
fn status_reports_heads_tags_and_pending_promotions() {
    let f = Fixture::podinfo();
    deploy_dev_change(&f, "a: 1\n", "one");
    f.commit_on("env/dev", DEV_PATCH, "a: 2\n", "two, untagged");
    let s = json(&f.output(&["status", "-o", "json"]));
    let envs = s["environments"].as_array().unwrap();
    assert_eq!(envs.len(), 3);
    assert_eq!(envs[0]["name"], "dev");
    assert_eq!(envs[0]["commit"], f.rev("env/dev"));
    assert!(envs[0]["tag"].as_str().unwrap().starts_with("deploy/dev/"));
    assert_eq!(envs[0]["tagged"], false, "head moved past the tag");
    assert_eq!(
        envs[0]["pending"],
        serde_json::Value::Null,
        "dev has no previous environment"
    );
    assert_eq!(envs[1]["pending"], 2, "staging lacks both dev commits");
    assert_eq!(envs[2]["pending"], 0);
    assert_eq!(envs[1]["tag"], serde_json::Value::Null);
    let table = stdout(&f.output(&["status"]));
    assert!(table.contains("2 from dev"), "{table}");
}

#[test]
fn locks_refuse_writes_naming_holder_and_reason() {
    let f = Fixture::podinfo();
    deploy_dev_change(&f, "a: 1\n", "one");
    f.deploy(&["lock", "staging", "-m", "Release freeze until Monday"])
        .success();
    assert!(f.git_ok(&["rev-parse", "--verify", "refs/deploy/locks/staging"]));
    let refs = f.refs();
    for args in [vec!["promote", "dev", "--yes"], vec!["tag", "staging"]] {
        f.deploy(&args).code(1).stderr(
            predicate::str::contains(
                "environment staging is locked by Ann Operator <ann@example.com>",
            )
            .and(predicate::str::contains("Release freeze until Monday"))
            .and(predicate::str::contains("--ignore-lock")),
        );
    }
    assert_eq!(f.refs(), refs);
    f.deploy(&["lock", "staging", "-m", "again"])
        .code(1)
        .stderr(predicate::str::contains("already locked"));
    let s = json(&f.output(&["status", "-o", "json"]));
    assert_eq!(
        s["environments"][1]["locked"]["reason"],
        "Release freeze until Monday"
    );
    f.deploy(&["promote", "dev", "--yes", "--ignore-lock"])
        .success();
    f.deploy(&["unlock", "staging"]).success();
    assert!(!f.git_ok(&["rev-parse", "--verify", "refs/deploy/locks/staging"]));
    f.deploy(&["unlock", "staging"])
        .success()
        .stderr(predicate::str::contains("not locked"));
    f.deploy(&["lock", "qa", "-m", "x"]).code(2);
}

fn bare_remote(f: &Fixture) -> std::path::PathBuf {
    let remote = f.tmp.path().join("remote.git");
    f.git(&["init", "-q", "--bare", remote.to_str().unwrap()]);
    // As on a git host: clones check out main, whose gitops.yaml names the environments.
    f.git_in(&remote, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    f.git(&["remote", "add", "origin", remote.to_str().unwrap()]);
    f.git(&[
        "push",
        "-q",
        "origin",
        "main",
        "env/dev",
        "env/staging",
        "env/prod",
    ]);
    remote
}

#[test]
fn push_sends_branch_and_tag_atomically() {
    let f = Fixture::podinfo();
    let remote = bare_remote(&f);
    let (_, dev_commit) = deploy_dev_change(&f, "a: 1\n", "one");
    let out = f.output(&["promote", "dev", "--yes", "--push"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tag = stdout(&out).trim().to_string();
    let remote_branch = f.git_in(&remote, &["rev-parse", "env/staging"]);
    assert_eq!(remote_branch, dev_commit);
    assert_eq!(f.git_in(&remote, &["cat-file", "-t", &tag]), "tag");
    assert_eq!(
        f.git_in(&remote, &["rev-parse", &format!("{tag}^{{commit}}")]),
        dev_commit
    );
    assert_eq!(
        f.rev("env/staging"),
        dev_commit,
        "local refs follow the push"
    );
}

#[test]
fn push_loses_a_race_cleanly_when_the_remote_moved() {
    let f = Fixture::podinfo();
    let remote = bare_remote(&f);
    // Someone else moves staging on the remote.
    let other = f.tmp.path().join("other");
    f.git_in(
        f.tmp.path(),
        &[
            "clone",
            "-q",
            remote.to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    );
    f.git_in(&other, &["checkout", "-q", "env/staging"]);
    std::fs::write(other.join("hotfix.txt"), "x\n").unwrap();
    f.git_in(&other, &["add", "hotfix.txt"]);
    f.git_in(&other, &["commit", "-q", "-m", "remote hotfix"]);
    f.git_in(&other, &["push", "-q", "origin", "env/staging"]);
    let remote_before = f.git_in(
        &remote,
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    );

    deploy_dev_change(&f, "a: 1\n", "one");
    let local_before = f.refs();
    // The remote has a commit this clone lacks: refused before anything is written (issue 13).
    f.deploy(&["promote", "dev", "--yes", "--push"])
        .code(3)
        .stderr(
            predicate::str::contains("a commit this repository does not have")
                .and(predicate::str::contains("git fetch")),
        );
    assert_eq!(f.refs(), local_before, "nothing written locally");
    assert_eq!(
        f.git_in(
            &remote,
            &["for-each-ref", "--format=%(refname) %(objectname)"]
        ),
        remote_before,
        "nothing on the remote"
    );
}

#[test]
fn concurrent_promotions_have_exactly_one_winner() {
    let f = Fixture::podinfo();
    let staging_before = f.rev("env/staging");
    let (_, dev_commit) = deploy_dev_change(&f, "a: 1\n", "one");
    let refs_before = f.refs();
    let children: Vec<_> = (0..8)
        .map(|_| {
            let mut cmd = f.cmd(&["promote", "dev", "--yes"]);
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut winners = 0;
    for o in &outs {
        match o.status.code() {
            Some(0) if stdout(o).trim().starts_with("deploy/staging/") => winners += 1,
            Some(0) => assert!(stderr(o).contains("nothing to promote"), "{}", stderr(o)),
            Some(3) => assert!(stderr(o).contains("retry"), "{}", stderr(o)),
            other => panic!("unexpected exit {other:?}: {}", stderr(o)),
        }
    }
    assert_eq!(winners, 1, "exactly one promotion wins");
    assert_eq!(f.rev("env/staging"), dev_commit);
    assert_eq!(f.tags("staging").len(), 1, "exactly one new tag");
    // No other ref changed.
    let after = f.refs();
    let changed: Vec<&str> = after
        .lines()
        .filter(|l| !refs_before.lines().any(|b| b == *l))
        .collect();
    assert_eq!(
        changed.len(),
        3,
        "branch, tag and the latest-deploy token only: {changed:?}"
    );
    assert!(
        changed
            .iter()
            .any(|l| l.starts_with("refs/deploy/latest/staging ")),
        "{changed:?}"
    );
    assert_ne!(staging_before, dev_commit);
    f.fsck();
}

#[test]
fn git_dash_c_and_help_work_through_git() {
    let f = Fixture::podinfo();
    let bin_dir = std::path::Path::new(fixture::BIN)
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let mut git = Command::new("git");
    git.current_dir(f.tmp.path())
        .args(["-C", "config", "deploy", "status", "-o", "json"]);
    f.env(&mut git);
    git.env("PATH", &path);
    let out = git.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"env/prod\""));
    let mut git = Command::new("git");
    git.current_dir(&f.repo).args(["deploy", "-h"]);
    f.env(&mut git);
    git.env("PATH", &path);
    let out = git.output().unwrap();
    assert!(
        stdout(&out).contains("Usage: git deploy"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("Exit codes"), "{}", stdout(&out));
}

#[test]
fn man_pages_and_completions_cover_every_subcommand() {
    let f = Fixture::empty();
    let subcommands = [
        "init", "status", "tag", "promote", "rollback", "log", "diff", "show", "lock", "unlock",
    ];
    let man = stdout(&f.output(&["man"]));
    assert!(
        man.contains(".TH git-deploy 1"),
        "{}",
        &man[..200.min(man.len())]
    );
    for s in subcommands {
        assert!(
            man.contains(&format!("git\\-deploy\\-{s}")) || man.contains(s),
            "man page lacks {s}"
        );
    }
    let dir = f.tmp.path().join("man1");
    f.deploy(&["man", "--output-dir", dir.to_str().unwrap()])
        .success();
    for s in subcommands {
        let page = std::fs::read_to_string(dir.join(format!("git-deploy-{s}.1"))).unwrap();
        assert!(page.contains(".TH"), "{s}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(&f.output(&["completions", shell]));
        for s in subcommands {
            assert!(script.contains(s), "{shell} completions lack {s}");
        }
    }
}

#[test]
fn signed_tags_verify_with_git() {
    let f = Fixture::podinfo();
    let gnupg = f.tmp.path().join("gnupg");
    std::fs::create_dir(&gnupg).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let status = Command::new("gpg")
        .env("GNUPGHOME", &gnupg)
        .args([
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Ann Operator <ann@example.com>",
            "ed25519",
            "sign",
            "never",
        ])
        .output()
        .expect("gpg is needed for the signing test (Debian package gnupg)");
    assert!(status.status.success(), "{}", stderr(&status));
    let mut cmd = f.cmd(&["tag", "dev", "--sign"]);
    cmd.env("GNUPGHOME", &gnupg);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let tag = stdout(&out).trim().to_string();
    let mut verify = Command::new("git");
    verify.current_dir(&f.repo).args(["tag", "-v", &tag]);
    f.env(&mut verify);
    verify.env("GNUPGHOME", &gnupg);
    let v = verify.output().unwrap();
    assert!(v.status.success(), "git tag -v failed: {}", stderr(&v));
    assert!(stderr(&v).contains("Good signature"), "{}", stderr(&v));
    let signature = f.git(&["tag", "-l", "--format=%(contents:signature)", &tag]);
    assert!(
        signature.starts_with("-----BEGIN PGP SIGNATURE-----"),
        "{signature}"
    );
    // git 2.39's %(trailers) reads the signature as the last paragraph of a signed tag, so the
    // record is read with git-deploy (which separates the signature first).
    let shown = json(&f.output(&["show", &tag, "-o", "json"]));
    assert_eq!(shown["signed"], true);
    assert_eq!(shown["env"], "dev");
    assert_eq!(shown["action"], "tag");
}
