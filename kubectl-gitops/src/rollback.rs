//! `--rollback-on-failure`: when a sync's (or revert's) objects fail or are not ready in time,
//! or on Ctrl-C, put the namespace back at an earlier revision. The rollback is a revert: the
//! revision's recorded manifests go through the same plan (validation, ownership, pruning,
//! phases and waves) and the same execution, under the lease the failed run handed on, with
//! its own time budget; only the question is not asked again (the user asked for it with the
//! flag) and the record says why it happened.

use std::time::Duration;

use shared::{Error, Result};

use crate::cluster::Cluster;
use crate::execute::{self, Lease, Outcome, RecordInfo, SyncOptions};
use crate::plan;
use crate::record::{self, Meta, Records};
use crate::trust::{Enforce, Gate};

/// Where a failure goes back to: for a sync, the newest revision that succeeded; for a revert,
/// the revision that was current before it. `None` when there is none (a first sync).
pub fn target(records: &Records, revert: bool) -> Option<Meta> {
    if revert {
        return records.newest().cloned();
    }
    records
        .trusted
        .iter()
        .rev()
        .find(|m| m.succeeded())
        .cloned()
}

/// One line for a sync of `tag` when an earlier sync of it failed and was rolled back: which
/// revision, how it failed, where it went back to.
pub fn failed_before(records: &Records, tag: &str) -> Option<String> {
    let m = records
        .trusted
        .iter()
        .rev()
        .find(|m| m.tag == tag && m.rolled_back_to.is_some())?;
    Some(format!(
        "tag {tag} was synced before as revision {} ({}) and rolled back to revision {}; \
         syncing it again (--force: without this warning)",
        m.revision,
        m.outcome,
        m.rolled_back_to.unwrap_or_default()
    ))
}

/// What a rollback needs besides the cluster.
pub struct Request<'a> {
    pub to: &'a Meta,
    /// The revision that failed (as recorded; `None` when it could not be recorded).
    pub failed: Option<u64>,
    /// The plan options of the failed run, so the rollback validates as it did.
    pub plan: plan::Options,
    pub adopt: bool,
    pub force_conflicts: bool,
    pub concurrency: usize,
    pub history_limit: u32,
    pub timeout: Duration,
    pub user: String,
    /// The failed run's signature enforcement: the revision rolled back to is held to the
    /// namespace's trust policy as `revert` holds it.
    pub enforce: Enforce,
}

impl Request<'_> {
    /// `revision 3 (tag deploy/dev/...)`.
    pub fn describe(&self) -> String {
        format!("revision {} (tag {})", self.to.revision, self.to.tag)
    }

    /// The rollback's recorded outcome.
    fn outcome(&self) -> String {
        match self.failed {
            Some(m) => format!(
                "rolled back to {} after failed revision {m}",
                self.describe()
            ),
            None => format!("rolled back to {} after a failed run", self.describe()),
        }
    }
}

/// Reverts to `req.to` and waits for it, holding `lease` (the failed run's, or a new one when
/// that run held none). The outcome says whether the rollback itself became ready.
pub async fn run(
    cluster: &mut Cluster,
    ns: &str,
    req: &Request<'_>,
    lease: Option<crate::lock::Guard>,
) -> Result<Outcome> {
    // A Ctrl-C while the rollback is planned stops it before it writes: execution only
    // counts the ones that come after it starts.
    let seen = crate::interrupt::count();
    let planned = async {
        // As revert does: the record's own signature check, before its manifests are read.
        let gate = Gate::for_revision(
            &cluster.client,
            ns,
            req.to.revision,
            &req.to.tag,
            req.to.signature.clone(),
            req.enforce,
        )
        .await?;
        let manifests = record::load(cluster, ns, req.to).await?;
        let mut opts = req.plan.clone();
        opts.namespace = ns.to_string();
        let plan = plan::build(cluster, manifests, &opts).await?;
        gate.check_plan(&cluster.client, &plan).await?;
        execute::check_blockers(&plan, req.adopt, req.force_conflicts)?;
        if crate::interrupt::count() > seen {
            return Err(Error::refused(
                "interrupted (Ctrl-C) before the rollback wrote anything",
            ));
        }
        Ok::<_, Error>((plan, gate.record))
    }
    .await;
    let (plan, signature) = match planned {
        Ok(planned) => planned,
        Err(e) => {
            if let Some(guard) = lease {
                guard.release().await;
            }
            return Err(e);
        }
    };
    let opts = SyncOptions {
        force_conflicts: req.force_conflicts,
        concurrency: req.concurrency,
        history_limit: req.history_limit,
        wait: true,
        timeout: req.timeout,
    };
    let info = RecordInfo {
        tag: req.to.tag.clone(),
        commit: req.to.commit.clone(),
        user: req.user.clone(),
        reverted_to: Some(req.to.revision),
        success: req.outcome(),
        rollback_to: None,
        signature,
    };
    let lease = match lease {
        Some(guard) => Lease::Held(Box::new(guard)),
        None => Lease::Take {
            keep_on_failure: false,
        },
    };
    execute::execute(cluster, &plan, &opts, info, lease).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(revision: u64, tag: &str, outcome: &str) -> Meta {
        Meta {
            revision,
            tag: tag.into(),
            commit: "c".into(),
            time: "t".into(),
            user: "u".into(),
            outcome: outcome.into(),
            objects: Vec::new(),
            object_count: None,
            objects_gz: None,
            parts: 1,
            reverted_to: None,
            signature: None,
            hooks: Vec::new(),
            rolled_back_to: None,
        }
    }

    #[test]
    fn a_sync_goes_back_to_the_newest_success_a_revert_to_what_was_current() {
        let records = Records {
            trusted: vec![
                meta(1, "a", "succeeded"),
                meta(
                    2,
                    "b",
                    "rolled back to revision 1 (tag a) after failed revision 1",
                ),
                meta(3, "c", "failed: Deployment.apps/x/web: ImagePullBackOff"),
                meta(4, "d", "interrupted"),
            ],
            ..Records::default()
        };
        assert_eq!(target(&records, false).unwrap().revision, 2);
        assert_eq!(target(&records, true).unwrap().revision, 4);
        let first = Records {
            trusted: vec![meta(1, "a", "failed: not ready within 5s: x")],
            ..Records::default()
        };
        assert!(target(&first, false).is_none());
        assert!(target(&Records::default(), true).is_none());
    }

    #[test]
    fn a_tag_rolled_back_before_is_named_with_how_it_failed() {
        let mut failed = meta(2, "b", "failed: Deployment.apps/x/web: ImagePullBackOff");
        failed.rolled_back_to = Some(1);
        let records = Records {
            trusted: vec![
                meta(1, "a", "succeeded"),
                failed,
                meta(3, "a", "rolled back"),
            ],
            ..Records::default()
        };
        assert_eq!(
            failed_before(&records, "b").unwrap(),
            "tag b was synced before as revision 2 (failed: Deployment.apps/x/web: \
             ImagePullBackOff) and rolled back to revision 1; syncing it again (--force: without \
             this warning)"
        );
        assert!(failed_before(&records, "a").is_none());
    }
}
