//! Builders for tests, benchmarks and the simulator's fixtures: readable
//! clusters in a few lines.

use crate::model::{Labels, Node, NodeTemplate, POOL_LABEL, Pod, PodPhase, Pool};
use crate::policy::Policy;
use crate::quantity::Resources;
use crate::snapshot::{Series, Snapshot};
use crate::time::Time;
use std::time::Duration;

pub const GI: u64 = 1 << 30;
pub const MI: u64 = 1 << 20;

/// A pool of `cpu_milli` / `mem` nodes, labelled with its name.
pub fn pool(name: &str, min: u32, max: u32, cpu_milli: u64, memory_bytes: u64, price: f64) -> Pool {
    let mut labels = Labels::new();
    labels.insert(POOL_LABEL.to_string(), name.to_string());
    Pool {
        name: name.to_string(),
        min,
        max,
        template: NodeTemplate {
            allocatable: Resources::new(cpu_milli, memory_bytes, 110),
            extended: Default::default(),
            labels,
            taints: Vec::new(),
            price_per_hour: price,
            boot_time: Duration::from_secs(45),
        },
        priority: 0,
        provider: "docker".to_string(),
        drain_timeout: None,
        scale_down_utilization_below: None,
        provision_timeout: Duration::from_secs(600),
        join_timeout: Duration::from_secs(300),
        disruption: Vec::new(),
        expire_after: None,
        settings_hash: String::new(),
        headroom: None,
    }
}

/// The DESIGN.md default pool: 2 CPU / 4 GiB workers, 2..10.
pub fn workers() -> Pool {
    pool("workers", 2, 10, 2000, 4 * GI, 0.0416)
}

/// A Ready node built from its pool's template.
pub fn node_of(pool: &Pool, name: &str) -> Node {
    let mut n = Node::new(name, Some(&pool.name), pool.template.allocatable, Time::ZERO);
    n.extended = pool.template.extended.clone();
    n.labels = pool.template.labels.clone();
    n.taints = pool.template.taints.clone();
    n
}

pub fn running(name: &str, node: &str, cpu_milli: u64, memory_bytes: u64) -> Pod {
    let mut p = Pod::new("default", name, Resources::pod(cpu_milli, memory_bytes));
    p.node_name = Some(node.to_string());
    p
}

pub fn pending(name: &str, cpu_milli: u64, memory_bytes: u64, since: Time) -> Pod {
    let mut p = Pod::new("default", name, Resources::pod(cpu_milli, memory_bytes));
    p.phase = PodPhase::Pending;
    p.unschedulable_since = Some(since);
    p
}

/// A series with one sample every 15 s from `from` to `to` (inclusive).
pub fn steady_series(value: f64, from: Time, to: Time) -> Series {
    let mut s = Series::default();
    let mut t = from;
    while t <= to {
        s.push(t, Some(value));
        t = t + Duration::from_secs(15);
    }
    s
}

/// A snapshot with steady cpu/memory over the last 15 minutes before `now`.
pub fn snapshot(nodes: Vec<Node>, pods: Vec<Pod>, cpu: f64, memory: f64, now: Time) -> Snapshot {
    let from = now.saturating_sub(Duration::from_secs(900));
    Snapshot {
        nodes,
        pods,
        cpu: steady_series(cpu, from, now),
        memory: steady_series(memory, from, now),
        ..Snapshot::default()
    }
}

pub fn default_policy() -> Policy {
    Policy::new(vec![workers()])
}

/// The seed rules as DESIGN.md first wrote them: scale-down behind the
/// cluster-wide CPU/memory gate, a node removed the moment it is unneeded.
/// The planner's per-node checks are the same as under the defaults.
pub fn seed_policy() -> Policy {
    seed_rules(Policy::new(vec![workers()]))
}

/// `policy` with the seed rules' scale-down: the gate, a 10-minute
/// cooldown, no unneeded time.
pub fn seed_rules(mut policy: Policy) -> Policy {
    policy.scale_down.cluster_gate = true;
    policy.scale_down.cooldown = std::time::Duration::from_secs(600);
    policy.scale_down.unneeded_time = std::time::Duration::ZERO;
    policy.scale_down.delay_after_scale_up = std::time::Duration::ZERO;
    policy
}

/// Every reason of `d`, one per line: what a failing assertion shows.
pub fn reasons_text(d: &crate::Decision) -> String {
    d.reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A disruption budget of `nodes`, for `reasons` (all if empty), in `window` (always if none).
pub fn budget(
    name: &str,
    nodes: crate::disruption::Amount,
    reasons: &[crate::disruption::DisruptionReason],
    window: Option<crate::disruption::Window>,
) -> crate::disruption::Budget {
    crate::disruption::Budget {
        name: name.into(),
        nodes,
        reasons: reasons.to_vec(),
        window,
    }
}
