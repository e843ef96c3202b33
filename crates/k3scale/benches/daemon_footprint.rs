//! `cargo bench -p k3scale --bench daemon_footprint`: the daemon watching
//! 1,000 nodes and 30,000 pods (see `fixture`), reconciling every 10 s with
//! nothing to do. Reports its resident memory above the same process before
//! the caches (idle, after a few reconciles), and the CPU it uses while idle.
#![allow(clippy::unwrap_used)]

mod fixture;

use fixture::{NODES, PODS, rss_kib};
use k3scale::controller::Controller;
use k3scale::daemon::Daemon;
use k3scale::kube::KubeCluster;
use k3scale::provider::fake::FakeProvider;
use k3scale::server::Shared;
use k3scale::state::sqlite::SqliteStore;
use k3scale_core::config::load;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

// The allocator of the k3scale binary.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const IDLE: Duration = Duration::from_secs(60);

const CONFIG: &str = "
cluster: bench
metrics: { source: metrics-server }
policy: { interval: 10s }
pools:
  - name: workers
    min: 0
    max: 2000
    template: { cpu: \"4\", memory: 16Gi }
    provider:
      docker: { network: unused, server_url: \"https://k3s:6443\", token_env: UNUSED }
";

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may contain spaces) start after ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = 100; // USER_HZ on Linux
    Duration::from_millis(ticks * 1000 / hz)
}

fn main() {
    let Some(served) = fixture::start() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = fixture::client(&served.url).await;
        let dir = std::env::temp_dir().join(format!("k3scale-footprint-{}", std::process::id()));
        let store = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
        let empty = rss_kib();

        let cluster = Arc::new(KubeCluster::start(client, "bench"));
        tokio::time::timeout(Duration::from_secs(300), cluster.wait_synced())
            .await
            .unwrap();
        let loaded = load("bench.yaml", CONFIG).unwrap();
        let pools = BTreeMap::from([(
            "workers".to_string(),
            k3scale::wiring::machine_pool(
                &loaded.policy.pools[0],
                Some(&loaded.config.pools[0]),
                Box::new(FakeProvider::new("workers")),
            ),
        )]);
        let controller = Controller::new(
            loaded.policy,
            cluster.clone(),
            None,
            pools,
            store.clone(),
            Box::new(|| 7),
        );
        let shared = Shared::new(store.clone(), cluster.clone(), "bench");
        let watch = shared.clone();
        let daemon = Daemon {
            controller,
            shared,
            store,
            identity: "bench".into(),
            interval: loaded.interval,
            lease: None,
        };
        let (stop, task) = daemon.spawn();
        // Settle: the first reconciles.
        tokio::time::sleep(Duration::from_secs(15)).await;
        let status = watch.status();
        assert_eq!(status.nodes.len(), NODES, "{:?}", status.last_error);
        let (cpu0, t0) = (cpu_time(), Instant::now());
        tokio::time::sleep(IDLE).await;
        let (cpu, wall) = (cpu_time() - cpu0, t0.elapsed());
        let idle = rss_kib();
        let _ = stop.send(());
        let _ = task.await;
        let _ = std::fs::remove_dir_all(&dir);
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "daemon idle with {NODES} nodes and {PODS} pods cached, reconciling every {}s:",
            loaded.interval.as_secs()
        );
        println!(
            "  RSS {:.1} MiB, +{:.1} MiB above the process without caches ({:.1} MiB)",
            mib(idle),
            mib(idle.saturating_sub(empty)),
            mib(empty)
        );
        println!(
            "  CPU {:.2}% of a core over {:.0}s ({:.2?} of CPU time, reconciles included)",
            cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
            wall.as_secs_f64(),
            cpu
        );
    });
}
