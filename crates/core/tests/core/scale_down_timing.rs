//! Scale-down node by node under the default rules: a node goes after it
//! has been unneeded for `unneeded_time` without a break, the delays hold
//! removals but not the clock, and no cluster-wide CPU gate holds a node.

use k3scale_core::testkit::*;
use k3scale_core::{Decision, Reason, Snapshot, Time, decide};
use std::time::Duration;

const START: Time = Time::from_secs(10_000);
const MIN: Duration = Duration::from_secs(60);

/// Three workers (pool min 2): w2 is empty, w0 and w1 carry a pod each.
fn cluster(cpu: f64, now: Time) -> Snapshot {
    let w = workers();
    let nodes = (0..3).map(|i| node_of(&w, &format!("w{i}"))).collect();
    let pods = vec![running("a", "w0", 500, GI), running("b", "w1", 500, GI)];
    snapshot(nodes, pods, cpu, 0.3, now)
}

/// Decide at `now` on `snap`, carrying what it learnt into `snap` as the
/// daemon and the simulator do.
fn step(snap: &mut Snapshot, policy: &k3scale_core::Policy, now: Time) -> Decision {
    *snap = Snapshot {
        unneeded_since: snap.unneeded_since.clone(),
        fit_believed_since: snap.fit_believed_since.clone(),
        last_scale_up: snap.last_scale_up,
        last_scale_down: snap.last_scale_down,
        ..cluster(0.6, now)
    };
    let d = decide(snap, policy, now);
    snap.remember(&d, now);
    d
}

/// The defaults with round numbers: 10 minutes unneeded, 10 after a scale-up.
fn rules() -> k3scale_core::Policy {
    let mut policy = default_policy();
    policy.scale_down.unneeded_time = 10 * MIN;
    policy.scale_down.delay_after_scale_up = 10 * MIN;
    policy
}

fn removed(d: &Decision) -> Vec<&str> {
    d.scale_down.iter().map(|s| s.node.as_str()).collect()
}

#[test]
fn a_node_goes_only_after_it_has_been_unneeded_for_the_unneeded_time() {
    let policy = rules();
    let mut snap = cluster(0.6, START);
    for minute in 0..10 {
        let d = step(&mut snap, &policy, START + minute * MIN);
        assert!(d.scale_down.is_empty(), "minute {minute}: {:?}", removed(&d));
        let waiting = d.reasons.iter().any(
            |r| matches!(r, Reason::Unneeded { node, remaining, .. } if node == "w2" && *remaining == (10 - minute) * MIN),
        );
        assert!(waiting, "minute {minute}: {:?}", d.reasons);
    }
    // Cluster CPU is at 60%, far above the seed rules' 30%: no gate holds it.
    let d = step(&mut snap, &policy, START + 10 * MIN);
    assert_eq!(removed(&d), ["w2"], "{:?}", d.reasons);
    assert!(d.scale_down[0].empty);
}

#[test]
fn a_break_in_being_unneeded_starts_the_clock_again() {
    let policy = rules();
    let mut snap = cluster(0.6, START);
    step(&mut snap, &policy, START);
    step(&mut snap, &policy, START + 8 * MIN);
    // A pending pod blocks scale-down: every node's clock resets.
    let mut busy = cluster(0.6, START + 9 * MIN);
    busy.pods.push(pending("new", 500, GI, START + 9 * MIN));
    busy.unneeded_since = snap.unneeded_since.clone();
    let d = decide(&busy, &policy, START + 9 * MIN);
    snap.remember(&d, START + 9 * MIN);
    assert!(snap.unneeded_since.is_empty());
    let d = step(&mut snap, &policy, START + 12 * MIN);
    assert!(
        d.scale_down.is_empty(),
        "3 minutes of a new 10: {:?}",
        removed(&d)
    );
    let d = step(&mut snap, &policy, START + 22 * MIN);
    assert_eq!(removed(&d), ["w2"]);
}

#[test]
fn the_delays_hold_removals_but_the_clock_keeps_running() {
    let policy = rules();
    let mut snap = cluster(0.6, START);
    snap.last_scale_up = Some(START + 5 * MIN);
    step(&mut snap, &policy, START);
    let d = step(&mut snap, &policy, START + 10 * MIN);
    assert!(d.scale_down.is_empty());
    assert!(
        d.reasons
            .iter()
            .any(|r| matches!(r, Reason::DelayAfterScaleUp { remaining } if *remaining == 5 * MIN)),
        "{:?}",
        d.reasons
    );
    assert!(
        d.reasons.iter().any(
            |r| matches!(r, Reason::Unneeded { node, remaining, .. } if node == "w2" && remaining.is_zero())
        ),
        "{:?}",
        d.reasons
    );
    // The delay ends: the node, unneeded for 15 minutes, goes at once.
    let d = step(&mut snap, &policy, START + 15 * MIN);
    assert_eq!(removed(&d), ["w2"]);
}

#[test]
fn a_node_unneeded_longer_goes_before_a_newly_unneeded_empty_one() {
    // Pool min 2 of 3 nodes, so one may go: w0 (its pod fits on w1) has
    // been unneeded for 20 minutes, the empty w2 only from now. Empty
    // nodes usually go first, but w2 must not take w0's turn.
    let policy = rules();
    let mut snap = cluster(0.6, START);
    snap.unneeded_since
        .insert("w0".into(), START.saturating_sub(20 * MIN));
    let d = step(&mut snap, &policy, START);
    assert_eq!(removed(&d), ["w0"], "{:?}", d.reasons);
    assert!(!d.scale_down[0].empty);
    assert_eq!(
        d.unneeded,
        ["w0"],
        "one of the two, at the pool's minimum after it"
    );
    assert_eq!(snap.unneeded_since["w0"], START.saturating_sub(20 * MIN));
}

#[test]
fn the_seed_rules_gate_is_a_setting() {
    let mut policy = rules();
    policy.scale_down.cluster_gate = true;
    let mut snap = cluster(0.6, START);
    let d = step(&mut snap, &policy, START + 30 * MIN);
    let d2 = step(&mut snap, &policy, START + 60 * MIN);
    assert!(d.scale_down.is_empty() && d2.scale_down.is_empty());
    assert!(
        d2.reasons
            .iter()
            .any(|r| matches!(r, Reason::NotBelow { signal, .. } if signal == "cpu")),
        "{:?}",
        d2.reasons
    );
}
