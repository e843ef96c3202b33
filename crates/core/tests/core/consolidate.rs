//! Consolidation: several under-used small nodes replaced by one cheaper
//! large node when the saving is worth it, the new node first, within the
//! disruption budgets, and only on a settled cluster.

use k3scale_core::disruption::Amount;
use k3scale_core::lifecycle::InFlight;
use k3scale_core::policy::Consolidation;
use k3scale_core::testkit::*;
use k3scale_core::{Policy, Snapshot, Time, decide};
use std::time::Duration;

const NOW: Time = Time::from_secs(100_000);

/// Four `small` nodes (2 CPU, $0.05/h) each running a 1.1-CPU pod; a
/// `large` pool (8 CPU, $0.12/h) with none.
fn cluster() -> (Snapshot, Policy) {
    let small = pool("small", 0, 10, 2000, 4 * GI, 0.05);
    let large = pool("large", 0, 10, 8000, 16 * GI, 0.12);
    let nodes = (0..4).map(|i| node_of(&small, &format!("s{i}"))).collect();
    let pods = (0..4)
        .map(|i| running(&format!("p{i}"), &format!("s{i}"), 1100, GI))
        .collect();
    let mut policy = Policy::new(vec![small, large]);
    policy.consolidation = Some(Consolidation {
        min_saving_per_hour: 0.01,
    });
    (snapshot(nodes, pods, 0.5, 0.3, NOW), policy)
}

#[test]
fn four_half_empty_small_nodes_become_one_large_one_new_node_first() {
    let (mut snap, policy) = cluster();
    let d = decide(&snap, &policy, NOW);
    assert_eq!(d.scale_up.len(), 1, "{}", reasons_text(&d));
    assert_eq!((d.scale_up[0].pool.as_str(), d.scale_up[0].count), ("large", 1));
    assert!(d.scale_down.is_empty(), "{}", reasons_text(&d));
    assert!(
        reasons_text(&d).contains(
            "consolidation: s0, s1, s2, s3 (4 nodes) replaced by 1 new large nodes, saving $0.0800/h"
        ),
        "{}",
        reasons_text(&d)
    );
    snap.remember(&d, NOW);

    // The large node is on its way: wait.
    snap.in_flight = vec![InFlight {
        pool: "large".into(),
        name: "large-1".into(),
        launched_at: NOW,
    }];
    let later = NOW + Duration::from_secs(30);
    let d = decide(&snap, &policy, later);
    assert!(
        d.scale_down.is_empty() && d.scale_up.is_empty(),
        "{}",
        reasons_text(&d)
    );
    snap.remember(&d, later);
    assert_eq!(snap.consolidating.len(), 4);

    // It has joined: the four small nodes are drained.
    snap.in_flight.clear();
    let joined = NOW + Duration::from_secs(60);
    let mut large = node_of(&policy.pools[1], "large-1");
    large.created_at = joined;
    snap.nodes.push(large);
    let d = decide(&snap, &policy, joined);
    let drained: Vec<&str> = d.scale_down.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(drained, ["s0", "s1", "s2", "s3"], "{}", reasons_text(&d));
    assert!(
        reasons_text(&d).contains("consolidation: the new large nodes have joined: draining s0"),
        "{}",
        reasons_text(&d)
    );
}

#[test]
fn a_budget_a_small_saving_or_an_unsettled_cluster_holds_it() {
    // A budget of 2 in the small pool: four nodes are too many at once.
    let (snap, mut policy) = cluster();
    policy.pools[0].disruption = vec![budget("two", Amount::Nodes(2), &[], None)];
    let d = decide(&snap, &policy, NOW);
    assert!(d.scale_up.is_empty(), "{}", reasons_text(&d));
    assert!(
        reasons_text(&d).contains("would save $0.0800/h but is held: disruption budget two"),
        "{}",
        reasons_text(&d)
    );

    // Not worth it below the threshold.
    let (snap, mut policy) = cluster();
    policy.consolidation = Some(Consolidation {
        min_saving_per_hour: 0.5,
    });
    assert!(decide(&snap, &policy, NOW).scale_up.is_empty());

    // Off unless configured.
    let (snap, mut policy) = cluster();
    policy.consolidation = None;
    assert!(decide(&snap, &policy, NOW).scale_up.is_empty());

    // A scale-up a minute ago: not settled.
    let (mut snap, policy) = cluster();
    snap.last_scale_up = Some(NOW.saturating_sub(Duration::from_secs(60)));
    assert!(decide(&snap, &policy, NOW).scale_up.is_empty());

    // A pod that must not be disrupted keeps its node out of any set.
    let (mut snap, policy) = cluster();
    for p in &mut snap.pods {
        p.annotations
            .insert(k3scale_core::model::DO_NOT_DISRUPT.into(), "true".into());
    }
    assert!(decide(&snap, &policy, NOW).scale_up.is_empty());
}
