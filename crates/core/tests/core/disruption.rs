//! Disruption budgets in the planner: never more nodes disrupted at once
//! than the most restrictive active budget allows (nodes already leaving
//! count), a window of 0 holds every voluntary removal it covers, reasons
//! narrow a budget, the cluster-wide budget spans pools, and a spot
//! interruption is never held.

use k3scale_core::disruption::{Amount, DisruptionReason, Window};
use k3scale_core::testkit::*;
use k3scale_core::{Policy, Reason, Snapshot, Time, decide};
use proptest::prelude::*;
use std::time::Duration;

/// Monday 2026-11-30 12:00 UTC.
const NOON: Time = Time::from_secs(1_796_040_000);

/// `empty` empty nodes and `busy` nodes with a small pod each, all
/// unneeded long enough, in a pool of min 1; removals limited by nothing
/// but budgets.
fn cluster(empty: usize, busy: usize) -> (Snapshot, Policy) {
    let mut pool = workers();
    pool.min = 1;
    pool.max = 200;
    let nodes: Vec<_> = (0..empty + busy)
        .map(|i| node_of(&pool, &format!("w{i:03}")))
        .collect();
    let pods = (empty..empty + busy)
        .map(|i| running(&format!("p{i}"), &format!("w{i:03}"), 100, GI / 8))
        .collect();
    let mut snap = snapshot(nodes, pods, 0.1, 0.1, NOON);
    snap.unneeded_since = snap.nodes.iter().map(|n| (n.name.clone(), Time::ZERO)).collect();
    let mut policy = Policy::new(vec![pool]);
    policy.scale_down.max_empty_step = 1000;
    policy.scale_down.max_step = 1000;
    policy.scale_down.unneeded_time = Duration::ZERO;
    (snap, policy)
}

#[test]
fn a_pool_budget_bounds_removals_and_counts_nodes_already_leaving() {
    let (mut snap, mut policy) = cluster(6, 0);
    policy.pools[0].disruption = vec![budget("two-at-a-time", Amount::Nodes(2), &[], None)];
    let d = decide(&snap, &policy, NOON);
    assert_eq!(d.scale_down.len(), 2, "{}", reasons_text(&d));
    assert!(
        reasons_text(&d).contains("disruption budget two-at-a-time (workers) allows 2 nodes disrupted at once and 2 are: 3 unneeded nodes wait"),
        "{}",
        reasons_text(&d)
    );
    // The others stay unneeded, and say which budget holds them.
    assert!(d.reasons.iter().any(|r| matches!(r,
        Reason::Unneeded { held_by: Some(b), .. } if b == "two-at-a-time")));
    assert_eq!(d.unneeded.len(), 5, "min 1 keeps one: {:?}", d.unneeded);
    // One already draining: one more only.
    snap.nodes[0].cordoned = true;
    let d = decide(&snap, &policy, NOON);
    assert_eq!(d.scale_down.len(), 1, "{}", reasons_text(&d));
}

#[test]
fn a_percentage_is_of_the_pools_nodes_rounded_up() {
    let (snap, mut policy) = cluster(12, 0);
    policy.pools[0].disruption = vec![budget("ten-percent", Amount::Percent(10), &[], None)];
    assert_eq!(decide(&snap, &policy, NOON).scale_down.len(), 2);
}

#[test]
fn a_window_of_zero_holds_every_voluntary_removal_while_it_is_open() {
    let (snap, mut policy) = cluster(3, 2);
    let business_hours = Window::new("0 9 * * 1-5", Duration::from_secs(8 * 3600), "UTC").unwrap();
    policy.disruption = vec![budget(
        "business-hours",
        Amount::Nodes(0),
        &[],
        Some(business_hours),
    )];
    let d = decide(&snap, &policy, NOON);
    assert!(d.scale_down.is_empty(), "{}", reasons_text(&d));
    assert!(
        reasons_text(&d).contains("disruption budget business-hours (cluster) allows 0"),
        "{}",
        reasons_text(&d)
    );
    // 18:00 Monday: the window is closed, removals go.
    let evening = NOON + Duration::from_secs(6 * 3600);
    assert_eq!(decide(&snap, &policy, evening).scale_down.len(), 4);
}

#[test]
fn reasons_narrow_a_budget_empty_nodes_still_go() {
    let (snap, mut policy) = cluster(2, 2);
    policy.pools[0].disruption = vec![budget(
        "no-drains",
        Amount::Nodes(0),
        &[DisruptionReason::Underutilized],
        None,
    )];
    let d = decide(&snap, &policy, NOON);
    assert_eq!(d.scale_down.len(), 2, "{}", reasons_text(&d));
    assert!(d.scale_down.iter().all(|s| s.empty), "{:?}", d.scale_down);
}

#[test]
fn the_cluster_budget_spans_pools() {
    let (mut snap, mut policy) = cluster(3, 0);
    let mut other = policy.pools[0].clone();
    other.name = "spot".into();
    other
        .template
        .labels
        .insert(k3scale_core::model::POOL_LABEL.into(), "spot".into());
    for i in 0..3 {
        snap.nodes.push(node_of(&other, &format!("s{i}")));
        snap.unneeded_since.insert(format!("s{i}"), Time::ZERO);
    }
    policy.pools.push(other);
    policy.disruption = vec![budget("cluster-wide", Amount::Nodes(3), &[], None)];
    let d = decide(&snap, &policy, NOON);
    assert_eq!(d.scale_down.len(), 3, "{}", reasons_text(&d));
}

#[test]
fn a_spot_interruption_is_never_held_by_a_budget() {
    use k3scale_core::snapshot::Interruption;
    let (mut snap, mut policy) = cluster(0, 3);
    policy.disruption = vec![budget("frozen", Amount::Nodes(0), &[], None)];
    snap.interrupted = vec![Interruption {
        node: "w001".into(),
        notice: "spot-interruption".into(),
    }];
    let d = decide(&snap, &policy, NOON);
    assert!(
        d.scale_down.iter().any(|s| s.node == "w001"),
        "{}",
        reasons_text(&d)
    );
    assert_eq!(
        d.scale_down.len(),
        1,
        "only the interrupted one: {}",
        reasons_text(&d)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the cluster and budgets: removals plus nodes already
    /// leaving never exceed the most restrictive budget (unless more were
    /// leaving already, then none is added), and the pool never goes below min.
    #[test]
    fn never_more_than_the_budget_disrupted_at_once(
        empty in 0usize..30,
        busy in 0usize..30,
        leaving in 0usize..5,
        nodes in 0u32..6,
        percent in 0u32..101,
        min in 0u32..10,
    ) {
        prop_assume!(empty + busy > 0);
        let (mut snap, mut policy) = cluster(empty, busy);
        policy.pools[0].min = min;
        for n in snap.nodes.iter_mut().take(leaving) {
            n.cordoned = true;
        }
        let leaving = snap.nodes.iter().filter(|n| n.cordoned).count() as u32;
        policy.pools[0].disruption = vec![
            budget("count", Amount::Nodes(nodes), &[], None),
            budget("share", Amount::Percent(percent), &[], None),
        ];
        let total = snap.nodes.len() as u32;
        let allowed = nodes.min(Amount::Percent(percent).of(total));
        let d = decide(&snap, &policy, NOON);
        let removed = d.scale_down.len() as u32;
        prop_assert!(removed <= allowed.saturating_sub(leaving), "{removed} removed, {leaving} leaving, {allowed} allowed");
        let schedulable = snap.nodes.iter().filter(|n| !n.cordoned).count() as u32;
        prop_assert!(removed == 0 || schedulable - removed >= min.min(schedulable));
    }
}
