//! Machines: the `NodeProvider` seam and its implementations.
//!
//! One provider instance serves one pool. The provider's inventory is the
//! truth about machines; Node objects are the cluster's. Every machine carries
//! the cluster and pool names, so `list` finds exactly ours after a restart.

#[cfg(feature = "aws")]
pub mod asg;
pub mod docker;
#[cfg(feature = "aws")]
pub mod ec2;
pub mod exec;
pub mod fake;
pub mod secret;

use futures::StreamExt;
use k3scale_core::Time;
use serde::{Deserialize, Serialize};

/// Label / tag keys on every machine k3scale creates.
pub const CLUSTER_LABEL: &str = "k3scale.io/cluster";
pub const POOL_LABEL: &str = "k3scale.io/pool";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Typed so the caller can decide what to do, never by matching messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The machine does not exist (for delete: already gone, which is fine).
    #[error("not found: {0}")]
    NotFound(String),
    /// No capacity for this shape now: try another pool, back this one off.
    #[error("insufficient capacity: {0}")]
    InsufficientCapacity(String),
    /// Worth retrying with backoff (engine or API unreachable, timeouts).
    #[error("transient: {0}")]
    Transient(String),
    /// Will not work until someone changes something: alert, stop acting on the pool.
    #[error("fatal: {0}")]
    Fatal(String),
}

/// A machine of ours as the provider sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Also the hostname and the Node name.
    pub name: String,
    pub pool: String,
    /// The provider's own id (container id, instance id...).
    pub provider_id: String,
    /// Unix time in milliseconds.
    pub created_at: Time,
    pub running: bool,
}

#[async_trait::async_trait]
pub trait NodeProvider: Send + Sync + std::fmt::Debug {
    /// `docker`, `exec`, `aws_ec2`...
    fn kind(&self) -> &'static str;

    /// Launch one machine whose hostname and Node name are `name`.
    /// Idempotent: if ours already exists under that name, it is returned.
    async fn create(&self, name: &str) -> Result<Machine, ProviderError>;

    /// Remove a machine. Already gone is success.
    async fn delete(&self, name: &str) -> Result<(), ProviderError>;

    /// Every machine of this cluster and pool, and nothing else.
    async fn list(&self) -> Result<Vec<Machine>, ProviderError>;
}

/// A shared provider is a provider (tests keep a handle on a fake's calls).
#[async_trait::async_trait]
impl<T: NodeProvider + ?Sized> NodeProvider for std::sync::Arc<T> {
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    async fn create(&self, name: &str) -> Result<Machine, ProviderError> {
        (**self).create(name).await
    }
    async fn delete(&self, name: &str) -> Result<(), ProviderError> {
        (**self).delete(name).await
    }
    async fn list(&self) -> Result<Vec<Machine>, ProviderError> {
        (**self).list().await
    }
}

/// The provider a pool's configuration asks for. Secrets are read here,
/// from their files or environment variables.
pub async fn from_config(
    cluster: &str,
    pool: &k3scale_core::Pool,
    config: &k3scale_core::config::ProviderConfig,
) -> Result<Box<dyn NodeProvider>, ProviderError> {
    use k3scale_core::config::ProviderConfig;
    match config {
        ProviderConfig::Docker(d) => {
            let token = secret::Secret::load(d.token_file.as_deref(), d.token_env.as_deref())
                .map_err(|e| ProviderError::Fatal(format!("pool {}: K3s token: {e}", pool.name)))?;
            let p = docker::DockerProvider::connect(cluster, pool.clone(), d.clone(), token).await?;
            Ok(Box::new(p))
        }
        ProviderConfig::Exec(e) => Ok(Box::new(exec::ExecProvider::new(
            cluster,
            pool.clone(),
            e.clone(),
        )?)),
        #[cfg(feature = "aws")]
        ProviderConfig::AwsEc2(a) => Ok(Box::new(
            ec2::Ec2Provider::connect(cluster, pool.clone(), a.clone()).await,
        )),
        #[cfg(feature = "aws")]
        ProviderConfig::AwsAsg(a) => Ok(Box::new(
            asg::AsgProvider::connect(cluster, pool.clone(), a.clone()).await?,
        )),
        #[cfg(not(feature = "aws"))]
        ProviderConfig::AwsEc2(_) | ProviderConfig::AwsAsg(_) => Err(ProviderError::Fatal(format!(
            "pool {}: the {} provider needs k3scale built with --features aws (the release images are)",
            pool.name,
            config.kind()
        ))),
    }
}

/// Create machines concurrently, at most `parallelism` at a time; one result per name, in order.
pub async fn create_many(
    provider: &dyn NodeProvider,
    names: &[String],
    parallelism: usize,
) -> Vec<Result<Machine, ProviderError>> {
    // Owned names: a closure over borrowed ones makes the future fail the
    // `Send` check of callers that spawn it.
    futures::stream::iter(names.to_vec())
        .map(|name| async move { provider.create(&name).await })
        .buffered(parallelism.max(1))
        .collect()
        .await
}

/// Unix time now, for providers that stamp machines themselves.
pub fn unix_now() -> Time {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Time::from_millis(ms)
}
