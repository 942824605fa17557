//! Trust as git's own configuration defines it, for `git deploy promote --verify-source`: the
//! same keys `git tag -v` would accept. SSH: `gpg.ssh.allowedSignersFile` (and
//! `gpg.ssh.revocationFile`), checked in Rust like a policy. OpenPGP: the user's own keyring
//! through `gpg.openpgp.program`/`gpg.program`, with `gpg.minTrustLevel`.

use std::path::{Path, PathBuf};

use gix::bstr::ByteSlice;
use ssh_key::PublicKey;
use ssh_key::public::KeyData;

use super::allowed_signers::AllowedSigners;
use super::gpg::TrustLevel;
use super::payload::TagRef;
use super::trust::{Mode, TrustedKeys};
use super::verdict::Check;
use crate::error::{Error, Result};

/// The keys git's configuration in `repo` trusts. Files are read now: a missing or malformed
/// allowed_signers file is an error naming it (git would refuse every SSH signature).
pub fn trusted_keys(repo: &gix::Repository) -> Result<TrustedKeys> {
    let config = repo.config_snapshot();
    let signers = match config_path(repo, "gpg.ssh.allowedSignersFile")? {
        Some(path) => Some(AllowedSigners::parse(
            &path.display().to_string(),
            &read(&path, "gpg.ssh.allowedSignersFile")?,
        )?),
        None => None,
    };
    let revoked = match config_path(repo, "gpg.ssh.revocationFile")? {
        Some(path) => revoked_keys(&path)?,
        None => Vec::new(),
    };
    let min_trust = match config.string("gpg.minTrustLevel") {
        Some(v) => Some(TrustLevel::parse(&v.to_str_lossy()).ok_or_else(|| {
            Error::invalid(format!(
                "git config gpg.minTrustLevel: {v:?} is not undefined, never, marginal, fully or ultimate"
            ))
        })?),
        None => None,
    };
    Ok(TrustedKeys::from_git(
        signers,
        revoked,
        openpgp_program(repo)?,
        min_trust,
    ))
}

/// `git tag -v`'s judgement of `tag` as one check (plus the name check every tag gets).
pub fn verify_tag(repo: &gix::Repository, tag: &TagRef) -> Result<Check> {
    let decision = trusted_keys(repo)?.check_tag(tag, Mode::Tag)?;
    Ok(decision
        .checks
        .into_iter()
        .next()
        .expect("mode tag checks the tag"))
}

/// git's OpenPGP program: `gpg.openpgp.program`, else `gpg.program`, else `gpg`.
pub(crate) fn openpgp_program(repo: &gix::Repository) -> Result<PathBuf> {
    let config = repo.config_snapshot();
    for key in ["gpg.openpgp.program", "gpg.program"] {
        if let Some(program) = config.trusted_program(key)? {
            return Ok(PathBuf::from(program));
        }
    }
    Ok(PathBuf::from("gpg"))
}

/// A path-valued key with `~` expanded; relative paths are taken from the top of the work
/// tree (the git directory of a bare repository), where git runs ssh-keygen.
pub(crate) fn config_path(repo: &gix::Repository, key: &str) -> Result<Option<PathBuf>> {
    let path = repo
        .config_snapshot()
        .trusted_path(key)
        .map_err(|e| Error::invalid(format!("git config {key}: {e}")).with_source(e))?;
    Ok(path.map(|p| {
        if p.is_relative() {
            repo.workdir().unwrap_or(repo.git_dir()).join(p)
        } else {
            p
        }
    }))
}

fn read(path: &Path, key: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(format!("{} (git config {key}): {e}", path.display()))
            .hint(format!("fix or unset {key}"))
            .with_source(e)
    })
}

/// `gpg.ssh.revocationFile` as a list of public keys (one per line, `#` comments). OpenSSH
/// also accepts binary KRLs; those are refused with a clear error rather than ignored.
fn revoked_keys(path: &Path) -> Result<Vec<KeyData>> {
    let key = "gpg.ssh.revocationFile";
    let bytes = std::fs::read(path).map_err(|e| {
        Error::invalid(format!("{} (git config {key}): {e}", path.display()))
            .hint(format!("fix or unset {key}"))
            .with_source(e)
    })?;
    if bytes.starts_with(b"SSHKRL") {
        return Err(Error::invalid(format!(
            "{}: binary key revocation lists (KRL) are not supported",
            path.display()
        ))
        .hint("list the revoked public keys one per line instead"));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        Error::invalid(format!(
            "{}: not a text file of public keys",
            path.display()
        ))
    })?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = PublicKey::from_openssh(line).map_err(|e| {
            Error::invalid(format!(
                "{}:{}: not a public key: {e}",
                path.display(),
                i + 1
            ))
        })?;
        keys.push(key.key_data().clone());
    }
    Ok(keys)
}
