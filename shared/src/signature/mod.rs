//! Signed deploys: which tags and commits are signed, by whom, and whether a set of trusted
//! keys accepts them; and signing a payload the way git does.
//!
//! The signed bytes are cut from the raw objects exactly as git cuts them ([`payload`]), SSH
//! signatures are checked in Rust against OpenSSH `allowed_signers` ([`ssh`],
//! [`allowed_signers`]), OpenPGP signatures with `gpg` against a throw-away keyring
//! ([`gpg`]). Every outcome is one [`Verdict`]; a refusal displays as one line naming the tag
//! (`tag deploy/prod/20250101T000000Z: signed by an unknown key (SSH ED25519 key SHA256:...)`).
//!
//! # Using it
//!
//! Read the tag once, check it, then deploy the commit the decision names (never re-read the
//! ref: it may have moved since the check):
//!
//! ```text
//! let tag = signature::read_tag(&repo.inner, "deploy/prod/20250101T000000Z")?;   // TagRef
//! let keys = policy.trusted_keys("gpg".into());                                  // TrustedKeys
//! let decision = policy.check_tag(&keys, &tag)?;                                 // Decision
//! let decision = decision.require()?;           // Err: exit 1, "tag X: <reason>"
//! load manifests at decision.commit; record decision.signers()
//! ```
//!
//! Call sites (phase 2):
//! - `kubectl gitops trust set -n NS [--ssh-allowed-signers F] [--gpg-keys F] [--mode M]`:
//!   read the files, [`TrustPolicy::from_files`] (validates everything, runs gpg on the keys),
//!   then write ConfigMap [`policy::CONFIGMAP_NAME`] with [`TrustPolicy::to_configmap_data`].
//!   `--mode` parses with `Mode::from_str` ([`Mode::ALL`] for the possible values).
//! - `trust show`: [`TrustPolicy::from_configmap_data`], then `policy.mode`,
//!   [`TrustPolicy::ssh_signers`] (each [`allowed_signers::Entry`] displays as principals, key
//!   type, fingerprint, options) and [`TrustPolicy::gpg_key_list`] ([`gpg::GpgKey`]:
//!   fingerprint, user ids, expired/revoked). `trust clear`: delete the ConfigMap.
//! - `sync` / `revert --to-tag`: when the ConfigMap exists, before any write:
//!   [`read_tag`] → [`TrustPolicy::check_tag`] → [`Decision::require`]; a missing ConfigMap
//!   means no policy. A ConfigMap that does not parse is an error (exit 2), never "no policy".
//!   `--insecure-skip-signature`: skip the check, print a loud warning, record "skipped".
//! - `diff`: the same check; print [`Decision::refusal_message`] as a warning line and go on.
//! - Records / `history` / `status`: store each [`Check`]'s [`Verdict`] (serde: tagged with
//!   `verdict`: `good`, `unsigned`, ...; `Good` carries [`Signer`]: identity (principal or user
//!   id), key type, fingerprint), or "skipped"; [`Verdict::code`] is the short word.
//! - `git deploy tag/promote/rollback --sign`: build the tag payload (gix `Tag` written without
//!   signature), [`SigningSetup::from_git_config`] → [`SigningSetup::sign`] →
//!   [`signed_tag`] → write the raw bytes as a tag object. [`SigningSetup::describe`] for
//!   `--dry-run`. Replaces the writer's own gpg call (same gpg command line).
//! - `git deploy show`: [`read_tag`] → [`git_config::verify_tag`] → print the [`Check`]
//!   (its verdict's `code()` and signer). An unset `gpg.ssh.allowedSignersFile` with an SSH
//!   signature is an `Err` (show it as "cannot check: ..."), as git refuses to check.
//! - `git deploy promote --verify-source` / `deploy.verifySource`: the same
//!   [`git_config::verify_tag`] on the source tag; not good → `Error::refused(check)`, exit 1,
//!   before anything is written.
//!
//! # Semantics worth knowing
//!
//! - Verdicts agree with `git tag -v` / `git verify-commit` given the same allowed_signers
//!   file or keys; the integration tests check each case against git. Two deliberate
//!   differences: a good signature on a tag object whose recorded name differs from the ref
//!   is refused ([`Verdict::NameMismatch`]: otherwise a signed staging tag could be re-pushed
//!   as a production tag), and OpenPGP signature blocks other than detached signatures are
//!   refused.
//! - SSH key validity (`valid-after`/`valid-before`) is judged at the object's tagger or
//!   committer date, as git does (`-Overify-time`).
//! - A policy's GPG keys are all trusted (`--trust-model always`); the user's trust database
//!   plays no part. Expired and revoked keys are refused with their own reasons.
//! - `cert-authority` lines in allowed_signers are refused with an error naming the line.

pub mod allowed_signers;
pub mod git_config;
pub mod gpg;
pub mod payload;
pub mod policy;
pub mod sign;
pub mod ssh;
pub mod trust;
pub mod verdict;

pub use payload::{
    Format, ObjectKind, SignedObject, SignedPayload, TagRef, TagTarget, read_commit, read_tag,
    read_tag_at, read_tag_object,
};
pub use policy::TrustPolicy;
pub use sign::{SigningSetup, signed_commit, signed_tag};
pub use trust::{Decision, Mode, TrustedKeys};
pub use verdict::{Check, Key, Signer, Subject, Verdict};
