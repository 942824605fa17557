//! Revision records: one per sync (and later revert), kept in the namespace as Secrets so that
//! the rendered manifests they carry (Secrets included) are stored the way the API server
//! stores secrets. Large renders are gzip-compressed and split across several Secrets, so no
//! record hits the 1 MiB object limit.
//!
//! Format (documented in the README):
//! - Secret `kubectl-gitops.rev.<N>` (type `kubectl-gitops/revision`) with labels
//!   `app.kubernetes.io/managed-by=kubectl-gitops` and `gitops.kubectl.io/revision=<N>`;
//!   data `meta.json` (revision, tag, commit, time, user, outcome, objects, parts) and
//!   `manifests.0`; further parts in `kubectl-gitops.rev.<N>.<k>` with data `manifests.<k>`.
//! - The manifests are a JSON array of the applied objects, gzip-compressed, split in parts.

use base64::Engine;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared::{Error, Result};

use crate::cli::KubeArgs;
use crate::cluster::{Cluster, api_error, idempotent, status_code};
use shared::manifest::Manifest;

pub const REVISION_LABEL: &str = "gitops.kubectl.io/revision";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const SECRET_TYPE: &str = "kubectl-gitops/revision";
/// Raw bytes per part: base64 makes them 4/3 larger, well under the 1 MiB object limit.
const PART_BYTES: usize = 512 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub revision: u64,
    pub tag: String,
    pub commit: String,
    pub time: String,
    pub user: String,
    pub outcome: String,
    pub objects: Vec<String>,
    pub parts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_to: Option<u64>,
}

fn name(revision: u64, part: u32) -> String {
    if part == 0 {
        format!("kubectl-gitops.rev.{revision}")
    } else {
        format!("kubectl-gitops.rev.{revision}.{part}")
    }
}

fn secrets(cluster: &Cluster, ns: &str) -> Api<DynamicObject> {
    let r = cluster
        .resolve("v1", "Secret")
        .expect("v1 Secret is always served");
    cluster.api(&r, Some(ns))
}

/// Records in the namespace, by revision (part 0 only), oldest first.
pub async fn list(cluster: &Cluster, ns: &str) -> Result<Vec<Meta>> {
    let lp = ListParams::default().labels(&format!("{MANAGED_BY}=kubectl-gitops,{REVISION_LABEL}"));
    let api = secrets(cluster, ns);
    let list = idempotent(|| api.list(&lp))
        .await
        .map_err(|e| api_error(format!("listing revision records in {ns}"), e))?;
    let mut out = Vec::new();
    for s in list.items {
        let v = serde_json::to_value(&s).unwrap_or_default();
        let Some(meta) = v["data"]["meta.json"].as_str() else {
            continue;
        };
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(meta) else {
            continue;
        };
        if let Ok(m) = serde_json::from_slice::<Meta>(&bytes) {
            out.push(m);
        }
    }
    out.sort_by_key(|m| m.revision);
    Ok(out)
}

/// The record's manifests blob: a JSON array, gzip'd as it is serialised (no uncompressed
/// copy of a large render in memory).
pub fn compress<'a>(manifests: impl IntoIterator<Item = &'a Value>) -> Vec<u8> {
    let refs: Vec<&Value> = manifests.into_iter().collect();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    serde_json::to_writer(&mut enc, &refs).expect("values serialise to memory");
    enc.finish().expect("writing to memory")
}

pub fn decompress(bytes: &[u8]) -> Result<Vec<Value>> {
    use std::io::Read;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut json)
        .map_err(|e| Error::refused(format!("revision record is corrupt: {e}")))?;
    serde_json::from_slice(&json)
        .map_err(|e| Error::refused(format!("revision record is corrupt: {e}")))
}

/// Writes a new record. Creation (not apply) makes two concurrent writers of the same
/// revision collide: the loser gets exit 3 instead of silently overwriting.
/// `blob` is [`compress`]'s output.
pub async fn write(cluster: &Cluster, ns: &str, mut meta: Meta, blob: &[u8]) -> Result<()> {
    let chunks: Vec<&[u8]> = if blob.is_empty() {
        vec![&[][..]]
    } else {
        blob.chunks(PART_BYTES).collect()
    };
    meta.parts = chunks.len() as u32;
    let api = secrets(cluster, ns);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    // Later parts first, so a part-0 record that exists is always complete.
    for (k, chunk) in chunks.iter().enumerate().rev() {
        let mut data = serde_json::Map::new();
        data.insert(format!("manifests.{k}"), json!(b64(chunk)));
        let mut labels = json!({ MANAGED_BY: "kubectl-gitops" });
        if k == 0 {
            data.insert(
                "meta.json".into(),
                json!(b64(&serde_json::to_vec(&meta).expect("serialises"))),
            );
            labels[REVISION_LABEL] = json!(meta.revision.to_string());
        } else {
            labels["gitops.kubectl.io/part-of-revision"] = json!(meta.revision.to_string());
        }
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name(meta.revision, k as u32), "namespace": ns, "labels": labels},
            "type": SECRET_TYPE,
            "data": data,
        }))
        .expect("valid Secret");
        let pp = PostParams::default();
        if let Err(e) = crate::cluster::when_throttled(|| api.create(&pp, &obj)).await {
            if status_code(&e) == Some(409) {
                return Err(Error::race(format!(
                    "revision {} in namespace {ns} was recorded by another sync at the same time",
                    meta.revision
                ))
                .hint("another sync or revert ran concurrently; check `kubectl gitops history`, then retry"));
            }
            return Err(api_error(
                format!("writing revision record {}", name(meta.revision, k as u32)),
                e,
            ));
        }
    }
    Ok(())
}

/// The manifests of a recorded revision.
pub async fn manifests(cluster: &Cluster, ns: &str, meta: &Meta) -> Result<Vec<Value>> {
    let api = secrets(cluster, ns);
    let mut blob = Vec::new();
    for k in 0..meta.parts {
        let part = name(meta.revision, k);
        let s = idempotent(|| api.get(&part))
            .await
            .map_err(|e| api_error(format!("reading revision {} part {k}", meta.revision), e))?;
        let v = serde_json::to_value(&s).unwrap_or_default();
        let b = v["data"][format!("manifests.{k}")]
            .as_str()
            .unwrap_or_default();
        blob.extend(
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| {
                    Error::refused(format!("revision record {} is corrupt: {e}", meta.revision))
                })?,
        );
    }
    decompress(&blob)
}

/// Keeps the newest `keep` records.
pub async fn prune_history(cluster: &Cluster, ns: &str, keep: u32) -> Result<()> {
    let all = list(cluster, ns).await?;
    let api = secrets(cluster, ns);
    let excess = all.len().saturating_sub(keep as usize);
    for meta in all.iter().take(excess) {
        for k in (0..meta.parts).rev() {
            let part = name(meta.revision, k);
            let dp = DeleteParams::default();
            match idempotent(|| api.delete(&part, &dp)).await {
                Ok(_) => {}
                Err(e) if status_code(&e) == Some(404) => {}
                Err(e) => {
                    return Err(api_error(
                        format!("deleting old revision record {}", name(meta.revision, k)),
                        e,
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A namespace's records with the discovery to act on them: what history,
/// status and revert start from.
pub struct Recorded {
    pub cluster: Cluster,
    pub namespace: String,
    /// Oldest first.
    pub records: Vec<Meta>,
}

pub async fn open(kube: &KubeArgs) -> Result<Recorded> {
    let conn = crate::kubeconf::connect(kube, None).await?;
    let namespace = kube
        .namespace
        .clone()
        .unwrap_or(conn.default_namespace.clone());
    let cluster = Cluster::discover(conn.client.clone()).await?;
    let records = list(&cluster, &namespace).await?;
    Ok(Recorded {
        cluster,
        namespace,
        records,
    })
}

/// A recorded revision's objects as manifests, checked as a tag's files are, so they go
/// through the same validation and plan as a tag's (a record is anyone's who may write
/// Secrets in the namespace).
pub async fn load(cluster: &Cluster, ns: &str, meta: &Meta) -> Result<Vec<Manifest>> {
    let objects = manifests(cluster, ns, meta).await?;
    shared::manifest::from_values(
        &format!("revision record {}", name(meta.revision, 0)),
        objects,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip_through_compression() {
        let objs = vec![
            json!({"kind": "ConfigMap", "data": {"a": "x".repeat(10_000)}}),
            json!({"kind": "Secret"}),
        ];
        assert_eq!(decompress(&compress(&objs)).unwrap(), objs);
    }

    #[test]
    fn part_names_are_valid_secret_names() {
        assert_eq!(name(12, 0), "kubectl-gitops.rev.12");
        assert_eq!(name(12, 3), "kubectl-gitops.rev.12.3");
    }
}
