//! What the install, docs and demo tests share: the workspace root and both binaries.
//!
//! These test targets live in the kubectl-gitops package, where cargo only sets
//! `CARGO_BIN_EXE_kubectl-gitops`. `cargo test -p kubectl-gitops` alone would neither build
//! git-deploy nor rebuild a stale one, so [`git_deploy`] asks cargo for it when the binary is
//! missing or older than its sources. Only then: `cargo build -p git-deploy` resolves features
//! without the workspace's dev-dependencies, so after `cargo test --workspace` it would swap
//! in a differently built target/debug/git-deploy on every run.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::SystemTime;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the package sits inside the workspace")
        .to_path_buf()
}

pub fn kubectl_gitops() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kubectl-gitops"))
}

/// The directory cargo put this run's binaries in (`target/debug` unless told otherwise).
pub fn bin_dir() -> PathBuf {
    kubectl_gitops()
        .parent()
        .expect("a binary has a parent directory")
        .to_path_buf()
}

pub fn git_deploy() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = bin_dir();
            let bin = dir.join("git-deploy");
            let built = fs_mtime(&bin);
            let ws = root();
            let sources = [
                ws.join("git-deploy"),
                ws.join("shared/src"),
                ws.join("Cargo.lock"),
                ws.join("Cargo.toml"),
            ];
            if built.is_some() && sources.iter().filter_map(|p| newest(p)).max() <= built {
                return bin;
            }
            let mut cargo = Command::new(env!("CARGO"));
            cargo.current_dir(&ws).args([
                "build",
                "--quiet",
                "--locked",
                "-p",
                "git-deploy",
                "--bin",
                "git-deploy",
            ]);
            // Build into the same directory as kubectl-gitops, whatever profile and target
            // directory this test run uses: target/<profile> or target/<triple>/<profile>.
            let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
            cargo.args([
                "--profile",
                if profile == "debug" { "dev" } else { profile },
            ]);
            let mut target_dir = dir.parent().expect("target/<profile>").to_path_buf();
            if let Some(triple) = target_dir.file_name().and_then(|n| n.to_str())
                && triple.matches('-').count() >= 2
                && triple != "target"
            {
                cargo.args(["--target", triple]);
                target_dir.pop();
            }
            cargo.arg("--target-dir").arg(&target_dir);
            let status = cargo.status().expect("running cargo");
            assert!(status.success(), "cargo build -p git-deploy failed");
            assert!(
                bin.is_file(),
                "{} is missing after building it",
                bin.display()
            );
            bin
        })
        .clone()
}

fn fs_mtime(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

/// The latest modification time of a file or of any file under a directory.
fn newest(path: &Path) -> Option<SystemTime> {
    let own = fs_mtime(path);
    let Ok(entries) = std::fs::read_dir(path) else {
        return own;
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| newest(&e.path()))
        .chain(own)
        .max()
}

/// Runs a command to completion and panics, with its output, unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The subcommand names listed under `Commands:` in clap's help, without `help`.
pub fn subcommands(help: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line == "Commands:" {
            in_commands = true;
            continue;
        }
        if !in_commands {
            continue;
        }
        // Entries are indented two spaces; wrapped descriptions are indented further.
        let Some(entry) = line.strip_prefix("  ") else {
            break;
        };
        if entry.starts_with(' ') {
            continue;
        }
        let name = entry.split_whitespace().next().unwrap_or_default();
        if !name.is_empty() && name != "help" {
            names.push(name.to_string());
        }
    }
    names
}
