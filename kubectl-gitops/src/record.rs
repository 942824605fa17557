//! Revision records: one per sync (and later revert), kept in the namespace as Secrets so that
//! the rendered manifests they carry (Secrets included) are stored the way the API server
//! stores secrets. Large renders are gzip-compressed and split across several Secrets, so no
//! record hits the 1 MiB object limit.
//!
//! Format (documented in the README):
//! - Secret `kubectl-gitops.rev.<N>` (type `kubectl-gitops/revision`) with labels
//!   `app.kubernetes.io/managed-by=kubectl-gitops` and `gitops.kubectl.io/revision=<N>`;
//!   data `meta.json` (revision, tag, commit, time, user, outcome, objects, parts, signature) and
//!   `manifests.0`; further parts in `kubectl-gitops.rev.<N>.<k>` with data `manifests.<k>`.
//! - The manifests are a JSON array of the applied objects, gzip-compressed, split in parts.
//!   When they do not fit in part 0 beside `meta.json`, part 0 holds no manifests
//!   (`manifests.0` is empty) and they start in part 1: part 0, which `history` lists for every
//!   revision, stays small however large the render.
//! - `objects` lists the objects' keys when the list is small ([`INLINE_OBJECTS_BYTES`]);
//!   a longer one (thousands of objects: 45 bytes each would take part 0 past the 1 MiB object
//!   limit at ~20,000) is `objects_gz` instead, the base64 of the gzip'd JSON array, with
//!   `objects: []` and `object_count`. Readers of earlier versions still read such a record
//!   (they ignore fields they do not know and concatenate the parts), but see no objects in it.
//!
//! A record is untrusted input: anyone who may write Secrets in the namespace may edit one.
//! Everything read from it is bounded ([`MAX_REVISION`], [`MAX_PARTS`], parts that exist,
//! [`MAX_RECORD_BYTES`] inflated), and a record that breaks a bound is [`Corrupt`]: named by
//! `history`, never used by revert or status, never pruned, and never the cause of a panic
//! or an endless loop in a later run. Its objects go through the same checks as a tag's.

use std::collections::BTreeSet;
use std::io::Read;

use base64::Engine;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared::{Error, Result};

use crate::cli::KubeArgs;
use crate::cluster::{Cluster, api_error, idempotent, status_code};
use crate::manifest::Manifest;

pub const REVISION_LABEL: &str = "gitops.kubectl.io/revision";
pub const PART_LABEL: &str = "gitops.kubectl.io/part-of-revision";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const SECRET_TYPE: &str = "kubectl-gitops/revision";
/// Raw bytes per part: base64 makes them 4/3 larger, well under the 1 MiB object limit.
const PART_BYTES: usize = 512 * 1024;
/// Longest object list (as JSON) kept inline in `meta.json`, readable by every version: about
/// 1,400 objects. Longer lists are compressed (`objects_gz`), ~15x smaller.
const INLINE_OBJECTS_BYTES: usize = 64 * 1024;
/// Highest revision number: a billion syncs, and far from overflowing any arithmetic on it.
pub const MAX_REVISION: u64 = 1_000_000_000;
/// Most a record's manifests may inflate to (the JSON array of the applied objects). A sync
/// whose render is larger refuses before writing anything; a record claiming more is corrupt.
pub const MAX_RECORD_BYTES: u64 = 64 << 20;
/// Most parts a record may have: gzip never grows data by more than a few bytes per block,
/// so [`MAX_RECORD_BYTES`] compressed never needs more parts than this.
pub const MAX_PARTS: u32 = (MAX_RECORD_BYTES / PART_BYTES as u64) as u32 + 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub revision: u64,
    pub tag: String,
    pub commit: String,
    pub time: String,
    pub user: String,
    pub outcome: String,
    /// The objects' keys, whichever way the record stores them: [`list`] and [`read_meta`]
    /// inflate `objects_gz` into this field. Always written (readers of earlier versions
    /// require it), empty when the keys went to `objects_gz`.
    #[serde(default)]
    pub objects: Vec<String>,
    /// How many objects, in records whose keys are in `objects_gz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_count: Option<u64>,
    /// Base64 of the gzip'd JSON array of the keys, when they are too many to list inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects_gz: Option<String>,
    pub parts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_to: Option<u64>,
    /// What was checked of the tag's signature; `None` in records written before signed
    /// deploys existed (treated as never verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::trust::SignatureRecord>,
    /// The hooks this revision ran, in the order they ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRun>,
    /// On a revision that failed (or was interrupted) and was then rolled back: the revision
    /// it went back to. A later sync of the same tag warns about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<u64>,
}

impl Meta {
    /// Whether the revision left the namespace as its manifests say: what `revert` and
    /// `--rollback-on-failure` go back to.
    pub fn succeeded(&self) -> bool {
        self.outcome == "succeeded"
            || self.outcome.starts_with("reverted to")
            || self.outcome.starts_with("rolled back to")
    }
}

/// One run of a hook, as a revision records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HookRun {
    /// `Kind.group/namespace/name`, with the name the server gave a `generateName` hook.
    pub object: String,
    pub phase: String,
    /// `succeeded` or `failed`.
    pub outcome: String,
    /// From its creation (or the start of its wave) until it was seen to end.
    pub seconds: f64,
}

/// A record that cannot be trusted: why, and the Secret that holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Corrupt {
    pub name: String,
    /// The revision its name carries, when that is a number in range.
    pub revision: Option<u64>,
    pub reason: String,
    /// Secret name and uid of the other parts labelled with its revision.
    pub parts: Vec<(String, Option<String>)>,
}

impl Corrupt {
    pub fn error(&self, ns: &str) -> Error {
        Error::invalid(format!(
            "revision record Secret/{ns}/{} is corrupt: {}; it is not used",
            self.name, self.reason
        ))
        .hint(format!(
            "someone edited or forged it (only kubectl gitops should write these Secrets); \
             kubectl gitops history -n {ns} lists the readable revisions"
        ))
    }
}

/// Parts of a record whose part 0 does not exist: a run died (or failed to clean up) between
/// writing its parts and its part 0, or is writing them right now.
#[derive(Debug, Clone, PartialEq)]
pub struct Incomplete {
    pub revision: u64,
    /// Secret name and uid of each part.
    pub parts: Vec<(String, Option<String>)>,
    /// When the server created the oldest of them.
    pub created: Option<jiff::Timestamp>,
}

impl Incomplete {
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.parts.iter().map(|(n, _)| n.as_str()).collect();
        format!(
            "incomplete (Secret{} {}): parts of a record whose part 0 was never written",
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        )
    }
}

/// How long parts without their part 0 are left alone, measured on the API server's clock
/// (their creation against the newest record's): a run writing a record takes seconds between
/// its parts and its part 0, so parts this much older than a complete later record belong to
/// a run that is gone.
pub const ORPHAN_AGE: jiff::SignedDuration = jiff::SignedDuration::from_mins(10);

/// The records of a namespace.
#[derive(Debug, Default)]
pub struct Records {
    /// Readable and within bounds, oldest first.
    pub trusted: Vec<Meta>,
    pub corrupt: Vec<Corrupt>,
    /// By revision, oldest first.
    pub incomplete: Vec<Incomplete>,
    /// When the server created the newest part 0 (any record, readable or not).
    pub newest_created: Option<jiff::Timestamp>,
}

impl Records {
    pub fn newest(&self) -> Option<&Meta> {
        self.trusted.last()
    }

    /// The highest revision number taken, by a readable record, by the name of a corrupt
    /// one, or by parts of an incomplete one (their Secrets exist, so creating those names
    /// again would collide); 0 for none.
    pub fn newest_number(&self) -> u64 {
        let trusted = self.trusted.last().map(|m| m.revision);
        let corrupt = self.corrupt.iter().filter_map(|c| c.revision).max();
        let incomplete = self.incomplete.iter().map(|i| i.revision).max();
        trusted.max(corrupt).max(incomplete).unwrap_or(0)
    }

    /// Incomplete records that no live run can still be writing (see [`ORPHAN_AGE`]).
    pub fn orphans(&self) -> impl Iterator<Item = &Incomplete> {
        let newest = self.newest_created;
        self.incomplete
            .iter()
            .filter(move |i| match (i.created, newest) {
                (Some(created), Some(newest)) => {
                    created.checked_add(ORPHAN_AGE).is_ok_and(|t| t <= newest)
                }
                _ => false,
            })
    }

    /// The number the next record takes.
    pub fn next_number(&self, ns: &str) -> Result<u64> {
        let n = self.newest_number() + 1;
        if n > MAX_REVISION {
            return Err(Error::invalid(format!(
                "namespace {ns} has used every revision number up to {MAX_REVISION}"
            ))
            .hint("a forged record probably claims a huge revision: kubectl gitops history lists them"));
        }
        Ok(n)
    }
}

fn name(revision: u64, part: u32) -> String {
    if part == 0 {
        format!("kubectl-gitops.rev.{revision}")
    } else {
        format!("kubectl-gitops.rev.{revision}.{part}")
    }
}

/// The revision a part-0 record's name carries, if it is the canonical spelling of a number
/// in range.
fn number_in_name(secret: &str) -> Option<u64> {
    let n: u64 = secret.strip_prefix("kubectl-gitops.rev.")?.parse().ok()?;
    ((1..=MAX_REVISION).contains(&n) && name(n, 0) == secret).then_some(n)
}

/// Reads and bounds-checks one record's meta. `parts` holds the names of the part Secrets
/// that exist in the namespace.
fn check(secret: &str, meta_b64: Option<&str>, parts: &BTreeSet<String>) -> Result<Meta, Corrupt> {
    let number = number_in_name(secret);
    let corrupt = |reason: String| Corrupt {
        name: secret.to_string(),
        revision: number,
        reason,
        parts: Vec::new(),
    };
    let Some(n) = number else {
        return Err(corrupt(format!(
            "its name carries no revision number from 1 to {MAX_REVISION}"
        )));
    };
    let b64 = meta_b64.ok_or_else(|| corrupt("it has no meta.json".into()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| corrupt(format!("meta.json is not base64: {e}")))?;
    let mut meta: Meta = serde_json::from_slice(&bytes)
        .map_err(|e| corrupt(format!("meta.json cannot be read ({})", json_problem(&e))))?;
    if let Some(gz) = meta.objects_gz.take() {
        meta.objects = inflate_objects(&gz, meta.object_count).map_err(corrupt)?;
    }
    if meta.revision != n {
        return Err(corrupt(format!(
            "meta.json claims revision {} but the record is revision {n}",
            meta.revision
        )));
    }
    if meta.parts == 0 || meta.parts > MAX_PARTS {
        return Err(corrupt(format!(
            "meta.json claims {} parts (a record has 1 to {MAX_PARTS})",
            meta.parts
        )));
    }
    if let Some(k) = (1..meta.parts).find(|&k| !parts.contains(&name(n, k))) {
        return Err(corrupt(format!(
            "meta.json claims {} parts but part {k} (Secret {}) does not exist",
            meta.parts,
            name(n, k)
        )));
    }
    if let Some(r) = meta.reverted_to.filter(|r| !(1..=MAX_REVISION).contains(r)) {
        return Err(corrupt(format!(
            "meta.json says it reverted to revision {r}, out of range"
        )));
    }
    if let Some(r) = meta
        .rolled_back_to
        .filter(|r| !(1..=MAX_REVISION).contains(r))
    {
        return Err(corrupt(format!(
            "meta.json says it was rolled back to revision {r}, out of range"
        )));
    }
    Ok(meta)
}

fn secrets(cluster: &Cluster, ns: &str) -> Api<DynamicObject> {
    let r = cluster
        .resolve("v1", "Secret")
        .expect("v1 Secret is always served");
    cluster.api(&r, Some(ns))
}

/// Records in the namespace (part 0 of each), trusted ones oldest first.
pub async fn list(cluster: &Cluster, ns: &str) -> Result<Records> {
    let api = secrets(cluster, ns);
    let lp = ListParams::default().labels(&format!("{MANAGED_BY}=kubectl-gitops,{REVISION_LABEL}"));
    let heads = idempotent(|| api.list(&lp))
        .await
        .map_err(|e| api_error(format!("listing revision records in {ns}"), e))?;
    // Parts are created before their part 0 and deleted after it, so every part of a part 0
    // listed above still exists now, unless the record is being pruned at this moment.
    let lp = ListParams::default().labels(&format!("{MANAGED_BY}=kubectl-gitops,{PART_LABEL}"));
    let part_list = idempotent(|| api.list_metadata(&lp))
        .await
        .map_err(|e| api_error(format!("listing revision record parts in {ns}"), e))?;
    let parts: BTreeSet<String> = part_list
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let head_names: BTreeSet<String> = heads
        .items
        .iter()
        .filter_map(|h| h.metadata.name.clone())
        .collect();
    let mut out = Records {
        newest_created: heads
            .items
            .iter()
            .filter_map(|h| h.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .max(),
        ..Records::default()
    };
    let mut incomplete: std::collections::BTreeMap<u64, Incomplete> = Default::default();
    let mut headed: std::collections::BTreeMap<u64, Vec<(String, Option<String>)>> =
        Default::default();
    for p in part_list.items {
        let Some(revision) = p
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(PART_LABEL))
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| (1..=MAX_REVISION).contains(n))
        else {
            continue;
        };
        if head_names.contains(&name(revision, 0)) {
            headed
                .entry(revision)
                .or_default()
                .push((p.metadata.name.unwrap_or_default(), p.metadata.uid));
            continue;
        }
        let entry = incomplete.entry(revision).or_insert(Incomplete {
            revision,
            parts: Vec::new(),
            created: None,
        });
        let created = p.metadata.creation_timestamp.map(|t| t.0);
        entry.created = match (entry.created, created) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        entry
            .parts
            .push((p.metadata.name.unwrap_or_default(), p.metadata.uid));
    }
    out.incomplete = incomplete.into_values().collect();
    for s in heads.items {
        let secret = s.metadata.name.clone().unwrap_or_default();
        let meta = s.data["data"]["meta.json"].as_str();
        match check(&secret, meta, &parts) {
            Ok(m) => out.trusted.push(m),
            Err(mut c) => {
                warn_once(ns, &c);
                if let Some(n) = c.revision {
                    c.parts = headed.remove(&n).unwrap_or_default();
                }
                out.corrupt.push(c)
            }
        }
    }
    out.trusted.sort_by_key(|m| m.revision);
    out.corrupt
        .sort_by(|a, b| (a.revision, &a.name).cmp(&(b.revision, &b.name)));
    Ok(out)
}

/// One record's meta exactly as [`list`] reads it (same bounds; a corrupt one is warned
/// about once), for readers that learn the Secrets some other way: the exporter watches
/// their metadata and fetches each record once. `parts` holds the names of the part Secrets
/// in the namespace.
pub fn read_meta(
    ns: &str,
    secret: &str,
    meta_b64: Option<&str>,
    parts: &BTreeSet<String>,
) -> Result<Meta, Corrupt> {
    check(secret, meta_b64, parts).inspect_err(|c| warn_once(ns, c))
}

/// The revision a record's Secret name carries (its part 0), if any.
pub fn revision_of(secret: &str) -> Option<u64> {
    number_in_name(secret)
}

/// A run lists the records several times; each corrupt one is worth one warning.
fn warn_once(ns: &str, c: &Corrupt) {
    static WARNED: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.insert(format!("{ns}/{}", c.name)) {
        crate::log::warn(format!(
            "revision record Secret/{ns}/{} is corrupt and ignored: {}",
            c.name, c.reason
        ));
    }
}

/// Serialises into a gzip stream, counting the bytes that go in.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: std::io::Write> std::io::Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The record's manifests blob: a JSON array, gzip'd as it is serialised (no uncompressed
/// copy of a large render in memory). Refuses a render over [`MAX_RECORD_BYTES`], which no
/// later run could read back.
pub fn compress<'a>(manifests: impl IntoIterator<Item = &'a Value>) -> Result<Vec<u8>> {
    let refs: Vec<&Value> = manifests.into_iter().collect();
    let mut out = Counting {
        inner: flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()),
        bytes: 0,
    };
    serde_json::to_writer(&mut out, &refs).expect("values serialise to memory");
    if out.bytes > MAX_RECORD_BYTES {
        return Err(Error::invalid(format!(
            "the render is {} MiB as JSON, more than the {} MiB a revision record holds; \
             nothing was written",
            out.bytes >> 20,
            MAX_RECORD_BYTES >> 20
        ))
        .hint("split the manifests across namespaces"));
    }
    Ok(out.inner.finish().expect("writing to memory"))
}

/// The objects of a record's blob; the reason it is corrupt otherwise. Inflates at most
/// [`MAX_RECORD_BYTES`] (a small blob may claim to inflate to gigabytes).
pub fn decompress(bytes: &[u8]) -> std::result::Result<Vec<Value>, String> {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_RECORD_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(|e| format!("its manifests cannot be inflated: {e}"))?;
    if json.len() as u64 > MAX_RECORD_BYTES {
        return Err(format!(
            "its manifests inflate to more than {} MiB",
            MAX_RECORD_BYTES >> 20
        ));
    }
    serde_json::from_slice(&json)
        .map_err(|e| format!("its manifests are not a JSON list ({})", json_problem(&e)))
}

/// Where and what kind of problem, without serde's quote of the offending value: a record's
/// text is anyone's, and error output is no place for it.
fn json_problem(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "unexpected fields or types",
        serde_json::error::Category::Eof => "truncated",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// Whether a record can list these objects (see [`pack`]), checked before any write.
pub fn objects_fit(objects: &[String]) -> Result<()> {
    pack(Meta {
        revision: MAX_REVISION,
        tag: String::new(),
        commit: String::new(),
        time: String::new(),
        user: String::new(),
        outcome: String::new(),
        objects: objects.to_vec(),
        object_count: None,
        objects_gz: None,
        parts: MAX_PARTS,
        reverted_to: None,
        signature: None,
        hooks: Vec::new(),
        rolled_back_to: None,
    })
    .and_then(|json| match json.len() + OTHER_META_BYTES > PART_BYTES {
        true => Err(Error::invalid(format!(
            "the list of the {} objects takes {} KiB compressed, too much for a revision \
             record's part 0 ({} KiB); nothing was written",
            objects.len(),
            json.len() >> 10,
            PART_BYTES >> 10
        ))
        .hint("split the manifests across namespaces")),
        false => Ok(()),
    })
}

/// Room [`objects_fit`] leaves in part 0 for the rest of the meta (tag, user, outcome, hooks,
/// signature), so a run it lets through is not refused when it records.
const OTHER_META_BYTES: usize = 64 * 1024;

/// `meta` as stored: the object list inline when short, else compressed. Refuses a list that
/// would not fit in part 0 (hundreds of thousands of objects), before anything is written.
pub fn pack(mut meta: Meta) -> Result<Vec<u8>> {
    let inline = serde_json::to_vec(&meta.objects).expect("serialises");
    if inline.len() > INLINE_OBJECTS_BYTES {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&inline).expect("writing to memory");
        let gz = enc.finish().expect("writing to memory");
        meta.object_count = Some(meta.objects.len() as u64);
        meta.objects_gz = Some(base64::engine::general_purpose::STANDARD.encode(gz));
        meta.objects = Vec::new();
    }
    drop(inline);
    let json = serde_json::to_vec(&meta).expect("serialises");
    if json.len() > PART_BYTES {
        return Err(Error::invalid(format!(
            "the list of the {} objects takes {} KiB compressed, more than a revision record's \
             part 0 holds ({} KiB); nothing was written",
            meta.object_count.unwrap_or(meta.objects.len() as u64),
            json.len() >> 10,
            PART_BYTES >> 10
        ))
        .hint("split the manifests across namespaces"));
    }
    Ok(json)
}

/// The keys of `objects_gz`; the reason the record is corrupt otherwise. Inflates at most
/// [`MAX_RECORD_BYTES`], and the count must match.
fn inflate_objects(b64: &str, count: Option<u64>) -> std::result::Result<Vec<String>, String> {
    let gz = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("its objects_gz is not base64: {e}"))?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .take(MAX_RECORD_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(|e| format!("its objects_gz cannot be inflated: {e}"))?;
    if json.len() as u64 > MAX_RECORD_BYTES {
        return Err(format!(
            "its objects_gz inflates to more than {} MiB",
            MAX_RECORD_BYTES >> 20
        ));
    }
    let keys: Vec<String> = serde_json::from_slice(&json).map_err(|e| {
        format!(
            "its objects_gz is not a list of keys ({})",
            json_problem(&e)
        )
    })?;
    if count != Some(keys.len() as u64) {
        return Err(format!(
            "its objects_gz holds {} keys but object_count says {}",
            keys.len(),
            count.map_or("nothing".to_string(), |c| c.to_string())
        ));
    }
    Ok(keys)
}

/// Writes a new record. Creation (not apply) makes two concurrent writers of the same
/// revision collide: the loser gets exit 3 instead of silently overwriting.
/// `blob` is [`compress`]'s output.
pub async fn write(cluster: &Cluster, ns: &str, mut meta: Meta, blob: &[u8]) -> Result<()> {
    // Part 0 holds the manifests only when they fit beside the meta (its size does not depend
    // on `parts`, a number of a few digits at most, hence the margin).
    let probe = pack(meta.clone())?;
    let chunks: Vec<&[u8]> = if probe.len() + blob.len() + 64 <= PART_BYTES {
        vec![blob]
    } else {
        std::iter::once(&[][..])
            .chain(blob.chunks(PART_BYTES))
            .collect()
    };
    drop(probe);
    meta.parts = chunks.len() as u32;
    let meta_json = pack(meta.clone())?;
    let api = secrets(cluster, ns);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    // Later parts first, so a part-0 record that exists is always complete. Parts written
    // before a failure are deleted again: left behind, they would hold the revision number.
    let mut written: Vec<(String, Option<String>)> = Vec::new();
    for (k, chunk) in chunks.iter().enumerate().rev() {
        let mut data = serde_json::Map::new();
        data.insert(format!("manifests.{k}"), json!(b64(chunk)));
        let mut labels = json!({ MANAGED_BY: "kubectl-gitops" });
        if k == 0 {
            data.insert("meta.json".into(), json!(b64(&meta_json)));
            labels[REVISION_LABEL] = json!(meta.revision.to_string());
        } else {
            labels[PART_LABEL] = json!(meta.revision.to_string());
        }
        let part = name(meta.revision, k as u32);
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": part, "namespace": ns, "labels": labels},
            "type": SECRET_TYPE,
            "data": data,
        }))
        .expect("valid Secret");
        let pp = PostParams::default();
        match crate::cluster::when_throttled(|| api.create(&pp, &obj)).await {
            Ok(created) => written.push((part, created.metadata.uid)),
            Err(e) => {
                remove_parts(&api, ns, &written).await;
                if status_code(&e) == Some(409) {
                    return Err(Error::race(format!(
                        "revision {} in namespace {ns} was recorded by another sync at the same time",
                        meta.revision
                    ))
                    .hint("another sync or revert ran concurrently; check `kubectl gitops history`, then retry"));
                }
                return Err(api_error(format!("writing revision record {part}"), e));
            }
        }
    }
    Ok(())
}

/// Deletes record parts this run wrote or found orphaned, each only if it is still the same
/// Secret (uid). Failures are warnings: what is left is named by `history` and removed later.
async fn remove_parts(api: &Api<DynamicObject>, ns: &str, parts: &[(String, Option<String>)]) {
    for (part, uid) in parts {
        let dp = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match idempotent(|| api.delete(part, &dp)).await {
            Ok(_) => {}
            Err(e) if matches!(status_code(&e), Some(404 | 409)) => {}
            Err(e) => crate::log::warn(format!(
                "could not delete the record part Secret/{ns}/{part}: {}",
                api_error("deleting", e).message
            )),
        }
    }
}

/// The manifests of a recorded revision (one [`list`] trusted).
pub async fn manifests(cluster: &Cluster, ns: &str, meta: &Meta) -> Result<Vec<Value>> {
    let api = secrets(cluster, ns);
    let corrupt = |reason: String| {
        Corrupt {
            name: name(meta.revision, 0),
            revision: Some(meta.revision),
            reason,
            parts: Vec::new(),
        }
        .error(ns)
    };
    let mut blob = Vec::new();
    for k in 0..meta.parts.min(MAX_PARTS) {
        let part = name(meta.revision, k);
        let s = idempotent(|| api.get(&part))
            .await
            .map_err(|e| api_error(format!("reading revision {} part {k}", meta.revision), e))?;
        let b = s.data["data"][format!("manifests.{k}")]
            .as_str()
            .unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| corrupt(format!("part {k} is not base64: {e}")))?;
        blob.extend(bytes);
    }
    // Up to 64 MiB to inflate and parse: off the runtime's thread.
    tokio::task::block_in_place(|| decompress(&blob)).map_err(corrupt)
}

/// Keeps the newest `keep` readable records, and removes parts that lost their part 0 long
/// ago ([`Records::orphans`]). A corrupt record older (by the number in its name) than the
/// oldest record kept is beyond the limit like any other and removed with its parts; newer
/// ones, and one whose name carries no number, are left for a person to look at (`history`
/// names them). Part 0 goes first, so a record interrupted while being deleted is gone rather
/// than left without its parts (which become orphans, removed by a later run).
pub async fn prune_history(cluster: &Cluster, ns: &str, keep: u32) -> Result<()> {
    let all = list(cluster, ns).await?;
    let api = secrets(cluster, ns);
    for orphan in all.orphans() {
        crate::log::info(2, format!("removing {}", orphan.describe()));
        remove_parts(&api, ns, &orphan.parts).await;
    }
    let excess = all.trusted.len().saturating_sub(keep as usize);
    if let Some(oldest_kept) = all.trusted.get(excess).map(|m| m.revision) {
        for c in all
            .corrupt
            .iter()
            .filter(|c| c.revision.is_some_and(|n| n < oldest_kept))
        {
            crate::log::info(
                2,
                format!("removing corrupt revision record {}: {}", c.name, c.reason),
            );
            let head = [(c.name.clone(), None)];
            remove_parts(&api, ns, &head).await;
            remove_parts(&api, ns, &c.parts).await;
        }
    }
    for meta in all.trusted.iter().take(excess) {
        for k in 0..meta.parts {
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
    pub records: Records,
}

pub async fn open(kube: &KubeArgs) -> Result<Recorded> {
    let conn = crate::kubeconf::connect(kube, None).await?;
    let namespace = kube
        .namespace
        .clone()
        .unwrap_or(conn.default_namespace.clone());
    let cluster = Cluster::discover(conn.client.clone()).await?;
    let records = list(&cluster, &namespace).await?;
    if records.trusted.is_empty() && records.corrupt.is_empty() && records.incomplete.is_empty() {
        missing_namespace(&cluster, &namespace).await?;
    }
    Ok(Recorded {
        cluster,
        namespace,
        records,
    })
}

/// Listing Secrets in a namespace that does not exist returns nothing, which must not read as
/// "no revisions": a mistyped `-n` is an error naming it. A user who may not read namespaces
/// (only Secrets in theirs) gets the empty answer the list gave.
async fn missing_namespace(cluster: &Cluster, ns: &str) -> Result<()> {
    let Some(r) = cluster.resolve("v1", "Namespace") else {
        return Ok(());
    };
    let api = cluster.api(&r, None);
    match idempotent(|| api.get_opt(ns)).await {
        Ok(None) => Err(Error::invalid(format!("namespace {ns:?} does not exist"))
            .hint("check -n (or the context's namespace): kubectl get namespaces lists them")),
        Ok(Some(_)) | Err(_) => Ok(()),
    }
}

/// A recorded revision's objects as manifests, checked as a tag's files are, so they go
/// through the same validation and plan as a tag's.
pub async fn load(cluster: &Cluster, ns: &str, meta: &Meta) -> Result<Vec<Manifest>> {
    let objects = manifests(cluster, ns, meta).await?;
    crate::manifest::from_values(
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
        assert_eq!(decompress(&compress(&objs).unwrap()).unwrap(), objs);
    }

    #[test]
    fn a_small_blob_that_inflates_past_the_limit_is_corrupt() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..(MAX_RECORD_BYTES >> 20) + 1 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 200 * 1024, "{}", bomb.len());
        let err = decompress(&bomb).unwrap_err();
        assert!(err.contains("more than 64 MiB"), "{err}");
    }

    fn meta_b64(revision: u64, parts: u32) -> String {
        let m = json!({"revision": revision, "tag": "t", "commit": "c", "time": "x", "user": "u",
            "outcome": "succeeded", "objects": [], "parts": parts});
        base64::engine::general_purpose::STANDARD.encode(m.to_string())
    }

    #[test]
    fn records_out_of_bounds_are_corrupt() {
        let none = BTreeSet::new();
        let ok = check("kubectl-gitops.rev.3", Some(&meta_b64(3, 1)), &none).unwrap();
        assert_eq!(ok.revision, 3);
        let parts: BTreeSet<String> = ["kubectl-gitops.rev.3.1".to_string()].into();
        assert!(check("kubectl-gitops.rev.3", Some(&meta_b64(3, 2)), &parts).is_ok());
        for (secret, meta, needle) in [
            (
                "kubectl-gitops.rev.3",
                meta_b64(3, 4294967295),
                "4294967295 parts",
            ),
            ("kubectl-gitops.rev.3", meta_b64(3, 0), "0 parts"),
            ("kubectl-gitops.rev.3", meta_b64(3, 3), "part 1"),
            (
                "kubectl-gitops.rev.3",
                meta_b64(u64::MAX, 1),
                "18446744073709551615",
            ),
            (
                "kubectl-gitops.rev.18446744073709551615",
                meta_b64(u64::MAX, 1),
                "name",
            ),
            ("kubectl-gitops.rev.03", meta_b64(3, 1), "name"),
            ("kubectl-gitops.rev.3", "not base64!".into(), "base64"),
            (
                "kubectl-gitops.rev.3",
                base64::engine::general_purpose::STANDARD.encode("{"),
                "cannot be read",
            ),
        ] {
            let c = check(secret, Some(&meta), &none).unwrap_err();
            assert!(c.reason.contains(needle), "{secret}: {}", c.reason);
            assert_eq!(c.name, secret);
        }
    }

    #[test]
    fn a_corrupt_record_still_takes_its_number() {
        let r = Records {
            corrupt: vec![Corrupt {
                name: "kubectl-gitops.rev.7".into(),
                revision: Some(7),
                reason: "x".into(),
                parts: vec![],
            }],
            ..Records::default()
        };
        assert_eq!(r.next_number("ns").unwrap(), 8);
        let full = Records {
            corrupt: vec![Corrupt {
                name: "n".into(),
                revision: Some(MAX_REVISION),
                reason: "x".into(),
                parts: vec![],
            }],
            ..Records::default()
        };
        assert!(full.next_number("ns").is_err());
    }

    fn at(t: &str) -> Option<jiff::Timestamp> {
        Some(t.parse().unwrap())
    }

    #[test]
    fn parts_without_their_part_0_hold_their_number_and_expire_by_the_servers_clock() {
        let orphan = |revision, created| Incomplete {
            revision,
            parts: vec![(name(revision, 1), None)],
            created,
        };
        let r = Records {
            incomplete: vec![
                orphan(4, at("2026-01-01T10:00:00Z")),
                orphan(9, at("2026-01-01T10:55:00Z")),
            ],
            newest_created: at("2026-01-01T11:00:00Z"),
            ..Records::default()
        };
        assert_eq!(r.next_number("ns").unwrap(), 10, "9 is taken by its parts");
        let old: Vec<u64> = r.orphans().map(|i| i.revision).collect();
        assert_eq!(
            old,
            [4],
            "only parts 10 minutes older than the newest record"
        );
        let no_record = Records {
            incomplete: vec![orphan(4, at("2026-01-01T10:00:00Z"))],
            ..Records::default()
        };
        assert_eq!(
            no_record.orphans().count(),
            0,
            "no complete record to compare with"
        );
    }

    fn meta_with(objects: Vec<String>) -> Meta {
        let mut m: Meta = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(meta_b64(3, 1))
                .unwrap(),
        )
        .unwrap();
        m.objects = objects;
        m
    }

    #[test]
    fn a_long_object_list_is_stored_compressed_and_read_back_whole() {
        let keys: Vec<String> = (0..20_000)
            .map(|i| format!("ConfigMap/a-namespace-of-some-length/config-{i:05}"))
            .collect();
        let json = pack(meta_with(keys.clone())).unwrap();
        assert!(json.len() < 200 * 1024, "meta.json is {} bytes", json.len());
        let stored: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(stored["objects"], json!([]), "older readers need the field");
        assert_eq!(stored["object_count"], 20_000);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&json);
        let read = check("kubectl-gitops.rev.3", Some(&b64), &BTreeSet::new()).unwrap();
        assert_eq!(read.objects, keys);
        assert_eq!(read.objects_gz, None);

        let short = vec!["ConfigMap/ns/a".to_string()];
        let stored: Value =
            serde_json::from_slice(&pack(meta_with(short.clone())).unwrap()).unwrap();
        assert_eq!(stored["objects"], json!(short), "a short list stays inline");
        assert!(stored.get("objects_gz").is_none());
    }

    #[test]
    fn a_forged_object_list_is_corrupt() {
        let gz = |text: &str| {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(text.as_bytes()).unwrap();
            base64::engine::general_purpose::STANDARD.encode(e.finish().unwrap())
        };
        for (objects_gz, count, needle) in [
            ("not base64!".to_string(), json!(1), "not base64"),
            (
                base64::engine::general_purpose::STANDARD.encode("plain"),
                json!(1),
                "inflated",
            ),
            (gz("{\"a\": 1}"), json!(1), "not a list of keys"),
            (
                gz("[\"a\", \"b\"]"),
                json!(3),
                "holds 2 keys but object_count says 3",
            ),
            (gz("[\"a\"]"), Value::Null, "says nothing"),
        ] {
            let mut m: Value = serde_json::to_value(meta_with(Vec::new())).unwrap();
            m["objects_gz"] = json!(objects_gz);
            m["object_count"] = count;
            let b64 = base64::engine::general_purpose::STANDARD.encode(m.to_string());
            let c = check("kubectl-gitops.rev.3", Some(&b64), &BTreeSet::new()).unwrap_err();
            assert!(c.reason.contains(needle), "{needle}: {}", c.reason);
        }
    }

    #[test]
    fn a_list_too_long_for_part_0_is_refused_before_writing() {
        // Keys that do not compress: random hex.
        let keys: Vec<String> = (0..60_000u64)
            .map(|i| {
                let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i << 17).wrapping_mul(31);
                format!("ConfigMap/ns/{h:016x}{:016x}", h.rotate_left(29) ^ i)
            })
            .collect();
        let e = objects_fit(&keys).unwrap_err();
        assert!(e.message.contains("nothing was written"), "{}", e.message);
        assert!(objects_fit(&keys[..1000]).is_ok());
    }

    #[test]
    fn part_names_are_valid_secret_names() {
        assert_eq!(name(12, 0), "kubectl-gitops.rev.12");
        assert_eq!(name(12, 3), "kubectl-gitops.rev.12.3");
    }
}
