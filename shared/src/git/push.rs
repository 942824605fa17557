//! Pushing a plan: learn what the remote has (`git ls-remote`, exact), decide each ref's lease
//! from that (issue 13), and push every ref in one `git push --atomic` with those leases.
//! gix cannot push yet, so this is the one place we run git itself for writing.
//!
//! A lease describes what the remote has, never what we had locally: a remote that lacks the
//! ref is pushed with a lease that it still lacks it; one that has our old value, or an
//! ancestor of what we push (we are ahead), with a lease on that value; one that moved where we
//! cannot follow (commits we do not have, a tag of the same name, a newer deploy) stops the
//! plan before anything is written, exit 3, telling the user to fetch.

use std::collections::HashMap;
use std::process::Command;

use gix::ObjectId;
use gix::bstr::ByteSlice;

use super::Repo;
use super::plan::{Guard, RefUpdate, RemoteRule};
use crate::error::{Error, Result};
use crate::tag::TagName;

/// The refs to push and the lease of each; built by [`prepare`], run by the plan.
#[derive(Debug)]
pub struct Push {
    pub remote: String,
    refs: Vec<PushRef>,
}

#[derive(Debug)]
struct PushRef {
    name: String,
    /// What the remote must still have: `None` means the ref must not exist there.
    lease: Option<ObjectId>,
    /// What it gets: `None` deletes it.
    value: Option<ObjectId>,
}

/// What to do with one ref on the remote.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Push {
        lease: Option<ObjectId>,
        value: Option<ObjectId>,
    },
    /// The remote already is where we want it (or lacks a ref we delete).
    Nothing,
    /// The remote moved where we cannot follow; the reason names what it has.
    Refuse(String),
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

/// Reads what `remote` has for every ref of the plan and decides each lease. `Ok(None)`: the
/// remote already has everything. A remote we cannot follow is a lost race (exit 3) before
/// anything is written.
pub fn prepare(
    repo: &Repo,
    remote: &str,
    updates: &[RefUpdate],
    guards: &[Guard],
) -> Result<Option<Push>> {
    check_remote(remote)?;
    let names: Vec<&str> = updates
        .iter()
        .map(|u| u.name.as_str())
        .chain(guards.iter().map(|g| g.name.as_str()))
        .collect();
    let has = ls_remote(repo, remote, &names)?;
    let mut refs = Vec::new();
    let mut refusals = Vec::new();
    for u in updates {
        match decide(repo, u, has.get(&u.name).copied())? {
            Decision::Push { lease, value } => refs.push(PushRef {
                name: u.name.clone(),
                lease,
                value,
            }),
            Decision::Nothing => {}
            Decision::Refuse(why) => refusals.push(format!("{}: {why}", u.name)),
        }
    }
    for g in guards {
        match (has.get(&g.name), g.expect) {
            (None, _) => {}
            (Some(r), Some(expect)) if *r == expect => {}
            (Some(r), _) => refusals.push(format!(
                "{}: {remote} has it at {} ({} there)",
                g.name,
                repo.short(*r),
                g.meaning
            )),
        }
    }
    if !refusals.is_empty() {
        // When only the notes moved there (another verification was pushed first), fetching
        // them is all it takes: the retry appends to what the remote has.
        let notes: Vec<&str> = updates
            .iter()
            .filter(|u| u.name.starts_with("refs/notes/"))
            .filter(|u| {
                refusals
                    .iter()
                    .any(|r| r.starts_with(&format!("{}:", u.name)))
            })
            .map(|u| u.name.as_str())
            .collect();
        let hint = if !notes.is_empty() && notes.len() == refusals.len() {
            format!(
                "fetch them first (`git fetch {remote} {0}:{0}`), then retry",
                notes[0]
            )
        } else {
            format!(
                "fetch first (`git fetch {remote} --tags '+refs/deploy/*:refs/deploy/*'` and update the \
                 environment branches), check `git deploy status`, then retry"
            )
        };
        return Err(Error::race(format!(
            "{remote} has changes this repository lacks; nothing was written:\n  {}",
            refusals.join("\n  ")
        ))
        .hint(hint));
    }
    if refs.is_empty() {
        return Ok(None);
    }
    Ok(Some(Push {
        remote: remote.to_string(),
        refs,
    }))
}

/// The lease for one ref, from what the remote has (`r`) and the rule of the update.
fn decide(repo: &Repo, u: &RefUpdate, r: Option<ObjectId>) -> Result<Decision> {
    let short = |id: ObjectId| repo.short(id);
    let push = |lease| Decision::Push {
        lease,
        value: u.new,
    };
    let Some(new) = u.new else {
        return Ok(match r {
            None => Decision::Nothing,
            Some(r) if Some(r) == u.old => push(Some(r)),
            Some(r) => Decision::Refuse(format!(
                "it is at {} there, not at {} which this deletes",
                short(r),
                u.old.map(short).unwrap_or_default()
            )),
        });
    };
    let Some(r) = r else {
        return Ok(push(None));
    };
    if r == new {
        return Ok(if u.old == u.new {
            Decision::Nothing
        } else {
            Decision::Refuse(format!(
                "it is already at {} there: another run made this change",
                short(new)
            ))
        });
    }
    if Some(r) == u.old && u.old != u.new {
        return Ok(push(Some(r)));
    }
    if u.old == u.new {
        // Publishing a branch for a tag: the remote already containing the commit is enough
        // (it may be ahead of this clone); otherwise it must fast-forward to it.
        if repo.inner.has_object(r) && commit_is_ancestor(repo, new, r)? {
            return Ok(Decision::Nothing);
        }
    }
    Ok(match &u.remote {
        RemoteRule::Absent => {
            Decision::Refuse(format!("it already exists there (at {})", short(r)))
        }
        RemoteRule::Exact => Decision::Refuse(format!(
            "it is at {} there, not at {}",
            short(r),
            u.old.map(short).unwrap_or_else(|| "nothing".into())
        )),
        RemoteRule::FastForward => {
            if commit_is_ancestor(repo, r, new)? {
                push(Some(r))
            } else if repo.inner.has_object(r) {
                Decision::Refuse(format!(
                    "it is at {} there, which {} does not contain (diverged)",
                    short(r),
                    short(new)
                ))
            } else {
                Decision::Refuse(format!(
                    "it is at {r} there, a commit this repository does not have"
                ))
            }
        }
        RemoteRule::DeployChain { previous } => {
            if Some(r) == *previous || older_deploy(repo, r, *previous) {
                push(Some(r))
            } else {
                Decision::Refuse(format!(
                    "its latest deploy there ({}) is not one this deploy follows",
                    deploy_name(repo, r).unwrap_or_else(|| r.to_string())
                ))
            }
        }
    })
}

fn commit_is_ancestor(repo: &Repo, ancestor: ObjectId, descendant: ObjectId) -> Result<bool> {
    let Ok(object) = repo.inner.find_object(ancestor) else {
        return Ok(false);
    };
    if object.kind != gix::object::Kind::Commit {
        return Ok(false);
    }
    repo.is_ancestor(ancestor, descendant)
}

/// The ref name a tag object carries inside, if `id` is a tag object we have.
fn deploy_name(repo: &Repo, id: ObjectId) -> Option<String> {
    let object = repo.inner.find_object(id).ok()?;
    if object.kind != gix::object::Kind::Tag {
        return None;
    }
    let tag = object.into_tag();
    let name = tag.decode().ok()?.name.to_str_lossy().into_owned();
    Some(name)
}

/// Whether tag object `r` is a deploy of the same environment as `previous`, made before it:
/// the remote lacks deploys we made locally and will receive now.
fn older_deploy(repo: &Repo, r: ObjectId, previous: Option<ObjectId>) -> bool {
    let parse = |id| deploy_name(repo, id).and_then(|n| TagName::parse(&n));
    match (parse(r), previous.and_then(parse)) {
        (Some(r), Some(p)) => r.env == p.env && r.order_key() < p.order_key(),
        _ => false,
    }
}

/// `git ls-remote` for exactly `names`: what the remote has now.
fn ls_remote(repo: &Repo, remote: &str, names: &[&str]) -> Result<HashMap<String, ObjectId>> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo.git_dir())
        .args(["ls-remote", "--refs", remote])
        .args(names)
        .output()
        .map_err(|e| Error::context("could not run git ls-remote", e))?;
    if !out.status.success() {
        return Err(Error::refused(format!(
            "could not read what {remote} has (git ls-remote): {}; nothing was written",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
        .hint("check the remote name (`git remote -v`) and that it is reachable"));
    }
    let mut has = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((id, name)) = line.split_once('\t') else {
            continue;
        };
        if !names.contains(&name) {
            continue;
        }
        let id = ObjectId::from_hex(id.as_bytes()).map_err(|e| {
            Error::refused(format!("git ls-remote printed an unexpected line: {line}"))
                .with_source(e)
        })?;
        has.insert(name.to_string(), id);
    }
    Ok(has)
}

impl Push {
    /// The refs this push sends.
    pub fn pushed(&self) -> Vec<String> {
        self.refs.iter().map(|r| r.name.clone()).collect()
    }

    /// Refspecs that bring local refs to what this push put on the remote.
    pub fn fetch_refspecs(&self) -> Vec<String> {
        self.refs
            .iter()
            .filter(|r| r.value.is_some())
            .map(|r| format!("'+{0}:{0}'", r.name))
            .collect()
    }

    /// `git push --atomic` with each ref's lease: the remote takes all updates or none.
    pub fn run(&self, repo: &Repo) -> Result<()> {
        let mut cmd = Command::new("git");
        cmd.arg("--git-dir")
            .arg(repo.git_dir())
            .args(["push", "--atomic", "--porcelain"]);
        for r in &self.refs {
            let lease = r.lease.map(|o| o.to_string()).unwrap_or_default();
            cmd.arg(format!("--force-with-lease={}:{lease}", r.name));
        }
        cmd.arg(&self.remote);
        for r in &self.refs {
            match r.value {
                Some(v) => cmd.arg(format!("{v}:{}", r.name)),
                None => cmd.arg(format!(":{}", r.name)),
            };
        }
        let out = cmd
            .output()
            .map_err(|e| Error::context("could not run git push", e))?;
        if out.status.success() {
            return Ok(());
        }
        Err(self.describe_failure(
            &String::from_utf8_lossy(&out.stdout),
            &String::from_utf8_lossy(&out.stderr),
        ))
    }

    /// Reads git's porcelain status lines (`!<tab>src:dst<tab>[rejected] (reason)`, documented
    /// in git-push(1)) and, for a ref transaction the remote refused, the remote's own error
    /// lines. A lease or fast-forward check that failed, or a remote ref another push held
    /// locked or moved, is a lost race; a hook, a permission error or anything unknown is a
    /// refusal with git's words. An atomic push that was rejected wrote nothing there.
    fn describe_failure(&self, stdout: &str, stderr: &str) -> Error {
        let remote = &self.remote;
        let rejected: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with('!'))
            .map(|l| l.trim_start_matches('!').trim())
            .collect();
        if rejected.is_empty() {
            return Error::refused(format!(
                "push to {remote} failed: {}; local refs were not updated",
                stderr.trim()
            ))
            .hint(format!(
                "check what {remote} has with `git ls-remote {remote}` before retrying"
            ));
        }
        let remote_errors: Vec<&str> = stderr
            .lines()
            .filter_map(|l| l.strip_prefix("remote:"))
            .map(str::trim)
            .filter(|l| l.starts_with("error:") || l.starts_with("fatal:"))
            .collect();
        // With --atomic, refs that were fine report "atomic push failed": the cause is in the
        // other lines.
        let causes: Vec<&str> = rejected
            .iter()
            .copied()
            .filter(|l| !l.contains("atomic push failed"))
            .collect();
        let causes = if causes.is_empty() { rejected } else { causes };
        let client_side = |l: &&str| {
            [
                "stale info",
                "fetch first",
                "non-fast-forward",
                "already exists",
            ]
            .iter()
            .any(|m| l.contains(m))
        };
        let refused_there = remote_errors.iter().any(|l| {
            ["Permission denied", "not permitted", "declined", "denied"]
                .iter()
                .any(|m| l.contains(m))
        });
        // git's words for a ref another push holds locked ("...lock': File exists"), moved
        // ("is at X but expected Y", "reference is missing but expected Y") or created
        // ("reference already exists") between our lease check and its ref transaction.
        let contended_there = !remote_errors.is_empty()
            && remote_errors.iter().all(|l| {
                ["File exists", "but expected", "already exists"]
                    .iter()
                    .any(|m| l.contains(m))
            });
        let raced = causes.iter().all(|l| {
            client_side(l) || (l.contains("remote rejected") && contended_there && !refused_there)
        });
        let mut detail = causes.join("; ");
        if !remote_errors.is_empty() {
            detail.push_str(&format!(" ({})", remote_errors.join("; ")));
        }
        if raced {
            Error::race(format!(
                "push to {remote} rejected: {detail}; nothing was written (locally or on {remote})"
            ))
            .hint(format!(
                "someone else updated {remote} first: `git fetch {remote}`, check `git deploy status`, then retry"
            ))
        } else {
            Error::refused(format!(
                "push to {remote} refused: {detail}; nothing was written (locally or on {remote})"
            ))
        }
    }
}
