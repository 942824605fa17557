//! What the rules say about one object, and what they are told besides the object itself.

use jiff::Timestamp;
use serde_json::Value;

/// kstatus's Current, InProgress and Failed, in our words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ready,
    /// Not ready yet, and waiting may still change that.
    InProgress,
    /// Will not become ready without someone changing something: terminal for kstatus, or one
    /// of our early failure signals (see the module documentation).
    Failed,
}

impl Status {
    /// How `status` and its JSON name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ready => "ready",
            Status::InProgress => "in progress",
            Status::Failed => "failed",
        }
    }

    /// How the `--wait` table names it (kstatus's spelling).
    pub fn label(self) -> &'static str {
        match self {
            Status::Ready => "Ready",
            Status::InProgress => "InProgress",
            Status::Failed => "Failed",
        }
    }
}

/// The verdict on one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    /// One CamelCase word a script or a rollback can act on: the cluster's own reason where
    /// there is one (`ImagePullBackOff`, `CrashLoopBackOff`, `Unschedulable`,
    /// `BackoffLimitExceeded`, `ProgressDeadlineExceeded`), else kstatus's (`LessReady`,
    /// `ExtraPods`, `JobNotStarted`…). Empty for most ready objects.
    pub reason: String,
    /// A sentence for humans: what is missing or what went wrong, naming the Pod and container
    /// when one is at fault.
    pub message: String,
}

impl Verdict {
    pub fn ready(reason: impl Into<String>, message: impl Into<String>) -> Verdict {
        Verdict::new(Status::Ready, reason, message)
    }

    pub fn in_progress(reason: impl Into<String>, message: impl Into<String>) -> Verdict {
        Verdict::new(Status::InProgress, reason, message)
    }

    pub fn failed(reason: impl Into<String>, message: impl Into<String>) -> Verdict {
        Verdict::new(Status::Failed, reason, message)
    }

    fn new(status: Status, reason: impl Into<String>, message: impl Into<String>) -> Verdict {
        Verdict {
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.status == Status::Ready
    }

    /// `reason: message` for one-line reports, either alone when the other is empty or says
    /// the same.
    pub fn summary(&self) -> String {
        match (self.reason.as_str(), self.message.as_str()) {
            ("", m) => m.to_string(),
            (r, "") => r.to_string(),
            (r, m) if r == m => m.to_string(),
            (r, m) => format!("{r}: {m}"),
        }
    }
}

/// What a rule may know besides the object.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The moment of judgement, for the rules that depend on an object's age (a Pod unscheduled
    /// for longer than the schedule window, a container stuck pulling its image). Passed in
    /// so that the rules stay pure and a test can put an object at any age.
    pub now: Timestamp,
    /// For a Deployment: its ReplicaSets and Pods, when the caller could read them.
    pub related: Option<&'a Related>,
}

impl Context<'_> {
    /// The system clock, nothing related.
    pub fn now() -> Context<'static> {
        Context {
            now: Timestamp::now(),
            related: None,
        }
    }
}

/// Objects that tell why a Deployment does not progress: the ReplicaSets and Pods its selector
/// matches (the rules themselves pick the ones it controls).
#[derive(Debug, Clone, Default)]
pub struct Related {
    pub replica_sets: Vec<Value>,
    pub pods: Vec<Value>,
}
