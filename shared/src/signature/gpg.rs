//! OpenPGP signatures checked with `gpg`, read through its machine interface (`--status-fd`,
//! doc/DETAILS in GnuPG) rather than its human messages.
//!
//! A trust policy's keys go into a [`Keyring`]: a throw-away GNUPGHOME in a temporary
//! directory, created for the check and deleted after it, so neither the user's keyring nor
//! its trust settings take part. No network: no keyserver is configured, dirmngr and the agent
//! are never started, keys are never fetched.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::payload::{Format, SignedPayload};
use super::verdict::{Key, Signer, Verdict};
use crate::error::{Error, Result};

/// Options for every gpg run: no tty, no agent or dirmngr started, nothing fetched.
const OFFLINE: [&str; 6] = [
    "--batch",
    "--no-tty",
    "--no-autostart",
    "--disable-dirmngr",
    "--no-auto-key-retrieve",
    "--no-auto-key-locate",
];

/// A public key in a keyring, as `trust show` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GpgKey {
    /// The primary key's fingerprint, upper-case hex.
    pub fingerprint: String,
    #[serde(rename = "type")]
    pub key_type: String,
    pub user_ids: Vec<String>,
    /// Seconds since the epoch; `None`: does not expire.
    pub expires: Option<i64>,
    pub expired: bool,
    pub revoked: bool,
    /// Fingerprints of its subkeys (signatures may be made by one of them).
    pub subkeys: Vec<String>,
}

impl GpgKey {
    fn matches(&self, key_id_or_fpr: &str) -> bool {
        let id = key_id_or_fpr.to_ascii_uppercase();
        std::iter::once(&self.fingerprint)
            .chain(&self.subkeys)
            .any(|fpr| fpr.ends_with(&id))
    }
}

/// A throw-away keyring holding exactly the keys it was built from.
pub struct Keyring {
    program: PathBuf,
    home: tempfile::TempDir,
    keys: Vec<GpgKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("home", &self.home.path())
            .field("keys", &self.keys)
            .finish()
    }
}

impl Keyring {
    /// Imports the ASCII-armoured public keys in `armoured` (what `gpg --armor --export`
    /// writes; several blocks may follow each other). `source` names the text in errors.
    /// Secret keys are refused before gpg sees them.
    pub fn from_armoured(program: &Path, source: &str, armoured: &str) -> Result<Keyring> {
        check_armoured_public_keys(source, armoured)?;
        let keyring = Keyring::empty(program)?;
        let out = keyring.run(&["--status-fd=1", "--import"], Some(armoured.as_bytes()))?;
        let imported = status_lines(&out.stdout)
            .filter(|(keyword, _)| *keyword == "IMPORT_OK")
            .count();
        // A key gpg could not read must not vanish from the policy unnoticed.
        let problem = status_lines(&out.stdout).any(|(keyword, _)| keyword == "IMPORT_PROBLEM");
        if imported == 0 || problem || !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // Keep what went wrong, not gpg's notes on the keys it did import.
            const NOTES: [&str; 6] = [
                "keybox",
                "trustdb",
                "imported",
                "processed",
                "unchanged",
                "gpg-agent",
            ];
            let why: Vec<&str> = stderr
                .lines()
                .filter(|l| !NOTES.iter().any(|n| l.contains(n)))
                .collect();
            return Err(Error::invalid(format!(
                "{source}: gpg could not import every public key in it: {}",
                why.join("; ")
            ))
            .hint("export keys with `gpg --armor --export <fingerprint>`"));
        }
        let mut keyring = keyring;
        keyring.keys = keyring.list()?;
        Ok(keyring)
    }

    /// A keyring with no keys: checking a signature against it still tells who made it.
    pub fn empty(program: &Path) -> Result<Keyring> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("gitops-gpg-");
        // gpg warns about (and distrusts) a home others can read.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
        let home = builder
            .tempdir()
            .map_err(|e| Error::context("creating a temporary GnuPG home", e))?;
        Ok(Keyring {
            program: program.to_path_buf(),
            home,
            keys: Vec::new(),
        })
    }

    pub fn keys(&self) -> &[GpgKey] {
        &self.keys
    }

    /// Checks a detached signature over `signed.payload`; every key in this keyring is
    /// trusted (`--trust-model always`), no other key is known.
    pub fn verify(&self, signed: &SignedPayload) -> Result<Verdict> {
        if let Some(bad) = not_detached(signed) {
            return Ok(bad);
        }
        let sig = write_temp(self.home.path(), &signed.signature)?;
        let sig_path = path_arg(sig.path())?;
        let out = self.run(
            &[
                "--trust-model",
                "always",
                "--status-fd=1",
                "--verify",
                sig_path,
                "-",
            ],
            Some(&signed.payload),
        )?;
        let status = Status::parse(&String::from_utf8_lossy(&out.stdout));
        Ok(status.verdict(&self.keys, None))
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<std::process::Output> {
        let home = path_arg(self.home.path())?;
        let mut all = vec!["--homedir", home, "--no-options"];
        all.extend(OFFLINE);
        all.extend(args);
        run_gpg(&self.program, &all, stdin, &[])
    }

    fn list(&self) -> Result<Vec<GpgKey>> {
        let out = self.run(&["--with-colons", "--fixed-list-mode", "--list-keys"], None)?;
        Ok(parse_colons(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// Checks a signature with the user's own gpg setup (`program` is git's `gpg.program`), as git
/// does for `git tag -v`: the user's keyring and trust database decide. `min_trust` is git's
/// `gpg.minTrustLevel`.
pub fn verify_with_user_keyring(
    program: &Path,
    signed: &SignedPayload,
    min_trust: Option<TrustLevel>,
) -> Result<Verdict> {
    if let Some(bad) = not_detached(signed) {
        return Ok(bad);
    }
    let dir = tempfile::tempdir().map_err(|e| Error::context("creating a temporary file", e))?;
    let sig = write_temp(dir.path(), &signed.signature)?;
    let mut args = OFFLINE.to_vec();
    args.extend(["--status-fd=1", "--verify", path_arg(sig.path())?, "-"]);
    let out = run_gpg(program, &args, Some(&signed.payload), &[])?;
    let status = Status::parse(&String::from_utf8_lossy(&out.stdout));
    Ok(status.verdict(&[], min_trust))
}

/// git hands gpg any block that starts with a PGP armour line; a `PGP MESSAGE` block carries
/// its own signed data, which gpg could verify instead of the payload, so only detached
/// signatures are checked.
fn not_detached(signed: &SignedPayload) -> Option<Verdict> {
    debug_assert_eq!(signed.format, Format::OpenPgp);
    (!signed
        .signature
        .starts_with(b"-----BEGIN PGP SIGNATURE-----"))
    .then(|| Verdict::BadSignature {
        key: None,
        detail: "not a detached OpenPGP signature (-----BEGIN PGP SIGNATURE-----)".into(),
    })
}

fn check_armoured_public_keys(source: &str, text: &str) -> Result<()> {
    if text.contains("PRIVATE KEY BLOCK") {
        return Err(Error::invalid(format!(
            "{source}: contains a secret key; a trust policy holds public keys only"
        ))
        .hint("export the public key with `gpg --armor --export <fingerprint>`"));
    }
    if !text.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
        return Err(Error::invalid(format!(
            "{source}: no ASCII-armoured OpenPGP public key (-----BEGIN PGP PUBLIC KEY BLOCK-----)"
        ))
        .hint("export keys with `gpg --armor --export <fingerprint>`"));
    }
    Ok(())
}

fn path_arg(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| {
        Error::refused(format!(
            "temporary path {} is not valid UTF-8; set TMPDIR to a plain path",
            path.display()
        ))
    })
}

fn write_temp(dir: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile> {
    let mut file = tempfile::Builder::new()
        .prefix("signature-")
        .tempfile_in(dir)
        .map_err(|e| Error::context("creating a temporary file", e))?;
    file.write_all(bytes)
        .map_err(|e| Error::context("writing a temporary file", e))?;
    Ok(file)
}

/// Runs gpg, feeding `stdin` from a thread so a large payload cannot deadlock against gpg's
/// output. A gpg that cannot be started is an error saying what to install.
pub(crate) fn run_gpg(
    program: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, &str)],
) -> Result<std::process::Output> {
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| missing_gpg(program, e))?;
    let input = child.stdin.take();
    std::thread::scope(|scope| {
        if let (Some(mut pipe), Some(bytes)) = (input, stdin) {
            // gpg may stop reading early (a bad armour); its verdict says why, not EPIPE.
            scope.spawn(move || {
                let _ = pipe.write_all(bytes);
            });
        }
        child
            .wait_with_output()
            .map_err(|e| Error::context(format!("running {}", program.display()), e))
    })
}

fn missing_gpg(program: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::refused(format!(
            "{} (GnuPG) is needed to check OpenPGP signatures and was not found",
            program.display()
        ))
        .hint("install GnuPG (Debian/Ubuntu: `apt-get install gnupg`, macOS: `brew install gnupg`)")
    } else {
        Error::context(format!("running {}", program.display()), e)
    }
}

/// `gpg.minTrustLevel` values, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TrustLevel {
    Undefined,
    Never,
    Marginal,
    Fully,
    Ultimate,
}

impl TrustLevel {
    /// git's spelling (`gpg.minTrustLevel`), case-insensitive.
    pub fn parse(text: &str) -> Option<TrustLevel> {
        Some(match text.to_ascii_lowercase().as_str() {
            "undefined" => TrustLevel::Undefined,
            "never" => TrustLevel::Never,
            "marginal" => TrustLevel::Marginal,
            "fully" => TrustLevel::Fully,
            "ultimate" => TrustLevel::Ultimate,
            _ => return None,
        })
    }

    fn from_status(keyword: &str) -> Option<TrustLevel> {
        TrustLevel::parse(keyword.strip_prefix("TRUST_")?)
    }
}

fn status_lines(stdout: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    std::str::from_utf8(stdout)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("[GNUPG:] "))
        .map(|l| l.split_once(' ').unwrap_or((l, "")))
}

/// The status lines that decide a verdict.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Status {
    /// GOODSIG, BADSIG, EXPSIG, EXPKEYSIG, REVKEYSIG, ERRSIG: exactly one per signature.
    outcomes: Vec<(String, Vec<String>)>,
    /// VALIDSIG fields.
    valid: Option<Vec<String>>,
    trust: Option<TrustLevel>,
    key_expired: Option<i64>,
}

impl Status {
    pub(crate) fn parse(text: &str) -> Status {
        let mut status = Status::default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("[GNUPG:] ") else {
                continue;
            };
            let mut words = rest.split(' ');
            let keyword = words.next().unwrap_or_default();
            match keyword {
                "GOODSIG" | "BADSIG" | "EXPSIG" | "EXPKEYSIG" | "REVKEYSIG" => {
                    // `<keyid> <user id with spaces>`
                    let (id, uid) = rest[keyword.len()..]
                        .trim_start()
                        .split_once(' ')
                        .unwrap_or((rest[keyword.len()..].trim(), ""));
                    status
                        .outcomes
                        .push((keyword.into(), vec![id.into(), uid.into()]));
                }
                "ERRSIG" => status
                    .outcomes
                    .push((keyword.into(), words.map(str::to_string).collect())),
                "VALIDSIG" => status.valid = Some(words.map(str::to_string).collect()),
                "KEYEXPIRED" => status.key_expired = words.next().and_then(|t| t.parse().ok()),
                t if t.starts_with("TRUST_") => status.trust = TrustLevel::from_status(t),
                _ => {}
            }
        }
        status
    }

    /// The verdict these lines add up to. `known` are the keyring's keys, to name the key of a
    /// bad signature; `min_trust` is git's `gpg.minTrustLevel` (user keyring only).
    pub(crate) fn verdict(&self, known: &[GpgKey], min_trust: Option<TrustLevel>) -> Verdict {
        let (keyword, fields) = match self.outcomes.as_slice() {
            [] => {
                return Verdict::BadSignature {
                    key: None,
                    detail: "gpg found no readable OpenPGP signature".into(),
                };
            }
            [one] => one,
            _ => {
                return Verdict::BadSignature {
                    key: None,
                    detail: "more than one signature in the block; git accepts exactly one".into(),
                };
            }
        };
        let field = |i: usize| fields.get(i).map(String::as_str).unwrap_or_default();
        let uid = || Some(field(1).to_string()).filter(|u| !u.is_empty());
        let key = self.key(field(0), known);
        match keyword.as_str() {
            "GOODSIG" => {
                if let (Some(min), got) = (min_trust, self.trust.unwrap_or(TrustLevel::Undefined))
                    && got < min
                {
                    return Verdict::NotAllowed {
                        key,
                        identity: uid(),
                        detail: format!(
                            "its trust level {got:?} is below gpg.minTrustLevel {min:?}"
                        ),
                    };
                }
                Verdict::Good {
                    signer: Signer {
                        identity: uid().unwrap_or_else(|| key.fingerprint.clone()),
                        key,
                    },
                }
            }
            "EXPKEYSIG" => Verdict::ExpiredKey {
                key,
                identity: uid(),
                detail: match self
                    .key_expired
                    .and_then(|t| jiff::Timestamp::from_second(t).ok())
                {
                    Some(t) => format!("the key expired at {t}"),
                    None => "the key has expired".into(),
                },
            },
            "EXPSIG" => Verdict::ExpiredKey {
                key,
                identity: uid(),
                detail: "the signature itself has expired".into(),
            },
            "REVKEYSIG" => Verdict::RevokedKey {
                key,
                identity: uid(),
            },
            "BADSIG" => Verdict::BadSignature {
                key: Some(key),
                detail: "the signature does not match the signed content (changed after signing?)"
                    .into(),
            },
            _ => errsig_verdict(fields),
        }
    }

    /// The key as precisely as the lines allow: VALIDSIG names the primary key's fingerprint
    /// and the algorithm; otherwise the keyring's own listing; otherwise the key id.
    fn key(&self, key_id: &str, known: &[GpgKey]) -> Key {
        if let Some(valid) = &self.valid {
            let primary = valid.get(9).or(valid.first()).cloned().unwrap_or_default();
            return Key {
                format: Format::OpenPgp,
                key_type: algorithm(valid.get(6).map(String::as_str).unwrap_or_default()),
                fingerprint: primary,
            };
        }
        match known.iter().find(|k| k.matches(key_id)) {
            Some(k) => Key {
                format: Format::OpenPgp,
                key_type: k.key_type.clone(),
                fingerprint: k.fingerprint.clone(),
            },
            None => Key {
                format: Format::OpenPgp,
                key_type: "OpenPGP".into(),
                fingerprint: key_id.to_string(),
            },
        }
    }
}

/// `ERRSIG <keyid> <pkalgo> <hashalgo> <sig_class> <time> <rc> <fpr>`: rc 9 is a missing
/// public key, 4 an unsupported algorithm.
fn errsig_verdict(fields: &[String]) -> Verdict {
    let field = |i: usize| fields.get(i).map(String::as_str).unwrap_or_default();
    let fingerprint = Some(field(6))
        .filter(|f| !f.is_empty() && *f != "-")
        .unwrap_or(field(0));
    let key = Key {
        format: Format::OpenPgp,
        key_type: algorithm(field(1)),
        fingerprint: fingerprint.to_string(),
    };
    match field(5) {
        "9" => Verdict::UnknownKey {
            format: Format::OpenPgp,
            key: Some(key),
        },
        "4" => Verdict::BadSignature {
            key: Some(key),
            detail: "gpg does not support its algorithm".into(),
        },
        rc => Verdict::BadSignature {
            key: Some(key),
            detail: format!("gpg could not check it (error code {rc})"),
        },
    }
}

/// OpenPGP public-key algorithm ids (RFC 4880 9.1, RFC 6637, RFC 9580) as gpg names them.
fn algorithm(id: &str) -> String {
    match id {
        "1" | "2" | "3" => "RSA".into(),
        "16" | "20" => "ELG".into(),
        "17" => "DSA".into(),
        "18" => "ECDH".into(),
        "19" => "ECDSA".into(),
        "22" => "EdDSA".into(),
        "27" => "Ed25519".into(),
        "28" => "Ed448".into(),
        other => format!("algorithm {other}"),
    }
}

/// `gpg --with-colons --fixed-list-mode --list-keys` (doc/DETAILS "Format of the colon
/// listings").
fn parse_colons(text: &str) -> Vec<GpgKey> {
    let mut keys: Vec<GpgKey> = Vec::new();
    let mut last_record = "";
    for line in text.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or_default();
        match field(0) {
            "pub" => keys.push(GpgKey {
                fingerprint: String::new(),
                key_type: algorithm(field(3)),
                user_ids: Vec::new(),
                expires: field(6).parse().ok(),
                expired: field(1) == "e",
                revoked: field(1) == "r",
                subkeys: Vec::new(),
            }),
            "fpr" => {
                if let Some(key) = keys.last_mut() {
                    match last_record {
                        "pub" => key.fingerprint = field(9).to_string(),
                        "sub" => key.subkeys.push(field(9).to_string()),
                        _ => {}
                    }
                }
            }
            "uid" => {
                if let Some(key) = keys.last_mut() {
                    key.user_ids.push(unescape_colons(field(9)));
                }
            }
            _ => {}
        }
        if field(0) != "fpr" {
            last_record = fields.first().copied().unwrap_or_default();
        }
    }
    keys
}

/// Colon listings escape `:` and control characters as `\xHH`.
fn unescape_colons(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && bytes.get(i + 1) == Some(&b'x')
            && let Some(b) = text
                .get(i + 2..i + 4)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FPR: &str = "77530F1334D8D2DFB60D7C657D1B19EF40B47FFD";

    fn verdict(lines: &str) -> Verdict {
        Status::parse(lines).verdict(&[], None)
    }

    #[test]
    fn good_signature_names_user_id_algorithm_and_primary_fingerprint() {
        let lines = "[GNUPG:] NEWSIG alice@example.com\n\
[GNUPG:] KEY_CONSIDERED 77530F1334D8D2DFB60D7C657D1B19EF40B47FFD 0\n\
[GNUPG:] GOODSIG 7D1B19EF40B47FFD Alice <alice@example.com>\n\
[GNUPG:] VALIDSIG 3438D78DC1CD7E14A4AC4B15EF848FB1790E2C53 2026-11-28 1795848939 0 4 0 22 8 00 77530F1334D8D2DFB60D7C657D1B19EF40B47FFD\n";
        assert_eq!(
            verdict(lines),
            Verdict::Good {
                signer: Signer {
                    identity: "Alice <alice@example.com>".into(),
                    key: Key {
                        format: Format::OpenPgp,
                        key_type: "EdDSA".into(),
                        fingerprint: FPR.into(),
                    },
                },
            }
        );
        // gpg.minTrustLevel against the user's trust database.
        let trusted = format!("{lines}[GNUPG:] TRUST_MARGINAL 0 pgp\n");
        let status = Status::parse(&trusted);
        assert!(status.verdict(&[], Some(TrustLevel::Marginal)).is_good());
        assert!(matches!(
            status.verdict(&[], Some(TrustLevel::Fully)),
            Verdict::NotAllowed { detail, .. } if detail.contains("below gpg.minTrustLevel Fully")
        ));
    }

    #[test]
    fn each_failure_status_maps_to_its_reason() {
        let unknown = verdict(
            "[GNUPG:] ERRSIG 7D1B19EF40B47FFD 22 8 00 1795848939 9 77530F1334D8D2DFB60D7C657D1B19EF40B47FFD\n\
             [GNUPG:] NO_PUBKEY 7D1B19EF40B47FFD\n",
        );
        assert_eq!(
            unknown,
            Verdict::UnknownKey {
                format: Format::OpenPgp,
                key: Some(Key {
                    format: Format::OpenPgp,
                    key_type: "EdDSA".into(),
                    fingerprint: FPR.into()
                }),
            }
        );
        // Older gpg: no fingerprint field; the key id stands in.
        assert!(matches!(
            verdict("[GNUPG:] ERRSIG 7D1B19EF40B47FFD 1 8 00 1795848939 9 -\n"),
            Verdict::UnknownKey { key: Some(Key { fingerprint, .. }), .. } if fingerprint == "7D1B19EF40B47FFD"
        ));
        let known = [GpgKey {
            fingerprint: FPR.into(),
            key_type: "EdDSA".into(),
            user_ids: vec!["Alice <alice@example.com>".into()],
            expires: None,
            expired: false,
            revoked: false,
            subkeys: vec![],
        }];
        let bad = Status::parse("[GNUPG:] BADSIG 7D1B19EF40B47FFD Alice <alice@example.com>\n")
            .verdict(&known, None);
        assert!(
            matches!(&bad, Verdict::BadSignature { key: Some(k), .. } if k.fingerprint == FPR),
            "{bad:?}"
        );
        assert!(matches!(
            verdict("[GNUPG:] KEYEXPIRED 1700000000\n[GNUPG:] EXPKEYSIG 7D1B19EF40B47FFD Alice <a@x>\n"),
            Verdict::ExpiredKey { identity: Some(i), detail, .. } if i == "Alice <a@x>" && detail == "the key expired at 2023-11-14T22:13:20Z"
        ));
        assert!(matches!(
            verdict("[GNUPG:] EXPSIG 7D1B19EF40B47FFD Alice <a@x>\n"),
            Verdict::ExpiredKey { .. }
        ));
        assert!(matches!(
            verdict("[GNUPG:] REVKEYSIG 7D1B19EF40B47FFD Alice <a@x>\n"),
            Verdict::RevokedKey { .. }
        ));
        assert!(matches!(
            verdict("[GNUPG:] NODATA 1\n"),
            Verdict::BadSignature { key: None, .. }
        ));
        assert!(matches!(
            verdict("[GNUPG:] GOODSIG 1 A\n[GNUPG:] BADSIG 2 B\n"),
            Verdict::BadSignature { detail, .. } if detail.contains("more than one signature")
        ));
    }

    #[test]
    fn colon_listing_gives_fingerprints_user_ids_and_state() {
        let text = "tru::1:1795848936:0:3:1:5\n\
pub:r:255:22:7D1B19EF40B47FFD:1795848936:1895848936::-:::scESC:::::ed25519:::0:\n\
fpr:::::::::77530F1334D8D2DFB60D7C657D1B19EF40B47FFD:\n\
uid:r::::1795848936::AD66::Alice \\x3a Ops <alice@example.com>::::::::::0:\n\
sub:r:255:18:EF848FB1790E2C53:1795848936::::::e:::::cv25519::\n\
fpr:::::::::3438D78DC1CD7E14A4AC4B15EF848FB1790E2C53:\n";
        let keys = parse_colons(text);
        assert_eq!(
            keys,
            [GpgKey {
                fingerprint: FPR.into(),
                key_type: "EdDSA".into(),
                user_ids: vec!["Alice : Ops <alice@example.com>".into()],
                expires: Some(1895848936),
                expired: false,
                revoked: true,
                subkeys: vec!["3438D78DC1CD7E14A4AC4B15EF848FB1790E2C53".into()],
            }]
        );
        assert!(keys[0].matches("EF848FB1790E2C53"));
    }
}
