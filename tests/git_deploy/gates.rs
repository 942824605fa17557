//! Promotion gates (issue 17) as `git deploy` sees them, on real repositories. The
//! verifications here are notes written with `git notes`, as a verification made on another
//! machine arrives in a clone; `tests/kubectl_gitops/gates.rs` has `kubectl gitops verify`
//! write them against the workload cluster.

use predicates::prelude::*;

use crate::fixture::{Fixture, stderr, stdout};

const GATES: &str = "    gates:\n      verified: true\n      soak: 30m\n";

/// podinfo with gates on prod (committed on main, which is HEAD), and a change deployed to
/// dev and promoted to staging. Returns the staging deploy tag.
fn gated(gates: &str) -> (Fixture, String) {
    let f = Fixture::podinfo();
    add_gates(&f, "main", gates);
    super::deploy_dev_change(&f, "a: 1\n", "dev change");
    let out = f.output(&["promote", "dev", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    (f, stdout(&out).trim().to_string())
}

/// Appends `gates` to the last environment (prod) of gitops.yaml on `branch`.
fn add_gates(f: &Fixture, branch: &str, gates: &str) {
    let yaml = f.read(branch, "gitops.yaml");
    assert!(
        yaml.trim_end().ends_with("namespace: \"production\""),
        "{yaml}"
    );
    f.commit_on(
        branch,
        "gitops.yaml",
        &format!("{}\n{gates}", yaml.trim_end()),
        "gates for prod",
    );
}

fn now_minus(minutes: i64) -> String {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A verification of `env` as `kubectl gitops verify` writes it, appended with git.
fn note_verification(f: &Fixture, tag: &str, env: &str, at: &str) {
    let text = format!(
        "Verified-Env: {env}\nVerified-Namespace: {env}\nVerified-Cluster: https://10.0.0.1:6443\n\
         Verified-Revision: 2\nVerified-At: {at}\nVerified-By: system:serviceaccount:ci:deployer\n"
    );
    f.git(&["notes", "--ref=deploy", "append", "-m", &text, tag]);
}

#[test]
fn an_unverified_deploy_is_refused_listing_each_gate_and_nothing_is_written() {
    let (f, staging) = gated(GATES);
    let (refs, objects) = (f.refs(), f.object_count());
    let out = f.output(&["promote", "staging", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("gates of prod are not met for {staging}")),
        "{err}"
    );
    assert!(
        err.contains("verified: no — run kubectl gitops verify --env staging"),
        "{err}"
    );
    assert!(
        err.contains("soak: 0 of 30m — it starts at the first verification"),
        "{err}"
    );
    assert!(err.contains("--override-gates"), "{err}");
    assert_eq!(f.refs(), refs);
    assert_eq!(f.object_count(), objects);
    // --dry-run and -o json say the same, and exit as the real run would.
    let out = f.output(&["promote", "staging", "--dry-run", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["gates"]["met"], false);
    assert_eq!(doc["gates"]["state"], "unverified");
    assert_eq!(doc["gates"]["verified"]["met"], false);
    assert_eq!(doc["gates"]["soak"]["state"], "not started");
    assert_eq!(doc["written"], false);
    assert_eq!(f.refs(), refs);
}

#[test]
fn a_verified_and_soaked_deploy_is_promoted() {
    let (f, staging) = gated(GATES);
    note_verification(&f, &staging, "staging", &now_minus(45));
    let out = f.output(&["promote", "staging", "--dry-run", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["gates"]["met"], true);
    assert_eq!(doc["gates"]["soak"]["state"], "met");
    assert_eq!(
        doc["gates"]["verified"]["verifications"][0]["by"],
        "system:serviceaccount:ci:deployer"
    );
    assert!(
        doc["updates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["ref"] == "refs/heads/env/prod"),
        "{doc}"
    );
    let out = f.output(&["promote", "staging", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("gates of prod for"), "{err}");
    assert!(err.contains(": met"), "{err}");
    let prod = stdout(&out).trim().to_string();
    assert_eq!(f.rev("env/prod"), f.rev("env/staging"));
    assert_eq!(f.trailer(&prod, "Deploy-Gate-Override"), "");
}

#[test]
fn a_verification_of_another_environment_does_not_open_the_gate() {
    let (f, staging) = gated("    gates:\n      verified: true\n");
    note_verification(&f, &staging, "dev", &now_minus(45));
    let out = f.output(&["promote", "staging", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("(1 verification of another environment not counted)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unsoaked_deploy_is_refused_with_the_time_left_until_overridden() {
    let (f, staging) = gated("    gates:\n      verified: true\n      soak: 1h\n");
    note_verification(&f, &staging, "staging", &now_minus(12));
    let refs = f.refs();
    let out = f.output(&["promote", "staging", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("verified: yes — "), "{err}");
    // 12 minutes of 60 (13 if the minute turned between the note and the check).
    assert!(
        err.contains("soak: 12m of 1h, ready at ") || err.contains("soak: 13m of 1h, ready at "),
        "{err}"
    );
    assert_eq!(f.refs(), refs);

    let reason = "INC-42: fix must reach prod now, approved by the on-call";
    let out = f.output(&["promote", "staging", "--yes", "--override-gates", reason]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("are not met; overridden: {reason}")),
        "{}",
        stderr(&out)
    );
    let prod = stdout(&out).trim().to_string();
    // git itself reads the trailer.
    assert_eq!(f.trailer(&prod, "Deploy-Gate-Override"), reason);
    let all = f.git(&[
        "for-each-ref",
        "--format=%(trailers)",
        &format!("refs/tags/{prod}"),
    ]);
    assert!(
        all.contains(&format!("Deploy-Gate-Override: {reason}")),
        "{all}"
    );
    let body = f.git(&[
        "for-each-ref",
        "--format=%(contents:body)",
        &format!("refs/tags/{prod}"),
    ]);
    assert!(
        body.contains("Gates of prod not met at promotion"),
        "{body}"
    );
    let show = f.output(&["show", &prod, "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(doc["gate_override"], reason);
}

#[test]
fn an_override_needs_a_reason() {
    let (f, _) = gated(GATES);
    let refs = f.refs();
    f.deploy(&["promote", "staging", "--yes", "--override-gates", "  "])
        .code(2)
        .stderr(predicate::str::contains("--override-gates needs a reason"));
    assert_eq!(f.refs(), refs);
}

#[test]
fn a_newer_deploy_of_the_source_voids_the_soak() {
    let (f, staging) = gated("    gates:\n      soak: 1m\n");
    let older = staging.clone();
    // staging moves on (a rollback is a deploy too); the older deploy stops soaking there.
    f.commit_on(
        "env/staging",
        "deploy/overlays/staging/x.yaml",
        "x: 1\n",
        "staging hotfix",
    );
    f.deploy(&["tag", "staging"]).success();
    f.deploy(&["promote", "staging", "--tag", &older, "--yes"])
        .code(1)
        .stderr(predicate::str::contains(
            "soak: void — staging has a newer deploy",
        ));
    // Soak alone counts from the tag's time (the fixture's clock is in January): the latest
    // deploy has soaked long enough.
    f.deploy(&["promote", "staging", "--yes"]).success();
}

#[test]
fn the_promoted_commit_cannot_loosen_the_gate_it_passes() {
    let f = Fixture::podinfo();
    add_gates(&f, "main", GATES);
    // The environment branches were made before main had gates: the promoted commit's
    // gitops.yaml has none.
    super::deploy_dev_change(&f, "a: 1\n", "dev change");
    f.deploy(&["promote", "dev", "--yes"]).success();
    assert!(!f.read("env/staging", "gitops.yaml").contains("gates"));
    f.deploy(&["promote", "staging", "--yes"])
        .code(1)
        .stderr(predicate::str::contains("verified: no"));
    // Nor can HEAD alone: with main's gates gone, prod's own gitops.yaml still has them once a
    // gated promotion brought them there.
    add_gates(&f, "env/prod", GATES);
    let main_yaml = f.read("main~1", "gitops.yaml");
    f.commit_on("main", "gitops.yaml", &main_yaml, "drop the gates on main");
    assert!(!f.read("main", "gitops.yaml").contains("gates"));
    f.deploy(&["promote", "staging", "--yes"])
        .code(1)
        .stderr(predicate::str::contains("verified: no"));
}

#[test]
fn status_shows_where_each_pending_promotion_stands_with_its_gates() {
    let (f, staging) = gated(GATES);
    let table = |f: &Fixture| {
        let out = f.output(&["status"]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let t = table(&f);
    assert!(t.lines().next().unwrap().contains("GATES"), "{t}");
    let prod = t.lines().find(|l| l.starts_with("prod")).unwrap();
    assert!(prod.contains("unverified"), "{t}");

    note_verification(&f, &staging, "staging", &now_minus(12));
    let t = table(&f);
    let prod = t.lines().find(|l| l.starts_with("prod")).unwrap();
    assert!(
        prod.contains("soaking 12m/30m") || prod.contains("soaking 13m/30m"),
        "{t}"
    );
    let out = f.output(&["status", "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let prod = &doc["environments"][2];
    assert_eq!(prod["name"], "prod");
    assert_eq!(prod["gates"]["state"], "soaking");
    assert_eq!(prod["gates"]["source_tag"], staging.as_str());
    assert_eq!(prod["gates"]["soak"]["required_seconds"], 1800);
    // staging has no gates: its pending promotion (none now) shows nothing.
    assert!(doc["environments"][1]["gates"].is_null());

    f.git(&["notes", "--ref=deploy", "remove", &staging]);
    note_verification(&f, &staging, "staging", &now_minus(31));
    let t = table(&f);
    let prod = t.lines().find(|l| l.starts_with("prod")).unwrap();
    assert!(prod.contains("ready"), "{t}");
}

#[test]
fn show_lists_a_tags_verifications() {
    let (f, staging) = gated(GATES);
    let out = f.output(&["show", &staging]);
    assert!(
        stdout(&out).contains("Verified         none"),
        "{}",
        stdout(&out)
    );
    note_verification(&f, &staging, "staging", "2026-11-28T09:00:00Z");
    note_verification(&f, &staging, "staging", "2026-11-28T10:00:00Z");
    let out = f.output(&["show", &staging]);
    let text = stdout(&out);
    assert!(
        text.contains(
            "Verified         2026-11-28T09:00:00Z staging (namespace staging) on https://10.0.0.1:6443, revision 2, by system:serviceaccount:ci:deployer"
        ),
        "{text}"
    );
    assert!(
        text.contains("                 2026-11-28T10:00:00Z"),
        "{text}"
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&f.output(&["show", &staging, "-o", "json"]).stdout).unwrap();
    assert_eq!(doc["verifications"].as_array().unwrap().len(), 2);
    assert_eq!(doc["verifications"][1]["at"], "2026-11-28T10:00:00Z");
}

#[test]
fn newer_notes_on_a_remote_are_named_with_the_fetch_that_brings_them() {
    let (f, staging) = gated(GATES);
    let remote = f.tmp.path().join("remote.git");
    f.git(&["init", "-q", "--bare", remote.to_str().unwrap()]);
    f.git(&["remote", "add", "origin", remote.to_str().unwrap()]);
    f.git(&["push", "-q", "origin", "--all"]);
    f.git(&["push", "-q", "origin", "--tags"]);
    // A verification made elsewhere reaches the remote, not this clone.
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
    let text = format!(
        "Verified-Env: staging\nVerified-Namespace: staging\nVerified-Cluster: https://10.0.0.1:6443\n\
         Verified-Revision: 2\nVerified-At: {}\nVerified-By: ci\n",
        now_minus(40)
    );
    f.git_in(
        &other,
        &["notes", "--ref=deploy", "add", "-m", &text, &staging],
    );
    f.git_in(&other, &["push", "-q", "origin", "refs/notes/deploy"]);

    let out = f.output(&["promote", "staging", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    let fetch = "git fetch origin refs/notes/deploy:refs/notes/deploy";
    assert!(
        stderr(&out).contains("warning: origin has verifications this repository lacks")
            && stderr(&out).contains(fetch),
        "{}",
        stderr(&out)
    );
    f.deploy(&["status"])
        .success()
        .stderr(predicate::str::contains(fetch));
    // What the warning says to run, then the gate opens and the warning is gone.
    f.git(&[
        "fetch",
        "-q",
        "origin",
        "refs/notes/deploy:refs/notes/deploy",
    ]);
    let out = f.output(&["promote", "staging", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning:"), "{}", stderr(&out));
}

#[test]
fn malformed_gates_are_refused_with_line_and_column() {
    let f = Fixture::podinfo();
    add_gates(
        &f,
        "main",
        "    gates:\n      verified: true\n      soak: soon\n",
    );
    let out = f.output(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("gitops.yaml at HEAD ("), "{err}");
    assert!(
        err.contains(":18:13: gates.soak: \"soon\" is not a duration; expected a duration such as 30s, 5m, 1h30m or 0"),
        "{err}"
    );
}
