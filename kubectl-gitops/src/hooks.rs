//! Hooks: objects (mostly Jobs) a sync creates anew in their phase instead of applying, and
//! deletes as their delete policy says. They are not ApplySet members, so no prune ever
//! touches them; they carry [`phases::HOOK_LABEL`] instead, which is how the next sync finds
//! the previous run of a hook, and `status` tells a hook from drift.
//!
//! A run of a hook: [`start`] (with BeforeHookCreation, the default, delete the previous run's
//! object and wait until it is gone; then create it, the server naming it when it has a
//! `generateName`), the wave's wait judges it (a Job must complete), then [`finish`] deletes it
//! if its policy says so for the way it ended. A fixed-name hook without BeforeHookCreation
//! whose object exists is not run again (as in Argo CD): its existing object is judged.

use std::time::Duration;

use kube::api::{
    DeleteParams, DynamicObject, ListParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::core::{Request, Resource};
use serde_json::Value;
use shared::{Error, Result};
use tokio::time::Instant;

use crate::cluster::{Cluster, Resolved, api_error, idempotent, status_code, when_throttled};
use crate::manifest::ObjectKey;
use crate::phases::{self, Phase};
use crate::plan::{Item, MANAGER};

/// Creates `obj` (POST, strict field validation as an apply has, field manager ours), or with
/// `dry_run` only asks the server whether it would.
pub async fn create(
    cluster: &Cluster,
    resolved: &Resolved,
    obj: &Value,
    dry_run: bool,
) -> kube::Result<DynamicObject> {
    let ns = if resolved.namespaced {
        obj["metadata"]["namespace"].as_str()
    } else {
        None
    };
    let url = DynamicObject::url_path(&resolved.resource, ns);
    let pp = PostParams {
        dry_run,
        field_manager: Some(MANAGER.to_string()),
    };
    let body = serde_json::to_vec(obj).map_err(kube::Error::SerdeError)?;
    let mut req = Request::new(url)
        .create(&pp, body)
        .map_err(kube::Error::BuildRequest)?;
    // kube's PostParams cannot ask for strict validation; an unknown field in a hook is as
    // much an error as in an applied object.
    let uri = format!("{}&fieldValidation=Strict", req.uri());
    *req.uri_mut() = uri.parse().expect("a valid URI plus a query parameter");
    cluster.client.request::<DynamicObject>(req).await
}

/// A hook run under way.
#[derive(Debug, Clone)]
pub struct Started {
    /// With the name the server gave it.
    pub key: ObjectKey,
    pub resolved: Resolved,
    pub uid: Option<String>,
    pub since: Instant,
    /// False for a fixed-name hook without BeforeHookCreation whose object already existed.
    pub created: bool,
}

/// Starts a run of the hook `item` in `phase`: deletes the previous run's object when the
/// policy says so (waiting until it is gone, at most until `deadline`), then creates it.
pub async fn start(
    cluster: &Cluster,
    applyset_id: &str,
    item: &Item,
    phase: Phase,
    deadline: Instant,
) -> Result<Started> {
    let obj = item.desired.as_ref().expect("a hook has a manifest");
    let policy = item
        .placement
        .hook
        .as_ref()
        .map(|h| h.delete)
        .unwrap_or_default();
    let ns = obj["metadata"]["namespace"].as_str();
    let api = cluster.api(&item.resolved, ns);
    let since = Instant::now();
    let fixed = obj["metadata"]["name"].as_str().filter(|n| !n.is_empty());
    let previous: Vec<DynamicObject> = match fixed {
        Some(name) => idempotent(|| api.get_opt(name))
            .await
            .map_err(|e| api_error(format!("reading {}", item.key), e))?
            .into_iter()
            .collect(),
        None if policy.before_creation => {
            let selector = format!("{}={applyset_id}", phases::HOOK_LABEL);
            let lp = ListParams::default().labels(&selector);
            let generate = obj["metadata"]["generateName"].as_str();
            idempotent(|| api.list(&lp))
                .await
                .map_err(|e| api_error(format!("listing earlier runs of {}", item.key), e))?
                .items
                .into_iter()
                .filter(|o| o.metadata.generate_name.as_deref() == generate)
                .collect()
        }
        None => Vec::new(),
    };
    if let Some(existing) = previous.first()
        && fixed.is_some()
        && !policy.before_creation
    {
        crate::log::info(
            2,
            format!(
                "{}: exists and has no BeforeHookCreation policy: not run again",
                item.key
            ),
        );
        return Ok(Started {
            key: item.key.clone(),
            resolved: item.resolved.clone(),
            uid: existing.metadata.uid.clone(),
            since,
            created: false,
        });
    }
    for old in &previous {
        let labels = old.metadata.labels.clone().unwrap_or_default();
        let ours = labels.get(phases::HOOK_LABEL).map(String::as_str) == Some(applyset_id)
            || labels
                .get(crate::applyset::LABEL_PART_OF)
                .map(String::as_str)
                == Some(applyset_id);
        let name = old.metadata.name.clone().unwrap_or_default();
        if !ours {
            return Err(Error::refused(format!(
                "{}: {name} exists and no sync created it; its BeforeHookCreation policy would \
                 delete it",
                item.key
            ))
            .hint("rename the hook, or delete that object yourself if it may go"));
        }
        delete(cluster, &item.resolved, ns, &name, old.metadata.uid.clone()).await?;
        gone(
            cluster,
            &item.resolved,
            ns,
            &name,
            old.metadata.uid.clone(),
            deadline,
        )
        .await?;
    }
    let created = when_throttled(|| create(cluster, &item.resolved, obj, false))
        .await
        .map_err(|e| api_error(format!("creating hook {}", item.key), e))?;
    let mut key = item.key.clone();
    key.name = created.metadata.name.clone().unwrap_or_default();
    crate::log::info(4, format!("created hook {key} ({phase})"));
    Ok(Started {
        key,
        resolved: item.resolved.clone(),
        uid: created.metadata.uid,
        since,
        created: true,
    })
}

/// Ends a hook run: deletes its object if the policy says so for how it ended.
pub async fn finish(cluster: &Cluster, item: &Item, run: &Started, succeeded: bool) -> Result<()> {
    let policy = item
        .placement
        .hook
        .as_ref()
        .map(|h| h.delete)
        .unwrap_or_default();
    if !run.created
        || !(if succeeded {
            policy.on_success
        } else {
            policy.on_failure
        })
    {
        return Ok(());
    }
    delete(
        cluster,
        &run.resolved,
        run.key.namespace.as_deref(),
        &run.key.name,
        run.uid.clone(),
    )
    .await
}

/// Deletes exactly the object with `uid`, its dependents (a Job's Pods) in the background.
async fn delete(
    cluster: &Cluster,
    resolved: &Resolved,
    ns: Option<&str>,
    name: &str,
    uid: Option<String>,
) -> Result<()> {
    let api = cluster.api(resolved, ns);
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..Default::default()
    };
    match idempotent(|| api.delete(name, &dp)).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(status_code(&e), Some(404 | 409)) => Ok(()),
        Err(e) => Err(api_error(
            format!("deleting {} {name}", resolved.resource.kind),
            e,
        )),
    }
}

/// Waits until the object with `uid` no longer exists (a finalizer may hold it a while).
pub async fn gone(
    cluster: &Cluster,
    resolved: &Resolved,
    ns: Option<&str>,
    name: &str,
    uid: Option<String>,
    deadline: Instant,
) -> Result<()> {
    let api = cluster.api(resolved, ns);
    let started = Instant::now();
    loop {
        let current = idempotent(|| api.get_opt(name))
            .await
            .map_err(|e| api_error(format!("reading {} {name}", resolved.resource.kind), e))?;
        match current {
            Some(o) if o.metadata.uid == uid => {}
            _ => return Ok(()),
        }
        if Instant::now() >= deadline {
            return Err(Error::refused(format!(
                "{} {name} was deleted to be created anew, but it is still there after {}",
                resolved.resource.kind,
                shared::duration::format_duration(started.elapsed())
            ))
            .hint("a finalizer may hold it: kubectl get -o yaml shows metadata.finalizers"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
