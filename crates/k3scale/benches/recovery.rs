//! `cargo bench -p k3scale --bench recovery`: how long after the apiserver
//! comes back from an outage (30 s, history compacted meanwhile) the daemon
//! acts on fresh caches: a pod that became unschedulable during the outage
//! is only seen by the re-list, so the provider's `create` call marks the
//! first reconcile on fresh caches. Three trials (`RECOVERY_TRIALS`,
//! `RECOVERY_OUTAGE_SECS` to change). Goal: under 10 s every time.
#![allow(clippy::unwrap_used)]

mod daemonfix;
mod fixture;

use daemonfix::pending_pod;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let trials = env_or("RECOVERY_TRIALS", 3) as usize;
    let outage = Duration::from_secs(env_or("RECOVERY_OUTAGE_SECS", 30));
    let mut bench = daemonfix::start("recovery").await;
    println!(
        "recovery: apiserver down {} s with compaction, then back; {trials} trials",
        outage.as_secs()
    );
    let mut took = Vec::new();
    for i in 0..trials {
        bench.server.go_down();
        // What happens meanwhile is only seen by the re-list.
        bench.server.apply(pending_pod(i));
        bench.server.compact();
        tokio::time::sleep(outage).await;
        let stale_at_return = !bench.cluster.is_synced();
        let back = Instant::now();
        bench.server.come_back();
        let d = bench
            .next_create(Duration::from_secs(60))
            .await
            .duration_since(back);
        println!(
            "  trial {}: first action on fresh caches {:.2} s after the return (caches stale during the outage: {stale_at_return})",
            i + 1,
            d.as_secs_f64()
        );
        took.push(d);
    }
    let worst = took.iter().max().copied().unwrap_or_default();
    println!(
        "worst {:.2} s (goal < 10 s): {}",
        worst.as_secs_f64(),
        if worst < Duration::from_secs(10) {
            "met"
        } else {
            "MISSED"
        }
    );
    bench.stop().await;
}
