//! YAML and JSON streams split into documents, each error located by file, document, line and
//! column. serde-saphyr alone reads YAML (pinned in Cargo.toml), within limits that turn
//! hostile input (alias bombs, deep nesting) into a quick error.

use serde_json::{Map, Value};

use shared::error::{Error, Result};

use super::validate::check_object;
use super::{Manifest, Source};

/// Deepest nesting accepted, the same as serde_json's limit for JSON files.
pub(super) const MAX_DEPTH: usize = 128;

/// Parser limits. Manifests never need aliases that expand to millions of nodes or nesting
/// deeper than the JSON decoder's own limit, so input that does is refused quickly instead of
/// exhausting memory or stack; the size limits leave room for large rendered CRD bundles.
pub(super) fn yaml_options() -> serde_saphyr::Options {
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
pub(super) const PARSER_STACK: usize = 16 * 1024 * 1024;

/// Runs `f` on a thread with [`PARSER_STACK`] bytes of stack.
pub(super) fn with_parser_stack<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
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

pub(super) fn parse_stream_here(file: &str, bytes: &[u8]) -> Result<Vec<Manifest>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let documents = if file.ends_with(".json") {
        json_documents(file, bytes)?
    } else {
        yaml_documents(file, bytes)?
    };
    objects(file, documents)
}

pub(super) fn parse_yaml_stream(file: &str, bytes: &[u8]) -> Result<Vec<Manifest>> {
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
pub(super) fn yaml_message(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ObjectKey;

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
}
