//! `pools[].headroom`: room kept ready, planned as placeholder pods.

use k3scale_core::model::Headroom;
use k3scale_core::testkit::*;
use k3scale_core::{Reason, Resources, Time, decide};

const NOW: Time = Time::from_secs(10_000);

/// Workers (2 CPU nodes) keeping room for two pods of 500m / 256Mi.
fn policy() -> k3scale_core::Policy {
    let mut workers = workers();
    workers.headroom = Some(Headroom {
        pods: 2,
        requests: Resources::pod(500, 256 * MI),
    });
    seed_rules(k3scale_core::Policy::new(vec![workers]))
}

fn nodes(n: usize) -> Vec<k3scale_core::Node> {
    let w = workers();
    (0..n).map(|i| node_of(&w, &format!("w{i}"))).collect()
}

fn headroom(d: &k3scale_core::Decision) -> (u32, u32) {
    d.reasons
        .iter()
        .find_map(|r| match r {
            Reason::Headroom { pods, waiting, .. } => Some((*pods, *waiting)),
            _ => None,
        })
        .expect("the decision says what headroom the pool keeps")
}

#[test]
fn a_full_pool_launches_a_node_for_its_headroom_and_tells_no_pod() {
    // Two nodes, each with 1.8 of 2 CPUs requested: no room for 500m.
    let pods = vec![running("a", "w0", 1800, GI), running("b", "w1", 1800, GI)];
    let d = decide(&snapshot(nodes(2), pods, 0.5, 0.4, NOW), &policy(), NOW);
    assert_eq!(d.nodes_added(), 1, "{:?}", d.reasons);
    assert_eq!(headroom(&d), (2, 2));
    assert!(
        d.triggering_pods.is_empty(),
        "no Event for a placeholder: {:?}",
        d.triggering_pods
    );
    // And no scale-down while it waits.
    assert!(d.scale_down.is_empty());
}

#[test]
fn headroom_on_free_room_needs_nothing_and_holds_the_node_it_sits_on() {
    // w0 full, w1 and w2 empty. The placeholders take w1 (first with room);
    // the seed rules would remove an empty node, but only one of w1 / w2
    // can go: the headroom must keep its room on the other.
    let pods = vec![running("a", "w0", 1800, GI)];
    let mut p = policy();
    p.pools[0].min = 1;
    let d = decide(&snapshot(nodes(3), pods.clone(), 0.1, 0.1, NOW), &p, NOW);
    assert_eq!(d.nodes_added(), 0, "{:?}", d.reasons);
    assert_eq!(headroom(&d), (2, 0));
    let removed: Vec<&str> = d.scale_down.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(removed.len(), 1, "{:?}", d.reasons);

    // Without headroom both empty nodes go (down to min 1 plus w0).
    p.pools[0].headroom = None;
    let d = decide(&snapshot(nodes(3), pods, 0.1, 0.1, NOW), &p, NOW);
    assert_eq!(d.scale_down.len(), 2, "{:?}", d.reasons);
}

#[test]
fn a_node_whose_headroom_fits_nowhere_else_stays() {
    // w0 full, w1 empty holding the placeholders (half of it, a candidate
    // under a 0.6 threshold): w1 cannot go.
    let pods = vec![running("a", "w0", 1800, GI)];
    let mut p = policy();
    p.pools[0].min = 1;
    p.scale_down.node_utilization_below = 0.6;
    let d = decide(&snapshot(nodes(2), pods, 0.1, 0.1, NOW), &p, NOW);
    assert!(d.scale_down.is_empty(), "{:?}", d.reasons);
    let why = d
        .reasons
        .iter()
        .find_map(|r| match r {
            Reason::NotRemovable { node, blocker } if node == "w1" => Some(blocker.to_string()),
            _ => None,
        })
        .expect("w1 says why it stays");
    assert!(why.contains("k3scale-headroom/workers-"), "{why}");
}
