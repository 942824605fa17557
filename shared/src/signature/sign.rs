//! Signing a tag or commit payload the way git does, per git's configuration: `gpg.format`
//! `openpgp` (default) runs `gpg -bsau <key>`; `ssh` runs `ssh-keygen -Y sign -n git -f <key
//! file> <payload file>`, exactly git's command line, so agent, passphrase prompts and hardware
//! keys behave as with `git tag -s`.
//!
//! `user.signingKey` for SSH, as git reads it: a path to a private key, or to a public key whose
//! private key is in ssh-agent; or a literal `key::ssh-ed25519 AAAA...` (also a bare
//! `ssh-...` literal), which is written to a temporary file and signed through the agent.
//! Without it, the first line printed by `gpg.ssh.defaultKeyCommand`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use gix::bstr::ByteSlice;

use super::git_config;
use super::payload::Format;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    /// A gpg key specifier (`user.signingKey`, or the committer's `Name <email>`).
    OpenPgp(String),
    /// A key file (private, or public with the private key in the agent).
    SshFile(PathBuf),
    /// A public key given literally; the agent holds its private key.
    SshLiteral(String),
}

/// How this repository signs: format, program and key, read from git's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningSetup {
    program: PathBuf,
    key: Key,
}

impl SigningSetup {
    /// Reads `gpg.format`, `gpg.<format>.program` (`gpg.program` for OpenPGP),
    /// `user.signingKey` and `gpg.ssh.defaultKeyCommand` as git does.
    pub fn from_git_config(repo: &gix::Repository) -> Result<SigningSetup> {
        let config = repo.config_snapshot();
        let format = config
            .string("gpg.format")
            .map(|f| f.to_str_lossy().into_owned())
            .unwrap_or_else(|| "openpgp".into());
        let signing_key = config
            .string("user.signingKey")
            .map(|k| k.to_str_lossy().into_owned())
            .filter(|k| !k.is_empty());
        match format.as_str() {
            "openpgp" => {
                let key = match signing_key {
                    Some(k) => k,
                    None => committer(repo)?,
                };
                Ok(SigningSetup {
                    program: git_config::openpgp_program(repo)?,
                    key: Key::OpenPgp(key),
                })
            }
            "ssh" => {
                let program = config
                    .trusted_program("gpg.ssh.program")?
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("ssh-keygen"));
                let key = match signing_key {
                    Some(k) => ssh_key_spec(&k),
                    None => default_ssh_key(repo)?,
                };
                Ok(SigningSetup { program, key })
            }
            "x509" => Err(Error::invalid(
                "gpg.format=x509: signing deploy tags with X.509 (gpgsm) is not supported",
            )
            .hint("use gpg.format=openpgp or gpg.format=ssh")),
            other => Err(
                Error::invalid(format!("git config gpg.format: unknown value {other:?}"))
                    .hint("use openpgp or ssh"),
            ),
        }
    }

    pub fn format(&self) -> Format {
        match self.key {
            Key::OpenPgp(_) => Format::OpenPgp,
            Key::SshFile(_) | Key::SshLiteral(_) => Format::Ssh,
        }
    }

    /// What will sign, for `--dry-run` and messages: `SSH key ~/.ssh/id_ed25519.pub`,
    /// `OpenPGP key alice@example.com`, `SSH key ssh-ed25519 SHA256:... (from ssh-agent)`.
    pub fn describe(&self) -> String {
        match &self.key {
            Key::OpenPgp(k) => format!("OpenPGP key {k}"),
            Key::SshFile(p) => format!("SSH key {}", p.display()),
            Key::SshLiteral(k) => {
                let id = ssh_key::PublicKey::from_openssh(k)
                    .map(|k| {
                        format!(
                            "{} {}",
                            super::ssh::key_type(k.key_data()),
                            super::ssh::fingerprint(k.key_data())
                        )
                    })
                    .unwrap_or_else(|_| k.split(' ').next().unwrap_or_default().to_string());
                format!("SSH key {id} (from ssh-agent)")
            }
        }
    }

    /// The armoured signature over `payload`, to append to a tag ([`signed_tag`]) or embed in
    /// a commit ([`signed_commit`]).
    pub fn sign(&self, payload: &[u8]) -> Result<Vec<u8>> {
        match &self.key {
            Key::OpenPgp(key) => sign_openpgp(&self.program, key, payload),
            Key::SshFile(path) => sign_ssh(&self.program, path, payload),
            Key::SshLiteral(literal) => {
                let dir = temp_dir()?;
                let key_file = dir.path().join("signing_key.pub");
                std::fs::write(&key_file, format!("{literal}\n")).map_err(|e| {
                    Error::context("writing the signing key to a temporary file", e)
                })?;
                sign_ssh(&self.program, &key_file, payload)
            }
        }
    }
}

/// A signed tag object: the payload (tag headers and message, ending in a newline) followed by
/// the signature, as git writes it.
pub fn signed_tag(payload: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut out = payload.to_vec();
    out.extend_from_slice(signature);
    out
}

/// A signed commit object: the signature as a `gpgsig` header at the end of the headers, each
/// line continued with a leading space (git's `add_header_signature`).
pub fn signed_commit(commit: &[u8], signature: &[u8]) -> Vec<u8> {
    let insert_at = commit
        .find(b"\n\n")
        .map_or(commit.len(), |end_of_headers| end_of_headers + 1);
    let mut header = Vec::with_capacity(signature.len() + 16);
    for (i, line) in signature.split_inclusive(|&b| b == b'\n').enumerate() {
        if i == 0 {
            header.extend_from_slice(b"gpgsig");
        }
        header.push(b' ');
        header.extend_from_slice(line);
    }
    let mut out = Vec::with_capacity(commit.len() + header.len());
    out.extend_from_slice(&commit[..insert_at]);
    out.extend_from_slice(&header);
    out.extend_from_slice(&commit[insert_at..]);
    out
}

/// git's `is_literal_ssh_key`: `key::<literal>`, or a bare `ssh-...` literal.
fn ssh_key_spec(value: &str) -> Key {
    if let Some(literal) = value.strip_prefix("key::") {
        Key::SshLiteral(literal.to_string())
    } else if value.starts_with("ssh-") {
        Key::SshLiteral(value.to_string())
    } else {
        Key::SshFile(expand_home(value))
    }
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// `gpg.ssh.defaultKeyCommand` (split on whitespace as git does); its first output line must
/// be a literal public key.
fn default_ssh_key(repo: &gix::Repository) -> Result<Key> {
    let no_key = || {
        Error::invalid("gpg.format=ssh needs user.signingKey to sign")
            .hint("set it to a key file (`git config user.signingKey ~/.ssh/id_ed25519.pub`) or a literal `key::ssh-ed25519 AAAA...`")
    };
    let Some(command) = repo.config_snapshot().string("gpg.ssh.defaultKeyCommand") else {
        return Err(no_key());
    };
    let command = command.to_str_lossy().into_owned();
    let mut words = command.split_whitespace();
    let program = words.next().ok_or_else(no_key)?;
    let out = Command::new(program)
        .args(words)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::context(format!("running gpg.ssh.defaultKeyCommand {command:?}"), e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap_or_default().trim();
    match ssh_key_spec(first) {
        literal @ Key::SshLiteral(_) if out.status.success() => Ok(literal),
        _ => Err(Error::refused(format!(
            "gpg.ssh.defaultKeyCommand {command:?} printed no public key ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
        .hint("it should print a key like `ssh-ed25519 AAAA...` (e.g. `ssh-add -L`), or set user.signingKey")),
    }
}

fn committer(repo: &gix::Repository) -> Result<String> {
    let who = repo
        .committer()
        .ok_or_else(|| {
            Error::invalid(
                "no signing key: user.signingKey is not set and git does not know who you are",
            )
            .hint("set user.signingKey, or user.name and user.email")
        })?
        .map_err(|e| Error::invalid(format!("invalid committer identity: {e}")))?;
    Ok(format!("{} <{}>", who.name, who.email))
}

fn temp_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("gitops-sign-")
        .tempdir()
        .map_err(|e| Error::context("creating a temporary directory", e))
}

/// `ssh-keygen -Y sign -n git -f <key> <file>` writes `<file>.sig`.
fn sign_ssh(program: &Path, key_file: &Path, payload: &[u8]) -> Result<Vec<u8>> {
    let dir = temp_dir()?;
    let buffer = dir.path().join("payload");
    std::fs::write(&buffer, payload)
        .map_err(|e| Error::context("writing the payload to a temporary file", e))?;
    let out = Command::new(program)
        .args(["-Y", "sign", "-n", "git", "-f"])
        .arg(key_file)
        .arg(&buffer)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::refused(format!(
                    "{} (OpenSSH) is needed to sign with SSH keys and was not found",
                    program.display()
                ))
                .hint("install OpenSSH's client tools (Debian/Ubuntu: `apt-get install openssh-client`), or set gpg.ssh.program")
            } else {
                Error::context(format!("running {}", program.display()), e)
            }
        })?;
    let sig_file = dir.path().join("payload.sig");
    if !out.status.success() || !sig_file.exists() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = stderr.trim();
        let hint = if stderr.contains("No private key found") || stderr.contains("agent") {
            "add the private key to ssh-agent (`ssh-add <key>`), or set user.signingKey to the private key file"
        } else {
            "check user.signingKey (a key file, or `key::ssh-ed25519 AAAA...`) and gpg.ssh.program"
        };
        return Err(Error::refused(format!(
            "{} could not sign with {}: {stderr}",
            program.display(),
            key_file.display()
        ))
        .hint(hint));
    }
    std::fs::read(&sig_file).map_err(|e| Error::context("reading the SSH signature", e))
}

/// `gpg --status-fd=2 -bsau <key>`: a detached armoured signature, checked for SIG_CREATED
/// as git checks it.
fn sign_openpgp(program: &Path, key: &str, payload: &[u8]) -> Result<Vec<u8>> {
    let mut child = Command::new(program)
        .args(["--status-fd=2", "-bsau", key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::refused(format!(
                    "{} (GnuPG) is needed to sign with OpenPGP keys and was not found",
                    program.display()
                ))
                .hint("install GnuPG (Debian/Ubuntu: `apt-get install gnupg`), or set gpg.program")
            } else {
                Error::context(format!("running {}", program.display()), e)
            }
        })?;
    let stdin = child.stdin.take();
    let out = std::thread::scope(|scope| {
        if let Some(mut pipe) = stdin {
            scope.spawn(move || {
                let _ = pipe.write_all(payload);
            });
        }
        child.wait_with_output()
    })
    .map_err(|e| Error::context(format!("running {}", program.display()), e))?;
    let status = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !status.contains("[GNUPG:] SIG_CREATED ") {
        return Err(Error::refused(format!(
            "{} could not sign with key {key:?}",
            program.display()
        ))
        .hint("check `gpg --list-secret-keys` and user.signingKey"));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_key_values_are_read_as_git_reads_them() {
        assert_eq!(
            ssh_key_spec("key::ssh-ed25519 AAAA c"),
            Key::SshLiteral("ssh-ed25519 AAAA c".into())
        );
        assert_eq!(
            ssh_key_spec("ssh-rsa AAAA"),
            Key::SshLiteral("ssh-rsa AAAA".into())
        );
        assert_eq!(
            ssh_key_spec("/k/id_ed25519.pub"),
            Key::SshFile("/k/id_ed25519.pub".into())
        );
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(
                ssh_key_spec("~/.ssh/id"),
                Key::SshFile(Path::new(&home).join(".ssh/id"))
            );
        }
    }

    #[test]
    fn commit_signature_goes_at_the_end_of_the_headers() {
        let commit =
            b"tree 4b82\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\n\nmsg\n\nbody\n";
        let sig = b"-----BEGIN SSH SIGNATURE-----\nAAAA\n\n-----END SSH SIGNATURE-----\n";
        let signed = signed_commit(commit, sig);
        assert_eq!(
            signed.to_str().unwrap(),
            "tree 4b82\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\n\
gpgsig -----BEGIN SSH SIGNATURE-----\n AAAA\n \n -----END SSH SIGNATURE-----\n\nmsg\n\nbody\n"
        );
        let split = super::super::payload::split_commit(&signed).unwrap();
        assert_eq!(split.payload, commit);
        assert_eq!(split.signature, sig);
    }
}
