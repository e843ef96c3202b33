//! Properties `decide` must hold on any cluster (proptest).

use k3scale_core::model::OwnerKind;
use k3scale_core::scheduling::{Target, pack};
use k3scale_core::testkit::*;
use k3scale_core::{InFlight, Node, Pod, Policy, Resources, Snapshot, Time, decide, unschedulable_pods};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;

const NOW: Time = Time::from_secs(100_000);

#[derive(Debug, Clone)]
struct World {
    snapshot: Snapshot,
    policy: Policy,
}

fn pod_shape() -> impl Strategy<Value = (u64, u64, u8)> {
    // cpu millis, memory MiB, kind: 0 = normal, 1 = DaemonSet, 2 = bare, 3 = pdb
    (
        prop_oneof![Just(100u64), Just(250), Just(500), Just(1000), Just(1500)],
        prop_oneof![Just(64u64), Just(256), Just(1024)],
        0u8..8,
    )
}

fn world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec((0u32..3, 1u32..6, 0u32..7), 1..3), // (min, max extra, node count) per pool
        prop::collection::vec((pod_shape(), any::<prop::sample::Index>()), 0..40),
        prop::collection::vec(pod_shape(), 0..8), // pending
        0.0f64..1.0,
        0.0f64..1.0,
        prop::option::of(0u64..1200),
        prop::option::of(0u64..1200),
        0usize..3,   // in flight
        any::<u8>(), // pdb budget
        // Nodes (by index) whose agent died, and how long ago.
        prop::collection::vec((any::<prop::sample::Index>(), 0u64..3000), 0..3),
    )
        .prop_map(
            |(pools_spec, bound, pending_pods, cpu, mem, up_ago, down_ago, in_flight, budget, dead)| {
                let pools: Vec<_> = pools_spec
                    .iter()
                    .enumerate()
                    .map(|(i, (min, extra, _))| {
                        pool(
                            &format!("p{i}"),
                            *min,
                            min + extra,
                            2000,
                            4 * GI,
                            0.04 * (i + 1) as f64,
                        )
                    })
                    .collect();
                let mut nodes: Vec<Node> = Vec::new();
                for (p, (_, _, count)) in pools.iter().zip(&pools_spec) {
                    for j in 0..*count {
                        nodes.push(node_of(p, &format!("{}-n{j}", p.name)));
                    }
                }
                if !nodes.is_empty() {
                    let count = nodes.len();
                    for (at, ago) in dead {
                        let n = &mut nodes[at.index(count)];
                        n.ready = false;
                        n.not_ready_since = Some(NOW.saturating_sub(Duration::from_secs(ago)));
                    }
                }
                let mut pods: Vec<Pod> = Vec::new();
                if !nodes.is_empty() {
                    for (k, ((cpu_m, mem_mi, kind), at)) in bound.into_iter().enumerate() {
                        let node = &nodes[at.index(nodes.len())];
                        let mut p = running(&format!("b{k}"), &node.name, cpu_m, mem_mi * MI);
                        match kind {
                            1 => p.owner = OwnerKind::DaemonSet,
                            2 => p.owner = OwnerKind::None,
                            3 => p.pdb = Some("db".into()),
                            _ => {}
                        }
                        pods.push(p);
                    }
                }
                for (k, (cpu_m, mem_mi, _)) in pending_pods.into_iter().enumerate() {
                    pods.push(pending(&format!("q{k}"), cpu_m, mem_mi * MI, NOW));
                }
                let mut s = snapshot(nodes, pods, cpu, mem, NOW);
                s.pdbs = BTreeMap::from([("db".to_string(), u32::from(budget % 3))]);
                s.last_scale_up = up_ago.map(|a| NOW.saturating_sub(Duration::from_secs(a)));
                s.last_scale_down = down_ago.map(|a| NOW.saturating_sub(Duration::from_secs(a)));
                for (i, p) in pools.iter().take(in_flight).enumerate() {
                    s.in_flight.push(InFlight {
                        pool: p.name.clone(),
                        name: format!("boot-{i}"),
                        launched_at: NOW,
                    });
                }
                World {
                    snapshot: s,
                    policy: Policy::new(pools),
                }
            },
        )
}

fn pool_sizes(w: &World) -> BTreeMap<String, u32> {
    let mut sizes: BTreeMap<String, u32> = w.policy.pools.iter().map(|p| (p.name.clone(), 0)).collect();
    for pool in w
        .snapshot
        .nodes
        .iter()
        .filter_map(|n| n.pool.clone())
        .chain(w.snapshot.in_flight.iter().map(|f| f.pool.clone()))
    {
        *sizes.entry(pool).or_default() += 1;
    }
    sizes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn never_outside_min_max(w in world()) {
        let d = decide(&w.snapshot, &w.policy, NOW);
        let before = pool_sizes(&w);
        for p in &w.policy.pools {
            let up: u32 = d.scale_up.iter().filter(|s| s.pool == p.name).map(|s| s.count).sum();
            let down = d.scale_down.iter().filter(|s| s.pool == p.name).count() as u32;
            let after = before[&p.name] + up - down;
            if before[&p.name] <= p.max { prop_assert!(after <= p.max, "{} {} -> {}", p.name, before[&p.name], after); }
            prop_assert!(after >= p.min, "{} {} -> {} (min {})", p.name, before[&p.name], after, p.min);
            // A dead node deleted may be replaced at once; nothing else
            // both adds and removes nodes of a pool.
            let chosen = d.scale_down.iter().filter(|s| s.pool == p.name && !s.forced).count();
            prop_assert!(up == 0 || chosen == 0);
        }
    }

    #[test]
    fn never_scale_down_with_unschedulable_pods(w in world()) {
        let d = decide(&w.snapshot, &w.policy, NOW);
        if !unschedulable_pods(&w.snapshot).is_empty() {
            prop_assert!(d.scale_down.iter().all(|s| s.forced));
        }
    }

    #[test]
    fn only_nodes_not_ready_long_enough_go_without_a_drain(w in world()) {
        let d = decide(&w.snapshot, &w.policy, NOW);
        for down in &d.scale_down {
            let node = w.snapshot.nodes.iter().find(|n| n.name == down.node).unwrap();
            if down.forced {
                prop_assert!(!node.ready);
                let since = node.not_ready_since.unwrap();
                prop_assert!(NOW.since(since) >= w.policy.scale_down.unready_time);
            } else {
                prop_assert!(node.ready, "{} not Ready but drained", node.name);
            }
        }
        for n in w.snapshot.nodes.iter().filter(|n| !n.ready) {
            let due = NOW.since(n.not_ready_since.unwrap()) >= w.policy.scale_down.unready_time;
            let gone = d.scale_down.iter().any(|s| s.node == n.name);
            prop_assert_eq!(due, gone, "{}", n.name);
        }
    }

    #[test]
    fn removed_nodes_pods_fit_on_the_rest(w in world()) {
        let d = decide(&w.snapshot, &w.policy, NOW);
        let s = &w.snapshot;
        // Drained ones: a dead node's pods are gone with it already.
        let removed: Vec<&str> = d.scale_down.iter().filter(|r| !r.forced).map(|r| r.node.as_str()).collect();
        let mut used: BTreeMap<&str, Resources> = BTreeMap::new();
        for p in s.pods.iter().filter(|p| !p.is_terminal()) {
            if let Some(n) = &p.node_name { *used.entry(n).or_default() += p.requests; }
        }
        let mut targets: Vec<Target<'_>> = s.nodes.iter()
            .filter(|n| n.schedulable() && !removed.contains(&n.name.as_str()))
            .map(|n| Target { name: Some(&n.name), labels: &n.labels, taints: &n.taints, free: n.allocatable - used.get(n.name.as_str()).copied().unwrap_or_default(), extended: Default::default(), pods: Vec::new() })
            .collect();
        let moving: Vec<&Pod> = s.pods.iter()
            .filter(|p| p.node_name.as_deref().is_some_and(|n| removed.contains(&n)) && !p.is_node_bound() && !p.is_terminal())
            .collect();
        let placed = pack(&moving, &mut targets);
        prop_assert!(placed.iter().all(Option::is_some), "pods of {removed:?} do not all fit elsewhere");
        for p in moving {
            prop_assert!(p.owner != OwnerKind::None, "bare pod {} evicted", p.name);
        }
    }

    #[test]
    fn same_input_same_decision(w in world()) {
        prop_assert_eq!(decide(&w.snapshot, &w.policy, NOW), decide(&w.snapshot.clone(), &w.policy.clone(), NOW));
    }
}
