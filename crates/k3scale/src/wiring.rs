//! Building a controller from a configuration: the state store, the
//! cluster view, every pool's provider and machine lifecycle, the metrics
//! source, notifications and interruption notices. `run` and `once` use it.

use crate::controller::Controller;
use crate::kube::KubeCluster;
use crate::kube::cluster::SYNC_TIMEOUT;
use crate::machines::MachinePool;
use crate::metrics::MetricsSource;
use crate::metrics::metrics_server::MetricsServer;
use crate::metrics::prometheus::Prometheus;
use crate::notify::Notifier;
use crate::provider::secret::Secret;
use crate::provider::{self, unix_now};
use crate::state::StateStore;
use crate::state::kubernetes::KubernetesStore;
use crate::state::sqlite::SqliteStore;
use k3scale_core::config::{Loaded, MetricsSourceKind, StateBackend};
use k3scale_core::lifecycle::LifecycleConfig;
use rand::{RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most `create` calls a pool makes at once.
pub const CREATE_PARALLELISM: usize = 8;

/// A pool's machines as the controller drives them: its provider, its
/// lifecycle timings, and (from its configuration) the fingerprint that
/// lets a failed pool launch again once it is reconfigured.
pub fn machine_pool(
    pool: &k3scale_core::Pool,
    config: Option<&k3scale_core::config::PoolConfig>,
    provider: Box<dyn crate::provider::NodeProvider>,
) -> MachinePool {
    let machines = MachinePool::new(
        &pool.name,
        provider,
        LifecycleConfig::for_pool(pool),
        CREATE_PARALLELISM,
    );
    match config {
        Some(c) => machines.with_fingerprint(crate::machines::config_fingerprint(c)),
        None => machines,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(transparent)]
    Kube(#[from] crate::kube::KubeError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Provider(#[from] crate::provider::ProviderError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// The API server did not answer (`once` ends here; the daemon waits).
    #[error("{0}")]
    Unreachable(String),
    #[error("the Kubernetes API at {api} did not list {stale} within {secs}s")]
    NotListed { api: String, stale: String, secs: u64 },
    #[error("{0}")]
    Config(String),
}

/// The state store the configuration names (`client` for the kubernetes backend).
pub async fn open_store(
    loaded: &Loaded,
    client: Option<kube::Client>,
) -> Result<Arc<dyn StateStore>, WiringError> {
    let cfg = &loaded.config;
    Ok(match cfg.state.backend {
        StateBackend::Sqlite => {
            let path = std::path::Path::new(&cfg.state.path);
            // A dry run creates no state directory or database of its own.
            if loaded.policy.dry_run && !path.exists() {
                Arc::new(SqliteStore::in_memory(path)?)
            } else {
                Arc::new(SqliteStore::open(path)?)
            }
        }
        StateBackend::Kubernetes => {
            let namespace = cfg
                .state
                .namespace
                .clone()
                .or_else(crate::kube::lease::pod_namespace)
                .unwrap_or_else(|| crate::kube::lease::DEFAULT_NAMESPACE.into());
            let client = client
                .ok_or_else(|| WiringError::Config("the kubernetes state backend needs the API".into()))?;
            Arc::new(KubernetesStore::new(client, &namespace))
        }
        #[cfg(feature = "aws")]
        StateBackend::Dynamodb => {
            let table = cfg.state.table.as_deref().ok_or_else(|| {
                WiringError::Config("state.table is required with the dynamodb backend".into())
            })?;
            Arc::new(crate::state::dynamodb::DynamoStore::connect(table, None).await)
        }
        #[cfg(not(feature = "aws"))]
        StateBackend::Dynamodb => {
            return Err(WiringError::Config(
                "state.backend dynamodb needs k3scale built with `--features aws` (the release images are)"
                    .into(),
            ));
        }
    })
}

/// Everything a controller needs, built from the configuration. With
/// `wait_for_caches` (`once`: it decides once, so on a full view) an
/// unreachable API or caches that do not list in time are errors; the
/// daemon does not wait: it acts on nothing until they have listed.
pub async fn controller(
    loaded: &Loaded,
    identity: &str,
    wait_for_caches: bool,
) -> Result<(Controller, Arc<dyn StateStore>), WiringError> {
    let cfg = &loaded.config;
    let (client, api) = crate::kube::connect(&cfg.kubernetes).await?;
    // Say at once, in one line, when the API cannot be reached. `once` ends
    // there; the daemon waits for it, not ready meanwhile.
    if let Err(why) = crate::kube::reachable(&client, &api).await {
        if wait_for_caches {
            return Err(WiringError::Unreachable(why));
        }
        tracing::warn!("{why}; waiting for it (not ready meanwhile)");
    }
    let store = open_store(loaded, Some(client.clone())).await?;
    let cluster = Arc::new(KubeCluster::start(client, identity));
    if wait_for_caches
        && tokio::time::timeout(SYNC_TIMEOUT, cluster.wait_synced())
            .await
            .is_err()
    {
        return Err(WiringError::NotListed {
            api,
            stale: cluster.stale().join(", "),
            secs: SYNC_TIMEOUT.as_secs(),
        });
    }
    let mut pools = BTreeMap::new();
    for (pool, pool_cfg) in loaded.policy.pools.iter().zip(&cfg.pools) {
        let p = provider::from_config(&cfg.cluster, pool, &pool_cfg.provider).await?;
        pools.insert(pool.name.clone(), machine_pool(pool, Some(pool_cfg), p));
    }
    let metrics: Box<dyn MetricsSource> = match cfg.metrics.source {
        MetricsSourceKind::Prometheus => Box::new(Prometheus::new(
            &cfg.metrics.prometheus,
            loaded.policy.custom.clone(),
        )?),
        MetricsSourceKind::MetricsServer => Box::new(MetricsServer::new(cluster.clone())),
    };
    let seed = unix_now().as_millis() ^ u64::from(std::process::id()).rotate_left(32);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let secret = |c: &Option<k3scale_core::config::SecretUrlConfig>,
                  key: &str|
     -> Result<Option<Secret>, WiringError> {
        c.as_ref()
            .map(|c| Secret::load(c.url_file.as_deref(), c.url_env.as_deref()))
            .transpose()
            .map_err(|e| WiringError::Config(format!("notify.{key}: {e}")))
    };
    let mut notifier = Notifier::new(
        secret(&cfg.notify.slack, "slack")?,
        secret(&cfg.notify.webhook, "webhook")?,
    );
    notifier.repeat_after = cfg.notify.repeat_after.get();
    let controller = Controller::new(
        loaded.policy.clone(),
        cluster,
        Some(metrics),
        pools,
        store.clone(),
        Box::new(move || rng.next_u64()),
    );
    let mut controller = controller.with_metrics_alert_after(cfg.notify.metrics_unavailable_after.get());
    if !notifier.is_empty() {
        controller = controller.with_notifier(Arc::new(notifier), &cfg.cluster);
    }
    if let Some(i) = &cfg.interruptions {
        #[cfg(feature = "aws")]
        {
            let sqs = crate::interruptions::sqs::SqsInterruptions::connect(&i.sqs_queue_url, &i.region).await;
            controller = controller.with_interruptions(Box::new(sqs));
        }
        #[cfg(not(feature = "aws"))]
        return Err(WiringError::Config(format!(
            "interruptions ({}) need k3scale built with `--features aws` (the release images are)",
            i.sqs_queue_url
        )));
    }
    Ok((controller, store))
}
