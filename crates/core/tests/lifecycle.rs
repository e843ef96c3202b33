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
    let cfg = LifecycleConfig::default();
    let mut l = Lifecycle::default();
    l.launched("workers", "workers-a", t(0));
    let inv = [machine("workers-a", 0)];
    let nodes = [node("workers-a", false)]; // registered, never Ready
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
        BTreeMap::from([("workers".to_string(), t(630))])
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
    let failed = l.launch_failed("nope", t(130), &cfg);
    assert_eq!(failed, None);
    l.launched("workers", "workers-b", t(130));
    assert!(matches!(
        l.launch_failed("workers-b", t(130), &cfg),
        Some(LifecycleAction::JoinFailure { failures: 2, .. })
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
                    LifecycleAction::JoinFailure { until, .. } => {
                        prop_assert!(*until <= now + cfg.backoff_max);
                    }
                }
            }
            // No machine is still waiting to join past the provision timeout.
            for (name, m) in &l.machines {
                if matches!(m.phase, Phase::Launched | Phase::Registered) && m.listed {
                    prop_assert!(now.since(m.launched_at) < cfg.provision_timeout, "{name} overdue");
                }
            }
            // In flight is exactly the machines still joining.
            let joining = l.machines.values().filter(|m| matches!(m.phase, Phase::Launched | Phase::Registered)).count();
            prop_assert_eq!(l.in_flight().len(), joining);
        }
    }
}
