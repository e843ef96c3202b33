//! The rules `decide` applies. Defaults are the SmartScale rules from DESIGN.md.

use crate::model::Pool;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expander {
    /// The pool whose new nodes leave the least CPU and memory unused.
    #[default]
    LeastWaste,
    /// The pool with the lowest price per placed pod.
    Price,
    /// The pool with the highest `priority`.
    Priority,
}

/// How unschedulable pods drive scale-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PendingPods {
    /// Bin-pack them onto pool templates and add exactly the nodes they need.
    /// In-flight nodes are counted, so this needs no cooldown.
    #[default]
    BinPack,
    /// Treat "any pod unschedulable" as one more threshold: add `max_step`
    /// nodes, subject to the cooldown (what cron-run scripts do).
    Threshold,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleUpRules {
    pub cpu_above: f64,
    pub cpu_for: Duration,
    pub memory_above: f64,
    pub memory_for: Duration,
    pub pending_grace: Duration,
    pub pending_pods: PendingPods,
    pub max_step: u32,
    pub cooldown: Duration,
    /// A pending pod the planner places on existing free capacity, but the
    /// scheduler still rejects after this long, is no longer counted there:
    /// the scheduler knows a constraint the planner does not.
    pub trust_scheduler_after: Duration,
}

impl Default for ScaleUpRules {
    fn default() -> Self {
        ScaleUpRules {
            cpu_above: 0.70,
            cpu_for: Duration::from_secs(180),
            memory_above: 0.75,
            memory_for: Duration::ZERO,
            pending_grace: Duration::ZERO,
            pending_pods: PendingPods::BinPack,
            max_step: 2,
            cooldown: Duration::from_secs(300),
            trust_scheduler_after: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleDownRules {
    pub enabled: bool,
    /// A node goes once it has been unneeded (its pods fit elsewhere, its
    /// requested share under the threshold) this long without a break.
    #[serde(serialize_with = "crate::time::serialize_secs")]
    pub unneeded_time: Duration,
    /// No scale-down this soon after a scale-up (unneeded time still runs).
    #[serde(serialize_with = "crate::time::serialize_secs")]
    pub delay_after_scale_up: Duration,
    /// The seed rules' cluster-wide gate: scale down only while cluster CPU
    /// (over `cpu_for`) and memory (over `memory_for`) are below these.
    /// Off, those signals hold back no node: each is judged on its own.
    pub cluster_gate: bool,
    pub cpu_below: f64,
    pub cpu_for: Duration,
    pub memory_below: f64,
    pub memory_for: Duration,
    /// Nodes drained (pods moved) per step.
    pub max_step: u32,
    /// Empty nodes (only DaemonSet / mirror pods) deleted per step: nothing
    /// moves, so, like cluster-autoscaler's bulk delete, several may go at once.
    /// A step removes at most `max(max_step, max_empty_step)` nodes in all.
    pub max_empty_step: u32,
    /// No scale-down this soon after the last one (unneeded time still runs).
    pub cooldown: Duration,
    /// A node is a candidate when its requested share of CPU and memory
    /// (the larger of the two) is below this.
    pub node_utilization_below: f64,
    /// Whether pods with local storage (emptyDir, hostPath) may be evicted.
    pub evict_local_storage: bool,
    /// cluster-autoscaler's `skip-nodes-with-system-pods`: a node running a
    /// `kube-system` pod without a PodDisruptionBudget stays. Off by
    /// default: K3s runs coredns, traefik and metrics-server there without
    /// budgets, so it would pin every node they land on.
    pub skip_nodes_with_system_pods: bool,
    /// Leave DaemonSet pods out of a node's requested share
    /// (cluster-autoscaler's `ignore-daemonsets-utilization`).
    pub ignore_daemonsets_utilization: bool,
    /// How long a drain may wait on evictions (PDBs answering 429) before
    /// it gives up and uncordons the node; a pool may override it.
    #[serde(serialize_with = "crate::time::serialize_secs")]
    pub drain_timeout: Duration,
    /// A node of a pool that was Ready and has not been for `unready_time`
    /// (its agent or machine died) is deleted without a drain: its pods
    /// cannot be evicted, and StatefulSet pods stuck on it come back only
    /// once the Node object is gone (cluster-autoscaler's
    /// `scale-down-unready-enabled` / `scale-down-unready-time`).
    pub unready_enabled: bool,
    #[serde(serialize_with = "crate::time::serialize_secs")]
    pub unready_time: Duration,
}

impl Default for ScaleDownRules {
    fn default() -> Self {
        ScaleDownRules {
            enabled: true,
            unneeded_time: Duration::from_secs(480),
            delay_after_scale_up: Duration::from_secs(300),
            cluster_gate: false,
            cpu_below: 0.30,
            cpu_for: Duration::from_secs(600),
            memory_below: 0.50,
            memory_for: Duration::ZERO,
            max_step: 1,
            max_empty_step: 10,
            cooldown: Duration::from_secs(120),
            node_utilization_below: 0.5,
            evict_local_storage: false,
            skip_nodes_with_system_pods: false,
            ignore_daemonsets_utilization: false,
            drain_timeout: Duration::from_secs(120),
            unready_enabled: true,
            unready_time: Duration::from_secs(1200),
        }
    }
}

/// A user-defined signal (e.g. requests per second) with its own thresholds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomRule {
    pub name: String,
    pub query: String,
    pub scale_up_above: Option<f64>,
    /// When set, scale-down also requires this signal below the value.
    pub scale_down_below: Option<f64>,
    pub window: Duration,
}

/// Cluster-wide bounds on what scale-ups may add (cluster-autoscaler's
/// `max-nodes-total`, `cores-total`, `memory-total`), counting every node,
/// managed or not, and the machines on their way.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClusterLimits {
    pub max_nodes: Option<u32>,
    pub max_cpu_milli: Option<u64>,
    pub max_memory_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub scale_up: ScaleUpRules,
    pub scale_down: ScaleDownRules,
    pub custom: Vec<CustomRule>,
    pub expander: Expander,
    pub dry_run: bool,
    /// A metric sample older than this is stale: the signal is unavailable.
    pub metrics_max_age: Duration,
    /// Pods with a priority below this are expendable (cluster-autoscaler's
    /// `expendable-pods-priority-cutoff`): pending, they trigger no
    /// scale-up; on a node, they do not have to fit elsewhere.
    pub expendable_pods_priority_cutoff: i32,
    /// Taint keys that mean "still starting" beyond the built-in ones
    /// ([`crate::model::STARTUP_TAINTS`]), e.g. a CNI's readiness taint.
    pub startup_taints: Vec<String>,
    /// Split a scale-up across pools that differ only in their zone
    /// (cluster-autoscaler's `balance-similar-node-groups`).
    pub balance_similar_pools: bool,
    pub limits: ClusterLimits,
    /// Launch ahead of the rise the daily and weekly pattern predicts.
    pub predictive: Option<Predictive>,
    /// Cluster-wide disruption budgets (pools have their own too).
    pub disruption: Vec<crate::disruption::Budget>,
    /// Replace several under-used nodes by fewer or cheaper ones.
    pub consolidation: Option<Consolidation>,
    pub pools: Vec<Pool>,
}

/// Multi-node consolidation: worth it from this saving on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Consolidation {
    /// Dollars per hour a replacement must save.
    pub min_saving_per_hour: f64,
}

/// Predictive pre-scaling: room for the rise expected within a boot time
/// (from the same minutes one day and one week ago) is kept ready, as
/// placeholder pods shaped like the workload's average pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Predictive {
    /// At most this many nodes' worth of room is kept for a forecast: the
    /// cap on what a wrong one costs.
    pub max_extra_nodes: u32,
}

impl Policy {
    pub fn new(pools: Vec<Pool>) -> Self {
        Policy {
            scale_up: ScaleUpRules::default(),
            scale_down: ScaleDownRules::default(),
            custom: Vec::new(),
            expander: Expander::default(),
            dry_run: false,
            metrics_max_age: Duration::from_secs(60),
            expendable_pods_priority_cutoff: -10,
            startup_taints: Vec::new(),
            balance_similar_pools: false,
            limits: ClusterLimits::default(),
            predictive: None,
            disruption: Vec::new(),
            consolidation: None,
            pools,
        }
    }

    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// The requested share under which a node of `pool` is a scale-down
    /// candidate: the pool's override, else the policy's.
    pub fn utilization_below(&self, pool: &str) -> f64 {
        self.pool(pool)
            .and_then(|p| p.scale_down_utilization_below)
            .unwrap_or(self.scale_down.node_utilization_below)
    }

    /// The drain deadline for a node of `pool`: its override, else the policy's.
    pub fn drain_timeout(&self, pool: &str) -> Duration {
        self.pool(pool)
            .and_then(|p| p.drain_timeout)
            .unwrap_or(self.scale_down.drain_timeout)
    }
}
