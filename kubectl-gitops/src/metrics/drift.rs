//! Drift of each followed namespace from its current revision, computed as `status` computes
//! it: the record's manifests planned against the live namespace (reads, and a server-side
//! dry-run for each object the LIST cannot prove unchanged). It is the expensive part, so it
//! runs on `--drift-interval`, plus once for every new revision, a few namespaces at a time,
//! and (when serving) never while a sync or revert holds the namespace's Lease: it would see
//! the namespace half way, and the Lease's release triggers the check. `--once` takes the
//! namespace as it is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use shared::{Error, Result};

use super::Exporter;
use crate::cluster::Cluster;
use crate::plan::{self, Action};

/// Objects of a revision by kind of drift (README: status).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drift {
    /// Would be updated by a sync of the revision.
    pub changed: usize,
    /// Would be created.
    pub missing: usize,
    /// Ours, but not in the revision: would be pruned.
    pub extra: usize,
    /// Objects of the revision's kinds that no ApplySet claims.
    pub unowned: usize,
}

/// A drift computed for a revision.
#[derive(Debug, Clone)]
pub struct Checked {
    pub revision: u64,
    pub drift: Drift,
    /// When (Unix seconds).
    pub at: f64,
}

/// Namespaces checked at once.
const NAMESPACES_AT_ONCE: usize = 4;

/// Where drift problems of `ns` are filed.
pub fn source(ns: &str) -> String {
    format!("drift of {ns}")
}

pub async fn follow(exporter: Arc<Exporter>) {
    let interval = exporter
        .options
        .drift_interval
        .expect("drift is followed only with an interval");
    let mut changed = exporter.changed.subscribe();
    // When each namespace was last attempted, and for which revision.
    let mut attempted: std::collections::BTreeMap<String, (u64, Instant)> = Default::default();
    loop {
        let now = Instant::now();
        let due: Vec<(String, u64)> = {
            let state = exporter.state();
            state
                .namespaces
                .iter()
                .filter_map(|ns| {
                    let current = state.records.get(ns)?.current.as_ref()?.revision;
                    let fresh = attempted
                        .get(ns)
                        .is_some_and(|(r, at)| *r == current && now < *at + interval);
                    (!fresh).then(|| (ns.clone(), current))
                })
                .collect()
        };
        // A few namespaces at a time: each check has its own request concurrency.
        let runs: Vec<(String, u64)> = due
            .into_iter()
            .filter(|(ns, _)| !(exporter.options.defer_while_locked && exporter.locked(ns)))
            .collect();
        for (ns, revision) in &runs {
            attempted.insert(ns.clone(), (*revision, Instant::now()));
        }
        let mut checks = futures::stream::iter(runs.into_iter().map(|(ns, _)| {
            let exporter = &exporter;
            async move {
                let result = compute(exporter, &ns).await;
                (ns, result)
            }
        }))
        .buffer_unordered(NAMESPACES_AT_ONCE);
        while let Some((ns, result)) = checks.next().await {
            match result {
                Ok(checked) => {
                    exporter.clear_problem(&source(&ns));
                    exporter.state().drift.insert(ns, checked);
                }
                Err(e) => {
                    exporter.state().drift.remove(&ns);
                    exporter.problem(source(&ns), e.message);
                }
            }
            exporter.bump();
        }
        drop(checks);
        let next = attempted
            .values()
            .map(|(_, at)| (*at + interval).saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(interval)
            .max(Duration::from_millis(100));
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            r = changed.changed() => if r.is_err() { return },
        }
    }
}

/// The drift of `ns` from its newest readable revision.
async fn compute(exporter: &Exporter, ns: &str) -> Result<Checked> {
    // Discovery each time: a CRD installed since the last check is then known.
    let mut cluster = Cluster::discover(exporter.client.clone()).await?;
    let records = crate::record::list(&cluster, ns).await?;
    let Some(current) = records.newest().cloned() else {
        return Err(Error::invalid(format!(
            "namespace {ns} has no readable revision record"
        )));
    };
    let manifests = crate::record::load(&cluster, ns, &current).await?;
    let planning = &exporter.options.planning;
    // As `status` plans: the record's objects may reach where the sync was allowed to.
    let opts = plan::Options {
        namespace: ns.to_string(),
        allow_other_namespaces: true,
        allow_cluster_scoped: true,
        create_namespace: false,
        allow_empty: true,
        concurrency: planning.concurrency as usize,
        prune_protected: false,
        prune: true,
        check_all: planning.check_all,
        for_write: false,
        keep_unchanged_live: false,
        replace_immutable: false,
        report_rejections: true,
        // Nothing here shows what a create would make.
        keep_create_answers: false,
    };
    let plan = plan::build(&mut cluster, manifests, &opts).await?;
    Ok(Checked {
        revision: current.revision,
        drift: Drift {
            // An object the server rejects as recorded is drift status lists as `cannot
            // re-apply`: here it counts as changed.
            changed: plan.count(Action::Update) + plan.rejected.len(),
            missing: plan.count(Action::Create),
            extra: plan.count(Action::Prune),
            unowned: plan.unowned.len(),
        },
        at: jiff::Timestamp::now().as_millisecond() as f64 / 1000.0,
    })
}
