//! A daemon (no election) on the test API server whose provider reports
//! each `create` call: what the reaction and recovery benchmarks time.
#![allow(dead_code, clippy::unwrap_used)]

use k3scale::controller::Controller;
use k3scale::daemon::Daemon;
use k3scale::kube::KubeCluster;
use k3scale::provider::fake::FakeProvider;
use k3scale::provider::{Machine, NodeProvider, ProviderError};
use k3scale::server::Shared;
use k3scale::state::sqlite::SqliteStore;
use k3scale_core::config::load;
use k3scale_testapi::{Options, TestApiServer};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A fake provider that reports when each `create` is called.
#[derive(Debug)]
struct Timed {
    inner: FakeProvider,
    calls: tokio::sync::mpsc::UnboundedSender<Instant>,
}

#[async_trait::async_trait]
impl NodeProvider for Timed {
    fn kind(&self) -> &'static str {
        "timed"
    }
    async fn create(&self, name: &str) -> Result<Machine, ProviderError> {
        let _ = self.calls.send(Instant::now());
        self.inner.create(name).await
    }
    async fn delete(&self, name: &str) -> Result<(), ProviderError> {
        self.inner.delete(name).await
    }
    async fn list(&self) -> Result<Vec<Machine>, ProviderError> {
        self.inner.list().await
    }
}

/// The resync interval is 10 minutes: only watches trigger reconciles.
const CONFIG: &str = "
cluster: bench
metrics: { source: metrics-server }
policy: { interval: 10m }
pools:
  - name: workers
    min: 0
    max: 1000
    template: { cpu: \"2\", memory: 4Gi }
    provider:
      docker: { network: unused, server_url: \"https://k3s:6443\", token_env: UNUSED }
";

/// A pod that needs a whole new node, already reported unschedulable.
pub fn pending_pod(i: usize) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": format!("big-{i}"), "namespace": "bench",
                      "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "big", "uid": "rs", "controller": true }] },
        "spec": { "containers": [{ "name": "app", "resources": { "requests": { "cpu": "1900m", "memory": "1Gi" } } }] },
        "status": { "phase": "Pending", "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                         "lastTransitionTime": "2026-11-23T00:00:00Z" }] }
    })
}

pub struct Bench {
    pub server: TestApiServer,
    pub cluster: Arc<KubeCluster>,
    pub shared: Arc<Shared>,
    /// When the provider's `create` was called, one message per call.
    pub calls: tokio::sync::mpsc::UnboundedReceiver<Instant>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    dir: std::path::PathBuf,
}

/// The server (one small server node), the daemon running on it, settled.
pub async fn start(tag: &str) -> Bench {
    let server = TestApiServer::start(Options {
        token: None,
        ..Options::default()
    })
    .await
    .unwrap();
    server.apply(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": "server" },
        "status": { "allocatable": { "cpu": "1", "memory": "4Gi", "pods": "110" },
                    "conditions": [{ "type": "Ready", "status": "True" }] }
    }));
    let dir = std::env::temp_dir().join(format!("k3scale-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let client = crate::fixture::client(&server.url()).await;
    let cluster = Arc::new(KubeCluster::start(client, "bench"));
    cluster.wait_synced().await;

    let loaded = load("bench.yaml", CONFIG).unwrap();
    let (tx, calls) = tokio::sync::mpsc::unbounded_channel();
    let provider = Timed {
        inner: FakeProvider::new("workers"),
        calls: tx,
    };
    let store = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    let pools = BTreeMap::from([(
        "workers".to_string(),
        k3scale::wiring::machine_pool(
            &loaded.policy.pools[0],
            Some(&loaded.config.pools[0]),
            Box::new(provider),
        ),
    )]);
    let mut n = 0u64;
    let controller = Controller::new(
        loaded.policy,
        cluster.clone(),
        None,
        pools,
        store.clone(),
        Box::new(move || {
            n += 1;
            n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        }),
    );
    let shared = Shared::new(store.clone(), cluster.clone(), "bench");
    let daemon = Daemon {
        controller,
        shared: shared.clone(),
        store,
        identity: "bench".into(),
        interval: loaded.interval,
        lease: None,
    };
    let (stop, task) = daemon.spawn();
    // The first reconcile (at start) has nothing to do.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Bench {
        server,
        cluster,
        shared,
        calls,
        stop,
        task,
        dir,
    }
}

impl Bench {
    /// The next `create` call, or a panic naming the daemon's status.
    pub async fn next_create(&mut self, within: Duration) -> Instant {
        let status = self.shared.clone();
        tokio::time::timeout(within, self.calls.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "create not called within {within:?}; status: {:?}",
                    status.status()
                )
            })
            .unwrap()
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
