//! Building the API client from kubeconfig and the kubectl-style flags, with errors that name
//! the file, context or flag at fault.

use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use shared::{Error, Result};

use crate::cli::KubeArgs;

pub struct Connection {
    pub client: kube::Client,
    /// The context's namespace, or `default`.
    pub default_namespace: String,
    /// Who we act as, for revision records: the impersonated user or the kubeconfig user.
    pub user: String,
    /// The API server's URL, as the kubeconfig or --server gives it.
    pub server: String,
}

fn load_kubeconfig(args: &KubeArgs) -> Result<Option<Kubeconfig>> {
    if let Some(path) = &args.kubeconfig {
        return Kubeconfig::read_from(path)
            .map(Some)
            .map_err(|e| Error::invalid(format!("--kubeconfig {}: {e}", path.display())));
    }
    match Kubeconfig::from_env() {
        Ok(Some(kc)) => return Ok(Some(kc)),
        Ok(None) => {}
        Err(e) => {
            return Err(Error::invalid(format!(
                "KUBECONFIG={}: {e}",
                std::env::var("KUBECONFIG").unwrap_or_default()
            )));
        }
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    match home.map(|h| h.join(".kube/config")).filter(|p| p.exists()) {
        Some(path) => Kubeconfig::read_from(&path)
            .map(Some)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display()))),
        None => Ok(None),
    }
}

pub async fn connect(args: &KubeArgs, context_default: Option<&str>) -> Result<Connection> {
    let kubeconfig = load_kubeconfig(args)?;
    let context = args
        .context
        .clone()
        .or_else(|| context_default.map(str::to_string));
    let (mut config, user) = match kubeconfig {
        Some(kc) => {
            let ctx_name = context.clone().or_else(|| kc.current_context.clone());
            if let Some(name) = &ctx_name
                && !kc.contexts.iter().any(|c| &c.name == name)
            {
                let known: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
                return Err(Error::invalid(format!(
                    "context {name:?} does not exist in the kubeconfig"
                ))
                .hint(format!(
                    "contexts are: {} (kubectl config get-contexts)",
                    known.join(", ")
                )));
            }
            let user = args.user.clone().or_else(|| {
                let name = ctx_name.as_ref()?;
                kc.contexts
                    .iter()
                    .find(|c| &c.name == name)?
                    .context
                    .as_ref()
                    .map(|c| c.user.clone().unwrap_or_default())
            });
            let opts = KubeConfigOptions {
                context: context.clone(),
                cluster: args.cluster.clone(),
                user: args.user.clone(),
            };
            let config = Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| Error::invalid(format!("kubeconfig: {e}")))?;
            (config, user.unwrap_or_default())
        }
        // In a Pod (the exporter's Deployment): its ServiceAccount, as kubectl does.
        None if args.server.is_none() && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
            let config = Config::incluster()
                .map_err(|e| Error::invalid(format!("in-cluster configuration: {e}")))?;
            (config, String::new())
        }
        None => {
            let Some(server) = &args.server else {
                return Err(Error::invalid(
                    "no kubeconfig found ($KUBECONFIG unset and ~/.kube/config missing)",
                )
                .hint("pass --kubeconfig, set KUBECONFIG, or give --server and --token"));
            };
            let url = server
                .parse()
                .map_err(|e| Error::invalid(format!("--server {server:?}: {e}")))?;
            (Config::new(url), String::new())
        }
    };
    if let Some(server) = &args.server {
        config.cluster_url = server
            .parse()
            .map_err(|e| Error::invalid(format!("--server {server:?}: {e}")))?;
    }
    if let Some(token) = &args.token {
        config.auth_info.token = Some(secrecy::SecretString::from(token.clone()));
    }
    if let Some(ca) = &args.certificate_authority {
        let pem = std::fs::read(ca).map_err(|e| {
            Error::invalid(format!("--certificate-authority {}: {e}", ca.display()))
        })?;
        config.root_cert = Some(pem_to_der(&pem).map_err(|e| {
            Error::invalid(format!("--certificate-authority {}: {e}", ca.display()))
        })?);
    }
    if args.insecure_skip_tls_verify {
        config.accept_invalid_certs = true;
    }
    if let Some(name) = &args.tls_server_name {
        config.tls_server_name = Some(name.clone());
    }
    let bounds = crate::cluster::Bounds::from_flag(args.request_timeout);
    config.connect_timeout = Some(bounds.connect);
    config.read_timeout = bounds.response;
    config.write_timeout = bounds.response;
    // Otherwise the time a pooled connection sat idle counts against the next answer on it.
    config.reset_reader_on_write = true;
    crate::cluster::set_bounds(bounds);
    if let Some(as_user) = &args.as_user {
        config.auth_info.impersonate = Some(as_user.clone());
    }
    if !args.as_group.is_empty() {
        config.auth_info.impersonate_groups = Some(args.as_group.clone());
    }
    // Retries are chosen per request kind: `cluster::idempotent` and `cluster::when_throttled`.
    config.default_retry = false;
    let user = args.as_user.clone().unwrap_or(user);
    let default_namespace = config.default_namespace.clone();
    let server = config.cluster_url.to_string();
    // Building the client runs the kubeconfig's exec credential plugin, a child process: off
    // the runtime's threads.
    let client = tokio::task::spawn_blocking(move || kube::Client::try_from(config))
        .await
        .map_err(|e| Error::refused(format!("building the API client: {e}")))?
        .map_err(|e| match e {
            kube::Error::Auth(auth) => Error::invalid(format!(
                "cannot build a client: {}",
                crate::cluster::describe_auth(&auth)
            ))
            .hint("check the kubeconfig user's exec plugin (kubectl config view --minify)"),
            other => Error::invalid(format!("cannot build a client: {other}")),
        })?;
    Ok(Connection {
        client,
        default_namespace,
        user,
        server,
    })
}

/// kube's `root_cert` holds DER certificates; CA files are PEM.
fn pem_to_der(pem: &[u8]) -> std::result::Result<Vec<Vec<u8>>, String> {
    let certs: Vec<Vec<u8>> = pem::parse_many(pem)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if certs.is_empty() {
        return Err("no certificate found".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_yield_their_certificates_only() {
        let file = "junk before\n-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n\
                    -----BEGIN PRIVATE KEY-----\nBAUG\n-----END PRIVATE KEY-----\n\
                    -----BEGIN CERTIFICATE-----\nBwgJ\n-----END CERTIFICATE-----\n";
        assert_eq!(
            pem_to_der(file.as_bytes()).unwrap(),
            vec![vec![1, 2, 3], vec![7, 8, 9]]
        );
        assert!(pem_to_der(b"not pem at all").is_err());
        assert!(
            pem_to_der(b"-----BEGIN PRIVATE KEY-----\nBAUG\n-----END PRIVATE KEY-----\n").is_err()
        );
    }
}
