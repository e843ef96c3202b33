//! The Kubernetes adapter: a watch-fed view of the cluster turned into the
//! core's snapshot, the writes a scale-down needs (cordon, eviction,
//! deletes), Events, and the Lease that elects one acting replica.

pub mod cache;
pub mod cluster;
pub mod convert;
pub mod events;
pub mod lease;
pub mod pod_cache;
pub mod review;

pub use cluster::KubeCluster;

use k3scale_core::config::KubernetesConfig;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// K3s writes its admin kubeconfig here.
pub const K3S_KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubeconfig: {0}")]
    Config(String),
    /// The API server answered with a failure `Status`.
    #[error("{what}: HTTP {code} {reason}: {message}")]
    Api {
        what: String,
        code: u16,
        reason: String,
        message: String,
    },
    /// No answer: connection refused, timeout, TLS.
    #[error("{what}: {cause}")]
    Transport { what: String, cause: String },
}

impl KubeError {
    /// Wrap a kube client error with what was being done.
    pub fn from_kube(what: impl Into<String>, e: kube::Error) -> KubeError {
        let what = what.into();
        match e {
            kube::Error::Api(status) => KubeError::Api {
                what,
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            },
            other => KubeError::Transport {
                what,
                cause: root_cause(&other),
            },
        }
    }

    pub fn code(&self) -> Option<u16> {
        match self {
            KubeError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A client for the configured cluster: `kubernetes.kubeconfig` if set;
/// else in-cluster, `KUBECONFIG` or `~/.kube/config`; else K3s's own
/// kubeconfig when k3scale runs on the server.
pub async fn client(config: &KubernetesConfig) -> Result<kube::Client, KubeError> {
    Ok(connect(config).await?.0)
}

/// `client`, and the API server's address (for messages).
pub async fn connect(config: &KubernetesConfig) -> Result<(kube::Client, String), KubeError> {
    let options = KubeConfigOptions {
        context: config.context.clone(),
        ..Default::default()
    };
    let cfg = match &config.kubeconfig {
        Some(path) => from_file(path, &options).await?,
        None if config.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| KubeError::Config(e.to_string()))?,
        None => match kube::Config::infer().await {
            Ok(cfg) => cfg,
            Err(e) if std::path::Path::new(K3S_KUBECONFIG).exists() => {
                tracing::info!(error = %e, path = K3S_KUBECONFIG, "no kubeconfig found, using K3s's");
                from_file(K3S_KUBECONFIG, &options).await?
            }
            Err(e) => return Err(KubeError::Config(e.to_string())),
        },
    };
    let mut cfg = cfg;
    // No hidden retries: a 429 from the Eviction API is the drain's signal
    // (it backs off within its own deadline), and a reconcile that fails is
    // simply tried again on the next one.
    cfg.default_retry = false;
    let url = cfg.cluster_url.to_string().trim_end_matches('/').to_string();
    let client = kube::Client::try_from(cfg).map_err(|e| KubeError::Config(e.to_string()))?;
    Ok((client, url))
}

/// How long `reachable` waits for the API server's answer.
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One request to the API server (`/version`): an error names the address
/// and the root cause (connection refused, certificate, 401...).
pub async fn reachable(client: &kube::Client, url: &str) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "cannot reach the Kubernetes API at {url}: {}",
            root_cause(&e)
        )),
        Err(_) => Err(format!(
            "cannot reach the Kubernetes API at {url}: no answer within {}s",
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

/// The innermost error of a chain, where the cause is named
/// ("Connection refused (os error 111)", not "client error (Connect)").
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

async fn from_file(path: &str, options: &KubeConfigOptions) -> Result<kube::Config, KubeError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| KubeError::Config(format!("{path}: {e}")))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, options)
        .await
        .map_err(|e| KubeError::Config(format!("{path}: {e}")))
}
