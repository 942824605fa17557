//! `kubectl gitops trust set|show|clear`: the namespace's trust policy, the ConfigMap
//! `kubectl-gitops-trust` (format: `shared::signature::policy`; how it is enforced:
//! `crate::trust`).

use std::io::Write as _;
use std::path::Path;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use serde_json::json;
use shared::signature::{Mode, TrustPolicy};
use shared::{Error, Result};

use crate::cli::{Format, KubeArgs, TrustCommand, TrustSetArgs, TrustShowArgs};
use crate::cluster::{api_error, idempotent, status_code, when_throttled};
use crate::kubeconf::{self, Connection};
use crate::record::MANAGED_BY;
use crate::trust::{self, CONFIGMAP_NAME};

pub async fn run(kube: &KubeArgs, command: TrustCommand) -> Result<i32> {
    match command {
        TrustCommand::Set(args) => set(kube, args).await,
        TrustCommand::Show(args) => show(kube, args).await,
        TrustCommand::Clear(_) => clear(kube).await,
    }
}

/// The namespace from -n, else the context's.
async fn connect(kube: &KubeArgs) -> Result<(Connection, String)> {
    let conn = kubeconf::connect(kube, None).await?;
    let ns = kube
        .namespace
        .clone()
        .unwrap_or_else(|| conn.default_namespace.clone());
    Ok((conn, ns))
}

fn read_file(flag: &str, path: &Path) -> Result<(String, String)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("{flag} {}: {e}", path.display())).with_source(e))?;
    Ok((path.display().to_string(), text))
}

/// Checks everything (files parse, gpg imports the keys) before connecting; then writes the
/// ConfigMap exactly as given: created, or replaced whole by compare-and-swap, so no key of an
/// older policy survives.
async fn set(kube: &KubeArgs, args: TrustSetArgs) -> Result<i32> {
    let mode: Mode = args.mode.parse()?;
    let ssh = args
        .ssh_allowed_signers
        .as_deref()
        .map(|p| read_file("--ssh-allowed-signers", p))
        .transpose()?;
    let gpg = args
        .gpg_keys
        .as_deref()
        .map(|p| read_file("--gpg-keys", p))
        .transpose()?;
    let policy = TrustPolicy::from_files(
        mode,
        ssh.as_ref().map(|(s, t)| (s.as_str(), t.clone())),
        gpg.as_ref().map(|(s, t)| (s.as_str(), t.clone())),
        &trust::gpg_program(),
    )?;
    let (conn, ns) = connect(kube).await?;
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIGMAP_NAME.into()),
            namespace: Some(ns.clone()),
            labels: Some([(MANAGED_BY.to_string(), "kubectl-gitops".to_string())].into()),
            ..ObjectMeta::default()
        },
        data: Some(policy.to_configmap_data()),
        ..ConfigMap::default()
    };
    if args.dry_run {
        let value = serde_json::to_value(&cm).expect("a ConfigMap serialises");
        print!("{}", crate::normalize::to_yaml(&value));
        eprintln!("dry run: nothing was written");
        return Ok(0);
    }
    let api: Api<ConfigMap> = Api::namespaced(conn.client.clone(), &ns);
    let what = format!("ConfigMap {ns}/{CONFIGMAP_NAME}");
    let pp = PostParams::default();
    match when_throttled(|| api.create(&pp, &cm)).await {
        Ok(_) => {}
        Err(e) if status_code(&e) == Some(409) => {
            let live = idempotent(|| api.get(CONFIGMAP_NAME))
                .await
                .map_err(|e| api_error(format!("reading {what}"), e))?;
            let mut replacement = cm.clone();
            replacement.metadata.resource_version = live.metadata.resource_version;
            when_throttled(|| api.replace(CONFIGMAP_NAME, &pp, &replacement))
                .await
                .map_err(|e| match status_code(&e) {
                    Some(409) => Error::race(format!(
                        "{what} was changed by someone else while it was being replaced"
                    ))
                    .hint("check it with `kubectl gitops trust show`, then retry"),
                    _ => api_error(format!("replacing {what}"), e),
                })?;
        }
        Err(e) => return Err(api_error(format!("writing {what}"), e)),
    }
    eprintln!("trust policy of namespace {ns} set ({what})");
    print_policy(&ns, &policy)?;
    Ok(0)
}

async fn show(kube: &KubeArgs, args: TrustShowArgs) -> Result<i32> {
    let (conn, ns) = connect(kube).await?;
    let policy = trust::read_policy(&conn.client, &ns).await?;
    match (args.output, policy) {
        (Format::Json, None) => {
            shared::output::print_json(&json!({"namespace": ns, "policy": null}))
        }
        (Format::Json, Some(policy)) => {
            let ssh: Vec<_> = policy
                .ssh_signers()
                .iter()
                .map(|e| {
                    json!({
                        "principals": e.principals,
                        "type": shared::signature::ssh::key_type(e.key.key_data()),
                        "fingerprint": shared::signature::ssh::fingerprint(e.key.key_data()),
                        "options": e.options(),
                    })
                })
                .collect();
            let gpg = policy.gpg_key_list(&trust::gpg_program())?;
            shared::output::print_json(&json!({
                "namespace": ns,
                "policy": {
                    "configmap": CONFIGMAP_NAME,
                    "mode": policy.mode,
                    "ssh_signers": ssh,
                    "gpg_keys": gpg,
                }
            }));
        }
        (Format::Text, None) => shared::output::stdout_line(format!(
            "namespace {ns} has no trust policy: its deploys are not checked"
        )),
        (Format::Text, Some(policy)) => print_policy(&ns, &policy)?,
    }
    Ok(0)
}

fn print_policy(ns: &str, policy: &TrustPolicy) -> Result<()> {
    let gpg = policy.gpg_key_list(&trust::gpg_program())?;
    let mut out = anstream::stdout().lock();
    let _ = writeln!(
        out,
        "namespace {ns}: trust policy (ConfigMap {CONFIGMAP_NAME}), mode {}: {}",
        policy.mode,
        match policy.mode {
            Mode::Tag => "the annotated tag must be signed by a listed key",
            Mode::Commit => "the tagged commit must be signed by a listed key",
            Mode::TagAndCommit => "the annotated tag and its commit must be signed by listed keys",
        }
    );
    if !policy.ssh_signers().is_empty() {
        let _ = writeln!(out, "SSH signers (allowed_signers):");
        for e in policy.ssh_signers() {
            let _ = writeln!(out, "  {e}");
        }
    }
    if !gpg.is_empty() {
        let _ = writeln!(out, "OpenPGP keys:");
        for k in &gpg {
            let mut flags = String::new();
            if k.expired {
                flags.push_str(" [expired]");
            }
            if k.revoked {
                flags.push_str(" [revoked]");
            }
            let _ = writeln!(
                out,
                "  {} {} {}{flags}",
                k.key_type,
                k.fingerprint,
                k.user_ids.join(", ")
            );
        }
    }
    Ok(())
}

async fn clear(kube: &KubeArgs) -> Result<i32> {
    let (conn, ns) = connect(kube).await?;
    let api: Api<ConfigMap> = Api::namespaced(conn.client.clone(), &ns);
    let dp = DeleteParams::default();
    match idempotent(|| api.delete(CONFIGMAP_NAME, &dp)).await {
        Ok(_) => eprintln!(
            "removed the trust policy of namespace {ns} (ConfigMap {CONFIGMAP_NAME}): its deploys are no longer checked"
        ),
        Err(e) if status_code(&e) == Some(404) => {
            eprintln!("namespace {ns} has no trust policy; nothing to clear")
        }
        Err(e) => {
            return Err(api_error(
                format!("deleting ConfigMap {ns}/{CONFIGMAP_NAME}"),
                e,
            ));
        }
    }
    Ok(0)
}
