//! The YAML-shaped random text both crates' property tests feed their parsers (manifest
//! streams in kubectl-gitops, gitops.yaml in shared): one generator, included by `#[path]`.

use proptest::prelude::*;

/// Fragments that steer random text towards the parser's interesting paths: documents,
/// anchors and aliases, flow collections, tags, block scalars, nesting.
pub fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("---\n".to_string()),
        Just("...\n".to_string()),
        Just("apiVersion: v1\n".to_string()),
        Just("kind: ConfigMap\n".to_string()),
        Just("kind: List\nitems:\n".to_string()),
        Just("metadata:\n  name: x\n".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("<<: *a\n".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(", ".to_string()),
        Just(": ".to_string()),
        Just("- ".to_string()),
        Just("!!binary ".to_string()),
        Just("!custom ".to_string()),
        Just("|\n".to_string()),
        Just(">-\n".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("#".to_string()),
        Just("\t".to_string()),
        Just("\n".to_string()),
        "[ a-z0-9]{0,8}".prop_map(|s| s.to_string()),
        "\\PC{0,4}",
        (0usize..12).prop_map(|n| " ".repeat(n)),
    ];
    prop::collection::vec(token, 0..64).prop_map(|v| v.concat())
}
