//! `cargo bench -p k3scale --bench docker_create`: time from `create` to a
//! running agent container on the local Docker Engine, for 1 machine and for
//! 10 created in parallel (bounded at 10), with the stand-in agent image.
#![allow(clippy::unwrap_used)]

use k3scale::provider::docker::DockerProvider;
use k3scale::provider::secret::Secret;
use k3scale::provider::{NodeProvider, create_many};
use k3scale_core::testkit::{GI, pool};
use k3scale_testsupport::support;
use std::time::{Duration, Instant};
use support::TestCluster;

const ROUNDS: usize = 5;

#[tokio::main]
async fn main() {
    let cluster = TestCluster::new("bench");
    let cfg = support::standin_config(&cluster);
    let p = DockerProvider::connect(
        &cluster.name,
        pool("bench", 0, 100, 2000, 4 * GI, 0.0),
        cfg,
        Secret::new("t"),
    )
    .await
    .unwrap();
    for n in [1usize, 10] {
        let mut times = Vec::new();
        for round in 0..ROUNDS {
            let names: Vec<String> = (0..n)
                .map(|i| format!("bench-{}-{round}-{i}", cluster.name))
                .collect();
            let start = Instant::now();
            let results = create_many(&p, &names, 10).await;
            let elapsed = start.elapsed();
            assert!(results.iter().all(|r| r.as_ref().is_ok_and(|m| m.running)));
            times.push(elapsed);
            for name in &names {
                p.delete(name).await.unwrap();
            }
        }
        times.sort();
        let median = times[ROUNDS / 2];
        let per = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "docker create -> running, {n:>2} in parallel: median {:.0} ms (min {:.0}, max {:.0}) over {ROUNDS} rounds",
            per(median),
            per(times[0]),
            per(times[ROUNDS - 1])
        );
    }
}
