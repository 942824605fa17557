//! The one writer of refs for both tools. A command computes a `Plan` (every ref it will
//! change, with the value it read; refs that must not change meanwhile; where to push), shows
//! it (`--dry-run` prints exactly this), and executes it:
//!
//! 1. with `push`, learn what the remote has (`git ls-remote`) and decide each ref's lease
//!    (`push::decide`); a remote that moved where we cannot follow stops everything here;
//! 2. lock the guard refs and prepare one local ref transaction: every edit expects the value
//!    read at the start, and the locks are held until the end, so no other writer can slip in
//!    between the remote and the local update;
//! 3. write the objects the plan built in object memory;
//! 4. push, atomically, with the leases of step 1;
//! 5. commit the local transaction.
//!
//! Failures say what state each side is in: before step 4 nothing was written (exit 3 when
//! another writer changed something we read, exit 1 otherwise, with the cause); a failure in
//! step 5 after a push says that the remote has the update and this repository does not.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use gix::ObjectId;
use gix::lock::acquire::Fail;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::{FullName, Target};

use super::Repo;
use super::push;
use crate::error::{Error, ErrorKind, Result};

/// What the remote may hold for a ref before we push over it (issue 13): anything else means
/// it moved where we cannot follow, and nothing is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteRule {
    /// Branches, notes: the remote lacks the ref, has our old value, or has an ancestor of
    /// what we push (we are ahead with commits it has not seen).
    FastForward,
    /// Deploy tags, new locks: the remote must not have the ref.
    Absent,
    /// Deletions: the remote has exactly our old value (or nothing: nothing to delete there).
    Exact,
    /// `refs/deploy/latest/<env>`: the remote's latest deploy is the one this deploy follows
    /// (`previous`, a tag object), or an older deploy of ours that it has not received yet.
    DeployChain { previous: Option<ObjectId> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// Full ref name, e.g. `refs/heads/env/prod`.
    pub name: String,
    /// The value read at the start; `None` means the ref must not exist.
    pub old: Option<ObjectId>,
    /// The new value; `None` deletes the ref. Equal to `old`: the ref stays as it is locally
    /// (and must not move meanwhile) and is only pushed.
    pub new: Option<ObjectId>,
    /// Why, for people: `fast-forward`, `annotated tag on abc1234`, ...
    pub note: String,
    pub remote: RemoteRule,
}

impl RefUpdate {
    fn publishes_only(&self) -> bool {
        self.old == self.new
    }
}

/// A ref that must still have `expect` (`None`: must not exist) when the plan writes, e.g. the
/// lock of the environment a deploy writes to. Held locked while the plan writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub name: String,
    pub expect: Option<ObjectId>,
    /// What a change of it means, for the error: `environment prod was locked`.
    pub meaning: String,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub updates: Vec<RefUpdate>,
    pub guards: Vec<Guard>,
    /// Remote to push the updates to, atomically, before the local refs are updated.
    pub push: Option<String>,
    /// Reflog message.
    pub reason: String,
}

/// Test-only: `GITOPS_TEST_PAUSE_BEFORE_WRITE=<file>` makes `execute` create `<file>.waiting`
/// and wait (at most 60 s) until `<file>` exists, so a test can change refs between a plan
/// and its compare-and-swap (a lock taken while a prompt waits, a concurrent deploy). Nothing
/// but tests sets it; unset, it costs one environment lookup.
pub const TEST_PAUSE_ENV: &str = "GITOPS_TEST_PAUSE_BEFORE_WRITE";

impl Plan {
    pub fn new(reason: impl Into<String>, push: Option<String>) -> Self {
        Plan {
            updates: Vec::new(),
            guards: Vec::new(),
            push,
            reason: reason.into(),
        }
    }

    /// Adds a ref update with the remote rule its kind implies: deletions must find our old
    /// value, new tags and locks must find nothing, everything else fast-forwards.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        note: impl Into<String>,
    ) {
        let name = name.into();
        let remote = match (old, new) {
            (_, None) => RemoteRule::Exact,
            (None, Some(_)) if name.starts_with("refs/tags/") => RemoteRule::Absent,
            (None, Some(_)) if name.starts_with("refs/deploy/locks/") => RemoteRule::Absent,
            _ => RemoteRule::FastForward,
        };
        self.add_with(name, old, new, note, remote);
    }

    pub fn add_with(
        &mut self,
        name: impl Into<String>,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        note: impl Into<String>,
        remote: RemoteRule,
    ) {
        self.updates.push(RefUpdate {
            name: name.into(),
            old,
            new,
            note: note.into(),
            remote,
        });
    }

    /// Pushes `name` at `value` without changing it locally (a branch whose commit a new tag
    /// needs on the remote); locally it must still be `value` when the plan writes.
    pub fn publish(&mut self, name: impl Into<String>, value: ObjectId, note: impl Into<String>) {
        self.add_with(
            name,
            Some(value),
            Some(value),
            note,
            RemoteRule::FastForward,
        );
    }

    /// `name` must still be `expect` (`None`: absent) when the plan writes, locally and, with
    /// a push, on the remote.
    pub fn guard(
        &mut self,
        name: impl Into<String>,
        expect: Option<ObjectId>,
        meaning: impl Into<String>,
    ) {
        self.guards.push(Guard {
            name: name.into(),
            expect,
            meaning: meaning.into(),
        });
    }

    /// One line per ref update and guard, exactly what `execute` will do.
    pub fn render(&self, repo: &Repo) -> String {
        let mut out = String::new();
        let short = |id: ObjectId| repo.short(id);
        for u in &self.updates {
            let line = match (u.old, u.new) {
                (Some(old), Some(new)) if old == new && self.push.is_some() => {
                    format!("push {} {} (unchanged locally)", u.name, short(new))
                }
                (Some(_), Some(_)) if u.publishes_only() => continue,
                (None, Some(new)) => format!("create {} {}", u.name, short(new)),
                (Some(old), Some(new)) => {
                    format!("update {} {}..{}", u.name, short(old), short(new))
                }
                (Some(old), None) => format!("delete {} {}", u.name, short(old)),
                (None, None) => continue,
            };
            let _ = write!(out, "{line}");
            if !u.note.is_empty() {
                let _ = write!(out, " ({})", u.note);
            }
            out.push('\n');
        }
        for g in &self.guards {
            let _ = match g.expect {
                None => writeln!(
                    out,
                    "check {} is still absent when writing (stop if {})",
                    g.name, g.meaning
                ),
                Some(id) => writeln!(
                    out,
                    "check {} is still {} when writing (stop if {})",
                    g.name,
                    short(id),
                    g.meaning
                ),
            };
        }
        if let Some(remote) = &self.push {
            let _ = writeln!(
                out,
                "push --atomic to {remote}, leased on what {remote} has: {}",
                self.updates
                    .iter()
                    .map(|u| u.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        out
    }

    /// Runs the plan (see the module comment for the steps and what failures mean).
    pub fn execute(self, repo: &mut Repo) -> Result<()> {
        let created: Vec<&str> = self
            .updates
            .iter()
            .filter(|u| u.old.is_none() && u.new.is_some())
            .map(|u| u.name.as_str())
            .collect();
        check_new_ref_names(repo, &created)?;
        test_pause();
        let push = match &self.push {
            Some(remote) => push::prepare(repo, remote, &self.updates, &self.guards)?,
            None => None,
        };
        let objects = repo.inner.objects.take_object_memory();
        let result = self.write(repo, objects.as_ref(), push.as_ref());
        if objects.is_some() {
            // Back to building in memory, as the caller had it.
            repo.inner.objects.enable_object_memory();
        }
        result
    }

    fn write(
        &self,
        repo: &Repo,
        objects: Option<&gix::odb::memory::Storage>,
        push: Option<&push::Push>,
    ) -> Result<()> {
        let _guards = self.hold_guards(repo)?;
        let transaction = self.prepare_local(repo)?;
        persist_objects(repo, objects)?;
        if let Some(push) = push {
            // On failure the prepared transaction is dropped, which releases its locks and
            // writes nothing locally.
            push.run(repo)?;
        }
        let committer = repo.inner.committer().transpose()?;
        if let Err(err) = transaction.commit(committer) {
            return Err(self.describe_commit_failure(repo, push, err));
        }
        Ok(())
    }

    /// Locks each guard ref the way git and gix lock a ref they update (`<ref>.lock`), then
    /// checks its value: nobody can change it until the returned markers are dropped.
    fn hold_guards(&self, repo: &Repo) -> Result<Vec<gix::lock::Marker>> {
        let mut held = Vec::new();
        for g in &self.guards {
            held.push(lock_ref_file(repo, &g.name)?);
            let now = repo.ref_target(&g.name)?;
            if now != g.expect {
                return Err(Error::race(format!(
                    "{} while this command ran ({} is now {}); nothing was written",
                    g.meaning,
                    g.name,
                    now.map(|id| repo.short(id))
                        .unwrap_or_else(|| "absent".into())
                ))
                .hint("check `git deploy status`, then retry"));
            }
        }
        Ok(held)
    }

    /// Locks every ref of the plan and checks each still has the value read at the start.
    fn prepare_local<'r>(&self, repo: &'r Repo) -> Result<gix::refs::file::Transaction<'r, 'r>> {
        let edits = self
            .updates
            .iter()
            .map(|u| self.edit(u))
            .collect::<Result<Vec<_>>>()?;
        repo.inner
            .refs
            .transaction()
            .prepare(
                edits,
                Fail::AfterDurationWithBackoff(LOOSE_REF_LOCK_TIMEOUT),
                Fail::AfterDurationWithBackoff(PACKED_REFS_LOCK_TIMEOUT),
            )
            .map_err(|err| self.describe_prepare_failure(repo, err))
    }

    fn edit(&self, u: &RefUpdate) -> Result<RefEdit> {
        let name = FullName::try_from(u.name.as_str())
            .map_err(|e| Error::invalid(format!("invalid ref name {:?}", u.name)).with_source(e))?;
        let expected = match u.old {
            Some(old) => PreviousValue::MustExistAndMatch(Target::Object(old)),
            None => PreviousValue::MustNotExist,
        };
        let change = match u.new {
            // Publishing only: the same value with the same expectation locks and verifies the
            // ref and writes nothing.
            Some(new) => Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: self.reason.clone().into(),
                },
                expected,
                new: Target::Object(new),
            },
            None => Change::Delete {
                expected,
                log: RefLog::AndReference,
            },
        };
        Ok(RefEdit {
            change,
            name,
            deref: false,
        })
    }

    /// A failed prepare wrote nothing. It is a lost race when a ref moved or another process
    /// holds its lock (gix classifies both); anything else (a permission error, a full disk)
    /// is reported with its cause.
    fn describe_prepare_failure(&self, repo: &Repo, err: gix::Error) -> Error {
        let moved: Vec<String> = self
            .updates
            .iter()
            .filter(|u| repo.ref_target(&u.name).ok().flatten() != u.old)
            .map(|u| u.name.clone())
            .collect();
        let raced = !err.is_permission_denied()
            && (err.is_conflict() || err.is_retryable() || !moved.is_empty());
        if raced {
            let (what, hint) = if moved.is_empty() {
                (
                    format!(
                        "another process is writing {} right now",
                        reference_of(&err)
                    ),
                    "another deploy is running: check `git deploy status`, then retry",
                )
            } else if moved.iter().all(|m| m.starts_with("refs/notes/")) {
                (
                    format!("{} changed while this command ran", moved.join(", ")),
                    "another note (a verification) was written first: retry, it appends to it",
                )
            } else {
                (
                    format!("{} changed while this command ran", moved.join(", ")),
                    "another deploy won the race: check `git deploy status`, then retry",
                )
            };
            return Error::race(format!("{what}; nothing was written"))
                .hint(hint)
                .with_source(err);
        }
        Error::refused(format!(
            "could not update {}: {}; nothing was written",
            reference_of(&err),
            cause_of(&err)
        ))
        .with_source(err)
    }

    /// The local commit failed after its locks were taken: some refs may be written, and a
    /// push may already have happened. Say exactly where each ref is.
    fn describe_commit_failure(
        &self,
        repo: &Repo,
        push: Option<&push::Push>,
        err: gix::Error,
    ) -> Error {
        let mut state = Vec::new();
        for u in self.updates.iter().filter(|u| !u.publishes_only()) {
            let now = repo.ref_target(&u.name).ok().flatten();
            let where_ = if now == u.new {
                "updated"
            } else if now == u.old {
                "unchanged"
            } else {
                "changed by someone else"
            };
            state.push(format!("{} {where_}", u.name));
        }
        let mut message = format!(
            "updating local refs failed: {}; locally: {}",
            cause_of(&err),
            state.join(", ")
        );
        let hint = match push {
            Some(p) => {
                let _ = write!(
                    message,
                    "; {} already has the update (pushed: {})",
                    p.remote,
                    p.pushed().join(", ")
                );
                format!(
                    "fix the cause, then bring local refs in line with `git fetch {} {}`",
                    p.remote,
                    p.fetch_refspecs().join(" ")
                )
            }
            None => "fix the cause; refs marked unchanged can be retried".to_string(),
        };
        Error::new(ErrorKind::Refused, message)
            .hint(hint)
            .with_source(err)
    }
}

/// Refuses ref names that cannot be created: invalid names, and names that collide with an
/// existing ref or with each other as file and directory (`refs/heads/env` exists, so
/// `refs/heads/env/dev` cannot; and the reverse). Checked before anything is written, so a
/// command never reports something created that then fails.
pub fn check_new_ref_names(repo: &Repo, names: &[&str]) -> Result<()> {
    for (i, name) in names.iter().enumerate() {
        FullName::try_from(*name)
            .map_err(|e| Error::invalid(format!("invalid ref name {name:?}")).with_source(e))?;
        // `refs/heads/env/dev` cannot be created when `refs/heads/env` is a ref. The first two
        // components (`refs/heads`) are directories by definition.
        let components: Vec<&str> = name.split('/').collect();
        for end in 3..components.len() {
            let prefix = components[..end].join("/");
            if repo.ref_target(&prefix)?.is_some() {
                return Err(Error::invalid(format!(
                    "cannot create {name}: {prefix} exists, and a ref cannot also be a directory of refs"
                ))
                .hint("choose another branch name, or rename the existing one"));
            }
        }
        let below = format!("{name}/");
        if let Some(r) = repo.inner.references()?.prefixed(below.as_str())?.next() {
            let r = r.map_err(|e| Error::context(format!("reading refs under {below}"), e))?;
            return Err(Error::invalid(format!(
                "cannot create {name}: {} exists below it",
                r.name().as_bstr()
            ))
            .hint("choose another branch name, or rename the existing ones"));
        }
        for other in &names[i + 1..] {
            if other.starts_with(&below) || name.starts_with(&format!("{other}/")) {
                return Err(Error::invalid(format!(
                    "cannot create both {name} and {other}: one would be a directory of the other"
                )));
            }
        }
    }
    Ok(())
}

/// git's defaults for `core.filesRefLockTimeout` and `core.packedRefsTimeout`: a writer that
/// holds a ref lock for longer is a concurrent deploy, reported as a lost race.
const LOOSE_REF_LOCK_TIMEOUT: Duration = Duration::from_millis(100);
const PACKED_REFS_LOCK_TIMEOUT: Duration = Duration::from_millis(1000);

/// `<ref>.lock`, created in the ref's directory. The directory is created here and left in
/// place: a lock that removed empty directories on release would race with the next writer
/// creating its lock there (`No such file or directory`), which another deleting writer can
/// still cause, so that case is retried.
fn lock_ref_file(repo: &Repo, name: &str) -> Result<gix::lock::Marker> {
    let path = repo.inner.common_dir().join(name);
    let mut attempts = 0;
    loop {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::context(format!("could not lock {name}"), e))?;
        }
        match gix::lock::Marker::acquire_to_hold_resource(
            &path,
            Fail::AfterDurationWithBackoff(LOOSE_REF_LOCK_TIMEOUT),
            None,
            0,
        ) {
            Ok(marker) => return Ok(marker),
            Err(e) if e.is_not_found() && attempts < 10 => attempts += 1,
            Err(e) => return Err(lock_error(name, e)),
        }
    }
}

fn lock_error(name: &str, err: gix::Error) -> Error {
    if err.is_permission_denied() || !err.is_retryable() {
        return Error::refused(format!(
            "could not lock {name}: {}; nothing was written",
            cause_of(&err)
        ))
        .with_source(err);
    }
    Error::race(format!(
        "{name} is being written by another process; nothing was written"
    ))
    .hint("another deploy is running: check `git deploy status`, then retry")
    .with_source(err)
}

/// The ref a gix ref error is about, from its metadata.
fn reference_of(err: &gix::Error) -> String {
    use gix::error::MetadataValue;
    err.metadata()
        .find_map(|m| match m.get("reference")? {
            MetadataValue::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            MetadataValue::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
        .unwrap_or_else(|| "refs".into())
}

/// The chain of causes down to the OS error and its path (`Permission denied ... at path
/// ".../x.lock"`), without gix's generic "could not prepare" frame: the message names the ref.
fn cause_of(err: &gix::Error) -> String {
    let mut parts: Vec<String> = err
        .iter_errors()
        .map(|e| e.to_string())
        .filter(|p| !p.starts_with("Could not prepare reference edit"))
        .collect();
    parts.dedup();
    parts.join(": ")
}

/// Commands build their commits and tags in object memory so that a refusal, a dry-run or a
/// declined confirmation leaves the object database untouched; this writes them for real.
fn persist_objects(repo: &Repo, objects: Option<&gix::odb::memory::Storage>) -> Result<()> {
    use gix::objs::Write as _;
    let Some(storage) = objects else {
        return Ok(());
    };
    for (id, (kind, data)) in storage.iter() {
        let written = repo
            .inner
            .objects
            .write_buf(*kind, data)
            .map_err(|e| Error::context(format!("writing object {id}"), e))?;
        debug_assert_eq!(written, *id);
    }
    Ok(())
}

fn test_pause() {
    let Some(file) = std::env::var_os(TEST_PAUSE_ENV) else {
        return;
    };
    let file = std::path::PathBuf::from(file);
    let mut waiting = file.clone().into_os_string();
    waiting.push(".waiting");
    let _ = std::fs::write(&waiting, b"");
    let started = Instant::now();
    while !file.exists() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
}
