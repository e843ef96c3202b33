//! `cargo bench -p k3scale --bench kube_snapshot`: a cluster of 1,000 nodes
//! and 30,000 pods (see `fixture`), watched into k3scale's caches. Reports:
//! - the resident memory the caches add to the process (VmRSS after the
//!   caches synced, minus VmRSS of the same process with a client and no caches);
//! - the time to build a snapshot from the caches (median of 50), and the
//!   RSS after those snapshots were built and dropped.
#![allow(clippy::unwrap_used)]

mod fixture;

use fixture::{NODES, PDBS, PODS, rss_kib};
use k3scale::kube::KubeCluster;
use k3scale_core::Snapshot;
use std::time::{Duration, Instant};

// The allocator of the k3scale binary.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const ROUNDS: usize = 50;

fn main() {
    let Some(served) = fixture::start() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = fixture::client(&served.url).await;
        let empty = rss_kib();

        let start = Instant::now();
        let cluster = KubeCluster::start(client, "bench");
        tokio::time::timeout(Duration::from_secs(300), cluster.wait_synced())
            .await
            .unwrap();
        let sync = start.elapsed();
        let mut snapshot = Snapshot::default();
        cluster.fill(&mut snapshot);
        assert_eq!((snapshot.nodes.len(), snapshot.pods.len()), (NODES, PODS));
        assert!(snapshot.pods.iter().all(|p| p.pdb.is_some()));
        drop(snapshot);
        let full = rss_kib();

        let mut times = Vec::new();
        for _ in 0..ROUNDS {
            let mut s = Snapshot::default();
            let t = Instant::now();
            cluster.fill(&mut s);
            times.push(t.elapsed());
            std::hint::black_box(&s);
        }
        times.sort();
        let after_snapshots = rss_kib();
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!("caches: {NODES} nodes, {PODS} pods, {PDBS} PDBs; initial list + sync {sync:.2?}");
        println!(
            "snapshot from the caches: median {:.2?}, min {:.2?}, max {:.2?} ({ROUNDS} rounds)",
            times[ROUNDS / 2],
            times[0],
            times[ROUNDS - 1]
        );
        println!(
            "RSS: {:.1} MiB without caches, {:.1} MiB with them: +{:.1} MiB",
            mib(empty),
            mib(full),
            mib(full.saturating_sub(empty))
        );
        println!(
            "RSS after {ROUNDS} snapshots (each built, then dropped): {:.1} MiB: +{:.1} MiB",
            mib(after_snapshots),
            mib(after_snapshots.saturating_sub(empty))
        );
    });
}
