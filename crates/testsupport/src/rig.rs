//! A controller wired to the test API server (the K3s server with one busy
//! node), the real Docker provider with stand-in agents, metrics-server
//! through the API, and a SQLite store: shared by the controller and daemon tests.

use crate::kubefix::*;
use crate::support;
use k3scale::controller::Controller;
use k3scale::metrics::MetricsSource;
use k3scale::metrics::metrics_server::MetricsServer;
use k3scale::metrics::prometheus::Prometheus;
use k3scale::provider::docker::DockerProvider;
use k3scale::provider::secret::Secret;
use k3scale::state::sqlite::SqliteStore;
use k3scale_core::config::{PrometheusConfig, load};
use k3scale_core::drain::DrainConfig;
use k3scale_testapi::MetricsMode;
use k3scale_testapi::resources::NODES;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const CONFIG: &str = "
cluster: test
metrics: { source: metrics-server }
policy:
  scale_up: { cooldown: 0s }
  scale_down: { unneeded_time: 0s, delay_after_scale_up: 0s, cooldown: 0s }
pools:
  - name: workers
    min: 0
    max: 3
    template: { cpu: \"2\", memory: 4Gi, boot_time: 5s }
    provider:
      docker: { network: unused, server_url: \"https://k3s:6443\", token_env: UNUSED }
";

pub struct Rig {
    pub docker: support::TestCluster,
    pub k: Kube,
    pub store: Arc<SqliteStore>,
    pub controller: Controller,
    pub db: support::TempDir,
}

pub async fn rig(tag: &str) -> Rig {
    rig_with(tag, None).await
}

/// A rig whose metrics come from Prometheus (`Some`) or metrics-server.
pub async fn rig_with(tag: &str, prometheus: Option<PrometheusConfig>) -> Rig {
    let docker = support::TestCluster::new(tag);
    let k = start().await;
    k3s_server(&k);
    let dir = support::TempDir::new(&format!("controller-{tag}"));
    let store = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    let controller = controller_with(&k, &docker, store.clone(), 0, prometheus).await;
    Rig {
        docker,
        k,
        store,
        controller,
        db: dir,
    }
}

/// A controller (its own caches and provider) on the rig's cluster, Docker
/// network and store: another replica. `seed` varies its machine names.
pub async fn controller(
    k: &Kube,
    docker: &support::TestCluster,
    store: Arc<SqliteStore>,
    seed: u64,
) -> Controller {
    controller_with(k, docker, store, seed, None).await
}

pub async fn controller_with(
    k: &Kube,
    docker: &support::TestCluster,
    store: Arc<SqliteStore>,
    seed: u64,
    prometheus: Option<PrometheusConfig>,
) -> Controller {
    let loaded = load("k3scale.yaml", CONFIG).unwrap();
    let pool = loaded.policy.pools[0].clone();
    let provider = DockerProvider::connect(
        &docker.name,
        pool.clone(),
        support::standin_config(docker),
        Secret::new(support::TOKEN),
    )
    .await
    .unwrap();
    let cluster = k.cluster().await;
    let pools = BTreeMap::from([(
        pool.name.clone(),
        k3scale::wiring::machine_pool(&pool, Some(&loaded.config.pools[0]), Box::new(provider)),
    )]);
    // Machine names are Docker container names, global on the engine:
    // rigs running side by side must not draw the same ones.
    let salt = docker.name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut seq = (seed << 32) ^ salt;
    let controller = Controller::new(
        loaded.policy,
        cluster.clone(),
        Some(match prometheus {
            Some(cfg) => Box::new(Prometheus::new(&cfg, vec![]).unwrap()) as Box<dyn MetricsSource>,
            None => Box::new(MetricsServer::new(cluster)),
        }),
        pools,
        store,
        Box::new(move || {
            seq += 1;
            seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        }),
    );
    let drain = DrainConfig {
        eviction_timeout: Duration::from_secs(20),
        termination_slack: Duration::from_secs(2),
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_millis(500),
    };
    controller.with_drain(drain, Duration::from_millis(50))
}

impl Rig {
    /// K3s's side of a join: the agent registers its Node, Ready.
    pub fn register(&self, name: &str) {
        register(&self.k, name);
    }

    pub fn usage(&self, cpu: &str) {
        let nodes: Vec<String> = self
            .k
            .server
            .list(&NODES)
            .iter()
            .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        self.k.server.set_metrics(MetricsMode::Serving(
            nodes
                .into_iter()
                .map(|n| (n, (cpu.to_string(), "512Mi".to_string())))
                .collect(),
        ));
    }

    pub async fn synced(&self, what: &str, cond: impl Fn(&k3scale::kube::KubeCluster) -> bool) {
        let cluster = self.controller_cluster();
        eventually(10, what, || cond(&cluster)).await;
    }

    pub fn controller_cluster(&self) -> Arc<k3scale::kube::KubeCluster> {
        self.controller.cluster()
    }
}
