//! Signed deploys in the cluster: a namespace's trust policy (the ConfigMap
//! `kubectl-gitops-trust`, format in `shared::signature::policy`), the check that sync and
//! revert run before any write, and what a revision records about it.
//!
//! A [`Gate`] is made before anything is rendered: for a tag, from the tag read once
//! (`source::locate`), judged by the target namespace's policy; for a recorded revision, from
//! what that revision recorded when it was synced. Once the plan is known,
//! [`Gate::check_plan`] holds every other namespace the plan writes into to its own policy.
//! The policy is enforced by kubectl gitops, not by the API server: it keeps a tag nobody
//! trusted from reaching a namespace through kubectl gitops; whoever may write objects
//! directly is stopped by RBAC alone (README: "Signed deploys").

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use gix::ObjectId;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use serde::{Deserialize, Serialize};
use shared::signature::{Decision, Mode, Signer, Subject, TagRef, TrustPolicy};
use shared::{Error, ErrorKind, Result};

use crate::cluster::{api_error, idempotent, status_code};
use crate::plan::{Action, Plan};

pub use shared::signature::policy::CONFIGMAP_NAME;

/// The OpenPGP program policies are checked with (in a throw-away home, never the user's
/// keyring).
pub fn gpg_program() -> PathBuf {
    PathBuf::from("gpg")
}

/// What a revision records about signatures (`signature` in its meta.json).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum SignatureRecord {
    /// Checked against the namespace's policy and trusted: who signed what.
    Verified { mode: Mode, signers: Vec<SignedBy> },
    /// `--insecure-skip-signature`: nothing was checked.
    Skipped,
    /// The namespace had no trust policy.
    NoPolicy,
    /// diff only, never recorded (sync refuses instead): the policy does not accept the tag,
    /// or its signature could not be checked.
    Unverified { reason: String },
}

/// One good signature: on the tag object or on the commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBy {
    /// `tag` or `commit`.
    pub subject: String,
    #[serde(flatten)]
    pub signer: Signer,
}

impl SignatureRecord {
    fn verified(decision: &Decision) -> SignatureRecord {
        SignatureRecord::Verified {
            mode: decision.mode,
            signers: decision
                .checks
                .iter()
                .filter_map(|c| {
                    let subject = match c.subject {
                        Subject::Tag(_) => "tag",
                        Subject::Commit { .. } => "commit",
                    };
                    c.verdict.signer().map(|s| SignedBy {
                        subject: subject.into(),
                        signer: s.clone(),
                    })
                })
                .collect(),
        }
    }

    /// Who signed, for a table cell: `alice@example.com`, `skipped`, `no policy`.
    pub fn short(&self) -> String {
        match self {
            SignatureRecord::Verified { signers, .. } => {
                let mut who: Vec<&str> =
                    signers.iter().map(|s| s.signer.identity.as_str()).collect();
                who.dedup();
                who.join(", ")
            }
            SignatureRecord::Skipped => "skipped".into(),
            SignatureRecord::NoPolicy => "no policy".into(),
            SignatureRecord::Unverified { .. } => "unverified".into(),
        }
    }
}

impl fmt::Display for SignatureRecord {
    /// `verified (mode tag): tag signed by alice@example.com (ED25519 key SHA256:...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureRecord::Verified { mode, signers } => {
                let by: Vec<String> = signers
                    .iter()
                    .map(|s| {
                        format!(
                            "{} signed by {} ({} {})",
                            s.subject,
                            s.signer.identity,
                            s.signer.key.format.label(),
                            s.signer.key
                        )
                    })
                    .collect();
                write!(f, "verified (mode {mode}): {}", by.join("; "))
            }
            SignatureRecord::Skipped => {
                f.write_str("not checked (--insecure-skip-signature was given)")
            }
            SignatureRecord::NoPolicy => {
                f.write_str("not checked (the namespace had no trust policy)")
            }
            SignatureRecord::Unverified { reason } => write!(f, "not trusted: {reason}"),
        }
    }
}

/// How a command treats a signature the policy does not accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforce {
    /// sync, revert: refuse (exit 1) before any write.
    Require,
    /// diff: a warning line, and go on.
    Warn,
    /// `--insecure-skip-signature`: check nothing, say so loudly, record it.
    Skip,
}

impl Enforce {
    pub fn for_apply(insecure_skip_signature: bool) -> Enforce {
        if insecure_skip_signature {
            Enforce::Skip
        } else {
            Enforce::Require
        }
    }
}

/// The namespace's policy; `None` when it has none. A ConfigMap that does not parse is an
/// error (exit 2), never "no policy"; one that cannot be read (RBAC) is an error too.
pub async fn read_policy(client: &kube::Client, ns: &str) -> Result<Option<TrustPolicy>> {
    let label = format!("ConfigMap {ns}/{CONFIGMAP_NAME}");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = match idempotent(|| api.get_opt(CONFIGMAP_NAME)).await {
        Ok(cm) => cm,
        Err(e) => {
            let forbidden = status_code(&e) == Some(403);
            let err = api_error(format!("reading the trust policy ({label})"), e);
            return Err(if forbidden {
                err.hint(format!(
                    "whoever syncs must be able to read the namespace's trust policy: grant \
                     `get` on configmaps/{CONFIGMAP_NAME} in {ns} (README: signed deploys)"
                ))
            } else {
                err
            });
        }
    };
    let Some(cm) = cm else {
        return Ok(None);
    };
    if cm.binary_data.as_ref().is_some_and(|b| !b.is_empty()) {
        return Err(Error::invalid(format!(
            "{label}: has binaryData, which a trust policy never holds; refusing a policy this \
             version cannot apply in full"
        ))
        .hint("rewrite it with `kubectl gitops trust set`, or remove it with `kubectl gitops trust clear`"));
    }
    TrustPolicy::from_configmap_data(&label, &cm.data.unwrap_or_default()).map(Some)
}

/// `policy` applied to `tag`; gpg may run, so off the async workers.
async fn decide(policy: &TrustPolicy, tag: &TagRef) -> Result<Decision> {
    let policy = policy.clone();
    let tag = tag.clone();
    tokio::task::spawn_blocking(move || {
        let keys = policy.trusted_keys(gpg_program());
        policy.check_tag(&keys, &tag)
    })
    .await
    .map_err(|e| Error::refused(format!("checking the signature: {e}")))?
}

/// What a deploy's trust rests on.
enum Evidence {
    /// A tag, read once; its signatures can be checked against any policy.
    Tag(TagRef),
    /// A recorded revision: what it recorded when it was synced.
    Revision {
        describe: String,
        tag: String,
        recorded: Option<SignatureRecord>,
    },
}

/// The signature check of one sync, revert or diff: made before anything is rendered, kept
/// until the plan is known.
pub struct Gate {
    evidence: Evidence,
    enforce: Enforce,
    target: String,
    /// What the revision will record.
    pub record: SignatureRecord,
}

impl Gate {
    /// Checks `tag` against namespace `ns`'s policy. With [`Enforce::Require`], a tag the
    /// policy does not accept is refused (exit 1) naming the tag and the reason.
    pub async fn for_tag(
        client: &kube::Client,
        ns: &str,
        tag: TagRef,
        enforce: Enforce,
    ) -> Result<Gate> {
        let record = match enforce {
            Enforce::Skip => {
                warn_skipped(client, ns, &format!("tag {}", tag.name)).await;
                SignatureRecord::Skipped
            }
            Enforce::Require | Enforce::Warn => judge_tag(client, ns, &tag, enforce).await?,
        };
        Ok(Gate {
            evidence: Evidence::Tag(tag),
            enforce,
            target: ns.to_string(),
            record,
        })
    }

    /// Reverting to recorded revision `revision` of `ns`: its manifests come from the record,
    /// so no signature can be checked now. Under a policy it is allowed when the revision was
    /// verified when it was synced, by keys the policy still lists, for every signature the
    /// policy's mode needs; otherwise refused unless `--insecure-skip-signature`.
    pub async fn for_revision(
        client: &kube::Client,
        ns: &str,
        revision: u64,
        tag: &str,
        recorded: Option<SignatureRecord>,
        enforce: Enforce,
    ) -> Result<Gate> {
        let describe = format!("revision {revision} (tag {tag})");
        let mut gate = Gate {
            evidence: Evidence::Revision {
                describe: describe.clone(),
                tag: tag.to_string(),
                recorded,
            },
            enforce,
            target: ns.to_string(),
            record: SignatureRecord::NoPolicy,
        };
        if enforce == Enforce::Skip {
            warn_skipped(client, ns, &describe).await;
            gate.record = SignatureRecord::Skipped;
            return Ok(gate);
        }
        if let Some(policy) = read_policy(client, ns).await? {
            gate.record = gate.revision_under(ns, &policy)?;
        }
        Ok(gate)
    }

    /// What is deployed must be what was signed: `--set` values come from the command line,
    /// in no signed object, so a namespace with a policy refuses them (exit 1; diff: a warning
    /// line). `--values` files are read from the checked commit and need no check.
    pub fn check_command_line_values(&self, set: &[String]) -> Result<()> {
        let Some(first) = set.first() else {
            return Ok(());
        };
        if !matches!(
            self.record,
            SignatureRecord::Verified { .. } | SignatureRecord::Unverified { .. }
        ) {
            return Ok(());
        }
        let ns = &self.target;
        let message = format!(
            "--set {first}: namespace {ns} has a trust policy, which covers what is signed in \
             git, and --set values are not"
        );
        if self.enforce == Enforce::Warn {
            crate::log::warn(format!("{message} (sync would refuse them)"));
            return Ok(());
        }
        Err(Error::refused(format!("{message}; nothing was written")).hint(
            "commit the values in a values file (--values FILE reads it from the tag's tree, or \
             the environment's helm: block) and sign the tag; --insecure-skip-signature applies \
             them unchecked (recorded as skipped)",
        ))
    }

    /// The commit whose manifests may be loaded: the one the tag pointed at when it was read
    /// and checked.
    pub fn commit(&self) -> Option<ObjectId> {
        match &self.evidence {
            Evidence::Tag(tag) => Some(tag.commit.id),
            Evidence::Revision { .. } => None,
        }
    }

    /// Every namespace other than the target that the plan writes into is held to its own
    /// policy too (objects there need `--allow-other-namespaces`); before any write.
    pub async fn check_plan(&self, client: &kube::Client, plan: &Plan) -> Result<()> {
        if self.enforce == Enforce::Skip {
            return Ok(());
        }
        let others: BTreeSet<&str> = plan
            .items
            .iter()
            .filter(|i| {
                matches!(
                    i.action,
                    Action::Create | Action::Update | Action::Unchanged | Action::Prune
                )
            })
            .filter_map(|i| i.key.namespace.as_deref())
            .filter(|ns| *ns != self.target)
            .collect();
        for ns in others {
            match &self.evidence {
                Evidence::Tag(tag) => {
                    judge_tag(client, ns, tag, self.enforce).await?;
                }
                Evidence::Revision { .. } => {
                    if let Some(policy) = read_policy(client, ns).await? {
                        self.revision_under(ns, &policy)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A recorded revision judged by `policy` (of namespace `ns`); the record to keep.
    fn revision_under(&self, ns: &str, policy: &TrustPolicy) -> Result<SignatureRecord> {
        let Evidence::Revision {
            describe,
            tag,
            recorded,
        } = &self.evidence
        else {
            unreachable!("only revisions are judged by their record");
        };
        let refuse = |why: String| {
            Error::refused(format!(
                "{describe}: {why}; namespace {ns} has a trust policy, and a revision's \
                 manifests come from its record, where no signature can be checked"
            ))
            .hint(format!(
                "`kubectl gitops revert --to-tag {tag}` checks the tag's signature now; \
                 --insecure-skip-signature reverts anyway (recorded as skipped)"
            ))
        };
        let Some(SignatureRecord::Verified { mode, signers }) = recorded else {
            let why = match recorded {
                Some(SignatureRecord::Skipped) => {
                    "it was synced with --insecure-skip-signature".to_string()
                }
                Some(SignatureRecord::NoPolicy) => {
                    "it was synced while the namespace had no trust policy".to_string()
                }
                _ => "it records no signature check".to_string(),
            };
            return Err(refuse(why));
        };
        let listed = listed_fingerprints(policy)?;
        let mut needed = Vec::new();
        if matches!(policy.mode, Mode::Tag | Mode::TagAndCommit) {
            needed.push("tag");
        }
        if matches!(policy.mode, Mode::Commit | Mode::TagAndCommit) {
            needed.push("commit");
        }
        for subject in needed {
            let Some(by) = signers.iter().find(|s| s.subject == subject) else {
                return Err(refuse(format!(
                    "it was verified in mode {mode}, which did not check the {subject}'s \
                     signature that mode {} needs",
                    policy.mode
                )));
            };
            let fingerprint = &by.signer.key.fingerprint;
            if !listed.iter().any(|l| same_key(l, fingerprint)) {
                return Err(refuse(format!(
                    "its {subject} was signed by {}, whose key the policy no longer lists",
                    by.signer
                )));
            }
        }
        Ok(SignatureRecord::Verified {
            mode: *mode,
            signers: signers.clone(),
        })
    }
}

/// SSH fingerprints as `SHA256:...`; OpenPGP primary fingerprints of keys not revoked.
fn listed_fingerprints(policy: &TrustPolicy) -> Result<Vec<String>> {
    let mut out: Vec<String> = policy
        .ssh_signers()
        .iter()
        .map(|e| shared::signature::ssh::fingerprint(e.key.key_data()))
        .collect();
    if policy.gpg_keys_text().is_some() {
        out.extend(
            policy
                .gpg_key_list(&gpg_program())?
                .into_iter()
                .filter(|k| !k.revoked)
                .map(|k| k.fingerprint),
        );
    }
    Ok(out)
}

/// A recorded OpenPGP fingerprint may be a 16-digit key id when gpg could not tell more.
fn same_key(listed: &str, recorded: &str) -> bool {
    listed == recorded || (recorded.len() == 16 && listed.ends_with(recorded))
}

/// `tag` under `ns`'s policy. A refusal is an error (Require) or a warning line and an
/// `Unverified` record (Warn).
async fn judge_tag(
    client: &kube::Client,
    ns: &str,
    tag: &TagRef,
    enforce: Enforce,
) -> Result<SignatureRecord> {
    let warn = enforce == Enforce::Warn;
    let policy = match read_policy(client, ns).await {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(SignatureRecord::NoPolicy),
        // diff still diffs when the policy cannot be read (say, forbidden); a broken policy
        // stays an error, and so does a server that does not answer: the diff would only wait
        // for it again.
        Err(e) if warn && e.kind != ErrorKind::Invalid && !crate::cluster::is_transient(&e) => {
            let reason = format!("{}; the tag's signature was not checked", e.message);
            crate::log::warn(&reason);
            return Ok(SignatureRecord::Unverified { reason });
        }
        Err(e) => return Err(e),
    };
    let decision = match decide(&policy, tag).await {
        Ok(d) => d,
        Err(e) if warn => {
            let reason = format!(
                "cannot check the signature of tag {}: {}",
                tag.name, e.message
            );
            crate::log::warn(&reason);
            return Ok(SignatureRecord::Unverified { reason });
        }
        Err(e) => return Err(e),
    };
    match decision.refusal_message() {
        None => {
            let record = SignatureRecord::verified(&decision);
            crate::log::info(1, format!("namespace {ns}: {record}"));
            Ok(record)
        }
        Some(message) if warn => {
            crate::log::warn(format!(
                "{message} (namespace {ns} has a trust policy: sync would refuse this tag)"
            ));
            Ok(SignatureRecord::Unverified { reason: message })
        }
        Some(message) => {
            let how = if decision
                .refusals()
                .any(|c| matches!(c.subject, Subject::Commit { .. }))
            {
                "sign the commit (`git commit -S`)"
            } else {
                "sign the tag (`git deploy tag --sign`, `git tag -s`)"
            };
            Err(Error::refused(format!(
                "{message}; namespace {ns}'s trust policy refuses it, nothing was written"
            ))
            .hint(format!(
                "{how} with a key the policy lists (`kubectl gitops trust show -n {ns}`)"
            )))
        }
    }
}

/// The loud part of `--insecure-skip-signature`.
async fn warn_skipped(client: &kube::Client, ns: &str, what: &str) {
    let policy = match read_policy(client, ns).await {
        Ok(Some(_)) => format!("namespace {ns}'s trust policy is NOT applied"),
        Ok(None) => format!("namespace {ns} has no trust policy"),
        Err(_) => format!("namespace {ns}'s trust policy could not be read and is NOT applied"),
    };
    crate::log::warn(format!(
        "--insecure-skip-signature: the signature of {what} is NOT checked; {policy}; \
         the revision records that the check was skipped"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::signature::{Format, Key};

    fn signer(identity: &str) -> Signer {
        Signer {
            identity: identity.into(),
            key: Key {
                format: Format::Ssh,
                key_type: "ED25519".into(),
                fingerprint: "SHA256:YfPDABgHMxcL5Srnxje+i1q0Y4xEKWGTJaq2rZDGKNE".into(),
            },
        }
    }

    #[test]
    fn records_serialise_with_a_status_word() {
        let verified = SignatureRecord::Verified {
            mode: Mode::Tag,
            signers: vec![SignedBy {
                subject: "tag".into(),
                signer: signer("alice@example.com"),
            }],
        };
        let json = serde_json::to_value(&verified).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"status": "verified", "mode": "tag", "signers": [{
                "subject": "tag", "identity": "alice@example.com",
                "key": {"format": "ssh", "type": "ED25519",
                        "fingerprint": "SHA256:YfPDABgHMxcL5Srnxje+i1q0Y4xEKWGTJaq2rZDGKNE"}}]})
        );
        assert_eq!(
            serde_json::from_value::<SignatureRecord>(json).unwrap(),
            verified
        );
        for (r, word) in [
            (SignatureRecord::Skipped, "skipped"),
            (SignatureRecord::NoPolicy, "no-policy"),
        ] {
            let json = serde_json::to_value(&r).unwrap();
            assert_eq!(json, serde_json::json!({ "status": word }));
        }
        assert_eq!(
            verified.to_string(),
            "verified (mode tag): tag signed by alice@example.com (SSH ED25519 key \
             SHA256:YfPDABgHMxcL5Srnxje+i1q0Y4xEKWGTJaq2rZDGKNE)"
        );
        assert_eq!(verified.short(), "alice@example.com");
    }

    #[test]
    fn openpgp_key_ids_match_their_fingerprint() {
        let fpr = "0123456789ABCDEF0123456789ABCDEF01234567";
        assert!(same_key(fpr, fpr));
        assert!(same_key(fpr, "89ABCDEF01234567"));
        assert!(!same_key(fpr, "0123456789ABCDEF"));
        assert!(!same_key(fpr, "SHA256:x"));
    }
}
