//! Hostile input for both tools, one table row per case: every row builds its own fixture
//! (a fresh repository, a tag), runs one command, and checks that the command stops with ONE
//! `error:` line naming what is at fault, the exit code README documents, and no write at all:
//! refs unchanged in git, objects and resourceVersions unchanged in the namespace, no ApplySet
//! parent and no revision record. Rows with a Secret also check that its value, plain or
//! base64, is in no output.
//!
//! git-deploy's binary belongs to another package, so Cargo does not hand us its path; it is
//! found next to kubectl-gitops (both are built by `cargo test --workspace`) and built on
//! demand otherwise.

#[path = "../common/cluster.rs"]
mod cluster;
#[path = "../common/repo.rs"]
mod repo;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use base64::Engine as _;
use repo::ConfigRepo as Repo;
use serde_json::Value;

const KUBECTL_GITOPS: &str = env!("CARGO_BIN_EXE_kubectl-gitops");

/// `git-deploy` from the same target directory as kubectl-gitops. When only this package was
/// built (`cargo test -p kubectl-gitops`) it is built into a target directory of its own, so
/// this never waits on the lock of the cargo process that runs us.
fn git_deploy() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let beside = Path::new(KUBECTL_GITOPS).with_file_name("git-deploy");
        if beside.is_file() {
            return beside;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("hostile-git-deploy");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "-p",
                "git-deploy",
                "--bin",
                "git-deploy",
                "--target-dir",
            ])
            .arg(&target)
            .status()
            .expect("running cargo build -p git-deploy");
        assert!(status.success(), "cargo build -p git-deploy failed");
        target.join("debug/git-deploy")
    })
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// Helpers of this crate on the shared config repository.
impl Repo {
    fn symlink(&self, rel: &str, target: &str) {
        let p = self.path.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }

    /// Commits everything on main and puts annotated tags `t` and a deploy tag of `dev` on it.
    fn tag_fixture(&self) {
        self.tag("t");
        // For the cases that pick the tag with --env dev.
        self.git(&[
            "tag",
            "-a",
            "-m",
            "deploy dev: tag\n\nDeploy-Env: dev\n",
            "deploy/dev/20260101T000000Z",
        ]);
        self.git(&["branch", "-f", "env/dev", "HEAD"]);
    }

    /// Every ref and what it points at.
    fn refs(&self) -> String {
        self.git(&["for-each-ref", "--format=%(refname) %(objectname)"])
    }

    fn deploy(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(git_deploy());
        cmd.current_dir(&self.path).args(args);
        repo::isolate(&mut cmd, self.tmp.path());
        cmd.output().unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Checks one failed command: the exit code, exactly one `error:` line, and `needle` in it.
/// Returns a description of what is wrong, so a table can report every bad row at once.
fn check_error(case: &str, o: &Output, code: i32, needle: &str) -> Option<String> {
    let stderr = text(&o.stderr);
    let errors = stderr.lines().filter(|l| l.starts_with("error:")).count();
    let problem = if o.status.code() != Some(code) {
        Some(format!("exit {:?}, expected {code}", o.status.code()))
    } else if errors != 1 {
        Some(format!("{errors} `error:` lines, expected 1"))
    } else if !error_block(&stderr).contains(needle) {
        Some(format!("the error line does not name {needle:?}"))
    } else {
        None
    };
    problem.map(|p| {
        format!(
            "[{case}] {p}\n--- stdout\n{}\n--- stderr\n{stderr}",
            truncate(&text(&o.stdout))
        )
    })
}

/// The `error:` line and its indented continuation lines (the list of objects at fault),
/// without the hint.
fn error_block(stderr: &str) -> String {
    stderr
        .lines()
        .skip_while(|l| !l.starts_with("error:"))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with(' '))
        .map(|(_, l)| format!("{l}\n"))
        .collect()
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(4000) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn leaks(case: &str, o: &Output, secrets: &[&str]) -> Option<String> {
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    for s in secrets {
        let b64 = base64::engine::general_purpose::STANDARD.encode(s);
        if all.contains(s) || all.contains(&b64) {
            return Some(format!(
                "[{case}] secret value {s:?} leaked:\n{}",
                truncate(&all)
            ));
        }
    }
    None
}

fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// git deploy

const GOOD_CONFIG: &str = "environments:\n  - {name: dev, branch: env/dev, path: app, namespace: dev}\n  - {name: prod, branch: env/prod, path: app, namespace: prod}\n";

/// A repository whose main, env/dev and env/prod all hold `config` as gitops.yaml.
fn deploy_repo(config: &str) -> Repo {
    let repo = Repo::new();
    repo.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
    );
    repo.write("gitops.yaml", config);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "config"]);
    repo.git(&["branch", "env/dev"]);
    repo.git(&["branch", "env/prod"]);
    repo
}

fn env_entry(name: &str, branch: &str) -> String {
    format!(
        "environments:\n  - name: {name}\n    branch: {branch}\n    path: app\n    namespace: dev\n"
    )
}

/// Nested flow sequences `depth` deep.
fn deep_yaml(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Nine levels of aliases, each nine times the one before: a billion nodes if expanded.
fn alias_bomb() -> String {
    let mut s = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..9 {
        let p = i - 1;
        s.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    s
}

struct DeployCase {
    name: &'static str,
    config: String,
    args: Vec<&'static str>,
    code: i32,
    needle: &'static str,
}

fn deploy_case(
    name: &'static str,
    config: impl Into<String>,
    args: &[&'static str],
    code: i32,
    needle: &'static str,
) -> DeployCase {
    DeployCase {
        name,
        config: config.into(),
        args: args.to_vec(),
        code,
        needle,
    }
}

#[test]
fn git_deploy_refuses_hostile_input_and_writes_nothing() {
    let bad_names = |name: &str| env_entry(name, "env/dev");
    let cases = vec![
        deploy_case(
            "config-unknown-key",
            format!("{}    colour: red\n", env_entry("dev", "env/dev")),
            &["tag", "dev"],
            2,
            "unknown field",
        ),
        deploy_case(
            "config-duplicate-env",
            "environments:\n  - {name: dev, branch: env/dev, path: app, namespace: dev}\n  - {name: dev, branch: env/prod, path: app, namespace: dev}\n",
            &["tag", "dev"],
            2,
            "duplicate environment name",
        ),
        deploy_case(
            "config-duplicate-branch",
            "environments:\n  - {name: dev, branch: env/dev, path: app, namespace: dev}\n  - {name: prod, branch: env/dev, path: app, namespace: dev}\n",
            &["tag", "dev"],
            2,
            "used by two environments",
        ),
        deploy_case(
            "config-branch-git-rejects",
            env_entry("dev", "'env/dev.lock'"),
            &["status"],
            2,
            "gitops.yaml",
        ),
        deploy_case(
            "config-branch-with-dotdot",
            env_entry("dev", "'env..dev'"),
            &["status"],
            2,
            "contains '..'",
        ),
        deploy_case(
            "config-env-name-dotdot",
            bad_names("'a..b'"),
            &["status"],
            2,
            "environment name",
        ),
        deploy_case(
            "config-env-name-slash",
            bad_names("'a/b'"),
            &["status"],
            2,
            "environment name",
        ),
        deploy_case(
            "config-env-name-leading-dash",
            bad_names("'-dev'"),
            &["status"],
            2,
            "environment name",
        ),
        deploy_case(
            "config-malformed-yaml",
            "environments: [\n  {name: dev,\n",
            &["status"],
            2,
            "gitops.yaml",
        ),
        deploy_case(
            "config-alias-bomb",
            format!("{}environments: *a8\n", alias_bomb()),
            &["status"],
            2,
            "gitops.yaml",
        ),
        deploy_case(
            "config-deep-nesting",
            format!("environments: {}\n", deep_yaml(100_000)),
            &["status"],
            2,
            "gitops.yaml",
        ),
        deploy_case(
            "config-not-a-mapping",
            "- just\n- a\n- list\n",
            &["status"],
            2,
            "gitops.yaml",
        ),
        deploy_case(
            "unknown-environment",
            GOOD_CONFIG,
            &["tag", "nowhere"],
            2,
            "nowhere",
        ),
        deploy_case(
            "push-remote-is-an-option",
            GOOD_CONFIG,
            &["tag", "dev", "--push=--upload-pack=touch /tmp/pwned"],
            2,
            "--push",
        ),
        deploy_case(
            "show-unknown-tag",
            GOOD_CONFIG,
            &["show", "deploy/dev/20990101T000000Z"],
            2,
            "deploy/dev/20990101T000000Z",
        ),
        deploy_case(
            "init-env-flag-with-dotdot",
            "",
            &["init", "--env", "a..b=env/x"],
            2,
            "environment name",
        ),
        deploy_case(
            "init-env-flag-leading-dash",
            "",
            &["init", "--env=-x=env/x"],
            2,
            "environment name",
        ),
        deploy_case(
            "init-branch-git-rejects",
            "",
            &["init", "--env", "x=env/x~1"],
            2,
            "env/x~1",
        ),
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let repo = if case.config.is_empty() {
            // init cases: a repository without gitops.yaml.
            let r = Repo::new();
            r.write("README", "config\n");
            r.git(&["add", "-A"]);
            r.git(&["commit", "-q", "-m", "start"]);
            r
        } else {
            deploy_repo(&case.config)
        };
        let before = repo.refs();
        let o = repo.deploy(&case.args);
        failures.extend(check_error(case.name, &o, case.code, case.needle));
        if repo.refs() != before {
            failures.push(format!("[{}] refs changed", case.name));
        }
        if case.name.starts_with("init") && repo.path.join("gitops.yaml").exists() {
            failures.push(format!("[{}] gitops.yaml was written", case.name));
        }
    }
    assert!(
        !Path::new("/tmp/pwned").exists(),
        "--push ran an option as a command"
    );
    report(failures);
}

/// A `-m` body made of forged trailers is stored as the body; what `log -o json` reports about
/// the deploy (env, action, branch, sources) is what the tool wrote, not what the body says.
#[test]
fn a_message_cannot_forge_deploy_trailers() {
    let repo = deploy_repo(GOOD_CONFIG);
    let forged = "Looks innocent.\n\nDeploy-Env: prod\nDeploy-Action: rollback\nDeploy-Source-Env: evil\nDeploy-Source-Tag: deploy/evil/20200101T000000Z\nDeploy-Source-Commit: 0000000000000000000000000000000000000000\nDeploy-Branch: env/prod\nDeploy-Tool: evil/1\n";
    let plain = repo.deploy(&["tag", "dev"]);
    assert_eq!(plain.status.code(), Some(0), "{}", text(&plain.stderr));
    repo.git(&["commit", "-q", "--allow-empty", "-m", "next"]);
    repo.git(&["branch", "-f", "env/dev", "main"]);
    let o = repo.deploy(&["tag", "dev", "-m", forged]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let log = repo.deploy(&["log", "dev", "-o", "json"]);
    assert_eq!(log.status.code(), Some(0), "{}", text(&log.stderr));
    let v: Value = serde_json::from_slice(&log.stdout).unwrap();
    let tags = v["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 2, "{v:#}");
    for t in tags {
        let mut t = t.clone();
        // The body is kept as typed; only what the tool records must be unaffected by it.
        t.as_object_mut().unwrap().remove("body");
        let flat = t.to_string();
        assert!(!flat.contains("evil"), "forged value reported: {t:#}");
        assert!(
            !flat.contains("0000000000000000000000000000000000000000"),
            "forged commit reported: {t:#}"
        );
        assert!(!flat.contains("\"rollback\""), "forged action: {t:#}");
        assert!(!flat.contains("env/prod"), "forged branch: {t:#}");
    }
    let prod = repo.deploy(&["log", "prod", "-o", "json"]);
    let v: Value = serde_json::from_slice(&prod.stdout).unwrap();
    assert_eq!(v["tags"].as_array().map(Vec::len), Some(0), "{v:#}");
    // git itself reads the same trailers.
    let newest = repo.git(&[
        "for-each-ref",
        "--sort=-creatordate",
        "--count=1",
        "--format=%(trailers:key=Deploy-Env,valueonly,separator=%x2C)",
        "refs/tags/deploy/dev/",
    ]);
    assert_eq!(newest, "dev");
}

/// Deploy tags are trusted for what they are, not their name (issue 23). On one repository: a
/// real deploy of dev, then a lightweight tag with a newer deploy name on a commit env/dev
/// does not contain (its manifests hold a ConfigMap `forged`), and an annotated one without a
/// `Deploy-Env` trailer. Both tools ignore them (one warning each per run), render and
/// promote the real deploy, and refuse them by name (exit 2, the reason given, nothing
/// written). A repository whose only deploy/dev tag is forged has no deploy: `diff --env dev`
/// exits 2 before it connects to any cluster.
#[test]
fn forged_deploy_tags_are_ignored_by_both_tools() {
    const FORGED: &str = "deploy/dev/20991231T235959Z";
    const UNSIGNED: &str = "deploy/dev/20991230T000000Z";
    let ns = cluster::cluster().fresh_namespace("hostile-tags");
    let kubeconfig = cluster::cluster()
        .kubeconfig()
        .to_str()
        .unwrap()
        .to_string();
    let config = format!(
        "environments:\n  - {{name: dev, branch: env/dev, path: app, namespace: {ns}}}\n  - {{name: prod, branch: env/prod, path: app, namespace: {ns}}}\n"
    );
    let repo = Repo::new();
    repo.write("gitops.yaml", &config);
    repo.write("app/cm.yaml", CM);
    repo.deploy_tag("dev", "deploy/dev/20260101T000000Z");
    repo.git(&["branch", "env/prod", "HEAD"]);
    repo.git(&["checkout", "-q", "-b", "evil"]);
    repo.write("app/cm.yaml", CM.replace("name: ok", "name: forged"));
    repo.git(&["commit", "-q", "-am", "evil"]);
    repo.git(&["tag", FORGED]);
    repo.git(&["tag", "-a", "-m", "looks official", UNSIGNED]);
    repo.git(&["checkout", "-q", "main"]);
    let r = repo.path.to_str().unwrap().to_string();
    let base = |verb: &str| -> Vec<String> {
        [verb, "--repo", &r, "-n", &ns, "--kubeconfig", &kubeconfig]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let warned = |o: &Output, tag: &str| {
        text(&o.stderr)
            .lines()
            .filter(|l| l.starts_with("warning: ignoring tag") && l.contains(tag))
            .count()
    };
    let mut failures = Vec::new();

    let mut args = base("diff");
    args.extend(["--env", "dev", "-o", "json"].map(String::from));
    let diff = kubectl_gitops(&args, repo.tmp.path());
    let out = text(&diff.stdout);
    if diff.status.code() != Some(1)
        || !out.contains("deploy/dev/20260101T000000Z")
        || out.contains("/forged\"")
        || out.contains(FORGED)
        || warned(&diff, FORGED) != 1
        || warned(&diff, UNSIGNED) != 1
    {
        failures.push(format!(
            "[diff --env dev] exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            diff.status.code(),
            truncate(&out),
            text(&diff.stderr)
        ));
    }

    let refs = repo.refs();
    let before = snapshot(&ns);
    for tag in [FORGED, UNSIGNED] {
        for verb in ["diff", "sync"] {
            let mut args = base(verb);
            args.extend(["--tag", tag, "--yes"].map(String::from));
            if verb == "diff" {
                args.pop();
            }
            let o = kubectl_gitops(&args, repo.tmp.path());
            failures.extend(check_error(
                &format!("{verb} --tag {tag}"),
                &o,
                2,
                &format!("{tag} is not a deploy of dev"),
            ));
        }
        let o = repo.deploy(&["promote", "dev", "--yes", "--tag", tag]);
        failures.extend(check_error(
            &format!("promote --tag {tag}"),
            &o,
            2,
            &format!("{tag} is not a deploy of dev"),
        ));
    }
    if snapshot(&ns) != before {
        failures.push("a refused --tag changed the namespace".into());
    }
    if repo.refs() != refs {
        failures.push("a refused --tag changed git refs".into());
    }

    let promote = repo.deploy(&["promote", "dev", "--yes"]);
    let real = repo.git(&["rev-parse", "deploy/dev/20260101T000000Z^{commit}"]);
    if promote.status.code() != Some(0)
        || repo.git(&["rev-parse", "env/prod"]) != real
        || warned(&promote, FORGED) != 1
    {
        failures.push(format!(
            "[promote dev] exit {:?}: {}",
            promote.status.code(),
            text(&promote.stderr)
        ));
    }

    // Only a forged tag: no deploy at all, refused before connecting (no kubeconfig needed).
    let lone = Repo::new();
    lone.write("gitops.yaml", &config);
    lone.write("app/cm.yaml", CM);
    lone.tag("start");
    lone.git(&["branch", "env/dev", "HEAD"]);
    lone.git(&["tag", FORGED, "HEAD"]);
    let l = lone.path.to_str().unwrap().to_string();
    let o = kubectl_gitops(
        &[
            "diff",
            "--repo",
            &l,
            "--env",
            "dev",
            "--kubeconfig",
            "/nonexistent",
        ]
        .map(String::from),
        lone.tmp.path(),
    );
    failures.extend(check_error("lone forged tag", &o, 2, "has no deploy tag"));
    if warned(&o, FORGED) != 1 {
        failures.push(format!("[lone forged tag] no warning: {}", text(&o.stderr)));
    }
    report(failures);
}

// ---------------------------------------------------------------------------------------------
// kubectl gitops

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\ndata:\n  a: b\n";
const SECRET_VALUE: &str = "Tr0ub4dor-and-3-Hostile";

fn secret_doc(name: &str, extra_meta: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n{extra_meta}stringData:\n  password: {SECRET_VALUE}\n"
    )
}

type Setup = Box<dyn Fn(&Repo)>;

struct KubeCase {
    name: &'static str,
    setup: Setup,
    /// Arguments after the common `sync --repo R --tag t --path app -n NS --yes -v 9`, with
    /// `{dir}` replaced by the fixture's temp dir.
    args: Vec<String>,
    /// Replaces the common arguments entirely (connection errors, flags).
    raw: bool,
    code: i32,
    needle: String,
    /// Values that must appear in no output (plain or base64), also through `diff -o json`.
    secrets: Vec<String>,
}

fn kcase(
    name: &'static str,
    setup: impl Fn(&Repo) + 'static,
    args: &[&str],
    code: i32,
    needle: &str,
) -> KubeCase {
    KubeCase {
        name,
        setup: Box::new(setup),
        args: args.iter().map(|s| s.to_string()).collect(),
        raw: false,
        code,
        needle: needle.to_string(),
        secrets: Vec::new(),
    }
}

fn file(path: &'static str, content: impl Into<String>) -> impl Fn(&Repo) + 'static {
    let content = content.into();
    move |r: &Repo| r.write(path, &content)
}

fn with_secret(mut c: KubeCase) -> KubeCase {
    c.secrets.push(SECRET_VALUE.to_string());
    c
}

fn with_secret_value(mut c: KubeCase, value: &str) -> KubeCase {
    c.secrets.push(value.to_string());
    c
}

fn raw(mut c: KubeCase) -> KubeCase {
    c.raw = true;
    c
}

/// Everything in a namespace that a sync could write, with resourceVersions.
fn snapshot(ns: &str) -> Vec<String> {
    let o = cluster::cluster()
        .kubectl()
        .args([
            "get",
            "configmaps,secrets,services,deployments,serviceaccounts,roles,rolebindings,leases.coordination.k8s.io,networkpolicies,persistentvolumeclaims",
            "-n",
            ns,
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "kubectl get: {}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut out: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}/{}@{}",
                i["kind"], i["metadata"]["name"], i["metadata"]["resourceVersion"]
            )
        })
        .collect();
    out.sort();
    out
}

fn gitops_objects(snapshot: &[String]) -> Vec<&String> {
    snapshot
        .iter()
        .filter(|s| s.contains("kubectl-gitops"))
        .collect()
}

fn kubectl_gitops(args: &[String], dir: &Path) -> Output {
    let mut cmd = Command::new(KUBECTL_GITOPS);
    cmd.args(args).current_dir(dir);
    repo::isolate(&mut cmd, dir);
    cmd.output().unwrap()
}

/// Runs each case against `ns` and returns what went wrong.
fn run_kube_cases(ns: &str, cases: Vec<KubeCase>) -> Vec<String> {
    let kubeconfig = cluster::cluster()
        .kubeconfig()
        .to_str()
        .unwrap()
        .to_string();
    let mut failures = Vec::new();
    for case in cases {
        let repo = Repo::new();
        (case.setup)(&repo);
        repo.tag_fixture();
        let dir = repo.tmp.path().to_str().unwrap().to_string();
        let r = repo.path.to_str().unwrap().to_string();
        let extra: Vec<String> = case
            .args
            .iter()
            .map(|a| {
                a.replace("{dir}", &dir)
                    .replace("{repo}", &r)
                    .replace("{ns}", ns)
            })
            .collect();
        let mut args: Vec<String> = if case.raw {
            Vec::new()
        } else {
            [
                "sync", "--repo", &r, "--tag", "t", "--path", "app", "-n", ns, "--yes", "-v", "9",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        args.extend(extra);
        if !args.iter().any(|a| a.starts_with("--kubeconfig")) {
            args.extend(["--kubeconfig".to_string(), kubeconfig.clone()]);
        }
        let refs = repo.refs();
        let before = snapshot(ns);
        let o = kubectl_gitops(&args, repo.tmp.path());
        failures.extend(check_error(case.name, &o, case.code, &case.needle));
        let after = snapshot(ns);
        if after != before {
            failures.push(format!(
                "[{}] the namespace changed:\nbefore {before:?}\nafter  {after:?}",
                case.name
            ));
        }
        if !gitops_objects(&after).is_empty() {
            failures.push(format!(
                "[{}] an ApplySet parent or record exists: {:?}",
                case.name,
                gitops_objects(&after)
            ));
        }
        if repo.refs() != refs {
            failures.push(format!("[{}] git refs changed", case.name));
        }
        if !case.secrets.is_empty() {
            let secrets: Vec<&str> = case.secrets.iter().map(String::as_str).collect();
            failures.extend(leaks(case.name, &o, &secrets));
            // The same input through diff -o json must not leak either.
            let mut diff = args.clone();
            diff[0] = "diff".into();
            diff.retain(|a| a != "--yes");
            diff.extend(["-o".to_string(), "json".to_string()]);
            let d = kubectl_gitops(&diff, repo.tmp.path());
            failures.extend(leaks(case.name, &d, &secrets));
        }
    }
    failures
}

#[test]
fn kubectl_gitops_refuses_bad_manifests_and_writes_nothing() {
    let ns = cluster::cluster().fresh_namespace("hostile-manifests");
    let ns_meta = format!("  namespace: {ns}-other\n");
    let cases = vec![
        kcase(
            "malformed-yaml",
            file(
                "app/bad.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: [\n",
            ),
            &[],
            2,
            "app/bad.yaml",
        ),
        kcase(
            "malformed-json",
            file(
                "app/bad.json",
                "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\",,}",
            ),
            &[],
            2,
            "app/bad.json",
        ),
        kcase(
            "json-truncated",
            file("app/bad.json", "{\"apiVersion\": \"v1\", \"kind\": "),
            &[],
            2,
            "app/bad.json",
        ),
        kcase(
            "yaml-alias-bomb",
            file(
                "app/bomb.yaml",
                format!(
                    "{}apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\ndata: *a8\n",
                    alias_bomb()
                ),
            ),
            &[],
            2,
            "app/bomb.yaml",
        ),
        kcase(
            "yaml-deep-nesting",
            file(
                "app/deep.yaml",
                format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\ndata: {}\n",
                    deep_yaml(100_000)
                ),
            ),
            &[],
            2,
            "app/deep.yaml",
        ),
        kcase(
            "json-deep-nesting",
            file("app/deep.json", deep_yaml(100_000)),
            &[],
            2,
            "app/deep.json",
        ),
        kcase(
            "not-utf8",
            |r: &Repo| r.write("app/bin.yaml", b"apiVersion: v1\nkind: \xff\xfe\n"),
            &[],
            2,
            "app/bin.yaml",
        ),
        kcase(
            "not-a-kubernetes-object",
            file("app/values.yaml", "replicaCount: 3\nimage: nginx\n"),
            &[],
            2,
            "app/values.yaml",
        ),
        kcase(
            "scalar-document",
            file("app/scalar.yaml", "just a string\n"),
            &[],
            2,
            "app/scalar.yaml",
        ),
        kcase(
            "list-with-a-scalar-item",
            file(
                "app/list.yaml",
                "apiVersion: v1\nkind: List\nitems:\n  - 42\n",
            ),
            &[],
            2,
            "app/list.yaml",
        ),
        kcase(
            "missing-apiversion",
            file("app/cm.yaml", "kind: ConfigMap\nmetadata:\n  name: x\n"),
            &[],
            2,
            "apiVersion",
        ),
        kcase(
            "duplicate-objects",
            file("app/all.yaml", format!("{CM}---\n{CM}")),
            &[],
            2,
            "defined twice",
        ),
        kcase(
            "duplicate-across-files",
            |r: &Repo| {
                r.write("app/a.yaml", CM);
                r.write("app/b/c.yaml", CM);
            },
            &[],
            2,
            "defined twice",
        ),
        kcase(
            "invalid-name-uppercase",
            file(
                "app/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n",
            ),
            &[],
            2,
            "Bad_Name",
        ),
        kcase(
            "invalid-name-too-long",
            file(
                "app/cm.yaml",
                format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\n",
                    "a".repeat(300)
                ),
            ),
            &[],
            2,
            "app/cm.yaml",
        ),
        kcase(
            "invalid-name-path",
            file(
                "app/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ../../etc\n",
            ),
            &[],
            2,
            "app/cm.yaml",
        ),
        kcase(
            "namespace-mismatch",
            file(
                "app/cm.yaml",
                format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n{ns_meta}"),
            ),
            &[],
            2,
            "not the target",
        ),
        kcase(
            "cluster-scoped",
            file(
                "app/cr.yaml",
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: wide\nrules: []\n",
            ),
            &[],
            2,
            "cluster-scoped",
        ),
        kcase(
            "unknown-kind",
            file(
                "app/w.yaml",
                "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
            ),
            &[],
            2,
            "Widget",
        ),
        kcase(
            "schema-rejects-field",
            file(
                "app/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ndata: 12\n",
            ),
            &[],
            2,
            "ConfigMap",
        ),
        with_secret(kcase(
            "symlink-outside-manifests-path",
            |r: &Repo| {
                r.write("app/cm.yaml", CM);
                r.write("private/s.yaml", secret_doc("leak", ""));
                r.symlink("app/link.yaml", "../private/s.yaml");
            },
            &[],
            2,
            "app/link.yaml",
        )),
        kcase(
            "symlink-outside-repository",
            |r: &Repo| {
                r.write("app/cm.yaml", CM);
                r.symlink("app/passwd.yaml", "/etc/passwd");
            },
            &[],
            2,
            "app/passwd.yaml",
        ),
        kcase(
            "kustomize-remote-resource",
            file(
                "app/kustomization.yaml",
                "resources:\n  - https://example.invalid/evil/deploy.yaml\n",
            ),
            &[],
            2,
            "example.invalid",
        ),
        kcase(
            "kustomize-remote-base",
            file(
                "app/kustomization.yaml",
                "resources:\n  - github.com/example/evil//base?ref=main\n",
            ),
            &[],
            2,
            "github.com/example/evil",
        ),
        with_secret(kcase(
            "kustomize-file-outside-root",
            |r: &Repo| {
                r.write(
                    "app/kustomization.yaml",
                    "resources:\n  - ../private/s.yaml\n",
                );
                r.write("private/s.yaml", secret_doc("leak", ""));
            },
            &[],
            2,
            "app",
        )),
        kcase(
            "large-manifest-50MB",
            |r: &Repo| {
                let mut s = String::with_capacity(51 << 20);
                s.push_str(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: huge\ndata:\n  blob: ",
                );
                let line = "x".repeat(1023);
                while s.len() < 50 << 20 {
                    s.push_str(&line);
                }
                s.push('\n');
                r.write("app/huge.yaml", s);
            },
            &[],
            2,
            "huge",
        ),
        raw(kcase(
            "unknown-tag",
            file("app/cm.yaml", CM),
            &[
                "sync",
                "--repo",
                "{repo}",
                "--tag",
                "no-such-tag",
                "--path",
                "app",
                "-n",
                "{ns}",
                "--yes",
            ],
            2,
            "no-such-tag",
        )),
        raw(kcase(
            "path-escapes-repo",
            file("app/cm.yaml", CM),
            &[
                "sync", "--repo", "{repo}", "--tag", "t", "--path", "../etc", "-n", "{ns}", "--yes",
            ],
            2,
            "--path",
        )),
        raw(kcase(
            "path-missing",
            file("app/cm.yaml", CM),
            &[
                "sync", "--repo", "{repo}", "--tag", "t", "--path", "nowhere", "-n", "{ns}",
                "--yes",
            ],
            2,
            "nowhere",
        )),
        with_secret(kcase(
            "secret-invalid-name",
            file("app/s.yaml", secret_doc("Bad_Secret", "")),
            &[],
            2,
            "Bad_Secret",
        )),
        with_secret(kcase(
            "secret-in-other-namespace",
            file("app/s.yaml", secret_doc("db", &ns_meta)),
            &[],
            2,
            "not the target",
        )),
        with_secret(kcase(
            "secret-duplicate",
            file(
                "app/s.yaml",
                format!("{}---\n{}", secret_doc("db", ""), secret_doc("db", "")),
            ),
            &[],
            2,
            "defined twice",
        )),
        with_secret(kcase(
            "secret-malformed-yaml",
            file(
                "app/s.yaml",
                format!("{}  broken: [\n", secret_doc("db", "")),
            ),
            &[],
            2,
            "app/s.yaml",
        )),
        with_secret(kcase(
            "secret-data-not-base64",
            file(
                "app/s.yaml",
                format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: \"{SECRET_VALUE}!\"\n"
                ),
            ),
            &[],
            2,
            "Secret",
        )),
        with_secret(kcase(
            "secret-schema-rejects",
            file(
                "app/s.yaml",
                format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: 12\nstringData:\n  password: {SECRET_VALUE}\n"
                ),
            ),
            &[],
            2,
            "Secret",
        )),
        // The server quotes a value it cannot take in its error: masked there too.
        with_secret_value(
            kcase(
                "secret-number-quoted-by-the-server",
                file(
                    "app/s.yaml",
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  pw: 48151623429999\n",
                ),
                &[],
                2,
                "Secret",
            ),
            "48151623429999",
        ),
        with_secret_value(
            kcase(
                "secret-map-quoted-by-the-server",
                file(
                    "app/s.yaml",
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  pw: {inner: Hunter2-Quoted-Map}\n",
                ),
                &[],
                2,
                "Secret",
            ),
            "Hunter2-Quoted-Map",
        ),
        with_secret_value(
            kcase(
                "secret-list-quoted-by-the-server",
                file(
                    "app/s.yaml",
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  pw: [Hunter2-Quoted-List]\n",
                ),
                &[],
                2,
                "Secret",
            ),
            "Hunter2-Quoted-List",
        ),
    ];
    report(run_kube_cases(&ns, cases));
}

#[test]
fn kubectl_gitops_refuses_bad_connections_flags_and_config() {
    let ns = cluster::cluster().fresh_namespace("hostile-conn");
    let cm = || file("app/cm.yaml", CM);
    let cases = vec![
        kcase(
            "missing-kubeconfig",
            cm(),
            &["--kubeconfig", "{dir}/nope/kubeconfig"],
            2,
            "nope/kubeconfig",
        ),
        kcase(
            "corrupt-kubeconfig",
            |r: &Repo| {
                r.write("app/cm.yaml", CM);
                std::fs::write(r.tmp.path().join("kc"), "apiVersion: v1\nclusters: [ {\n").unwrap();
            },
            &["--kubeconfig", "{dir}/kc"],
            2,
            "{dir}/kc",
        ),
        kcase(
            "kubeconfig-not-yaml-object",
            |r: &Repo| {
                r.write("app/cm.yaml", CM);
                std::fs::write(r.tmp.path().join("kc"), "- a\n- b\n").unwrap();
            },
            &["--kubeconfig", "{dir}/kc"],
            2,
            "{dir}/kc",
        ),
        kcase(
            "context-does-not-exist",
            cm(),
            &["--context", "no-such-context"],
            2,
            "no-such-context",
        ),
        kcase(
            "concurrency-zero",
            cm(),
            &["--concurrency", "0"],
            2,
            "--concurrency",
        ),
        kcase(
            "history-limit-not-a-number",
            cm(),
            &["--history-limit", "lots"],
            2,
            "--history-limit",
        ),
        kcase("unknown-flag", cm(), &["--frobnicate"], 2, "--frobnicate"),
        // Checked before any request: the server named here does not exist.
        kcase(
            "timeout-not-a-duration",
            cm(),
            &[
                "--server",
                "https://127.0.0.1:1",
                "--wait",
                "--timeout",
                "soon",
            ],
            2,
            "--timeout",
        ),
        kcase(
            "request-timeout-not-a-duration",
            cm(),
            &["--request-timeout", "soon"],
            2,
            "--request-timeout",
        ),
        raw(kcase(
            "repo-is-not-a-repository",
            cm(),
            &[
                "sync", "--repo", "{dir}", "--tag", "t", "--path", "app", "-n", "default", "--yes",
            ],
            2,
            "{dir}",
        )),
        raw(kcase(
            "env-from-bad-gitops-yaml",
            |r: &Repo| {
                r.write("app/cm.yaml", CM);
                r.write("gitops.yaml", "environments:\n  - {name: dev, branch: env/dev, path: app, namespace: dev, colour: red}\n");
            },
            &[
                "sync", "--repo", "{repo}", "--env", "dev", "-n", "{ns}", "--yes",
            ],
            2,
            "gitops.yaml",
        )),
        // A deploy tag whose gitops.yaml (at the tag) is broken or lacks the environment: its
        // namespace and context are unknown, so nothing may fall back to the context's.
        raw(kcase(
            "deploy-tag-with-broken-gitops-yaml",
            |r: &Repo| {
                deploy_tag_with_config(
                    r,
                    "environments:\n  - {name: dev, branch: env/dev, path: app, namespace: dev, colour: red}\n",
                )
            },
            &[
                "sync",
                "--repo",
                "{repo}",
                "--tag",
                "deploy/dev/20250101T000000Z",
                "--path",
                "app",
                "-n",
                "{ns}",
                "--yes",
            ],
            2,
            "gitops.yaml at deploy/dev/20250101T000000Z",
        )),
        raw(kcase(
            "deploy-tag-whose-gitops-yaml-lacks-the-env",
            |r: &Repo| {
                deploy_tag_with_config(
                    r,
                    "environments:\n  - {name: prod, branch: env/prod, path: app, namespace: prod}\n",
                )
            },
            &[
                "sync",
                "--repo",
                "{repo}",
                "--tag",
                "deploy/dev/20250101T000000Z",
                "--path",
                "app",
                "-n",
                "{ns}",
                "--yes",
            ],
            2,
            "\"dev\"",
        )),
        raw(kcase(
            "env-unknown",
            |r: &Repo| {
                r.write("app/cm.yaml", CM);
                r.write("gitops.yaml", GOOD_CONFIG);
            },
            &[
                "sync", "--repo", "{repo}", "--env", "nowhere", "-n", "{ns}", "--yes",
            ],
            2,
            "nowhere",
        )),
    ];
    let mut cases = cases;
    // {dir} in needles is the fixture's temp dir, which only exists once the case runs; the
    // file name alone identifies the right file.
    for c in &mut cases {
        c.needle = c.needle.replace("{dir}/", "");
        if c.needle == "{dir}" {
            c.needle = "not a git repository".into();
        }
    }
    report(run_kube_cases(&ns, cases));
}

/// A trusted deploy tag of dev whose commit holds `config` as gitops.yaml, while the commit
/// the fixture makes next (HEAD, which env/dev moves to) holds a good one.
fn deploy_tag_with_config(r: &Repo, config: &str) {
    r.write("app/cm.yaml", CM);
    r.write("gitops.yaml", config);
    r.git(&["add", "-A"]);
    r.git(&["commit", "-q", "-m", "config at the tag"]);
    r.git(&[
        "tag",
        "-a",
        "-m",
        "deploy dev: tag\n\nDeploy-Env: dev\n",
        "deploy/dev/20250101T000000Z",
    ]);
    r.write("gitops.yaml", GOOD_CONFIG);
}

/// The restricted user may read `restricted-ns` only: a sync there is refused by the server
/// (403), the error names the verb, the resource and the namespace, and the namespace is left
/// as it was.
#[test]
fn a_forbidden_write_names_verb_resource_and_namespace() {
    let c = cluster::cluster();
    let ns = cluster::RESTRICTED_NAMESPACE;
    let repo = Repo::new();
    repo.write("app/cm.yaml", CM);
    repo.write("app/s.yaml", secret_doc("db", ""));
    repo.tag_fixture();
    let before = snapshot(ns);
    let r = repo.path.to_str().unwrap();
    let o = kubectl_gitops(
        &[
            "sync",
            "--repo",
            r,
            "--tag",
            "t",
            "--path",
            "app",
            "-n",
            ns,
            "--yes",
            "-v",
            "9",
            "--kubeconfig",
            c.kubeconfig().to_str().unwrap(),
            "--context",
            "restricted",
        ]
        .map(String::from),
        repo.tmp.path(),
    );
    let mut failures: Vec<String> = check_error("restricted-sync", &o, 1, "403")
        .into_iter()
        .collect();
    let e = text(&o.stderr);
    let line = e.lines().find(|l| l.starts_with("error:")).unwrap_or("");
    // The first request the user lacks a right for may be a write, or a read only a sync
    // makes (its revision records, which are Secrets); either must be named.
    let verb = ["create", "patch", "update", "apply", "list"]
        .iter()
        .any(|v| line.contains(v));
    let resource = line.contains("secrets") || line.contains("configmaps");
    if !(verb && resource && line.contains(ns)) {
        failures.push(format!(
            "[restricted-sync] the error must name the verb, resource and namespace: {line}"
        ));
    }
    failures.extend(leaks("restricted-sync", &o, &[SECRET_VALUE]));
    if snapshot(ns) != before {
        failures.push("[restricted-sync] restricted-ns changed".into());
    }
    report(failures);
}

/// A field owned by another manager stops the sync (exit 1) before anything is written.
#[test]
fn an_ssa_conflict_stops_the_sync_and_writes_nothing() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("hostile-conflict");
    let other = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        other.path(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\ndata:\n  a: theirs\n",
    )
    .unwrap();
    let o = c
        .kubectl()
        .args([
            "apply",
            "--server-side",
            "--field-manager",
            "hotfixer",
            "-n",
            &ns,
            "-f",
        ])
        .arg(other.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let cases = vec![kcase(
        "ssa-conflict",
        file("app/cm.yaml", CM),
        &[],
        1,
        "hotfixer",
    )];
    report(run_kube_cases(&ns, cases));
}

// ---------------------------------------------------------------------------------------------
// kubectl gitops revert: a revision record is anyone's who may write Secrets in the namespace,
// and a tag is the same input sync refuses or accepts. Revert must check both as sync does.

/// `kubectl gitops <args> --kubeconfig <test cluster>` from `dir`, killed after `secs` (a
/// hang is a failure, not a stuck test run). Returns the output and whether it finished.
fn kubectl_gitops_within(args: &[String], dir: &Path, secs: u64) -> (Output, bool) {
    use std::io::Read;
    let mut cmd = Command::new(KUBECTL_GITOPS);
    cmd.args(args)
        .arg("--kubeconfig")
        .arg(cluster::cluster().kubeconfig())
        .current_dir(dir);
    repo::isolate(&mut cmd, dir);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let pipe = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = pipe(Box::new(child.stdout.take().unwrap()));
    let err = pipe(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut finished = true;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            finished = false;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let o = Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    (o, finished)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A namespace synced at tag `A` (revision 1) and then at `B` (revision 2), both from `app/`.
fn two_revisions(prefix: &str) -> (String, Repo) {
    let ns = cluster::cluster().fresh_namespace(prefix);
    let repo = Repo::new();
    repo.write("app/cm.yaml", CM);
    repo.tag("A");
    repo.write("app/cm.yaml", CM.replace("a: b", "a: changed"));
    repo.tag("B");
    let r = repo.path.to_str().unwrap().to_string();
    for tag in ["A", "B"] {
        let (o, done) = kubectl_gitops_within(
            &strings(&[
                "sync", "--repo", &r, "--tag", tag, "--path", "app", "-n", &ns, "--yes",
            ]),
            repo.tmp.path(),
            120,
        );
        assert!(
            done && o.status.success(),
            "sync {tag}: {}",
            text(&o.stderr)
        );
    }
    (ns, repo)
}

/// The record Secret `name` in `ns`, as JSON.
fn record_secret(ns: &str, name: &str) -> Value {
    let o = cluster::cluster()
        .kubectl()
        .args(["get", "secret", name, "-n", ns, "-o", "json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Writes `secret` back over the record, as someone allowed to edit Secrets would.
fn replace_secret(secret: &Value) {
    let mut child = cluster::cluster()
        .kubectl()
        .args(["replace", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(secret.to_string().as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "kubectl replace: {}", text(&o.stderr));
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Rewrites the objects recorded in revision `rev` (a one-part record).
fn edit_record_objects(ns: &str, rev: u64, edit: impl Fn(&mut Vec<Value>)) {
    use std::io::Read;
    let mut s = record_secret(ns, &format!("kubectl-gitops.rev.{rev}"));
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&unb64(&s["data"]["manifests.0"])[..])
        .read_to_end(&mut json)
        .unwrap();
    let mut objects: Vec<Value> = serde_json::from_slice(&json).unwrap();
    edit(&mut objects);
    s["data"]["manifests.0"] = Value::String(b64(&gzip(
        serde_json::to_string(&objects).unwrap().as_bytes(),
    )));
    replace_secret(&s);
}

/// Rewrites the meta.json of revision `rev`.
fn edit_record_meta(ns: &str, rev: u64, edit: impl Fn(&mut Value)) {
    let mut s = record_secret(ns, &format!("kubectl-gitops.rev.{rev}"));
    let mut meta: Value = serde_json::from_slice(&unb64(&s["data"]["meta.json"])).unwrap();
    edit(&mut meta);
    s["data"]["meta.json"] = Value::String(b64(meta.to_string().as_bytes()));
    replace_secret(&s);
}

fn exists(args: &[&str]) -> bool {
    cluster::cluster()
        .kubectl()
        .args(["get"])
        .args(args)
        .output()
        .unwrap()
        .status
        .success()
}

fn no_lease(case: &str, ns: &str) -> Option<String> {
    exists(&["lease", "kubectl-gitops-lock", "-n", ns])
        .then(|| format!("[{case}] the namespace Lease was left behind"))
}

type RecordEdit = Box<dyn Fn(&str, &Repo)>;

struct RevertCase {
    name: &'static str,
    /// Edits the records or the repository after revisions 1 (tag A) and 2 (tag B).
    edit: RecordEdit,
    /// After `revert -n <ns> --yes -v 9`; `{repo}` and `{ns}` are replaced.
    args: Vec<&'static str>,
    needle: &'static str,
    /// `kubectl get` arguments of objects that must not exist afterwards.
    absent: Vec<&'static str>,
}

#[test]
fn revert_refuses_what_sync_refuses_and_writes_nothing() {
    let cases = vec![
        RevertCase {
            name: "record-adds-clusterrolebinding-to-cluster-admin",
            edit: Box::new(|ns, _| {
                edit_record_objects(ns, 1, |objs| {
                    objs.push(serde_json::json!({
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "ClusterRoleBinding",
                        "metadata": {"name": format!("{ns}-takeover")},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
                    }))
                })
            }),
            args: vec![],
            needle: "ClusterRoleBinding/{ns}-takeover is cluster-scoped",
            absent: vec!["clusterrolebinding", "{ns}-takeover"],
        },
        RevertCase {
            name: "record-adds-object-in-kube-system",
            edit: Box::new(|ns, _| {
                edit_record_objects(ns, 1, |objs| {
                    objs.push(serde_json::json!({
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": format!("{ns}-planted"), "namespace": "kube-system"},
                        "data": {"x": "y"},
                    }))
                })
            }),
            args: vec![],
            needle: "ConfigMap/{ns}-planted is in namespace \"kube-system\"",
            absent: vec!["configmap", "{ns}-planted", "-n", "kube-system"],
        },
        RevertCase {
            name: "record-emptied-would-prune-everything",
            edit: Box::new(|ns, _| edit_record_objects(ns, 1, |objs| objs.clear())),
            args: vec![],
            needle: "no objects",
            absent: vec![],
        },
        RevertCase {
            name: "to-tag-with-a-cluster-scoped-object",
            edit: Box::new(|ns, repo| {
                repo.write(
                    "app/cr.yaml",
                    format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {ns}-wide\nrules: []\n"),
                );
                repo.tag("C");
            }),
            args: vec!["--repo", "{repo}", "--to-tag", "C", "--path", "app"],
            needle: "ClusterRole/{ns}-wide is cluster-scoped",
            absent: vec!["clusterrole", "{ns}-wide"],
        },
        RevertCase {
            name: "to-tag-with-an-object-in-another-namespace",
            edit: Box::new(|ns, repo| {
                repo.write(
                    "app/other.yaml",
                    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {ns}-elsewhere\n  namespace: kube-system\n"),
                );
                repo.tag("C");
            }),
            args: vec!["--repo", "{repo}", "--to-tag", "C", "--path", "app"],
            needle: "not the target",
            absent: vec!["configmap", "{ns}-elsewhere", "-n", "kube-system"],
        },
    ];
    let mut failures = Vec::new();
    for case in cases {
        let (ns, repo) = two_revisions("hostile-revert");
        let r = repo.path.to_str().unwrap().to_string();
        (case.edit)(&ns, &repo);
        let fill = |s: &str| s.replace("{ns}", &ns).replace("{repo}", &r);
        let mut args = strings(&["revert", "-n", &ns, "--yes", "-v", "9"]);
        args.extend(case.args.iter().map(|a| fill(a)));
        let before = snapshot(&ns);
        let (o, done) = kubectl_gitops_within(&args, repo.tmp.path(), 120);
        if !done {
            failures.push(format!("[{}] did not finish within 120 s", case.name));
        }
        failures.extend(check_error(case.name, &o, 2, &fill(case.needle)));
        let after = snapshot(&ns);
        if after != before {
            failures.push(format!(
                "[{}] the namespace changed:\nbefore {before:?}\nafter  {after:?}",
                case.name
            ));
        }
        let absent: Vec<String> = case.absent.iter().map(|a| fill(a)).collect();
        if !absent.is_empty() && exists(&absent.iter().map(String::as_str).collect::<Vec<_>>()) {
            failures.push(format!("[{}] {absent:?} was created", case.name));
        }
    }
    report(failures);
}

/// `--rollback-on-failure` goes back to a record: a forged one is checked as `revert` checks
/// it, and the rollback is refused rather than applied.
#[test]
fn a_rollback_refuses_a_forged_record_as_revert_does() {
    let (ns, repo) = two_revisions("hostile-rollback");
    edit_record_objects(&ns, 2, |objs| {
        objs.push(serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("{ns}-takeover")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
        }))
    });
    repo.write(
        "app/job.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: task\n          image: busybox:fail\n",
    );
    repo.tag("C");
    let r = repo.path.to_str().unwrap();
    let (o, done) = kubectl_gitops_within(
        &strings(&[
            "sync",
            "--repo",
            r,
            "--tag",
            "C",
            "--path",
            "app",
            "-n",
            &ns,
            "--yes",
            "--wait",
            "--timeout",
            "60s",
            "--rollback-on-failure",
        ]),
        repo.tmp.path(),
        120,
    );
    assert!(done, "did not finish within 120 s");
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the rollback to revision 2 (tag B) failed before it was recorded")
            && stderr.contains(&format!(
                "ClusterRoleBinding/{ns}-takeover is cluster-scoped"
            )),
        "{stderr}"
    );
    assert!(!exists(&["clusterrolebinding", &format!("{ns}-takeover")]));
    assert_eq!(no_lease("rollback", &ns), None);
}

/// The flag sync would need lets revert through as it lets sync through.
#[test]
fn revert_to_a_tag_takes_the_flags_sync_takes() {
    let (ns, repo) = two_revisions("hostile-revert-flag");
    repo.write(
        "app/cr.yaml",
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {ns}-reader\nrules: []\n"
        ),
    );
    repo.tag("C");
    let r = repo.path.to_str().unwrap();
    let (o, _) = kubectl_gitops_within(
        &strings(&[
            "revert",
            "-n",
            &ns,
            "--yes",
            "--repo",
            r,
            "--to-tag",
            "C",
            "--path",
            "app",
            "--allow-cluster-scoped",
        ]),
        repo.tmp.path(),
        120,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(exists(&["clusterrole", &format!("{ns}-reader")]));
}

/// A gzip stream of `[`, `mib` MiB of spaces and `]`: valid JSON, a few hundred KB packed.
fn gzip_bomb(mib: usize) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(b"[").unwrap();
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..mib {
        e.write_all(&spaces).unwrap();
    }
    e.write_all(b"]").unwrap();
    e.finish().unwrap()
}

/// Records that break the bounds: named as corrupt by history and revert, never used, and no
/// later sync panics, loops or leaves its Lease behind.
#[test]
fn corrupt_records_are_named_and_never_trusted() {
    let bomb = gzip_bomb(300);
    assert!(bomb.len() < 512 * 1024, "bomb is {} bytes", bomb.len());
    struct Case {
        name: &'static str,
        edit: Box<dyn Fn(&str)>,
        /// What history and revert say about revision 1.
        needle: &'static str,
        /// History can tell from the meta alone (the bomb shows only when read).
        history_sees_it: bool,
    }
    let cases = vec![
        Case {
            name: "parts-4294967295",
            edit: Box::new(|ns| edit_record_meta(ns, 1, |m| m["parts"] = 4294967295u64.into())),
            needle: "4294967295 parts",
            history_sees_it: true,
        },
        Case {
            name: "revision-18446744073709551615",
            edit: Box::new(|ns| edit_record_meta(ns, 1, |m| m["revision"] = u64::MAX.into())),
            needle: "18446744073709551615",
            history_sees_it: true,
        },
        Case {
            name: "gzip-bomb",
            edit: Box::new(move |ns| {
                let mut s = record_secret(ns, "kubectl-gitops.rev.1");
                s["data"]["manifests.0"] = Value::String(b64(&bomb));
                replace_secret(&s);
            }),
            needle: "inflate to more than 64 MiB",
            history_sees_it: false,
        },
    ];
    let mut failures = Vec::new();
    for case in cases {
        let name = case.name;
        let (ns, repo) = two_revisions("hostile-record");
        (case.edit)(&ns);
        let dir = repo.tmp.path();
        let run = |failures: &mut Vec<String>, what: &str, args: Vec<String>| -> Output {
            let (o, done) = kubectl_gitops_within(&args, dir, 60);
            let stderr = text(&o.stderr);
            if !done {
                failures.push(format!("[{name}] {what} did not finish within 60 s"));
            } else if o.status.code() == Some(101) || stderr.contains("panicked") {
                failures.push(format!("[{name}] {what} panicked:\n{stderr}"));
            }
            o
        };
        // history names it, and exits 0.
        let h = run(
            &mut failures,
            "history",
            strings(&["history", "-n", &ns, "-o", "json"]),
        );
        let hv: Value = serde_json::from_slice(&h.stdout).unwrap_or_default();
        let named = hv["revisions"].as_array().into_iter().flatten().any(|r| {
            r["secret"] == "kubectl-gitops.rev.1"
                && r["corrupt"]
                    .as_str()
                    .is_some_and(|c| c.contains(case.needle))
        });
        if h.status.code() != Some(0) || named != case.history_sees_it {
            failures.push(format!(
                "[{name}] history (exit {:?}) should {}name revision 1 as corrupt: {hv:#}\n{}",
                h.status.code(),
                if case.history_sees_it { "" } else { "not " },
                text(&h.stderr)
            ));
        }
        // revert to it: refused, named, nothing written.
        let before = snapshot(&ns);
        let o = run(
            &mut failures,
            "revert",
            strings(&["revert", "-n", &ns, "--to-revision", "1", "--yes"]),
        );
        failures.extend(check_error(name, &o, 2, "kubectl-gitops.rev.1 is corrupt"));
        if !case.history_sees_it && !text(&o.stderr).contains(case.needle) {
            failures.push(format!(
                "[{name}] revert does not say why: {}",
                text(&o.stderr)
            ));
        }
        if snapshot(&ns) != before {
            failures.push(format!("[{name}] revert wrote to the namespace"));
        }
        // A later sync that prunes history down to one record finishes, exit 0.
        let r = repo.path.to_str().unwrap();
        let o = run(
            &mut failures,
            "sync",
            strings(&[
                "sync",
                "--repo",
                r,
                "--tag",
                "A",
                "--path",
                "app",
                "-n",
                &ns,
                "--yes",
                "--history-limit",
                "1",
            ]),
        );
        if o.status.code() != Some(0) {
            failures.push(format!(
                "[{name}] sync after it: exit {:?}\n{}",
                o.status.code(),
                text(&o.stderr)
            ));
        }
        failures.extend(no_lease(name, &ns));
        // Beyond the limit, the corrupt record goes as any other would, parts and all.
        let left: Vec<String> = snapshot(&ns)
            .into_iter()
            .filter(|s| s.contains("kubectl-gitops.rev."))
            .collect();
        if left.len() != 1 || !left[0].contains("kubectl-gitops.rev.3") {
            failures.push(format!(
                "[{name}] --history-limit 1 should leave revision 3 alone: {left:?}"
            ));
        }
    }
    report(failures);
}

/// A kubeconfig for the test cluster whose user is an exec credential plugin: `script`, run by
/// sh. Server and certificate authority are the test cluster's.
fn exec_plugin_kubeconfig(dir: &Path, script: &str) -> PathBuf {
    let o = cluster::cluster()
        .kubectl()
        .args(["config", "view", "--raw", "--minify", "-o", "json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let kc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let cluster = &kc["clusters"][0]["cluster"];
    let plugin = dir.join("credential-plugin");
    std::fs::write(&plugin, format!("#!/bin/sh\n{script}")).unwrap();
    let mut perms = std::fs::metadata(&plugin).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&plugin, perms).unwrap();
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": plugin,
            "interactiveMode": "Never",
        }}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    });
    let path = dir.join("exec-kubeconfig");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// A credential plugin that fails, or answers with truncated JSON, may have printed a token:
/// the error shows its exit status and stderr (as kubectl does), never its output.
#[test]
fn a_failing_exec_credential_plugin_never_shows_its_output() {
    const TOKEN: &str = "sk-live-7f3a9c2e41b8d6f0";
    let ns = cluster::cluster().fresh_namespace("hostile-exec");
    let cases = [
        (
            "plugin-fails-after-printing-a-token",
            format!(
                "printf '%s' '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{TOKEN}\"}}}}'\necho 'login expired: run sso-login' >&2\nexit 1\n"
            ),
            "login expired: run sso-login",
        ),
        (
            "plugin-prints-truncated-json",
            format!(
                "printf '%s' '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{TOKEN}'\n"
            ),
            "not an ExecCredential",
        ),
    ];
    let mut failures = Vec::new();
    for (case, script, needle) in cases {
        let repo = Repo::new();
        repo.write("app/cm.yaml", CM);
        repo.tag_fixture();
        let kc = exec_plugin_kubeconfig(repo.tmp.path(), &script);
        let r = repo.path.to_str().unwrap();
        let before = snapshot(&ns);
        for verb in ["sync", "diff"] {
            let mut args = strings(&[
                verb, "--repo", r, "--tag", "t", "--path", "app", "-n", &ns, "-v", "9",
            ]);
            if verb == "sync" {
                args.push("--yes".into());
            }
            args.extend(["--kubeconfig".to_string(), kc.to_str().unwrap().to_string()]);
            let o = kubectl_gitops(&args, repo.tmp.path());
            let name = format!("{case} ({verb})");
            failures.extend(check_error(&name, &o, 2, needle));
            failures.extend(leaks(&name, &o, &[TOKEN]));
        }
        if snapshot(&ns) != before {
            failures.push(format!("[{case}] the namespace changed"));
        }
    }
    report(failures);
}

/// `history` and `status` read a namespace the same way, and as README's exit codes say for
/// the read-only verbs: a namespace the user may not read and one that does not exist are both
/// errors (exit 2, one line naming the namespace), never an empty history (exit 0) or an API
/// failure (exit 1). An existing namespace without records still has an empty history.
#[test]
fn history_and_status_agree_on_a_forbidden_or_missing_namespace() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("hostile-readns");
    let missing = format!("{ns}-does-not-exist");
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for verb in ["history", "status"] {
        for (case, target, extra, needle) in [
            (
                "forbidden",
                ns.as_str(),
                &["--context", "restricted"][..],
                ns.as_str(),
            ),
            ("missing", missing.as_str(), &[][..], "does not exist"),
        ] {
            let mut args = strings(&[verb, "-n", target]);
            args.extend(strings(extra));
            let (o, done) = kubectl_gitops_within(&args, dir.path(), 60);
            let name = format!("{verb} {case}");
            if !done {
                failures.push(format!("[{name}] still running after 60 s"));
                continue;
            }
            failures.extend(check_error(&name, &o, 2, needle));
            if case == "missing" && !text(&o.stderr).contains(&missing) {
                failures.push(format!(
                    "[{name}] the namespace is not named: {}",
                    text(&o.stderr)
                ));
            }
        }
    }
    let (o, _) = kubectl_gitops_within(&strings(&["history", "-n", &ns]), dir.path(), 60);
    if o.status.code() != Some(0) || !text(&o.stdout).contains("no revisions recorded") {
        failures.push(format!(
            "[history empty] exit {:?}: {}{}",
            o.status.code(),
            text(&o.stdout),
            text(&o.stderr)
        ));
    }
    report(failures);
}

/// A Lease is anyone's to write in the namespace: a holder name that would forge a second
/// `error:` line is shown escaped, and a Lease "renewed" in year 9999 is a held lock (exit 3
/// naming it), not a crash or an API failure.
#[test]
fn a_forged_lease_is_a_held_lock_named_safely() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("hostile-lease");
    let repo = Repo::new();
    repo.write("app/cm.yaml", CM);
    repo.tag_fixture();
    let mut failures = Vec::new();
    let now = String::from_utf8(
        Command::new("date")
            .args(["-u", "+%Y-%m-%dT%H:%M:%S.000000Z"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for (case, holder, renewed) in [
        (
            "holder-with-newline",
            "mallory\nerror: forged line",
            now.trim(),
        ),
        (
            "renewed-in-year-9999",
            "mallory",
            "9999-12-31T23:59:59.999999Z",
        ),
    ] {
        let lease = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "kubectl-gitops-lock", "namespace": ns},
            "spec": {"holderIdentity": holder, "acquireTime": "2020-01-01T00:00:00.000000Z",
                     "renewTime": renewed, "leaseDurationSeconds": 3600},
        });
        let f = repo.tmp.path().join("lease.json");
        std::fs::write(&f, lease.to_string()).unwrap();
        let o = c
            .kubectl()
            .args(["apply", "-f", f.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        let before = snapshot(&ns);
        let r = repo.path.to_str().unwrap();
        let (o, done) = kubectl_gitops_within(
            &strings(&[
                "sync", "--repo", r, "--tag", "t", "--path", "app", "-n", &ns, "--yes",
            ]),
            repo.tmp.path(),
            60,
        );
        if !done {
            failures.push(format!("[{case}] still running after 60 s"));
            continue;
        }
        failures.extend(check_error(case, &o, 3, "mallory"));
        if case == "holder-with-newline"
            && !text(&o.stderr).contains(r#"mallory\nerror: forged line"#)
        {
            failures.push(format!(
                "[{case}] the holder is not shown escaped:\n{}",
                text(&o.stderr)
            ));
        }
        if snapshot(&ns) != before {
            failures.push(format!("[{case}] the namespace changed"));
        }
    }
    report(failures);
}

/// `kubectl kustomize` and a `KUBECTL_EXTERNAL_DIFF` tool that never finish are stopped at
/// their time limits (shortened here through the documented variables) with an error naming
/// the tool; nothing is written.
#[test]
fn child_processes_that_hang_are_stopped_at_their_limit() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("hostile-hang");
    let repo = Repo::new();
    repo.write("app/cm.yaml", CM);
    repo.write("app/kustomization.yaml", "resources:\n- cm.yaml\n");
    repo.write("plain/cm.yaml", CM);
    repo.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: hang\nversion: 0.1.0\n",
    );
    repo.write("chart/templates/cm.yaml", CM);
    repo.tag_fixture();
    let hang = repo.tmp.path().join("kubectl-that-hangs");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 600\n").unwrap();
    let mut perms = std::fs::metadata(&hang).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&hang, perms).unwrap();
    let r = repo.path.to_str().unwrap();
    let kc = c.kubeconfig().to_str().unwrap().to_string();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(KUBECTL_GITOPS);
        cmd.args(args)
            .args(["--kubeconfig", &kc])
            .current_dir(repo.tmp.path());
        repo::isolate(&mut cmd, repo.tmp.path());
        cmd.envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let started = std::time::Instant::now();
        let mut child = cmd.spawn().unwrap();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if started.elapsed() > std::time::Duration::from_secs(40) {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        (child.wait_with_output().unwrap(), started.elapsed())
    };
    let before = snapshot(&ns);
    let mut failures = Vec::new();
    let (o, took) = run(
        &[
            "sync", "--repo", r, "--tag", "t", "--path", "app", "-n", &ns, "--yes",
        ],
        &[
            ("KUBECTL_PATH", hang.to_str().unwrap()),
            ("KUBECTL_GITOPS_KUSTOMIZE_TIMEOUT", "2s"),
        ],
    );
    failures.extend(check_error("kustomize-hangs", &o, 1, "kustomize"));
    if !text(&o.stderr).contains("did not finish within 2s") || took.as_secs() > 20 {
        failures.push(format!(
            "[kustomize-hangs] not stopped at 2s (took {took:?}):\n{}",
            text(&o.stderr)
        ));
    }
    let (o, took) = run(
        &[
            "diff", "--repo", r, "--tag", "t", "--path", "plain", "-n", &ns,
        ],
        &[
            ("KUBECTL_EXTERNAL_DIFF", hang.to_str().unwrap()),
            ("KUBECTL_GITOPS_DIFF_TIMEOUT", "2s"),
        ],
    );
    failures.extend(check_error(
        "external-diff-hangs",
        &o,
        2,
        "KUBECTL_EXTERNAL_DIFF=",
    ));
    if !text(&o.stderr).contains("did not finish within 2s") || took.as_secs() > 20 {
        failures.push(format!(
            "[external-diff-hangs] not stopped at 2s (took {took:?}):\n{}",
            text(&o.stderr)
        ));
    }
    let (o, took) = run(
        &[
            "sync", "--repo", r, "--tag", "t", "--path", "chart", "-n", &ns, "--yes",
        ],
        &[
            ("HELM_PATH", hang.to_str().unwrap()),
            ("KUBECTL_GITOPS_HELM_TIMEOUT", "2s"),
        ],
    );
    failures.extend(check_error("helm-hangs", &o, 1, "Helm chart at chart"));
    if !text(&o.stderr).contains("did not finish within 2s") || took.as_secs() > 20 {
        failures.push(format!(
            "[helm-hangs] not stopped at 2s (took {took:?}):\n{}",
            text(&o.stderr)
        ));
    }
    let (o, _) = run(
        &[
            "diff", "--repo", r, "--tag", "t", "--path", "plain", "-n", &ns,
        ],
        &[
            ("KUBECTL_EXTERNAL_DIFF", "diff"),
            ("KUBECTL_GITOPS_DIFF_TIMEOUT", "soon"),
        ],
    );
    failures.extend(check_error(
        "limit-not-a-duration",
        &o,
        2,
        "KUBECTL_GITOPS_DIFF_TIMEOUT",
    ));
    if snapshot(&ns) != before {
        failures.push("the namespace changed".into());
    }
    report(failures);
}
