//! End-to-end simulations through the real policy.

use k3scale_core::config::{DEFAULT_CONFIG, load};
use k3scale_sim::{Comparison, SimOptions, Trace, compare, scenario};

fn default_run(trace: &Trace, name: &str) -> Comparison {
    let loaded = load("default.yaml", DEFAULT_CONFIG).unwrap();
    let (mut policy, mut opts) = (loaded.policy, SimOptions::default());
    if let Some(s) = scenario::find(name) {
        s.prepare(&mut policy, &mut opts);
    }
    compare(name, trace, &policy, loaded.interval, &opts, &mut |_| {})
}

#[test]
fn default_scenario_meets_the_promise() {
    let trace = scenario::find(scenario::DEFAULT_SCENARIO).unwrap().trace(42);
    let c = default_run(&trace, "flash-sale");
    let k = c.summary("k3scale").unwrap();
    let plain = c.summary("threshold-2m").unwrap();
    let fixed = c.summary("fixed-peak").unwrap();
    assert!(c.saving_vs("fixed-peak").unwrap() >= 40.0, "{:#?}", c.summaries);
    assert!(
        k.max_wait_past_boot_s <= 60.0,
        "k3scale pods waited {}s past boot",
        k.max_wait_past_boot_s
    );
    assert!(k.cost < plain.cost, "cost {} vs {}", k.cost, plain.cost);
    assert!(k.pod_seconds_unschedulable < plain.pod_seconds_unschedulable);
    assert!(k.max_wait_s < plain.max_wait_s && k.p95_wait_s <= plain.p95_wait_s);
    // The fixed cluster is sized for the peak: nothing waits, and k3scale reached the same peak.
    assert_eq!(fixed.pod_seconds_unschedulable, 0.0);
    assert!(
        k.peak_nodes <= 10 && k.peak_nodes >= fixed.peak_nodes - 1,
        "{} vs {}",
        k.peak_nodes,
        fixed.peak_nodes
    );
}

#[test]
fn every_scenario_stays_within_bounds_and_is_deterministic() {
    for s in scenario::SCENARIOS {
        let trace = s.trace(7);
        let a = default_run(&trace, s.name);
        let b = default_run(&trace, s.name);
        assert_eq!(a.summaries, b.summaries, "{} is not deterministic", s.name);
        for run in &a.runs[..2] {
            // Nodes alive includes ones still draining, never more than max + the step being drained.
            // (Two pools of 1..10 in the zones scenario.)
            let most = if s.name == "zones" { 21 } else { 11 };
            assert!(
                run.nodes_per_minute.iter().all(|&n| (2..=most).contains(&n)),
                "{} {}",
                s.name,
                run.name
            );
        }
        assert!(
            a.saving_vs("fixed-peak").unwrap() > -1.0,
            "{}: {:#?}",
            s.name,
            a.summaries
        );
    }
}

#[test]
fn k3scale_is_within_5_percent_of_the_oracle_on_every_scenario() {
    for s in scenario::SCENARIOS {
        // The oracle runs the first pool's nodes: with nodes of several
        // sizes (consolidation) its node-hours are no limit to compare to.
        let (mut policy, mut opts) = (
            load("d.yaml", DEFAULT_CONFIG).unwrap().policy,
            SimOptions::default(),
        );
        s.prepare(&mut policy, &mut opts);
        if policy
            .pools
            .iter()
            .any(|p| p.template.allocatable != policy.pools[0].template.allocatable)
        {
            continue;
        }
        let c = default_run(&s.trace(7), s.name);
        let oracle = c.summary("oracle").unwrap();
        assert_eq!(oracle.pods_that_waited, 0, "{}", s.name);
        assert_eq!(oracle.vs_oracle, Some(1.0));
        // Nothing beats perfect foresight without making pods wait past a
        // boot (zones: the oracle counts one pod per node, as the
        // anti-affinity wants). The 2-minute script can, by starving pods.
        for other in c.summaries.iter().filter(|o| o.max_wait_past_boot_s <= 0.0) {
            assert!(
                other.vs_oracle.unwrap() >= 0.999,
                "{}: {:#?}",
                s.name,
                c.summaries
            );
        }
        let k = c.summary("k3scale").unwrap();
        assert!(k.vs_oracle.unwrap() <= 1.05, "{}: {:#?}", s.name, k);
        assert!(k.max_wait_past_boot_s <= 10.0, "{}: {:#?}", s.name, k);
    }
}

#[test]
fn nasa_trace_replays_end_to_end() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../traces/nasa-1995-http.csv");
    let text = std::fs::read_to_string(path).unwrap();
    let trace = Trace::parse("nasa-1995-http.csv", &text)
        .unwrap()
        .scaled(32.0)
        .unwrap();
    assert_eq!(trace.series["web"].len(), 84_333);
    let c = default_run(&trace, "nasa");
    assert!((c.hours - 1405.55).abs() < 0.1, "{}", c.hours);
    let k = c.summary("k3scale").unwrap();
    assert!(c.saving_vs("fixed-peak").unwrap() >= 40.0, "{:#?}", c.summaries);
    assert!(c.saving_vs("threshold-2m").unwrap() > 0.0, "{:#?}", c.summaries);
    assert!(k.max_wait_past_boot_s <= 60.0, "{:#?}", k);
    assert!(k.max_wait_s < c.summary("threshold-2m").unwrap().max_wait_s);
    // Its scale-ups soon after a scale-down are new demand, never a
    // removal undone by the pods it evicted; the threshold rule names no pods.
    assert!(k.scale_ups_soon_after_a_scale_down > 0);
    assert_eq!(k.scale_ups_for_evicted_pods, Some(0), "{k:#?}");
    assert_eq!(
        c.summary("threshold-2m").unwrap().scale_ups_for_evicted_pods,
        None
    );
}

#[test]
fn replica_traces_bypass_the_hpa() {
    let trace = Trace::parse("r.csv", "time_s,replicas\n0,2\n600,30\n1800,2\n3600,2\n").unwrap();
    let c = default_run(&trace, "replicas");
    let k = c.summary("k3scale").unwrap();
    // 30 replicas of 250m on 2-CPU nodes (7 per node with the DaemonSet pod) need 5 nodes.
    assert_eq!(k.peak_nodes, 5, "{k:#?}");
    assert_eq!(c.summary("fixed-peak").unwrap().peak_nodes, 5);
}

#[test]
fn zone_spread_with_one_replica_per_node_never_waits_past_boot() {
    let trace = scenario::find("zones").unwrap().trace(42);
    let c = default_run(&trace, "zones");
    let k = c.summary("k3scale").unwrap();
    assert!(k.max_wait_past_boot_s <= 0.0, "{k:#?}");
    assert!(c.saving_vs("fixed-peak").unwrap() >= 30.0, "{:#?}", c.summaries);
    // One replica per node, spread over both zones: each pool grew.
    let events = &c.events["k3scale"];
    let launched_in = |pool: &str| {
        events
            .iter()
            .filter(|e| e.added > 0)
            .any(|e| e.reasons.iter().any(|r| r.contains(pool)))
    };
    assert!(launched_in("zone-a") && launched_in("zone-b"), "{events:#?}");
}

#[test]
fn a_pool_whose_nodes_boot_slower_than_its_provision_timeout_backs_off_as_in_the_daemon() {
    // The simulator steps the daemon's machine lifecycle: a machine that is
    // no Ready node within the pool's provision_timeout is deleted as a
    // failed join, and the pool backs off.
    let trace = Trace::parse("r.csv", "time_s,replicas\n0,2\n600,30\n5400,30\n").unwrap();
    let loaded = load("default.yaml", DEFAULT_CONFIG).unwrap();
    let mut policy = loaded.policy;
    policy.pools[0].template.boot_time = std::time::Duration::from_secs(20 * 60);
    let run = |policy: &k3scale_core::Policy| {
        let c = compare(
            "slow",
            &trace,
            policy,
            loaded.interval,
            &SimOptions::default(),
            &mut |_| {},
        );
        c.summary("k3scale").unwrap().clone()
    };
    policy.pools[0].provision_timeout = std::time::Duration::from_secs(10 * 60);
    let slow = run(&policy);
    // Given up on before they boot: launched again and again, and the
    // pods wait far past the boot time.
    assert!(slow.max_wait_s > 40.0 * 60.0, "{slow:#?}");
    // With a timeout longer than the boot, the same pool grows in one boot.
    policy.pools[0].provision_timeout = std::time::Duration::from_secs(60 * 60);
    let ok = run(&policy);
    assert!(ok.max_wait_s <= 25.0 * 60.0, "{ok:#?}");
    assert!(slow.nodes_added > ok.nodes_added, "relaunches: {slow:#?} {ok:#?}");
}

/// k3scale on the seed-42 office-hours week with the default config, then
/// with `tweak` applied to its policy.
fn office_week_without_and_with(
    tweak: impl FnOnce(&mut k3scale_core::Policy),
) -> (k3scale_sim::Summary, k3scale_sim::Summary) {
    let trace = scenario::find("diurnal-week").unwrap().trace(42);
    let plain = default_run(&trace, "diurnal-week");
    let loaded = load("default.yaml", DEFAULT_CONFIG).unwrap();
    let mut policy = loaded.policy;
    tweak(&mut policy);
    let with = compare(
        "diurnal-week",
        &trace,
        &policy,
        loaded.interval,
        &SimOptions::default(),
        &mut |_| {},
    );
    (
        plain.summary("k3scale").unwrap().clone(),
        with.summary("k3scale").unwrap().clone(),
    )
}

#[test]
fn headroom_costs_node_hours_and_saves_waiting() {
    // A node's worth of room (7 pods of 250m) kept ready through the week.
    let (a, b) = office_week_without_and_with(|policy| {
        policy.pools[0].headroom = Some(k3scale_core::model::Headroom {
            pods: 7,
            requests: k3scale_core::Resources::pod(250, 256 << 20),
        })
    });
    assert!(b.node_hours > a.node_hours, "{a:#?}\n{b:#?}");
    assert!(b.pods_that_waited < a.pods_that_waited, "{a:#?}\n{b:#?}");
    assert!(b.pod_seconds_unschedulable < a.pod_seconds_unschedulable);
}

#[test]
fn predictive_mode_cuts_waiting_on_a_week_of_office_hours_within_a_tenth_of_the_oracle() {
    let (a, b) = office_week_without_and_with(|policy| {
        policy.predictive = Some(k3scale_core::policy::Predictive { max_extra_nodes: 2 })
    });
    assert!(
        b.pod_seconds_unschedulable < a.pod_seconds_unschedulable,
        "{a:#?}\n{b:#?}"
    );
    assert!(b.vs_oracle.unwrap() <= 1.10, "{b:#?}");
    assert!(b.p95_wait_s < 45.0, "p95 below the boot time: {b:#?}");
}

/// A new agent image for a pool of 100 nodes with a budget of 10%: every
/// node launched before the change is replaced, never more than 10
/// disrupted at once, no pod waiting past a boot.
#[test]
fn an_image_change_rolls_a_hundred_nodes_within_a_ten_percent_budget() {
    use k3scale_core::disruption::Amount;
    use k3scale_core::testkit::budget;
    use k3scale_sim::{Contender, Summary, run};
    use std::time::Duration;
    // 700 replicas of 250m: 100 nodes of 7 pods.
    let trace = Trace::parse("steady.csv", "time_s,replicas\n0,700\n10800,700\n").unwrap();
    let loaded = load("default.yaml", DEFAULT_CONFIG).unwrap();
    let mut policy = loaded.policy;
    policy.pools[0].max = 150;
    policy.pools[0].min = 100;
    policy.pools[0].disruption = vec![budget("ten-percent", Amount::Percent(10), &[], None)];
    let opts = SimOptions {
        settings_change_at: Some(Duration::from_secs(3600)),
        ..SimOptions::default()
    };
    let contender = Contender::Autoscaler {
        name: "k3scale".into(),
        policy: Box::new(policy),
        interval: loaded.interval,
        event_driven: true,
    };
    let r = run(&trace, &contender, &opts, &mut |_| {});
    let s = Summary::of(&r);
    let drifted: Vec<&str> = r
        .events
        .iter()
        .flat_map(|e| &e.reasons)
        .filter(|t| t.contains("is drifted") && t.contains("launching its replacement first"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        drifted.len(),
        100,
        "every node launched before the change is replaced once"
    );
    // 10% of the nodes there are (new ones count), rounded up, at every decision.
    let (disrupted, nodes) = r.most_disrupted_share;
    assert!(
        disrupted <= nodes.div_ceil(10),
        "{disrupted} of {nodes} disrupted at once"
    );
    assert!(r.max_disrupting >= 10, "the budget is used: {}", r.max_disrupting);
    assert!(s.max_wait_past_boot_s <= 0.0, "{s:#?}");
    // Each step launches replacements and drains the nodes they replace:
    // capacity swapped, so no scale-up undoes a scale-down.
    let swapped = |f: fn(&k3scale_sim::ScaleEvent) -> u32| r.events.iter().map(f).sum::<u32>();
    assert_eq!((swapped(|e| e.replacements), swapped(|e| e.replaced)), (100, 100));
    assert_eq!(s.scale_ups_soon_after_a_scale_down, 0, "{s:#?}");
    // Done well before the end: at most the nodes of one batch above 100.
    let last = *r.nodes_per_minute.last().unwrap();
    assert_eq!(last, 100, "{:?}", &r.nodes_per_minute[50..]);
    let rollout_minutes = r.nodes_per_minute[60..]
        .iter()
        .rposition(|&n| n != 100)
        .unwrap_or(0)
        + 1;
    assert!(rollout_minutes < 60, "rolled in {rollout_minutes} min");
}

/// The consolidation scenario: with consolidation (as the scenario sets
/// it) k3scale costs less than the same policy without it, and no pod waits
/// past a boot.
#[test]
fn consolidation_replaces_small_nodes_by_cheaper_large_ones() {
    let s = scenario::find("consolidation").unwrap();
    let trace = s.trace(42);
    let loaded = load("default.yaml", DEFAULT_CONFIG).unwrap();
    let (mut policy, mut opts) = (loaded.policy, SimOptions::default());
    s.prepare(&mut policy, &mut opts);
    let mut without = policy.clone();
    without.consolidation = None;
    let candidates = [("with", policy), ("without", without)].map(|(name, policy)| k3scale_sim::Candidate {
        name: format!("k3scale:{name}"),
        policy,
        interval: loaded.interval,
    });
    let c = k3scale_sim::compare_candidates("consolidation", &trace, &candidates, &opts, &mut |_| {});
    let with = c.summary("k3scale:with").unwrap();
    let without = c.summary("k3scale:without").unwrap();
    assert!(with.cost < without.cost * 0.97, "{with:#?}\n{without:#?}");
    assert!(with.max_wait_past_boot_s <= 0.0, "{with:#?}");
    let consolidations = c.events["k3scale:with"]
        .iter()
        .filter(|e| {
            e.reasons
                .iter()
                .any(|r| r.starts_with("consolidation:") && r.contains("replaced by"))
        })
        .count();
    assert!(consolidations >= 1, "{:#?}", c.events["k3scale:with"]);
    eprintln!(
        "consolidation scenario: with ${:.2} ({:.1} nh), without ${:.2} ({:.1} nh), {consolidations} consolidations, max wait {} s",
        with.cost, with.node_hours, without.cost, without.node_hours, with.max_wait_s
    );
}
