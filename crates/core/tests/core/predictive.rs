//! `policy.predictive`: room for the rise seen at this hour one day ago,
//! kept ready a boot time ahead, within its cap.

use k3scale_core::policy::Predictive;
use k3scale_core::testkit::*;
use k3scale_core::{Reason, Snapshot, Time, decide};

const MINUTE: u64 = 60;
const DAY: u64 = 24 * 60;

/// Two workers; yesterday 4 pods of 500m ran until 09:00, then 12 from
/// 09:01 to 10:00. Today it is 08:59 with 4 pods again.
fn yesterday_rose_at_nine() -> (Snapshot, Time) {
    let w = workers();
    let nodes: Vec<_> = (0..2).map(|i| node_of(&w, &format!("w{i}"))).collect();
    let pods = |n: usize| -> Vec<k3scale_core::Pod> {
        (0..n)
            .map(|i| running(&format!("p{i}"), &format!("w{}", i % 2), 500, 256 * MI))
            .collect()
    };
    let mut snap = snapshot(nodes, pods(4), 0.4, 0.3, Time::ZERO);
    for m in 0..DAY + 539 {
        let busy = (541..600).contains(&(m % DAY));
        snap.demand
            .record(Time::from_secs(m * MINUTE), &pods(if busy { 12 } else { 4 }));
    }
    let now = Time::from_secs((DAY + 539) * MINUTE);
    let mut today = snapshot(snap.nodes.clone(), pods(4), 0.4, 0.3, now);
    today.demand = snap.demand;
    (today, now)
}

fn predictive(max_extra_nodes: u32) -> k3scale_core::Policy {
    let mut p = default_policy();
    p.predictive = Some(Predictive { max_extra_nodes });
    p
}

#[test]
fn the_rise_seen_yesterday_at_this_hour_launches_nodes_before_it_comes() {
    let (snap, now) = yesterday_rose_at_nine();
    // 8 more pods of 500m: 4 CPUs, and the two nodes have 2 CPUs free.
    let d = decide(&snap, &predictive(4), now);
    assert_eq!(d.nodes_added(), 1, "{:?}", d.reasons);
    let forecast = d.reasons.iter().find_map(|r| match r {
        Reason::Forecast {
            cpu_milli,
            pods,
            waiting,
            ..
        } => Some((*cpu_milli, *pods, *waiting)),
        _ => None,
    });
    assert_eq!(forecast, Some((4000, 8, 4)), "{:?}", d.reasons);
    assert!(d.triggering_pods.is_empty(), "no Event for a placeholder");
    // Not without the setting: the same snapshot needs nothing.
    let d = decide(&snap, &default_policy(), now);
    assert_eq!(d.nodes_added(), 0, "{:?}", d.reasons);
}

#[test]
fn the_forecast_spends_at_most_its_cap() {
    let (snap, now) = yesterday_rose_at_nine();
    // One node's worth (a 2-CPU node holds 4 of these pods): the 4 of 8
    // placeholders that fit the free room, none waiting for a node.
    let d = decide(&snap, &predictive(1), now);
    assert_eq!(d.nodes_added(), 0, "{:?}", d.reasons);
    assert!(
        d.reasons.iter().any(|r| matches!(
            r,
            Reason::Forecast {
                pods: 4,
                waiting: 0,
                ..
            }
        )),
        "{:?}",
        d.reasons
    );
}

#[test]
fn a_quiet_hour_yesterday_forecasts_nothing() {
    let (mut snap, _) = yesterday_rose_at_nine();
    let noon = Time::from_secs((DAY + 300) * MINUTE);
    snap.demand.record(noon, &snap.pods.clone());
    let d = decide(&snap, &predictive(4), noon);
    assert_eq!(d.nodes_added(), 0, "{:?}", d.reasons);
    assert!(!d.reasons.iter().any(|r| matches!(r, Reason::Forecast { .. })));
}
