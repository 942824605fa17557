//! Real git repositories for git-deploy's tests: made with the `git` binary in an isolated
//! environment (no global or system config, fixed identities, a clock that ticks one minute
//! per command), filled with podinfo's real kustomize overlays.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::assert::Assert;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_git-deploy");
/// 2026-01-01T00:00:00Z
const EPOCH: i64 = 1_767_225_600;

pub struct Fixture {
    pub tmp: TempDir,
    pub repo: PathBuf,
    clock: Cell<i64>,
}

pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

impl Fixture {
    /// An empty repository on branch `main`.
    pub fn empty() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("config");
        std::fs::create_dir(&repo).unwrap();
        let f = Fixture {
            tmp,
            repo,
            clock: Cell::new(EPOCH),
        };
        f.git(&["init", "-q", "-b", "main"]);
        f
    }

    /// podinfo's deploy/ tree committed on main, then `git deploy init` with its three overlays.
    pub fn podinfo() -> Fixture {
        let f = Fixture::empty();
        copy_dir(&corpus().join("podinfo/deploy"), &f.repo.join("deploy"));
        f.git(&["add", "-A"]);
        f.git(&["commit", "-q", "-m", "Add podinfo manifests"]);
        f.deploy(&[
            "init",
            "--env",
            "dev=env/dev:deploy/overlays/dev:dev",
            "--env",
            "staging=env/staging:deploy/overlays/staging:staging",
            "--env",
            "prod=env/prod:deploy/overlays/production:production",
        ])
        .success();
        f
    }

    fn tick(&self) -> String {
        let t = self.clock.get() + 60;
        self.clock.set(t);
        format!("@{t} +0000")
    }

    /// Environment shared by git and git-deploy: nothing from the developer's machine leaks in.
    pub fn env(&self, cmd: &mut Command) {
        let date = self.tick();
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.tmp.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Ann Operator")
            .env("GIT_AUTHOR_EMAIL", "ann@example.com")
            .env("GIT_COMMITTER_NAME", "Ann Operator")
            .env("GIT_COMMITTER_EMAIL", "ann@example.com")
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .env("NO_COLOR", "1");
    }

    pub fn git_in(&self, dir: &Path, args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        cmd.current_dir(dir).args(args);
        self.env(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    }

    pub fn git(&self, args: &[&str]) -> String {
        self.git_in(&self.repo, args)
    }

    pub fn git_ok(&self, args: &[&str]) -> bool {
        let mut cmd = Command::new("git");
        cmd.current_dir(&self.repo).args(args);
        self.env(&mut cmd);
        cmd.output().unwrap().status.success()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(&self.repo)
            .args(args)
            .stdin(std::process::Stdio::null());
        self.env(&mut cmd);
        cmd
    }

    pub fn deploy(&self, args: &[&str]) -> Assert {
        Assert::new(self.output(args))
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn rev(&self, rev: &str) -> String {
        self.git(&["rev-parse", rev])
    }

    /// Every ref and what it points at: compared before and after to prove nothing was written.
    pub fn refs(&self) -> String {
        self.git(&["for-each-ref", "--format=%(refname) %(objectname)"])
    }

    pub fn object_count(&self) -> String {
        self.git(&["count-objects", "-v"])
    }

    /// One trailer of a tag, read by git itself (one atom per call: git 2.39 mixes up the
    /// options of several trailers atoms in one format).
    pub fn trailer(&self, tag: &str, key: &str) -> String {
        self.git(&[
            "for-each-ref",
            &format!("--format=%(trailers:key={key},valueonly,separator=%x2C)"),
            &format!("refs/tags/{tag}"),
        ])
    }

    pub fn tags(&self, env: &str) -> Vec<String> {
        let out = self.git(&["tag", "--list", &format!("deploy/{env}/*")]);
        out.lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Commits a change to a file on `branch` through a temporary worktree-free path: check
    /// out the branch, edit, commit.
    pub fn commit_on(&self, branch: &str, path: &str, content: &str, message: &str) -> String {
        self.git(&["checkout", "-q", branch]);
        let file = self.repo.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
        self.git(&["add", "--", path]);
        self.git(&["commit", "-q", "-m", message]);
        let id = self.rev("HEAD");
        self.git(&["checkout", "-q", "main"]);
        id
    }

    pub fn read(&self, rev: &str, path: &str) -> String {
        self.git(&["show", &format!("{rev}:{path}")])
    }

    pub fn fsck(&self) {
        let out = self.git(&["fsck", "--strict", "--no-dangling"]);
        assert!(out.is_empty(), "git fsck reported: {out}");
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
