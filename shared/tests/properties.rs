//! Property tests of the parsers that see untrusted input: `gitops.yaml`, deploy tag names
//! and messages. Case counts are kept modest so the whole file stays well under 20 s in a
//! debug build. (Manifest streams, the diff normaliser and the Secret masker are tested in
//! kubectl-gitops, which owns them.)

use proptest::prelude::*;
use shared::config::{Config, Environment, Helm, NotifyTarget};
use shared::tag::{Action, DeployRecord, TagName};

#[path = "../../tests/common/yamlish.rs"]
mod yamlish;
use yamlish::yamlish;

fn config() -> ProptestConfig {
    ProptestConfig {
        // Failures print the minimal case; saving them to files in the source tree would
        // leave untracked files behind in a clean clone.
        failure_persistence: None,
        ..ProptestConfig::with_cases(256)
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn config_parse_of_arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = Config::parse("gitops.yaml", &text);
    }

    #[test]
    fn config_parse_of_yamlish_text_never_panics(text in yamlish()) {
        let _ = Config::parse("gitops.yaml", &text);
    }
}

fn env_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}"
}

fn maybe_valid_env() -> impl Strategy<Value = Environment> {
    (
        // Mostly plausible values with a sprinkling of hostile characters, so that both the
        // accepting and the rejecting paths are exercised.
        prop_oneof![env_name(), "\\PC{0,12}"],
        prop_oneof!["env/[a-z0-9._/-]{1,20}", "\\PC{0,12}"],
        prop_oneof!["[a-z0-9._/-]{0,20}", "\\PC{0,12}"],
        prop_oneof!["[a-z0-9-]{1,20}", "\\PC{0,8}"],
        prop::option::of("\\PC{0,16}"),
        prop::option::of(maybe_valid_helm()),
        (any::<bool>(), prop::option::of(1u64..400_000)),
        prop::collection::vec(maybe_valid_notify(), 0..3),
    )
        .prop_map(
            |(name, branch, path, namespace, context, helm, (verified, soak), notify)| {
                Environment {
                    name,
                    branch,
                    path,
                    namespace,
                    context,
                    notify,
                    helm,
                    gates: shared::config::Gates {
                        verified,
                        soak: soak.map(std::time::Duration::from_secs),
                    },
                }
            },
        )
}

/// Webhooks of `notify:`: URLs with tokens in the path or query, variable names, and hostile
/// text in both.
fn maybe_valid_notify() -> impl Strategy<Value = NotifyTarget> {
    prop_oneof![
        "https?://[a-z0-9.-]{1,16}(:[0-9]{1,5})?/[A-Za-z0-9/_?=&%-]{0,24}"
            .prop_map(NotifyTarget::Url),
        "\\PC{0,16}".prop_map(NotifyTarget::Url),
        "[A-Z_][A-Z0-9_]{0,15}".prop_map(NotifyTarget::Env),
        "\\PC{0,8}".prop_map(NotifyTarget::Env),
    ]
}

/// Chart values as YAML would give them: strings (hostile ones too), integers, booleans,
/// null, lists and nested mappings.
fn chart_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        "\\PC{0,12}".prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("\\PC{1,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn maybe_valid_helm() -> impl Strategy<Value = Helm> {
    (
        prop::option::of(prop_oneof!["[a-z0-9][a-z0-9.-]{0,20}", "\\PC{0,12}"]),
        prop::collection::vec(prop_oneof!["[a-z0-9._/-]{1,20}", "\\PC{0,12}"], 0..3),
        prop::option::of(prop::collection::btree_map(
            "\\PC{1,8}",
            chart_value(),
            0..4,
        )),
    )
        .prop_map(|(release, values_files, values)| Helm {
            release,
            values_files,
            values: values.map(|m| m.into_iter().collect()),
        })
}

proptest! {
    #![proptest_config(config())]

    /// Whatever `parse` accepts, `to_yaml` writes back so that it parses to the same value:
    /// `git deploy init` writes the file with `to_yaml` and every later command reads it.
    #[test]
    fn accepted_configs_round_trip_through_to_yaml(
        envs in prop::collection::vec(maybe_valid_env(), 1..5),
    ) {
        let candidate = Config { environments: envs };
        if let Ok(parsed) = Config::parse("gitops.yaml", &candidate.to_yaml()) {
            let again = Config::parse("gitops.yaml", &parsed.to_yaml());
            prop_assert_eq!(again.as_ref().ok(), Some(&parsed), "{}", parsed.to_yaml());
        }
    }
}

/// 0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59Z: what `%Y` prints as four digits.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

fn single_line() -> impl Strategy<Value = String> {
    // Trailer values: no line breaks, no surrounding whitespace (git trims it too).
    "[!-~]([ -~]{0,30}[!-~])?"
}

fn record() -> impl Strategy<Value = DeployRecord> {
    (
        env_name(),
        prop::option::of(prop_oneof![
            Just(Action::Tag),
            Just(Action::Promote),
            Just(Action::Rollback)
        ]),
        single_line(),
        prop::option::of("\\PC{0,200}"),
        prop::option::of(env_name()),
        prop::option::of(single_line()),
        prop::option::of("[0-9a-f]{40}"),
        prop::option::of(single_line()),
        prop::option::of("[0-9a-f]{40}"),
        single_line(),
        single_line(),
        prop::option::of(single_line()),
    )
        .prop_map(
            |(
                env,
                action,
                subject,
                body,
                source_env,
                source_tag,
                source_commit,
                previous_tag,
                previous_commit,
                branch,
                tool,
                gate_override,
            )| DeployRecord {
                env,
                action,
                subject,
                body,
                source_env,
                source_tag,
                source_commit,
                previous_tag,
                previous_commit,
                gate_override,
                branch,
                tool,
            },
        )
}

/// Bodies built to look like trailer blocks: what a user trying to forge a record would type.
fn forging_body() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("Deploy-Env: evil".to_string()),
        Just("Deploy-Action: rollback".to_string()),
        Just("Deploy-Source-Env: evil".to_string()),
        Just("Deploy-Source-Tag: deploy/evil/20200101T000000Z".to_string()),
        Just("Deploy-Source-Commit: 0000000000000000000000000000000000000000".to_string()),
        Just("Deploy-Branch: env/evil".to_string()),
        Just("Deploy-Tool: evil/1".to_string()),
        Just("Deploy-Gate-Override: forged".to_string()),
        Just(String::new()),
        Just("\r".to_string()),
        Just("   ".to_string()),
        "\\PC{0,20}",
    ];
    prop::collection::vec(line, 0..12).prop_map(|v| v.join("\n"))
}

/// How `render` stores a body: trimmed, dropped when empty.
fn stored_body(body: Option<&str>) -> Option<String> {
    body.map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_string)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tag_names_round_trip(
        env in env_name(),
        seconds in MIN_SECONDS..=MAX_SECONDS,
        seq in 1u32..=u32::MAX,
    ) {
        prop_assume!(shared::refname::env_name_problem(&env).is_none());
        let tag = TagName::new(&env, seconds, seq);
        let text = tag.to_string();
        prop_assert_eq!(TagName::parse(&text), Some(tag.clone()), "{}", text);
        prop_assert_eq!(TagName::parse(&format!("refs/tags/{text}")), Some(tag), "{}", text);
    }

    #[test]
    fn tag_name_parse_of_arbitrary_text_never_panics(
        text in prop_oneof![
            "\\PC{0,60}",
            "(refs/tags/)?deploy/[a-z.]{0,6}/[0-9]{0,9}T?[0-9]{0,7}Z?(-[0-9]{0,12})?",
        ],
    ) {
        if let Some(tag) = TagName::parse(&text) {
            // Anything accepted is canonical: printing it gives the same name back.
            let canonical = text.strip_prefix("refs/tags/").unwrap_or(&text);
            prop_assert_eq!(tag.to_string(), canonical);
        }
    }

    #[test]
    fn deploy_records_round_trip(rec in record()) {
        let parsed = DeployRecord::parse(&rec.render());
        let expected = DeployRecord {
            body: stored_body(rec.body.as_deref()),
            ..rec.clone()
        };
        prop_assert_eq!(parsed, Some(expected), "{}", rec.render());
    }

    #[test]
    fn no_body_changes_what_a_record_says(rec in record(), body in forging_body()) {
        let forged = DeployRecord {
            body: Some(body),
            ..rec.clone()
        };
        let parsed = DeployRecord::parse(&forged.render()).expect("a rendered record parses");
        prop_assert_eq!(&parsed.env, &rec.env);
        prop_assert_eq!(parsed.action, rec.action);
        prop_assert_eq!(&parsed.source_env, &rec.source_env);
        prop_assert_eq!(&parsed.source_tag, &rec.source_tag);
        prop_assert_eq!(&parsed.source_commit, &rec.source_commit);
        prop_assert_eq!(&parsed.gate_override, &rec.gate_override);
        prop_assert_eq!(&parsed.previous_tag, &rec.previous_tag);
        prop_assert_eq!(&parsed.previous_commit, &rec.previous_commit);
        prop_assert_eq!(&parsed.branch, &rec.branch);
        prop_assert_eq!(&parsed.tool, &rec.tool);
    }

    #[test]
    fn deploy_record_parse_of_arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = DeployRecord::parse(&text);
    }
}
