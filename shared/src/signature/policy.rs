//! A namespace's trust policy: the ConfigMap `kubectl-gitops-trust`, whose `data` holds the
//! mode and the trusted keys in git's own file formats, so the files a team already keeps for
//! `gpg.ssh.allowedSignersFile` and `gpg --export` are the policy, verbatim.
//!
//! ```text
//! data:
//!   mode: tag                  # tag | commit | tag-and-commit (absent: tag)
//!   allowed_signers: |         # OpenSSH allowed_signers (optional)
//!     alice@example.com namespaces="git" ssh-ed25519 AAAA...
//!   gpg_keys: |                # ASCII-armoured OpenPGP public keys (optional)
//!     -----BEGIN PGP PUBLIC KEY BLOCK-----
//!     ...
//! ```
//! At least one of `allowed_signers` and `gpg_keys` is present. Any other key is an error, so
//! a policy written by a newer version is never half-applied by an older one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::allowed_signers::{AllowedSigners, Entry};
use super::gpg::{GpgKey, Keyring};
use super::payload::TagRef;
use super::trust::{Decision, Mode, TrustedKeys};
use crate::error::{Error, Result};

/// The ConfigMap's name in the namespace it protects.
pub const CONFIGMAP_NAME: &str = "kubectl-gitops-trust";
/// `data` key: `tag`, `commit` or `tag-and-commit`.
pub const KEY_MODE: &str = "mode";
/// `data` key: an OpenSSH allowed_signers file.
pub const KEY_ALLOWED_SIGNERS: &str = "allowed_signers";
/// `data` key: ASCII-armoured OpenPGP public keys.
pub const KEY_GPG_KEYS: &str = "gpg_keys";

#[derive(Debug, Clone)]
pub struct TrustPolicy {
    pub mode: Mode,
    allowed_signers: Option<String>,
    gpg_keys: Option<String>,
    signers: AllowedSigners,
    gpg_source: String,
}

impl TrustPolicy {
    /// `trust set`: builds a policy from the user's files and checks all of it before anything
    /// is written: the allowed_signers file parses (errors name `signers.0` and the line), the
    /// GPG keys are public keys gpg imports (this runs `gpg_program` in a throw-away home).
    /// Each pair is (what to call it in errors, usually the file path; its text).
    pub fn from_files(
        mode: Mode,
        allowed_signers: Option<(&str, String)>,
        gpg_keys: Option<(&str, String)>,
        gpg_program: &Path,
    ) -> Result<TrustPolicy> {
        if allowed_signers.is_none() && gpg_keys.is_none() {
            return Err(Error::invalid(
                "a trust policy needs --ssh-allowed-signers FILE or --gpg-keys FILE (or both)",
            )
            .hint(
                "with no trusted key every deploy would be refused; `trust clear` removes a policy",
            ));
        }
        let signers = match &allowed_signers {
            Some((source, text)) => {
                let signers = AllowedSigners::parse(source, text)?;
                if signers.is_empty() {
                    return Err(Error::invalid(format!("{source}: lists no key"))
                        .hint("each line is `principals [options] keytype base64-key`"));
                }
                signers
            }
            None => empty_signers(),
        };
        if let Some((source, text)) = &gpg_keys {
            Keyring::from_armoured(gpg_program, source, text)?;
        }
        Ok(TrustPolicy {
            mode,
            signers,
            gpg_source: gpg_keys
                .as_ref()
                .map(|(s, _)| s.to_string())
                .unwrap_or_default(),
            allowed_signers: allowed_signers.map(|(_, t)| t),
            gpg_keys: gpg_keys.map(|(_, t)| t),
        })
    }

    /// Reads the ConfigMap's `data`; `label` names the ConfigMap in errors (e.g.
    /// `ConfigMap team-a/kubectl-gitops-trust`). GPG keys are only checked for shape here;
    /// gpg imports them when an OpenPGP signature is first checked.
    pub fn from_configmap_data(
        label: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<TrustPolicy> {
        let fix = "rewrite it with `kubectl gitops trust set`, or remove it with `kubectl gitops trust clear`";
        if let Some(unknown) = data
            .keys()
            .find(|k| ![KEY_MODE, KEY_ALLOWED_SIGNERS, KEY_GPG_KEYS].contains(&k.as_str()))
        {
            return Err(Error::invalid(format!(
                "{label}: unknown data key {unknown:?} (known: {KEY_MODE}, \
                 {KEY_ALLOWED_SIGNERS}, {KEY_GPG_KEYS}); refusing a policy this version cannot \
                 apply in full"
            ))
            .hint(fix));
        }
        let present = |key: &str| data.get(key).filter(|v| !v.trim().is_empty()).cloned();
        let mode = match data.get(KEY_MODE).map(|m| m.trim()) {
            None | Some("") => Mode::default(),
            Some(m) => m.parse().map_err(|e: Error| {
                Error::invalid(format!("{label}: data.{KEY_MODE}: {}", e.message)).hint(fix)
            })?,
        };
        let allowed_signers = present(KEY_ALLOWED_SIGNERS);
        let gpg_keys = present(KEY_GPG_KEYS);
        if allowed_signers.is_none() && gpg_keys.is_none() {
            return Err(Error::invalid(format!(
                "{label}: lists no key (neither data.{KEY_ALLOWED_SIGNERS} nor data.{KEY_GPG_KEYS})"
            ))
            .hint(fix));
        }
        let signers = match &allowed_signers {
            Some(text) => {
                AllowedSigners::parse(&format!("{label} data.{KEY_ALLOWED_SIGNERS}"), text)
                    .map_err(|e| match e.hint {
                        Some(_) => e,
                        None => e.hint(fix),
                    })?
            }
            None => empty_signers(),
        };
        let gpg_source = format!("{label} data.{KEY_GPG_KEYS}");
        if let Some(text) = &gpg_keys
            && !text.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----")
        {
            return Err(Error::invalid(format!(
                "{gpg_source}: no ASCII-armoured OpenPGP public key"
            ))
            .hint(fix));
        }
        Ok(TrustPolicy {
            mode,
            allowed_signers,
            gpg_keys,
            signers,
            gpg_source,
        })
    }

    /// The ConfigMap `data` for this policy (the inverse of [`Self::from_configmap_data`]).
    pub fn to_configmap_data(&self) -> BTreeMap<String, String> {
        let mut data = BTreeMap::new();
        data.insert(KEY_MODE.to_string(), self.mode.to_string());
        if let Some(text) = &self.allowed_signers {
            data.insert(KEY_ALLOWED_SIGNERS.to_string(), text.clone());
        }
        if let Some(text) = &self.gpg_keys {
            data.insert(KEY_GPG_KEYS.to_string(), text.clone());
        }
        data
    }

    /// The allowed_signers text as set.
    pub fn allowed_signers_text(&self) -> Option<&str> {
        self.allowed_signers.as_deref()
    }

    /// The armoured GPG keys as set.
    pub fn gpg_keys_text(&self) -> Option<&str> {
        self.gpg_keys.as_deref()
    }

    /// The SSH signers, one per allowed_signers line (display: principals, type, fingerprint,
    /// options; never key material).
    pub fn ssh_signers(&self) -> &[Entry] {
        &self.signers.entries
    }

    /// The OpenPGP keys as gpg reads them (fingerprint, user ids, expired/revoked), for
    /// `trust show`. Runs gpg in a throw-away home.
    pub fn gpg_key_list(&self, gpg_program: &Path) -> Result<Vec<GpgKey>> {
        match &self.gpg_keys {
            Some(text) => Ok(Keyring::from_armoured(gpg_program, &self.gpg_source, text)?
                .keys()
                .to_vec()),
            None => Ok(Vec::new()),
        }
    }

    /// The keys this policy trusts, ready to check tags; build once per command.
    pub fn trusted_keys(&self, gpg_program: PathBuf) -> TrustedKeys {
        TrustedKeys::new(
            self.signers.clone(),
            self.gpg_keys
                .clone()
                .map(|text| (self.gpg_source.clone(), text)),
            gpg_program,
        )
    }

    /// Checks `tag` under this policy's mode.
    pub fn check_tag(&self, keys: &TrustedKeys, tag: &TagRef) -> Result<Decision> {
        keys.check_tag(tag, self.mode)
    }
}

fn empty_signers() -> AllowedSigners {
    AllowedSigners {
        source: String::new(),
        entries: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL: &str = "ConfigMap team-a/kubectl-gitops-trust";
    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPYRJ08yQd0UL8CY053ysWzf5ap17D9gAEcAzHc740bI";

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn configmap_data_round_trips_and_mode_defaults_to_tag() {
        let signers = format!("alice@example.com {ED}\n");
        let policy =
            TrustPolicy::from_configmap_data(LABEL, &data(&[(KEY_ALLOWED_SIGNERS, &signers)]))
                .unwrap();
        assert_eq!(policy.mode, Mode::Tag);
        assert_eq!(policy.ssh_signers().len(), 1);
        let written = policy.to_configmap_data();
        assert_eq!(
            written,
            data(&[(KEY_MODE, "tag"), (KEY_ALLOWED_SIGNERS, &signers)])
        );
        let again = TrustPolicy::from_configmap_data(LABEL, &written).unwrap();
        assert_eq!(again.to_configmap_data(), written);
        for mode in Mode::ALL {
            let d = data(&[(KEY_MODE, mode.as_str()), (KEY_ALLOWED_SIGNERS, &signers)]);
            assert_eq!(
                TrustPolicy::from_configmap_data(LABEL, &d).unwrap().mode,
                mode
            );
        }
    }

    #[test]
    fn bad_configmap_data_is_refused_naming_the_key() {
        let signers = format!("alice@example.com {ED}\n");
        let cases = [
            (
                data(&[(KEY_ALLOWED_SIGNERS, &signers), ("allowedSigners", "x")]),
                "ConfigMap team-a/kubectl-gitops-trust: unknown data key \"allowedSigners\"",
            ),
            (
                data(&[(KEY_MODE, "HEAD"), (KEY_ALLOWED_SIGNERS, &signers)]),
                "ConfigMap team-a/kubectl-gitops-trust: data.mode: unknown signature mode \"HEAD\"",
            ),
            (
                data(&[(KEY_MODE, "tag"), (KEY_ALLOWED_SIGNERS, " \n")]),
                "ConfigMap team-a/kubectl-gitops-trust: lists no key",
            ),
            (
                data(&[(KEY_ALLOWED_SIGNERS, "# one\nalice@example.com\n")]),
                "ConfigMap team-a/kubectl-gitops-trust data.allowed_signers:2: missing key",
            ),
            (
                data(&[(KEY_GPG_KEYS, "not a key")]),
                "ConfigMap team-a/kubectl-gitops-trust data.gpg_keys: no ASCII-armoured",
            ),
        ];
        for (d, expected) in cases {
            let err = TrustPolicy::from_configmap_data(LABEL, &d).unwrap_err();
            assert!(err.message.starts_with(expected), "{err}");
            assert_eq!(err.exit_code(), 2);
            assert!(err.hint.is_some(), "{err}");
        }
    }

    #[test]
    fn files_are_checked_before_a_policy_exists() {
        let gpg = Path::new("gpg");
        let err = TrustPolicy::from_files(Mode::Tag, None, None, gpg).unwrap_err();
        assert!(
            err.message
                .contains("--ssh-allowed-signers FILE or --gpg-keys FILE")
        );
        let err = TrustPolicy::from_files(
            Mode::Tag,
            Some(("team.allowed_signers", "# nobody\n".into())),
            None,
            gpg,
        )
        .unwrap_err();
        assert_eq!(err.message, "team.allowed_signers: lists no key");
        let err = TrustPolicy::from_files(
            Mode::Tag,
            None,
            Some((
                "keys.asc",
                "-----BEGIN PGP PRIVATE KEY BLOCK-----\n...\n".into(),
            )),
            gpg,
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "keys.asc: contains a secret key; a trust policy holds public keys only"
        );
    }
}
