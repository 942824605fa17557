//! Deploy tags are trusted for what they are, not for their name (issue 23): only annotated
//! tags written by git deploy, whose `Deploy-Env` names the environment of the tag name and
//! whose commit the environment's branch contains, are deploys. Everything else under
//! `refs/tags/deploy/` is ignored with one warning per tag and run, and refused when named.

use crate::fixture::{Fixture, stderr, stdout};

const FORGED: &str = "deploy/dev/20991231T235959Z";

/// A commit that env/dev does not contain (a branch anyone may push).
fn side_commit(f: &Fixture) -> String {
    f.git(&["branch", "-q", "evil", "main"]);
    f.commit_on("evil", "deploy/overlays/dev/evil.yaml", "evil: 1\n", "evil")
}

fn warnings(o: &std::process::Output, tag: &str) -> usize {
    stderr(o)
        .lines()
        .filter(|l| l.starts_with("warning: ignoring tag") && l.contains(tag))
        .count()
}

fn json(o: &std::process::Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_forged_lightweight_tag_is_not_the_latest_deploy() {
    let f = Fixture::podinfo();
    let (real, real_commit) = super::deploy_dev_change(&f, "a: 1\n", "one");
    let evil = side_commit(&f);
    f.git(&["tag", FORGED, &evil]);

    let status = f.output(&["status", "-o", "json"]);
    assert_eq!(json(&status)["environments"][0]["tag"], real.as_str());
    assert_eq!(warnings(&status, FORGED), 1, "{}", stderr(&status));
    assert!(
        stderr(&status).contains("lightweight"),
        "{}",
        stderr(&status)
    );

    let log = f.output(&["log", "dev", "-o", "json"]);
    let names: Vec<String> = json(&log)["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec![real.clone()]);

    // Named, it is refused with the reason, and nothing is written.
    let before = f.refs();
    for args in [
        vec!["promote", "dev", "--yes", "--tag", FORGED],
        vec!["rollback", "dev", FORGED, "--yes"],
    ] {
        let o = f.output(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("{FORGED} is not a deploy of dev"))
                && stderr(&o).contains("lightweight"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    assert_eq!(f.refs(), before);

    // promote moves staging to the real deploy, and says so once.
    let promote = f.output(&["promote", "dev", "--yes"]);
    assert!(promote.status.success(), "{}", stderr(&promote));
    assert_eq!(warnings(&promote, FORGED), 1, "{}", stderr(&promote));
    assert_eq!(f.rev("env/staging"), real_commit);
    let staging_tag = stdout(&promote).trim().to_string();
    assert_eq!(f.trailer(&staging_tag, "Deploy-Source-Tag"), real);

    // The next deploy of dev names the real one as previous.
    let (next, _) = super::deploy_dev_change(&f, "a: 2\n", "two");
    assert_eq!(f.trailer(&next, "Deploy-Previous-Tag"), real);
}

#[test]
fn annotated_tags_that_are_not_deploys_of_the_env_are_ignored() {
    let f = Fixture::podinfo();
    let (real, _) = super::deploy_dev_change(&f, "a: 1\n", "one");
    let head = f.rev("env/dev");
    let cases = [
        (
            "deploy/dev/20991231T235959Z",
            "deploy dev: tag x\n\nDeploy-Env: prod\nDeploy-Action: tag",
            "says \"prod\", not \"dev\"",
        ),
        (
            "deploy/dev/20991230T000000Z",
            "just a tag with a deploy-looking name",
            "no Deploy-Env trailer",
        ),
        (
            // The trailer is in the body; the last paragraph is something else.
            "deploy/dev/20991229T000000Z",
            "deploy dev\n\nDeploy-Env: dev\n\nSigned-off-by: Mallory <m@example.com>",
            "no Deploy-Env trailer",
        ),
    ];
    for (name, message, _) in &cases {
        f.git(&["tag", "-a", "-m", message, name, &head]);
    }
    // A copy of the real tag object under a newer name: a replay of an old deploy.
    let copy = "deploy/dev/20991228T000000Z";
    let real_object = f.rev(&real);
    f.git(&["update-ref", &format!("refs/tags/{copy}"), &real_object]);

    let status = f.output(&["status", "-o", "json"]);
    assert_eq!(json(&status)["environments"][0]["tag"], real.as_str());
    for (name, _, why) in cases.iter().chain([&(copy, "", "a copy of another tag")]) {
        assert_eq!(warnings(&status, name), 1, "{name}: {}", stderr(&status));
        let o = f.output(&["promote", "dev", "--yes", "--tag", name]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(why), "{name}: {}", stderr(&o));
    }
    let log = f.output(&["log", "dev", "-o", "json"]);
    assert_eq!(json(&log)["tags"].as_array().unwrap().len(), 1);
}

/// Decision: the environment's branch is what it is meant to run. A deploy whose commit the
/// branch no longer contains (someone reset or force-pushed the branch) stops counting: the
/// newest deploy still on the branch is the latest, the dropped one is named in a warning,
/// and naming it is refused.
#[test]
fn a_deploy_whose_commit_left_the_branch_stops_counting() {
    let f = Fixture::podinfo();
    let (first, first_commit) = super::deploy_dev_change(&f, "a: 1\n", "one");
    let (second, _) = super::deploy_dev_change(&f, "a: 2\n", "two");
    f.git(&["branch", "-f", "env/dev", &first_commit]);

    let status = f.output(&["status", "-o", "json"]);
    let s = json(&status);
    assert_eq!(s["environments"][0]["tag"], first.as_str());
    assert_eq!(s["environments"][0]["tagged"], true);
    assert_eq!(warnings(&status, &second), 1, "{}", stderr(&status));
    assert!(
        stderr(&status).contains("is not on env/dev (was the branch reset"),
        "{}",
        stderr(&status)
    );
    let o = f.output(&["promote", "dev", "--yes", "--tag", &second]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let promote = f.output(&["promote", "dev", "--yes"]);
    assert!(promote.status.success(), "{}", stderr(&promote));
    assert_eq!(f.rev("env/staging"), first_commit);
}

#[test]
fn without_a_local_branch_the_remote_tracking_branch_counts() {
    let f = Fixture::podinfo();
    let remote = super::bare_remote(&f);
    let (real, _) = super::deploy_dev_change(&f, "a: 1\n", "one");
    f.git(&["push", "-q", "origin", "env/dev", &real]);
    let clone = f.tmp.path().join("fresh");
    f.git_in(
        f.tmp.path(),
        &[
            "clone",
            "-q",
            remote.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    let mut cmd = f.cmd(&["status", "-o", "json"]);
    cmd.current_dir(&clone);
    let o = cmd.output().unwrap();
    let s = json(&o);
    assert_eq!(s["environments"][0]["tag"], real.as_str(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
}
