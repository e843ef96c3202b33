//! Expired and drifted nodes are replaced: the replacement is launched
//! first and the old node drained only once it has joined, within the
//! disruption budgets, never below the minimum, never a node or pod that
//! says do-not-disrupt.

use k3scale_core::disruption::{Amount, DisruptionReason};
use k3scale_core::lifecycle::InFlight;
use k3scale_core::model::{DO_NOT_DISRUPT, HASH_LABEL};
use k3scale_core::testkit::*;
use k3scale_core::{Decision, Policy, Reason, Snapshot, Time, decide};
use proptest::prelude::*;
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86_400);
const NOW: Time = Time::from_secs(40 * 86_400);

/// Three busy-enough nodes (no scale-down), w0 created 31 days ago, the
/// others yesterday; the pool expires nodes after 30 days.
fn cluster() -> (Snapshot, Policy) {
    let mut pool = workers();
    pool.min = 1;
    pool.max = 5;
    pool.expire_after = Some(30 * DAY);
    let mut nodes: Vec<_> = (0..3).map(|i| node_of(&pool, &format!("w{i}"))).collect();
    nodes[0].created_at = NOW.saturating_sub(31 * DAY);
    nodes[1].created_at = NOW.saturating_sub(DAY);
    nodes[2].created_at = NOW.saturating_sub(DAY);
    let pods = (0..3)
        .map(|i| running(&format!("p{i}"), &format!("w{i}"), 1500, GI))
        .collect();
    (snapshot(nodes, pods, 0.5, 0.5, NOW), Policy::new(vec![pool]))
}

fn launched(d: &Decision) -> u32 {
    d.scale_up.iter().map(|u| u.count).sum()
}

#[test]
fn an_expired_node_is_drained_only_after_its_replacement_has_joined() {
    let (mut snap, policy) = cluster();
    // 1. The replacement is launched; nothing is drained.
    let d = decide(&snap, &policy, NOW);
    assert_eq!(launched(&d), 1, "{}", reasons_text(&d));
    assert!(d.scale_down.is_empty(), "{}", reasons_text(&d));
    assert!(
        reasons_text(&d)
            .contains("node w0 of pool workers is expired (744 h old): launching its replacement first"),
        "{}",
        reasons_text(&d)
    );
    snap.remember(&d, NOW);
    assert!(snap.replacing.contains_key("w0"));

    // 2. It is still on its way: wait, launch nothing more.
    let later = NOW + Duration::from_secs(30);
    snap.in_flight = vec![InFlight {
        pool: "workers".into(),
        name: "workers-new".into(),
        launched_at: NOW,
    }];
    let d = decide(&snap, &policy, later);
    assert_eq!((launched(&d), d.scale_down.len()), (0, 0), "{}", reasons_text(&d));
    assert!(
        reasons_text(&d).contains("its replacement is still launching"),
        "{}",
        reasons_text(&d)
    );
    snap.remember(&d, later);

    // 3. It has joined: the old node is drained.
    let joined = NOW + Duration::from_secs(60);
    snap.in_flight.clear();
    let mut new = node_of(&policy.pools[0], "workers-new");
    new.created_at = joined;
    snap.nodes.push(new);
    let d = decide(&snap, &policy, joined);
    assert_eq!(d.scale_down.len(), 1, "{}", reasons_text(&d));
    assert_eq!(
        (d.scale_down[0].node.as_str(), d.scale_down[0].empty),
        ("w0", false)
    );
    assert_eq!(launched(&d), 0, "{}", reasons_text(&d));
    assert!(
        reasons_text(&d).contains("its replacement has joined: draining it"),
        "{}",
        reasons_text(&d)
    );
    snap.remember(&d, joined);
    assert!(snap.replacing.is_empty(), "forgotten once drained");
}

#[test]
fn a_replacement_that_never_came_is_launched_again_and_the_old_node_stays() {
    let (mut snap, policy) = cluster();
    // Requested a minute ago; nothing launching, no newer node: it failed.
    snap.replacing
        .insert("w0".into(), NOW.saturating_sub(Duration::from_secs(60)));
    let d = decide(&snap, &policy, NOW);
    assert_eq!(launched(&d), 1, "{}", reasons_text(&d));
    assert!(d.scale_down.is_empty(), "{}", reasons_text(&d));
    assert!(
        reasons_text(&d).contains("its replacement did not come: launching another"),
        "{}",
        reasons_text(&d)
    );
    assert_eq!(d.replacing, ["w0"]);
}

#[test]
fn a_node_launched_with_other_settings_is_drifted_one_without_a_hash_is_not() {
    let (mut snap, mut policy) = cluster();
    policy.pools[0].expire_after = None;
    policy.pools[0].settings_hash = "v1-new".into();
    snap.nodes[1].labels.insert(HASH_LABEL.into(), "v1-old".into());
    snap.nodes[2].labels.insert(HASH_LABEL.into(), "v1-new".into());
    let d = decide(&snap, &policy, NOW);
    assert_eq!(launched(&d), 1, "{}", reasons_text(&d));
    assert_eq!(d.replacing, ["w1"], "{}", reasons_text(&d));
    assert!(
        reasons_text(&d).contains("node w1 of pool workers is drifted"),
        "{}",
        reasons_text(&d)
    );
}

#[test]
fn budgets_annotations_and_pool_bounds_hold_a_replacement() {
    // A budget of 0 for expired nodes.
    let (snap, mut policy) = cluster();
    policy.pools[0].disruption = vec![budget(
        "no-expiry-now",
        Amount::Nodes(0),
        &[DisruptionReason::Expired],
        None,
    )];
    let d = decide(&snap, &policy, NOW);
    assert_eq!((launched(&d), d.scale_down.len()), (0, 0), "{}", reasons_text(&d));
    assert!(
        reasons_text(&d).contains("is expired but is not replaced now: disruption budget no-expiry-now"),
        "{}",
        reasons_text(&d)
    );

    // A pod that must not be disrupted.
    let (mut snap, policy) = cluster();
    snap.pods[0]
        .annotations
        .insert(DO_NOT_DISRUPT.into(), "true".into());
    let d = decide(&snap, &policy, NOW);
    assert_eq!(launched(&d), 0, "{}", reasons_text(&d));
    assert!(
        reasons_text(&d).contains("pod default/p0 is k3scale.io/do-not-disrupt=true"),
        "{}",
        reasons_text(&d)
    );

    // At the maximum: drained first, the planner brings a node up for its pods.
    let (snap, mut policy) = cluster();
    policy.pools[0].max = 3;
    let d = decide(&snap, &policy, NOW);
    assert_eq!(d.scale_down.len(), 1, "{}", reasons_text(&d));
    assert!(
        reasons_text(&d).contains("the pool is at its maximum: draining it first"),
        "{}",
        reasons_text(&d)
    );

    // Minimum and maximum both 3: no room either way.
    let (snap, mut policy) = cluster();
    policy.pools[0].max = 3;
    policy.pools[0].min = 3;
    let d = decide(&snap, &policy, NOW);
    assert_eq!((launched(&d), d.scale_down.len()), (0, 0), "{}", reasons_text(&d));
    assert!(
        reasons_text(&d).contains("leave no room to replace it"),
        "{}",
        reasons_text(&d)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever is in flight and remembered: a node is drained for
    /// replacement (below the pool's maximum) only when nothing of its
    /// pool is launching, and replacements never exceed the budget.
    #[test]
    fn replacements_join_before_drains_start_and_stay_within_budget(
        expired in 1usize..8,
        fresh in 0usize..4,
        in_flight in 0usize..2,
        remembered in 0usize..4,
        allowed in 0u32..4,
    ) {
        let mut pool = workers();
        pool.min = 1;
        pool.max = 20;
        pool.expire_after = Some(30 * DAY);
        pool.disruption = vec![budget("b", Amount::Nodes(allowed), &[], None)];
        let mut nodes = Vec::new();
        for i in 0..expired + fresh {
            let mut n = node_of(&pool, &format!("w{i}"));
            n.created_at = if i < expired { NOW.saturating_sub(31 * DAY) } else { NOW.saturating_sub(DAY) };
            nodes.push(n);
        }
        let pods = (0..expired + fresh).map(|i| running(&format!("p{i}"), &format!("w{i}"), 1500, GI)).collect();
        let mut snap = snapshot(nodes, pods, 0.5, 0.5, NOW);
        for i in 0..remembered.min(expired) {
            snap.replacing.insert(format!("w{i}"), NOW.saturating_sub(Duration::from_secs(60)));
        }
        snap.in_flight = (0..in_flight)
            .map(|i| InFlight { pool: "workers".into(), name: format!("new{i}"), launched_at: NOW })
            .collect();
        let policy = Policy::new(vec![pool]);
        let d = decide(&snap, &policy, NOW);
        let drained_for_replacement = d.reasons.iter().any(|r| matches!(r,
            Reason::Replacing { step, .. } if step.contains("draining it")));
        prop_assert!(!(drained_for_replacement && in_flight > 0), "{}", reasons_text(&d));
        // In progress (remembered) plus new ones never pass the budget,
        // unless more were in progress already.
        let new = d.replacing.iter().filter(|n| !snap.replacing.contains_key(*n)).count() as u32;
        let in_progress = snap.replacing.len() as u32;
        prop_assert!(new == 0 || in_progress + new <= allowed, "{new} new, {in_progress} in progress, budget {allowed}: {}", reasons_text(&d));
    }
}
