//! Simulator target: 30 days of a 1-minute trace through every contender
//! (k3scale reactive and predictive, the 2-minute script, the fixed fleet
//! and the oracle) in < 1 s.
#![allow(clippy::unwrap_used)]

// The allocator of the `k3scale` binary, whose `simulate` this measures.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use criterion::{Criterion, criterion_group, criterion_main};
use k3scale_core::config::{DEFAULT_CONFIG, load};
use k3scale_core::policy::Predictive;
use k3scale_sim::{Candidate, SimOptions, Trace, compare_candidates};
use std::time::Duration;

fn benches(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../traces/nasa-1995-http.csv");
    let text = std::fs::read_to_string(path).unwrap();
    let trace = Trace::parse("nasa", &text)
        .unwrap()
        .truncated(Duration::from_secs(30 * 86_400))
        .scaled(32.0)
        .unwrap();
    let loaded = load("default", DEFAULT_CONFIG).unwrap();
    let mut predictive = loaded.policy.clone();
    predictive.predictive = Some(Predictive { max_extra_nodes: 2 });
    let candidates =
        [("default", loaded.policy.clone()), ("predictive", predictive)].map(|(name, policy)| Candidate {
            name: format!("k3scale:{name}"),
            policy,
            interval: loaded.interval,
        });
    let opts = SimOptions::default();
    c.bench_function(
        "simulate: 30 days of NASA 1995 at 1-minute resolution, every contender",
        |b| b.iter(|| compare_candidates("nasa", &trace, &candidates, &opts, &mut |_| {})),
    );
}

criterion_group! {
    name = simulator;
    config = Criterion::default().sample_size(10);
    targets = benches
}
criterion_main!(simulator);
