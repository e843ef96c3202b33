//! Machine lifecycle: join timeouts, backoff, orphans, Nodes without machines.

use k3scale_core::Time;
use k3scale_core::lifecycle::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn t(s: u64) -> Time {
    Time::from_secs(s)
}

fn machine(name: &str, at: u64) -> ObservedMachine {
    ObservedMachine {
        name: name.into(),
        pool: "workers".into(),
        created_at: t(at),
    }
}

fn node(name: &str, ready: bool) -> ObservedNode {
    ObservedNode {
        name: name.into(),
        pool: Some("workers".into()),
        ready,
    }
}

#[test]
fn an_adopted_old_machine_whose_node_is_not_ready_joined_before() {
    // After a restart: a machine launched an hour ago with a Node not
    // Ready now (its agent died) is no launch in flight and no join failure.
    let cfg = LifecycleConfig::default();
    let mut l = Lifecycle::default();
    let nodes = [node("workers-old", false), node("workers-new", false)];
    let machines = [machine("workers-old", 0), machine("workers-new", 3500)];
    assert!(l.step(&machines, &nodes, t(3600), &cfg).is_empty());
    let in_flight: Vec<String> = l.in_flight().into_iter().map(|m| m.name).collect();
    assert_eq!(
        in_flight,
        ["workers-new"],
        "only the one still within its join time"
    );
    // The young one's join times out; the old one is left to the unready rule.
    let later = l.step(&machines, &nodes, t(7200), &cfg);
    let deleted: Vec<&str> = later
        .iter()
        .filter_map(|a| match a {
            LifecycleAction::DeleteMachine { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, ["workers-new"], "{later:?}");
}

#[test]
fn launched_registered_ready_then_in_flight_ends() {
    let cfg = LifecycleConfig::default();
    let mut l = Lifecycle::default();
    l.launched("workers", "workers-a", t(0));
    assert_eq!(l.in_flight().len(), 1);
    assert!(l.step(&[machine("workers-a", 0)], &[], t(10), &cfg).is_empty());
    assert!(
        l.step(
            &[machine("workers-a", 0)],
            &[node("workers-a", false)],
            t(30),
            &cfg
        )
        .is_empty()
    );
    assert_eq!(l.machines["workers-a"].phase, Phase::Registered);
    assert_eq!(l.in_flight().len(), 1);
    assert!(
        l.step(
            &[machine("workers-a", 0)],
            &[node("workers-a", true)],
            t(45),
            &cfg
        )
        .is_empty()
    );
    assert_eq!(l.machines["workers-a"].phase, Phase::Ready);
    assert!(l.in_flight().is_empty());
}

#[test]
fn join_timeout_deletes_reports_and_backs_off_exponentially() {
    let cfg = LifecycleConfig {
        join_timeout: Duration::from_secs(600),
        ..LifecycleConfig::default()
    };
    let mut l = Lifecycle::default();
    l.launched("workers", "workers-a", t(0));
    let inv = [machine("workers-a", 0)];
    let nodes = [node("workers-a", false)]; // registered at once, never Ready
    assert!(l.step(&inv, &nodes, t(0), &cfg).is_empty());
    assert!(l.step(&inv, &nodes, t(599), &cfg).is_empty());
    let actions = l.step(&inv, &nodes, t(600), &cfg);
    assert_eq!(
        actions,
        vec![
            LifecycleAction::DeleteMachine {
                name: "workers-a".into(),
                pool: "workers".into(),
                why: DeleteReason::JoinTimeout { waited_s: 600 }
            },
            LifecycleAction::JoinFailure {
                pool: "workers".into(),
                machine: "workers-a".into(),
                failures: 1,
                until: t(630)
            },
        ]
    );
    assert_eq!(
        l.backed_off(t(600)),
        BTreeMap::from([(
            "workers".to_string(),
            Hold {
                until: t(630),
                cause: HoldCause::JoinFailures,
                why: String::new()
            }
        )])
    );
    // The delete has not taken effect: re-issued after delete_retry, same reason, no new failure.
    assert!(l.step(&inv, &nodes, t(620), &cfg).is_empty());
    let retry = l.step(&inv, &nodes, t(660), &cfg);
    assert_eq!(retry.len(), 1);
    assert!(matches!(
        &retry[0],
        LifecycleAction::DeleteMachine {
            why: DeleteReason::JoinTimeout { waited_s: 600 },
            ..
        }
    ));
    // Gone from the inventory: forgotten.
    assert!(l.step(&[], &[], t(700), &cfg).is_empty());
    assert!(l.machines.is_empty());
    // A second failure doubles the backoff; a success clears it.
    l.launched("workers", "workers-b", t(700));
    let actions = l.step(&[machine("workers-b", 700)], &[], t(1300), &cfg);
    assert!(actions.contains(&LifecycleAction::JoinFailure {
        pool: "workers".into(),
        machine: "workers-b".into(),
        failures: 2,
        until: t(1360)
    }));
    l.launched("workers", "workers-c", t(1400));
    l.step(
        &[machine("workers-c", 1400)],
        &[node("workers-c", true)],
        t(1450),
        &cfg,
    );
    assert!(l.backoff.is_empty());
}

#[test]
fn a_launch_that_never_appears_is_a_failure_after_the_inventory_lag() {
    let cfg = LifecycleConfig::default();
    let mut l = Lifecycle::default();
    l.launched("workers", "workers-a", t(0));
    assert!(
        l.step(&[], &[], t(60), &cfg).is_empty(),
        "still within the inventory lag"
    );
    let actions = l.step(&[], &[], t(120), &cfg);
    assert!(
        matches!(&actions[..], [LifecycleAction::JoinFailure { failures: 1, .. }]),
        "{actions:?}"
    );
    assert!(l.machines.is_empty());
    let failed = l.launch_failed("nope", LaunchError::Transient, "x", "", t(130), &cfg);
    assert_eq!(failed, None);
    // A create that fails is another kind of streak than failed joins.
    l.launched("workers", "workers-b", t(130));
    assert!(matches!(
        l.launch_failed("workers-b", LaunchError::NoCapacity, "none", "", t(130), &cfg),
        Some(LifecycleAction::LaunchHeld {
            cause: HoldCause::NoCapacity,
            failures: 1,
            ..
        })
    ));
}

#[test]
fn orphans_and_nodes_without_machines_are_cleaned_up() {
    let cfg = LifecycleConfig::default();
    let mut l = Lifecycle::default();
    // Adopted after a restart: a Ready machine.
    l.step(
        &[machine("workers-a", 0)],
        &[node("workers-a", true)],
        t(100),
        &cfg,
    );
    assert_eq!(l.machines["workers-a"].phase, Phase::Ready);
    // Its Node is deleted by someone: after orphan_timeout the machine goes.
    assert!(l.step(&[machine("workers-a", 0)], &[], t(200), &cfg).is_empty());
    let actions = l.step(&[machine("workers-a", 0)], &[], t(700), &cfg);
    assert!(
        matches!(
            &actions[..],
            [LifecycleAction::DeleteMachine {
                why: DeleteReason::Orphan { without_node_s: 600 },
                ..
            }]
        ),
        "{actions:?}"
    );
    // A Node of ours whose machine was deleted outside k3scale; unmanaged nodes are left alone.
    let server = ObservedNode {
        name: "server".into(),
        pool: None,
        ready: true,
    };
    let nodes = [node("workers-z", true), server];
    assert!(l.step(&[], &nodes, t(800), &cfg).is_empty());
    assert_eq!(
        l.step(&[], &nodes, t(920), &cfg),
        vec![LifecycleAction::DeleteNode {
            name: "workers-z".into()
        }]
    );
}

#[test]
fn machine_names_are_unique_dns_labels() {
    let a = machine_name("workers", 1);
    let b = machine_name("workers", 2);
    assert_ne!(a, b);
    assert!(a.starts_with("workers-") && a.len() == "workers-".len() + 8);
    assert!(
        a.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    );
}

#[derive(Debug, Clone)]
enum Event {
    Launch,
    Appears(usize),
    Registers(usize),
    BecomesReady(usize),
    NodeDeleted(usize),
    MachineDeletedOutside(usize),
    Wait(u64),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        Just(Event::Launch),
        (0usize..6).prop_map(Event::Appears),
        (0usize..6).prop_map(Event::Registers),
        (0usize..6).prop_map(Event::BecomesReady),
        (0usize..6).prop_map(Event::NodeDeleted),
        (0usize..6).prop_map(Event::MachineDeletedOutside),
        (1u64..400).prop_map(Event::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Drive a small world with random event orders; the controller carries
    /// out every action at once. Invariants hold after every step.
    #[test]
    fn lifecycle_invariants_hold_for_any_event_order(events in prop::collection::vec(event(), 1..80)) {
        let cfg = LifecycleConfig::default();
        let mut l = Lifecycle::default();
        let mut now = t(1000);
        let mut launched: Vec<String> = Vec::new();
        let mut inventory: BTreeMap<String, Time> = BTreeMap::new();
        let mut nodes: BTreeMap<String, bool> = BTreeMap::new();
        let mut deleted_once: BTreeSet<String> = BTreeSet::new();
        for e in events {
            let pick = |i: usize| launched.get(i % launched.len().max(1)).cloned();
            match e {
                Event::Launch => {
                    let name = format!("workers-{}", launched.len());
                    l.launched("workers", &name, now);
                    launched.push(name);
                }
                Event::Appears(i) => {
                    if let Some(n) = pick(i) && !deleted_once.contains(&n) {
                        inventory.entry(n).or_insert(now);
                    }
                }
                Event::Registers(i) => {
                    if let Some(n) = pick(i) && inventory.contains_key(&n) {
                        nodes.entry(n).or_insert(false);
                    }
                }
                Event::BecomesReady(i) => {
                    if let Some(n) = pick(i) && let Some(r) = nodes.get_mut(&n) {
                        *r = true;
                    }
                }
                Event::NodeDeleted(i) => {
                    if let Some(n) = pick(i) {
                        nodes.remove(&n);
                    }
                }
                Event::MachineDeletedOutside(i) => {
                    if let Some(n) = pick(i) {
                        inventory.remove(&n);
                        deleted_once.insert(n);
                    }
                }
                Event::Wait(s) => now = now + Duration::from_secs(s),
            }
            let inv: Vec<ObservedMachine> = inventory.iter().map(|(n, at)| ObservedMachine { name: n.clone(), pool: "workers".into(), created_at: *at }).collect();
            let obs: Vec<ObservedNode> = nodes.iter().map(|(n, r)| ObservedNode { name: n.clone(), pool: Some("workers".into()), ready: *r }).collect();
            let actions = l.step(&inv, &obs, now, &cfg);
            for a in &actions {
                match a {
                    LifecycleAction::DeleteMachine { name, .. } => {
                        // Never a machine whose Node is Ready.
                        prop_assert!(nodes.get(name) != Some(&true), "deleted Ready machine {name}");
                        inventory.remove(name);
                        deleted_once.insert(name.clone());
                    }
                    LifecycleAction::DeleteNode { name } => {
                        // Never the Node of a machine that still exists.
                        prop_assert!(!inventory.contains_key(name), "deleted node {name} of a live machine");
                        nodes.remove(name);
                    }
                    LifecycleAction::LaunchHeld { .. } => prop_assert!(false, "step never launches"),
                    LifecycleAction::JoinFailure { until, .. } => {
                        prop_assert!(*until <= now + cfg.backoff_max);
                    }
                }
            }
            // No machine waits to register past the provision timeout, or
            // to be Ready past the join timeout after registering.
            for (name, m) in &l.machines {
                match m.phase {
                    Phase::Launched if m.listed => {
                        prop_assert!(now.since(m.launched_at) < cfg.provision_timeout, "{name} overdue");
                    }
                    Phase::Registered => prop_assert!(now.since(m.since) < cfg.join_timeout, "{name} overdue"),
                    _ => {}
                }
            }
            // In flight is exactly the machines still joining.
            let joining = l.machines.values().filter(|m| matches!(m.phase, Phase::Launched | Phase::Registered)).count();
            prop_assert_eq!(l.in_flight().len(), joining);
        }
    }
}

#[test]
fn registering_and_becoming_ready_have_their_own_timeouts() {
    let cfg = LifecycleConfig {
        provision_timeout: Duration::from_secs(900),
        join_timeout: Duration::from_secs(120),
        ..LifecycleConfig::default()
    };
    let mut l = Lifecycle::default();
    l.launched("metal", "metal-a", t(0));
    let inv = [machine("metal-a", 0)];
    // A slow machine: no Node for 14 minutes is still within provision_timeout.
    assert!(l.step(&inv, &[], t(840), &cfg).is_empty());
    // It registers at 14 min; Ready is due within join_timeout of that.
    assert!(l.step(&inv, &[node("metal-a", false)], t(850), &cfg).is_empty());
    assert!(l.step(&inv, &[node("metal-a", false)], t(969), &cfg).is_empty());
    let actions = l.step(&inv, &[node("metal-a", false)], t(970), &cfg);
    assert!(
        matches!(
            &actions[0],
            LifecycleAction::DeleteMachine {
                why: DeleteReason::JoinTimeout { waited_s: 970 },
                ..
            }
        ),
        "{actions:?}"
    );
    // Never registering is caught by provision_timeout.
    let mut l = Lifecycle::default();
    l.launched("metal", "metal-b", t(0));
    let inv = [machine("metal-b", 0)];
    assert!(l.step(&inv, &[], t(899), &cfg).is_empty());
    assert!(!l.step(&inv, &[], t(900), &cfg).is_empty());
    // Defaults follow boot_time: a 10-minute image gets 30 and 10 minutes.
    let slow = LifecycleConfig::for_boot_time(Duration::from_secs(600));
    assert_eq!(
        (slow.provision_timeout, slow.join_timeout),
        (Duration::from_secs(1800), Duration::from_secs(600))
    );
    let fast = LifecycleConfig::for_boot_time(Duration::from_secs(45));
    assert_eq!(
        (fast.provision_timeout, fast.join_timeout),
        (Duration::from_secs(600), Duration::from_secs(300))
    );
}

#[test]
fn each_launch_error_kind_holds_the_pool_its_own_way() {
    let cfg = LifecycleConfig::default();
    let hold = |l: &Lifecycle, now| l.backed_off(t(now)).get("gpu").cloned();
    let mut l = Lifecycle::default();

    // No capacity: the capacity backoff, doubling, told each time.
    l.launched("gpu", "gpu-a", t(0));
    let told = l.launch_failed(
        "gpu-a",
        LaunchError::NoCapacity,
        "no g5 in eu-west-1a",
        "cfg1",
        t(0),
        &cfg,
    );
    assert!(matches!(
        told,
        Some(LifecycleAction::LaunchHeld {
            cause: HoldCause::NoCapacity,
            failures: 1,
            ..
        })
    ));
    assert_eq!(
        hold(&l, 0).map(|h| (h.until, h.cause)),
        Some((t(30), HoldCause::NoCapacity))
    );
    l.launched("gpu", "gpu-b", t(30));
    l.launch_failed(
        "gpu-b",
        LaunchError::NoCapacity,
        "still none",
        "cfg1",
        t(30),
        &cfg,
    );
    assert_eq!(hold(&l, 30).map(|h| h.until), Some(t(90)));
    // A success ends it.
    l.launch_succeeded("gpu");
    assert!(l.backoff.is_empty());

    // Transient: a short retry (10 s doubling to 2 min), told once per streak.
    l.launched("gpu", "gpu-c", t(100));
    let first = l.launch_failed(
        "gpu-c",
        LaunchError::Transient,
        "engine down",
        "cfg1",
        t(100),
        &cfg,
    );
    assert!(first.is_some());
    assert_eq!(
        hold(&l, 100).map(|h| (h.until, h.cause)),
        Some((t(110), HoldCause::Retry))
    );
    l.launched("gpu", "gpu-d", t(110));
    let again = l.launch_failed(
        "gpu-d",
        LaunchError::Transient,
        "engine down",
        "cfg1",
        t(110),
        &cfg,
    );
    assert!(again.is_none(), "told once per streak");
    assert_eq!(hold(&l, 110).map(|h| h.until), Some(t(130)));

    // Fatal: held until reset or a new configuration; a join does not clear it.
    l.launched("gpu", "gpu-e", t(200));
    l.launch_failed(
        "gpu-e",
        LaunchError::Fatal,
        "image not found",
        "cfg1",
        t(200),
        &cfg,
    );
    let h = hold(&l, 10_000_000).expect("still failed much later");
    assert_eq!((h.cause, h.why.as_str()), (HoldCause::Failed, "image not found"));
    l.launched("gpu", "gpu-f", t(300));
    l.step(&[machine("gpu-f", 300)], &[node("gpu-f", true)], t(310), &cfg);
    assert!(
        hold(&l, 310).is_some(),
        "a join elsewhere does not clear a failed pool"
    );
    assert!(
        !l.clear_failed("gpu", Some("cfg1")),
        "same configuration: stays failed"
    );
    assert!(
        l.clear_failed("gpu", Some("cfg2")),
        "a new configuration clears it"
    );
    assert!(hold(&l, 310).is_none());
    l.launched("gpu", "gpu-g", t(400));
    l.launch_failed("gpu-g", LaunchError::Fatal, "bad AMI", "cfg2", t(400), &cfg);
    assert!(l.clear_failed("gpu", None), "an operator's reset clears it");
}
