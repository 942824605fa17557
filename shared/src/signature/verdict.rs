//! What a signature check concluded, in one type for both formats and every refusal reason,
//! serialisable so a revision record can keep who signed.

use std::fmt;

use gix::ObjectId;

use super::payload::Format;

/// A public key as users compare keys: type and fingerprint, never key material.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Key {
    pub format: Format,
    /// As the signing tool prints it: `ED25519`, `RSA`, `ECDSA`, `ED25519-SK` (ssh-keygen);
    /// `EdDSA`, `RSA`, `ECDSA`, `DSA` (OpenPGP public-key algorithms).
    #[serde(rename = "type")]
    pub key_type: String,
    /// SSH: `SHA256:...` as `ssh-keygen -l` prints it. OpenPGP: the primary key's fingerprint
    /// in upper-case hex (or the 16-digit key id when gpg could not tell the fingerprint).
    pub fingerprint: String,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} key {}", self.key_type, self.fingerprint)
    }
}

/// Who made a good signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signer {
    /// SSH: the allowed_signers principal git would report. OpenPGP: the user id gpg reports.
    pub identity: String,
    pub key: Key,
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.identity, self.key)
    }
}

/// The outcome of checking one tag or commit against a set of trusted keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// Signed by a trusted key, signature valid for exactly these bytes.
    Good { signer: Signer },
    /// An annotated tag or commit with no signature.
    Unsigned,
    /// The tag ref names a commit directly: no tag object, nothing that could be signed.
    Lightweight,
    /// Signed, but by a key the trusted set does not list. `key` is `None` when its
    /// fingerprint could not be read (an OpenPGP signature where gpg is not installed).
    UnknownKey { format: Format, key: Option<Key> },
    /// The signature does not match the signed bytes (the object was changed after signing)
    /// or cannot be read.
    BadSignature { key: Option<Key>, detail: String },
    /// The key (or the signature) had expired, or the allowed_signers line's `valid-before`
    /// had passed at the signing time.
    ExpiredKey {
        key: Key,
        identity: Option<String>,
        detail: String,
    },
    /// The OpenPGP key carries a revocation.
    RevokedKey { key: Key, identity: Option<String> },
    /// The key is listed, but not for this use: a `namespaces=` option excluding `git`, a
    /// signature made in another namespace, a `valid-after` still in the future, no principal.
    NotAllowed {
        key: Key,
        identity: Option<String>,
        detail: String,
    },
    /// A signed tag object re-pointed under another ref name: the name inside the tag object
    /// (which the signature covers) differs from the ref that was asked for.
    NameMismatch { signed_name: String },
    /// A signature format a trust policy cannot list (X.509/gpgsm).
    UnsupportedFormat { format: Format },
}

impl Verdict {
    pub fn is_good(&self) -> bool {
        matches!(self, Verdict::Good { .. })
    }

    pub fn signer(&self) -> Option<&Signer> {
        match self {
            Verdict::Good { signer } => Some(signer),
            _ => None,
        }
    }

    /// A short stable word for machine output and records: `good`, `unsigned`, `lightweight`,
    /// `unknown-key`, `bad-signature`, `expired-key`, `revoked-key`, `not-allowed`,
    /// `name-mismatch`, `unsupported-format` (the same words as the serialised `verdict`).
    pub fn code(&self) -> &'static str {
        match self {
            Verdict::Good { .. } => "good",
            Verdict::Unsigned => "unsigned",
            Verdict::Lightweight => "lightweight",
            Verdict::UnknownKey { .. } => "unknown-key",
            Verdict::BadSignature { .. } => "bad-signature",
            Verdict::ExpiredKey { .. } => "expired-key",
            Verdict::RevokedKey { .. } => "revoked-key",
            Verdict::NotAllowed { .. } => "not-allowed",
            Verdict::NameMismatch { .. } => "name-mismatch",
            Verdict::UnsupportedFormat { .. } => "unsupported-format",
        }
    }
}

fn by(identity: &Option<String>) -> String {
    identity
        .as_ref()
        .map(|i| format!(" by {i}"))
        .unwrap_or_default()
}

impl fmt::Display for Verdict {
    /// The reason, without the subject: `not signed`, `signed by an unknown SSH key ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Good { signer } => write!(
                f,
                "good {} signature by {signer}",
                signer.key.format.label()
            ),
            Verdict::Unsigned => f.write_str("not signed"),
            Verdict::Lightweight => {
                f.write_str("not signed: a lightweight tag, which has no tag object to sign")
            }
            Verdict::UnknownKey { format, key } => match key {
                Some(key) => write!(f, "signed by an unknown key ({} {key})", format.label()),
                None => write!(f, "signed by an unknown {} key", format.label()),
            },
            Verdict::BadSignature { key, detail } => match key {
                Some(key) => write!(f, "bad signature from {key}: {detail}"),
                None => write!(f, "bad signature: {detail}"),
            },
            Verdict::ExpiredKey {
                key,
                identity,
                detail,
            } => write!(f, "signed{} with an expired {key} ({detail})", by(identity)),
            Verdict::RevokedKey { key, identity } => {
                write!(f, "signed{} with a revoked {key}", by(identity))
            }
            Verdict::NotAllowed {
                key,
                identity,
                detail,
            } => write!(
                f,
                "signed{} with {key}, which is not allowed: {detail}",
                by(identity)
            ),
            Verdict::NameMismatch { signed_name } => write!(
                f,
                "the signed tag object is named {signed_name:?}: a signed tag re-pushed under \
                 another name"
            ),
            Verdict::UnsupportedFormat { format } => write!(
                f,
                "signed with an {} signature, which a trust policy cannot list",
                format.label()
            ),
        }
    }
}

/// What was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A tag, by name (without `refs/tags/`).
    Tag(String),
    /// The commit a tag points at.
    Commit { id: ObjectId, tag: String },
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Tag(name) => write!(f, "tag {name}"),
            Subject::Commit { id, tag } => {
                write!(f, "commit {} (tag {tag})", id.to_hex_with_len(7))
            }
        }
    }
}

/// One verdict about one subject; displays as the one-line message a refusal prints:
/// `tag deploy/prod/20250101T000000Z: signed by an unknown SSH key ED25519 key SHA256:...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub subject: Subject,
    pub verdict: Verdict,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh_key() -> Key {
        Key {
            format: Format::Ssh,
            key_type: "ED25519".into(),
            fingerprint: "SHA256:YfPDABgHMxcL5Srnxje+i1q0Y4xEKWGTJaq2rZDGKNE".into(),
        }
    }

    #[test]
    fn every_reason_reads_as_one_line_naming_the_tag() {
        let tag = |verdict| Check {
            subject: Subject::Tag("deploy/prod/20250101T000000Z".into()),
            verdict,
        };
        let cases = [
            (
                Verdict::Good {
                    signer: Signer {
                        identity: "alice@example.com".into(),
                        key: ssh_key(),
                    },
                },
                "good SSH signature by alice@example.com (ED25519 key SHA256:YfPDABgHMxcL5Srnxje+i1q0Y4xEKWGTJaq2rZDGKNE)",
            ),
            (Verdict::Unsigned, "not signed"),
            (
                Verdict::Lightweight,
                "not signed: a lightweight tag, which has no tag object to sign",
            ),
            (
                Verdict::UnknownKey {
                    format: Format::Ssh,
                    key: Some(ssh_key()),
                },
                "signed by an unknown key (SSH ED25519 key SHA256:YfPDABgHMxcL5Srnxje+i1q0Y4xEKWGTJaq2rZDGKNE)",
            ),
            (
                Verdict::UnknownKey {
                    format: Format::OpenPgp,
                    key: None,
                },
                "signed by an unknown OpenPGP key",
            ),
            (
                Verdict::BadSignature {
                    key: Some(ssh_key()),
                    detail: "the signed bytes were changed".into(),
                },
                "bad signature from ED25519 key SHA256:YfPDABgHMxcL5Srnxje+i1q0Y4xEKWGTJaq2rZDGKNE: the signed bytes were changed",
            ),
            (
                Verdict::ExpiredKey {
                    key: ssh_key(),
                    identity: Some("alice@example.com".into()),
                    detail: "valid-before 2020-01-01".into(),
                },
                "signed by alice@example.com with an expired ED25519 key SHA256:YfPDABgHMxcL5Srnxje+i1q0Y4xEKWGTJaq2rZDGKNE (valid-before 2020-01-01)",
            ),
            (
                Verdict::RevokedKey {
                    key: ssh_key(),
                    identity: None,
                },
                "signed with a revoked ED25519 key SHA256:YfPDABgHMxcL5Srnxje+i1q0Y4xEKWGTJaq2rZDGKNE",
            ),
            (
                Verdict::NotAllowed {
                    key: ssh_key(),
                    identity: Some("alice@example.com".into()),
                    detail: "namespaces=\"file\" excludes \"git\"".into(),
                },
                "signed by alice@example.com with ED25519 key SHA256:YfPDABgHMxcL5Srnxje+i1q0Y4xEKWGTJaq2rZDGKNE, which is not allowed: namespaces=\"file\" excludes \"git\"",
            ),
            (
                Verdict::NameMismatch {
                    signed_name: "deploy/staging/1".into(),
                },
                "the signed tag object is named \"deploy/staging/1\": a signed tag re-pushed under another name",
            ),
            (
                Verdict::UnsupportedFormat {
                    format: Format::X509,
                },
                "signed with an X.509 signature, which a trust policy cannot list",
            ),
        ];
        for (verdict, reason) in cases {
            let line = tag(verdict.clone()).to_string();
            assert_eq!(line, format!("tag deploy/prod/20250101T000000Z: {reason}"));
            assert!(!line.contains('\n'));
            let json = serde_json::to_value(&verdict).unwrap();
            assert_eq!(json["verdict"], verdict.code());
            assert_eq!(serde_json::from_value::<Verdict>(json).unwrap(), verdict);
        }
        let commit = Check {
            subject: Subject::Commit {
                id: ObjectId::from_hex(b"876d5d3b33755884e8120fa2da83d655d380f401").unwrap(),
                tag: "deploy/prod/1".into(),
            },
            verdict: Verdict::Unsigned,
        };
        assert_eq!(
            commit.to_string(),
            "commit 876d5d3 (tag deploy/prod/1): not signed"
        );
    }
}
