//! OpenSSH `allowed_signers` files, as git uses them for `gpg.ssh.allowedSignersFile` and
//! `ssh-keygen -Y verify` reads them (ssh-keygen(1), ALLOWED SIGNERS; OpenSSH sshsig.c).
//!
//! Each line: `principals [options] keytype base64 [comment]`. Principals are a comma-separated
//! pattern list (`*`, `?`, `!negation`), optionally in double quotes. Options: `namespaces="..."`
//! (a pattern list the signature namespace must match), `valid-after="..."` and
//! `valid-before="..."` (`YYYYMMDD[HHMM[SS]]`, local time unless it ends in `Z` or `UTC`).
//! `cert-authority` (trusting every key a CA certified) is refused: a certificate's principals
//! and validity would have to be checked too, and listing the signers' own keys says exactly who
//! may deploy. Unlike ssh-keygen, which skips a line it cannot read, any bad line is an error
//! naming the file and line: a trust file that silently lost a line would trust less, or more,
//! than its author believes.

use std::fmt;

use ssh_key::PublicKey;
use ssh_key::public::KeyData;

use crate::error::{Error, Result};

/// The namespace git signs and verifies in.
pub const GIT_NAMESPACE: &str = "git";

#[derive(Debug, Clone)]
pub struct AllowedSigners {
    /// What the text came from (a file path, or a ConfigMap key), for error messages.
    pub source: String,
    pub entries: Vec<Entry>,
}

/// One line of the file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// 1-based line number in the source.
    pub line: usize,
    /// The principal patterns, as written.
    pub principals: Vec<String>,
    /// `namespaces="..."`: the pattern list the signature namespace must match.
    pub namespaces: Option<String>,
    pub valid_after: Option<jiff::Timestamp>,
    pub valid_before: Option<jiff::Timestamp>,
    pub key: PublicKey,
}

/// What the file says about a signing key at a signing time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// Listed, valid at that time, allowed in the `git` namespace; `principal` is the one git
    /// reports (`Good "git" signature for <principal>`).
    Allowed { entry: &'a Entry, principal: String },
    /// Listed, but the line's `namespaces=` excludes `git`.
    NamespaceNotAllowed { entry: &'a Entry },
    /// Listed, but every principal on the line is a negation, so none may sign.
    NoPrincipal { entry: &'a Entry },
    /// Listed only on lines whose `valid-before` precedes the signing time.
    Expired { entry: &'a Entry },
    /// Listed only on lines whose `valid-after` follows the signing time.
    NotYetValid { entry: &'a Entry },
    /// Not listed.
    Unknown,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.line == other.line && self.key == other.key
    }
}
impl Eq for Entry {}

impl AllowedSigners {
    /// Parses `text`; `source` names it in errors (`<source>:<line>: ...`).
    pub fn parse(source: &str, text: &str) -> Result<AllowedSigners> {
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let at = |what: String| {
                Error::invalid(format!("{source}:{number}: {what}")).hint(
                    "each line is `principals [options] keytype base64-key [comment]`, as in \
                     ssh-keygen(1) ALLOWED SIGNERS, e.g. \
                     `alice@example.com namespaces=\"git\" ssh-ed25519 AAAA...`",
                )
            };
            if let Some(entry) = parse_line(line, number).map_err(at)? {
                entries.push(entry);
            }
        }
        Ok(AllowedSigners {
            source: source.to_string(),
            entries,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decides whether `key` may sign in the `git` namespace at `signed_at` (seconds since the
    /// epoch, the object's tagger/committer date, as git passes `-Overify-time`; `None`: now).
    ///
    /// As git does (`ssh-keygen -Y find-principals`, then `-Y verify -I <principal>` for each
    /// principal found): the first line listing the key whose validity window holds the signing
    /// time decides; its `namespaces=` must allow `git`; the principal reported is the first on
    /// the line that its own pattern list accepts.
    pub fn lookup(&self, key: &KeyData, signed_at: Option<i64>) -> Lookup<'_> {
        let at = signed_at
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .unwrap_or_else(jiff::Timestamp::now);
        let mut listed = self.entries.iter().filter(|e| e.key.key_data() == key);
        let Some(first) = listed.clone().next() else {
            return Lookup::Unknown;
        };
        let Some(entry) = listed.find(|e| e.valid_at(at)) else {
            return match first.valid_before {
                Some(before) if at > before => Lookup::Expired { entry: first },
                _ => Lookup::NotYetValid { entry: first },
            };
        };
        if let Some(namespaces) = &entry.namespaces
            && match_pattern_list(GIT_NAMESPACE, namespaces) != PatternMatch::Yes
        {
            return Lookup::NamespaceNotAllowed { entry };
        }
        let list = entry.principals.join(",");
        match entry
            .principals
            .iter()
            .find(|p| match_pattern_list(p, &list) == PatternMatch::Yes)
        {
            Some(principal) => Lookup::Allowed {
                entry,
                principal: principal.clone(),
            },
            None => Lookup::NoPrincipal { entry },
        }
    }
}

impl Entry {
    fn valid_at(&self, at: jiff::Timestamp) -> bool {
        self.valid_after.is_none_or(|after| at >= after)
            && self.valid_before.is_none_or(|before| at <= before)
    }

    /// The options as written back, for messages and `trust show`.
    pub fn options(&self) -> String {
        let mut out = Vec::new();
        if let Some(n) = &self.namespaces {
            out.push(format!("namespaces=\"{n}\""));
        }
        if let Some(t) = self.valid_after {
            out.push(format!("valid-after=\"{}\"", openssh_time(t)));
        }
        if let Some(t) = self.valid_before {
            out.push(format!("valid-before=\"{}\"", openssh_time(t)));
        }
        out.join(",")
    }
}

impl fmt::Display for Entry {
    /// `alice@example.com ED25519 SHA256:... namespaces="git"`: who, and which key, without
    /// the key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.principals.join(","),
            super::ssh::key_type(self.key.key_data()),
            super::ssh::fingerprint(self.key.key_data()),
        )?;
        let options = self.options();
        if !options.is_empty() {
            write!(f, " {options}")?;
        }
        Ok(())
    }
}

fn openssh_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y%m%d%H%M%SZ").to_string()
}

/// One line; `Ok(None)` for blank lines and comments.
fn parse_line(line: &str, number: usize) -> Result<Option<Entry>, String> {
    let rest = line.trim_start_matches([' ', '\t']);
    if rest.trim_end().is_empty() || rest.starts_with('#') {
        return Ok(None);
    }
    let (principals, rest) = principals_token(rest)?;
    let principals: Vec<String> = principals.split(',').map(str::to_string).collect();
    if principals.iter().any(String::is_empty) {
        return Err(format!(
            "empty principal in {:?}: separate principals with single commas",
            principals.join(",")
        ));
    }
    let rest = rest.trim_start_matches([' ', '\t']);
    if rest.trim_end().is_empty() {
        return Err("missing key after the principals".into());
    }
    let first_token = rest.split([' ', '\t']).next().unwrap_or_default();
    let (options, key_text) = if looks_like_options(first_token) {
        let end = end_of_options(rest)?;
        (
            Some(&rest[..end]),
            rest[end..].trim_start_matches([' ', '\t']),
        )
    } else {
        (None, rest)
    };
    if key_text.trim_end().is_empty() {
        return Err("missing key after the options".into());
    }
    let options = match options {
        Some(text) => parse_options(text)?,
        None => Options::default(),
    };
    let key_type = key_text.split([' ', '\t']).next().unwrap_or_default();
    if key_type.ends_with("-cert-v01@openssh.com") {
        return Err(format!(
            "{key_type} is a certificate; list the signer's public key instead"
        ));
    }
    let key = PublicKey::from_openssh(key_text.trim_end())
        .map_err(|e| format!("invalid {key_type} public key: {e}"))?;
    Ok(Some(Entry {
        line: number,
        principals,
        namespaces: options.namespaces,
        valid_after: options.valid_after,
        valid_before: options.valid_before,
        key,
    }))
}

/// The principals field: up to whitespace, with double-quoted stretches kept whole and their
/// quotes removed (OpenSSH's `strdelimw`).
fn principals_token(text: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            ' ' | '\t' => return Ok((out, &text[i..])),
            '"' => loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, c)) => out.push(c),
                    None => return Err("unterminated quote in the principals".into()),
                }
            },
            c => out.push(c),
        }
    }
    Ok((out, ""))
}

/// OpenSSH tries the text after the principals as a key first; a key type never contains `=`
/// or quotes, so such a token (or the one flag option) is the options field.
fn looks_like_options(token: &str) -> bool {
    token.contains(['=', '"'])
        || token
            .get(.."cert-authority".len())
            .is_some_and(|t| t.eq_ignore_ascii_case("cert-authority"))
}

/// Where the options field ends: the first blank outside double quotes (`\"` escapes a quote),
/// as OpenSSH's `sshkey_advance_past_options`.
fn end_of_options(text: &str) -> Result<usize, String> {
    let bytes = text.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() && (quoted || (bytes[i] != b' ' && bytes[i] != b'\t')) {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'"') {
            i += 1;
        } else if bytes[i] == b'"' {
            quoted = !quoted;
        }
        i += 1;
    }
    if quoted {
        return Err("unterminated quote in the options".into());
    }
    Ok(i)
}

#[derive(Default)]
struct Options {
    namespaces: Option<String>,
    valid_after: Option<jiff::Timestamp>,
    valid_before: Option<jiff::Timestamp>,
}

/// The options OpenSSH's `sshsigopt_parse` accepts, names case-insensitive.
fn parse_options(text: &str) -> Result<Options, String> {
    let mut options = Options::default();
    let mut rest = text;
    while !rest.is_empty() {
        let name_end = rest.find(['=', ',']).unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        if name == "cert-authority" {
            return Err(
                "cert-authority is not supported: SSH certificates cannot be \
                        trusted for deploys; list each signer's public key instead"
                    .into(),
            );
        }
        let slot = match name.as_str() {
            "namespaces" | "valid-after" | "valid-before" => name.as_str(),
            _ => {
                return Err(format!(
                    "unknown option {:?}: allowed_signers options are namespaces=, \
                     valid-after= and valid-before=",
                    &rest[..name_end]
                ));
            }
        };
        if !rest[name_end..].starts_with('=') {
            return Err(format!(
                "option {slot} needs a quoted value: {slot}=\"...\""
            ));
        }
        let (value, after) = dequote(&rest[name_end + 1..])
            .ok_or_else(|| format!("option {slot} needs a quoted value: {slot}=\"...\""))?;
        let duplicate = match slot {
            "namespaces" => options.namespaces.replace(value).is_some(),
            "valid-after" => options
                .valid_after
                .replace(parse_time(&value).map_err(|e| format!("{slot}: {e}"))?)
                .is_some(),
            _ => options
                .valid_before
                .replace(parse_time(&value).map_err(|e| format!("{slot}: {e}"))?)
                .is_some(),
        };
        if duplicate {
            return Err(format!("option {slot} given twice"));
        }
        rest = match after.strip_prefix(',') {
            Some(next) => next,
            None if after.is_empty() => after,
            None => return Err(format!("unexpected {after:?} after option {slot}")),
        };
    }
    if let (Some(after), Some(before)) = (options.valid_after, options.valid_before)
        && before <= after
    {
        return Err("valid-before is not after valid-after".into());
    }
    Ok(options)
}

/// `"value"` with `\"` escapes → (value, text after the closing quote).
fn dequote(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if body[i + 1..].starts_with('"') => {
                out.push('"');
                chars.next();
            }
            '"' => return Some((out, &body[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

/// `YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`, in local time unless suffixed `Z` or
/// `UTC` (OpenSSH's `parse_absolute_time`).
fn parse_time(text: &str) -> Result<jiff::Timestamp, String> {
    let upper = text.to_ascii_uppercase();
    let (digits, utc) = if let Some(d) = upper.strip_suffix("UTC") {
        (d, true)
    } else if let Some(d) = upper.strip_suffix('Z') {
        (d, true)
    } else {
        (upper.as_str(), false)
    };
    let bad = || format!("{text:?} is not YYYYMMDD[HHMM[SS]][Z]");
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![8, 12, 14].contains(&digits.len()) {
        return Err(bad());
    }
    let field = |from: usize, len: usize| -> i16 {
        digits
            .get(from..from + len)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let datetime = jiff::civil::DateTime::new(
        field(0, 4),
        field(4, 2) as i8,
        field(6, 2) as i8,
        field(8, 2) as i8,
        field(10, 2) as i8,
        field(12, 2) as i8,
        0,
    )
    .map_err(|_| bad())?;
    let zone = if utc {
        jiff::tz::TimeZone::UTC
    } else {
        jiff::tz::TimeZone::system()
    };
    datetime
        .to_zoned(zone)
        .map(|z| z.timestamp())
        .map_err(|e| format!("{text:?}: {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatternMatch {
    Yes,
    No,
    /// A `!pattern` matched: denied whatever else matches.
    Denied,
}

/// OpenSSH's `match_pattern_list`: comma-separated glob patterns, `!` negates.
pub(crate) fn match_pattern_list(string: &str, list: &str) -> PatternMatch {
    let mut positive = false;
    for pattern in list.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if match_pattern(string.as_bytes(), pattern.as_bytes()) {
            if negated {
                return PatternMatch::Denied;
            }
            positive = true;
        }
    }
    if positive {
        PatternMatch::Yes
    } else {
        PatternMatch::No
    }
}

/// Glob with `*` (any run) and `?` (one character), byte-wise like OpenSSH's `match_pattern`.
fn match_pattern(s: &[u8], p: &[u8]) -> bool {
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                si += 1;
                pi += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPYRJ08yQd0UL8CY053ysWzf5ap17D9gAEcAzHc740bI";

    fn parse(text: &str) -> Result<AllowedSigners> {
        AllowedSigners::parse("allowed_signers", text)
    }

    fn key() -> KeyData {
        PublicKey::from_openssh(ED).unwrap().key_data().clone()
    }

    #[test]
    fn reads_principals_options_keys_comments_and_blank_lines() {
        let text = format!(
            "# team keys\n\n  \t\nalice@example.com,bob@example.com {ED} alice laptop\n\
             \"carol@example.com\" namespaces=\"git,file\",valid-after=\"20200101Z\",VALID-BEFORE=\"20300101000000UTC\" {ED}\n\
             \t*@ops.example.com cert-authority-like=\"x\" {ED}\n"
        );
        let err = parse(&text).unwrap_err();
        assert!(
            err.message
                .starts_with("allowed_signers:6: unknown option \"cert-authority-like\""),
            "{err}"
        );
        let text: String = text.lines().take(5).map(|l| format!("{l}\n")).collect();
        let signers = parse(&text).unwrap();
        assert_eq!(signers.entries.len(), 2);
        let alice = &signers.entries[0];
        assert_eq!(alice.line, 4);
        assert_eq!(alice.principals, ["alice@example.com", "bob@example.com"]);
        assert_eq!(alice.key.comment(), "alice laptop");
        let carol = &signers.entries[1];
        assert_eq!(carol.principals, ["carol@example.com"]);
        assert_eq!(carol.namespaces.as_deref(), Some("git,file"));
        assert_eq!(
            carol.valid_after,
            Some("2020-01-01T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            carol.valid_before,
            Some("2030-01-01T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            carol.to_string(),
            "carol@example.com ED25519 SHA256:YfPDABgHMxcL5Srnxje+i1q0Y4xEKWGTJaq2rZDGKNE \
             namespaces=\"git,file\",valid-after=\"20200101000000Z\",valid-before=\"20300101000000Z\""
        );
    }

    #[test]
    fn bad_lines_are_errors_naming_file_and_line() {
        let cases = [
            (
                format!("a@x cert-authority {ED}"),
                "cert-authority is not supported",
            ),
            (
                format!("a@x Cert-Authority,namespaces=\"git\" {ED}"),
                "cert-authority is not supported",
            ),
            ("a@x".to_string(), "missing key after the principals"),
            (
                "a@x namespaces=\"git\"".to_string(),
                "missing key after the options",
            ),
            (
                format!("a@x namespaces=git {ED}"),
                "option namespaces needs a quoted value",
            ),
            (
                format!("a@x namespaces=\"git {ED}"),
                "unterminated quote in the options",
            ),
            (
                format!("\"a@x {ED}"),
                "unterminated quote in the principals",
            ),
            (format!("a@x,,b@x {ED}"), "empty principal"),
            (
                format!("a@x valid-after=\"2020\" {ED}"),
                "valid-after: \"2020\" is not YYYYMMDD",
            ),
            (
                format!("a@x valid-after=\"20201340\" {ED}"),
                "is not YYYYMMDD",
            ),
            (
                format!("a@x valid-after=\"20200101Z\",valid-before=\"20190101Z\" {ED}"),
                "valid-before is not after valid-after",
            ),
            (
                format!("a@x namespaces=\"a\",namespaces=\"b\" {ED}"),
                "given twice",
            ),
            (
                format!("a@x namespaces=\"a\"x {ED}"),
                "unexpected \"x\" after option namespaces",
            ),
            (
                "a@x ssh-ed25519 AAAAnotbase64!".to_string(),
                "invalid ssh-ed25519 public key",
            ),
            (
                "a@x ssh-ed25519-cert-v01@openssh.com AAAA".to_string(),
                "is a certificate",
            ),
        ];
        for (line, expected) in cases {
            let err = parse(&format!("# header\n{line}\n")).unwrap_err();
            assert!(
                err.message.starts_with("allowed_signers:2: ") && err.message.contains(expected),
                "{line:?}: {err}"
            );
            assert!(err.hint.is_some());
        }
    }

    #[test]
    fn lookup_follows_find_principals_then_verify() {
        let at = |s: &str| Some(s.parse::<jiff::Timestamp>().unwrap().as_second());
        let now = at("2025-06-01T00:00:00Z");
        let signers = parse(&format!("a@x,b@x {ED}\n")).unwrap();
        assert!(
            matches!(signers.lookup(&key(), now), Lookup::Allowed { principal, .. } if principal == "a@x")
        );

        let signers = parse(&format!("!a@x,b@x {ED}\n")).unwrap();
        assert!(
            matches!(signers.lookup(&key(), now), Lookup::Allowed { principal, .. } if principal == "b@x")
        );
        let signers = parse(&format!("!a@x {ED}\n")).unwrap();
        assert!(matches!(
            signers.lookup(&key(), now),
            Lookup::NoPrincipal { .. }
        ));

        // The first line listing the key decides, even when a later line would allow it.
        let signers = parse(&format!("a@x namespaces=\"file\" {ED}\nb@x {ED}\n")).unwrap();
        assert!(
            matches!(signers.lookup(&key(), now), Lookup::NamespaceNotAllowed { entry } if entry.line == 1)
        );
        let signers = parse(&format!("a@x namespaces=\"fi*,g?t\" {ED}\n")).unwrap();
        assert!(matches!(
            signers.lookup(&key(), now),
            Lookup::Allowed { .. }
        ));
        let signers = parse(&format!("a@x namespaces=\"*,!git\" {ED}\n")).unwrap();
        assert!(matches!(
            signers.lookup(&key(), now),
            Lookup::NamespaceNotAllowed { .. }
        ));

        // Lines outside their validity window are skipped; the window is inclusive.
        let text = format!(
            "old@x valid-before=\"20200101Z\" {ED}\nnew@x valid-after=\"20250601Z\" {ED}\n"
        );
        let signers = parse(&text).unwrap();
        assert!(
            matches!(signers.lookup(&key(), now), Lookup::Allowed { principal, .. } if principal == "new@x")
        );
        assert!(
            matches!(signers.lookup(&key(), at("2019-12-31T00:00:00Z")), Lookup::Allowed { principal, .. } if principal == "old@x")
        );
        assert!(
            matches!(signers.lookup(&key(), at("2020-06-01T00:00:00Z")), Lookup::Expired { entry } if entry.line == 1)
        );
        let signers = parse(&format!("new@x valid-after=\"20990101Z\" {ED}\n")).unwrap();
        assert!(matches!(
            signers.lookup(&key(), now),
            Lookup::NotYetValid { .. }
        ));

        let other =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGbzWgZ2wPiu8s8ulrTNCUtvybQt3nC2f4hgEAfm5KqC";
        let signers = parse(&format!("a@x {other}\n")).unwrap();
        assert_eq!(signers.lookup(&key(), now), Lookup::Unknown);
    }

    #[test]
    fn patterns_match_like_openssh() {
        assert!(match_pattern(b"alice@example.com", b"*@example.com"));
        assert!(match_pattern(b"git", b"g?t"));
        assert!(match_pattern(b"", b"*"));
        assert!(match_pattern(b"abcabd", b"*abd"));
        assert!(!match_pattern(b"gitx", b"git"));
        assert!(!match_pattern(b"Git", b"git"));
        assert_eq!(match_pattern_list("git", "file,git"), PatternMatch::Yes);
        assert_eq!(match_pattern_list("git", "file"), PatternMatch::No);
        assert_eq!(match_pattern_list("git", "*,!g*"), PatternMatch::Denied);
    }
}
