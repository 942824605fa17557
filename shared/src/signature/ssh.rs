//! SSH signatures (`-----BEGIN SSH SIGNATURE-----`, OpenSSH PROTOCOL.sshsig) checked in Rust,
//! with the verdicts `git tag -v` / `ssh-keygen -Y verify` reach; no ssh-keygen needed.

use ssh_key::public::KeyData;
use ssh_key::{Algorithm, HashAlg, PublicKey, SshSig};

use super::allowed_signers::{AllowedSigners, Entry, GIT_NAMESPACE, Lookup};
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
    let steps = || -> Result<Signer, Verdict> {
        let sig = read(&signed.signature)?;
        let id = key(sig.public_key());
        matches_payload(&sig, &signed.payload, &id)?;
        let identity = listed_principal(signers, &sig, signed_at, &id)?;
        in_git_namespace(&sig, &id, &identity)?;
        Ok(Signer { identity, key: id })
    };
    match steps() {
        Ok(signer) => Verdict::Good { signer },
        Err(refusal) => refusal,
    }
}

fn read(armoured: &[u8]) -> Result<SshSig, Verdict> {
    match SshSig::from_pem(armoured) {
        Ok(sig) if sig.version() == SshSig::VERSION => Ok(sig),
        Ok(sig) => Err(Verdict::BadSignature {
            key: Some(key(sig.public_key())),
            detail: format!("unsupported SSH signature version {}", sig.version()),
        }),
        Err(e) => Err(Verdict::BadSignature {
            key: None,
            detail: format!("not a readable SSH signature ({e})"),
        }),
    }
}

/// The cryptographic check, in the namespace the signature names (checked separately, so a
/// wrong namespace is reported as such rather than as a bad signature).
fn matches_payload(sig: &SshSig, payload: &[u8], id: &Key) -> Result<(), Verdict> {
    let signing_key = PublicKey::from(sig.public_key().clone());
    signing_key
        .verify(sig.namespace(), payload, sig)
        .map_err(|e| Verdict::BadSignature {
            key: Some(id.clone()),
            detail: match e {
                ssh_key::Error::Crypto => {
                    "the signature does not match the signed content (changed after signing?)"
                        .into()
                }
                other => format!("cannot check it: {other}"),
            },
        })
}

/// The principal the allowed_signers file grants this key at the signing time.
fn listed_principal(
    signers: &AllowedSigners,
    sig: &SshSig,
    signed_at: Option<i64>,
    id: &Key,
) -> Result<String, Verdict> {
    let at_line =
        |entry: &Entry, what: String| format!("{}:{}: {what}", signers.source, entry.line);
    let first_principal = |entry: &Entry| entry.principals.first().cloned();
    match signers.lookup(sig.public_key(), signed_at) {
        Lookup::Allowed { principal, .. } => Ok(principal),
        Lookup::Unknown => Err(Verdict::UnknownKey {
            format: Format::Ssh,
            key: Some(id.clone()),
        }),
        Lookup::Expired { entry } => Err(Verdict::ExpiredKey {
            key: id.clone(),
            identity: first_principal(entry),
            detail: at_line(
                entry,
                format!(
                    "valid-before {} precedes the signing time",
                    display_time(entry.valid_before)
                ),
            ),
        }),
        Lookup::NotYetValid { entry } => Err(Verdict::NotAllowed {
            key: id.clone(),
            identity: first_principal(entry),
            detail: at_line(
                entry,
                format!(
                    "valid-after {} follows the signing time",
                    display_time(entry.valid_after)
                ),
            ),
        }),
        Lookup::NamespaceNotAllowed { entry } => Err(Verdict::NotAllowed {
            key: id.clone(),
            identity: first_principal(entry),
            detail: at_line(
                entry,
                format!(
                    "namespaces=\"{}\" does not allow \"{GIT_NAMESPACE}\"",
                    entry.namespaces.as_deref().unwrap_or_default()
                ),
            ),
        }),
        Lookup::NoPrincipal { entry } => Err(Verdict::NotAllowed {
            key: id.clone(),
            identity: None,
            detail: at_line(
                entry,
                format!(
                    "no principal on the line may sign ({})",
                    entry.principals.join(",")
                ),
            ),
        }),
    }
}

/// A signature made for another purpose (`ssh-keygen -Y sign -n file`) is not a git signature.
fn in_git_namespace(sig: &SshSig, id: &Key, identity: &str) -> Result<(), Verdict> {
    if sig.namespace() == GIT_NAMESPACE {
        return Ok(());
    }
    Err(Verdict::NotAllowed {
        key: id.clone(),
        identity: Some(identity.to_string()),
        detail: format!(
            "signed in namespace {:?}, not {GIT_NAMESPACE:?} (not made by git)",
            sig.namespace()
        ),
    })
}

fn display_time(t: Option<jiff::Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_default()
}
