//! Promotion gates: whether a source deploy may be promoted into an environment whose
//! `gitops.yaml` entry has `gates:`. Two gates:
//!
//! - `verified`: the source deploy carries a verification (see `verification`) made in the
//!   source environment's namespace;
//! - `soak`: it has stayed the source environment's deploy for this long, counted from its
//!   first verification when `verified` is set (Kargo's soak starts after verification), else
//!   from the tag's time; void when the source environment has a newer deploy.
//!
//! The gates that apply are each at its strictest among the descriptions of the target
//! environment that count: `gitops.yaml` at HEAD, at the target branch's head (what the target
//! runs) and at the promoted commit. Loosening a gate therefore takes a promotion that passed
//! it, or a recorded override; it cannot ride in with the commit it would let through.
//!
//! `evaluate` is pure (facts and the time in, verdicts out); `assess` gathers the facts.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::config::{Environment, Gates};
use crate::error::Result;
use crate::git::{Repo, TagInfo};
use crate::verification::{Verification, format_time};

/// What is known about the source deploy.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The source environment's name and namespace.
    pub env: String,
    pub namespace: String,
    /// The source deploy tag.
    pub tag: String,
    pub tagged_at: Timestamp,
    /// Every verification on the tag, of any environment (the wrong ones are not counted).
    pub verifications: Vec<Verification>,
    /// The source environment's latest deploy, when it is not `tag`.
    pub newer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub env: String,
    pub tag: String,
    pub gates: Gates,
    /// Verifications made in the source environment's namespace, oldest first.
    pub verifications: Vec<Verification>,
    /// Verifications on the tag made elsewhere (another environment or namespace).
    pub ignored: usize,
    pub verified: Option<bool>,
    pub soak: Option<Soak>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Soak {
    /// The source environment has a newer deploy: this one is no longer soaking there.
    Void { newer: String },
    /// `verified` is set and there is no verification yet, which is when the soak starts.
    NotStarted { required: Duration },
    Counting {
        since: Timestamp,
        elapsed: Duration,
        required: Duration,
    },
}

impl Soak {
    pub fn met(&self) -> bool {
        matches!(self, Soak::Counting { elapsed, required, .. } if elapsed >= required)
    }
}

/// The short state `git deploy status` shows for a pending promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// The target has no gates.
    None,
    Ready,
    Unverified,
    Soaking {
        elapsed: Duration,
        required: Duration,
    },
    Void,
}

impl State {
    pub fn label(&self) -> String {
        match self {
            State::None => "no gates".into(),
            State::Ready => "ready".into(),
            State::Unverified => "unverified".into(),
            State::Soaking { elapsed, required } => {
                format!("soaking {}/{}", human(*elapsed), human(*required))
            }
            State::Void => "void (newer deploy)".into(),
        }
    }

    pub fn key(&self) -> &'static str {
        match self {
            State::None => "none",
            State::Ready => "ready",
            State::Unverified => "unverified",
            State::Soaking { .. } => "soaking",
            State::Void => "void",
        }
    }
}

/// Judges `gates` on the source deploy described by `facts` at time `now`.
pub fn evaluate(gates: &Gates, facts: &Facts, now: Timestamp) -> Evaluation {
    let (valid, ignored): (Vec<&Verification>, Vec<&Verification>) = facts
        .verifications
        .iter()
        .partition(|v| v.env == facts.env && v.namespace == facts.namespace);
    let mut verifications: Vec<Verification> = valid.into_iter().cloned().collect();
    verifications.sort_by_key(|v| v.at);
    let first = verifications.first().map(|v| v.at);
    let verified = gates.verified.then_some(first.is_some());
    let soak = gates.soak.map(|required| {
        if let Some(newer) = &facts.newer {
            return Soak::Void {
                newer: newer.clone(),
            };
        }
        let since = if gates.verified {
            match first {
                Some(at) => at,
                None => return Soak::NotStarted { required },
            }
        } else {
            facts.tagged_at
        };
        Soak::Counting {
            since,
            elapsed: since_then(since, now),
            required,
        }
    });
    Evaluation {
        env: facts.env.clone(),
        tag: facts.tag.clone(),
        gates: gates.clone(),
        verifications,
        ignored: ignored.len(),
        verified,
        soak,
    }
}

/// Time from `since` to `now`; a `since` in the future (another machine's clock) is zero.
fn since_then(since: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO)
}

impl Evaluation {
    pub fn met(&self) -> bool {
        self.verified.unwrap_or(true) && self.soak.as_ref().is_none_or(Soak::met)
    }

    pub fn state(&self) -> State {
        if self.gates.is_empty() {
            return State::None;
        }
        if self.verified == Some(false) {
            return State::Unverified;
        }
        match &self.soak {
            Some(Soak::Void { .. }) => State::Void,
            Some(Soak::NotStarted { .. }) => State::Unverified,
            Some(Soak::Counting {
                elapsed, required, ..
            }) if elapsed < required => State::Soaking {
                elapsed: *elapsed,
                required: *required,
            },
            _ => State::Ready,
        }
    }

    /// One line per gate, met or not: `verified: no — run kubectl gitops verify --env staging`,
    /// `soak: 12m of 30m, ready at 14:05 UTC`. `now` decides whether a date is needed.
    pub fn lines(&self, now: Timestamp) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(verified) = self.verified {
            let ignored = match self.ignored {
                0 => String::new(),
                n => format!(
                    " ({n} verification{} of another environment not counted)",
                    if n == 1 { "" } else { "s" }
                ),
            };
            out.push(match (verified, self.verifications.first()) {
                (true, Some(v)) => format!(
                    "verified: yes — {} by {} on {} (revision {}){}",
                    format_time(v.at),
                    v.by,
                    v.cluster,
                    v.revision,
                    if self.verifications.len() > 1 {
                        format!(", and {} more", self.verifications.len() - 1)
                    } else {
                        String::new()
                    }
                ),
                _ => format!(
                    "verified: no — run kubectl gitops verify --env {}{ignored}",
                    self.env
                ),
            });
        }
        if let Some(soak) = &self.soak {
            out.push(match soak {
                Soak::Void { newer } => format!(
                    "soak: void — {} has a newer deploy ({newer}); {} no longer soaks there",
                    self.env, self.tag
                ),
                Soak::NotStarted { required } => format!(
                    "soak: 0 of {} — it starts at the first verification",
                    human(*required)
                ),
                Soak::Counting {
                    since,
                    elapsed,
                    required,
                } if elapsed >= required => format!(
                    "soak: {} of {} — since {}",
                    human(*elapsed),
                    human(*required),
                    format_time(*since)
                ),
                Soak::Counting {
                    since,
                    elapsed,
                    required,
                } => {
                    let ready = since
                        .checked_add(jiff::SignedDuration::try_from(*required).unwrap_or_default())
                        .unwrap_or(Timestamp::MAX);
                    format!(
                        "soak: {} of {}, ready at {}",
                        human(*elapsed),
                        human(*required),
                        clock(ready, now)
                    )
                }
            });
        }
        out
    }

    pub fn to_json(&self, now: Timestamp) -> Value {
        let soak = self.soak.as_ref().map(|s| match s {
            Soak::Void { newer } => json!({"state": "void", "newer_deploy": newer}),
            Soak::NotStarted { required } => json!({
                "state": "not started", "required_seconds": required.as_secs(),
            }),
            Soak::Counting {
                since,
                elapsed,
                required,
            } => {
                let ready = since
                    .checked_add(jiff::SignedDuration::try_from(*required).unwrap_or_default())
                    .unwrap_or(Timestamp::MAX);
                json!({
                    "state": if elapsed >= required { "met" } else { "soaking" },
                    "since": format_time(*since),
                    "elapsed_seconds": elapsed.as_secs(),
                    "required_seconds": required.as_secs(),
                    "ready_at": format_time(ready),
                })
            }
        });
        json!({
            "source_env": self.env,
            "source_tag": self.tag,
            "met": self.met(),
            "state": self.state().key(),
            "verified": self.verified.map(|met| json!({
                "met": met,
                "verifications": self.verifications,
                "ignored": self.ignored,
            })),
            "soak": soak,
            "lines": self.lines(now),
        })
    }
}

/// `45s`, `12m`, `1h`, `1h5m`: floor to the minute from a minute on, as a person reads it.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        return format!("{s}s");
    }
    let (h, m) = (s / 3600, (s % 3600) / 60);
    match (h, m) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m}m"),
    }
}

/// `14:05 UTC` today, `2026-11-29 14:05 UTC` on another day; rounded up to the minute so
/// that the time named is never before the gate opens.
fn clock(t: Timestamp, now: Timestamp) -> String {
    let up = t
        .round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Minute)
                .mode(jiff::RoundMode::Ceil),
        )
        .unwrap_or(t);
    let same_day = up.strftime("%Y-%m-%d").to_string() == now.strftime("%Y-%m-%d").to_string();
    if same_day {
        up.strftime("%H:%M UTC").to_string()
    } else {
        up.strftime("%Y-%m-%d %H:%M UTC").to_string()
    }
}

/// The gates of `target` (named in `gitops.yaml` at HEAD or elsewhere), each at its strictest
/// among gitops.yaml at HEAD, at the head of `target_branch`, and `at_source` (the config of
/// the promoted commit), see the module comment. A target branch whose gitops.yaml cannot be
/// read adds nothing (with a warning): it is not what decides which gates exist.
pub fn effective(
    repo: &Repo,
    target: &str,
    target_branch: &str,
    at_source: Option<&Environment>,
) -> Result<Gates> {
    let mut gates = at_source.map(|e| e.gates.clone()).unwrap_or_default();
    let (head_cfg, _) = repo.head_config()?;
    if let Some(env) = head_cfg.env(target) {
        gates = gates.strictest(&env.gates);
    }
    if let Some(head) = repo.branch_head(target_branch)? {
        match repo.file_at(head, crate::config::FILE_NAME)? {
            None => {}
            Some(_) => match repo.config_at(head, target_branch) {
                Ok(cfg) => {
                    if let Some(env) = cfg.env(target) {
                        gates = gates.strictest(&env.gates);
                    }
                }
                Err(e) => eprintln!(
                    "warning: not reading the gates of {target} from {target_branch}: {}",
                    e.message
                ),
            },
        }
    }
    Ok(gates)
}

/// Gathers the facts about the source deploy `source` of environment `env` and evaluates
/// `gates` on them at `now`.
pub fn assess(
    repo: &Repo,
    env: &Environment,
    source: &TagInfo,
    gates: &Gates,
    now: Timestamp,
) -> Result<Evaluation> {
    let verifications = match source.tag_object {
        Some(object) => repo.verifications(object)?,
        None => Vec::new(),
    };
    let newer = repo
        .deploys(&env.name)?
        .latest()?
        .filter(|t| t.name != source.name)
        .map(|t| t.name);
    let tagged_at = source
        .tagger
        .as_ref()
        .map(|t| t.seconds)
        .or_else(|| crate::tag::TagName::parse(&source.name).map(|t| t.seconds))
        .and_then(|s| Timestamp::from_second(s).ok())
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let facts = Facts {
        env: env.name.clone(),
        namespace: env.namespace.clone(),
        tag: source.name.clone(),
        tagged_at,
        verifications,
        newer,
    };
    Ok(evaluate(gates, &facts, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn verification(env: &str, at: &str) -> Verification {
        Verification {
            env: env.into(),
            namespace: env.into(),
            cluster: "https://127.0.0.1:6443".into(),
            revision: 2,
            at: t(at),
            by: "ci".into(),
        }
    }

    fn facts(verifications: Vec<Verification>) -> Facts {
        Facts {
            env: "staging".into(),
            namespace: "staging".into(),
            tag: "deploy/staging/20261128T120000Z".into(),
            tagged_at: t("2026-11-28T12:00:00Z"),
            verifications,
            newer: None,
        }
    }

    fn gates(verified: bool, soak_minutes: Option<u64>) -> Gates {
        Gates {
            verified,
            soak: soak_minutes.map(|m| Duration::from_secs(m * MIN)),
        }
    }

    #[test]
    fn no_gates_are_met_and_say_so() {
        let e = evaluate(&Gates::default(), &facts(vec![]), t("2026-11-28T12:00:00Z"));
        assert!(e.met());
        assert_eq!(e.state(), State::None);
        assert!(e.lines(t("2026-11-28T12:00:00Z")).is_empty());
    }

    #[test]
    fn unverified_names_the_command_that_verifies() {
        let now = t("2026-11-28T13:00:00Z");
        let e = evaluate(&gates(true, None), &facts(vec![]), now);
        assert!(!e.met());
        assert_eq!(e.state(), State::Unverified);
        assert_eq!(
            e.lines(now),
            ["verified: no — run kubectl gitops verify --env staging"]
        );
    }

    #[test]
    fn a_verification_of_another_environment_does_not_count() {
        let now = t("2026-11-28T13:00:00Z");
        let mut other_ns = verification("staging", "2026-11-28T12:05:00Z");
        other_ns.namespace = "default".into();
        let f = facts(vec![verification("dev", "2026-11-28T12:05:00Z"), other_ns]);
        let e = evaluate(&gates(true, None), &f, now);
        assert!(!e.met());
        assert_eq!(
            e.lines(now),
            [
                "verified: no — run kubectl gitops verify --env staging (2 verifications of another environment not counted)"
            ]
        );
    }

    #[test]
    fn soak_counts_from_the_first_verification_when_verified_is_set() {
        let f = facts(vec![
            verification("staging", "2026-11-28T13:40:00Z"),
            verification("staging", "2026-11-28T13:10:00Z"),
        ]);
        // 12 minutes after the first verification, an hour after the tag.
        let now = t("2026-11-28T13:22:30Z");
        let e = evaluate(&gates(true, Some(30)), &f, now);
        assert!(!e.met());
        assert_eq!(
            e.state(),
            State::Soaking {
                elapsed: Duration::from_secs(12 * MIN + 30),
                required: Duration::from_secs(30 * MIN)
            }
        );
        assert_eq!(e.state().label(), "soaking 12m/30m");
        let lines = e.lines(now);
        assert!(
            lines[0].starts_with("verified: yes — 2026-11-28T13:10:00Z by ci"),
            "{lines:?}"
        );
        assert_eq!(lines[1], "soak: 12m of 30m, ready at 13:40 UTC");
        let later = t("2026-11-28T13:40:00Z");
        let e = evaluate(&gates(true, Some(30)), &f, later);
        assert!(e.met());
        assert_eq!(e.state(), State::Ready);
        assert_eq!(
            e.lines(later)[1],
            "soak: 30m of 30m — since 2026-11-28T13:10:00Z"
        );
    }

    #[test]
    fn soak_waits_for_a_verification_when_verified_is_set() {
        let now = t("2026-11-29T12:00:00Z");
        let e = evaluate(&gates(true, Some(30)), &facts(vec![]), now);
        assert!(!e.met());
        assert_eq!(e.state(), State::Unverified);
        assert_eq!(
            e.lines(now)[1],
            "soak: 0 of 30m — it starts at the first verification"
        );
    }

    #[test]
    fn soak_alone_counts_from_the_tag() {
        let now = t("2026-11-28T12:45:00Z");
        let e = evaluate(&gates(false, Some(60)), &facts(vec![]), now);
        assert!(!e.met());
        assert_eq!(e.lines(now), ["soak: 45m of 1h, ready at 13:00 UTC"]);
        let e = evaluate(
            &gates(false, Some(60)),
            &facts(vec![]),
            t("2026-11-28T13:00:00Z"),
        );
        assert!(e.met());
    }

    #[test]
    fn a_newer_deploy_of_the_source_voids_the_soak_however_long_it_ran() {
        let mut f = facts(vec![verification("staging", "2026-11-28T12:05:00Z")]);
        f.newer = Some("deploy/staging/20261128T150000Z".into());
        let now = t("2026-11-30T00:00:00Z");
        let e = evaluate(&gates(true, Some(30)), &f, now);
        assert!(!e.met());
        assert_eq!(e.state(), State::Void);
        assert_eq!(e.verified, Some(true));
        assert_eq!(
            e.lines(now)[1],
            "soak: void — staging has a newer deploy (deploy/staging/20261128T150000Z); \
             deploy/staging/20261128T120000Z no longer soaks there"
        );
    }

    #[test]
    fn ready_at_on_another_day_names_the_date_and_rounds_up() {
        let f = facts(vec![verification("staging", "2026-11-28T23:50:10Z")]);
        let now = t("2026-11-28T23:55:00Z");
        let e = evaluate(&gates(true, Some(30)), &f, now);
        assert_eq!(
            e.lines(now)[1],
            "soak: 4m of 30m, ready at 2026-11-29 00:21 UTC"
        );
    }

    #[test]
    fn a_verification_from_the_future_has_soaked_nothing() {
        let f = facts(vec![verification("staging", "2026-11-28T14:00:00Z")]);
        let now = t("2026-11-28T13:00:00Z");
        let e = evaluate(&gates(true, Some(1)), &f, now);
        assert_eq!(
            e.soak,
            Some(Soak::Counting {
                since: t("2026-11-28T14:00:00Z"),
                elapsed: Duration::ZERO,
                required: Duration::from_secs(MIN)
            })
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(Duration::from_secs(45)), "45s");
        assert_eq!(human(Duration::from_secs(12 * MIN + 59)), "12m");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(human(Duration::from_secs(3900)), "1h5m");
    }
}
