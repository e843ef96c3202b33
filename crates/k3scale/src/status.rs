//! What `/api/status`, the status page and `k3scale status` / `explain`
//! show: pools, nodes (and why each stays), machines on the way, the last
//! decision with its reasons, and the cooldowns left.

use k3scale_core::decision::Direction;
use k3scale_core::{Decision, InFlight, Policy, Reason, Snapshot, Time};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub identity: String,
    pub leader: bool,
    /// Who holds the leader Lease (this replica or another), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_holder: Option<String>,
    /// Why the last Lease round failed (RBAC, a missing namespace...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_error: Option<String>,
    pub dry_run: bool,
    /// Unix milliseconds.
    pub last_reconcile: Option<u64>,
    pub last_error: Option<String>,
    pub pools: Vec<PoolStatus>,
    pub nodes: Vec<NodeStatus>,
    pub in_flight: Vec<InFlightStatus>,
    /// Nodes being drained now.
    pub draining: Vec<String>,
    /// The last decision's reasons, as text.
    pub reasons: Vec<String>,
    /// The last decision itself (structured reasons).
    pub decision: Option<serde_json::Value>,
    pub cooldown_up_s: u64,
    pub cooldown_down_s: u64,
    pub metrics_error: Option<String>,
    pub unschedulable_pods: usize,
    /// The latest cluster CPU utilization (0..1), when metrics gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_cpu: Option<f64>,
    /// Today's spend and the fixed fleet it is compared with (`/metrics`
    /// has the same numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub today: Option<crate::samples::Today>,
}

/// A point in time as people read it: RFC 3339, UTC, whole seconds.
pub fn timestamp(t: Time) -> String {
    let secs = i64::try_from(t.as_millis() / 1000).unwrap_or(i64::MAX);
    jiff::Timestamp::from_second(secs).map_or_else(|_| format!("{secs}s"), |ts| ts.to_string())
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolStatus {
    pub name: String,
    pub min: u32,
    pub max: u32,
    pub nodes: u32,
    pub launching: u32,
    pub price_per_hour: f64,
    /// Unix milliseconds until which the pool launches nothing.
    pub backoff_until: Option<u64>,
    /// Why it launches nothing (`failed`: until reset or reconfigured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<k3scale_core::lifecycle::HoldCause>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub pool: Option<String>,
    pub ready: bool,
    /// The startup taint it still carries: a launch not yet complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting: Option<String>,
    pub cordoned: bool,
    /// Requested share of the larger of CPU and memory.
    pub requested: f64,
    pub pods: usize,
    /// Why the last decision kept it, in full (empty if removable).
    pub kept_because: Vec<String>,
    /// The same in one short phrase.
    #[serde(default)]
    pub why: String,
    /// `expired` or `drifted`: due to be replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<String>,
    /// Seconds until its pool's `expire_after` makes it expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<u64>,
    pub removable: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InFlightStatus {
    pub pool: String,
    pub name: String,
    pub launched_at: u64,
    /// Its pool's provision timeout: a launch not registered by then is
    /// given up on.
    #[serde(default)]
    pub timeout_s: u64,
}

impl InFlightStatus {
    fn of(f: &InFlight, policy: &Policy) -> Self {
        InFlightStatus {
            pool: f.pool.clone(),
            name: f.name.clone(),
            launched_at: f.launched_at.as_millis(),
            timeout_s: policy.pool(&f.pool).map_or(0, |p| {
                k3scale_core::lifecycle::LifecycleConfig::for_pool(p)
                    .provision_timeout
                    .as_secs()
            }),
        }
    }
}

/// What holds every node when the decision did not look at nodes one by
/// one (or held those it found unneeded): the first decision-wide reason.
fn held_by(decision: &Decision, policy: &Policy) -> Option<String> {
    if !policy.scale_down.enabled {
        return Some("scale-down is disabled".into());
    }
    decision.reasons.iter().find_map(|r| match r {
        Reason::ScaleDownBlockedByPending { pods } => {
            Some(format!("scale-down waits: {pods} pods unschedulable"))
        }
        Reason::NodesInFlight { nodes } => Some(format!("scale-down waits: {nodes} nodes launching")),
        Reason::Cooldown {
            direction: Direction::Down,
            remaining,
        } => Some(format!("scale-down cooldown: {} s left", remaining.as_secs())),
        Reason::DelayAfterScaleUp { remaining } => Some(format!(
            "just scaled up: {} s before any removal",
            remaining.as_secs()
        )),
        Reason::NotBelow {
            signal,
            observed,
            threshold,
            ..
        } => Some(format!(
            "cluster {signal} {:.0}% not below {:.0}%",
            observed * 100.0,
            threshold * 100.0
        )),
        Reason::MetricsUnavailable {
            signal,
            direction: Some(Direction::Down) | None,
            ..
        } => Some(format!("no {signal} metrics to judge scale-down")),
        _ => None,
    })
}

/// The short phrase for a node, from its own reasons and the decision's.
fn phrase(node: &NodeStatus, own: &[String], unneeded_in: Option<u64>, held: Option<&str>) -> String {
    if node.removable {
        return "removable now".into();
    }
    if node.pool.is_none() {
        return "not in a pool k3scale manages".into();
    }
    if node.cordoned {
        return "cordoned: leaving".into();
    }
    if node.starting.is_some() || !node.ready {
        return "not ready yet".into();
    }
    match (unneeded_in, own.first(), held) {
        (Some(0), _, Some(held)) => format!("unneeded; {held}"),
        (Some(0), _, None) => "unneeded; goes when the step limit allows".into(),
        (Some(s), _, _) => format!("unneeded: goes in {s} s if still so"),
        // The blocker without its parenthesis (the full text is in `kept_because`).
        (None, Some(first), _) => first.split(" (").next().unwrap_or(first).to_string(),
        (None, None, Some(held)) => held.to_string(),
        (None, None, None) => "needed".into(),
    }
}

fn remaining(last: Option<Time>, cooldown: std::time::Duration, now: Time) -> u64 {
    last.map_or(0, |t| cooldown.saturating_sub(now.since(t)).as_secs())
}

impl Status {
    pub fn build(snapshot: &Snapshot, decision: &Decision, policy: &Policy, now: Time) -> Status {
        let mut kept: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut unneeded_in: BTreeMap<&str, u64> = BTreeMap::new();
        let mut budget_held: BTreeMap<&str, String> = BTreeMap::new();
        let mut removable: Vec<&str> = Vec::new();
        for reason in &decision.reasons {
            match reason {
                Reason::NotRemovable { node, blocker } => {
                    kept.entry(node).or_default().push(blocker.to_string())
                }
                Reason::Removable { node, .. } => removable.push(node),
                Reason::Replacing { node, why, step, .. } => {
                    budget_held.insert(node, format!("{why}: {step}"));
                }
                Reason::ReplaceHeld {
                    node, why, blocker, ..
                } => {
                    let text = format!("{why}, not replaced now: {blocker}");
                    budget_held.insert(node, text.clone());
                    kept.entry(node).or_default().push(text);
                }
                Reason::Unneeded {
                    node,
                    held_by: Some(budget),
                    ..
                } => {
                    // Ripe, held only by the budget: the phrase names it.
                    let text = format!("unneeded: held by disruption budget {budget}");
                    budget_held.insert(node, text.clone());
                    kept.entry(node).or_default().push(text);
                }
                Reason::Unready {
                    node,
                    since,
                    after,
                    held,
                    ..
                } => {
                    let down = format!("not Ready for {}s", since.as_secs());
                    let text = match held {
                        Some(held) => format!("{down}; kept, {held}"),
                        None if since >= after => format!("{down}; deleted without a drain"),
                        None => format!("{down}; deleted at {}s if still so", after.as_secs()),
                    };
                    budget_held.insert(node, text);
                }
                Reason::Unneeded { node, remaining, .. } => {
                    unneeded_in.insert(node, remaining.as_secs());
                    kept.entry(node).or_default().push(if remaining.is_zero() {
                        "unneeded: goes when a delay or the step limit allows".to_string()
                    } else {
                        format!("unneeded: goes in {}s if still so", remaining.as_secs())
                    })
                }
                _ => {}
            }
        }
        let free = k3scale_core::scheduling::free_capacity(&snapshot.nodes, &snapshot.pods);
        let mut pods_on: BTreeMap<&str, usize> = BTreeMap::new();
        for node in snapshot.pods.iter().filter_map(|p| p.node_name.as_deref()) {
            *pods_on.entry(node).or_default() += 1;
        }
        let held = held_by(decision, policy);
        let nodes: Vec<NodeStatus> = snapshot
            .nodes
            .iter()
            .zip(free)
            .map(|(n, free)| {
                let used = n.allocatable.saturating_sub(&free);
                let mut status = NodeStatus {
                    name: n.name.clone(),
                    pool: n.pool.clone(),
                    ready: n.ready,
                    starting: n.starting.clone(),
                    cordoned: n.cordoned,
                    requested: used.dominant_share(&n.allocatable),
                    pods: pods_on.get(n.name.as_str()).copied().unwrap_or(0),
                    kept_because: kept.remove(n.name.as_str()).unwrap_or_default(),
                    why: String::new(),
                    replace: n
                        .pool
                        .as_deref()
                        .and_then(|p| policy.pool(p))
                        .and_then(|p| k3scale_core::replacement_due(n, p, now))
                        .map(|r| r.to_string()),
                    expires_in_s: n
                        .pool
                        .as_deref()
                        .and_then(|p| policy.pool(p)?.expire_after)
                        .map(|e| e.saturating_sub(now.since(n.created_at)).as_secs()),
                    removable: removable.contains(&n.name.as_str()),
                };
                let unneeded = unneeded_in.get(n.name.as_str()).copied();
                status.why = match budget_held.remove(n.name.as_str()) {
                    Some(text) => text,
                    None => phrase(&status, &status.kept_because, unneeded, held.as_deref()),
                };
                if status.kept_because.is_empty() && !status.removable && status.why != "needed" {
                    status.kept_because.push(status.why.clone());
                }
                status
            })
            .collect();
        let pools = policy
            .pools
            .iter()
            .map(|p| PoolStatus {
                name: p.name.clone(),
                min: p.min,
                max: p.max,
                nodes: nodes
                    .iter()
                    .filter(|n| n.pool.as_deref() == Some(p.name.as_str()))
                    .count() as u32,
                launching: snapshot.in_flight.iter().filter(|f| f.pool == p.name).count() as u32,
                price_per_hour: p.template.price_per_hour,
                backoff_until: snapshot.backoff.get(&p.name).map(|h| h.until.as_millis()),
                held: snapshot.backoff.get(&p.name).map(|h| h.cause),
            })
            .collect();
        Status {
            dry_run: decision.dry_run,
            last_reconcile: Some(now.as_millis()),
            pools,
            nodes,
            in_flight: snapshot
                .in_flight
                .iter()
                .map(|f| InFlightStatus::of(f, policy))
                .collect(),
            reasons: decision.reasons.iter().map(ToString::to_string).collect(),
            decision: serde_json::to_value(decision).ok(),
            cooldown_up_s: remaining(snapshot.last_scale_up, policy.scale_up.cooldown, now),
            cooldown_down_s: remaining(snapshot.last_scale_down, policy.scale_down.cooldown, now),
            metrics_error: snapshot.metrics_error.clone(),
            unschedulable_pods: snapshot
                .pods
                .iter()
                .filter(|p| p.unschedulable_since.is_some())
                .count(),
            cluster_cpu: snapshot.cpu.samples.last().and_then(|s| s.value),
            ..Status::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k3scale_core::testkit::{default_policy, node_of, running, snapshot, workers};

    #[test]
    fn an_idle_node_says_how_long_until_it_goes() {
        let w = workers();
        let nodes = (0..3).map(|i| node_of(&w, &format!("w{i}"))).collect();
        let now = Time::from_secs(10_000);
        let snap = snapshot(nodes, vec![running("a", "w0", 1500, 1 << 30)], 0.5, 0.4, now);
        let policy = default_policy();
        let decision = k3scale_core::decide(&snap, &policy, now);
        let status = Status::build(&snap, &decision, &policy, now);
        let idle = status.nodes.iter().find(|n| n.name == "w1").unwrap();
        let wait = policy.scale_down.unneeded_time.as_secs();
        assert_eq!(
            idle.kept_because,
            [format!("unneeded: goes in {wait}s if still so")]
        );
        assert!(!idle.removable);
    }
}

#[cfg(test)]
mod why_tests {
    use super::*;
    use k3scale_core::testkit::{default_policy, node_of, running, snapshot, workers};

    fn why(policy: &Policy, last_scale_down: Option<Time>, pending: bool) -> Vec<(String, String)> {
        let w = workers();
        let nodes = (0..4).map(|i| node_of(&w, &format!("w{i}"))).collect();
        let now = Time::from_secs(10_000);
        let mut pods = vec![running("a", "w0", 1500, 1 << 30)];
        if pending {
            let mut p = running("big", "w0", 64_000, 1 << 30);
            p.node_name = None;
            p.phase = k3scale_core::PodPhase::Pending;
            p.unschedulable_since = Some(Time::from_secs(9_000));
            pods.push(p);
        }
        let mut snap = snapshot(nodes, pods, 0.5, 0.4, now);
        snap.last_scale_down = last_scale_down;
        snap.unneeded_since = ["w1", "w2", "w3"].map(|n| (n.to_string(), Time::ZERO)).into();
        let decision = k3scale_core::decide(&snap, policy, now);
        Status::build(&snap, &decision, policy, now)
            .nodes
            .into_iter()
            .map(|n| (n.name, n.why))
            .collect()
    }

    #[test]
    fn a_node_not_ready_says_when_it_is_deleted() {
        let w = workers();
        let mut nodes: Vec<_> = (0..3).map(|i| node_of(&w, &format!("w{i}"))).collect();
        let now = Time::from_secs(10_000);
        nodes[2].ready = false;
        nodes[2].not_ready_since = Some(Time::from_secs(9_400));
        let policy = default_policy();
        let snap = snapshot(nodes, Vec::new(), 0.5, 0.4, now);
        let decision = k3scale_core::decide(&snap, &policy, now);
        let status = Status::build(&snap, &decision, &policy, now);
        assert_eq!(
            status.nodes[2].why,
            "not Ready for 600s; deleted at 1200s if still so"
        );
    }

    #[test]
    fn each_node_says_in_a_phrase_what_keeps_it() {
        let mut policy = default_policy();
        policy.scale_down.max_step = 1;
        policy.scale_down.max_empty_step = 1;
        // Long unneeded, one goes; the other waits for the step limit.
        let free = why(&policy, None, false);
        assert!(free.iter().any(|(_, w)| w == "removable now"), "{free:?}");
        assert!(
            free.iter()
                .any(|(_, w)| w == "unneeded; goes when the step limit allows"),
            "{free:?}"
        );
        assert!(
            free.iter()
                .any(|(n, w)| n == "w0" && w.starts_with("requests use")),
            "{free:?}"
        );
        // In the scale-down cooldown: both empty nodes say so.
        let held = why(&policy, Some(Time::from_secs(9_990)), false);
        let cooldown = held
            .iter()
            .filter(|(_, w)| w.starts_with("unneeded; scale-down cooldown: "))
            .count();
        assert_eq!(cooldown, 2, "{held:?}");
        // Pods waiting: nothing is looked at, every node says why.
        let waiting = why(&policy, None, true);
        assert!(
            waiting
                .iter()
                .all(|(_, w)| w == "scale-down waits: 1 pods unschedulable"),
            "{waiting:?}"
        );
        // Scale-down off.
        policy.scale_down.enabled = false;
        let off = why(&policy, None, false);
        assert!(off.iter().all(|(_, w)| w == "scale-down is disabled"), "{off:?}");
    }
}

#[cfg(test)]
mod expiry_tests {
    use super::*;
    use k3scale_core::testkit::{default_policy, node_of, snapshot, workers};

    #[test]
    fn a_node_says_when_it_expires_and_once_expired_that_it_is() {
        const DAY: u64 = 86_400;
        let mut policy = default_policy();
        policy.pools[0].expire_after = Some(std::time::Duration::from_secs(30 * DAY));
        let now = Time::from_secs(100 * DAY);
        let mut young = node_of(&workers(), "young");
        young.created_at = Time::from_secs(71 * DAY);
        let mut old = node_of(&workers(), "old");
        old.created_at = Time::from_secs(60 * DAY);
        let snap = snapshot(vec![young, old], vec![], 0.5, 0.4, now);
        let decision = k3scale_core::decide(&snap, &policy, now);
        let status = Status::build(&snap, &decision, &policy, now);
        let young = status.nodes.iter().find(|n| n.name == "young").unwrap();
        assert_eq!((young.expires_in_s, young.replace.as_deref()), (Some(DAY), None));
        let old = status.nodes.iter().find(|n| n.name == "old").unwrap();
        assert_eq!(
            (old.expires_in_s, old.replace.as_deref()),
            (Some(0), Some("expired"))
        );
    }
}
