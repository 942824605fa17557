//! One writer per namespace: sync and revert hold a `coordination.k8s.io/v1` Lease while they
//! write, renewed in the background. A second writer fails at once (exit 3) naming the holder;
//! a lease whose holder stopped renewing (killed, crashed) expires and may be taken over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams, Preconditions};
use shared::{Error, Result};

use crate::cluster::{api_error, status_code};

pub const LEASE_NAME: &str = "kubectl-gitops-lock";
const DURATION_SECONDS: i32 = 30;
const RENEW_EVERY: Duration = Duration::from_secs(10);

pub struct Guard {
    api: Api<Lease>,
    identity: String,
    renewer: tokio::task::JoinHandle<()>,
}

pub fn holder_identity(user: &str) -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    let user = if user.is_empty() {
        "unknown-user"
    } else {
        user
    };
    format!("{user}@{host} (pid {})", std::process::id())
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn expired(lease: &Lease) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let (Some(renew), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return true;
    };
    renew.0 + jiff::SignedDuration::from_secs(secs as i64) < jiff::Timestamp::now()
}

fn held_error(ns: &str, lease: &Lease) -> Error {
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec
        .holder_identity
        .unwrap_or_else(|| "another process".into());
    let since = spec
        .acquire_time
        .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "an unknown time".into());
    Error::race(format!(
        "namespace {ns} is being changed by {holder} since {since} (Lease {ns}/{LEASE_NAME})"
    ))
    .hint("wait for it to finish and retry; a holder that died releases the lease within 30s")
}

/// Fails with exit 3 naming the holder if another run holds the namespace's lease; writes
/// nothing. For runs that only record (a sync with nothing to change).
pub async fn check_free(client: kube::Client, ns: &str) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(client, ns);
    match crate::cluster::idempotent(|| api.get_opt(LEASE_NAME))
        .await
        .map_err(|e| api_error(format!("reading Lease {ns}/{LEASE_NAME}"), e))?
    {
        Some(current) if !expired(&current) => Err(held_error(ns, &current)),
        _ => Ok(()),
    }
}

/// Takes the namespace's lease or fails with exit 3 naming who holds it.
pub async fn acquire(client: kube::Client, ns: &str, user: &str) -> Result<Guard> {
    let api: Api<Lease> = Api::namespaced(client, ns);
    let identity = holder_identity(user);
    let spec = LeaseSpec {
        holder_identity: Some(identity.clone()),
        acquire_time: Some(now()),
        renew_time: Some(now()),
        lease_duration_seconds: Some(DURATION_SECONDS),
        ..Default::default()
    };
    let existing = crate::cluster::idempotent(|| api.get_opt(LEASE_NAME))
        .await
        .map_err(|e| api_error(format!("reading Lease {ns}/{LEASE_NAME}"), e))?;
    let result = match existing {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            let pp = PostParams::default();
            crate::cluster::when_throttled(|| api.create(&pp, &lease)).await
        }
        Some(current) if !expired(&current) => return Err(held_error(ns, &current)),
        Some(mut current) => {
            // The holder stopped renewing: take it over, guarded by resourceVersion so that
            // only one of several waiting writers wins.
            let transitions = current
                .spec
                .as_ref()
                .and_then(|s| s.lease_transitions)
                .unwrap_or(0)
                + 1;
            crate::log::warn(format!(
                "taking over expired Lease {ns}/{LEASE_NAME} from {}",
                current
                    .spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.clone())
                    .unwrap_or_default()
            ));
            current.spec = Some(LeaseSpec {
                lease_transitions: Some(transitions),
                ..spec
            });
            let pp = PostParams::default();
            crate::cluster::when_throttled(|| api.replace(LEASE_NAME, &pp, &current)).await
        }
    };
    match result {
        Ok(_) => {}
        Err(e) if status_code(&e) == Some(409) => {
            let now_held = crate::cluster::idempotent(|| api.get(LEASE_NAME))
                .await
                .map_err(|e| api_error(format!("reading Lease {ns}/{LEASE_NAME}"), e))?;
            return Err(held_error(ns, &now_held));
        }
        Err(e) => return Err(api_error(format!("taking Lease {ns}/{LEASE_NAME}"), e)),
    }
    let renew_api = api.clone();
    let guard_identity = identity.clone();
    let renewer = tokio::spawn(async move {
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            let Ok(mut lease) = renew_api.get(LEASE_NAME).await else {
                continue;
            };
            let ours = lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                == Some(identity.as_str());
            if !ours {
                crate::log::warn("lost the namespace lease to another process");
                return;
            }
            if let Some(spec) = lease.spec.as_mut() {
                spec.renew_time = Some(now());
            }
            let _ = renew_api
                .replace(LEASE_NAME, &PostParams::default(), &lease)
                .await;
        }
    });
    Ok(Guard {
        api,
        identity: guard_identity,
        renewer,
    })
}

impl Guard {
    /// Gives the lease back, only if it is still ours (uid precondition).
    pub async fn release(self) {
        self.renewer.abort();
        if let Ok(lease) = self.api.get(LEASE_NAME).await
            && lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                == Some(self.identity.as_str())
        {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: lease.metadata.uid.clone(),
                    resource_version: lease.metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            let _ = self.api.delete(LEASE_NAME, &dp).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_names_user_host_and_pid() {
        let id = holder_identity("ann");
        let host = id
            .strip_prefix("ann@")
            .and_then(|rest| rest.split(" (pid ").next())
            .unwrap();
        assert!(!host.is_empty() && host != "unknown-host", "{id}");
        assert!(
            id.ends_with(&format!("(pid {})", std::process::id())),
            "{id}"
        );
        assert!(holder_identity("").starts_with("unknown-user@"));
    }
}
