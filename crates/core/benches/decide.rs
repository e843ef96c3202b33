//! Planner performance targets from DESIGN.md / the foundation issue:
//! 10,000 pending pods vs 1,000 nodes and 20 pools in < 100 ms (also with
//! 20 % of them under required anti-affinity); scale-down evaluation of
//! 1,000 nodes / 30,000 pods in < 50 ms.
#![allow(clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use k3scale_core::model::{Taint, TaintEffect, Toleration, TolerationOperator};
use k3scale_core::testkit::*;
use k3scale_core::{Policy, Time, decide};
use std::hint::black_box;

const NOW: Time = Time::from_secs(100_000);

/// 20 pools: 4 sizes × 5 zones, one tainted size; max high enough to take everything.
fn pools() -> Vec<k3scale_core::Pool> {
    let mut out = Vec::new();
    for (i, (cpu, mem_gi, price)) in [
        (2000, 4, 0.04),
        (4000, 16, 0.09),
        (8000, 32, 0.17),
        (16000, 64, 0.34),
    ]
    .into_iter()
    .enumerate()
    {
        for zone in 0..5 {
            let mut p = pool(&format!("s{i}-z{zone}"), 0, 5000, cpu, mem_gi * GI, price);
            p.template.labels.insert("zone".into(), format!("z{zone}"));
            if i == 3 {
                p.template.taints.push(Taint {
                    key: "big".into(),
                    value: String::new(),
                    effect: TaintEffect::NoSchedule,
                });
            }
            out.push(p);
        }
    }
    out
}

fn pending_world() -> (k3scale_core::Snapshot, Policy) {
    let pools = pools();
    let nodes: Vec<_> = (0..1000)
        .map(|i| node_of(&pools[i % 20], &format!("n{i}")))
        .collect();
    // Existing nodes are nearly full: 1800m of every 2000m+ node used.
    let mut pods: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| running(&format!("r{i}"), &n.name, n.template_cpu(), GI))
        .collect();
    let shapes = [
        (100, 128),
        (250, 256),
        (500, 512),
        (1000, 2048),
        (2000, 4096),
        (3000, 8192),
    ];
    for i in 0..10_000 {
        let (cpu, mem) = shapes[i % shapes.len()];
        let mut p = pending(&format!("p{i}"), cpu, mem * MI, NOW);
        if i % 7 == 0 {
            p.node_selector.insert("zone".into(), format!("z{}", i % 5));
        }
        if i % 11 == 0 {
            p.tolerations = vec![Toleration {
                key: "big".into(),
                operator: TolerationOperator::Exists,
                ..Default::default()
            }]
            .into();
        }
        pods.push(p);
    }
    (snapshot(nodes, pods, 0.6, 0.5, NOW), Policy::new(pools))
}

/// The pending world with every fifth pending pod in one of 50 groups that
/// want one pod per node (required hostname anti-affinity).
fn anti_affinity_world() -> (k3scale_core::Snapshot, Policy) {
    use k3scale_core::model::{LabelSelector, PodAffinityTerm, TermNamespaces};
    let (mut s, p) = pending_world();
    for n in &mut s.nodes {
        n.labels.insert("kubernetes.io/hostname".into(), n.name.clone());
    }
    let terms: Vec<std::sync::Arc<[PodAffinityTerm]>> = (0..50)
        .map(|g| {
            std::sync::Arc::from([PodAffinityTerm {
                selector: Some(LabelSelector {
                    match_labels: [("group".to_string(), format!("g{g}"))].into(),
                    match_expressions: vec![],
                }),
                namespaces: TermNamespaces::Listed(vec!["default".into()]),
                topology_key: "kubernetes.io/hostname".into(),
            }])
        })
        .collect();
    for (i, pod) in s.pods.iter_mut().filter(|p| p.node_name.is_none()).enumerate() {
        if i % 5 == 0 {
            let g = (i / 5) % 50;
            pod.labels.insert("group".into(), format!("g{g}"));
            pod.pod_anti_affinity = terms[g].clone();
        }
    }
    (s, p)
}

/// The pending world with one pending pod in ten in one of 50 groups that
/// want one pod per node, and one in ten in one of 50 groups spread evenly
/// over the five zones (maxSkew 1).
fn spread_world() -> (k3scale_core::Snapshot, Policy) {
    use k3scale_core::model::{LabelSelector, TopologySpread};
    let (mut s, p) = anti_affinity_world();
    let spreads: Vec<std::sync::Arc<[TopologySpread]>> = (0..50)
        .map(|g| {
            std::sync::Arc::from([TopologySpread {
                max_skew: 1,
                topology_key: "zone".into(),
                selector: Some(LabelSelector {
                    match_labels: [("spread".to_string(), format!("s{g}"))].into(),
                    match_expressions: vec![],
                }),
                namespace: "default".into(),
                min_domains: None,
                honor_node_affinity: true,
                honor_taints: false,
            }])
        })
        .collect();
    for (i, pod) in s.pods.iter_mut().filter(|p| p.node_name.is_none()).enumerate() {
        if i % 10 == 5 {
            // Half the anti-affinity pods become spread pods instead.
            let g = (i / 10) % 50;
            pod.labels.remove("group");
            pod.pod_anti_affinity = std::sync::Arc::from([]);
            pod.labels.insert("spread".into(), format!("s{g}"));
            pod.topology_spread = spreads[g].clone();
        }
    }
    (s, p)
}

fn scale_down_world() -> (k3scale_core::Snapshot, Policy) {
    let pools = pools();
    let nodes: Vec<_> = (0..1000)
        .map(|i| node_of(&pools[i % 5], &format!("n{i}")))
        .collect();
    let mut pods = Vec::with_capacity(30_000);
    for (i, n) in nodes.iter().enumerate() {
        // Every tenth node is light (a scale-down candidate), the rest are busy.
        let cpu = if i % 10 == 0 { 10 } else { 50 };
        for j in 0..30 {
            pods.push(running(&format!("p{i}-{j}"), &n.name, cpu, 32 * MI));
        }
    }
    (snapshot(nodes, pods, 0.1, 0.2, NOW), Policy::new(pools))
}

trait TemplateCpu {
    fn template_cpu(&self) -> u64;
}

impl TemplateCpu for k3scale_core::Node {
    fn template_cpu(&self) -> u64 {
        self.allocatable.cpu_milli - 200
    }
}

fn benches(c: &mut Criterion) {
    let (s, p) = pending_world();
    let d = decide(&s, &p, NOW);
    assert!(d.nodes_added() > 0);
    c.bench_function("decide: 10k pending pods, 1k nodes, 20 pools", |b| {
        b.iter(|| decide(black_box(&s), black_box(&p), NOW))
    });

    let (s, p) = anti_affinity_world();
    let d = decide(&s, &p, NOW);
    assert!(d.nodes_added() > 0);
    c.bench_function(
        "decide: 10k pending pods (20% with anti-affinity), 1k nodes, 20 pools",
        |b| b.iter(|| decide(black_box(&s), black_box(&p), NOW)),
    );

    let (s, p) = spread_world();
    let d = decide(&s, &p, NOW);
    assert!(d.nodes_added() > 0);
    c.bench_function(
        "decide: 10k pending pods (10% anti-affinity, 10% zone spread), 1k nodes, 20 pools",
        |b| b.iter(|| decide(black_box(&s), black_box(&p), NOW)),
    );

    let (s, p) = scale_down_world();
    let d = decide(&s, &p, NOW);
    assert!(!d.scale_down.is_empty(), "{:?}", d.reasons);
    c.bench_function("decide: scale-down of 1k nodes / 30k pods", |b| {
        b.iter(|| decide(black_box(&s), black_box(&p), NOW))
    });
}

criterion_group! {
    name = planner;
    config = Criterion::default().sample_size(20);
    targets = benches
}
criterion_main!(planner);
