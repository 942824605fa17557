//! Kubernetes manifests read straight from git objects at a commit, never from a checkout, so
//! what we diff and apply is exactly what was committed, whatever the work tree holds.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use gix::ObjectId;
use gix::bstr::ByteSlice;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::git::{Repo, under};

/// Names kustomize accepts for a kustomization, in its order of preference.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// One object from git, and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub object: Value,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    /// Repository-relative path, or `kustomize build <path>` for rendered output.
    pub file: String,
    /// 1-based position in the file's document stream, counting empty documents too, so it
    /// matches what a reader counts between `---` lines.
    pub document: usize,
    /// 1-based line where the document's content starts.
    pub line: usize,
}

impl Source {
    fn error(&self, message: impl fmt::Display) -> Error {
        Error::invalid(format!(
            "{}: document {} (line {}): {message}",
            self.file, self.document, self.line
        ))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} document {} (line {})",
            self.file, self.document, self.line
        )
    }
}

/// What identifies an object to the API server.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// API group, empty for the core group.
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    /// The key of `obj`; missing fields become empty, which only happens for objects that
    /// [`parse_stream`] would have refused.
    pub fn of(obj: &Value) -> ObjectKey {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let group = match api_version.split_once('/') {
            Some((group, _version)) => group.to_string(),
            None => String::new(),
        };
        let meta = obj.get("metadata");
        ObjectKey {
            group,
            kind: text(obj.get("kind")),
            namespace: meta
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .map(str::to_string),
            name: text(meta.and_then(|m| m.get("name"))),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, "/{ns}")?;
        }
        write!(f, "/{}", self.name)
    }
}

/// Refuses two objects with the same key: applying both would let the later silently win.
pub fn check_duplicates(manifests: &[Manifest]) -> Result<()> {
    let mut seen: HashMap<ObjectKey, &Source> = HashMap::with_capacity(manifests.len());
    let mut problems = Vec::new();
    for m in manifests {
        let key = ObjectKey::of(&m.object);
        if let Some(first) = seen.get(&key) {
            problems.push(format!(
                "{key} is defined twice: in {first} and in {}",
                m.source
            ));
        } else {
            seen.insert(key, &m.source);
        }
    }
    match problems.len() {
        0 => Ok(()),
        _ => Err(Error::invalid(problems.join("\n"))
            .hint("each object may appear once; remove or rename one of the copies")),
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// Deepest nesting accepted, the same as serde_json's limit for JSON files.
const MAX_DEPTH: usize = 128;

/// Parser limits. Manifests never need aliases that expand to millions of nodes or nesting
/// deeper than the JSON decoder's own limit, so input that does is refused quickly instead of
/// exhausting memory or stack; the size limits leave room for large rendered CRD bundles.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            flow_nesting_limit: MAX_DEPTH,
            max_documents: 20_000,
            max_nodes: 2_000_000,
            max_events: 5_000_000,
            max_total_scalar_bytes: 256 * 1024 * 1024,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 100_000,
        },
        // kubectl reads YAML 1.1, where `defaultMode: 0644` is octal; reading it as decimal
        // 644 would apply different file permissions than kubectl does.
        legacy_octal_numbers: true,
        with_snippet: false,
    }
}

/// Parses a multi-document YAML stream, or a JSON stream when `file` ends in `.json`, into
/// objects. Empty documents are skipped, `*List` objects are flattened into their items, and
/// every object must carry `apiVersion`, `kind` and a valid `metadata.name`.
pub fn parse_stream(file: &str, bytes: &[u8]) -> Result<Vec<Manifest>> {
    with_parser_stack(|| parse_stream_here(file, bytes))
}

/// Stack for parser threads. Decoding recurses once per nesting level and unoptimised builds
/// need about 17 KiB per level, so the 128 levels we allow would overflow the 2 MiB of a test
/// or tokio worker thread. The memory is reserved, not committed, until used.
const PARSER_STACK: usize = 16 * 1024 * 1024;

/// Runs `f` on a thread with [`PARSER_STACK`] bytes of stack.
fn with_parser_stack<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("manifest-parser".into())
            .stack_size(PARSER_STACK)
            .spawn_scoped(scope, f)
            .map_err(|e| Error::context("starting a parser thread", e))?
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn parse_stream_here(file: &str, bytes: &[u8]) -> Result<Vec<Manifest>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let documents = if file.ends_with(".json") {
        json_documents(file, bytes)?
    } else {
        yaml_documents(file, bytes)?
    };
    objects(file, documents)
}

fn parse_yaml_stream(file: &str, bytes: &[u8]) -> Result<Vec<Manifest>> {
    with_parser_stack(|| objects(file, yaml_documents(file, bytes)?))
}

type Document = (usize, usize, Value);

fn yaml_documents(file: &str, bytes: &[u8]) -> Result<Vec<Document>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Error::invalid(format!(
            "{file}: not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    let docs: Vec<serde_saphyr::Spanned<Value>> =
        serde_saphyr::from_str_multiple_with_options(text, yaml_options())
            .map_err(|err| yaml_error(file, text, &err))?;
    let starts = DocumentStarts::scan(text);
    Ok(docs
        .into_iter()
        .map(|doc| {
            let line = usize::try_from(doc.referenced.line()).unwrap_or(0).max(1);
            (starts.document_at(line), line, doc.value)
        })
        .collect())
}

const LIMITS_HINT: &str = "the file exceeds the parser's safety limits (alias expansion, nesting \
     depth or size); Kubernetes manifests never need that much";

fn yaml_error(file: &str, text: &str, err: &serde_saphyr::Error) -> Error {
    let message = yaml_message(&err.to_string());
    let error = match err.location() {
        Some(loc) if loc.line() > 0 => {
            let line = usize::try_from(loc.line()).unwrap_or(usize::MAX);
            Error::invalid(format!(
                "{file}: document {} (line {line}, column {}): {message}",
                DocumentStarts::scan(text).document_at(line),
                loc.column()
            ))
        }
        _ => Error::invalid(format!("{file}: {message}")),
    };
    if message.contains("limit") || message.contains("levels deep") {
        error.hint(LIMITS_HINT)
    } else {
        error
    }
}

/// serde-saphyr's message reduced to what is wrong: positions (we give our own, naming the
/// document too) and advice about its Rust API removed.
fn yaml_message(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default().trim();
    let mut line = line.strip_prefix("error:").unwrap_or(line).trim_start();
    if let Some(rest) = line.strip_prefix("line ")
        && let Some((position, message)) = rest.split_once(": ")
        && position.contains(" column ")
    {
        line = message;
    }
    if let Some((message, _)) = line.split_once(" at line ") {
        line = message;
    }
    if let Some((message, _)) = line.split_once(", set DuplicateKeyPolicy") {
        line = message;
    }
    if line.starts_with("budget breached: Depth") || line.starts_with("recursion limit exceeded") {
        return format!("nested more than {MAX_DEPTH} levels deep");
    }
    match line.strip_prefix("budget breached: ") {
        Some(what) => format!("too large for the parser's limits ({what})"),
        None => line.trim().to_string(),
    }
}

/// First lines of the documents in a YAML stream. Only a marker at column 0 can start a
/// document, so a line scan finds them without a second parse.
struct DocumentStarts {
    lines: Vec<usize>,
}

impl DocumentStarts {
    fn scan(text: &str) -> DocumentStarts {
        let is_marker = |line: &str, marker: &str| {
            line.strip_prefix(marker)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
        };
        let mut lines = Vec::new();
        let mut open = false;
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            if is_marker(line, "---") {
                lines.push(number);
                open = true;
            } else if is_marker(line, "...") {
                open = false;
            } else if !open {
                let trimmed = line.trim_start();
                // Directives (`%YAML`) belong to the document their `---` opens.
                let ignorable =
                    trimmed.is_empty() || trimmed.starts_with('#') || line.starts_with('%');
                if !ignorable {
                    lines.push(number);
                    open = true;
                }
            }
        }
        DocumentStarts { lines }
    }

    /// The 1-based number of the document that contains `line`.
    fn document_at(&self, line: usize) -> usize {
        self.lines.partition_point(|&start| start <= line).max(1)
    }
}

fn json_documents(file: &str, bytes: &[u8]) -> Result<Vec<Document>> {
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<Value>();
    let mut out = Vec::new();
    let (mut counted, mut line) = (0usize, 1usize);
    loop {
        let offset = stream.byte_offset();
        let start = offset
            + bytes[offset..]
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
        line += bytes[counted..start]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        counted = start;
        let document = out.len() + 1;
        match stream.next() {
            None => break,
            Some(Ok(value)) => out.push((document, line, value)),
            Some(Err(err)) => {
                let text = err.to_string();
                let message = text.split(" at line ").next().unwrap_or(&text);
                let deep = message.starts_with("recursion limit exceeded");
                let message = if deep {
                    format!("nested more than {MAX_DEPTH} levels deep")
                } else {
                    message.to_string()
                };
                let error = Error::invalid(format!(
                    "{file}: document {document} (line {}, column {}): {message}",
                    err.line(),
                    err.column()
                ));
                return Err(if deep { error.hint(LIMITS_HINT) } else { error });
            }
        }
    }
    Ok(out)
}

/// Objects that were not read from a file (a revision record's), checked exactly as the
/// documents of a file are: each value is one document of `file`.
pub fn from_values(file: &str, values: Vec<Value>) -> Result<Vec<Manifest>> {
    let documents = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i + 1, 1, v))
        .collect();
    objects(file, documents)
}

fn objects(file: &str, documents: Vec<Document>) -> Result<Vec<Manifest>> {
    let mut out = Vec::with_capacity(documents.len());
    for (document, line, value) in documents {
        if value.is_null() {
            continue;
        }
        let source = Source {
            file: file.to_string(),
            document,
            line,
        };
        match list_items(value) {
            Ok(items) => {
                for (index, item) in items.into_iter().enumerate() {
                    check_object(&item, &source, Some(index + 1))?;
                    out.push(Manifest {
                        object: item,
                        source: source.clone(),
                    });
                }
            }
            Err(value) => {
                check_object(&value, &source, None)?;
                out.push(Manifest {
                    object: value,
                    source,
                });
            }
        }
    }
    Ok(out)
}

/// The items of a `List`/`*List` object, or the value back when it is not one.
fn list_items(value: Value) -> std::result::Result<Vec<Value>, Value> {
    let is_list = |map: &Map<String, Value>| {
        map.get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k.ends_with("List"))
            && map.get("items").is_some_and(Value::is_array)
    };
    match value {
        Value::Object(mut map) if is_list(&map) => match map.remove("items") {
            Some(Value::Array(items)) => Ok(items),
            _ => Err(Value::Object(map)),
        },
        other => Err(other),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

fn check_object(obj: &Value, source: &Source, item: Option<usize>) -> Result<()> {
    let fail = |message: String| match item {
        Some(i) => source.error(format!("list item {i}: {message}")),
        None => source.error(message),
    };
    let Some(map) = obj.as_object() else {
        return Err(fail(format!(
            "expected a Kubernetes object (a mapping), found {}",
            type_name(obj)
        )));
    };
    let required = |field: &str| -> Result<&str> {
        match map.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            None | Some(Value::Null) => Err(fail(format!("missing {field}"))),
            Some(other) => Err(fail(format!(
                "{field} must be a non-empty string, found {}",
                type_name(other)
            ))),
        }
    };
    let api_version = required("apiVersion")?;
    let kind = required("kind")?;
    let meta = match map.get("metadata") {
        Some(Value::Object(meta)) => meta,
        None | Some(Value::Null) => return Err(fail("missing metadata.name".to_string())),
        Some(other) => {
            return Err(fail(format!(
                "metadata must be a mapping, found {}",
                type_name(other)
            )));
        }
    };
    let name = match meta.get("name") {
        Some(Value::String(name)) if !name.is_empty() => name,
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(if meta.contains_key("generateName") {
                fail(format!(
                    "{kind} uses metadata.generateName, which cannot be applied repeatedly or \
                     tracked; give it a fixed metadata.name"
                ))
            } else {
                fail("missing metadata.name".to_string())
            });
        }
        Some(other) => {
            return Err(fail(format!(
                "metadata.name must be a string, found {}",
                type_name(other)
            )));
        }
    };
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    if let Some(rule) = name_problem(group, kind, name) {
        return Err(fail(format!(
            "{kind} {name:?}: invalid metadata.name: {rule}"
        )));
    }
    match meta.get("namespace") {
        None | Some(Value::Null) => {}
        Some(Value::String(ns)) if ns.is_empty() || is_dns_label(ns) => {}
        Some(Value::String(ns)) => {
            return Err(fail(format!(
                "{kind} {name:?}: invalid metadata.namespace {ns:?}: must be a DNS label \
                 (lowercase letters, digits and '-', at most 63 characters)"
            )));
        }
        Some(other) => {
            return Err(fail(format!(
                "{kind} {name:?}: metadata.namespace must be a string, found {}",
                type_name(other)
            )));
        }
    }
    Ok(())
}

/// Why `name` is not valid for `kind`, following the API server's rules: most kinds take DNS
/// subdomains, namespaces and services DNS labels, RBAC objects any path segment (names like
/// `system:controller:foo` are common there).
fn name_problem(group: &str, kind: &str, name: &str) -> Option<&'static str> {
    match (group, kind) {
        ("rbac.authorization.k8s.io", _) => {
            (!is_path_segment(name)).then_some("must not be '.' or '..' or contain '/' or '%'")
        }
        ("", "Namespace") => (!is_dns_label(name)).then_some(
            "must be a DNS label (lowercase letters, digits and '-', starting and ending with a \
             letter or digit, at most 63 characters)",
        ),
        ("", "Service") => {
            (!(is_dns_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase()))).then_some(
                "must be a DNS-1035 label (lowercase letters, digits and '-', starting with a \
                 letter and ending with a letter or digit, at most 63 characters)",
            )
        }
        _ => (!is_dns_subdomain(name)).then_some(
            "must be a DNS subdomain (lowercase letters, digits, '-' and '.', starting and ending \
             with a letter or digit, at most 253 characters)",
        ),
    }
}

fn is_label_part(s: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = s.as_bytes();
    !b.is_empty()
        && alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter().all(|&c| alnum(c) || c == b'-')
}

fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_label_part(s)
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label_part)
}

fn is_path_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '%'])
}

// ---------------------------------------------------------------------------------------------
// Loading from git

/// Manifests under `path` (normalised, repository-relative, empty for the root) at `commit`.
///
/// A directory with a kustomization is rendered with `<kubectl> kustomize` from an export of
/// the commit's tree; any other directory contributes its `*.yaml`, `*.yml` and `*.json` files
/// (recursively, in path order, skipping dot-directories and dot-files). Objects come from git
/// objects only; the work tree is never read.
pub fn load_at(repo: &Repo, commit: ObjectId, path: &str, kubectl: &Path) -> Result<Vec<Manifest>> {
    let path = path.trim_matches('/');
    let short = repo.short(commit);
    let root = repo.inner.find_commit(commit)?.tree()?;
    let missing = || {
        Error::invalid(format!("{path:?} does not exist at commit {short}"))
            .hint("check the environment's path in gitops.yaml against the files in that commit")
    };
    let dir = if path.is_empty() {
        root.clone()
    } else {
        let entry = root.lookup_entry_by_path(path)?.ok_or_else(missing)?;
        let mode = entry.mode();
        if mode.is_blob() && is_manifest_file(path) {
            let blob = entry.object()?;
            return parse_stream(path, &blob.data);
        }
        if !mode.is_tree() {
            return Err(Error::invalid(format!(
                "{path:?} at commit {short} is not a directory or a YAML/JSON file"
            )));
        }
        entry.object()?.into_tree()
    };
    let has_kustomization = KUSTOMIZATION_FILES
        .iter()
        .any(|name| dir.find_entry(*name).is_some_and(|e| !e.mode().is_tree()));
    if has_kustomization {
        render_kustomization(repo, &root, path, &short, kubectl)
    } else {
        load_directory(repo, &dir, path)
    }
}

fn is_manifest_file(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml") || path.ends_with(".json")
}

fn join(dir: &str, rel: &str) -> String {
    if dir.is_empty() {
        rel.to_string()
    } else {
        format!("{dir}/{rel}")
    }
}

/// Where a symlink at `link` (repository path) with `target` points, resolved by path text
/// alone; `None` when it leaves the repository or cannot be represented.
fn resolve_link(link: &str, target: &[u8]) -> Option<String> {
    let target = target.to_str().ok()?;
    if target.starts_with('/') || target.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

fn link_escapes(link: &str, target: &[u8], scope: &str) -> Error {
    let outside = if scope.is_empty() {
        "the repository".to_string()
    } else {
        format!("{scope:?}")
    };
    Error::invalid(format!(
        "{link}: symbolic link to {:?} points outside {outside}",
        target.to_str_lossy()
    ))
    .hint("manifests are read from the commit alone; replace the link with the file it points to")
}

fn records(tree: &gix::Tree<'_>) -> Result<Vec<gix::traverse::tree::recorder::Entry>> {
    let mut recorder = gix::traverse::tree::Recorder::default();
    tree.traverse()
        .breadthfirst(&mut recorder)
        .map_err(|e| Error::context("reading the tree", e))?;
    Ok(recorder.records)
}

fn is_hidden(rel: &str) -> bool {
    rel.split('/').any(|part| part.starts_with('.'))
}

fn load_directory(repo: &Repo, dir: &gix::Tree<'_>, path: &str) -> Result<Vec<Manifest>> {
    let mut files = Vec::new();
    for entry in records(dir)? {
        let rel = entry.filepath.to_str_lossy();
        // Dot-directories hold tool configuration (.github, .gitlab-ci.yml), never objects.
        if is_hidden(&rel) {
            continue;
        }
        let full = join(path, &rel);
        if entry.mode.is_link() {
            let target = repo.blob(entry.oid)?;
            match resolve_link(&full, &target) {
                // A link within the directory adds nothing: its target is read in its own right
                // (following it too would load the same objects twice).
                Some(resolved) if under(&resolved, path) => continue,
                Some(_) => return Err(link_escapes(&full, &target, path)),
                None => return Err(link_escapes(&full, &target, "")),
            }
        }
        if entry.mode.is_blob() && is_manifest_file(&full) {
            files.push((full, entry.oid));
        }
    }
    files.sort();
    load_files(repo, &files)
}

/// Reads and parses one file with `objects`, a repository handle of the calling thread.
fn load_file(objects: &gix::Repository, file: &str, oid: ObjectId) -> Result<Vec<Manifest>> {
    // The object's buffer goes back to the handle's free list when it is dropped, so a
    // thread reads all its blobs into a few reused buffers instead of one copy per file.
    let blob = objects.find_object(oid)?;
    parse_stream_here(file, &blob.data)
}

/// A handle for a loading thread. Each blob is read exactly once, so caching decoded
/// objects would only cost time; the pack's delta-base cache stays on.
fn loader_handle(repo: &Repo) -> gix::Repository {
    let mut handle = repo.inner.clone();
    handle.object_cache_size(0);
    handle
}

fn load_files_on_one_thread(repo: &Repo, files: &[(String, ObjectId)]) -> Result<Vec<Manifest>> {
    let objects = loader_handle(repo);
    with_parser_stack(move || {
        let mut out = Vec::new();
        for (file, oid) in files {
            out.extend(load_file(&objects, file, *oid)?);
        }
        Ok(out)
    })
}

/// Reads and parses files on all cores. Each thread reads the blobs it parses: decompressing
/// objects costs about a third of parsing them, and done up front on one thread it would
/// leave the other cores idle.
fn load_files(repo: &Repo, files: &[(String, ObjectId)]) -> Result<Vec<Manifest>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(files.len() / 16);
    if workers < 2 {
        return load_files_on_one_thread(repo, files);
    }
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<Result<Vec<Manifest>>>> = (0..files.len()).map(|_| None).collect();
    let done: Vec<Vec<(usize, Result<Vec<Manifest>>)>> = std::thread::scope(|scope| {
        let next = &next;
        let handles: Vec<_> = (0..workers)
            .filter_map(|_| {
                let objects = loader_handle(repo);
                let work = move || {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((file, oid)) = files.get(i) else {
                            break;
                        };
                        mine.push((i, load_file(&objects, file, *oid)));
                    }
                    mine
                };
                std::thread::Builder::new()
                    .name("manifest-parser".into())
                    .stack_size(PARSER_STACK)
                    .spawn_scoped(scope, work)
                    .ok()
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    if done.is_empty() {
        // No worker could start (thread limits); one more try on a single thread.
        return load_files_on_one_thread(repo, files);
    }
    for (i, result) in done.into_iter().flatten() {
        slots[i] = Some(result);
    }
    let mut out = Vec::new();
    for (slot, (file, _)) in slots.into_iter().zip(files) {
        match slot {
            Some(result) => out.extend(result?),
            None => return Err(Error::refused(format!("{file}: the parser thread failed"))),
        }
    }
    Ok(out)
}

/// Renders the kustomization at `path` from an export of the whole commit (bases usually live
/// elsewhere in the repository), after making sure rendering cannot reach the network or
/// files outside the export.
fn render_kustomization(
    repo: &Repo,
    root: &gix::Tree<'_>,
    path: &str,
    short: &str,
    kubectl: &Path,
) -> Result<Vec<Manifest>> {
    let tmp = tempfile::Builder::new()
        .prefix("gitops-kustomize-")
        .tempdir()
        .map_err(|e| Error::context("creating a temporary directory", e))?;
    let links = export_tree(repo, root, tmp.path())?;
    check_links_stay_inside(tmp.path(), &links)?;
    check_kustomizations_are_local(tmp.path(), path, short)?;

    let dir = if path.is_empty() {
        tmp.path().to_path_buf()
    } else {
        tmp.path().join(path)
    };
    let output = Command::new(kubectl)
        .arg("kustomize")
        .arg(&dir)
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        // Belt and braces after the checks above: remote bases are cloned with git and
        // remote files fetched over HTTP(S); both fail fast here instead of reaching out.
        .env("GIT_ALLOW_PROTOCOL", "file")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("http_proxy", "http://127.0.0.1:9")
        .env("https_proxy", "http://127.0.0.1:9")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .map_err(|e| {
            Error::refused(format!("cannot run {}: {e}", kubectl.display()))
                .hint("rendering a kustomization needs kubectl; install it or set KUBECTL_PATH")
        })?;
    let label = format!(
        "kustomize build {}",
        if path.is_empty() { "." } else { path }
    );
    if !output.status.success() {
        let stderr = kubectl_message(&String::from_utf8_lossy(&output.stderr), tmp.path());
        return Err(Error::invalid(format!(
            "{label} at commit {short} failed ({}):\n{stderr}",
            output.status
        )));
    }
    parse_yaml_stream(&label, &output.stdout)
}

/// kubectl's error output without klog decoration (`E1121 12:00:00.000000 123 run.go:72]
/// "command failed" err=...`) and with paths in the export shown relative to the repository.
fn kubectl_message(stderr: &str, export: &Path) -> String {
    let root = export.display().to_string();
    let text = stderr.replace(&format!("{root}/"), "").replace(&root, ".");
    let mut lines = Vec::new();
    for line in text.lines() {
        let mut line = line;
        let klog = line.len() > 5
            && line.starts_with(['E', 'W', 'I', 'F'])
            && line.as_bytes()[1..5].iter().all(u8::is_ascii_digit);
        if klog && let Some((_, rest)) = line.split_once("] ") {
            line = rest;
        }
        line = line.strip_prefix("\"command failed\" err=").unwrap_or(line);
        if matches!(line.trim(), "<" | ">") {
            continue;
        }
        let line = line.strip_prefix('\t').unwrap_or(line);
        match line.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
            Some(quoted) => lines.push(quoted.replace("\\\"", "\"").replace("\\\\", "\\")),
            None => lines.push(line.to_string()),
        }
    }
    lines.join("\n").trim().to_string()
}

/// Writes every blob and symlink of `tree` below `dest`; returns the links written.
fn export_tree(repo: &Repo, tree: &gix::Tree<'_>, dest: &Path) -> Result<Vec<String>> {
    let mut links = Vec::new();
    let write_err =
        |p: &Path, e: std::io::Error| Error::context(format!("writing {}", p.display()), e);
    for entry in records(tree)? {
        let rel = entry.filepath.to_str().map_err(|_| {
            Error::invalid(format!(
                "{:?}: path is not UTF-8, which kustomize cannot read",
                entry.filepath
            ))
        })?;
        // Tree entries come from whoever made the commit; never let one name a place outside
        // the export.
        if rel
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == ".." || part == ".git")
        {
            return Err(Error::invalid(format!(
                "{rel:?}: unsafe path in the commit's tree"
            )));
        }
        let out = dest.join(rel);
        if entry.mode.is_tree() {
            std::fs::create_dir(&out).map_err(|e| write_err(&out, e))?;
        } else if entry.mode.is_link() {
            let target = repo.blob(entry.oid)?;
            if resolve_link(rel, &target).is_none() {
                return Err(link_escapes(rel, &target, ""));
            }
            make_symlink(&target, &out).map_err(|e| write_err(&out, e))?;
            links.push(rel.to_string());
        } else if entry.mode.is_blob() {
            let blob = repo.inner.find_object(entry.oid)?;
            std::fs::write(&out, &blob.data).map_err(|e| write_err(&out, e))?;
        }
    }
    Ok(links)
}

#[cfg(unix)]
fn make_symlink(target: &[u8], at: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), at)
}

#[cfg(not(unix))]
fn make_symlink(_target: &[u8], at: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        format!(
            "symbolic links are only exported on Unix ({})",
            at.display()
        ),
    ))
}

/// Resolves each exported link on disk: a textual check cannot see a link whose target goes
/// through another link (`a -> .`, `b -> a/..`).
fn check_links_stay_inside(root: &Path, links: &[String]) -> Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    let canonical_root = root
        .canonicalize()
        .map_err(|e| Error::context("resolving the export directory", e))?;
    for link in links {
        let target = std::fs::read_link(root.join(link)).unwrap_or_default();
        let escapes = || link_escapes(link, target.as_os_str().as_encoded_bytes(), "");
        match root.join(link).canonicalize() {
            Ok(resolved) if resolved.starts_with(&canonical_root) => {}
            Ok(_) => return Err(escapes()),
            // A dangling link reads as a missing file, which kustomize reports itself.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::invalid(format!(
                    "{link}: symbolic link cannot be resolved: {e}"
                )));
            }
        }
    }
    Ok(())
}

/// Whether a kustomize reference names something to download rather than a path.
fn is_remote(reference: &str) -> bool {
    let r = reference.trim();
    let first = r.split('/').next().unwrap_or_default();
    r.contains("://")
        || r.starts_with("git@")
        || r.starts_with("git::")
        || r.starts_with("github.com/")
        || r.starts_with("gitlab.com/")
        || r.starts_with("bitbucket.org/")
        || r.contains("?ref=")
        || r.contains("&ref=")
        || r.contains("?version=")
        || r.contains("?submodules=")
        || r.contains("?timeout=")
        // scp-like `user@host:repo`
        || (first.contains('@') && first.contains(':'))
}

/// Checks every kustomization reachable from `path` for references that would make kustomize
/// download something. Entries kustomize tries as a path first and a remote second must
/// exist in the export, or it would go on to fetch them.
fn check_kustomizations_are_local(root: &Path, path: &str, short: &str) -> Result<()> {
    let mut queue = vec![path.to_string()];
    let mut seen = HashSet::new();
    while let Some(dir) = queue.pop() {
        if !seen.insert(dir.clone()) {
            continue;
        }
        let dir_path = if dir.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&dir)
        };
        let Some((name, bytes)) = KUSTOMIZATION_FILES
            .iter()
            .find_map(|name| std::fs::read(dir_path.join(name)).ok().map(|b| (*name, b)))
        else {
            continue;
        };
        let file = join(&dir, name);
        let doc: Value = with_parser_stack(|| {
            serde_saphyr::from_slice_with_options(&bytes, yaml_options())
                .map_err(|e| Error::invalid(format!("{file}: {}", yaml_message(&e.to_string()))))
        })?;
        let refuse_remote = |field: &str, reference: &str| -> Result<()> {
            if is_remote(reference) {
                return Err(Error::invalid(format!(
                    "{file}: {field} entry {reference:?} is remote; rendering must not reach the network"
                ))
                .hint("vendor the remote base into the repository and reference it by path"));
            }
            Ok(())
        };
        let strings = |field: &str| -> Vec<String> {
            match doc.get(field) {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            }
        };

        // Kustomize falls back to a remote fetch for these when the path does not exist.
        for field in ["resources", "bases", "components"] {
            for reference in strings(field) {
                refuse_remote(field, &reference)?;
                let Some(target) = resolve_link(&join(&dir, "x"), reference.as_bytes()) else {
                    return Err(Error::invalid(format!(
                        "{file}: {field} entry {reference:?} points outside the repository"
                    )));
                };
                let on_disk = root.join(&target);
                if on_disk.is_dir() {
                    queue.push(target);
                } else if !on_disk.exists() {
                    return Err(Error::invalid(format!(
                        "{file}: {field} entry {reference:?} does not exist at commit {short}"
                    ))
                    .hint("kustomize would try to download a missing entry; commit it or fix the path"));
                }
            }
        }
        // Plugin configurations may be files or kustomization directories of their own.
        for field in ["generators", "transformers", "validators"] {
            for reference in strings(field) {
                if reference.contains('\n') {
                    continue; // an inline configuration, not a reference
                }
                refuse_remote(field, &reference)?;
                if let Some(target) = resolve_link(&join(&dir, "x"), reference.as_bytes())
                    && root.join(&target).is_dir()
                {
                    queue.push(target);
                }
            }
        }
        // Plain file references, which kustomize fetches when given a URL.
        for field in ["crds", "configurations", "patchesStrategicMerge"] {
            for reference in strings(field) {
                if !reference.contains('\n') {
                    refuse_remote(field, &reference)?;
                }
            }
        }
        for field in ["patches", "patchesJson6902", "replacements"] {
            if let Some(Value::Array(items)) = doc.get(field) {
                for path in items.iter().filter_map(|i| i.get("path")?.as_str()) {
                    refuse_remote(field, path)?;
                }
            }
        }
        if let Some(path) = doc
            .get("openapi")
            .and_then(|o| o.get("path"))
            .and_then(Value::as_str)
        {
            refuse_remote("openapi", path)?;
        }
        for field in ["configMapGenerator", "secretGenerator"] {
            let Some(Value::Array(generators)) = doc.get(field) else {
                continue;
            };
            for generator in generators {
                for key in ["files", "envs", "env"] {
                    let entries: Vec<&str> = match generator.get(key) {
                        Some(Value::Array(items)) => {
                            items.iter().filter_map(Value::as_str).collect()
                        }
                        Some(Value::String(s)) => vec![s.as_str()],
                        _ => Vec::new(),
                    };
                    for entry in entries {
                        // `files` entries may be `key=path`.
                        let path = entry.split_once('=').map_or(entry, |(_, p)| p);
                        refuse_remote(field, path)?;
                    }
                }
            }
        }
        if let Some(Value::Array(charts)) = doc.get("helmCharts") {
            for chart in charts {
                if let Some(repo) = chart.get("repo").and_then(Value::as_str) {
                    return Err(Error::invalid(format!(
                        "{file}: helmCharts entry from repository {repo:?} would be downloaded; \
                         rendering must not reach the network"
                    ))
                    .hint("vendor the chart into the repository"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(file: &str, text: &str) -> Result<Vec<Manifest>> {
        parse_stream(file, text.as_bytes())
    }

    fn err(file: &str, text: &str) -> String {
        parse(file, text).unwrap_err().message
    }

    #[test]
    fn stream_with_comments_empty_documents_and_positions() {
        let text = "# header\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n---\n# nothing\n---\nnull\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: b\n  namespace: prod\n";
        let ms = parse("deploy/x.yaml", text).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(
            ms[0].source,
            Source {
                file: "deploy/x.yaml".into(),
                document: 1,
                line: 3
            }
        );
        assert_eq!(ms[1].source.document, 5);
        assert_eq!(ms[1].source.line, 13);
        assert_eq!(
            ObjectKey::of(&ms[1].object).to_string(),
            "Deployment.apps/prod/b"
        );
        assert_eq!(ObjectKey::of(&ms[0].object).to_string(), "ConfigMap/a");
    }

    #[test]
    fn bare_first_document_and_numbers_like_kubectl() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {mode: 0644, on: yes}\n---\n  apiVersion: v1\n  kind: Secret\n  metadata: {name: s}\n";
        let ms = parse("a.yml", text).unwrap();
        assert_eq!(ms[0].source.line, 1);
        assert_eq!(ms[0].object["data"]["mode"], 420);
        assert_eq!(ms[1].source.document, 2);
        assert_eq!(ms[1].source.line, 6);
    }

    #[test]
    fn lists_are_flattened() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n---\napiVersion: v1\nkind: ConfigMapList\nitems: []\n";
        let ms = parse("l.yaml", text).unwrap();
        let names: Vec<_> = ms.iter().map(|m| ObjectKey::of(&m.object).name).collect();
        assert_eq!(names, ["a", "b"]);
        let bad = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: ConfigMap}\n";
        assert_eq!(
            err("l.yaml", bad),
            "l.yaml: document 1 (line 1): list item 2: missing metadata.name"
        );
    }

    #[test]
    fn json_streams() {
        let text = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\"}}\n\n{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"s\"}}]}\nnull\n";
        let ms = parse("x.json", text).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[1].source.document, 2);
        assert_eq!(ms[1].source.line, 3);
        let e = err("x.json", "{\"apiVersion\":\"v1\",\n \"kind\": }");
        assert!(
            e.starts_with("x.json: document 1 (line 2, column 10): "),
            "{e}"
        );
        let e = err("x.json", "[1]");
        assert!(e.contains("found a sequence"), "{e}");
    }

    #[test]
    fn missing_fields_are_named_with_position() {
        let two = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\n";
        assert_eq!(
            err(
                "deploy/x.yaml",
                &format!(
                    "{two}{two}apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {{a: b}}\n"
                )
            ),
            "deploy/x.yaml: document 3 (line 9): missing metadata.name"
        );
        assert_eq!(
            err("f.yaml", "kind: ConfigMap\nmetadata: {name: a}\n"),
            "f.yaml: document 1 (line 1): missing apiVersion"
        );
        assert_eq!(
            err("f.yaml", "apiVersion: v1\nmetadata: {name: a}\n"),
            "f.yaml: document 1 (line 1): missing kind"
        );
        assert!(
            err("f.yaml", "apiVersion: 1\nkind: X\n")
                .contains("apiVersion must be a non-empty string")
        );
        assert!(err("f.yaml", "- a\n").contains("found a sequence"));
        assert!(err("f.yaml", "just text\n").contains("found a string"));
        let e = err(
            "f.yaml",
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: run-\n",
        );
        assert!(
            e.contains("generateName") && e.contains("fixed metadata.name"),
            "{e}"
        );
    }

    #[test]
    fn names_follow_api_server_rules() {
        let obj = |api: &str, kind: &str, name: &str| {
            format!("apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name:?}\n")
        };
        for (api, kind, name) in [
            ("v1", "ConfigMap", "a.b-c"),
            (
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                "system:aggregate-to-view",
            ),
            ("v1", "Namespace", "dev"),
            ("v1", "Service", "web-1"),
            ("v1", "ConfigMap", &"a".repeat(253)),
        ] {
            assert!(
                parse("f.yaml", &obj(api, kind, name)).is_ok(),
                "{kind} {name}"
            );
        }
        for (api, kind, name) in [
            ("v1", "ConfigMap", "Upper"),
            ("v1", "ConfigMap", "-lead"),
            ("v1", "ConfigMap", "a..b"),
            ("v1", "ConfigMap", "under_score"),
            ("v1", "ConfigMap", &"a".repeat(254)),
            ("v1", "Namespace", "a.b"),
            ("v1", "Service", "1web"),
            ("rbac.authorization.k8s.io/v1", "Role", "a/b"),
        ] {
            let e = err("f.yaml", &obj(api, kind, name));
            assert!(
                e.contains("invalid metadata.name") && e.contains(kind),
                "{e}"
            );
        }
        let e = err(
            "f.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: Prod}\n",
        );
        assert!(e.contains("invalid metadata.namespace"), "{e}");
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let e = err(
            "bad.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\ndata: [1, 2\nkey: 3\n",
        );
        assert!(
            e.starts_with("bad.yaml: document 2 (line 6, column "),
            "{e}"
        );
        let e = err("dup.yaml", "a: 1\na: 2\n");
        assert!(e.contains("duplicate"), "{e}");
        let e = parse_stream("bin.yaml", b"a: \xff\n").unwrap_err().message;
        assert!(e.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn hostile_yaml_fails_fast() {
        let mut bomb = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        for w in names.windows(2) {
            let refs = vec![format!("*{}", w[0]); 9].join(",");
            bomb.push_str(&format!("{}: &{} [{refs}]\n", w[1], w[1]));
        }
        let started = std::time::Instant::now();
        let e = parse("bomb.yaml", &bomb).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(e.hint.is_some(), "{e}");

        let deep_block = format!("{}1\n", "- ".repeat(10_000));
        assert!(parse("deep.yaml", &deep_block).is_err());
        let deep_flow = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse("deep.yaml", &deep_flow).is_err());
        let deep_json = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse("deep.json", &deep_json).is_err());

        // Realistic nesting (CRD schemas go a few dozen levels deep) is fine.
        let mut nested =
            String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n");
        for i in 1..100 {
            nested.push_str(&format!("{}k:\n", "  ".repeat(i)));
        }
        nested.push_str(&format!("{}v\n", "  ".repeat(100)));
        assert!(parse("nested.yaml", &nested).is_ok());
    }

    #[test]
    fn document_starts() {
        let starts = DocumentStarts::scan("%YAML 1.2\n---\na: 1\n...\n# c\nb: 2\n--- c\n");
        assert_eq!(starts.lines, [2, 6, 7]);
        assert_eq!(starts.document_at(3), 1);
        assert_eq!(starts.document_at(6), 2);
        assert_eq!(starts.document_at(7), 3);
    }

    #[test]
    fn duplicates_name_both_sources() {
        let a = parse(
            "a.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: prod}\n",
        )
        .unwrap();
        let b = parse("b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web, namespace: prod}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: prod}\n").unwrap();
        let all: Vec<Manifest> = a.into_iter().chain(b).collect();
        let e = check_duplicates(&all).unwrap_err();
        assert_eq!(
            e.message,
            "Deployment.apps/prod/web is defined twice: in a.yaml document 1 (line 1) and in b.yaml document 2 (line 5)"
        );
        assert!(check_duplicates(&all[1..]).is_ok());
    }

    #[test]
    fn object_keys_order_and_display() {
        let key = |v: Value| ObjectKey::of(&v);
        let ns = key(
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}}),
        );
        assert_eq!(ns.to_string(), "Namespace/dev");
        assert_eq!(ns.group, "");
        assert_eq!(ns.namespace, None);
        let crd = key(
            serde_json::json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "c", "namespace": "web"}}),
        );
        assert_eq!(crd.to_string(), "Certificate.cert-manager.io/web/c");
        assert!(ns < crd);
    }

    #[test]
    fn remote_references_are_recognised() {
        for r in [
            "https://github.com/org/repo//base?ref=v1",
            "github.com/org/repo/base?ref=main",
            "git@github.com:org/repo.git",
            "git::https://example.com/repo",
            "ssh://git@example.com/repo",
            "example.com/org/repo//dir?ref=v1",
            "user@host:repo",
        ] {
            assert!(is_remote(r), "{r}");
        }
        for r in [
            "../../bases/web",
            "deployment.yaml",
            "dir/with:colon",
            "./a@b",
        ] {
            assert!(!is_remote(r), "{r}");
        }
    }

    #[test]
    fn kubectl_errors_lose_klog_decoration_and_temporary_paths() {
        let export = Path::new("/tmp/gitops-kustomize-abc");
        let single = "E1121 23:44:24.100346   31356 run.go:72] \"command failed\" err=\"accumulating resources from 'missing.yaml': lstat /tmp/gitops-kustomize-abc/deploy/missing.yaml: \\\"x\\\"\"\n";
        assert_eq!(
            kubectl_message(single, export),
            "accumulating resources from 'missing.yaml': lstat deploy/missing.yaml: \"x\""
        );
        let multi = "E1121 23:44:24.043715   31351 run.go:72] \"command failed\" err=<\n\ttrouble configuring builtin PatchTransformer\n\tpath: /tmp/gitops-kustomize-abc/patch.yaml\n >\n";
        assert_eq!(
            kubectl_message(multi, export),
            "trouble configuring builtin PatchTransformer\npath: patch.yaml"
        );
        assert_eq!(
            kubectl_message("error: unknown\n", export),
            "error: unknown"
        );
    }

    #[test]
    fn link_resolution_is_textual_and_bounded() {
        assert_eq!(
            resolve_link("a/b/l", b"../c/f.yaml").as_deref(),
            Some("a/c/f.yaml")
        );
        assert_eq!(resolve_link("a/l", b"../../x"), None);
        assert_eq!(resolve_link("a/l", b"/etc/passwd"), None);
        assert_eq!(resolve_link("l", b"./x/./y").as_deref(), Some("x/y"));
    }
}
