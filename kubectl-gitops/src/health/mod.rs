//! Readiness of applied objects, for `--wait` and `status`: ready, in progress or failed,
//! with a short reason and a message.
//!
//! The verdicts are kstatus's (sigs.k8s.io/cli-utils/pkg/kstatus/status: Current, InProgress,
//! Failed), judged from the status the controllers publish, never from the spec alone. Its own
//! test table is ported in `rules/kstatus_table.rs` and every case agrees, except two
//! deliberate differences:
//! - a Job is ready only when `Complete` (kstatus: as soon as it has started), so a deploy does
//!   not move on while a migration Job still runs (Helm's `--wait-for-jobs` does the same);
//! - a bare Pod that finished `Failed` is failed (kstatus: Current, since it is finished), as
//!   it will not run again and waiting for it could only end in the timeout.
//!
//! "Failed" means waiting cannot help: what kstatus calls Failed (`Stalled=True`, a
//! Deployment's `ProgressDeadlineExceeded`, a Job's `Failed` condition, a crash-looping
//! running Pod, a Pod unschedulable for longer than the 15 s schedule window, a CRD whose names
//! are refused), and our early failure signals, where kstatus would keep waiting until the
//! timeout although the cluster already knows:
//! - a Pod (bare, or of a Deployment's new ReplicaSet) with a container waiting on
//!   `ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`, `ErrImageNeverPull` or
//!   `CreateContainerConfigError` when the Pod is older than [`rules::STUCK_GRACE_SECS`];
//! - a Pod (same) with a container in `CrashLoopBackOff` after [`rules::CRASH_LOOP_RESTARTS`]
//!   restarts (a Deployment's Pods may crash a few times while what they depend on starts);
//! - a Job whose `FailureTarget` condition is True (its `Failed` condition follows once its
//!   Pods are gone);
//! - a PersistentVolumeClaim whose phase is `Lost`.
//!
//! The rules (`rules/`) are pure: the object, the time and, for a Deployment, its ReplicaSets
//! and Pods in; a [`Verdict`] out. Reading those from the cluster is `live.rs`; `wait.rs` is
//! the loop of `--wait`, judging what the watches of `watch.rs` hold (and polling what it may
//! not watch).
//!
//! Tests: the rules are unit-tested in `rules/` (kstatus's table and our own cases), including
//! what no controller of a real cluster writes, such as `Stalled` on a built-in kind. End to
//! end, the test cluster (tests/cluster) runs the real controllers, scheduler and KWOK nodes,
//! and its image-tag convention (`broken`, `crash`, `fail`) makes rollouts fail for real: the
//! tests in tests/kubectl_gitops/health.rs and rollouts.rs sync workloads and let the cluster
//! produce each situation. They never write a status by hand to fake a rollout.

mod live;
mod rules;
mod verdict;
mod wait;
mod watch;

pub use live::{judge_known, judge_live};
pub use verdict::{Related, Status, Verdict};
pub use wait::{End, Report, Target, Waited, wait};
