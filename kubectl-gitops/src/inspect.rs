//! Drift and health of a namespace against a set of manifests: what `status` reports, and
//! what `verify` requires to be empty and ready before it records a verification. Read-only:
//! the plan is made with reads and dry-runs, which never persist.

use futures::StreamExt;
use shared::Result;

use crate::cluster::Cluster;
use crate::health::{self, Verdict};
use crate::manifest::Manifest;
use crate::plan::{self, Action};

/// How long one object's health may take to judge (listing a Deployment's ReplicaSets and
/// Pods included).
const JUDGE_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Inspection {
    /// Objects whose live state differs from the manifests.
    pub changed: Vec<String>,
    /// Objects in the manifests that are not in the namespace.
    pub missing: Vec<String>,
    /// Objects we applied before that left the manifests but are still there.
    pub extra: Vec<String>,
    /// Live objects of the listed kinds that no ApplySet owns (reported, not drift).
    pub unowned: Vec<String>,
    /// Objects the server rejects as the manifests have them (object, the server's words):
    /// drift that re-applying cannot fix until the manifest or the live object changes.
    pub rejected: Vec<(String, String)>,
    /// Each object of the manifests and its health.
    pub health: Vec<(String, Verdict)>,
}

impl Inspection {
    pub fn in_sync(&self) -> bool {
        self.changed.is_empty()
            && self.missing.is_empty()
            && self.extra.is_empty()
            && self.rejected.is_empty()
    }

    pub fn unhealthy(&self) -> usize {
        self.health.iter().filter(|(_, v)| !v.is_ready()).count()
    }

    /// One line per reason the namespace is not in sync and healthy.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (label, list) in [
            ("changed", &self.changed),
            ("missing", &self.missing),
            ("extra", &self.extra),
        ] {
            for k in list {
                out.push(format!("{label}: {k}"));
            }
        }
        for (k, why) in &self.rejected {
            out.push(format!("cannot re-apply: {k}: {why}"));
        }
        for (k, v) in self.health.iter().filter(|(_, v)| !v.is_ready()) {
            out.push(format!("{}: {k}: {}", v.status.as_str(), v.summary()));
        }
        out
    }
}

/// Compares `manifests` with namespace `namespace` as a sync would (every object allowed:
/// nothing is written) and judges the health of each object the manifests name.
pub async fn inspect(
    cluster: &mut Cluster,
    namespace: &str,
    manifests: Vec<Manifest>,
    concurrency: usize,
    check_all: bool,
) -> Result<Inspection> {
    let opts = plan::Options {
        namespace: namespace.to_string(),
        allow_other_namespaces: true,
        allow_cluster_scoped: true,
        create_namespace: false,
        allow_empty: true,
        concurrency,
        prune_protected: false,
        prune: true,
        check_all,
        for_write: false,
        keep_unchanged_live: true,
        replace_immutable: false,
        report_rejections: true,
        // Nothing here shows what a create would make.
        keep_create_answers: false,
    };
    let plan = plan::build(cluster, manifests, &opts).await?;
    let keys = |a: Action| {
        plan.items
            .iter()
            .filter(|i| i.action == a)
            .map(|i| i.key.to_string())
            .collect::<Vec<_>>()
    };
    let cluster = &*cluster;
    // Every object of the manifests, rejected ones too (their live copies still run); a
    // hook's run is judged when it runs, and its record outlives it.
    let judged = plan
        .items
        .iter()
        .filter(|i| i.desired.is_some() && !i.is_hook())
        .map(|i| (&i.key, &i.live))
        .chain(plan.rejected.iter().map(|r| (&r.key, &r.live)));
    let health: Vec<(String, Verdict)> = futures::stream::iter(judged)
        .map(|(key, live)| async move {
            let verdict = match live {
                Some(live) => health::judge_live(cluster, live, JUDGE_LIMIT).await,
                None => Verdict::failed("Missing", "not in the namespace"),
            };
            (key.to_string(), verdict)
        })
        .buffered(concurrency)
        .collect()
        .await;
    Ok(Inspection {
        changed: keys(Action::Update),
        missing: keys(Action::Create),
        extra: keys(Action::Prune),
        unowned: plan.unowned.iter().map(|k| k.to_string()).collect(),
        rejected: plan
            .rejected
            .iter()
            .map(|r| (r.key.to_string(), r.reason().to_string()))
            .collect(),
        health,
    })
}
