//! The config repository through gix. This file reads: commits, files at a commit, deploy
//! tags and the records in their messages; which deploy tags are trusted is decided in
//! `deploys`. Everything that writes objects or refs, for both tools, is in `write` (objects),
//! `plan` (ref updates by compare-and-swap, with `push`), `notes` and `lock`.

use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::ByteSlice;

use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::tag::DeployRecord;

mod deploys;
pub mod lock;
pub mod notes;
pub mod plan;
pub mod push;
pub mod write;

pub use deploys::{DeployTag, Deploys, Succession, latest_ref};
pub use plan::{Plan, RefUpdate, RemoteRule};

pub struct Repo {
    pub inner: gix::Repository,
}

/// Everything a deploy tag says about itself.
#[derive(Debug, Clone)]
pub struct TagInfo {
    pub name: String,
    pub tag_object: Option<ObjectId>,
    pub commit: ObjectId,
    pub tagger: Option<Person>,
    pub message: String,
    pub record: Option<DeployRecord>,
    pub signed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub email: String,
    pub seconds: i64,
    pub offset: i32,
}

impl Person {
    pub fn rfc3339(&self) -> String {
        let ts = jiff::Timestamp::from_second(self.seconds).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        match jiff::tz::Offset::from_seconds(self.offset) {
            Ok(off) => ts
                .to_zoned(jiff::tz::TimeZone::fixed(off))
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string(),
            Err(_) => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitSummary {
    pub id: String,
    pub short: String,
    pub subject: String,
    pub author: String,
    pub time: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeStatus {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FileChange {
    pub path: String,
    pub status: ChangeStatus,
    pub added: usize,
    pub removed: usize,
    pub binary: bool,
    #[serde(skip)]
    pub old: Option<ObjectId>,
    #[serde(skip)]
    pub new: Option<ObjectId>,
}

impl Repo {
    /// Finds the repository containing `dir`, honouring `GIT_DIR` and friends as git does for
    /// the commands it runs.
    pub fn discover(dir: &Path) -> Result<Repo> {
        let mut inner = gix::ThreadSafeRepository::discover_with_environment_overrides(dir)
            .map(gix::Repository::from)
            .map_err(|_| {
                Error::invalid(format!(
                    "not a git repository (or any of its parents): {}",
                    dir.display()
                ))
                .hint("run inside the config repository, or use `git -C <dir> deploy ...`")
            })?;
        inner.object_cache_size_if_unset(8 * 1024 * 1024);
        Ok(Repo { inner })
    }

    pub fn open(dir: &Path) -> Result<Repo> {
        Self::discover(dir)
    }

    pub fn workdir(&self) -> Option<&Path> {
        self.inner.workdir()
    }

    pub fn git_dir(&self) -> &Path {
        self.inner.git_dir()
    }

    pub fn require_workdir(&self, command: &str) -> Result<PathBuf> {
        self.workdir().map(Path::to_path_buf).ok_or_else(|| {
            Error::invalid(format!(
                "`{command}` needs a work tree, but {} is a bare repository",
                self.git_dir().display()
            ))
            .hint("run it in a clone with a work tree")
        })
    }

    pub fn short(&self, id: ObjectId) -> String {
        use gix::prelude::ObjectIdExt;
        let short = id.attach(&self.inner).shorten_or_id().to_string();
        // Objects still in object memory (not yet written) cannot be disambiguated against
        // the database; show them at git's default abbreviation.
        if short.len() == id.kind().len_in_hex() {
            id.to_hex_with_len(7).to_string()
        } else {
            short
        }
    }

    /// Resolves `rev` (a branch, tag, or any git revision) to a commit.
    pub fn resolve_commit(&self, rev: &str) -> Result<ObjectId> {
        let id = self.inner.rev_parse_single(rev).map_err(|_| {
            Error::invalid(format!("unknown revision {rev:?}"))
                .hint("give a branch, tag or commit that exists in this repository")
        })?;
        let commit = id
            .object()
            .and_then(|o| o.peel_to_commit())
            .map_err(|_| Error::invalid(format!("revision {rev:?} does not name a commit")))?;
        Ok(commit.id)
    }

    pub fn branch_head(&self, branch: &str) -> Result<Option<ObjectId>> {
        self.ref_target(&format!("refs/heads/{branch}"))
    }

    /// The object a ref points at directly (no peeling), or `None` when it does not exist.
    pub fn ref_target(&self, full_name: &str) -> Result<Option<ObjectId>> {
        match self.inner.try_find_reference(full_name)? {
            Some(r) => Ok(r.target().try_id().map(|id| id.to_owned())),
            None => Ok(None),
        }
    }

    pub fn head_commit(&self) -> Result<Option<ObjectId>> {
        let mut head = self.inner.head()?;
        if head.is_unborn() {
            return Ok(None);
        }
        Ok(Some(head.peel_to_commit()?.id))
    }

    pub fn tree_of(&self, commit: ObjectId) -> Result<ObjectId> {
        Ok(self.inner.find_commit(commit)?.tree_id()?.detach())
    }

    /// The bytes of the blob at `path` in `commit`, `None` if there is no such file.
    pub fn file_at(&self, commit: ObjectId, path: &str) -> Result<Option<Vec<u8>>> {
        let tree = self.inner.find_commit(commit)?.tree()?;
        let Some(entry) = tree.lookup_entry_by_path(path)? else {
            return Ok(None);
        };
        if !entry.mode().is_blob() {
            return Ok(None);
        }
        Ok(Some(entry.object()?.detach().data))
    }

    /// gitops.yaml as committed at HEAD: the repository's own description of its
    /// environments, where both tools learn which branch an environment lives on before they
    /// know which commit is deployed.
    pub fn head_config(&self) -> Result<(Config, ObjectId)> {
        let head = self.head_commit()?.ok_or_else(|| {
            Error::invalid("HEAD has no commits yet, so there is no gitops.yaml to read")
                .hint("check out the branch that holds gitops.yaml (usually main), or run `git deploy init` in a new repository")
        })?;
        Ok((self.config_at(head, "HEAD")?, head))
    }

    /// `gitops.yaml` as recorded in `commit`; `what` describes the commit for errors.
    pub fn config_at(&self, commit: ObjectId, what: &str) -> Result<Config> {
        let label = format!("{} at {what} ({})", config::FILE_NAME, self.short(commit));
        let bytes = self.file_at(commit, config::FILE_NAME)?.ok_or_else(|| {
            Error::invalid(format!("{label}: no such file"))
                .hint("run `git deploy init` to create it, or check out a branch that has one")
        })?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Error::invalid(format!("{label}: not valid UTF-8")))?;
        Config::parse(&label, text)
    }

    /// The commit a tag (annotated or not) finally points to.
    pub fn peel_to_commit(&self, target: ObjectId) -> Result<ObjectId> {
        Ok(self.inner.find_object(target)?.peel_to_commit()?.id)
    }

    /// Reads the tag `name` (with or without `refs/tags/`).
    pub fn tag_info(&self, name: &str) -> Result<TagInfo> {
        let (short, target) = self.tag_target(name)?;
        self.tag_info_at(&short, target)
    }

    /// The tag `name` (with or without `refs/tags/`) as its short name and what its ref points
    /// at, read once: callers that both check and use a tag read both from this id.
    pub fn tag_target(&self, name: &str) -> Result<(String, ObjectId)> {
        let short = name.trim_start_matches("refs/tags/").to_string();
        let target = self
            .ref_target(&format!("refs/tags/{short}"))?
            .ok_or_else(|| {
                Error::invalid(format!("no tag named {short:?}"))
                    .hint("`git deploy log <env>` lists the deploy tags of an environment")
            })?;
        Ok((short, target))
    }

    pub fn tag_info_at(&self, short: &str, target: ObjectId) -> Result<TagInfo> {
        let object = self.inner.find_object(target)?;
        if object.kind != gix::object::Kind::Tag {
            let commit = self.peel_to_commit(target)?;
            return Ok(TagInfo {
                name: short.to_string(),
                tag_object: None,
                commit,
                tagger: None,
                message: String::new(),
                record: None,
                signed: false,
            });
        }
        let tag = object.clone().into_tag();
        let decoded = tag.decode()?;
        let tagger = decoded.tagger()?.map(|s| {
            let time = s.time().unwrap_or_default();
            Person {
                name: s.name.to_str_lossy().trim().to_string(),
                email: s.email.to_str_lossy().trim().to_string(),
                seconds: time.seconds,
                offset: time.offset,
            }
        });
        let message = decoded.message.to_str_lossy().into_owned();
        let signed = decoded.signature.is_some();
        let commit = self.peel_to_commit(target)?;
        Ok(TagInfo {
            name: short.to_string(),
            tag_object: Some(target),
            commit,
            tagger,
            record: DeployRecord::parse(&message),
            message,
            signed,
        })
    }

    /// Whether `descendant` contains `ancestor`. A history we cannot see whole is an error,
    /// never a "no": in a shallow clone the walk stops at the cut, so "not an ancestor" there
    /// may be false (a fast-forward would look diverged); missing objects likewise.
    pub fn is_ancestor(&self, ancestor: ObjectId, descendant: ObjectId) -> Result<bool> {
        if ancestor == descendant {
            return Ok(true);
        }
        let what = || {
            format!(
                "cannot tell whether {} contains {}",
                self.short(descendant),
                self.short(ancestor)
            )
        };
        let shallow = self.inner.is_shallow()?;
        match self.inner.merge_base(ancestor, descendant) {
            Ok(Some(base)) if base.detach() == ancestor => Ok(true),
            Ok(_) if shallow => Err(Error::invalid(format!(
                "{}: this is a shallow clone, its history stops before their common ancestor",
                what()
            ))
            .hint("fetch the full history with `git fetch --unshallow`, then retry")),
            Ok(_) => Ok(false),
            Err(e) if shallow => Err(Error::invalid(format!(
                "{}: this is a shallow clone ({e})",
                what()
            ))
            .hint("fetch the full history with `git fetch --unshallow`, then retry")
            .with_source(e)),
            Err(e) => Err(Error::invalid(format!("{}: {e}", what()))
                .hint("the repository lacks objects: `git fsck` tells which; fetch them again")
                .with_source(e)),
        }
    }

    /// Commits reachable from `tip` but not from any of `hidden`, newest first.
    pub fn commits_between(
        &self,
        hidden: &[ObjectId],
        tip: ObjectId,
        limit: Option<usize>,
    ) -> Result<Vec<CommitSummary>> {
        let walk = self
            .inner
            .rev_walk([tip])
            .with_hidden(hidden.iter().copied())
            .sorting(gix::revision::walk::Sorting::ByCommitTime(
                Default::default(),
            ))
            .all()?;
        let mut out = Vec::new();
        for info in walk {
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            let info = info.map_err(|e| Error::refused(format!("walking history: {e}")))?;
            let commit = info.object()?;
            let decoded = commit.decode()?;
            let author = decoded.author()?;
            out.push(CommitSummary {
                id: info.id.to_string(),
                short: self.short(info.id),
                subject: decoded.message().summary().to_str_lossy().into_owned(),
                author: author.name.to_str_lossy().trim().to_string(),
                time: author.seconds(),
            });
        }
        Ok(out)
    }

    /// How many commits `tip` has that none of `hidden` has.
    pub fn count_between(&self, hidden: &[ObjectId], tip: ObjectId) -> Result<usize> {
        let walk = self
            .inner
            .rev_walk([tip])
            .with_hidden(hidden.iter().copied())
            .all()?;
        let mut n = 0;
        for info in walk {
            info.map_err(|e| Error::refused(format!("walking history: {e}")))?;
            n += 1;
        }
        Ok(n)
    }

    /// File changes from `old` to `new` (trees of commits; `None` is the empty tree), limited
    /// to paths under `prefix` (normalised; empty for all), with line counts.
    pub fn file_changes(
        &self,
        old: Option<ObjectId>,
        new: ObjectId,
        prefix: &str,
    ) -> Result<Vec<FileChange>> {
        let new_tree = self.inner.find_commit(new)?.tree()?;
        let old_tree = match old {
            Some(c) => self.inner.find_commit(c)?.tree()?,
            None => self.inner.empty_tree(),
        };
        let mut opts = gix::diff::Options::default();
        opts.track_rewrites(None);
        let changes = self.inner.diff_tree_to_tree(&old_tree, &new_tree, opts)?;
        let mut out = Vec::new();
        use gix::object::tree::diff::ChangeDetached as C;
        for change in changes {
            let (path, status, mode, old_id, new_id) = match change {
                C::Addition {
                    location,
                    entry_mode,
                    id,
                    ..
                } => (location, ChangeStatus::Added, entry_mode, None, Some(id)),
                C::Deletion {
                    location,
                    entry_mode,
                    id,
                    ..
                } => (location, ChangeStatus::Deleted, entry_mode, Some(id), None),
                C::Modification {
                    location,
                    entry_mode,
                    previous_id,
                    id,
                    ..
                } => (
                    location,
                    ChangeStatus::Modified,
                    entry_mode,
                    Some(previous_id),
                    Some(id),
                ),
                C::Rewrite { .. } => continue,
            };
            if mode.is_tree() {
                continue;
            }
            let path = path.to_str_lossy().into_owned();
            if !under(&path, prefix) {
                continue;
            }
            let old_bytes = old_id
                .map(|id| self.blob(id))
                .transpose()?
                .unwrap_or_default();
            let new_bytes = new_id
                .map(|id| self.blob(id))
                .transpose()?
                .unwrap_or_default();
            let (added, removed, binary) = line_stats(&old_bytes, &new_bytes);
            out.push(FileChange {
                path,
                status,
                added,
                removed,
                binary,
                old: old_id,
                new: new_id,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    pub fn blob(&self, id: ObjectId) -> Result<Vec<u8>> {
        Ok(self.inner.find_object(id)?.detach().data)
    }
}

/// Whether repository path `path` lies at or below `prefix` (empty prefix: everything).
pub fn under(path: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|r| r.starts_with('/'))
}

fn is_binary(bytes: &[u8]) -> bool {
    bytes.iter().take(8000).any(|b| *b == 0)
}

fn line_stats(old: &[u8], new: &[u8]) -> (usize, usize, bool) {
    if is_binary(old) || is_binary(new) {
        return (0, 0, true);
    }
    let old = String::from_utf8_lossy(old);
    let new = String::from_utf8_lossy(new);
    let diff = similar::TextDiff::from_lines(old.as_ref(), new.as_ref());
    let (mut added, mut removed) = (0, 0);
    for change in diff.iter_all_changes() {
        match change.tag() {
            similar::ChangeTag::Insert => added += 1,
            similar::ChangeTag::Delete => removed += 1,
            similar::ChangeTag::Equal => {}
        }
    }
    (added, removed, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_matches_whole_components() {
        assert!(under("deploy/dev/a.yaml", "deploy/dev"));
        assert!(under("deploy/dev", "deploy/dev"));
        assert!(!under("deploy/dev2/a.yaml", "deploy/dev"));
        assert!(under("anything", ""));
    }

    #[test]
    fn line_stats_count_changes() {
        assert_eq!(line_stats(b"a\nb\n", b"a\nc\nd\n"), (2, 1, false));
        assert_eq!(line_stats(b"", b"x\n"), (1, 0, false));
        assert!(line_stats(b"\0bin", b"x").2);
    }
}
