//! Sync phases, waves and hooks: which annotations put an object where in a sync. Every
//! source of manifests goes through [`classify`] (a tag's files, a kustomize render, a Helm
//! chart's rendered hooks, a revision record), so the mapping lives here and nowhere else.
//!
//! Annotations read, ours first (ours win when both are set), then Argo CD's, then Helm's:
//! - phase: `gitops.kubectl.io/hook` / `argocd.argoproj.io/hook` = `PreSync`, `Sync`,
//!   `PostSync`, `SyncFail` or `Skip`, a comma-separated list for a hook that runs in several
//!   phases (Argo CD's `PreDelete`/`PostDelete` are ignored with a note: no sync deletes an
//!   application); `helm.sh/hook`: `pre-install`/`pre-upgrade` = PreSync,
//!   `post-install`/`post-upgrade` = PostSync (as Argo CD maps them, both on every sync, since
//!   a sync cannot tell an install from an upgrade), `test` is never applied, and the other
//!   Helm hook types (`pre-delete`, `post-delete`, `pre-rollback`, `post-rollback`) are skipped
//!   with a note;
//! - wave: `gitops.kubectl.io/sync-wave` / `argocd.argoproj.io/sync-wave`, and for Helm hooks
//!   `helm.sh/hook-weight`: an integer, default 0, negatives allowed;
//! - delete policy of a hook: `gitops.kubectl.io/hook-delete-policy` /
//!   `argocd.argoproj.io/hook-delete-policy` / `helm.sh/hook-delete-policy`, a comma-separated
//!   list of `BeforeHookCreation` (the default), `HookSucceeded`, `HookFailed`, in Argo CD's or
//!   Helm's spelling (`before-hook-creation`, `hook-succeeded`, `hook-failed`);
//! - `gitops.kubectl.io/sync-options` / `argocd.argoproj.io/sync-options`: `Replace=true`
//!   deletes and recreates the object when an apply fails on an immutable field.

use serde_json::Value;

pub const HOOK: &str = "gitops.kubectl.io/hook";
pub const WAVE: &str = "gitops.kubectl.io/sync-wave";
pub const DELETE_POLICY: &str = "gitops.kubectl.io/hook-delete-policy";
pub const SYNC_OPTIONS: &str = "gitops.kubectl.io/sync-options";
const ARGO_HOOK: &str = "argocd.argoproj.io/hook";
const ARGO_WAVE: &str = "argocd.argoproj.io/sync-wave";
const ARGO_DELETE_POLICY: &str = "argocd.argoproj.io/hook-delete-policy";
const ARGO_SYNC_OPTIONS: &str = "argocd.argoproj.io/sync-options";
const HELM_HOOK: &str = "helm.sh/hook";
const HELM_WEIGHT: &str = "helm.sh/hook-weight";
const HELM_DELETE_POLICY: &str = "helm.sh/hook-delete-policy";

/// Label on every hook object a sync creates, valued with the namespace's ApplySet id. Hooks are
/// not ApplySet members (never pruned as such): this label is how a later sync finds the
/// previous run of a hook to delete it, and how `status` tells a hook from drift.
pub const HOOK_LABEL: &str = "gitops.kubectl.io/hook-of";

/// When in a sync an object is applied. SyncFail runs only after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    PreSync,
    Sync,
    PostSync,
    SyncFail,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::PreSync => "PreSync",
            Phase::Sync => "Sync",
            Phase::PostSync => "PostSync",
            Phase::SyncFail => "SyncFail",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        match s {
            "PreSync" => Some(Phase::PreSync),
            "Sync" => Some(Phase::Sync),
            "PostSync" => Some(Phase::PostSync),
            "SyncFail" => Some(Phase::SyncFail),
            _ => None,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a hook's object is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletePolicy {
    /// Delete the previous run's object (and wait until it is gone) before creating it anew,
    /// so a hook with a fixed name runs on every sync.
    pub before_creation: bool,
    pub on_success: bool,
    pub on_failure: bool,
}

impl Default for DeletePolicy {
    fn default() -> Self {
        DeletePolicy {
            before_creation: true,
            on_success: false,
            on_failure: false,
        }
    }
}

impl std::fmt::Display for DeletePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = [
            (self.before_creation, "BeforeHookCreation"),
            (self.on_success, "HookSucceeded"),
            (self.on_failure, "HookFailed"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        f.write_str(&names.join(","))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Sorted, at least one.
    pub phases: Vec<Phase>,
    pub delete: DeletePolicy,
}

/// Where an object goes in a sync.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    pub wave: i32,
    /// Set for hooks; an object without one is applied in the Sync phase and is an ApplySet
    /// member.
    pub hook: Option<Hook>,
    /// `Replace=true`: delete and recreate when an apply fails on an immutable field.
    pub replace: bool,
}

impl Placement {
    /// The phases the object is applied in.
    pub fn phases(&self) -> &[Phase] {
        match &self.hook {
            Some(h) => &h.phases,
            None => &[Phase::Sync],
        }
    }

    pub fn is_hook(&self) -> bool {
        self.hook.is_some()
    }

    /// The phase it is shown and sorted under: its first.
    pub fn first_phase(&self) -> Phase {
        self.phases()[0]
    }
}

/// What the annotations say about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// `None`: never applied (`Skip`, a Helm test, or only hook types a sync does not run).
    pub placement: Option<Placement>,
    /// Why it is skipped, or which of its Helm/Argo CD hook types are ignored.
    pub notes: Vec<String>,
    /// It carries a hook or wave annotation: the sync goes wave by wave, waiting for each.
    pub ordered: bool,
}

fn annotation(obj: &Value, key: &str) -> Option<String> {
    match &obj["metadata"]["annotations"][key] {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Null => None,
        // The server refuses non-string annotations; read them anyway, so the error the
        // user sees is the server's, about the manifest, not ours about a wave.
        other => Some(other.to_string()),
    }
}

/// The first of `keys` the object carries, with the key.
fn first_of(obj: &Value, keys: &[&'static str]) -> Option<(&'static str, String)> {
    keys.iter()
        .find_map(|k| annotation(obj, k).map(|v| (*k, v)))
}

/// Reads an object's placement; the error names the annotation and the value at fault.
pub fn classify(obj: &Value) -> Result<Classified, String> {
    let mut notes = Vec::new();
    let hook_annotation = first_of(obj, &[HOOK, ARGO_HOOK, HELM_HOOK]);
    let ordered = hook_annotation.is_some() || first_of(obj, &[WAVE, ARGO_WAVE]).is_some();
    let phases = match &hook_annotation {
        None => None,
        Some((key, value)) if *key == HELM_HOOK => match helm_phases(value, &mut notes)? {
            Some(p) => Some(p),
            None => return Ok(skipped(notes, ordered)),
        },
        Some((key, value)) => match argo_phases(key, value, &mut notes)? {
            Some(p) => Some(p),
            None => return Ok(skipped(notes, ordered)),
        },
    };
    let from_helm = matches!(hook_annotation, Some((HELM_HOOK, _)));
    let mut wave_keys = vec![WAVE, ARGO_WAVE];
    if from_helm {
        wave_keys.push(HELM_WEIGHT);
    }
    let wave = match first_of(obj, &wave_keys) {
        None => 0,
        Some((key, v)) => v.parse::<i32>().map_err(|_| {
            format!("{key}: {v:?} is not an integer (a wave is a whole number, negatives allowed)")
        })?,
    };
    let hook = match phases {
        None => None,
        Some(phases) => Some(Hook {
            phases,
            delete: delete_policy(obj)?,
        }),
    };
    let replace = first_of(obj, &[SYNC_OPTIONS, ARGO_SYNC_OPTIONS]).is_some_and(|(_, v)| {
        v.split(',')
            .any(|o| o.trim().eq_ignore_ascii_case("Replace=true"))
    });
    Ok(Classified {
        placement: Some(Placement {
            wave,
            hook,
            replace,
        }),
        notes,
        ordered,
    })
}

fn skipped(notes: Vec<String>, ordered: bool) -> Classified {
    Classified {
        placement: None,
        notes,
        ordered,
    }
}

/// Ours and Argo CD's hook names. `None`: not applied.
fn argo_phases(
    key: &str,
    value: &str,
    notes: &mut Vec<String>,
) -> Result<Option<Vec<Phase>>, String> {
    let mut phases = Vec::new();
    for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match name {
            "Skip" => {
                notes.push(format!("not applied ({key}: Skip)"));
                return Ok(None);
            }
            "PreDelete" | "PostDelete" => notes.push(format!(
                "{key}: {name} ignored: it runs when an Argo CD Application is deleted, which a sync never does"
            )),
            other => match Phase::parse(other) {
                Some(p) => phases.push(p),
                None => {
                    return Err(format!(
                        "{key}: unknown hook {other:?} (PreSync, Sync, PostSync, SyncFail or Skip)"
                    ));
                }
            },
        }
    }
    Ok(finish_phases(phases, key, notes))
}

/// Helm's hook types, as Argo CD maps them.
fn helm_phases(value: &str, notes: &mut Vec<String>) -> Result<Option<Vec<Phase>>, String> {
    let mut phases = Vec::new();
    let mut ignored = Vec::new();
    for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match name {
            "pre-install" | "pre-upgrade" => phases.push(Phase::PreSync),
            "post-install" | "post-upgrade" => phases.push(Phase::PostSync),
            "test" | "test-success" | "test-failure" => {
                notes.push(format!(
                    "not applied ({HELM_HOOK}: {name}): chart tests are run by helm test, never by a sync"
                ));
                return Ok(None);
            }
            other => ignored.push(other),
        }
    }
    if !ignored.is_empty() {
        notes.push(format!(
            "{HELM_HOOK}: {} skipped: a sync runs pre/post-install and pre/post-upgrade hooks only",
            ignored.join(",")
        ));
    }
    Ok(finish_phases(phases, HELM_HOOK, notes))
}

fn finish_phases(mut phases: Vec<Phase>, key: &str, notes: &mut Vec<String>) -> Option<Vec<Phase>> {
    phases.sort();
    phases.dedup();
    if phases.is_empty() {
        notes.push(format!("not applied: {key} names no phase a sync runs"));
        return None;
    }
    Some(phases)
}

fn delete_policy(obj: &Value) -> Result<DeletePolicy, String> {
    let Some((key, value)) = first_of(
        obj,
        &[DELETE_POLICY, ARGO_DELETE_POLICY, HELM_DELETE_POLICY],
    ) else {
        return Ok(DeletePolicy::default());
    };
    let mut policy = DeletePolicy {
        before_creation: false,
        on_success: false,
        on_failure: false,
    };
    let mut any = false;
    for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        any = true;
        match name {
            "BeforeHookCreation" | "before-hook-creation" => policy.before_creation = true,
            "HookSucceeded" | "hook-succeeded" => policy.on_success = true,
            "HookFailed" | "hook-failed" => policy.on_failure = true,
            other => {
                return Err(format!(
                    "{key}: unknown delete policy {other:?} (BeforeHookCreation, HookSucceeded or HookFailed)"
                ));
            }
        }
    }
    Ok(if any { policy } else { DeletePolicy::default() })
}

/// Whether an object is a hook, without the errors (for checks that run before validation).
pub fn is_hook(obj: &Value) -> bool {
    matches!(classify(obj), Ok(Classified { placement: Some(p), .. }) if p.is_hook())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(annotations: Value) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "m", "annotations": annotations}})
    }

    fn place(annotations: Value) -> Placement {
        classify(&obj(annotations)).unwrap().placement.unwrap()
    }

    #[test]
    fn plain_objects_are_sync_wave_0_members() {
        let c = classify(&json!({"kind": "ConfigMap", "metadata": {"name": "c"}})).unwrap();
        assert_eq!(c.placement, Some(Placement::default()));
        assert!(!c.ordered);
        assert_eq!(Placement::default().phases(), [Phase::Sync]);
    }

    #[test]
    fn ours_win_over_argo_cd_and_argo_cd_over_helm() {
        let p = place(json!({HOOK: "PostSync", ARGO_HOOK: "PreSync", WAVE: "2", ARGO_WAVE: "-5"}));
        assert_eq!(p.phases(), [Phase::PostSync]);
        assert_eq!(p.wave, 2);
        let p = place(
            json!({ARGO_HOOK: "PreSync", HELM_HOOK: "post-install", ARGO_WAVE: "-5", HELM_WEIGHT: "3"}),
        );
        assert_eq!(p.phases(), [Phase::PreSync]);
        assert_eq!(p.wave, -5);
        let p = place(
            json!({HELM_HOOK: "pre-install,pre-upgrade", HELM_WEIGHT: "-1", HELM_DELETE_POLICY: "hook-succeeded,before-hook-creation"}),
        );
        assert_eq!(p.phases(), [Phase::PreSync]);
        assert_eq!(p.wave, -1);
        let d = p.hook.unwrap().delete;
        assert!(d.before_creation && d.on_success && !d.on_failure);
        assert_eq!(d.to_string(), "BeforeHookCreation,HookSucceeded");
    }

    #[test]
    fn a_hook_weight_without_a_helm_hook_is_no_wave() {
        let p = place(json!({HELM_WEIGHT: "7", ARGO_HOOK: "Sync"}));
        assert_eq!(p.wave, 0);
    }

    #[test]
    fn hooks_default_to_before_hook_creation_and_may_run_in_several_phases() {
        let p = place(json!({HOOK: "PostSync, SyncFail"}));
        let h = p.hook.unwrap();
        assert_eq!(h.phases, [Phase::PostSync, Phase::SyncFail]);
        assert_eq!(h.delete, DeletePolicy::default());
        let p = place(json!({ARGO_HOOK: "Sync", ARGO_DELETE_POLICY: "HookFailed"}));
        let d = p.hook.unwrap().delete;
        assert!(!d.before_creation && d.on_failure);
    }

    #[test]
    fn skipped_objects_say_why() {
        for (a, needle) in [
            (json!({HOOK: "Skip"}), "gitops.kubectl.io/hook: Skip"),
            (json!({ARGO_HOOK: "PreSync,Skip"}), "Skip"),
            (json!({HELM_HOOK: "test"}), "helm test"),
            (
                json!({HELM_HOOK: "pre-delete,post-rollback"}),
                "pre-delete,post-rollback skipped",
            ),
            (json!({ARGO_HOOK: "PostDelete"}), "PostDelete ignored"),
        ] {
            let c = classify(&obj(a.clone())).unwrap();
            assert_eq!(c.placement, None, "{a}");
            assert!(c.ordered, "{a}");
            assert!(
                c.notes.iter().any(|n| n.contains(needle)),
                "{a}: {:?}",
                c.notes
            );
        }
        let c = classify(&obj(json!({HELM_HOOK: "pre-upgrade,pre-rollback"}))).unwrap();
        assert_eq!(c.placement.unwrap().phases(), [Phase::PreSync]);
        assert_eq!(c.notes.len(), 1, "{:?}", c.notes);
    }

    #[test]
    fn bad_values_are_named() {
        for (a, needle) in [
            (
                json!({WAVE: "one"}),
                "gitops.kubectl.io/sync-wave: \"one\" is not an integer",
            ),
            (json!({ARGO_WAVE: "1.5"}), "argocd.argoproj.io/sync-wave"),
            (json!({HOOK: "Presync"}), "unknown hook \"Presync\""),
            (
                json!({HOOK: "PreSync", DELETE_POLICY: "Always"}),
                "unknown delete policy \"Always\"",
            ),
        ] {
            let e = classify(&obj(a.clone())).unwrap_err();
            assert!(e.contains(needle), "{a}: {e}");
        }
    }

    #[test]
    fn replace_comes_from_sync_options() {
        assert!(place(json!({SYNC_OPTIONS: "Validate=false, Replace=true"})).replace);
        assert!(place(json!({ARGO_SYNC_OPTIONS: "Replace=true"})).replace);
        assert!(!place(json!({SYNC_OPTIONS: "Replace=false"})).replace);
        let c = classify(&obj(json!({SYNC_OPTIONS: "Replace=true"}))).unwrap();
        assert!(!c.ordered, "sync options alone do not order a sync");
    }
}
