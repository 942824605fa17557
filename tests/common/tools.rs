//! Third-party tools the tests run, built from their Go modules: `helm`, `promtool` and
//! `toxiproxy-server` (see `tests/tools/README.md`).
//!
//! Include it from a test crate with
//!
//! ```ignore
//! #[path = "../common/tools.rs"]
//! mod tools;
//! ```
//!
//! and call [`path`] (or [`helm`], [`promtool`], [`toxiproxy_server`]). The first call for a
//! tool in a test process runs `tests/tools/build <tool>`, which rebuilds only when the tool's
//! `go.mod`/`go.sum` or the Go version changed, so `cargo test` alone works; `tests/run`
//! builds all of them up front so that no test pays for a build. The pinned binaries are used
//! even when another `helm` is on PATH, so that what a test sees does not depend on the
//! machine. A program under test that looks for `helm` itself should be given
//! `HELM_PATH=`[`helm()`].
//!
//! If Go is missing or a build fails, the call panics with the reason: tests that need a tool
//! never skip silently.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A tool `tests/tools/build` knows how to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// `helm` (Helm v4, `tests/tools/helm/go.mod`).
    Helm,
    /// `promtool` (Prometheus, `tests/tools/promtool/go.mod`).
    Promtool,
    /// `toxiproxy-server` (`tests/tools/toxiproxy/go.mod`).
    Toxiproxy,
}

impl Tool {
    /// The argument of `tests/tools/build` for this tool.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Helm => "helm",
            Tool::Promtool => "promtool",
            Tool::Toxiproxy => "toxiproxy",
        }
    }

    fn slot(self) -> &'static OnceLock<Result<PathBuf, String>> {
        static HELM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        static PROMTOOL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        static TOXIPROXY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        match self {
            Tool::Helm => &HELM,
            Tool::Promtool => &PROMTOOL,
            Tool::Toxiproxy => &TOXIPROXY,
        }
    }
}

/// Path of the tool's binary, built first if needed (once per test process).
///
/// Panics, in every test that asks, with the same message if it cannot be built.
pub fn path(tool: Tool) -> &'static Path {
    match tool.slot().get_or_init(|| build(tool)) {
        Ok(path) => path,
        Err(message) => panic!("{message}"),
    }
}

/// Path of the pinned `helm`.
pub fn helm() -> &'static Path {
    path(Tool::Helm)
}

/// Path of the pinned `promtool`.
pub fn promtool() -> &'static Path {
    path(Tool::Promtool)
}

/// Path of the pinned `toxiproxy-server`.
pub fn toxiproxy_server() -> &'static Path {
    path(Tool::Toxiproxy)
}

/// Runs `tests/tools/build <tool>` (which prints the binary's path), Go's messages going to
/// the test's stderr.
fn build(tool: Tool) -> Result<PathBuf, String> {
    let script = workspace_root().join("tests/tools/build");
    let output = Command::new("bash")
        .arg(&script)
        .arg(tool.name())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("run {}: {e}", script.display()))?;
    match output.status.code() {
        Some(0) => {}
        Some(127) => {
            return Err(format!(
                "the test tool {} is built from its Go module, and the Go toolchain is not on \
                 PATH: install it (Debian/Ubuntu: `apt-get install golang-go`, or from \
                 go.dev/dl); see the message above",
                tool.name()
            ));
        }
        _ => {
            return Err(format!(
                "building the test tool {} failed ({}): see the Go errors above, or run `{} {}`",
                tool.name(),
                output.status,
                script.display(),
                tool.name()
            ));
        }
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().last().map(str::trim) {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Err(format!(
            "{} {} printed no binary path",
            script.display(),
            tool.name()
        )),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate directory has a parent")
        .to_path_buf()
}
