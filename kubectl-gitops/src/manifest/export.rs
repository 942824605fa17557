//! A commit's tree written out to a directory, for renderers that only read files
//! (`kubectl kustomize`, `helm template`): every blob and symlink, with no path that could
//! land outside the directory and no symlink that resolves outside it.

use std::path::Path;
use std::process::Command;

use gix::bstr::ByteSlice;

use shared::error::{Error, Result};
use shared::git::Repo;

use super::tree::{link_escapes, records, resolve_link};

/// Writes the whole tree `root` below `dest` (an empty directory) and checks that every
/// symlink in it resolves inside `dest`.
pub(super) fn export_commit(repo: &Repo, root: &gix::Tree<'_>, dest: &Path) -> Result<()> {
    let links = export_tree(repo, root, dest)?;
    check_links_stay_inside(dest, &links)
}

/// Makes `command` fail fast instead of reaching the network: git only clones local
/// repositories, and HTTP(S) goes to a proxy address where nothing listens.
pub(super) fn without_network(command: &mut Command) -> &mut Command {
    command
        .env("GIT_ALLOW_PROTOCOL", "file")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("http_proxy", "http://127.0.0.1:9")
        .env("https_proxy", "http://127.0.0.1:9")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
}

/// Writes every blob and symlink of `tree` below `dest`; returns the links written.
fn export_tree(repo: &Repo, tree: &gix::Tree<'_>, dest: &Path) -> Result<Vec<String>> {
    let mut links = Vec::new();
    let write_err =
        |p: &Path, e: std::io::Error| Error::context(format!("writing {}", p.display()), e);
    for entry in records(tree)? {
        let rel = entry.filepath.to_str().map_err(|_| {
            Error::invalid(format!(
                "{:?}: path is not UTF-8, which renderers cannot read",
                entry.filepath
            ))
        })?;
        // Tree entries come from whoever made the commit; never let one name a place outside
        // the export.
        if rel
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == ".." || part == ".git")
        {
            return Err(Error::invalid(format!(
                "{rel:?}: unsafe path in the commit's tree"
            )));
        }
        let out = dest.join(rel);
        if entry.mode.is_tree() {
            std::fs::create_dir(&out).map_err(|e| write_err(&out, e))?;
        } else if entry.mode.is_link() {
            let target = repo.blob(entry.oid)?;
            if resolve_link(rel, &target).is_none() {
                return Err(link_escapes(rel, &target, ""));
            }
            make_symlink(&target, &out).map_err(|e| write_err(&out, e))?;
            links.push(rel.to_string());
        } else if entry.mode.is_blob() {
            let blob = repo.inner.find_object(entry.oid)?;
            std::fs::write(&out, &blob.data).map_err(|e| write_err(&out, e))?;
        }
    }
    Ok(links)
}

#[cfg(unix)]
fn make_symlink(target: &[u8], at: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), at)
}

#[cfg(not(unix))]
fn make_symlink(_target: &[u8], at: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        format!(
            "symbolic links are only exported on Unix ({})",
            at.display()
        ),
    ))
}

/// Resolves each exported link on disk: a textual check cannot see a link whose target goes
/// through another link (`a -> .`, `b -> a/..`).
fn check_links_stay_inside(root: &Path, links: &[String]) -> Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    let canonical_root = root
        .canonicalize()
        .map_err(|e| Error::context("resolving the export directory", e))?;
    for link in links {
        let target = std::fs::read_link(root.join(link)).unwrap_or_default();
        let escapes = || link_escapes(link, target.as_os_str().as_encoded_bytes(), "");
        match root.join(link).canonicalize() {
            Ok(resolved) if resolved.starts_with(&canonical_root) => {}
            Ok(_) => return Err(escapes()),
            // A dangling link reads as a missing file, which kustomize reports itself.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::invalid(format!(
                    "{link}: symbolic link cannot be resolved: {e}"
                )));
            }
        }
    }
    Ok(())
}
