//! Running a plan in order: PreSync hooks, the objects (with the Sync hooks), the prunes,
//! PostSync hooks; inside a phase wave by wave, inside a wave by kind. When the plan is
//! ordered (some object carries a hook or wave annotation), each wave must be ready (the
//! `--wait` rules; hook Jobs complete) before the next starts, and the first that is not stops
//! the run. Without annotations everything is applied at once, then pruned, and waited for
//! only with `--wait`, as before waves existed.
//!
//! Waits share one budget, `--timeout`. A hook Job with `activeDeadlineSeconds` brings its own:
//! its wave waits up to that deadline (and a grace for the Job controller to report it), and
//! time beyond the shared budget is not taken from the waves after it.

use std::time::Duration;

use futures::StreamExt;
use shared::Error;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::execute::{self, Progress, SyncOptions};
use crate::health::{self, Report};
use crate::hooks::{self, Started};
use crate::lock::Guard;
use crate::phases::Phase;
use crate::plan::{Action, Item, Plan, Step};
use crate::record::HookRun;

/// How long after a hook Job's `activeDeadlineSeconds` its wave still waits for the Job
/// controller to mark it failed (`DeadlineExceeded`).
const DEADLINE_GRACE: Duration = Duration::from_secs(15);

/// Why a run stopped before the end.
pub enum Stop {
    /// An API error, a refusal, an object that could not be replaced...
    Failed(Error),
    /// A wave (or, without waves, `--wait`) was not ready: failed, timed out or interrupted.
    NotReady {
        report: Report,
        /// The phase and wave, when the plan is ordered.
        step: Option<(Phase, i32)>,
    },
    /// Ctrl-C outside a wait.
    Interrupted,
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Failed(e)
    }
}

/// The time left for waiting, shared by every wave of a run.
struct Budget {
    deadline: Instant,
}

impl Budget {
    fn new(timeout: Duration) -> Budget {
        Budget {
            deadline: Instant::now() + timeout,
        }
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Runs the plan's phases and waves after the ApplySet parent is written, until the first
/// failure. `seen`: the Ctrl-C count when the run began.
pub async fn run(
    cluster: &mut Cluster,
    plan: &Plan,
    opts: &SyncOptions,
    progress: &mut Progress,
    seen: u32,
    guard: Option<&Guard>,
) -> Result<(), Stop> {
    let mut budget = Budget::new(opts.timeout);
    for phase in [Phase::PreSync, Phase::Sync, Phase::PostSync] {
        // What the new revision no longer has goes once Sync is done, before PostSync hooks.
        if phase == Phase::PostSync {
            prune(cluster, plan, progress, guard).await?;
        }
        for step in plan.steps(phase) {
            run_step(
                cluster,
                plan,
                &step,
                opts,
                progress,
                &mut budget,
                seen,
                guard,
            )
            .await?;
        }
    }
    if opts.wait && !plan.ordered {
        let targets: Vec<health::Target> = plan
            .items
            .iter()
            .filter(|i| i.desired.is_some())
            .map(wait_target)
            .collect();
        // As each wave of an ordered plan says it: a pipeline's log (no terminal, so no
        // progress display) shows what the run is doing while it waits.
        say_waiting("", targets.len());
        let mut report = health::wait(
            cluster,
            &targets,
            budget.remaining(),
            crate::interrupt::after(seen),
        )
        .await?;
        // What ran out is --timeout, whatever applying took of it.
        report.timeout = opts.timeout;
        progress.note_health(&report);
        if !report.is_ready() {
            return Err(Stop::NotReady { report, step: None });
        }
    }
    Ok(())
}

/// After a failure: the SyncFail hooks, wave by wave, with a budget of their own (the run's
/// may be spent). Their failures are recorded, not raised: the run has failed already.
pub async fn sync_fail(
    cluster: &mut Cluster,
    plan: &Plan,
    opts: &SyncOptions,
    progress: &mut Progress,
    guard: Option<&Guard>,
) {
    let steps = plan.steps(Phase::SyncFail);
    if steps.is_empty() {
        return;
    }
    let seen = crate::interrupt::count();
    let mut budget = Budget::new(opts.timeout);
    for step in steps {
        match run_step(
            cluster,
            plan,
            &step,
            opts,
            progress,
            &mut budget,
            seen,
            guard,
        )
        .await
        {
            Ok(()) => {}
            Err(Stop::Interrupted) => return,
            Err(Stop::NotReady { report, .. }) => {
                if let Some(e) = report.error() {
                    crate::log::warn(format!("SyncFail hooks: {}", e.message));
                }
                if report.end == health::End::Interrupted {
                    return;
                }
            }
            Err(Stop::Failed(e)) => crate::log::warn(format!("SyncFail hooks: {}", e.message)),
        }
    }
}

/// One wave: its hooks started and its objects applied, kind by kind (CRDs Established before
/// anything else of the wave), then, when the plan is ordered, everything in it waited for.
/// Each kind's batch first checks that the lease is still ours.
#[allow(clippy::too_many_arguments)]
async fn run_step(
    cluster: &mut Cluster,
    plan: &Plan,
    step: &Step,
    opts: &SyncOptions,
    progress: &mut Progress,
    budget: &mut Budget,
    seen: u32,
    guard: Option<&Guard>,
) -> Result<(), Stop> {
    let items: Vec<&Item> = step.items.iter().map(|&i| &plan.items[i]).collect();
    if plan.ordered {
        crate::log::info(
            1,
            format!("{} wave {}: {} objects", step.phase, step.wave, items.len()),
        );
    }
    let mut started: Vec<(&Item, Started)> = Vec::new();
    let mut ranks: Vec<u8> = items.iter().map(|i| i.rank).collect();
    ranks.sort();
    ranks.dedup();
    for rank in ranks {
        execute::checkpoint(guard, &format!("rank-{rank}")).await?;
        let batch: Vec<&Item> = items
            .iter()
            .filter(|i| i.rank == rank)
            .filter(|i| {
                matches!(
                    i.action,
                    Action::Create | Action::Update | Action::Replace | Action::Hook
                )
            })
            .filter(|i| i.action == Action::Hook || !progress.applied.contains(&i.key.to_string()))
            .copied()
            .collect();
        let shared: &Cluster = cluster;
        let deadline = budget.deadline;
        let mut results = futures::stream::iter(batch.iter().map(|item| async move {
            let r = match item.action {
                Action::Hook => hooks::start(shared, &plan.applyset_id, item, step.phase, deadline)
                    .await
                    .map(Some),
                Action::Replace => {
                    execute::replace_item(shared, item, opts.force_conflicts, deadline)
                        .await
                        .map(|()| None)
                }
                _ => execute::apply_item(shared, item, opts.force_conflicts)
                    .await
                    .map(|()| None),
            };
            (*item, r)
        }))
        .buffer_unordered(opts.concurrency);
        // Stop at the first failure: with the API server gone, going on would spend the
        // retry budget once per remaining object. Requests still in flight are dropped; they
        // count as not applied, and a rerun converges either way.
        while let Some((item, r)) = results.next().await {
            match r? {
                Some(run) => started.push((item, run)),
                None => {
                    crate::log::info(4, format!("applied {}", item.key));
                    progress.applied.push(item.key.to_string());
                }
            }
        }
        drop(results);
        execute::after_crds(cluster, &batch).await?;
    }
    if !plan.ordered {
        return Ok(());
    }
    let targets: Vec<health::Target> = items
        .iter()
        .filter(|i| i.action != Action::Hook)
        .map(|i| wait_target(i))
        .chain(started.iter().map(|(item, s)| {
            health::Target::of(s.key.clone(), s.resolved.clone(), item.desired.as_ref())
        }))
        .collect();
    let remaining = budget.remaining();
    let own = started
        .iter()
        .filter_map(|(item, _)| hook_deadline(item))
        .max()
        .filter(|own| *own > remaining);
    say_waiting(
        &format!("{} wave {}: ", step.phase, step.wave),
        targets.len(),
    );
    let began = Instant::now();
    let mut report = health::wait(
        cluster,
        &targets,
        own.unwrap_or(remaining),
        crate::interrupt::after(seen),
    )
    .await?;
    match own {
        Some(own) => {
            budget.deadline += began.elapsed();
            report.timeout = own;
        }
        // What runs out is --timeout, shared by the waves.
        None => report.timeout = opts.timeout,
    }
    progress.note_health(&report);
    for (item, run) in &started {
        let waited = report.waited.iter().find(|w| w.key == run.key);
        let ready = waited.is_some_and(|w| w.verdict.is_ready());
        let outcome = match (ready, report.end) {
            (true, _) => "succeeded",
            (false, health::End::Interrupted) => "interrupted",
            (false, _) => "failed",
        };
        let ran = began.duration_since(run.since)
            + waited
                .and_then(|w| w.settled)
                .unwrap_or_else(|| began.elapsed());
        progress.hooks.push(HookRun {
            object: run.key.to_string(),
            phase: step.phase.to_string(),
            outcome: outcome.to_string(),
            seconds: (ran.as_secs_f64() * 10.0).round() / 10.0,
        });
        if report.end != health::End::Interrupted
            && let Err(e) = hooks::finish(cluster, item, run, ready).await
        {
            crate::log::warn(format!("hook {}: {}", run.key, e.message));
        }
    }
    if report.is_ready() {
        Ok(())
    } else {
        Err(Stop::NotReady {
            report,
            step: Some((step.phase, step.wave)),
        })
    }
}

/// A hook Job's own time budget: `activeDeadlineSeconds` and a grace.
fn hook_deadline(item: &Item) -> Option<Duration> {
    let obj = item.desired.as_ref()?;
    if obj["kind"] != "Job" {
        return None;
    }
    let secs = obj["spec"]["activeDeadlineSeconds"].as_u64()?;
    Some(Duration::from_secs(secs) + DEADLINE_GRACE)
}

/// Members that left the manifests, after the last wave of the Sync phase, in reverse wave
/// order (and reverse kind order inside a wave): what depends on others goes first.
/// The lease is checked before the first prune and, from what the renewer last found, before
/// each one after it.
async fn prune(
    cluster: &Cluster,
    plan: &Plan,
    progress: &mut Progress,
    guard: Option<&Guard>,
) -> Result<(), Stop> {
    let mut prunes: Vec<&Item> = plan
        .items
        .iter()
        .filter(|i| i.action == Action::Prune)
        .collect();
    prunes.sort_by(|a, b| {
        (b.placement.wave, b.rank, &b.key).cmp(&(a.placement.wave, a.rank, &a.key))
    });
    if !prunes.is_empty() {
        execute::checkpoint(guard, "prune").await?;
    }
    for item in prunes {
        if let Some(g) = guard {
            g.still_held().await?;
        }
        execute::prune_item(cluster, item).await?;
        crate::log::info(4, format!("pruned {}", item.key));
        progress.pruned.push(item.key.to_string());
    }
    Ok(())
}

/// `waiting for 3 objects`, after `prefix` (`Sync wave 1: `).
fn say_waiting(prefix: &str, n: usize) {
    eprintln!(
        "{prefix}waiting for {n} object{}",
        if n == 1 { "" } else { "s" }
    );
}

/// What `--wait` watches for an applied item: it carries the labels of what was applied.
fn wait_target(item: &Item) -> health::Target {
    health::Target::of(
        item.key.clone(),
        item.resolved.clone(),
        item.desired.as_ref(),
    )
}
