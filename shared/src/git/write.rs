//! Building the objects a write needs: identities, commits, annotated (optionally signed) tags
//! with their record, and free deploy tag names. Objects go to the object memory when the
//! caller enabled it (`Repo::discover` callers that write do), so a refused or declined plan
//! leaves the object database untouched; `Plan::execute` persists them.

use std::io::Write as _;
use std::process::{Command, Stdio};

use gix::ObjectId;
use gix::bstr::ByteSlice;

use super::Repo;
use crate::error::{Error, Result};
use crate::tag::{DeployRecord, TagName};

/// The committer git would use, honouring GIT_COMMITTER_* and user.* config.
pub fn identity(repo: &Repo) -> Result<gix::actor::Signature> {
    let sig = repo.inner.committer().ok_or_else(|| {
        Error::invalid("no identity: git does not know who you are")
            .hint("set it with `git config user.name \"Your Name\"` and `git config user.email you@example.com`")
    })?;
    let sig =
        sig.map_err(|e| Error::invalid(format!("invalid committer identity or date: {e}")))?;
    sig.to_owned()
        .map_err(|e| Error::invalid(format!("invalid committer date: {e}")))
}

pub fn make_commit(
    repo: &Repo,
    tree: ObjectId,
    parents: &[ObjectId],
    message: &str,
) -> Result<ObjectId> {
    let who = identity(repo)?;
    let commit = gix::objs::Commit {
        message: message.into(),
        tree,
        author: who.clone(),
        committer: who,
        encoding: None,
        parents: parents.iter().copied().collect(),
        extra_headers: Default::default(),
    };
    Ok(repo.inner.write_object(&commit)?.detach())
}

/// The first free `deploy/<env>/<stamp>[-N]` name at `seconds`.
pub fn free_tag_name(repo: &Repo, env: &str, seconds: i64) -> Result<String> {
    for seq in 1..10_000 {
        let name = TagName::new(env, seconds, seq).to_string();
        if repo.ref_target(&format!("refs/tags/{name}"))?.is_none() {
            return Ok(name);
        }
    }
    Err(Error::refused(format!(
        "no free deploy tag name for {env} at this second"
    )))
}

/// Whether tags should be signed: `--sign`, or `tag.gpgSign` in git config.
pub fn want_signature(repo: &Repo, flag: bool) -> bool {
    flag || repo
        .inner
        .config_snapshot()
        .boolean("tag.gpgSign")
        .unwrap_or(false)
}

/// Writes an annotated tag object `name` -> `commit` carrying `record`; returns its id.
pub fn make_tag(
    repo: &Repo,
    name: &str,
    commit: ObjectId,
    record: &DeployRecord,
    sign: bool,
) -> Result<ObjectId> {
    let tagger = identity(repo)?;
    let tag = gix::objs::Tag {
        target: commit,
        target_kind: gix::objs::Kind::Commit,
        name: name.into(),
        tagger: Some(tagger),
        message: record.render().into(),
        signature: None,
    };
    if !sign {
        return Ok(repo.inner.write_object(&tag)?.detach());
    }
    let mut payload = Vec::new();
    gix::objs::WriteTo::write_to(&tag, &mut payload)?;
    let signature = gpg_sign(repo, &payload)?;
    payload.extend_from_slice(&signature);
    use gix::objs::Write as _;
    repo.inner
        .objects
        .write_buf(gix::objs::Kind::Tag, &payload)
        .map_err(|e| Error::context("writing the signed tag", e))
}

/// Detached ASCII-armoured signature over `payload`, made the way git makes one: with
/// `gpg.program` (default `gpg`) and `user.signingKey` (default: the committer's identity).
fn gpg_sign(repo: &Repo, payload: &[u8]) -> Result<Vec<u8>> {
    let config = repo.inner.config_snapshot();
    let program = config
        .string("gpg.program")
        .map(|s| s.to_str_lossy().into_owned())
        .unwrap_or_else(|| "gpg".into());
    let key = match config.string("user.signingKey") {
        Some(k) => k.to_str_lossy().into_owned(),
        None => {
            let who = identity(repo)?;
            format!("{} <{}>", who.name, who.email)
        }
    };
    let mut child = Command::new(&program)
        .args(["--status-fd=2", "-bsau", &key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::refused(format!("could not run {program} to sign the tag: {e}"))
                .hint("install gnupg, or set gpg.program")
        })?;
    child.stdin.take().expect("piped").write_all(payload)?;
    let out = child.wait_with_output()?;
    let status = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !status.contains("SIG_CREATED") {
        return Err(
            Error::refused(format!("{program} failed to sign the tag with key {key:?}"))
                .hint("check `gpg --list-secret-keys` and user.signingKey"),
        );
    }
    Ok(out.stdout)
}
