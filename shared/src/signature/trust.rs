//! A set of trusted keys applied to tags and commits: the one place that turns objects into
//! verdicts, whichever keys are trusted (a namespace's policy, or git's own configuration).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::OnceLock;

use gix::ObjectId;
use ssh_key::public::KeyData;

use super::allowed_signers::AllowedSigners;
use super::gpg::{self, Keyring, TrustLevel};
use super::payload::{Format, SignedObject, SignedPayload, TagRef, TagTarget};
use super::ssh;
use super::verdict::{Check, Signer, Subject, Verdict};
use crate::error::{Error, Result};

/// Which signatures a deploy needs (Flux's `verify.mode`: Tag, HEAD, TagAndHEAD).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The annotated tag's signature.
    #[default]
    Tag,
    /// The signature of the commit the tag points at (the tag may be unsigned or lightweight).
    Commit,
    /// Both.
    TagAndCommit,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Tag, Mode::Commit, Mode::TagAndCommit];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Tag => "tag",
            Mode::Commit => "commit",
            Mode::TagAndCommit => "tag-and-commit",
        }
    }

    fn checks_tag(self) -> bool {
        matches!(self, Mode::Tag | Mode::TagAndCommit)
    }

    fn checks_commit(self) -> bool {
        matches!(self, Mode::Commit | Mode::TagAndCommit)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Mode> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown signature mode {s:?}: use tag, commit or tag-and-commit"
                ))
            })
    }
}

/// Where trusted OpenPGP keys come from.
#[derive(Debug)]
enum OpenPgp {
    /// A policy's armoured keys, imported into a throw-away keyring on first use.
    Keys {
        program: PathBuf,
        source: String,
        armoured: Option<String>,
        keyring: OnceLock<Keyring>,
    },
    /// The user's own keyring through git's `gpg.program` (`git tag -v` semantics).
    UserKeyring {
        program: PathBuf,
        min_trust: Option<TrustLevel>,
    },
}

/// Where trusted SSH keys come from.
#[derive(Debug)]
enum Ssh {
    Signers(AllowedSigners),
    /// git's `gpg.ssh.allowedSignersFile` is not set: like git, an SSH signature cannot be
    /// checked at all (an error, not a verdict).
    NotConfigured,
}

/// Keys trusted to sign deploys, and how to check each format against them.
#[derive(Debug)]
pub struct TrustedKeys {
    ssh: Ssh,
    /// git's `gpg.ssh.revocationFile` keys.
    ssh_revoked: Vec<KeyData>,
    openpgp: OpenPgp,
}

impl TrustedKeys {
    /// Trust exactly `signers` and the keys in `gpg_keys` (ASCII-armoured; `None`: no OpenPGP
    /// key is trusted). gpg (`gpg_program`) runs only when an OpenPGP signature is met; it is
    /// then needed even with no keys, to name the unknown key.
    pub fn new(
        signers: AllowedSigners,
        gpg_keys: Option<(String, String)>,
        gpg_program: PathBuf,
    ) -> TrustedKeys {
        let (source, armoured) = match gpg_keys {
            Some((source, text)) => (source, Some(text)),
            None => (String::new(), None),
        };
        TrustedKeys {
            ssh: Ssh::Signers(signers),
            ssh_revoked: Vec::new(),
            openpgp: OpenPgp::Keys {
                program: gpg_program,
                source,
                armoured,
                keyring: OnceLock::new(),
            },
        }
    }

    /// Trust what git's configuration trusts (see [`super::git_config`]).
    pub(crate) fn from_git(
        signers: Option<AllowedSigners>,
        ssh_revoked: Vec<KeyData>,
        gpg_program: PathBuf,
        min_trust: Option<TrustLevel>,
    ) -> TrustedKeys {
        TrustedKeys {
            ssh: signers.map_or(Ssh::NotConfigured, Ssh::Signers),
            ssh_revoked,
            openpgp: OpenPgp::UserKeyring {
                program: gpg_program,
                min_trust,
            },
        }
    }

    /// The verdict on one object's own signature.
    pub fn verify(&self, object: &SignedObject) -> Result<Verdict> {
        let Some(signed) = &object.signed else {
            return Ok(Verdict::Unsigned);
        };
        match signed.format {
            Format::Ssh => self.verify_ssh(signed, object.signed_at),
            Format::OpenPgp => self.verify_openpgp(signed),
            Format::X509 => Ok(Verdict::UnsupportedFormat {
                format: Format::X509,
            }),
        }
    }

    fn verify_ssh(&self, signed: &SignedPayload, signed_at: Option<i64>) -> Result<Verdict> {
        let Ssh::Signers(signers) = &self.ssh else {
            return Err(Error::invalid(
                "an SSH signature cannot be checked: git's gpg.ssh.allowedSignersFile is not set",
            )
            .hint(
                "point it at an OpenSSH allowed_signers file: \
                 `git config gpg.ssh.allowedSignersFile ~/.config/git/allowed_signers`",
            ));
        };
        let verdict = ssh::verify(signed, signers, signed_at);
        Ok(self.ssh_revocation(verdict))
    }

    fn verify_openpgp(&self, signed: &SignedPayload) -> Result<Verdict> {
        match &self.openpgp {
            OpenPgp::Keys {
                program,
                source,
                armoured,
                keyring,
            } => {
                // Built on the first OpenPGP signature only: SSH-only checks never need gpg.
                let keyring = match keyring.get() {
                    Some(k) => k,
                    None => {
                        let built = match armoured {
                            Some(text) => Keyring::from_armoured(program, source, text)?,
                            None => Keyring::empty(program)?,
                        };
                        keyring.get_or_init(|| built)
                    }
                };
                keyring.verify(signed)
            }
            OpenPgp::UserKeyring { program, min_trust } => {
                gpg::verify_with_user_keyring(program, signed, *min_trust)
            }
        }
    }

    /// A good SSH signature by a key in `gpg.ssh.revocationFile` is refused, as
    /// `ssh-keygen -Y verify -r` refuses it.
    fn ssh_revocation(&self, verdict: Verdict) -> Verdict {
        match verdict {
            Verdict::Good { signer }
                if self
                    .ssh_revoked
                    .iter()
                    .any(|k| ssh::fingerprint(k) == signer.key.fingerprint) =>
            {
                Verdict::RevokedKey {
                    key: signer.key,
                    identity: Some(signer.identity),
                }
            }
            other => other,
        }
    }

    /// Checks `tag` (read once with [`super::read_tag`]) as `mode` asks. The decision names
    /// the commit that was checked: deploy that commit, not whatever the ref says by then.
    pub fn check_tag(&self, tag: &TagRef, mode: Mode) -> Result<Decision> {
        let mut checks = Vec::new();
        if mode.checks_tag() {
            checks.push(Check {
                subject: Subject::Tag(tag.name.clone()),
                verdict: self.tag_verdict(tag)?,
            });
        }
        if mode.checks_commit() {
            checks.push(Check {
                subject: Subject::Commit {
                    id: tag.commit.id,
                    tag: tag.name.clone(),
                },
                verdict: self.verify(&tag.commit)?,
            });
        }
        Ok(Decision {
            tag: tag.name.clone(),
            commit: tag.commit.id,
            mode,
            checks,
        })
    }

    fn tag_verdict(&self, tag: &TagRef) -> Result<Verdict> {
        let TagTarget::Annotated {
            object,
            signed_name,
        } = &tag.target
        else {
            return Ok(Verdict::Lightweight);
        };
        let verdict = self.verify(object)?;
        if verdict.is_good() && signed_name != &tag.name {
            return Ok(Verdict::NameMismatch {
                signed_name: signed_name.clone(),
            });
        }
        Ok(verdict)
    }
}

/// The outcome of checking one tag under a mode: one [`Check`] per signature the mode needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub tag: String,
    /// The commit that was checked (and the only one that may be deployed on this decision).
    pub commit: ObjectId,
    pub mode: Mode,
    pub checks: Vec<Check>,
}

impl Decision {
    /// Every signature the mode needs is good.
    pub fn is_trusted(&self) -> bool {
        self.checks.iter().all(|c| c.verdict.is_good())
    }

    /// The checks that failed, in mode order (tag, then commit).
    pub fn refusals(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.verdict.is_good())
    }

    /// Who signed what was checked: one entry per good signature.
    pub fn signers(&self) -> impl Iterator<Item = &Signer> {
        self.checks.iter().filter_map(|c| c.verdict.signer())
    }

    /// The refusal as one line (`tag X: not signed`; both lines joined with `; ` when the tag
    /// and the commit fail), `None` when trusted. This is the text of [`Decision::require`]'s
    /// error and of `diff`'s warning.
    pub fn refusal_message(&self) -> Option<String> {
        let lines: Vec<String> = self.refusals().map(Check::to_string).collect();
        (!lines.is_empty()).then(|| lines.join("; "))
    }

    /// `Ok(self)` when trusted, else a refusal (exit code 1) naming the tag and the reason.
    pub fn require(self) -> Result<Decision> {
        match self.refusal_message() {
            None => Ok(self),
            Some(message) => Err(Error::refused(message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_keys_can_be_shared_across_async_tasks() {
        fn shareable<T: Send + Sync>() {}
        shareable::<TrustedKeys>();
        shareable::<Decision>();
    }

    #[test]
    fn modes_parse_from_their_names_only() {
        for mode in Mode::ALL {
            assert_eq!(mode.as_str().parse::<Mode>().unwrap(), mode);
        }
        let err = "HEAD".parse::<Mode>().unwrap_err();
        assert_eq!(
            err.message,
            "unknown signature mode \"HEAD\": use tag, commit or tag-and-commit"
        );
    }
}
