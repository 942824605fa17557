//! Building the objects a write needs: identities, commits, annotated (optionally signed) tags
//! with their record, and free deploy tag names. Objects go to the object memory when the
//! caller enabled it (`Repo::discover` callers that write do), so a refused or declined plan
//! leaves the object database untouched; `Plan::execute` persists them.

use gix::ObjectId;

use super::Repo;
use crate::error::{Error, Result};
use crate::signature::{self, SigningSetup};
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

/// How new deploy tags are signed: with `--sign` or `tag.gpgSign` in git config, git's signing
/// setup (`gpg.format` openpgp or ssh, `user.signingKey`, ...), read now so that a setup that
/// cannot sign fails before anything is planned; `None`: unsigned.
pub fn signing(repo: &Repo, flag: bool) -> Result<Option<SigningSetup>> {
    let wanted = flag
        || repo
            .inner
            .config_snapshot()
            .boolean("tag.gpgSign")
            .unwrap_or(false);
    wanted
        .then(|| SigningSetup::from_git_config(&repo.inner))
        .transpose()
}

/// Writes an annotated tag object `name` -> `commit` carrying `record`, signed when `sign` is
/// given (the signature is appended to the tag payload, as `git tag -s` does); returns its id.
pub fn make_tag(
    repo: &Repo,
    name: &str,
    commit: ObjectId,
    record: &DeployRecord,
    sign: Option<&SigningSetup>,
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
    let Some(setup) = sign else {
        return Ok(repo.inner.write_object(&tag)?.detach());
    };
    let mut payload = Vec::new();
    gix::objs::WriteTo::write_to(&tag, &mut payload)?;
    let signature = setup.sign(&payload)?;
    let signed = signature::signed_tag(&payload, &signature);
    use gix::objs::Write as _;
    repo.inner
        .objects
        .write_buf(gix::objs::Kind::Tag, &signed)
        .map_err(|e| Error::context("writing the signed tag", e))
}
