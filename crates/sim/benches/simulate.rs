//! Simulator target: 30 days of a 1-minute trace in < 2 s (one policy run).
#![allow(clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use k3scale_core::config::{DEFAULT_CONFIG, load};
use k3scale_sim::{SimOptions, Trace, contenders, run};
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
    let opts = SimOptions::default();
    let k3scale = contenders(&loaded.policy, loaded.interval, &trace, &opts).remove(0);
    c.bench_function(
        "simulate: 30 days of NASA 1995 at 1-minute resolution (k3scale)",
        |b| b.iter(|| run(&trace, &k3scale, &opts, &mut |_| {})),
    );
}

criterion_group! {
    name = simulator;
    config = Criterion::default().sample_size(10);
    targets = benches
}
criterion_main!(simulator);
