//! Notes on objects, in git's own layout (a commit whose tree maps object ids to note blobs),
//! so `git notes --ref=<ref> show <object>` and `git log --notes=<ref>` read what we write.
//! Appending builds the new blob, tree and commit with gix and updates the notes ref through
//! a `Plan`: by compare-and-swap locally and, with a push, with a lease on the remote's notes
//! ref, so two writers never lose each other's notes (the second exits 3 and retries).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gix::ObjectId;
use gix::bstr::ByteSlice;

use super::Repo;
use super::plan::Plan;
use super::write;
use crate::error::{Error, Result};

/// Where the deploy tools keep their notes (verifications of deploy tags).
pub const DEPLOY_NOTES_REF: &str = "refs/notes/deploy";

impl Repo {
    /// The note on `object` under `notes_ref`, if there is one.
    pub fn note(&self, notes_ref: &str, object: ObjectId) -> Result<Option<String>> {
        let Some(commit) = self.ref_target(notes_ref)? else {
            return Ok(None);
        };
        let mut state = self.notes_state(notes_ref, Some(commit))?;
        let Some(blob) = state
            .get(&object, &self.inner.objects)
            .map_err(|e| Error::context(format!("reading {notes_ref}"), e))?
        else {
            return Ok(None);
        };
        Ok(Some(self.blob(blob)?.to_str_lossy().into_owned()))
    }

    fn notes_state(
        &self,
        notes_ref: &str,
        commit: Option<ObjectId>,
    ) -> Result<gix::note::plumbing::State> {
        let tree = match commit {
            Some(c) => self
                .inner
                .find_commit(c)
                .map_err(|e| {
                    Error::refused(format!("{notes_ref} does not point at a notes commit"))
                        .with_source(e)
                })?
                .tree_id()?
                .detach(),
            None => ObjectId::empty_tree(self.inner.object_hash()),
        };
        gix::note::plumbing::State::new(tree, &self.inner.objects)
            .map_err(|e| Error::context(format!("reading the notes tree of {notes_ref}"), e))
    }
}

/// Adds to `plan` the update of `notes_ref` that appends `text` to the note on each of
/// `objects` (as `git notes append` does: a blank line between the old note and the new text),
/// in one notes commit so one compare-and-swap covers them all. The new objects go to object
/// memory; the plan writes them. Returns the new notes commit.
pub fn append_note(
    repo: &Repo,
    plan: &mut Plan,
    notes_ref: &str,
    objects: &[ObjectId],
    text: &str,
    message: &str,
) -> Result<ObjectId> {
    let old = repo.ref_target(notes_ref)?;
    let mut state = repo.notes_state(notes_ref, old)?;
    let mut tree = None;
    for &object in objects {
        let existing = match state
            .get(&object, &repo.inner.objects)
            .map_err(|e| Error::context(format!("reading {notes_ref}"), e))?
        {
            Some(blob) => Some(repo.blob(blob)?),
            None => None,
        };
        let content = appended(existing.as_deref(), text);
        let blob = repo.inner.write_blob(content.as_bytes())?.detach();
        tree = Some(
            state
                .replace(object, blob, &repo.inner.objects)
                .map_err(|e| Error::context(format!("writing the notes tree of {notes_ref}"), e))?
                .tree,
        );
    }
    let Some(tree) = tree else {
        return Err(Error::invalid(format!("no object to note in {notes_ref}")));
    };
    let parents: Vec<ObjectId> = old.into_iter().collect();
    let commit = write::make_commit(repo, tree, &parents, message)?;
    let described: Vec<String> = objects.iter().map(|o| repo.short(*o)).collect();
    plan.add(
        notes_ref,
        old,
        Some(commit),
        format!("note on {}", described.join(" and ")),
    );
    Ok(commit)
}

/// How long `newer_on_remotes` waits for all remotes together: a remote that is down must not
/// hold up a command that only reads.
const REMOTE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// One line per configured remote whose `notes_ref` has notes this repository lacks (it is at
/// a commit we do not have, or one our notes ref does not contain), saying how to fetch them.
/// Notes are only ever appended, so what is missing can only add verifications: a decision made
/// on the local notes is never too lenient, but may refuse what the remote's notes allow.
/// Remotes that cannot be reached within a few seconds are skipped silently.
pub fn newer_on_remotes(repo: &Repo, notes_ref: &str) -> Vec<String> {
    let local = repo.ref_target(notes_ref).ok().flatten();
    let remotes: Vec<String> = repo
        .inner
        .remote_names()
        .iter()
        .map(|n| n.to_str_lossy().into_owned())
        .collect();
    let children: Vec<(String, Child)> = remotes
        .into_iter()
        .filter_map(|remote| {
            Command::new("git")
                .arg("--git-dir")
                .arg(repo.git_dir())
                .args(["ls-remote", "--refs", &remote, notes_ref])
                .env("GIT_TERMINAL_PROMPT", "0")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .ok()
                .map(|child| (remote, child))
        })
        .collect();
    let deadline = Instant::now() + REMOTE_CHECK_TIMEOUT;
    let mut lines = Vec::new();
    for (remote, mut child) in children {
        let Some(theirs) = remote_value(&mut child, deadline, notes_ref) else {
            continue;
        };
        if Some(theirs) == local {
            continue;
        }
        let contained = local.is_some_and(|local| {
            repo.inner.has_object(theirs) && repo.is_ancestor(theirs, local).unwrap_or(false)
        });
        if contained {
            continue;
        }
        lines.push(format!(
            "{remote} has verifications this repository lacks ({notes_ref} is at {} there, {} here): \
             fetch them with `git fetch {remote} {notes_ref}:{notes_ref}`",
            repo.short(theirs),
            local
                .map(|l| repo.short(l))
                .unwrap_or_else(|| "absent".into())
        ));
    }
    lines
}

/// What `git ls-remote` printed for `notes_ref`, if it finished before `deadline`.
fn remote_value(child: &mut Child, deadline: Instant, notes_ref: &str) -> Option<ObjectId> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut()?, &mut out).ok()?;
    out.lines().find_map(|line| {
        let (id, name) = line.split_once('\t')?;
        (name == notes_ref).then(|| ObjectId::from_hex(id.as_bytes()).ok())?
    })
}

fn appended(existing: Option<&[u8]>, text: &str) -> String {
    let text = text.trim_end_matches('\n');
    match existing.map(|e| e.to_str_lossy()) {
        Some(old) if !old.trim().is_empty() => {
            format!("{}\n\n{text}\n", old.trim_end_matches('\n'))
        }
        _ => format!("{text}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::appended;

    #[test]
    fn appending_separates_paragraphs_like_git_notes_append() {
        assert_eq!(appended(None, "a: 1"), "a: 1\n");
        assert_eq!(appended(Some(b"a: 1\n"), "b: 2\n"), "a: 1\n\nb: 2\n");
        assert_eq!(appended(Some(b"\n"), "b: 2"), "b: 2\n");
    }
}
