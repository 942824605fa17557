//! What a revision record's outcome text means, for the exporter and the notifications: one
//! reading of the strings sync, revert and a rollback record, so a new spelling is taught in
//! one place.
//!
//! The texts (README, "What is recorded in the cluster"): `succeeded`, `failed: <reason>`,
//! `interrupted`, `reverted to revision N (tag T)`, and `rolled back to revision N (tag T)
//! after failed revision M` for a failed rollout undone by `--rollback-on-failure`.

/// The kind of an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `succeeded`, or a revert that succeeded (`reverted to ...`).
    Succeeded,
    /// `failed: <reason>`, and any text this version does not know (a newer tool's, or an
    /// edited record): never taken for a success.
    Failed,
    /// `rolled back to revision N ...`: the run failed and the namespace went back to N.
    RolledBack,
    /// `interrupted` (Ctrl-C).
    Interrupted,
}

impl Kind {
    /// How events and alerts name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Succeeded => "succeeded",
            Kind::Failed => "failed",
            Kind::RolledBack => "rolled back",
            Kind::Interrupted => "interrupted",
        }
    }
}

pub fn classify(outcome: &str) -> Kind {
    if outcome == "succeeded" || outcome.starts_with("reverted to ") {
        Kind::Succeeded
    } else if outcome.starts_with("rolled back to ") {
        Kind::RolledBack
    } else if outcome == "interrupted" {
        Kind::Interrupted
    } else {
        Kind::Failed
    }
}

/// N of `rolled back to revision N ...`.
pub fn rolled_back_to(outcome: &str) -> Option<u64> {
    let rest = outcome.strip_prefix("rolled back to revision ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `<reason>` of `failed: <reason>`.
pub fn failure_reason(outcome: &str) -> Option<&str> {
    outcome.strip_prefix("failed: ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_recorded_outcome_has_its_kind() {
        for (text, kind) in [
            ("succeeded", Kind::Succeeded),
            ("reverted to revision 3 (tag v1)", Kind::Succeeded),
            ("failed: Deployment.apps/shop/web: conflict", Kind::Failed),
            ("interrupted", Kind::Interrupted),
            (
                "rolled back to revision 4 (tag deploy/dev/20250101T000000Z) after failed revision 5",
                Kind::RolledBack,
            ),
            ("something a newer tool writes", Kind::Failed),
            ("", Kind::Failed),
        ] {
            assert_eq!(classify(text), kind, "{text}");
        }
    }

    #[test]
    fn the_revision_rolled_back_to_and_the_reason_are_read_back() {
        assert_eq!(
            rolled_back_to("rolled back to revision 14 (tag v2) after failed revision 15"),
            Some(14)
        );
        assert_eq!(rolled_back_to("rolled back to revision x"), None);
        assert_eq!(rolled_back_to("succeeded"), None);
        assert_eq!(failure_reason("failed: boom"), Some("boom"));
        assert_eq!(failure_reason("interrupted"), None);
    }
}
