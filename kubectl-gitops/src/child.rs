//! Child processes we wait for (`kubectl kustomize`, `helm`, a `KUBECTL_EXTERNAL_DIFF` tool) run with
//! a time limit: one that hangs is killed and named in the error instead of holding the run
//! for ever. The limits are documented in README ("Time limits") and can be changed with an
//! environment variable each.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use shared::{Error, Result};

/// A time limit: its default, and the environment variable that overrides it.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    pub variable: &'static str,
    pub default: Duration,
}

/// `kubectl kustomize` of one kustomization (the podinfo and Online Boutique corpora render
/// in well under a second; a very large one in seconds).
pub const KUSTOMIZE: Limit = Limit {
    variable: "KUBECTL_GITOPS_KUSTOMIZE_TIMEOUT",
    default: Duration::from_secs(5 * 60),
};

/// `helm template` (or `helm dependency list`) of one chart: rendering is local, in seconds.
pub const HELM: Limit = Limit {
    variable: "KUBECTL_GITOPS_HELM_TIMEOUT",
    default: Duration::from_secs(5 * 60),
};

/// A `KUBECTL_EXTERNAL_DIFF` tool, which may be interactive (meld, vimdiff): generous.
pub const EXTERNAL_DIFF: Limit = Limit {
    variable: "KUBECTL_GITOPS_DIFF_TIMEOUT",
    default: Duration::from_secs(30 * 60),
};

impl Limit {
    /// The limit in force: the variable's value (a duration such as `90s` or `10m`), or the
    /// default. A value that is not a positive duration is an error naming the variable.
    pub fn get(&self) -> Result<Duration> {
        let Ok(text) = std::env::var(self.variable) else {
            return Ok(self.default);
        };
        match shared::duration::parse(&text) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(Error::invalid(format!(
                "{}=0: a time limit must be longer than 0",
                self.variable
            ))),
            Err(e) => Err(Error::invalid(format!("{}: {e}", self.variable))),
        }
    }
}

fn exceeded(tool: &str, limit: &Limit, took: Duration) -> Error {
    Error::refused(format!(
        "{tool} did not finish within {} and was stopped",
        shared::duration::format_duration(took)
    ))
    .hint(format!(
        "{} sets this limit (default {})",
        limit.variable,
        shared::duration::format_duration(limit.default)
    ))
}

/// Waits for `child` at most `limit`; kills it when the time is up.
fn wait(mut child: Child, tool: &str, limit: &Limit) -> Result<(Child, ExitStatus)> {
    let bound = limit.get()?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok((child, status)),
            Ok(None) => {}
            Err(e) => return Err(Error::refused(format!("waiting for {tool}: {e}"))),
        }
        if started.elapsed() >= bound {
            let _ = child.kill();
            let _ = child.wait();
            return Err(exceeded(tool, limit, bound));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` with stdin closed and its output captured, within `limit`. `tool` names it in
/// errors. Spawning errors are returned as they are, for the caller to explain.
pub fn output(mut cmd: Command, tool: &str, limit: &Limit) -> Result<std::io::Result<Output>> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    // Read both pipes as the child writes, so a large render never blocks on a full pipe. A
    // killed child's grandchildren may hold the pipes open; the readers are then left behind.
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = reader(Box::new(child.stdout.take().expect("piped")));
    let stderr = reader(Box::new(child.stderr.take().expect("piped")));
    let (_, status) = wait(child, tool, limit)?;
    Ok(Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }))
}

/// Runs `cmd` on our terminal (stdin, stdout and stderr inherited) within `limit`.
pub fn status(mut cmd: Command, tool: &str, limit: &Limit) -> Result<std::io::Result<ExitStatus>> {
    match cmd.spawn() {
        Ok(child) => Ok(Ok(wait(child, tool, limit)?.1)),
        Err(e) => Ok(Err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST: Limit = Limit {
        variable: "KUBECTL_GITOPS_TEST_CHILD_LIMIT_UNSET",
        default: Duration::from_millis(300),
    };

    #[test]
    fn a_child_that_hangs_is_stopped_at_the_limit() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let started = Instant::now();
        let e = output(cmd, "sleep 30", &TEST).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            e.message.contains("sleep 30 did not finish within 300ms"),
            "{}",
            e.message
        );
        assert!(e.hint.unwrap().contains(TEST.variable));
    }

    #[test]
    fn a_child_that_finishes_gives_its_output() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let o = output(cmd, "sh", &TEST).unwrap().unwrap();
        assert_eq!(o.status.code(), Some(3));
        assert_eq!(o.stdout, b"out\n");
        assert_eq!(o.stderr, b"err\n");
        assert!(
            output(Command::new("/no/such/tool"), "x", &TEST)
                .unwrap()
                .is_err()
        );
    }
}
