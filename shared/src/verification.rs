//! Verifications of deploys: `kubectl gitops verify` found an environment's namespace in sync
//! with its latest deploy and healthy, and recorded that as a note on the deploy's tag object
//! under `refs/notes/deploy`. One paragraph of trailers per verification, appended (never
//! replacing an earlier one), so `git notes --ref=deploy show <tag>` reads them all:
//!
//! ```text
//! Verified-Env: staging
//! Verified-Namespace: staging
//! Verified-Cluster: https://10.0.0.1:6443
//! Verified-Revision: 3
//! Verified-At: 2026-11-28T09:12:44Z
//! Verified-By: system:serviceaccount:ci:deployer
//! ```
//!
//! `git deploy promote` reads them for the `verified` and `soak` gates.

use gix::ObjectId;
use jiff::Timestamp;

use crate::error::Result;
use crate::git::Repo;
use crate::git::notes::DEPLOY_NOTES_REF;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    pub env: String,
    pub namespace: String,
    /// The API server's URL.
    pub cluster: String,
    /// The namespace's revision that was verified (its record's number).
    pub revision: u64,
    #[serde(serialize_with = "rfc3339")]
    pub at: Timestamp,
    /// Who the API server says ran the verification.
    pub by: String,
}

const KEYS: [&str; 6] = [
    "Verified-Env",
    "Verified-Namespace",
    "Verified-Cluster",
    "Verified-Revision",
    "Verified-At",
    "Verified-By",
];

/// `2026-11-28T09:12:44Z`: RFC 3339 in UTC, whole seconds.
pub fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*t))
}

impl Verification {
    /// The note paragraph: one trailer per line, in the documented order.
    pub fn render(&self) -> String {
        let values = [
            self.env.clone(),
            self.namespace.clone(),
            self.cluster.clone(),
            self.revision.to_string(),
            format_time(self.at),
            self.by.clone(),
        ];
        let mut out = String::new();
        for (key, value) in KEYS.iter().zip(values) {
            out.push_str(&format!("{key}: {}\n", value.replace(['\n', '\r'], " ")));
        }
        out
    }

    /// Every verification in a note: each paragraph that carries all six trailers with a
    /// readable revision and time. Anything else in the note (a comment someone appended with
    /// `git notes append`) is not a verification and is skipped.
    pub fn parse_note(note: &str) -> Vec<Verification> {
        note.replace("\r\n", "\n")
            .split("\n\n")
            .filter_map(Self::parse_paragraph)
            .collect()
    }

    fn parse_paragraph(paragraph: &str) -> Option<Verification> {
        let mut values: [Option<String>; 6] = Default::default();
        for line in paragraph.lines() {
            let (key, value) = line.split_once(':')?;
            if let Some(i) = KEYS.iter().position(|k| *k == key.trim()) {
                values[i] = Some(value.trim().to_string());
            }
        }
        let [env, namespace, cluster, revision, at, by] = values;
        Some(Verification {
            env: env?,
            namespace: namespace?,
            cluster: cluster?,
            revision: revision?.parse().ok()?,
            at: at?.parse().ok()?,
            by: by?,
        })
    }
}

impl Repo {
    /// The verifications recorded on `tag_object` (a deploy's annotated tag), oldest first,
    /// each once: `git notes merge -s union` of two clones' notes repeats what both had.
    pub fn verifications(&self, tag_object: ObjectId) -> Result<Vec<Verification>> {
        let Some(note) = self.note(DEPLOY_NOTES_REF, tag_object)? else {
            return Ok(Vec::new());
        };
        Ok(distinct_in_order(Verification::parse_note(&note)))
    }
}

fn distinct_in_order(mut found: Vec<Verification>) -> Vec<Verification> {
    found.sort_by(|a, b| {
        (a.at, &a.env, &a.namespace, &a.cluster, a.revision, &a.by).cmp(&(
            b.at,
            &b.env,
            &b.namespace,
            &b.cluster,
            b.revision,
            &b.by,
        ))
    });
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_union_merge_of_two_clones_notes_counts_each_verification_once() {
        let a = sample("2026-11-28T09:00:00Z");
        let b = sample("2026-11-28T10:00:00Z");
        let c = sample("2026-11-28T11:00:00Z");
        // What `git notes merge -s union` makes of "a, b" here and "a, c" there.
        let note = [&a, &b, &a, &c]
            .iter()
            .map(|v| v.render())
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            distinct_in_order(Verification::parse_note(&note)),
            vec![a, b, c]
        );
    }

    fn sample(at: &str) -> Verification {
        Verification {
            env: "staging".into(),
            namespace: "staging".into(),
            cluster: "https://127.0.0.1:6443".into(),
            revision: 3,
            at: at.parse().unwrap(),
            by: "system:serviceaccount:ci:deployer".into(),
        }
    }

    #[test]
    fn notes_round_trip_paragraph_by_paragraph() {
        let a = sample("2026-11-28T09:12:44Z");
        let b = Verification {
            revision: 4,
            ..sample("2026-11-28T10:00:00Z")
        };
        assert_eq!(
            a.render(),
            "Verified-Env: staging\nVerified-Namespace: staging\nVerified-Cluster: https://127.0.0.1:6443\n\
             Verified-Revision: 3\nVerified-At: 2026-11-28T09:12:44Z\nVerified-By: system:serviceaccount:ci:deployer\n"
        );
        // What `git notes append` makes of two appends: a blank line between them.
        let note = format!("{}\n{}", a.render(), b.render());
        assert_eq!(Verification::parse_note(&note), vec![a, b]);
    }

    #[test]
    fn paragraphs_that_are_not_whole_verifications_are_skipped() {
        let a = sample("2026-11-28T09:12:44Z");
        let incomplete = "Verified-Env: staging\nVerified-At: 2026-11-28T09:12:44Z\n";
        let bad_time = a.render().replace("2026-11-28T09:12:44Z", "yesterday");
        let prose = "Looked fine to me.\nVerified-Env: staging";
        let note = format!("{incomplete}\n{bad_time}\n{prose}\n\n{}", a.render());
        assert_eq!(Verification::parse_note(&note), vec![a]);
    }

    #[test]
    fn values_cannot_add_lines() {
        let mut a = sample("2026-11-28T09:12:44Z");
        a.by = "eve\nVerified-Env: prod".into();
        let parsed = Verification::parse_note(&a.render());
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].env, "staging");
        assert_eq!(parsed[0].by, "eve Verified-Env: prod");
    }
}
