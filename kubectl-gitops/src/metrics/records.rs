//! The revision records of the followed namespaces: a watch of their metadata (names, labels,
//! resource versions: small, whatever the manifests weigh), and one GET per record when it
//! appears or changes, for its meta. Records are read exactly as `history` and `status` read
//! them (`record::read_meta`: the same bounds, a corrupt record never counts). Only the newest
//! records are fetched: down to the first successful one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::ApiResource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use super::Exporter;
use crate::outcome::{self, Kind};
use crate::record::{self, MANAGED_BY, Meta, PART_LABEL, REVISION_LABEL};

/// What the records of one namespace say.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The newest readable record (what `status` compares against).
    pub current: Option<Meta>,
    /// The newest readable record that succeeded (a sync, or a revert).
    pub last_success: Option<Meta>,
}

/// A record's `meta.json` as fetched, by the resource version it was fetched at.
type Fetched = HashMap<(String, String), (String, Option<String>)>;

pub async fn follow(exporter: Arc<Exporter>) {
    // Heads and parts alike: a head whose parts are missing is corrupt, as for `history`.
    let config = watcher::Config::default().labels(&format!("{MANAGED_BY}=kubectl-gitops"));
    let mut stores = Vec::new();
    let mut streams = Vec::new();
    for api in exporter
        .scope
        .apis::<PartialObjectMeta<Secret>>(&exporter.client)
    {
        let (store, writer) = reflector::store();
        stores.push(store);
        streams.push(
            watcher(api, config.clone())
                .default_backoff()
                .reflect(writer)
                .boxed(),
        );
    }
    let total = stores.len();
    let mut listed = 0;
    let mut fetched = Fetched::new();
    let mut stream = futures::stream::select_all(streams);
    while let Some(event) = stream.next().await {
        let dirty: Vec<String> = match event {
            Err(e) => {
                exporter.problem("records", format!("watching revision records: {e}"));
                continue;
            }
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
            Ok(watcher::Event::InitDone) => {
                exporter.clear_problem("records");
                listed += 1;
                if listed < total {
                    continue;
                }
                // Every namespace with records, followed yet or not: with --all-namespaces
                // the parents' watch may list after this one.
                let mut all = exporter.followed();
                all.extend(
                    stores
                        .iter()
                        .flat_map(|s| s.state())
                        .filter_map(|s| s.metadata.namespace.clone()),
                );
                all.into_iter().collect()
            }
            Ok(watcher::Event::Apply(s) | watcher::Event::Delete(s)) => {
                s.metadata.namespace.into_iter().collect()
            }
        };
        for ns in dirty {
            let view = view(&exporter, &stores, &mut fetched, &ns).await;
            exporter.state().records.insert(ns, view);
        }
        if listed >= total {
            exporter.set_ready("records");
        }
        exporter.bump();
    }
}

async fn view(
    exporter: &Exporter,
    stores: &[Store<PartialObjectMeta<Secret>>],
    fetched: &mut Fetched,
    ns: &str,
) -> View {
    let mut heads: BTreeMap<u64, (String, String)> = BTreeMap::new();
    let mut parts = BTreeSet::new();
    for store in stores {
        for s in store.state() {
            if s.metadata.namespace.as_deref() != Some(ns) {
                continue;
            }
            let name = s.metadata.name.clone().unwrap_or_default();
            let labels = s.metadata.labels.as_ref();
            if labels.is_some_and(|l| l.contains_key(PART_LABEL)) {
                parts.insert(name);
            } else if labels.is_some_and(|l| l.contains_key(REVISION_LABEL))
                && let Some(n) = record::revision_of(&name)
            {
                let rv = s.metadata.resource_version.clone().unwrap_or_default();
                heads.insert(n, (name, rv));
            }
        }
    }
    fetched.retain(|(n, name), _| n != ns || heads.values().any(|(h, _)| h == name));
    let mut out = View::default();
    for (name, rv) in heads.values().rev() {
        let key = (ns.to_string(), name.clone());
        let meta_b64 = match fetched.get(&key) {
            Some((seen, meta)) if seen == rv => meta.clone(),
            _ => match fetch(exporter, ns, name).await {
                Some(meta) => {
                    fetched.insert(key, (rv.clone(), meta.clone()));
                    meta
                }
                None => continue,
            },
        };
        let Ok(meta) = record::read_meta(ns, name, meta_b64.as_deref(), &parts) else {
            continue;
        };
        let succeeded = outcome::classify(&meta.outcome) == Kind::Succeeded;
        if out.current.is_none() {
            out.current = Some(meta.clone());
        }
        if succeeded {
            out.last_success = Some(meta);
            break;
        }
    }
    out
}

/// The record's `meta.json` (base64, as the Secret holds it); `None` when it could not be
/// read (gone meanwhile, or an error, which is counted).
async fn fetch(exporter: &Exporter, ns: &str, name: &str) -> Option<Option<String>> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        exporter.client.clone(),
        ns,
        &ApiResource::erase::<Secret>(&()),
    );
    let source = format!("record {ns}/{name}");
    match crate::cluster::idempotent(|| api.get_opt(name)).await {
        Ok(Some(s)) => {
            exporter.clear_problem(&source);
            Some(s.data["data"]["meta.json"].as_str().map(str::to_string))
        }
        Ok(None) => None,
        Err(e) => {
            exporter.problem(source, format!("reading the revision record: {e}"));
            None
        }
    }
}
