//! `cargo bench -p k3scale --bench reaction`: how long from an
//! unschedulable pod appearing in the API to the provider's `create` call,
//! through the running daemon (watch → reconcile → decide → journal →
//! create), over 100 trials. The resync interval is 10 minutes, so only
//! the watch can trigger the reaction. Goal: p99 < 1 s.
#![allow(clippy::unwrap_used)]

mod fixture;

use k3scale::controller::Controller;
use k3scale::daemon::Daemon;
use k3scale::kube::KubeCluster;
use k3scale::machines::MachinePool;
use k3scale::provider::fake::FakeProvider;
use k3scale::provider::{Machine, NodeProvider, ProviderError};
use k3scale::server::Shared;
use k3scale::state::sqlite::SqliteStore;
use k3scale_core::config::load;
use k3scale_core::lifecycle::LifecycleConfig;
use k3scale_testapi::{Options, TestApiServer};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TRIALS: usize = 100;

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

fn pending_pod(i: usize) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": format!("big-{i}"), "namespace": "bench",
                      "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "big", "uid": "rs", "controller": true }] },
        "spec": { "containers": [{ "name": "app", "resources": { "requests": { "cpu": "1900m", "memory": "1Gi" } } }] },
        "status": { "phase": "Pending", "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                         "lastTransitionTime": "2026-11-23T00:00:00Z" }] }
    })
}

#[tokio::main]
async fn main() {
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
    let dir = std::env::temp_dir().join(format!("k3scale-reaction-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let client = fixture::client(&server.url()).await;
    let cluster = Arc::new(KubeCluster::start(client, "bench"));
    cluster.wait_synced().await;

    let loaded = load("bench.yaml", CONFIG).unwrap();
    let (tx, mut calls) = tokio::sync::mpsc::unbounded_channel();
    let provider = Timed {
        inner: FakeProvider::new("workers"),
        calls: tx,
    };
    let store = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    let pools = BTreeMap::from([(
        "workers".to_string(),
        MachinePool::new("workers", Box::new(provider), LifecycleConfig::default(), 8),
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
    let debug = shared.clone();
    let daemon = Daemon {
        controller,
        shared,
        store,
        identity: "bench".into(),
        interval: loaded.interval,
        lease: None,
    };
    let (stop, task) = daemon.spawn();
    // The first reconcile (at start) has nothing to do.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut latencies = Vec::with_capacity(TRIALS);
    for i in 0..TRIALS {
        let sent = Instant::now();
        server.apply(pending_pod(i));
        let called = tokio::time::timeout(Duration::from_secs(10), calls.recv())
            .await
            .unwrap_or_else(|_| panic!("create not called within 10 s; last status: {:?}", debug.status()))
            .unwrap();
        latencies.push(called.duration_since(sent));
        // Let the reconcile finish before the next trial.
        tokio::time::sleep(Duration::from_millis(20)).await;
        while calls.try_recv().is_ok() {}
    }
    let _ = stop.send(());
    let _ = task.await;
    let _ = std::fs::remove_dir_all(&dir);
    latencies.sort();
    let pct = |p: f64| latencies[((TRIALS as f64 * p).ceil() as usize).min(TRIALS) - 1];
    println!(
        "unschedulable pod in the API -> provider create ({TRIALS} trials): p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        pct(0.50),
        pct(0.99),
        latencies[TRIALS - 1]
    );
}
