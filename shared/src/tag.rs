//! Deploy tag names (`deploy/<env>/<YYYYMMDD>T<HHMMSS>Z[-N]`) and the message format with git
//! trailers that records what each deploy was.

use std::fmt;

use crate::error::Error;

pub const TAG_NAMESPACE: &str = "deploy";

/// `refs/tags/deploy/<env>/`: where the deploy tags of one environment live.
pub fn ref_prefix(env: &str) -> String {
    format!("refs/tags/{TAG_NAMESPACE}/{env}/")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagName {
    pub env: String,
    /// Seconds since the Unix epoch, UTC.
    pub seconds: i64,
    /// 1 for the plain name, 2 and up for the `-N` suffix added on a collision.
    pub seq: u32,
}

impl TagName {
    pub fn new(env: &str, seconds: i64, seq: u32) -> Self {
        TagName {
            env: env.to_string(),
            seconds,
            seq,
        }
    }

    /// Parses a tag name with or without `refs/tags/`.
    pub fn parse(name: &str) -> Option<TagName> {
        let name = name.strip_prefix("refs/tags/").unwrap_or(name);
        let rest = name.strip_prefix(TAG_NAMESPACE)?.strip_prefix('/')?;
        let (env, stamp) = rest.split_once('/')?;
        if crate::refname::env_name_problem(env).is_some() {
            return None;
        }
        let (stamp, seq) = match stamp.split_once('-') {
            Some((s, n)) => {
                let n: u32 = n.parse().ok()?;
                if n < 2 || n.to_string().len() != stamp.len() - s.len() - 1 {
                    return None;
                }
                (s, n)
            }
            None => (stamp, 1),
        };
        let dt = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", stamp).ok()?;
        if dt.strftime("%Y%m%dT%H%M%SZ").to_string() != stamp {
            return None;
        }
        let seconds = dt
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp()
            .as_second();
        Some(TagName {
            env: env.to_string(),
            seconds,
            seq,
        })
    }

    /// Sort key: newest last. The seq breaks ties within one second.
    pub fn order_key(&self) -> (i64, u32) {
        (self.seconds, self.seq)
    }
}

impl fmt::Display for TagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ts = jiff::Timestamp::from_second(self.seconds).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        write!(
            f,
            "{TAG_NAMESPACE}/{}/{}",
            self.env,
            ts.strftime("%Y%m%dT%H%M%SZ")
        )?;
        if self.seq > 1 {
            write!(f, "-{}", self.seq)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Tag,
    Promote,
    Rollback,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Tag => "tag",
            Action::Promote => "promote",
            Action::Rollback => "rollback",
        }
    }
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "tag" => Some(Action::Tag),
            "promote" => Some(Action::Promote),
            "rollback" => Some(Action::Rollback),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a deploy tag records. Rendered as a subject, an optional body and a final paragraph
/// of git trailers; who and when are the tagger's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeployRecord {
    pub env: String,
    pub action: Option<Action>,
    pub subject: String,
    pub body: Option<String>,
    pub source_env: Option<String>,
    pub source_tag: Option<String>,
    pub source_commit: Option<String>,
    pub previous_tag: Option<String>,
    pub previous_commit: Option<String>,
    /// Why a promotion went ahead although gates of the target were unmet
    /// (`--override-gates`).
    pub gate_override: Option<String>,
    pub branch: String,
    pub tool: String,
}

const KEYS: [&str; 10] = [
    "Deploy-Env",
    "Deploy-Action",
    "Deploy-Source-Env",
    "Deploy-Source-Tag",
    "Deploy-Source-Commit",
    "Deploy-Previous-Tag",
    "Deploy-Previous-Commit",
    "Deploy-Gate-Override",
    "Deploy-Branch",
    "Deploy-Tool",
];

/// Checks a user-supplied message body (`-m`). It goes into the tag above the trailer block,
/// which git and we read only from the last paragraph, so it cannot forge trailers; it only
/// has to be text git will store as given.
pub fn check_body(body: &str) -> Result<(), Error> {
    if body.contains('\0') {
        return Err(Error::invalid("the -m message contains a NUL byte"));
    }
    Ok(())
}

impl DeployRecord {
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(self.subject.trim());
        out.push_str("\n\n");
        if let Some(body) = self
            .body
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
        {
            // Trailing whitespace lines would merge paragraphs unpredictably; keep the body as
            // typed otherwise.
            out.push_str(body);
            out.push_str("\n\n");
        }
        let action = self.action.map(Action::as_str);
        let values = [
            Some(self.env.as_str()),
            action,
            self.source_env.as_deref(),
            self.source_tag.as_deref(),
            self.source_commit.as_deref(),
            self.previous_tag.as_deref(),
            self.previous_commit.as_deref(),
            self.gate_override.as_deref(),
            Some(self.branch.as_str()),
            Some(self.tool.as_str()),
        ];
        for (key, value) in KEYS.iter().zip(values) {
            if let Some(v) = value {
                out.push_str(&format!("{key}: {}\n", one_line(v)));
            }
        }
        out
    }

    /// Reads a tag message written by `render`. Trailers come only from the last paragraph, as
    /// git reads them, so text in the body can never change what is reported.
    pub fn parse(message: &str) -> Option<DeployRecord> {
        let text = message.trim_end();
        let (head, trailers) = match text.rfind("\n\n") {
            Some(i) => (&text[..i], &text[i + 2..]),
            None => return None,
        };
        let mut rec = DeployRecord::default();
        let mut seen_env = false;
        for line in trailers.lines() {
            let (key, value) = line.split_once(':')?;
            let value = value.trim().to_string();
            match key.trim() {
                "Deploy-Env" => {
                    rec.env = value;
                    seen_env = true;
                }
                "Deploy-Action" => rec.action = Action::parse(&value),
                "Deploy-Source-Env" => rec.source_env = Some(value),
                "Deploy-Source-Tag" => rec.source_tag = Some(value),
                "Deploy-Source-Commit" => rec.source_commit = Some(value),
                "Deploy-Previous-Tag" => rec.previous_tag = Some(value),
                "Deploy-Previous-Commit" => rec.previous_commit = Some(value),
                "Deploy-Gate-Override" => rec.gate_override = Some(value),
                "Deploy-Branch" => rec.branch = value,
                "Deploy-Tool" => rec.tool = value,
                // git allows other trailers (Signed-off-by, ...) in the same block.
                _ => {}
            }
        }
        if !seen_env {
            return None;
        }
        let (subject, body) = match head.split_once("\n\n") {
            Some((s, b)) => (s, Some(b.trim().to_string()).filter(|b| !b.is_empty())),
            None => (head, None),
        };
        rec.subject = subject.trim().to_string();
        rec.body = body;
        Some(rec)
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// `deploy prod: promote staging deploy/staging/... (abc1234)`
pub fn subject(env: &str, action: Action, detail: &str, short_commit: &str) -> String {
    match action {
        Action::Tag => format!("deploy {env}: tag {short_commit}"),
        Action::Promote => format!("deploy {env}: promote {detail} ({short_commit})"),
        Action::Rollback => format!("deploy {env}: rollback to {detail} ({short_commit})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let t = TagName::new("prod", 1_763_720_000, 1);
        let s = t.to_string();
        assert_eq!(s, "deploy/prod/20251121T101320Z");
        assert_eq!(TagName::parse(&s), Some(t.clone()));
        assert_eq!(TagName::parse(&format!("refs/tags/{s}")), Some(t));
        let t3 = TagName::new("prod", 1_763_720_000, 3);
        assert_eq!(t3.to_string(), "deploy/prod/20251121T101320Z-3");
        assert_eq!(TagName::parse("deploy/prod/20251121T101320Z-3"), Some(t3));
    }

    #[test]
    fn rejects_names_that_are_not_deploy_tags() {
        for bad in [
            "v1.0",
            "deploy/prod",
            "deploy/prod/2025",
            "deploy/prod/20251121T101320",
            "deploy/prod/20251121T101320Z-1",
            "deploy/prod/20251121T101320Z-02",
            "deploy/prod/20251321T101320Z",
            "deploy/../20251121T101320Z",
            "deploy/prod/20251121T101320Z/x",
        ] {
            assert_eq!(TagName::parse(bad), None, "{bad}");
        }
    }

    fn sample() -> DeployRecord {
        DeployRecord {
            env: "prod".into(),
            action: Some(Action::Promote),
            subject: subject(
                "prod",
                Action::Promote,
                "staging deploy/staging/20251121T101320Z",
                "abc1234",
            ),
            body: Some("Release 42.\n\nApproved by the on-call.".into()),
            source_env: Some("staging".into()),
            source_tag: Some("deploy/staging/20251121T101320Z".into()),
            source_commit: Some("abc1234abc1234abc1234abc1234abc1234abc12".into()),
            previous_tag: Some("deploy/prod/20251120T090000Z".into()),
            previous_commit: Some("def5678def5678def5678def5678def5678def56".into()),
            gate_override: Some("hotfix for INC-42, approved by on-call".into()),
            branch: "env/prod".into(),
            tool: "git-deploy/0.1.0".into(),
        }
    }

    #[test]
    fn messages_round_trip() {
        let rec = sample();
        assert_eq!(DeployRecord::parse(&rec.render()), Some(rec.clone()));
        let bare = DeployRecord {
            body: None,
            source_env: None,
            source_tag: None,
            ..rec
        };
        assert_eq!(DeployRecord::parse(&bare.render()), Some(bare));
    }

    #[test]
    fn body_cannot_inject_trailers() {
        let mut rec = sample();
        rec.body = Some(
            "Deploy-Env: evil\nDeploy-Action: rollback\nDeploy-Source-Tag: forged\nDeploy-Gate-Override: none"
                .into(),
        );
        let parsed = DeployRecord::parse(&rec.render()).unwrap();
        assert_eq!(parsed.env, "prod");
        assert_eq!(parsed.action, Some(Action::Promote));
        assert_eq!(
            parsed.source_tag.as_deref(),
            Some("deploy/staging/20251121T101320Z")
        );
        assert_eq!(
            parsed.gate_override.as_deref(),
            Some("hotfix for INC-42, approved by on-call")
        );
        assert_eq!(parsed.body, rec.body);
    }

    #[test]
    fn subject_follows_the_documented_form() {
        assert_eq!(
            subject(
                "prod",
                Action::Promote,
                "staging deploy/staging/20251121T101320Z",
                "abc1234"
            ),
            "deploy prod: promote staging deploy/staging/20251121T101320Z (abc1234)"
        );
    }
}
