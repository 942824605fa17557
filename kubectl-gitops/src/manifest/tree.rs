//! Reading the manifests under a path from a commit's tree: which files count, symlinks that
//! stay inside the path, and reading and parsing the blobs on all cores.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use gix::ObjectId;
use gix::bstr::ByteSlice;

use shared::error::{Error, Result};
use shared::git::{Repo, under};

use super::kustomize::{KUSTOMIZATION_FILES, render_kustomization};
use super::parse::{PARSER_STACK, parse_stream, parse_stream_here, with_parser_stack};
use super::{Content, Manifest, helm};

/// What `path` (normalised, repository-relative, empty for the root) holds at `commit`.
///
/// A directory with a `Chart.yaml` is a Helm chart: the commit's tree is exported and checked
/// now, and rendered once the cluster is known ([`helm::Chart::render`]). A directory with a
/// kustomization is rendered with `<kubectl> kustomize` from an export of the commit's tree;
/// any other directory contributes its `*.yaml`, `*.yml` and `*.json` files (recursively, in
/// path order, skipping dot-directories and dot-files). Objects come from git objects only;
/// the work tree is never read. `values` (gitops.yaml's `helm:` block, `--values`, `--set`)
/// only apply to a chart, and are refused anywhere else.
pub fn open_at(
    repo: &Repo,
    commit: ObjectId,
    path: &str,
    kubectl: &Path,
    values: &helm::Values,
) -> Result<Content> {
    let path = path.trim_matches('/');
    let short = repo.short(commit);
    let root = repo.inner.find_commit(commit)?.tree()?;
    let missing = || {
        Error::invalid(format!("{path:?} does not exist at commit {short}"))
            .hint("check the environment's path in gitops.yaml against the files in that commit")
    };
    let not_a_chart = |what: String| {
        Error::invalid(format!(
            "{what}, but {:?} at commit {short} is not a Helm chart (it has no {})",
            if path.is_empty() { "." } else { path },
            helm::CHART_FILE
        ))
        .hint("point the path at the chart directory, or remove the chart settings")
    };
    let dir = if path.is_empty() {
        root.clone()
    } else {
        let entry = root.lookup_entry_by_path(path)?.ok_or_else(missing)?;
        let mode = entry.mode();
        if mode.is_blob() && is_manifest_file(path) {
            if let Some(what) = values.asked_for() {
                return Err(not_a_chart(what));
            }
            let blob = entry.object()?;
            return Ok(Content::Objects(parse_stream(path, &blob.data)?));
        }
        if !mode.is_tree() {
            return Err(Error::invalid(format!(
                "{path:?} at commit {short} is not a directory or a YAML/JSON file"
            )));
        }
        entry.object()?.into_tree()
    };
    let has_file = |name: &str| dir.find_entry(name).is_some_and(|e| !e.mode().is_tree());
    if has_file(helm::CHART_FILE) {
        return Ok(Content::Chart(helm::prepare(
            repo, &root, path, &short, values,
        )?));
    }
    if let Some(what) = values.asked_for() {
        return Err(not_a_chart(what));
    }
    let has_kustomization = KUSTOMIZATION_FILES.iter().any(|name| has_file(name));
    Ok(Content::Objects(if has_kustomization {
        render_kustomization(repo, &root, path, &short, kubectl)?
    } else {
        load_directory(repo, &dir, path)?
    }))
}

/// The manifests under `path` at `commit`, for paths that hold no chart.
#[cfg(test)]
pub fn load_at(repo: &Repo, commit: ObjectId, path: &str, kubectl: &Path) -> Result<Vec<Manifest>> {
    match open_at(repo, commit, path, kubectl, &helm::Values::default())? {
        Content::Objects(manifests) => Ok(manifests),
        Content::Chart(chart) => Err(Error::invalid(format!(
            "{} holds a Helm chart",
            chart.path()
        ))),
    }
}

fn is_manifest_file(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml") || path.ends_with(".json")
}

pub(super) fn join(dir: &str, rel: &str) -> String {
    if dir.is_empty() {
        rel.to_string()
    } else {
        format!("{dir}/{rel}")
    }
}

/// Where a symlink at `link` (repository path) with `target` points, resolved by path text
/// alone; `None` when it leaves the repository or cannot be represented.
pub(super) fn resolve_link(link: &str, target: &[u8]) -> Option<String> {
    let target = target.to_str().ok()?;
    if target.starts_with('/') || target.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

pub(super) fn link_escapes(link: &str, target: &[u8], scope: &str) -> Error {
    let outside = if scope.is_empty() {
        "the repository".to_string()
    } else {
        format!("{scope:?}")
    };
    Error::invalid(format!(
        "{link}: symbolic link to {:?} points outside {outside}",
        target.to_str_lossy()
    ))
    .hint("manifests are read from the commit alone; replace the link with the file it points to")
}

pub(super) fn records(tree: &gix::Tree<'_>) -> Result<Vec<gix::traverse::tree::recorder::Entry>> {
    let mut recorder = gix::traverse::tree::Recorder::default();
    tree.traverse()
        .breadthfirst(&mut recorder)
        .map_err(|e| Error::context("reading the tree", e))?;
    Ok(recorder.records)
}

fn is_hidden(rel: &str) -> bool {
    rel.split('/').any(|part| part.starts_with('.'))
}

fn load_directory(repo: &Repo, dir: &gix::Tree<'_>, path: &str) -> Result<Vec<Manifest>> {
    let mut files = Vec::new();
    for entry in records(dir)? {
        let rel = entry.filepath.to_str_lossy();
        // Dot-directories hold tool configuration (.github, .gitlab-ci.yml), never objects.
        if is_hidden(&rel) {
            continue;
        }
        let full = join(path, &rel);
        if entry.mode.is_link() {
            let target = repo.blob(entry.oid)?;
            match resolve_link(&full, &target) {
                // A link within the directory adds nothing: its target is read in its own right
                // (following it too would load the same objects twice).
                Some(resolved) if under(&resolved, path) => continue,
                Some(_) => return Err(link_escapes(&full, &target, path)),
                None => return Err(link_escapes(&full, &target, "")),
            }
        }
        if entry.mode.is_blob() && is_manifest_file(&full) {
            files.push((full, entry.oid));
        }
    }
    files.sort();
    load_files(repo, &files)
}

/// Reads and parses one file with `objects`, a repository handle of the calling thread.
fn load_file(objects: &gix::Repository, file: &str, oid: ObjectId) -> Result<Vec<Manifest>> {
    // The object's buffer goes back to the handle's free list when it is dropped, so a
    // thread reads all its blobs into a few reused buffers instead of one copy per file.
    let blob = objects.find_object(oid)?;
    parse_stream_here(file, &blob.data)
}

/// A handle for a loading thread. Each blob is read exactly once, so caching decoded
/// objects would only cost time; the pack's delta-base cache stays on.
fn loader_handle(repo: &Repo) -> gix::Repository {
    let mut handle = repo.inner.clone();
    handle.object_cache_size(0);
    handle
}

fn load_files_on_one_thread(repo: &Repo, files: &[(String, ObjectId)]) -> Result<Vec<Manifest>> {
    let objects = loader_handle(repo);
    with_parser_stack(move || {
        let mut out = Vec::new();
        for (file, oid) in files {
            out.extend(load_file(&objects, file, *oid)?);
        }
        Ok(out)
    })
}

/// Reads and parses files on all cores. Each thread reads the blobs it parses: decompressing
/// objects costs about a third of parsing them, and done up front on one thread it would
/// leave the other cores idle.
fn load_files(repo: &Repo, files: &[(String, ObjectId)]) -> Result<Vec<Manifest>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(files.len() / 16);
    if workers < 2 {
        return load_files_on_one_thread(repo, files);
    }
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<Result<Vec<Manifest>>>> = (0..files.len()).map(|_| None).collect();
    let done: Vec<Vec<(usize, Result<Vec<Manifest>>)>> = std::thread::scope(|scope| {
        let next = &next;
        let handles: Vec<_> = (0..workers)
            .filter_map(|_| {
                let objects = loader_handle(repo);
                let work = move || {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((file, oid)) = files.get(i) else {
                            break;
                        };
                        mine.push((i, load_file(&objects, file, *oid)));
                    }
                    mine
                };
                std::thread::Builder::new()
                    .name("manifest-parser".into())
                    .stack_size(PARSER_STACK)
                    .spawn_scoped(scope, work)
                    .ok()
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    if done.is_empty() {
        // No worker could start (thread limits); one more try on a single thread.
        return load_files_on_one_thread(repo, files);
    }
    for (i, result) in done.into_iter().flatten() {
        slots[i] = Some(result);
    }
    let mut out = Vec::new();
    for (slot, (file, _)) in slots.into_iter().zip(files) {
        match slot {
            Some(result) => out.extend(result?),
            None => return Err(Error::refused(format!("{file}: the parser thread failed"))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_resolution_is_textual_and_bounded() {
        assert_eq!(
            resolve_link("a/b/l", b"../c/f.yaml").as_deref(),
            Some("a/c/f.yaml")
        );
        assert_eq!(resolve_link("a/l", b"../../x"), None);
        assert_eq!(resolve_link("a/l", b"/etc/passwd"), None);
        assert_eq!(resolve_link("l", b"./x/./y").as_deref(), Some("x/y"));
    }
}
