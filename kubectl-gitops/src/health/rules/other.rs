//! Kinds judged by one field or condition (PersistentVolumeClaims, Services,
//! CustomResourceDefinitions), and everything else by its `Ready` condition, if any.

use serde_json::Value;

use super::{conditions, is_true, said, text};
use crate::health::verdict::Verdict;

pub(super) fn pvc(obj: &Value) -> Verdict {
    match obj["status"]["phase"].as_str().unwrap_or_default() {
        "Bound" => Verdict::ready("", ""),
        // The volume it was bound to is gone; nothing rebinds the claim. kstatus keeps
        // waiting (not Bound); this is one of our early failure signals.
        "Lost" => Verdict::failed("ClaimLost", "the bound PersistentVolume is gone"),
        "" => Verdict::in_progress("NotBound", "waiting for a volume"),
        phase => Verdict::in_progress("NotBound", format!("phase {phase}, waiting for a volume")),
    }
}

/// kstatus waits only for a LoadBalancer Service without a cluster IP, which the API server
/// assigns at creation: a bare cluster that hands out no load balancer addresses must not
/// hang every sync.
pub(super) fn service(obj: &Value) -> Verdict {
    let spec = &obj["spec"];
    if spec["type"] == "LoadBalancer" && text(spec, "clusterIP").is_none() {
        return Verdict::in_progress("NoIPAssigned", "no cluster IP assigned yet");
    }
    Verdict::ready("", "")
}

/// The first of `NamesAccepted` and `Established` that decides, in the order the API server
/// lists them (as kstatus reads them).
pub(super) fn crd(obj: &Value) -> Verdict {
    for c in conditions(obj) {
        let status = c["status"].as_str().unwrap_or_default();
        match (c["type"].as_str(), status) {
            (Some("NamesAccepted"), "False") => {
                return Verdict::failed(
                    text(c, "reason").unwrap_or("NamesNotAccepted"),
                    said(c, "names not accepted"),
                );
            }
            (Some("Established"), "False") if c["reason"] != "Installing" => {
                return Verdict::failed(
                    text(c, "reason").unwrap_or("NotEstablished"),
                    said(c, "not established"),
                );
            }
            (Some("Established"), "True") => return Verdict::ready("", ""),
            _ => {}
        }
    }
    Verdict::in_progress("Installing", "waiting for the Established condition")
}

/// Custom resources and other kinds without a rule of their own: the `Ready` condition most
/// controllers publish; without one, nothing to wait for.
pub(super) fn ready_condition(obj: &Value) -> Option<Verdict> {
    // A Ready condition with no status in it decides nothing (kstatus skips it too).
    let ready = conditions(obj).find(|c| {
        c["type"] == "Ready" && matches!(c["status"].as_str(), Some("True" | "False" | "Unknown"))
    })?;
    // A condition that records the generation it was computed for (metav1.Condition) and is
    // behind the spec is stale, whatever it says.
    if let (Some(generation), Some(seen)) = (
        obj["metadata"]["generation"].as_i64(),
        ready["observedGeneration"].as_i64(),
    ) && seen < generation
    {
        return Some(super::unobserved(generation));
    }
    if is_true(ready) {
        return Some(Verdict::ready("", ""));
    }
    let fallback = format!(
        "Ready condition is {}",
        ready["status"].as_str().unwrap_or_default()
    );
    Some(Verdict::in_progress(
        text(ready, "reason").unwrap_or("NotReady"),
        said(ready, &fallback),
    ))
}
