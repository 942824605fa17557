//! The cluster side: one discovery per run, resolving manifest kinds to API resources
//! (including kinds defined by CRDs in the same set), and API errors turned into messages
//! that name the object and carry the server's words.

use std::collections::BTreeMap;

use kube::api::{Api, DynamicObject};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use serde_json::Value;
use shared::{Error, Result};

pub struct Cluster {
    pub client: kube::Client,
    discovery: Discovery,
    /// Kinds defined by CRDs in the manifest set that the server does not serve yet.
    pending_crds: BTreeMap<(String, String), (ApiResource, bool)>,
}

#[derive(Clone, Debug)]
pub struct Resolved {
    pub resource: ApiResource,
    pub namespaced: bool,
    /// Defined by a CRD in this set and not yet served: it cannot be dry-run before the CRD
    /// is applied.
    pub pending: bool,
}

pub fn api_error(what: impl std::fmt::Display, err: kube::Error) -> Error {
    match err {
        kube::Error::Api(status) => {
            let verb_hint = match status.code {
                401 => Some("the credentials were rejected: check the kubeconfig user or --token"),
                403 => Some("ask for RBAC rights on this resource, or use a context that has them"),
                _ => None,
            };
            let code = if status.reason.is_empty() {
                status.code.to_string()
            } else {
                format!("{} {}", status.code, status.reason)
            };
            let e = Error::refused(format!("{what}: {} ({code})", status.message));
            match verb_hint {
                Some(h) => e.hint(h),
                None => e,
            }
        }
        other => Error::refused(format!("{what}: {other}"))
            .hint("check that the API server is reachable (kubectl cluster-info)"),
    }
}

pub fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

impl Cluster {
    pub async fn discover(client: kube::Client) -> Result<Cluster> {
        let discovery = Discovery::new(client.clone())
            .run_aggregated()
            .await
            .map_err(|e| api_error("API discovery", e))?;
        Ok(Cluster {
            client,
            discovery,
            pending_crds: BTreeMap::new(),
        })
    }

    /// Makes the kinds that CRDs in `objects` define resolvable before they are installed.
    pub fn learn_crds(&mut self, objects: &[Value]) {
        for o in objects {
            if o["kind"] != "CustomResourceDefinition"
                || !o["apiVersion"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("apiextensions.k8s.io/")
            {
                continue;
            }
            let spec = &o["spec"];
            let (Some(group), Some(kind), Some(plural)) = (
                spec["group"].as_str(),
                spec["names"]["kind"].as_str(),
                spec["names"]["plural"].as_str(),
            ) else {
                continue;
            };
            let namespaced = spec["scope"].as_str() != Some("Cluster");
            for v in spec["versions"].as_array().into_iter().flatten() {
                let Some(version) = v["name"].as_str() else {
                    continue;
                };
                let ar = ApiResource {
                    group: group.to_string(),
                    version: version.to_string(),
                    api_version: format!("{group}/{version}"),
                    kind: kind.to_string(),
                    plural: plural.to_string(),
                };
                self.pending_crds
                    .insert((ar.api_version.clone(), kind.to_string()), (ar, namespaced));
            }
        }
    }

    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<Resolved> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
        if let Some((resource, caps)) = self.discovery.resolve_gvk(&gvk) {
            return Some(Resolved {
                resource,
                namespaced: is_namespaced(&caps),
                pending: false,
            });
        }
        self.pending_crds
            .get(&(api_version.to_string(), kind.to_string()))
            .map(|(ar, namespaced)| Resolved {
                resource: ar.clone(),
                namespaced: *namespaced,
                pending: true,
            })
    }

    /// The preferred version of a group/kind, for listing kinds recorded without a version
    /// (ApplySet's contains-group-kinds).
    pub fn resolve_group_kind(&self, group: &str, kind: &str) -> Option<Resolved> {
        let g = self.discovery.get(group)?;
        let (resource, caps) = g.recommended_kind(kind)?;
        Some(Resolved {
            resource,
            namespaced: is_namespaced(&caps),
            pending: false,
        })
    }

    pub fn api(&self, r: &Resolved, namespace: Option<&str>) -> Api<DynamicObject> {
        match (r.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &r.resource),
            _ => Api::all_with(self.client.clone(), &r.resource),
        }
    }
}

fn is_namespaced(caps: &ApiCapabilities) -> bool {
    matches!(caps.scope, Scope::Namespaced)
}
