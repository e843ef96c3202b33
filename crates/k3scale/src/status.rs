//! What `/api/status`, the status page and `k3scale status` / `explain`
//! show: pools, nodes (and why each stays), machines on the way, the last
//! decision with its reasons, and the cooldowns left.

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
    /// Why the last decision kept it (empty if it was not considered or is removable).
    pub kept_because: Vec<String>,
    pub removable: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InFlightStatus {
    pub pool: String,
    pub name: String,
    pub launched_at: u64,
}

impl From<&InFlight> for InFlightStatus {
    fn from(f: &InFlight) -> Self {
        InFlightStatus {
            pool: f.pool.clone(),
            name: f.name.clone(),
            launched_at: f.launched_at.as_millis(),
        }
    }
}

fn remaining(last: Option<Time>, cooldown: std::time::Duration, now: Time) -> u64 {
    last.map_or(0, |t| cooldown.saturating_sub(now.since(t)).as_secs())
}

impl Status {
    pub fn build(snapshot: &Snapshot, decision: &Decision, policy: &Policy, now: Time) -> Status {
        let mut kept: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut removable: Vec<&str> = Vec::new();
        for reason in &decision.reasons {
            match reason {
                Reason::NotRemovable { node, blocker } => {
                    kept.entry(node).or_default().push(blocker.to_string())
                }
                Reason::Removable { node, .. } => removable.push(node),
                Reason::Unneeded { node, remaining, .. } => {
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
        let nodes: Vec<NodeStatus> = snapshot
            .nodes
            .iter()
            .zip(free)
            .map(|(n, free)| {
                let used = n.allocatable.saturating_sub(&free);
                NodeStatus {
                    name: n.name.clone(),
                    pool: n.pool.clone(),
                    ready: n.ready,
                    starting: n.starting.clone(),
                    cordoned: n.cordoned,
                    requested: used.dominant_share(&n.allocatable),
                    pods: pods_on.get(n.name.as_str()).copied().unwrap_or(0),
                    kept_because: kept.remove(n.name.as_str()).unwrap_or_default(),
                    removable: removable.contains(&n.name.as_str()),
                }
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
            in_flight: snapshot.in_flight.iter().map(InFlightStatus::from).collect(),
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
