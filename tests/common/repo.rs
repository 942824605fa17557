//! Config repositories for the kubectl-gitops test crates: a temp dir made with the real git
//! binary, isolated from the developer's configuration (no global or system config, a fixed
//! identity, HOME inside the temp dir).
//!
//! Include it with `#[path = "../common/repo.rs"] mod repo;`. Crates add their own helpers
//! with `impl repo::ConfigRepo { ... }`: the module is compiled into each test crate.

// Each test crate uses a different subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct ConfigRepo {
    pub tmp: tempfile::TempDir,
    pub path: PathBuf,
}

/// The environment every git (and git-deploy) command of a test runs in.
pub fn isolate(cmd: &mut Command, home: &Path) {
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Ann Operator")
        .env("GIT_AUTHOR_EMAIL", "ann@example.com")
        .env("GIT_COMMITTER_NAME", "Ann Operator")
        .env("GIT_COMMITTER_EMAIL", "ann@example.com")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
}

impl ConfigRepo {
    /// An empty repository on branch `main`.
    pub fn new() -> ConfigRepo {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config");
        std::fs::create_dir(&path).unwrap();
        let r = ConfigRepo { tmp, path };
        r.git(&["init", "-q", "-b", "main"]);
        r
    }

    /// Runs git in the repository; panics with git's stderr if it fails.
    pub fn git(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        cmd.current_dir(&self.path).args(args);
        isolate(&mut cmd, self.tmp.path());
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let p = self.path.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// Commits everything and puts the annotated tag `name` on it.
    pub fn tag(&self, name: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", name]);
        self.git(&["tag", "-a", "-m", name, name]);
    }

    /// Commits everything and makes the annotated deploy tag `name` of `env` on it, as
    /// `git deploy tag` would (a `Deploy-Env` trailer), with the environment's branch
    /// `env/<env>` moved there: what both tools accept as a deploy.
    pub fn deploy_tag(&self, env: &str, name: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", name]);
        self.git(&["branch", "-f", &format!("env/{env}"), "HEAD"]);
        let message = format!(
            "deploy {env}: tag\n\nDeploy-Env: {env}\nDeploy-Action: tag\nDeploy-Branch: env/{env}\n"
        );
        self.git(&["tag", "-a", "-m", &message, name]);
    }
}
