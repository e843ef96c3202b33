//! A controller wired to the test API server (the K3s server with one busy
//! node), a provider (the real Docker one with stand-in agents, or the
//! in-memory fake where Docker is not the point), metrics-server through
//! the API, and a SQLite store: shared by the controller and daemon tests.

use crate::kubefix::*;
use crate::support;
use k3scale::controller::Controller;
use k3scale::metrics::MetricsSource;
use k3scale::metrics::metrics_server::MetricsServer;
use k3scale::metrics::prometheus::Prometheus;
use k3scale::provider::NodeProvider;
use k3scale::provider::docker::DockerProvider;
use k3scale::provider::fake::FakeProvider;
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

/// The machines behind a rig's pool.
pub enum Machines {
    /// Stand-in agent containers on the test's own Docker network.
    Docker(support::TestCluster),
    /// In memory: where Docker is not the point.
    Fake(Arc<FakeProvider>),
}

impl Machines {
    /// The Docker cluster of a Docker rig.
    pub fn docker(&self) -> &support::TestCluster {
        match self {
            Machines::Docker(cluster) => cluster,
            Machines::Fake(_) => panic!("a rig on the fake provider has no Docker cluster"),
        }
    }
}

pub struct Rig {
    pub machines: Machines,
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
        machines: Machines::Docker(docker),
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
    let pool = load("k3scale.yaml", CONFIG).unwrap().policy.pools[0].clone();
    let provider = DockerProvider::connect(
        &docker.name,
        pool,
        support::standin_config(docker),
        Secret::new(support::TOKEN),
    )
    .await
    .unwrap();
    // Machine names are Docker container names, global on the engine:
    // rigs running side by side must not draw the same ones.
    let salt = docker.name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    wire(
        k,
        CONFIG,
        Box::new(provider),
        store,
        (seed << 32) ^ salt,
        prometheus,
    )
    .await
}

/// A rig whose pool's machines are the in-memory fake's.
pub async fn fake_rig(tag: &str) -> Rig {
    let k = start().await;
    k3s_server(&k);
    let dir = support::TempDir::new(&format!("controller-{tag}"));
    let store = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    let fake = Arc::new(FakeProvider::new("workers"));
    let controller = wire(&k, CONFIG, Box::new(fake.clone()), store.clone(), 0, None).await;
    Rig {
        machines: Machines::Fake(fake),
        k,
        store,
        controller,
        db: dir,
    }
}

/// The controller of `config` (one pool) on `provider`, with metrics from
/// `prometheus` or metrics-server; `seq` starts its random names.
pub async fn wire(
    k: &Kube,
    config: &str,
    provider: Box<dyn NodeProvider>,
    store: Arc<dyn k3scale::state::StateStore>,
    mut seq: u64,
    prometheus: Option<PrometheusConfig>,
) -> Controller {
    let loaded = load("k3scale.yaml", config).unwrap();
    let pool = loaded.policy.pools[0].clone();
    let cluster = k.cluster().await;
    let pools = BTreeMap::from([(
        pool.name.clone(),
        k3scale::wiring::machine_pool(&pool, Some(&loaded.config.pools[0]), provider),
    )]);
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
    /// The machines the pool's provider holds, by name.
    pub fn machine_names(&self) -> Vec<String> {
        match &self.machines {
            Machines::Docker(cluster) => cluster.containers(),
            Machines::Fake(fake) => fake.names(),
        }
    }

    /// The pool's provider, to make machines behind the controller's back.
    pub async fn provider(&self) -> Box<dyn NodeProvider> {
        match &self.machines {
            Machines::Docker(cluster) => Box::new(support::standin_provider(cluster).await),
            Machines::Fake(fake) => Box::new(fake.clone()),
        }
    }

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
