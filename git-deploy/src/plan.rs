//! The unit every writing command produces: the ref updates it will make, computed before
//! anything is written. `--dry-run` prints a plan; executing it persists the objects built in
//! memory, optionally pushes, and applies all ref updates in one compare-and-swap transaction.

use std::fmt::Write as _;
use std::process::Command;

use gix::ObjectId;
use gix::refs::transaction::{PreviousValue, RefEdit};
use gix::refs::{FullName, Target};
use shared::git::Repo;
use shared::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// Full ref name, e.g. `refs/heads/env/prod`.
    pub name: String,
    /// The value read at the start; `None` means the ref must not exist.
    pub old: Option<ObjectId>,
    /// The new value; `None` deletes the ref.
    pub new: Option<ObjectId>,
    /// Why, for people: `fast-forward`, `annotated tag on abc1234`, ...
    pub note: String,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub updates: Vec<RefUpdate>,
    /// Remote to push the updates to, atomically, before updating local refs.
    pub push: Option<String>,
    /// Reflog message.
    pub reason: String,
}

impl Plan {
    pub fn new(reason: impl Into<String>, push: Option<String>) -> Self {
        Plan {
            updates: Vec::new(),
            push,
            reason: reason.into(),
        }
    }

    pub fn add(
        &mut self,
        name: impl Into<String>,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        note: impl Into<String>,
    ) {
        self.updates.push(RefUpdate {
            name: name.into(),
            old,
            new,
            note: note.into(),
        });
    }

    /// One line per ref update, exactly what `execute` will do.
    pub fn render(&self, repo: &Repo) -> String {
        let mut out = String::new();
        let short = |id: Option<ObjectId>| id.map(|id| repo.short(id));
        for u in &self.updates {
            let line = match (u.old, u.new) {
                (None, Some(new)) => {
                    format!("create {} {}", u.name, short(Some(new)).unwrap_or_default())
                }
                (Some(old), Some(new)) => format!(
                    "update {} {}..{}",
                    u.name,
                    short(Some(old)).unwrap_or_default(),
                    short(Some(new)).unwrap_or_default()
                ),
                (Some(old), None) => {
                    format!("delete {} {}", u.name, short(Some(old)).unwrap_or_default())
                }
                (None, None) => continue,
            };
            let _ = write!(out, "{line}");
            if !u.note.is_empty() {
                let _ = write!(out, " ({})", u.note);
            }
            out.push('\n');
        }
        if let Some(remote) = &self.push {
            let _ = writeln!(
                out,
                "push --atomic to {remote}: {}",
                self.updates
                    .iter()
                    .map(|u| u.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        out
    }

    /// Persists the objects built in memory, pushes (if asked), then applies the ref updates as
    /// one transaction whose every edit expects the value read at the start.
    pub fn execute(self, repo: &mut Repo) -> Result<()> {
        persist_objects(repo)?;
        if let Some(remote) = &self.push {
            push(repo, remote, &self.updates)?;
        }
        let edits: Vec<RefEdit> = self
            .updates
            .iter()
            .map(|u| {
                let name = FullName::try_from(u.name.as_str())
                    .map_err(|e| Error::invalid(format!("invalid ref name {:?}: {e}", u.name)))?;
                let expected = match u.old {
                    Some(old) => PreviousValue::MustExistAndMatch(Target::Object(old)),
                    None => PreviousValue::MustNotExist,
                };
                Ok(match u.new {
                    Some(new) => RefEdit::update(name, new, expected, self.reason.clone()),
                    None => RefEdit::delete(name, expected),
                })
            })
            .collect::<Result<_>>()?;
        if let Err(err) = repo.inner.edit_references(edits) {
            let moved: Vec<&str> = self
                .updates
                .iter()
                .filter(|u| repo.ref_target(&u.name).ok().flatten() != u.old)
                .map(|u| u.name.as_str())
                .collect();
            let text = err.to_string();
            let pushed = if self.push.is_some() {
                " The push succeeded; run `git fetch` to update local refs."
            } else {
                ""
            };
            if !moved.is_empty() || text.contains("lock") || text.contains("exist") {
                let what = if moved.is_empty() {
                    "a ref being updated by another process".to_string()
                } else {
                    moved.join(", ")
                };
                return Err(Error::race(format!(
                    "{what} changed while this command ran; nothing was written locally.{pushed}"
                ))
                .hint("another deploy won the race: check `git deploy status`, then retry"));
            }
            return Err(Error::refused(format!(
                "updating refs failed: {text}.{pushed}"
            )));
        }
        Ok(())
    }
}

/// Commands build their commits and tags in object memory so that a refusal, a dry-run or a
/// declined confirmation leaves the object database untouched; this writes them for real.
fn persist_objects(repo: &mut Repo) -> Result<()> {
    use gix::objs::Write as _;
    let Some(storage) = repo.inner.objects.take_object_memory() else {
        return Ok(());
    };
    for (id, (kind, data)) in storage.iter() {
        let written = repo
            .inner
            .objects
            .write_buf(*kind, data)
            .map_err(|e| Error::refused(format!("writing object {id}: {e}")))?;
        debug_assert_eq!(written, *id);
    }
    repo.inner.objects.enable_object_memory();
    Ok(())
}

/// A remote name or URL as given to `--push`; a leading `-` would be read by git as an option.
pub fn check_remote(remote: &str) -> Result<()> {
    if remote.is_empty()
        || remote.starts_with('-')
        || remote.chars().any(|c| c.is_control() || c == ' ')
    {
        return Err(
            Error::invalid(format!("--push: {remote:?} is not a usable remote name"))
                .hint("give a configured remote (`git remote -v`) such as origin: --push=origin"),
        );
    }
    Ok(())
}

/// `git push --atomic` with a lease on every ref's expected old value: either the remote takes
/// all updates or none. gix cannot push yet, so this is the one place we run git itself.
fn push(repo: &Repo, remote: &str, updates: &[RefUpdate]) -> Result<()> {
    check_remote(remote)?;
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir")
        .arg(repo.git_dir())
        .args(["push", "--atomic", "--porcelain"]);
    for u in updates {
        let old = u.old.map(|o| o.to_string()).unwrap_or_default();
        cmd.arg(format!("--force-with-lease={}:{}", u.name, old));
    }
    cmd.arg("--").arg(remote);
    for u in updates {
        match u.new {
            Some(new) => cmd.arg(format!("{new}:{}", u.name)),
            None => cmd.arg(format!(":{}", u.name)),
        };
    }
    let out = cmd
        .output()
        .map_err(|e| Error::refused(format!("could not run git push: {e}")))?;
    if out.status.success() {
        return check_not_already_moved(
            repo,
            remote,
            updates,
            &String::from_utf8_lossy(&out.stdout),
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rejected: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with('!'))
        .map(|l| l.trim_start_matches('!').trim().to_string())
        .collect();
    let raced = stdout.contains("stale info")
        || stdout.contains("fetch first")
        || stdout.contains("already exists")
        || stdout.contains("non-fast-forward")
        // Another push updating the same ref at the same moment holds its lock on the remote:
        // the remote's ref transaction fails as a whole, which is a lost race too.
        || (stdout.contains("atomic transaction failed")
            || stdout.contains("failed to lock")
            || stdout.contains("cannot lock ref"))
            && !stdout.contains("hook declined");
    let detail = if rejected.is_empty() {
        stderr.trim().to_string()
    } else {
        rejected.join("; ")
    };
    if raced {
        Err(Error::race(format!("push to {remote} rejected: {detail}; nothing was written"))
            .hint(format!("someone else updated {remote} first: `git fetch {remote}`, check `git deploy status`, then retry")))
    } else {
        Err(Error::refused(format!(
            "push to {remote} failed: {detail}; nothing was written locally"
        )))
    }
}

/// git checks a lease only for refs it actually changes: a branch that another promotion has
/// already moved to the very commit we push is reported as up to date (`=` in porcelain
/// output), and the atomic push succeeds with just our tag. That is a lost race too: take
/// back what we pushed (guarded by a lease on our own values) and report exit 3, so one
/// promotion wins and no duplicate deploy tag stays on the remote.
fn check_not_already_moved(
    repo: &Repo,
    remote: &str,
    updates: &[RefUpdate],
    porcelain: &str,
) -> Result<()> {
    let up_to_date: Vec<&RefUpdate> = updates
        .iter()
        .filter(|u| u.old != u.new && u.new.is_some())
        .filter(|u| {
            porcelain.lines().any(|l| {
                let mut parts = l.split('\t');
                parts.next() == Some("=")
                    && parts
                        .next()
                        .is_some_and(|refs| refs.ends_with(&format!(":{}", u.name)))
            })
        })
        .collect();
    if up_to_date.is_empty() {
        return Ok(());
    }
    let pushed: Vec<&RefUpdate> = updates
        .iter()
        .filter(|u| u.old.is_none() && !up_to_date.iter().any(|d| d.name == u.name))
        .collect();
    if !pushed.is_empty() {
        let mut undo = Command::new("git");
        undo.arg("--git-dir")
            .arg(repo.git_dir())
            .args(["push", "--atomic", "--porcelain"]);
        for u in &pushed {
            undo.arg(format!(
                "--force-with-lease={}:{}",
                u.name,
                u.new.map(|n| n.to_string()).unwrap_or_default()
            ));
        }
        undo.arg("--").arg(remote);
        for u in &pushed {
            undo.arg(format!(":{}", u.name));
        }
        let removed = undo.output().map(|o| o.status.success()).unwrap_or(false);
        if !removed {
            crate::output::info(format!(
                "warning: could not remove {} from {remote}; delete it with `git push {remote} :{}`",
                pushed
                    .iter()
                    .map(|u| u.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                pushed[0].name
            ));
        }
    }
    let moved = up_to_date
        .iter()
        .map(|u| u.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    Err(Error::race(format!(
        "{moved} on {remote} was already moved to the same commit by another promotion; nothing was written locally"
    ))
    .hint(format!("another deploy won the race: `git fetch {remote}`, check `git deploy status`, then retry if still needed")))
}
