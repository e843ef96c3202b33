//! Behaviour of `decide` on hand-built clusters.

use k3scale_core::decision::{Blocker, Direction};
use k3scale_core::model::{DO_NOT_DISRUPT, OwnerKind, SAFE_TO_EVICT, Taint, TaintEffect};
use k3scale_core::policy::{CustomRule, Expander, PendingPods};
use k3scale_core::testkit::*;
use k3scale_core::{InFlight, Reason, Series, Time, decide};
use std::time::Duration;

const NOW: Time = Time::from_secs(10_000);

use k3scale_core::testkit::reasons_text as reasons;

fn three_workers() -> Vec<k3scale_core::Node> {
    let w = workers();
    (0..3).map(|i| node_of(&w, &format!("w{i}"))).collect()
}

const ZONE: &str = "topology.kubernetes.io/zone";

/// A 2 CPU / 4 GiB pool named `zone-<zone>` whose nodes are in `zone`.
fn zone_pool(zone: &str, price: f64) -> k3scale_core::Pool {
    let mut p = pool(&format!("zone-{zone}"), 0, 10, 2000, 4 * GI, price);
    p.template.labels.insert(ZONE.into(), zone.into());
    p
}

/// A `db` replica (on `node`, or pending) that wants no other in its
/// `topology_key` domain (required pod anti-affinity).
fn db_replica(name: &str, node: Option<&str>, topology_key: &str) -> k3scale_core::Pod {
    use k3scale_core::model::{LabelSelector, PodAffinityTerm, TermNamespaces};
    let mut p = match node {
        Some(n) => running(name, n, 100, 64 * MI),
        None => pending(name, 100, 64 * MI, NOW),
    };
    p.labels.insert("app".into(), "db".into());
    p.pod_anti_affinity = std::sync::Arc::from([PodAffinityTerm {
        selector: Some(LabelSelector {
            match_labels: [("app".to_string(), "db".to_string())].into(),
            match_expressions: vec![],
        }),
        namespaces: TermNamespaces::Listed(vec!["default".into()]),
        topology_key: topology_key.into(),
    }]);
    p
}

#[test]
fn quiet_cluster_does_nothing_and_says_so() {
    let s = snapshot(three_workers(), vec![running("a", "w0", 1500, GI)], 0.5, 0.4, NOW);
    let d = decide(&s, &seed_policy(), NOW);
    assert!(d.is_noop(), "{}", reasons(&d));
    assert!(matches!(d.reasons[0], Reason::NotBelow { ref signal, .. } if signal == "cpu"));
}

#[test]
fn sustained_cpu_adds_the_nodes_needed_up_to_max_step() {
    // 85% of 6 cores is 5.1 cores: 7.3 cores keep it under 70%, so one more node.
    let s = snapshot(three_workers(), vec![], 0.85, 0.4, NOW);
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 1, "{}", reasons(&d));
    // 100% needs 8.6 cores: two nodes, which is also max_step.
    let hot = snapshot(three_workers(), vec![], 1.0, 0.4, NOW);
    assert_eq!(decide(&hot, &seed_policy(), NOW).nodes_added(), 2);
    assert!(d.reasons.iter().any(|r| matches!(r, Reason::Above { signal, observed, .. } if signal == "cpu" && (*observed - 0.85).abs() < 1e-9)));
}

#[test]
fn a_short_cpu_spike_is_not_sustained() {
    let mut s = snapshot(three_workers(), vec![], 0.4, 0.4, NOW);
    // Last 30 s at 100%: the 3-minute mean stays well under 70%.
    for sample in s.cpu.samples.iter_mut().rev().take(3) {
        sample.value = Some(1.0);
    }
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 0, "{}", reasons(&d));
}

#[test]
fn memory_above_threshold_scales_up() {
    let s = snapshot(three_workers(), vec![], 0.2, 0.8, NOW);
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 1);
    assert!(d.scale_down.is_empty());
}

#[test]
fn cooldown_after_scale_up_blocks_utilization_scale_up() {
    let mut s = snapshot(three_workers(), vec![], 0.9, 0.4, NOW);
    s.last_scale_up = Some(NOW.saturating_sub(Duration::from_secs(120)));
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 0);
    assert!(d.reasons.contains(&Reason::Cooldown {
        direction: Direction::Up,
        remaining: Duration::from_secs(180)
    }));
}

#[test]
fn at_max_capacity_is_reported_not_an_error() {
    let w = workers();
    let nodes = (0..10).map(|i| node_of(&w, &format!("w{i}"))).collect();
    let s = snapshot(nodes, vec![], 0.95, 0.4, NOW);
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 0);
    assert!(
        d.reasons
            .iter()
            .any(|r| matches!(r, Reason::AtMaxCapacity { pool, max: 10, .. } if pool == "workers"))
    );
}

#[test]
fn max_step_is_capped_by_pool_max() {
    let w = workers();
    let nodes = (0..9).map(|i| node_of(&w, &format!("w{i}"))).collect();
    let d = decide(&snapshot(nodes, vec![], 0.95, 0.4, NOW), &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 1);
}

#[test]
fn below_min_scales_up_to_min_even_in_cooldown() {
    let w = workers();
    let mut s = snapshot(vec![node_of(&w, "w0")], vec![], 0.1, 0.1, NOW);
    s.last_scale_up = Some(NOW);
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 1);
    assert!(d.reasons.contains(&Reason::BelowMin {
        pool: "workers".into(),
        current: 1,
        min: 2
    }));
}

#[test]
fn pending_pods_are_bin_packed_onto_exactly_enough_nodes() {
    // 2 CPU nodes; 7 pending pods of 600m: 3 per node ⇒ 3 new nodes (not the +2 step).
    let pending_pods = (0..7)
        .map(|i| pending(&format!("p{i}"), 600, 256 * MI, NOW))
        .collect();
    let full = vec![
        running("x", "w0", 2000, GI),
        running("y", "w1", 2000, GI),
        running("z", "w2", 2000, GI),
    ];
    let mut pods: Vec<_> = full;
    pods.extend::<Vec<_>>(pending_pods);
    let s = snapshot(three_workers(), pods, 0.5, 0.4, NOW);
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 3, "{}", reasons(&d));
    assert!(d.reasons.contains(&Reason::UnschedulablePods {
        pods: 7,
        fit_existing: 0,
        fit_in_flight: 0,
        need_new_nodes: 7
    }));
}

#[test]
fn pending_pods_covered_by_in_flight_nodes_do_not_launch_again() {
    let mut pods = vec![
        running("x", "w0", 2000, GI),
        running("y", "w1", 2000, GI),
        running("z", "w2", 2000, GI),
    ];
    pods.extend((0..3).map(|i| pending(&format!("p{i}"), 600, 256 * MI, NOW)));
    let mut s = snapshot(three_workers(), pods, 0.5, 0.4, NOW);
    s.in_flight.push(InFlight {
        pool: "workers".into(),
        name: "workers-abc".into(),
        launched_at: NOW,
    });
    s.last_scale_up = Some(NOW);
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 0, "{}", reasons(&d));
    assert!(d.reasons.contains(&Reason::UnschedulablePods {
        pods: 3,
        fit_existing: 0,
        fit_in_flight: 3,
        need_new_nodes: 0
    }));
    // One more pod than the in-flight node holds ⇒ exactly one more node.
    s.pods.push(pending("p3", 600, 256 * MI, NOW));
    assert_eq!(decide(&s, &seed_policy(), NOW).nodes_added(), 1);
}

#[test]
fn pending_grace_delays_scale_up() {
    let mut policy = seed_policy();
    policy.scale_up.pending_grace = Duration::from_secs(30);
    let pods = vec![
        running("x", "w0", 2000, GI),
        running("y", "w1", 2000, GI),
        running("z", "w2", 2000, GI),
        pending("p", 500, MI, NOW.saturating_sub(Duration::from_secs(10))),
    ];
    let s = snapshot(three_workers(), pods, 0.5, 0.4, NOW);
    let d = decide(&s, &policy, NOW);
    assert_eq!(d.nodes_added(), 0);
    assert!(matches!(d.reasons[0], Reason::PendingWithinGrace { pods: 1, .. }));
    assert_eq!(
        decide(&s, &policy, NOW + Duration::from_secs(20)).nodes_added(),
        1
    );
}

#[test]
fn pods_that_fit_no_pool_are_reported_with_why_and_not_scaled_for() {
    let mut huge = pending("huge", 8000, GI, NOW);
    huge.namespace = "ml".into();
    let mut picky = pending("picky", 100, MI, NOW);
    picky.node_selector.insert("gpu".into(), "true".into());
    let s = snapshot(three_workers(), vec![huge, picky], 0.5, 0.4, NOW);
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 0);
    let text = reasons(&d);
    assert!(
        text.contains("ml/huge") && text.contains("requests more cpu than a new node has free"),
        "{text}"
    );
    assert!(text.contains("node selector gpu=true not matched"), "{text}");
}

#[test]
fn pending_pods_at_max_report_at_max_capacity() {
    let w = workers();
    let nodes: Vec<_> = (0..10).map(|i| node_of(&w, &format!("w{i}"))).collect();
    let mut pods: Vec<_> = (0..10)
        .map(|i| running(&format!("r{i}"), &format!("w{i}"), 2000, GI))
        .collect();
    pods.push(pending("p", 500, MI, NOW));
    let d = decide(&snapshot(nodes, pods, 0.6, 0.4, NOW), &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 0);
    assert!(d.reasons.contains(&Reason::AtMaxCapacity {
        pool: "workers".into(),
        max: 10,
        wanted: 1
    }));
}

fn two_pools(expander: Expander) -> k3scale_core::Policy {
    let small = pool("small", 0, 10, 2000, 4 * GI, 0.04);
    let mut big = pool("big", 0, 10, 8000, 32 * GI, 0.10);
    big.priority = 10;
    let mut p = k3scale_core::Policy::new(vec![small, big]);
    p.expander = expander;
    p
}

#[test]
fn expanders_choose_between_pools() {
    // Eight pods of 1 CPU / 4 GiB: small nodes (2 CPU / 4 GiB) are memory-bound and waste half
    // their CPU; big nodes (8 CPU / 32 GiB) fit all eight on one node exactly.
    let pods: Vec<_> = (0..8)
        .map(|i| pending(&format!("p{i}"), 1000, 4 * GI, NOW))
        .collect();
    let s = snapshot(vec![], pods.clone(), 0.5, 0.4, NOW);
    let lw = decide(&s, &two_pools(Expander::LeastWaste), NOW);
    assert_eq!(
        lw.scale_up,
        vec![k3scale_core::ScaleUp {
            pool: "big".into(),
            count: 1
        }]
    );
    // Price per pod: small 8 × 0.04 / 8 = 0.04; big 0.10 / 8 = 0.0125 ⇒ big.
    let price = decide(&s, &two_pools(Expander::Price), NOW);
    assert_eq!(price.scale_up[0].pool, "big");
    // Make big expensive: price picks small, priority still picks big.
    let mut p = two_pools(Expander::Price);
    p.pools[1].template.price_per_hour = 1.0;
    assert_eq!(
        decide(&s, &p, NOW).scale_up,
        vec![k3scale_core::ScaleUp {
            pool: "small".into(),
            count: 8
        }]
    );
    p.expander = Expander::Priority;
    assert_eq!(decide(&s, &p, NOW).scale_up[0].pool, "big");
}

#[test]
fn tainted_pool_only_takes_tolerating_pods() {
    let mut p = two_pools(Expander::Priority);
    p.pools[1].template.taints.push(Taint {
        key: "dedicated".into(),
        value: "batch".into(),
        effect: TaintEffect::NoSchedule,
    });
    let s = snapshot(vec![], vec![pending("p", 500, GI, NOW)], 0.5, 0.4, NOW);
    let d = decide(&s, &p, NOW);
    assert_eq!(d.scale_up[0].pool, "small", "{}", reasons(&d));
}

#[test]
fn metrics_unavailable_scale_down_goes_by_requests_and_pending_scale_up_still_works() {
    // Three workers, one empty, one whose small pod fits elsewhere, one full.
    let pods = vec![running("x", "w0", 1800, GI), running("small", "w1", 100, 64 * MI)];
    let mut s = snapshot(three_workers(), pods, 0.1, 0.1, NOW);
    s.cpu = Series::default();
    s.metrics_error = Some("prometheus: connection refused".into());
    let d = decide(&s, &seed_policy(), NOW);
    let text = reasons(&d);
    assert!(
        text.contains("cpu metrics unavailable over 180s (no samples yet; last error: prometheus: connection refused): no cpu-based scale-up"),
        "{text}"
    );
    assert!(
        text.contains("cpu metrics unavailable over 600s (no samples yet; last error: prometheus: connection refused): cpu does not gate scale-down"),
        "{text}"
    );
    assert!(d.reasons.contains(&Reason::ScaleDownByRequestsOnly), "{text}");
    // The empty node goes (min 2 holds after it); nothing waits on metrics.
    let removed: Vec<_> = d.scale_down.iter().map(|r| (r.node.as_str(), r.empty)).collect();
    assert_eq!(removed, vec![("w2", true)], "{text}");
    assert!(
        !text.contains("no scale-down"),
        "the explanation agrees with the action: {text}"
    );

    // A node whose pods fit nowhere else stays, metrics or not.
    let pods = vec![
        running("x", "w0", 1800, GI),
        running("y", "w1", 1800, GI),
        running("z", "w2", 1800, GI),
    ];
    s.pods = pods.clone();
    let mut four = three_workers();
    four.push(node_of(&workers(), "w3"));
    s.nodes = four;
    s.pods.push(running("big", "w3", 1800, GI));
    let d = decide(&s, &seed_policy(), NOW);
    assert!(d.scale_down.is_empty(), "{}", reasons(&d));

    s.nodes = three_workers();
    s.pods = pods;
    s.pods.push(pending("p", 500, MI, NOW));
    assert_eq!(decide(&s, &seed_policy(), NOW).nodes_added(), 1);
}

#[test]
fn a_failed_reading_inside_the_window_is_not_zero() {
    // CPU at 25 %: below the 30 % gate. One failed reading must make the
    // signal unavailable, not pull the mean down as a zero would.
    let pods = vec![
        running("a", "w0", 1500, GI),
        running("b", "w1", 1500, GI),
        running("c", "w2", 1500, GI),
    ];
    let mut s = snapshot(three_workers(), pods, 0.25, 0.1, NOW);
    let n = s.cpu.samples.len();
    s.cpu.samples[n - 5].value = None;
    let d = decide(&s, &seed_policy(), NOW);
    assert!(d.scale_down.is_empty(), "{}", reasons(&d));
    assert!(
        d.reasons
            .iter()
            .any(|r| matches!(r, Reason::MetricsUnavailable { signal, .. } if signal == "cpu"))
    );
    assert!(
        d.reasons.contains(&Reason::ScaleDownByRequestsOnly),
        "{}",
        reasons(&d)
    );
}

#[test]
fn a_node_still_carrying_a_startup_taint_is_launching_not_room() {
    // A machine launched for the pending pod registered Ready=True while the
    // not-ready taint is still on it (the window of shared/kube-api-golden/13-*):
    // it is the launch in flight, not free room, and not a reason for another node.
    let w = workers();
    let mut nodes = vec![node_of(&w, "w0"), node_of(&w, "w1")];
    let mut fresh = node_of(&w, "w2");
    fresh.taints.push(Taint {
        key: "node.kubernetes.io/not-ready".into(),
        value: String::new(),
        effect: TaintEffect::NoSchedule,
    });
    nodes.push(fresh);
    k3scale_core::model::mark_starting(&mut nodes, &[]);
    assert_eq!(nodes[2].starting.as_deref(), Some("node.kubernetes.io/not-ready"));
    assert!(!nodes[2].schedulable() && !nodes[2].joined());
    let pods = vec![
        running("x", "w0", 1800, GI),
        running("y", "w1", 1800, GI),
        pending("p", 1500, GI, NOW),
    ];
    let mut s = snapshot(nodes, pods, 0.5, 0.4, NOW);
    s.in_flight = vec![InFlight {
        pool: "workers".into(),
        name: "w2".into(),
        launched_at: NOW.saturating_sub(Duration::from_secs(30)),
    }];
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 0, "{}", reasons(&d));
    assert!(
        reasons(&d).contains("1 fit nodes already launching"),
        "{}",
        reasons(&d)
    );

    // A configured agent taint counts the same; cluster-autoscaler's prefix too.
    let mut nodes = vec![node_of(&w, "a"), node_of(&w, "b")];
    nodes[0].taints.push(Taint {
        key: "node.cilium.io/agent-not-ready".into(),
        value: "true".into(),
        effect: TaintEffect::NoSchedule,
    });
    nodes[1].taints.push(Taint {
        key: "startup-taint.cluster-autoscaler.kubernetes.io/csi".into(),
        value: String::new(),
        effect: TaintEffect::NoExecute,
    });
    k3scale_core::model::mark_starting(&mut nodes, &["node.cilium.io/agent-not-ready".to_string()]);
    assert!(nodes.iter().all(|n| n.starting.is_some()));
    // An ordinary taint is not a startup taint.
    let mut nodes = vec![node_of(&w, "c")];
    nodes[0].taints.push(Taint {
        key: "dedicated".into(),
        value: "gpu".into(),
        effect: TaintEffect::NoSchedule,
    });
    k3scale_core::model::mark_starting(&mut nodes, &[]);
    assert!(nodes[0].starting.is_none() && nodes[0].schedulable());
}

#[test]
fn scale_down_removes_least_utilized_node_whose_pods_fit() {
    let pods = vec![
        running("a", "w0", 400, 256 * MI),
        running("b", "w1", 200, 256 * MI),
        running("c", "w2", 900, 256 * MI),
    ];
    let s = snapshot(three_workers(), pods, 0.15, 0.3, NOW);
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.scale_down.len(), 1, "{}", reasons(&d));
    assert_eq!(d.scale_down[0].node, "w1");
    assert!(!d.scale_down[0].empty);
}

#[test]
fn empty_nodes_go_in_bulk_drains_one_at_a_time() {
    let w = workers();
    let nodes: Vec<_> = (0..6).map(|i| node_of(&w, &format!("w{i}"))).collect();
    let mut ds = running("ds", "w3", 100, 64 * MI);
    ds.owner = OwnerKind::DaemonSet;
    let pods = vec![running("a", "w0", 300, GI), running("b", "w1", 300, GI), ds];
    let d = decide(&snapshot(nodes, pods, 0.05, 0.1, NOW), &seed_policy(), NOW);
    let removed: Vec<_> = d.scale_down.iter().map(|s| (s.node.as_str(), s.empty)).collect();
    // w2..w5 are empty (w3 has only a DaemonSet pod); one of w0/w1 is drained; min 2 holds.
    assert_eq!(
        removed,
        vec![("w2", true), ("w4", true), ("w5", true), ("w3", true)],
        "{}",
        reasons(&d)
    );
}

#[test]
fn scale_down_never_goes_below_min() {
    let pods = vec![running("a", "w0", 100, GI)];
    let w = workers();
    let nodes = vec![node_of(&w, "w0"), node_of(&w, "w1")];
    let d = decide(&snapshot(nodes, pods, 0.05, 0.1, NOW), &seed_policy(), NOW);
    assert!(d.scale_down.is_empty());
    assert!(d.reasons.iter().any(|r| matches!(
        r,
        Reason::NotRemovable {
            blocker: Blocker::PoolAtMin { .. },
            ..
        }
    )));
}

#[test]
fn scale_down_blockers_are_honoured_and_explained() {
    let w = workers();
    type Mutation = Box<dyn Fn(&mut k3scale_core::Pod)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (
            Box::new(|p| {
                p.annotations.insert(DO_NOT_DISRUPT.into(), "true".into());
            }),
            "do-not-disrupt",
        ),
        (
            Box::new(|p| {
                p.annotations.insert(SAFE_TO_EVICT.into(), "false".into());
            }),
            "safe-to-evict=false",
        ),
        (Box::new(|p| p.owner = OwnerKind::None), "no controller"),
        (Box::new(|p| p.local_storage = true), "local storage"),
        (
            Box::new(|p| p.pdb = Some("web".into())),
            "PodDisruptionBudget web allows no disruption",
        ),
    ];
    for (mutate, expect) in cases {
        let mut p = running("blocker", "w2", 200, 256 * MI);
        mutate(&mut p);
        let nodes = vec![node_of(&w, "w0"), node_of(&w, "w1"), node_of(&w, "w2")];
        let pods = vec![
            running("a", "w0", 500, 256 * MI),
            running("b", "w1", 500, 256 * MI),
            p,
        ];
        let mut s = snapshot(nodes, pods, 0.1, 0.2, NOW);
        s.pdbs.insert("web".into(), 0);
        let d = decide(&s, &seed_policy(), NOW);
        assert!(
            d.scale_down.iter().all(|r| r.node != "w2"),
            "{expect}: {}",
            reasons(&d)
        );
        assert!(reasons(&d).contains(expect), "{expect}: {}", reasons(&d));
    }
}

#[test]
fn local_storage_can_be_allowed_and_pdb_budget_is_spent() {
    let w = workers();
    let nodes = vec![node_of(&w, "w0"), node_of(&w, "w1"), node_of(&w, "w2")];
    let mut p = running("cache", "w2", 200, 256 * MI);
    p.local_storage = true;
    p.pdb = Some("web".into());
    let mut s = snapshot(
        nodes,
        vec![
            running("a", "w0", 500, 256 * MI),
            running("b", "w1", 500, 256 * MI),
            p,
        ],
        0.1,
        0.2,
        NOW,
    );
    s.pdbs.insert("web".into(), 1);
    let mut policy = seed_policy();
    policy.scale_down.evict_local_storage = true;
    let d = decide(&s, &policy, NOW);
    assert_eq!(d.scale_down.len(), 1, "{}", reasons(&d));
    assert_eq!(d.scale_down[0].node, "w2");
}

#[test]
fn node_whose_pods_do_not_fit_elsewhere_stays() {
    let w = workers();
    let nodes = vec![node_of(&w, "w0"), node_of(&w, "w1"), node_of(&w, "w2")];
    // w2 holds a 900m pod; w0/w1 have 800m free each: it cannot move.
    let pods = vec![
        running("a", "w0", 1200, GI),
        running("b", "w1", 1200, GI),
        running("c", "w2", 900, GI),
    ];
    let mut policy = seed_policy();
    policy.scale_down.node_utilization_below = 0.7;
    let d = decide(&snapshot(nodes, pods, 0.1, 0.2, NOW), &policy, NOW);
    assert!(d.scale_down.is_empty(), "{}", reasons(&d));
    assert!(reasons(&d).contains("pod default/c does not fit on any other node"));
}

#[test]
fn no_scale_down_while_pods_are_unschedulable_or_in_cooldown() {
    let mut pending_pod = pending("p", 4000, GI, NOW);
    pending_pod.node_selector.insert("never".into(), "x".into());
    let s = snapshot(three_workers(), vec![pending_pod], 0.05, 0.1, NOW);
    let d = decide(&s, &seed_policy(), NOW);
    assert!(d.scale_down.is_empty());
    assert!(d.reasons.contains(&Reason::ScaleDownBlockedByPending { pods: 1 }));

    let mut s = snapshot(three_workers(), vec![], 0.05, 0.1, NOW);
    s.last_scale_down = Some(NOW.saturating_sub(Duration::from_secs(60)));
    let d = decide(&s, &seed_policy(), NOW);
    assert!(d.scale_down.is_empty());
    assert!(d.reasons.contains(&Reason::Cooldown {
        direction: Direction::Down,
        remaining: Duration::from_secs(540)
    }));
}

#[test]
fn scale_down_needs_the_whole_window_cold() {
    let mut s = snapshot(three_workers(), vec![], 0.1, 0.1, NOW);
    // 5 minutes ago CPU was high: the 10-minute mean is above 30%.
    let n = s.cpu.samples.len();
    for sample in &mut s.cpu.samples[n - 30..n - 16] {
        sample.value = Some(0.9);
    }
    let d = decide(&s, &seed_policy(), NOW);
    assert!(d.scale_down.is_empty(), "{}", reasons(&d));
}

#[test]
fn unmanaged_and_cordoned_nodes_are_never_candidates() {
    let w = workers();
    let mut server = k3scale_core::Node::new("server", None, w.template.allocatable, Time::ZERO);
    server
        .labels
        .insert("node-role.kubernetes.io/control-plane".into(), "true".into());
    let mut cordoned = node_of(&w, "w9");
    cordoned.cordoned = true;
    let nodes = vec![server, node_of(&w, "w0"), node_of(&w, "w1"), cordoned];
    let d = decide(&snapshot(nodes, vec![], 0.01, 0.01, NOW), &seed_policy(), NOW);
    assert!(
        d.scale_down.iter().all(|s| s.node != "server" && s.node != "w9"),
        "{}",
        reasons(&d)
    );
}

#[test]
fn custom_rule_scales_up_and_gates_scale_down() {
    let mut policy = seed_policy();
    policy.custom.push(CustomRule {
        name: "rps".into(),
        query: "sum(rate(x[1m]))".into(),
        scale_up_above: Some(800.0),
        scale_down_below: Some(100.0),
        window: Duration::from_secs(60),
    });
    let mut s = snapshot(three_workers(), vec![], 0.1, 0.1, NOW);
    s.custom.insert(
        "rps".into(),
        steady_series(900.0, NOW.saturating_sub(Duration::from_secs(300)), NOW),
    );
    assert_eq!(decide(&s, &policy, NOW).nodes_added(), 2);
    s.custom.insert(
        "rps".into(),
        steady_series(300.0, NOW.saturating_sub(Duration::from_secs(300)), NOW),
    );
    let d = decide(&s, &policy, NOW);
    assert!(d.is_noop());
    assert!(
        d.reasons
            .iter()
            .any(|r| matches!(r, Reason::NotBelow { signal, .. } if signal == "rps"))
    );
}

#[test]
fn threshold_mode_treats_pending_as_a_cooled_down_trigger() {
    let mut policy = seed_policy();
    policy.scale_up.pending_pods = PendingPods::Threshold;
    policy.scale_up.max_step = 1;
    let pods: Vec<_> = (0..7).map(|i| pending(&format!("p{i}"), 600, MI, NOW)).collect();
    let mut s = snapshot(three_workers(), pods, 0.5, 0.4, NOW);
    assert_eq!(decide(&s, &policy, NOW).nodes_added(), 1);
    s.last_scale_up = Some(NOW);
    assert_eq!(decide(&s, &policy, NOW).nodes_added(), 0);
}

#[test]
fn decisions_serialize_with_structured_reasons() {
    let s = snapshot(three_workers(), vec![], 0.85, 0.4, NOW);
    let d = decide(&s, &seed_policy(), NOW);
    let json = serde_json::to_value(&d).unwrap();
    let r = &json["reasons"][0];
    assert_eq!(r["rule"], "above");
    assert_eq!(r["signal"], "cpu");
    assert_eq!(r["threshold"], 0.7);
    assert_eq!(r["window"], 180.0);
}

#[test]
fn one_by_one_policy_removes_exactly_one_node_per_step() {
    let w = workers();
    let nodes: Vec<_> = (0..6).map(|i| node_of(&w, &format!("w{i}"))).collect();
    let pods = vec![
        running("a", "w0", 300, 256 * MI),
        running("b", "w1", 300, 256 * MI),
    ];
    let mut policy = seed_policy();
    policy.scale_down.max_empty_step = 1;
    let d = decide(
        &snapshot(nodes.clone(), pods.clone(), 0.05, 0.1, NOW),
        &policy,
        NOW,
    );
    assert_eq!(d.scale_down.len(), 1, "{}", reasons(&d));
    assert!(d.scale_down[0].empty);
    // With no empty node left, the one removal is a drain.
    let busy: Vec<_> = (0..6)
        .map(|i| running(&format!("p{i}"), &format!("w{i}"), 200, 256 * MI))
        .collect();
    let d = decide(&snapshot(nodes, busy, 0.05, 0.1, NOW), &policy, NOW);
    assert_eq!(d.scale_down.len(), 1, "{}", reasons(&d));
    assert!(!d.scale_down[0].empty);
}

#[test]
fn daemonsets_take_room_on_new_nodes() {
    let full = vec![
        running("x", "w0", 2000, GI),
        running("y", "w1", 2000, GI),
        running("z", "w2", 2000, GI),
    ];
    let mut pods = full;
    pods.extend((0..8).map(|i| pending(&format!("p{i}"), 250, 128 * MI, NOW)));
    let mut s = snapshot(three_workers(), pods, 0.5, 0.4, NOW);
    // Eight 250m pods fill one empty 2-CPU node exactly...
    assert_eq!(decide(&s, &seed_policy(), NOW).nodes_added(), 1);
    // ...but not once a DaemonSet puts a 100m pod on every node.
    let mut ds = k3scale_core::Pod::new("kube-system", "svclb", k3scale_core::Resources::pod(100, 64 * MI));
    ds.owner = OwnerKind::DaemonSet;
    s.daemonsets.push(ds.clone());
    assert_eq!(decide(&s, &seed_policy(), NOW).nodes_added(), 2);
    // A DaemonSet that selects other nodes takes no room on these.
    ds.node_selector.insert("gpu".into(), "true".into());
    s.daemonsets = vec![ds];
    assert_eq!(decide(&s, &seed_policy(), NOW).nodes_added(), 1);
}

#[test]
fn daemonsets_hold_their_host_ports_and_extended_resources_on_new_nodes() {
    use k3scale_core::model::HostPort;
    use std::sync::Arc;
    let port = |port| {
        Arc::from([HostPort {
            port,
            protocol: "TCP".into(),
            ip: String::new(),
        }])
    };
    let full = || {
        vec![
            running("x", "w0", 2000, GI),
            running("y", "w1", 2000, GI),
            running("z", "w2", 2000, GI),
        ]
    };
    let mut pods = full();
    let mut ingress = pending("ingress", 100, 64 * MI, NOW);
    ingress.host_ports = port(80);
    pods.push(ingress);
    let mut s = snapshot(three_workers(), pods, 0.5, 0.4, NOW);
    assert_eq!(decide(&s, &seed_policy(), NOW).nodes_added(), 1);
    // K3s's ServiceLB runs a DaemonSet per LoadBalancer Service holding its
    // ports on every node: a new node could not take the pod either.
    let mut svclb =
        k3scale_core::Pod::new("kube-system", "svclb-traefik", k3scale_core::Resources::pod(0, 0));
    svclb.owner = OwnerKind::DaemonSet;
    svclb.host_ports = port(80);
    s.daemonsets.push(svclb.clone());
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 0, "{}", reasons(&d));
    assert!(reasons(&d).contains("host port 80"), "{}", reasons(&d));
    // Another port is free there; and a DaemonSet kept off the pool's
    // nodes holds nothing on them.
    s.daemonsets[0].host_ports = port(443);
    assert_eq!(decide(&s, &seed_policy(), NOW).nodes_added(), 1);
    s.daemonsets[0].host_ports = port(80);
    s.daemonsets[0].node_selector.insert("edge".into(), "true".into());
    assert_eq!(decide(&s, &seed_policy(), NOW).nodes_added(), 1);

    // A device plugin's DaemonSet asking for one of the two GPUs of a node
    // leaves one: a pod asking for two fits no new node.
    const GPU: &str = "example.com/gpu";
    let mut gpu_pool = pool("workers", 0, 10, 2000, 4 * GI, 0.9);
    gpu_pool.template.extended.insert(GPU.into(), 2);
    let policy = k3scale_core::Policy::new(vec![gpu_pool]);
    let mut pods = full();
    let mut trainer = pending("trainer", 100, 64 * MI, NOW);
    Arc::make_mut(&mut trainer.extended).insert(GPU.into(), 2);
    pods.push(trainer);
    let mut s = snapshot(three_workers(), pods, 0.5, 0.4, NOW);
    assert_eq!(decide(&s, &policy, NOW).nodes_added(), 1);
    let mut plugin = k3scale_core::Pod::new("kube-system", "gpu-plugin", k3scale_core::Resources::pod(0, 0));
    plugin.owner = OwnerKind::DaemonSet;
    Arc::make_mut(&mut plugin.extended).insert(GPU.into(), 1);
    s.daemonsets.push(plugin);
    let d = decide(&s, &policy, NOW);
    assert_eq!(d.nodes_added(), 0, "{}", reasons(&d));
}

#[test]
fn a_node_not_ready_for_long_is_deleted_without_a_drain() {
    const MIN: Duration = Duration::from_secs(60);
    let mut nodes = three_workers();
    nodes.push(node_of(&workers(), "w3"));
    nodes[3].ready = false;
    nodes[3].not_ready_since = Some(NOW.saturating_sub(25 * MIN));
    let pods = vec![running("stuck", "w3", 500, GI), running("web", "w0", 500, GI)];
    let mut s = snapshot(nodes, pods, 0.5, 0.5, NOW);
    let policy = k3scale_core::Policy::new(vec![workers()]);
    let d = decide(&s, &policy, NOW);
    assert_eq!(
        d.scale_down,
        vec![k3scale_core::ScaleDown {
            node: "w3".into(),
            pool: "workers".into(),
            empty: false,
            forced: true,
        }],
        "{}",
        reasons(&d)
    );
    assert!(
        reasons(&d)
            .contains("node w3 of pool workers has not been Ready for 1500s: deleting it without a drain"),
        "{}",
        reasons(&d)
    );
    // Not for long yet: it stays, and says when it goes.
    s.nodes[3].not_ready_since = Some(NOW.saturating_sub(10 * MIN));
    let d = decide(&s, &policy, NOW);
    assert!(d.scale_down.is_empty(), "{}", reasons(&d));
    assert!(
        reasons(&d).contains("if still not Ready at 1200s"),
        "{}",
        reasons(&d)
    );
    // Its own annotation, or the setting off, keeps it.
    s.nodes[3].not_ready_since = Some(NOW.saturating_sub(25 * MIN));
    s.nodes[3]
        .annotations
        .insert(k3scale_core::model::DO_NOT_DISRUPT.into(), "true".into());
    let d = decide(&s, &policy, NOW);
    assert!(d.scale_down.is_empty(), "{}", reasons(&d));
    assert!(
        reasons(&d).contains("kept, annotated k3scale.io/do-not-disrupt=true"),
        "{}",
        reasons(&d)
    );
    s.nodes[3].annotations.clear();
    let mut off = policy.clone();
    off.scale_down.unready_enabled = false;
    assert!(decide(&s, &off, NOW).scale_down.is_empty());
    // A launch that has not joined yet is the lifecycle's, not this rule's.
    s.in_flight.push(InFlight {
        pool: "workers".into(),
        name: "w3".into(),
        launched_at: NOW.saturating_sub(25 * MIN),
    });
    assert!(decide(&s, &policy, NOW).scale_down.is_empty());
    s.in_flight.clear();

    // A pool at its minimum gets a node for the dead one in the same decision.
    let mut nodes = three_workers();
    nodes.truncate(2);
    nodes[1].ready = false;
    nodes[1].not_ready_since = Some(NOW.saturating_sub(25 * MIN));
    let d = decide(&snapshot(nodes, Vec::new(), 0.2, 0.2, NOW), &policy, NOW);
    assert_eq!(d.scale_down.len(), 1, "{}", reasons(&d));
    assert_eq!(d.nodes_added(), 1, "{}", reasons(&d));
}

#[test]
fn a_pool_backing_off_launches_nothing_and_says_so() {
    let mut pods = vec![
        running("x", "w0", 2000, GI),
        running("y", "w1", 2000, GI),
        running("z", "w2", 2000, GI),
    ];
    pods.push(pending("p", 500, MI, NOW));
    let mut s = snapshot(three_workers(), pods, 0.95, 0.4, NOW);
    s.backoff.insert(
        "workers".into(),
        k3scale_core::lifecycle::Hold {
            until: NOW + Duration::from_secs(90),
            cause: k3scale_core::lifecycle::HoldCause::JoinFailures,
            why: String::new(),
        },
    );
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 0, "{}", reasons(&d));
    assert!(d.reasons.contains(&Reason::PoolBackedOff {
        pool: "workers".into(),
        remaining: Duration::from_secs(90),
        cause: k3scale_core::lifecycle::HoldCause::JoinFailures,
        why: String::new(),
    }));
    assert!(
        !d.reasons
            .iter()
            .any(|r| matches!(r, Reason::AtMaxCapacity { .. })),
        "{}",
        reasons(&d)
    );
    // A quiet decision does not mention a backoff that blocks nothing.
    let quiet = snapshot(three_workers(), vec![], 0.5, 0.4, NOW);
    let mut quiet_backed_off = quiet.clone();
    quiet_backed_off.backoff = s.backoff.clone();
    assert_eq!(
        decide(&quiet_backed_off, &seed_policy(), NOW).reasons,
        decide(&quiet, &seed_policy(), NOW).reasons
    );
    // Below min during a backoff: still nothing.
    s.nodes.truncate(1);
    assert_eq!(decide(&s, &seed_policy(), NOW).nodes_added(), 0);
    // Once it expires, the pool scales again.
    assert!(decide(&s, &seed_policy(), NOW + Duration::from_secs(90)).nodes_added() > 0);
}

#[test]
fn an_interrupted_node_is_drained_and_replaced_whatever_the_thresholds() {
    use k3scale_core::snapshot::Interruption;
    // Busy (no scale-down would happen), at the pool's minimum and maximum of 3.
    let mut pool = workers();
    pool.min = 3;
    pool.max = 3;
    let policy = k3scale_core::Policy::new(vec![pool]);
    let mut s = snapshot(three_workers(), vec![running("a", "w1", 1500, GI)], 0.6, 0.6, NOW);
    s.last_scale_up = Some(NOW);
    s.interrupted = vec![Interruption {
        node: "w1".into(),
        notice: "spot-interruption".into(),
    }];
    let d = decide(&s, &policy, NOW);
    assert_eq!(d.scale_down.len(), 1, "{}", reasons(&d));
    assert_eq!(
        (d.scale_down[0].node.as_str(), d.scale_down[0].empty),
        ("w1", false)
    );
    assert_eq!(
        d.nodes_added(),
        1,
        "replaced at once, even at max and in cooldown"
    );
    assert!(reasons(&d).contains(
        "node w1 of pool workers got a spot-interruption notice: draining it and launching a replacement"
    ));

    // Already leaving (cordoned), unknown, or not in a managed pool: nothing.
    let mut s = snapshot(three_workers(), vec![], 0.5, 0.5, NOW);
    s.nodes[1].cordoned = true;
    s.nodes.push(k3scale_core::Node::new(
        "server",
        None,
        s.nodes[0].allocatable,
        NOW,
    ));
    s.interrupted = ["w1", "gone", "server"]
        .iter()
        .map(|n| Interruption {
            node: n.to_string(),
            notice: "rebalance-recommendation".into(),
        })
        .collect();
    let d = decide(&s, &seed_policy(), NOW);
    assert!(d.scale_down.is_empty() && d.nodes_added() == 0, "{}", reasons(&d));
}

#[test]
fn a_pdb_that_allows_one_disruption_lets_a_node_with_several_of_its_pods_go() {
    // kubernetes/autoscaler simulator/drain: a PDB with DisruptionsAllowed >= 1
    // does not block; the drain evicts one pod at a time.
    let w = workers();
    let nodes = vec![node_of(&w, "w0"), node_of(&w, "w1"), node_of(&w, "w2")];
    // w0 and w1 are busy (not candidates) with room for w2's pods.
    let mut pods = vec![
        running("a", "w0", 1200, 256 * MI),
        running("b", "w1", 1200, 256 * MI),
    ];
    for i in 0..3 {
        let mut p = running(&format!("db-{i}"), "w2", 100, 128 * MI);
        p.pdb = Some("db".into());
        pods.push(p);
    }
    let mut s = snapshot(nodes, pods, 0.1, 0.2, NOW);
    s.pdbs.insert("db".into(), 1);
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.scale_down.len(), 1, "{}", reasons(&d));
    assert_eq!(d.scale_down[0].node, "w2");
    // With none allowed it stays, and the reason says both numbers.
    s.pdbs.insert("db".into(), 0);
    let d = decide(&s, &seed_policy(), NOW);
    assert!(d.scale_down.is_empty());
    let text = reasons(&d);
    assert!(
        text.contains("PodDisruptionBudget db allows no disruption now (the node holds 3 of its pods)"),
        "{text}"
    );
}

#[test]
fn pending_daemonset_and_mirror_pods_trigger_nothing_and_block_nothing() {
    // cluster-autoscaler's filter_out_daemon_set_pods: a svclb-* pod that cannot
    // start because its host port is taken needs its node, not a new one.
    let w = workers();
    let nodes = vec![node_of(&w, "w0"), node_of(&w, "w1"), node_of(&w, "w2")];
    let mut svclb = pending("svclb-traefik-w2", 10, 10 * MI, NOW);
    svclb.owner = OwnerKind::DaemonSet;
    let mut mirror = pending("etcd-w2", 10, 10 * MI, NOW);
    mirror.owner = OwnerKind::Mirror;
    let mut annotated = pending("agent-w2", 10, 10 * MI, NOW);
    annotated
        .annotations
        .insert(k3scale_core::model::DAEMONSET_POD.into(), "true".into());
    let pods = vec![svclb, mirror, annotated, running("a", "w0", 100, 64 * MI)];
    let s = snapshot(nodes, pods, 0.1, 0.2, NOW);
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 0, "{}", reasons(&d));
    assert!(k3scale_core::unschedulable_pods(&s).is_empty());
    assert_eq!(
        d.scale_down.len(),
        1,
        "scale-down is not held back: {}",
        reasons(&d)
    );
}

#[test]
fn expendable_pods_trigger_no_scale_up_and_need_not_fit_elsewhere() {
    // cluster-autoscaler's expendable-pods-priority-cutoff (default -10).
    let w = workers();
    let nodes = vec![node_of(&w, "w0"), node_of(&w, "w1"), node_of(&w, "w2")];
    let mut batch = pending("batch", 1900, GI, NOW);
    batch.priority = -100;
    let mut filler = running("filler", "w2", 1900, GI);
    filler.priority = -100;
    let pods = vec![
        batch,
        filler,
        running("a", "w0", 1800, GI),
        running("b", "w1", 1800, GI),
    ];
    let s = snapshot(nodes, pods, 0.1, 0.2, NOW);
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 0, "{}", reasons(&d));
    assert!(reasons(&d).contains("1 unschedulable pods are expendable (priority below -10)"));
    // w2 holds only an expendable pod that fits nowhere: it may still go.
    assert_eq!(
        d.scale_down.iter().map(|x| x.node.as_str()).collect::<Vec<_>>(),
        ["w2"],
        "{}",
        reasons(&d)
    );
}

#[test]
fn a_pod_that_preempts_launches_nothing() {
    // Every worker is full; w2's pod is expendable (below the -10 cutoff).
    let w = workers();
    let nodes = vec![node_of(&w, "w0"), node_of(&w, "w1"), node_of(&w, "w2")];
    let mut filler = running("filler", "w2", 1900, GI);
    filler.priority = -100;
    let pods = vec![
        filler,
        running("a", "w0", 1900, GI),
        running("b", "w1", 1900, GI),
        pending("web", 1500, GI, NOW),
    ];
    let mut s = snapshot(nodes, pods, 0.5, 0.5, NOW);
    // The scheduler will preempt the expendable pod: that room is free.
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 0, "{}", reasons(&d));
    assert!(reasons(&d).contains("1 fit free capacity"), "{}", reasons(&d));
    // Not expendable (-1, as overprovisioning pause pods are): a new node.
    s.pods[0].priority = -1;
    assert_eq!(decide(&s, &seed_policy(), NOW).nodes_added(), 1);
    // The scheduler has nominated w2 for the pod (preempting there): no
    // new node, and no scale-down while it waits.
    s.pods[3].nominated_node = Some("w2".into());
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 0, "{}", reasons(&d));
    assert!(d.scale_down.is_empty());
    assert!(
        reasons(&d).contains("1 unschedulable pods wait for the scheduler to preempt lower-priority pods on their nominated nodes (default/web)"),
        "{}",
        reasons(&d)
    );
    // A nominated node that is gone nominates nothing.
    s.pods[3].nominated_node = Some("gone".into());
    assert_eq!(decide(&s, &seed_policy(), NOW).nodes_added(), 1);
}

#[test]
fn pods_moved_onto_a_node_in_a_step_stay_there_for_the_rest_of_the_step() {
    // cluster-autoscaler's planner keeps a removed node's pods on their new node.
    let w = workers();
    let mut nodes: Vec<_> = (0..4).map(|i| node_of(&w, &format!("w{i}"))).collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        n.labels
            .insert("zone".into(), if i < 2 { "a" } else { "b" }.into());
    }
    // w1's pod must stay in zone a: removing w1 moves it to w0 (first fit).
    let mut pinned = running("a", "w1", 100, 64 * MI);
    pinned.node_selector.insert("zone".into(), "a".into());
    let pods = vec![
        pinned,
        running("b", "w0", 300, 64 * MI),
        running("c", "w2", 1650, GI),
        running("d", "w3", 1650, GI),
    ];
    let mut p = seed_policy();
    p.pools[0].min = 0;
    p.scale_down.max_step = 2;
    let d = decide(&snapshot(nodes, pods, 0.1, 0.2, NOW), &p, NOW);
    let removed: Vec<_> = d.scale_down.iter().map(|x| x.node.as_str()).collect();
    // w0's own pod would fit in zone b, but the pod it just received would not.
    assert_eq!(removed, ["w1"], "{}", reasons(&d));
    assert!(
        reasons(&d).contains("node w0 not removed: pod default/a does not fit on any other node"),
        "{}",
        reasons(&d)
    );
}

#[test]
fn a_missing_window_is_explained_for_its_rule_only() {
    // Scale-down judges CPU on the latest sample, scale-up over 3 min; with
    // only a minute of history the 3-minute rule cannot judge, the other can.
    let pods = vec![running("a", "w0", 300, GI), running("b", "w1", 300, GI)];
    let mut s = snapshot(three_workers(), pods, 0.1, 0.1, NOW);
    s.cpu
        .samples
        .retain(|x| NOW.since(x.at) <= Duration::from_secs(60));
    let mut p = seed_policy();
    p.scale_down.cpu_for = Duration::ZERO;
    let d = decide(&s, &p, NOW);
    let text = reasons(&d);
    assert!(!d.scale_down.is_empty(), "{text}");
    assert!(text.contains("cpu metrics unavailable over 180s"), "{text}");
    assert!(text.contains("no cpu-based scale-up"), "{text}");
    assert!(
        !text.contains("does not gate scale-down"),
        "the scale-down rule could judge: {text}"
    );
    assert!(!d.reasons.contains(&Reason::ScaleDownByRequestsOnly), "{text}");
}

#[test]
fn a_pod_the_scheduler_keeps_rejecting_is_not_counted_on_free_capacity_for_ever() {
    // The planner fits the pod on w0's free room, but the scheduler says no
    // (a constraint k3scale does not model, e.g. a host port taken there).
    let pods = vec![
        running("a", "w0", 500, GI),
        running("b", "w1", 1900, GI),
        running("c", "w2", 1900, GI),
        pending("port-80", 500, 256 * MI, NOW),
    ];
    let mut s = snapshot(three_workers(), pods, 0.5, 0.4, NOW);
    let first = decide(&s, &seed_policy(), NOW);
    assert_eq!(first.nodes_added(), 0, "{}", reasons(&first));
    assert!(reasons(&first).contains("1 fit free capacity"));
    s.remember(&first, NOW);

    // Still pending 20 s later: the scheduler may just be slow.
    let t20 = NOW + Duration::from_secs(20);
    let d = decide(&s, &seed_policy(), t20);
    assert_eq!(d.nodes_added(), 0, "{}", reasons(&d));
    s.remember(&d, t20);

    // Past 30 s: the scheduler is the truth, a node is launched.
    let t31 = NOW + Duration::from_secs(31);
    let d = decide(&s, &seed_policy(), t31);
    assert_eq!(d.nodes_added(), 1, "{}", reasons(&d));
    let text = reasons(&d);
    assert!(
        text.contains("1 pods fit existing free capacity by k3scale's model but the scheduler has rejected them for over 30s (e.g. default/port-80)"),
        "{text}"
    );
    assert!(text.contains("0 fit free capacity"), "{text}");
}

#[test]
fn what_a_user_migrating_from_cluster_autoscaler_expects_of_scale_down() {
    let w = workers();
    let three = || vec![node_of(&w, "w0"), node_of(&w, "w1"), node_of(&w, "w2")];
    // w0 and w1 busy (not candidates), w2 light: w2 goes unless something says no.
    let base = || {
        vec![
            running("a", "w0", 1200, 256 * MI),
            running("b", "w1", 1200, 256 * MI),
        ]
    };
    let removed =
        |d: &k3scale_core::Decision| d.scale_down.iter().map(|x| x.node.clone()).collect::<Vec<_>>();

    // scale-down-disabled on the node.
    let mut pods = base();
    pods.push(running("c", "w2", 100, 64 * MI));
    let mut nodes = three();
    nodes[2]
        .annotations
        .insert(k3scale_core::model::SCALE_DOWN_DISABLED.into(), "true".into());
    let d = decide(&snapshot(nodes, pods.clone(), 0.1, 0.2, NOW), &seed_policy(), NOW);
    assert!(removed(&d).is_empty(), "{}", reasons(&d));
    assert!(reasons(&d).contains(
        "node w2 not removed: node is annotated cluster-autoscaler.kubernetes.io/scale-down-disabled=true"
    ));
    let d = decide(&snapshot(three(), pods, 0.1, 0.2, NOW), &seed_policy(), NOW);
    assert_eq!(removed(&d), ["w2"], "without it: {}", reasons(&d));

    // A kube-system pod without a PDB: only with skip_nodes_with_system_pods.
    let mut pods = base();
    let mut coredns = running("coredns-1", "w2", 100, 64 * MI);
    coredns.namespace = "kube-system".into();
    pods.push(coredns);
    let s = snapshot(three(), pods, 0.1, 0.2, NOW);
    let d = decide(&s, &seed_policy(), NOW);
    assert_eq!(
        removed(&d),
        ["w2"],
        "off by default (K3s add-ons live there): {}",
        reasons(&d)
    );
    let mut p = seed_policy();
    p.scale_down.skip_nodes_with_system_pods = true;
    let d = decide(&s, &p, NOW);
    assert!(removed(&d).is_empty(), "{}", reasons(&d));
    assert!(reasons(&d).contains("kube-system/coredns-1 runs in kube-system without a PodDisruptionBudget"));

    // A pool's own utilization threshold: w2 at 35% is a candidate under 50%, not under 30%.
    let mut pods = base();
    pods.push(running("c", "w2", 700, 256 * MI));
    let s = snapshot(three(), pods, 0.1, 0.2, NOW);
    assert_eq!(removed(&decide(&s, &seed_policy(), NOW)), ["w2"]);
    let mut p = seed_policy();
    p.pools[0].scale_down_utilization_below = Some(0.3);
    let d = decide(&s, &p, NOW);
    assert!(removed(&d).is_empty(), "{}", reasons(&d));
    assert!(reasons(&d).contains("node w2 not removed"), "{}", reasons(&d));

    // DaemonSet pods left out of the requested share.
    let mut pods = base();
    let mut ds = running("agent", "w2", 1100, 256 * MI);
    ds.owner = OwnerKind::DaemonSet;
    pods.push(ds);
    pods.push(running("c", "w2", 100, 64 * MI));
    let s = snapshot(three(), pods, 0.1, 0.2, NOW);
    let d = decide(&s, &seed_policy(), NOW);
    assert!(
        removed(&d).is_empty(),
        "60% requested with the DaemonSet: {}",
        reasons(&d)
    );
    let mut p = seed_policy();
    p.scale_down.ignore_daemonsets_utilization = true;
    let d = decide(&s, &p, NOW);
    assert_eq!(removed(&d), ["w2"], "5% without it: {}", reasons(&d));
}

#[test]
fn cluster_wide_limits_bound_scale_up() {
    // kubernetes/autoscaler: max-nodes-total, cores-total, memory-total.
    let pods: Vec<_> = (0..6).map(|i| pending(&format!("p{i}"), 1800, GI, NOW)).collect();
    let mut all = pods.clone();
    all.extend(vec![
        running("a", "w0", 1900, GI),
        running("b", "w1", 1900, GI),
        running("c", "w2", 1900, GI),
    ]);
    let s = snapshot(three_workers(), all, 0.5, 0.4, NOW);
    assert_eq!(decide(&s, &seed_policy(), NOW).nodes_added(), 6);
    let mut p = seed_policy();
    p.limits.max_nodes = Some(5);
    let d = decide(&s, &p, NOW);
    assert_eq!(d.nodes_added(), 2, "{}", reasons(&d));
    assert!(
        reasons(&d).contains("cluster limit limits.max_nodes (5) reached"),
        "{}",
        reasons(&d)
    );
    let mut p = seed_policy();
    p.limits.max_cpu_milli = Some(16_000);
    let d = decide(&s, &p, NOW);
    assert_eq!(d.nodes_added(), 5, "6 cores used, 2 per node: {}", reasons(&d));
    assert!(reasons(&d).contains("limits.max_cpu (16000m)"), "{}", reasons(&d));
}

#[test]
fn host_ports_and_anti_affinity_are_planned_like_the_scheduler() {
    use k3scale_core::model::HostPort;
    use std::sync::Arc;
    let nodes = || {
        let mut nodes = three_workers();
        for n in &mut nodes {
            n.labels.insert("kubernetes.io/hostname".into(), n.name.clone());
        }
        nodes
    };
    // Each worker runs an ingress holding host port 80 and has room to spare.
    let port80 = Arc::from([HostPort {
        port: 80,
        protocol: "TCP".into(),
        ip: String::new(),
    }]);
    let mut pods: Vec<_> = (0..3)
        .map(|i| {
            let mut p = running(&format!("ingress-{i}"), &format!("w{i}"), 100, 64 * MI);
            p.host_ports = Arc::clone(&port80);
            p
        })
        .collect();
    let mut web = pending("web-80", 100, 64 * MI, NOW);
    web.host_ports = Arc::clone(&port80);
    pods.push(web);
    let d = decide(&snapshot(nodes(), pods, 0.2, 0.2, NOW), &seed_policy(), NOW);
    assert_eq!(
        d.nodes_added(),
        1,
        "port 80 is taken on every node: {}",
        reasons(&d)
    );

    // Three replicas, one per node (hostname anti-affinity): two nodes hold
    // one each, so the third and fourth need two new nodes, not one.
    let spread = |name: &str, node: Option<&str>| db_replica(name, node, "kubernetes.io/hostname");
    let pods = vec![
        spread("db-0", Some("w0")),
        spread("db-1", Some("w1")),
        running("other", "w2", 100, 64 * MI),
        spread("db-2", None),
        spread("db-3", None),
    ];
    let d = decide(&snapshot(nodes(), pods, 0.2, 0.2, NOW), &seed_policy(), NOW);
    assert_eq!(
        d.nodes_added(),
        1,
        "db-2 fits w2, db-3 needs one new node: {}",
        reasons(&d)
    );
    assert!(reasons(&d).contains("1 fit free capacity"), "{}", reasons(&d));

    // On new nodes too: three pending replicas need three nodes, not one.
    let pods = vec![
        running("a", "w0", 1950, GI),
        running("b", "w1", 1950, GI),
        running("c", "w2", 1950, GI),
        spread("db-0", None),
        spread("db-1", None),
        spread("db-2", None),
    ];
    let d = decide(&snapshot(nodes(), pods, 0.2, 0.2, NOW), &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 3, "{}", reasons(&d));
}

#[test]
fn topology_spread_is_planned_like_the_scheduler() {
    use k3scale_core::model::{LabelSelector, TopologySpread};
    use std::sync::Arc;
    let web = |name: &str, node: Option<&str>, key: &str| {
        let mut p = match node {
            Some(n) => running(name, n, 100, 64 * MI),
            None => pending(name, 100, 64 * MI, NOW),
        };
        p.labels.insert("app".into(), "web".into());
        p.topology_spread = Arc::from([TopologySpread {
            max_skew: 1,
            topology_key: key.into(),
            selector: Some(LabelSelector {
                match_labels: [("app".to_string(), "web".to_string())].into(),
                match_expressions: vec![],
            }),
            namespace: "default".into(),
            min_domains: None,
            honor_node_affinity: true,
            honor_taints: false,
        }]);
        p
    };

    // Two zones, one pool each; zone a is cheaper. Zone a holds 3 web pods,
    // zone b 1, both nodes full: two more must go to zone b (skew 1).
    let (a, b) = (zone_pool("a", 0.02), zone_pool("b", 0.04));
    let nodes = vec![node_of(&a, "a0"), node_of(&b, "b0")];
    let mut pods = vec![
        web("web-0", Some("a0"), ZONE),
        web("web-1", Some("a0"), ZONE),
        web("web-2", Some("a0"), ZONE),
        web("web-3", Some("b0"), ZONE),
        running("fill-a", "a0", 1700, GI),
        running("fill-b", "b0", 1900, GI),
    ];
    pods.push(web("web-4", None, ZONE));
    pods.push(web("web-5", None, ZONE));
    let mut p = k3scale_core::Policy::new(vec![a, b]);
    p.expander = Expander::Price;
    let mut s = snapshot(nodes, pods, 0.2, 0.2, NOW);
    let d = decide(&s, &p, NOW);
    let zone_b = vec![k3scale_core::ScaleUp {
        pool: "zone-b".into(),
        count: 1,
    }];
    assert_eq!(d.scale_up, zone_b, "{}", reasons(&d));

    // A zone-a machine on its way takes neither: once it joins, the
    // scheduler counts the pods of zone a there are (3 against 1).
    s.in_flight.push(InFlight {
        pool: "zone-a".into(),
        name: "zone-a-x".into(),
        launched_at: NOW,
    });
    let d = decide(&s, &p, NOW);
    assert_eq!(d.scale_up, zone_b, "{}", reasons(&d));
    assert!(
        reasons(&d).contains("0 fit nodes already launching"),
        "{}",
        reasons(&d)
    );
    // A zone-b machine on its way takes both.
    s.in_flight[0].pool = "zone-b".into();
    let d = decide(&s, &p, NOW);
    assert_eq!(d.nodes_added(), 0, "{}", reasons(&d));
    assert!(
        reasons(&d).contains("2 fit nodes already launching"),
        "{}",
        reasons(&d)
    );

    // Spread over hostnames onto free capacity: the planner goes round the
    // nodes (a node refused at first takes a pod once the others have one).
    let mut nodes = three_workers();
    for n in &mut nodes {
        n.labels.insert("kubernetes.io/hostname".into(), n.name.clone());
    }
    let host = "kubernetes.io/hostname";
    let pods = (0..6).map(|i| web(&format!("h-{i}"), None, host)).collect();
    let d = decide(&snapshot(nodes, pods, 0.2, 0.2, NOW), &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 0, "{}", reasons(&d));
    assert!(reasons(&d).contains("6 fit free capacity"), "{}", reasons(&d));
}

#[test]
fn a_pod_no_new_node_can_take_is_explained_by_its_predicate_not_as_at_max() {
    // One replica per zone; both zones (the only two pools) hold one already.
    let db = |name: &str, node: Option<&str>| db_replica(name, node, ZONE);
    let (a, b) = (zone_pool("a", 0.02), zone_pool("b", 0.04));
    let nodes = vec![node_of(&a, "a0"), node_of(&b, "b0")];
    let pods = vec![db("db-0", Some("a0")), db("db-1", Some("b0")), db("db-2", None)];
    let p = k3scale_core::Policy::new(vec![a, b]);
    let d = decide(&snapshot(nodes, pods, 0.2, 0.2, NOW), &p, NOW);
    assert_eq!(d.nodes_added(), 0, "{}", reasons(&d));
    let text = reasons(&d);
    assert!(
        text.contains("zone-a: required pod anti-affinity on topology.kubernetes.io/zone (InterPodAffinity)")
            && text.contains("zone-b: required pod anti-affinity"),
        "{text}"
    );
    assert!(!text.contains("max"), "{text}");
}

#[test]
fn extended_resources_are_planned_like_the_scheduler() {
    use std::sync::Arc;
    const GPU: &str = "nvidia.com/gpu";
    let cpu_pool = pool("cpu", 0, 10, 4000, 8 * GI, 0.05);
    let mut gpu_pool = pool("gpu", 0, 10, 4000, 8 * GI, 0.90);
    gpu_pool.template.extended.insert(GPU.into(), 1);
    let p = seed_rules(k3scale_core::Policy::new(vec![
        cpu_pool.clone(),
        gpu_pool.clone(),
    ]));
    let wants = |pod: &mut k3scale_core::Pod, n: u64| {
        pod.extended = Arc::new([(GPU.to_string(), n)].into());
    };

    // A GPU node whose GPU is taken, with CPU to spare: a second GPU pod
    // needs a new GPU node, though the cheap pool has more room.
    let nodes = vec![node_of(&gpu_pool, "g0"), node_of(&cpu_pool, "c0")];
    let mut busy = running("train-0", "g0", 500, GI);
    wants(&mut busy, 1);
    let mut next = pending("train-1", 500, GI, NOW);
    wants(&mut next, 1);
    let d = decide(
        &snapshot(nodes.clone(), vec![busy.clone(), next], 0.2, 0.2, NOW),
        &p,
        NOW,
    );
    assert_eq!(
        d.scale_up,
        vec![k3scale_core::ScaleUp {
            pool: "gpu".into(),
            count: 1
        }],
        "{}",
        reasons(&d)
    );

    // Two GPUs in one pod: no template offers them, and the reason says so.
    let mut big = pending("train-big", 500, GI, NOW);
    wants(&mut big, 2);
    let d = decide(
        &snapshot(nodes.clone(), vec![busy.clone(), big], 0.2, 0.2, NOW),
        &p,
        NOW,
    );
    assert_eq!(d.nodes_added(), 0);
    assert!(
        reasons(&d).contains("gpu: requests more nvidia.com/gpu than a new node has"),
        "{}",
        reasons(&d)
    );

    // Scale-down: the GPU pod has nowhere else to go (c1, busy, has CPU
    // room but no GPU), so its node stays; the idle CPU node goes.
    let mut nodes = nodes;
    nodes.push(node_of(&cpu_pool, "c1"));
    let pods = vec![busy, running("app", "c1", 2500, GI)];
    let d = decide(&snapshot(nodes, pods, 0.05, 0.05, NOW), &p, NOW);
    let removed: Vec<&str> = d.scale_down.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(removed, ["c0"], "{}", reasons(&d));
}

#[test]
fn a_pod_pinned_by_its_volume_neither_launches_a_node_nor_moves() {
    use k3scale_core::model::{NodeAffinity, NodeSelectorRequirement, SelectorOperator};
    use std::sync::Arc;
    let on_w0 = Arc::from([NodeAffinity {
        terms: vec![vec![NodeSelectorRequirement {
            key: "kubernetes.io/hostname".into(),
            operator: SelectorOperator::In,
            values: vec!["w0".into()],
            field: false,
        }]],
    }]);
    let nodes = || {
        let mut nodes = three_workers();
        for n in &mut nodes {
            n.labels.insert("kubernetes.io/hostname".into(), n.name.clone());
        }
        nodes
    };
    // w0 is full; the pod's local volume lives there: a new node cannot help.
    let mut db = pending("db-0", 500, GI, NOW);
    db.volume_affinity = Arc::clone(&on_w0);
    let pods = vec![running("big", "w0", 1900, GI), db];
    let d = decide(&snapshot(nodes(), pods, 0.2, 0.2, NOW), &seed_policy(), NOW);
    assert_eq!(d.nodes_added(), 0, "{}", reasons(&d));
    assert!(
        reasons(&d).contains("a bound volume's node affinity excludes it (VolumeBinding)"),
        "{}",
        reasons(&d)
    );

    // Cold cluster: w0's pod cannot move off its volume, so w0 stays.
    let mut db = running("db-0", "w0", 100, 64 * MI);
    db.volume_affinity = on_w0;
    let pods = vec![db, running("web", "w1", 1500, GI), running("api", "w2", 1500, GI)];
    let d = decide(&snapshot(nodes(), pods, 0.05, 0.05, NOW), &seed_policy(), NOW);
    assert!(d.scale_down.iter().all(|s| s.node != "w0"), "{}", reasons(&d));
    assert!(
        reasons(&d).contains("w0"),
        "w0's refusal is explained: {}",
        reasons(&d)
    );
}

#[test]
fn balance_similar_pools_spreads_a_scale_up_over_zones() {
    let (a, b) = (zone_pool("a", 0.04), zone_pool("b", 0.04));
    let mut p = k3scale_core::Policy::new(vec![a.clone(), b.clone()]);
    let pods = |n: usize| -> Vec<_> { (0..n).map(|i| pending(&format!("p{i}"), 1500, GI, NOW)).collect() };

    let d = decide(&snapshot(vec![], pods(4), 0.2, 0.2, NOW), &p, NOW);
    assert_eq!(d.nodes_added(), 4);
    assert_eq!(d.scale_up.len(), 1, "off by default: one pool: {}", reasons(&d));

    p.balance_similar_pools = true;
    let d = decide(&snapshot(vec![], pods(4), 0.2, 0.2, NOW), &p, NOW);
    let split: Vec<(&str, u32)> = d.scale_up.iter().map(|s| (s.pool.as_str(), s.count)).collect();
    assert_eq!(split, [("zone-a", 2), ("zone-b", 2)], "{}", reasons(&d));
    assert!(
        reasons(&d).contains("balanced over similar pools: 2 zone-a, 2 zone-b"),
        "{}",
        reasons(&d)
    );

    // zone-a already has two (full) nodes: the two new ones go to zone-b.
    let nodes = vec![node_of(&a, "a0"), node_of(&a, "a1")];
    let mut all = vec![running("x", "a0", 1900, GI), running("y", "a1", 1900, GI)];
    all.extend(pods(2));
    let d = decide(&snapshot(nodes, all, 0.2, 0.2, NOW), &p, NOW);
    let split: Vec<(&str, u32)> = d.scale_up.iter().map(|s| (s.pool.as_str(), s.count)).collect();
    assert_eq!(split, [("zone-b", 2)], "{}", reasons(&d));

    // A pod that selects zone a is not spread to zone b.
    let mut pinned = pods(2);
    for pod in &mut pinned {
        pod.node_selector.insert(ZONE.into(), "a".into());
    }
    let d = decide(&snapshot(vec![], pinned, 0.2, 0.2, NOW), &p, NOW);
    let split: Vec<(&str, u32)> = d.scale_up.iter().map(|s| (s.pool.as_str(), s.count)).collect();
    assert_eq!(split, [("zone-a", 2)], "{}", reasons(&d));
}
