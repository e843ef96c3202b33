//! `cargo bench -p k3scale --bench reaction`: how long from an
//! unschedulable pod appearing in the API to the provider's `create` call,
//! through the running daemon (watch → reconcile → decide → journal →
//! create), over 100 trials. The resync interval is 10 minutes, so only
//! the watch can trigger the reaction. Goal: p99 < 1 s.
#![allow(clippy::unwrap_used)]

mod daemonfix;
mod fixture;

use daemonfix::pending_pod;
use std::time::{Duration, Instant};

const TRIALS: usize = 100;

#[tokio::main]
async fn main() {
    let mut bench = daemonfix::start("reaction").await;
    let mut latencies = Vec::with_capacity(TRIALS);
    for i in 0..TRIALS {
        let sent = Instant::now();
        bench.server.apply(pending_pod(i));
        let called = bench.next_create(Duration::from_secs(10)).await;
        latencies.push(called.duration_since(sent));
        // Let the reconcile finish before the next trial.
        tokio::time::sleep(Duration::from_millis(20)).await;
        while bench.calls.try_recv().is_ok() {}
    }
    bench.stop().await;
    latencies.sort();
    let pct = |p: f64| latencies[((TRIALS as f64 * p).ceil() as usize).min(TRIALS) - 1];
    println!(
        "unschedulable pod in the API -> provider create ({TRIALS} trials): p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        pct(0.50),
        pct(0.99),
        latencies[TRIALS - 1]
    );
}
