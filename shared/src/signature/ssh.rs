//! SSH signatures (`-----BEGIN SSH SIGNATURE-----`, OpenSSH PROTOCOL.sshsig) checked in Rust,
//! with the verdicts `git tag -v` / `ssh-keygen -Y verify` reach; no ssh-keygen needed.

use ssh_key::public::KeyData;
use ssh_key::{Algorithm, HashAlg, PublicKey, SshSig};

use super::allowed_signers::{AllowedSigners, GIT_NAMESPACE, Lookup};
use super::payload::{Format, SignedPayload};
use super::verdict::{Key, Signer, Verdict};

/// The key type as ssh-keygen prints it (`sshkey_type`): `ED25519`, `RSA`, `ECDSA`, `DSA`,
/// `ED25519-SK`, `ECDSA-SK`.
pub fn key_type(key: &KeyData) -> String {
    match key.algorithm() {
        Algorithm::Ed25519 => "ED25519".into(),
        Algorithm::Rsa { .. } => "RSA".into(),
        Algorithm::Ecdsa { .. } => "ECDSA".into(),
        Algorithm::Dsa => "DSA".into(),
        Algorithm::SkEd25519 => "ED25519-SK".into(),
        Algorithm::SkEcdsaSha2NistP256 => "ECDSA-SK".into(),
        other => other.as_str().to_string(),
    }
}

/// `SHA256:<base64>` as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

pub fn key(key: &KeyData) -> Key {
    Key {
        format: Format::Ssh,
        key_type: key_type(key),
        fingerprint: fingerprint(key),
    }
}

/// Checks an SSH signature over `signed.payload` against `signers`, at `signed_at` (the
/// object's tagger/committer date, which git gives ssh-keygen as `-Overify-time`).
///
/// Order of the checks, so each refusal names the most useful reason: readable signature →
/// signature matches the bytes (else *bad signature*) → key listed (else *unknown key*) →
/// line valid at the signing time (else *expired* / *not allowed*) → signature made in the
/// `git` namespace and the line allows `git` (else *not allowed*).
pub fn verify(signed: &SignedPayload, signers: &AllowedSigners, signed_at: Option<i64>) -> Verdict {
    let sig = match SshSig::from_pem(&signed.signature) {
        Ok(sig) if sig.version() == SshSig::VERSION => sig,
        Ok(sig) => {
            return Verdict::BadSignature {
                key: Some(key(sig.public_key())),
                detail: format!("unsupported SSH signature version {}", sig.version()),
            };
        }
        Err(e) => {
            return Verdict::BadSignature {
                key: None,
                detail: format!("not a readable SSH signature ({e})"),
            };
        }
    };
    let signing_key = sig.public_key();
    let id = key(signing_key);
    if let Err(e) =
        PublicKey::from(signing_key.clone()).verify(sig.namespace(), &signed.payload, &sig)
    {
        let detail = match e {
            ssh_key::Error::Crypto => {
                "the signature does not match the signed content (changed after signing?)".into()
            }
            other => format!("cannot check it: {other}"),
        };
        return Verdict::BadSignature {
            key: Some(id),
            detail,
        };
    }
    let entry = match signers.lookup(signing_key, signed_at) {
        Lookup::Unknown => {
            return Verdict::UnknownKey {
                format: Format::Ssh,
                key: Some(id),
            };
        }
        Lookup::Expired { entry } => {
            return Verdict::ExpiredKey {
                key: id,
                identity: entry.principals.first().cloned(),
                detail: format!(
                    "{}:{}: valid-before {} precedes the signing time",
                    signers.source,
                    entry.line,
                    entry
                        .valid_before
                        .map(|t| t.to_string())
                        .unwrap_or_default()
                ),
            };
        }
        Lookup::NotYetValid { entry } => {
            return Verdict::NotAllowed {
                key: id,
                identity: entry.principals.first().cloned(),
                detail: format!(
                    "{}:{}: valid-after {} follows the signing time",
                    signers.source,
                    entry.line,
                    entry.valid_after.map(|t| t.to_string()).unwrap_or_default()
                ),
            };
        }
        Lookup::NamespaceNotAllowed { entry } => {
            return Verdict::NotAllowed {
                key: id,
                identity: entry.principals.first().cloned(),
                detail: format!(
                    "{}:{}: namespaces=\"{}\" does not allow \"{GIT_NAMESPACE}\"",
                    signers.source,
                    entry.line,
                    entry.namespaces.as_deref().unwrap_or_default()
                ),
            };
        }
        Lookup::NoPrincipal { entry } => {
            return Verdict::NotAllowed {
                key: id,
                identity: None,
                detail: format!(
                    "{}:{}: no principal on the line may sign ({})",
                    signers.source,
                    entry.line,
                    entry.principals.join(",")
                ),
            };
        }
        Lookup::Allowed { entry, principal } => (entry, principal),
    };
    let (_, principal) = entry;
    if sig.namespace() != GIT_NAMESPACE {
        return Verdict::NotAllowed {
            key: id,
            identity: Some(principal),
            detail: format!(
                "signed in namespace {:?}, not {GIT_NAMESPACE:?} (not made by git)",
                sig.namespace()
            ),
        };
    }
    Verdict::Good {
        signer: Signer {
            identity: principal,
            key: id,
        },
    }
}
