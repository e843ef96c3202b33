//! The drain state machine: the scenarios of a safe drain, and properties
//! over random executor answers.

use k3scale_core::drain::*;
use k3scale_core::model::{OwnerKind, PodPhase};
use k3scale_core::testkit::{MI, running};
use k3scale_core::{Pod, Time};
use proptest::prelude::*;
use std::time::Duration;

fn t(s: u64) -> Time {
    Time::from_secs(s)
}

fn pods(n: usize) -> Vec<Pod> {
    (0..n)
        .map(|i| running(&format!("web-{i}"), "w1", 100, 64 * MI))
        .collect()
}

fn refs(p: &[Pod]) -> Vec<&Pod> {
    p.iter().collect()
}

fn evicts(actions: &[DrainAction]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            DrainAction::Evict { namespace, name, .. } => Some(format!("{namespace}/{name}")),
            _ => None,
        })
        .collect()
}

const REMOVE: [DrainAction; 3] = [
    DrainAction::DeleteMachine,
    DrainAction::DeleteNode,
    DrainAction::DeleteNodePassword,
];

#[test]
fn happy_path_cordon_evict_wait_then_machine_node_secret() {
    let mut d = Drain::start("w1", t(0), DrainConfig::default());
    let mut on_node = pods(2);
    let mut ds = running("svclb", "w1", 10, MI);
    ds.owner = OwnerKind::DaemonSet;
    let mut done = running("job-1", "w1", 10, MI);
    done.phase = PodPhase::Succeeded;
    on_node.extend([ds, done]);
    assert_eq!(d.next(&refs(&on_node), true, t(0)), vec![DrainAction::Cordon]);
    d.cordoned();
    let a = d.next(&refs(&on_node), true, t(1));
    assert_eq!(
        evicts(&a),
        vec!["default/web-0", "default/web-1"],
        "DaemonSet and finished pods are skipped"
    );
    assert!(matches!(&a[0], DrainAction::Evict { uid, .. } if uid == "uid-default-web-0"));
    d.evicted("default/web-0", EvictionResult::Created, t(1));
    d.evicted("default/web-1", EvictionResult::Created, t(1));
    // Terminating: nothing to do but wait.
    assert!(d.next(&refs(&on_node), true, t(10)).is_empty());
    // Gone (the DaemonSet pod stays until the node goes): remove, machine first.
    let left = &on_node[2..];
    assert_eq!(d.next(&refs(left), true, t(20)), REMOVE.to_vec());
    d.removal_done(&DrainAction::DeleteMachine);
    assert_eq!(
        d.next(&refs(left), true, t(21)),
        REMOVE[1..].to_vec(),
        "resumes where it stopped"
    );
    d.removal_done(&DrainAction::DeleteNode);
    d.removal_done(&DrainAction::DeleteNodePassword);
    assert_eq!(d.outcome, Some(DrainOutcome::Removed));
    assert!(d.next(&[], false, t(22)).is_empty());
}

#[test]
fn pdb_refusals_are_retried_with_backoff_until_a_replacement_is_ready() {
    let mut d = Drain::start("w1", t(0), DrainConfig::default());
    let p = pods(1);
    d.next(&refs(&p), true, t(0));
    d.cordoned();
    assert_eq!(evicts(&d.next(&refs(&p), true, t(0))).len(), 1);
    d.evicted("default/web-0", EvictionResult::TooManyRequests, t(0));
    assert!(d.next(&refs(&p), true, t(4)).is_empty(), "backing off 5s");
    assert_eq!(evicts(&d.next(&refs(&p), true, t(5))).len(), 1);
    d.evicted("default/web-0", EvictionResult::TooManyRequests, t(5));
    // What the status page shows: the pod, its refusals, the deadline.
    let progress = d.progress();
    assert_eq!((progress.node.as_str(), progress.pods_left), ("w1", 1));
    assert_eq!(progress.deadline, d.eviction_deadline());
    assert_eq!(progress.refused.len(), 1);
    assert_eq!(
        (
            progress.refused[0].pod.as_str(),
            progress.refused[0].times,
            progress.refused[0].last.as_str()
        ),
        ("default/web-0", 2, "disruption budget")
    );
    assert!(d.next(&refs(&p), true, t(14)).is_empty(), "then 10s");
    assert_eq!(evicts(&d.next(&refs(&p), true, t(15))).len(), 1);
    // The replacement became ready elsewhere: the budget allows it now.
    d.evicted("default/web-0", EvictionResult::Created, t(15));
    assert_eq!(d.next(&[], true, t(20)), REMOVE.to_vec());
    assert_eq!(d.progress().pods_left, 0);
}

#[test]
fn a_budget_that_never_allows_ends_in_uncordon_not_force() {
    let mut d = Drain::start("w1", t(0), DrainConfig::default());
    let p = pods(1);
    d.next(&refs(&p), true, t(0));
    d.cordoned();
    let mut now = 0;
    while now < 120 {
        for a in d.next(&refs(&p), true, t(now)) {
            assert!(matches!(a, DrainAction::Evict { .. }), "{a:?}");
            d.evicted("default/web-0", EvictionResult::TooManyRequests, t(now));
        }
        now += 1;
    }
    assert_eq!(d.next(&refs(&p), true, t(120)), vec![DrainAction::Uncordon]);
    match &d.outcome {
        Some(DrainOutcome::GaveUp { why }) => {
            assert!(why.contains("default/web-0 (disruption budget)"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert!(d.next(&refs(&p), true, t(121)).is_empty());
}

#[test]
fn a_pod_that_never_terminates_gets_grace_plus_30s_then_uncordon() {
    let mut d = Drain::start("w1", t(0), DrainConfig::default());
    let mut p = pods(1);
    p[0].termination_grace = Duration::from_secs(60);
    d.next(&refs(&p), true, t(0));
    d.cordoned();
    d.next(&refs(&p), true, t(0));
    d.evicted("default/web-0", EvictionResult::Created, t(0));
    assert!(d.next(&refs(&p), true, t(89)).is_empty());
    assert_eq!(d.next(&refs(&p), true, t(90)), vec![DrainAction::Uncordon]);
    assert!(matches!(d.outcome, Some(DrainOutcome::GaveUp { ref why }) if why.contains("did not terminate")));
}

#[test]
fn gone_pods_and_uid_mismatches_count_as_evicted() {
    let mut d = Drain::start("w1", t(0), DrainConfig::default());
    let p = pods(2);
    d.next(&refs(&p), true, t(0));
    d.cordoned();
    d.next(&refs(&p), true, t(0));
    d.evicted("default/web-0", EvictionResult::Gone, t(0)); // 404
    d.evicted("default/web-1", EvictionResult::Created, t(0));
    // web-0 is still listed (stale cache) but with a new UID: a different pod, not ours to wait for.
    let mut replaced = p[0].clone();
    replaced.uid = "uid-new".into();
    let a = d.next(&[&replaced], true, t(1));
    assert_eq!(
        evicts(&a),
        vec!["default/web-0"],
        "the new pod on the cordoned node is evicted too"
    );
    assert!(matches!(&a[0], DrainAction::Evict { uid, .. } if uid == "uid-new"));
}

#[test]
fn node_deleted_behind_our_back_mid_drain_still_removes_the_machine() {
    let mut d = Drain::start("w1", t(0), DrainConfig::default());
    let p = pods(1);
    d.next(&refs(&p), true, t(0));
    d.cordoned();
    d.next(&refs(&p), true, t(0));
    assert_eq!(d.next(&refs(&p), false, t(3)), REMOVE.to_vec());
    // Before cordoning as well.
    let mut d = Drain::start("w2", t(0), DrainConfig::default());
    assert_eq!(d.next(&[], false, t(0)), REMOVE.to_vec());
}

#[test]
fn a_forced_drain_cordons_then_removes_without_evicting() {
    let mut d = Drain::forced("w1", t(0), DrainConfig::default());
    let p = pods(2);
    assert_eq!(d.next(&refs(&p), true, t(0)), vec![DrainAction::Cordon]);
    d.cordoned();
    // A journal written then read back keeps it forced.
    let mut d: Drain = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
    assert_eq!(d.next(&refs(&p), true, t(1)), REMOVE.to_vec());
    // A drain journaled before forced drains existed reads back unforced.
    let old = serde_json::to_value(Drain::start("w2", t(0), DrainConfig::default())).unwrap();
    assert!(old.get("forced").is_none());
    let mut plain: Drain = serde_json::from_value(old).unwrap();
    plain.cordoned();
    assert_eq!(evicts(&plain.next(&refs(&p), true, t(1))).len(), 2);
}

#[test]
fn a_long_terminating_pod_is_neither_evicted_nor_waited_for() {
    let mut d = Drain::start("w1", t(100), DrainConfig::default());
    let mut stuck = running("stuck", "w1", 100, 64 * MI);
    stuck.deleted_at = Some(t(0));
    let mut fresh = running("fresh", "w1", 100, 64 * MI);
    fresh.deleted_at = Some(t(90));
    d.next(&[&stuck, &fresh], true, t(100));
    d.cordoned();
    // Deleted 100 s ago with 30 s of grace: gone as far as a drain goes.
    assert_eq!(
        evicts(&d.next(&[&stuck, &fresh], true, t(100))),
        ["default/fresh"]
    );
    assert_eq!(d.next(&[&stuck], true, t(101)), REMOVE.to_vec());
}

#[test]
fn a_journaled_drain_resumes_after_a_restart() {
    let mut d = Drain::start("w1", t(0), DrainConfig::default());
    let p = pods(1);
    d.next(&refs(&p), true, t(0));
    d.cordoned();
    d.next(&refs(&p), true, t(0));
    d.evicted("default/web-0", EvictionResult::TooManyRequests, t(0));
    let journal = serde_json::to_string(&d).unwrap();
    let mut back: Drain = serde_json::from_str(&journal).unwrap();
    assert_eq!(back, d);
    assert!(
        back.next(&refs(&p), true, t(2)).is_empty(),
        "the backoff survived"
    );
    assert_eq!(back.eviction_deadline(), t(120));
}

#[derive(Debug, Clone)]
enum Answer {
    Created,
    Refused,
    Gone,
    Failed,
    PodTerminates(usize),
    NodeVanishes,
    Tick(u64),
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        Just(Answer::Created),
        Just(Answer::Refused),
        Just(Answer::Gone),
        Just(Answer::Failed),
        (0usize..4).prop_map(Answer::PodTerminates),
        Just(Answer::NodeVanishes),
        (1u64..40).prop_map(Answer::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn drains_are_safe_and_always_finish(answers in prop::collection::vec(answer(), 0..120)) {
        let config = DrainConfig::default();
        let mut d = Drain::start("w1", t(0), config.clone());
        let mut on_node = pods(4);
        let mut node = true;
        let mut now = 0u64;
        let mut answers = answers.into_iter();
        let mut evicted_any_after_deadline = false;
        for _ in 0..2000 {
            let decided_at = t(now);
            let actions = d.next(&refs(&on_node), node, decided_at);
            for a in &actions {
                match a {
                    DrainAction::Cordon => d.cordoned(),
                    DrainAction::Evict { namespace, name, .. } => {
                        // The machine never decides an eviction past the deadline (an executor's
                        // own latency within one batch is not its decision).
                        if decided_at >= d.eviction_deadline() { evicted_any_after_deadline = true; }
                        let key = format!("{namespace}/{name}");
                        let result = match answers.next() {
                            Some(Answer::Created) | None => EvictionResult::Created,
                            Some(Answer::Refused) => EvictionResult::TooManyRequests,
                            Some(Answer::Gone) => { on_node.retain(|p| p.key() != key); EvictionResult::Gone }
                            Some(Answer::Failed) => EvictionResult::Failed("boom".into()),
                            Some(Answer::PodTerminates(i)) => { if i < on_node.len() { on_node.remove(i); } EvictionResult::Created }
                            Some(Answer::NodeVanishes) => { node = false; EvictionResult::Created }
                            Some(Answer::Tick(s)) => { now += s; EvictionResult::TooManyRequests }
                        };
                        d.evicted(&key, result, t(now));
                    }
                    DrainAction::DeleteMachine | DrainAction::DeleteNode | DrainAction::DeleteNodePassword => {
                        // Removal only once no evictable pod is left, or the Node is gone.
                        prop_assert!(on_node.is_empty() || !node, "removing a node that still has pods");
                        d.removal_done(a);
                    }
                    DrainAction::Uncordon => {}
                }
            }
            if d.outcome.is_some() { break; }
            now += 1;
            // Evicted pods terminate eventually, most of the time.
            if now.is_multiple_of(7) && !on_node.is_empty() && answers.len().is_multiple_of(2) { on_node.remove(0); }
        }
        prop_assert!(!evicted_any_after_deadline, "evicted after the deadline");
        prop_assert!(d.outcome.is_some(), "a drain must finish (removed or given up)");
        // It never outlives the eviction deadline plus the longest grace period and slack by much.
        prop_assert!(now <= 120 + 30 + 30 + 40, "took {now}s");
    }
}
