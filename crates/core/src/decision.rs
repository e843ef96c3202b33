//! What `decide` returns: actions plus the reasons behind every yes and no.

use crate::time::{Time, serialize_secs};
use serde::Serialize;
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleUp {
    pub pool: String,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleDown {
    pub node: String,
    pub pool: String,
    /// Only DaemonSet / mirror pods on it: delete without draining anything.
    pub empty: bool,
    /// Delete it without evicting its pods: a node not Ready for long,
    /// whose pods cannot be evicted (no kubelet answers).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Up,
    Down,
}

/// Why a node cannot be removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "blocker", rename_all = "snake_case")]
pub enum Blocker {
    NodeDoNotDisrupt,
    /// cluster-autoscaler's `scale-down-disabled=true` on the node.
    NodeScaleDownDisabled,
    /// A `kube-system` pod without a PodDisruptionBudget, with
    /// `skip_nodes_with_system_pods` on.
    SystemPod {
        pod: String,
    },
    UtilizationTooHigh {
        utilization: f64,
        threshold: f64,
    },
    PoolAtMin {
        pool: String,
        min: u32,
    },
    DoNotDisrupt {
        pod: String,
    },
    SafeToEvictFalse {
        pod: String,
    },
    NoController {
        pod: String,
    },
    LocalStorage {
        pod: String,
    },
    /// The budget allows no disruption now; the node holds `needed` of its pods.
    PdbExhausted {
        pod: String,
        pdb: String,
        needed: u32,
    },
    PodsDoNotFit {
        pod: String,
    },
}

impl Blocker {
    /// What the blocker is about, without its changing numbers: two
    /// decisions that refuse a node for the same reason give the same key
    /// (so an Event is not re-sent because a utilization moved by 1 %).
    pub fn key(&self) -> String {
        match self {
            Blocker::NodeDoNotDisrupt => "node-do-not-disrupt".into(),
            Blocker::NodeScaleDownDisabled => "node-scale-down-disabled".into(),
            Blocker::SystemPod { pod } => format!("system-pod:{pod}"),
            Blocker::UtilizationTooHigh { .. } => "utilization-too-high".into(),
            Blocker::PoolAtMin { pool, .. } => format!("pool-at-min:{pool}"),
            Blocker::DoNotDisrupt { pod } => format!("do-not-disrupt:{pod}"),
            Blocker::SafeToEvictFalse { pod } => format!("safe-to-evict-false:{pod}"),
            Blocker::NoController { pod } => format!("no-controller:{pod}"),
            Blocker::LocalStorage { pod } => format!("local-storage:{pod}"),
            Blocker::PdbExhausted { pdb, .. } => format!("pdb-exhausted:{pdb}"),
            Blocker::PodsDoNotFit { pod } => format!("pods-do-not-fit:{pod}"),
        }
    }
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::NodeDoNotDisrupt => {
                write!(f, "node is annotated k3scale.io/do-not-disrupt=true")
            }
            Blocker::NodeScaleDownDisabled => {
                write!(
                    f,
                    "node is annotated cluster-autoscaler.kubernetes.io/scale-down-disabled=true"
                )
            }
            Blocker::SystemPod { pod } => write!(
                f,
                "pod {pod} runs in kube-system without a PodDisruptionBudget (scale_down.skip_nodes_with_system_pods)"
            ),
            Blocker::UtilizationTooHigh {
                utilization,
                threshold,
            } => write!(
                f,
                "requests use {:.0}% of the node (candidates are below {:.0}%)",
                utilization * 100.0,
                threshold * 100.0
            ),
            Blocker::PoolAtMin { pool, min } => write!(f, "pool {pool} is at its minimum of {min}"),
            Blocker::DoNotDisrupt { pod } => {
                write!(f, "pod {pod} is k3scale.io/do-not-disrupt=true")
            }
            Blocker::SafeToEvictFalse { pod } => write!(f, "pod {pod} is safe-to-evict=false"),
            Blocker::NoController { pod } => {
                write!(f, "pod {pod} has no controller to recreate it")
            }
            Blocker::LocalStorage { pod } => write!(f, "pod {pod} uses local storage"),
            Blocker::PdbExhausted { pod, pdb, needed } => write!(
                f,
                "pod {pod}: PodDisruptionBudget {pdb} allows no disruption now (the node holds {needed} of its pods)"
            ),
            Blocker::PodsDoNotFit { pod } => write!(f, "pod {pod} does not fit on any other node"),
        }
    }
}

/// One rule's verdict, with the numbers it used.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Reason {
    /// A sustained-window threshold was crossed (`signal` is cpu, memory or a custom name).
    Above {
        signal: String,
        observed: f64,
        threshold: f64,
        #[serde(serialize_with = "serialize_secs")]
        window: Duration,
    },
    /// A scale-down condition does not hold.
    NotBelow {
        signal: String,
        observed: f64,
        threshold: f64,
        #[serde(serialize_with = "serialize_secs")]
        window: Duration,
    },
    MetricsUnavailable {
        signal: String,
        cause: String,
        /// The window the rule needed.
        #[serde(serialize_with = "serialize_secs")]
        window: Duration,
        /// The rules left out: scale-up, scale-down, or (`None`) both.
        direction: Option<Direction>,
    },
    UnschedulablePods {
        pods: usize,
        fit_existing: usize,
        fit_in_flight: usize,
        need_new_nodes: usize,
    },
    /// Unschedulable pods below the expendable priority cutoff: they trigger nothing.
    ExpendablePending {
        pods: usize,
        cutoff: i32,
    },
    /// Unschedulable pods the scheduler has nominated a node for: it is
    /// preempting lower-priority pods there, no new node is needed.
    AwaitingPreemption {
        pods: usize,
        examples: Vec<String>,
    },
    /// Pods the planner places on existing free capacity but the scheduler
    /// has kept rejecting for `after`: a constraint k3scale does not model.
    SchedulerDisagrees {
        pods: usize,
        #[serde(serialize_with = "serialize_secs")]
        after: Duration,
        examples: Vec<String>,
    },
    PendingWithinGrace {
        pods: usize,
        #[serde(serialize_with = "serialize_secs")]
        grace: Duration,
    },
    BinPacked {
        pool: String,
        nodes: u32,
        pods: usize,
    },
    /// `balance_similar_pools`: the nodes one pool's estimate needs, spread
    /// over it and the pools alike but for their zone.
    Balanced {
        nodes: Vec<(String, u32)>,
    },
    PodsCannotFit {
        count: usize,
        examples: Vec<String>,
        why: Vec<String>,
    },
    BelowMin {
        pool: String,
        current: u32,
        min: u32,
    },
    AtMaxCapacity {
        pool: String,
        max: u32,
        wanted: u32,
    },
    Cooldown {
        direction: Direction,
        #[serde(serialize_with = "serialize_secs")]
        remaining: Duration,
    },
    NodesInFlight {
        nodes: usize,
    },
    PoolBackedOff {
        pool: String,
        #[serde(serialize_with = "serialize_secs")]
        remaining: Duration,
        cause: crate::lifecycle::HoldCause,
        /// What the provider said, when a launch failed.
        #[serde(skip_serializing_if = "String::is_empty")]
        why: String,
    },
    ScaleDownBlockedByPending {
        pods: usize,
    },
    Removable {
        node: String,
        pool: String,
        utilization: f64,
        empty: bool,
    },
    NotRemovable {
        node: String,
        #[serde(flatten)]
        blocker: Blocker,
    },
    /// Removable, but not yet: unneeded for less than `unneeded_time`
    /// (`remaining` left), or waiting on a delay or the step's limit.
    Unneeded {
        node: String,
        pool: String,
        utilization: f64,
        empty: bool,
        #[serde(serialize_with = "serialize_secs")]
        remaining: Duration,
        /// The disruption budget that holds it now, if one does.
        #[serde(skip_serializing_if = "Option::is_none")]
        held_by: Option<String>,
    },
    /// A pool keeps room for `pods` pods of these requests; `waiting` of
    /// them have none yet (a node is on its way or about to be).
    Headroom {
        pool: String,
        pods: u32,
        cpu_milli: u64,
        memory_bytes: u64,
        waiting: u32,
    },
    /// `policy.predictive`: requests expected to rise this much within a
    /// boot time, kept ready as `pods` placeholders (`waiting` without room).
    Forecast {
        cpu_milli: u64,
        memory_bytes: u64,
        pods: u32,
        waiting: u32,
    },
    /// A disruption budget allows no more voluntary removals now in
    /// `scope` (a pool, or `cluster`): `held` unneeded nodes wait.
    DisruptionBudget {
        scope: String,
        budget: String,
        allowed: u32,
        disrupting: u32,
        held: u32,
    },
    /// An expired or drifted node is being replaced; `step` says where.
    Replacing {
        node: String,
        pool: String,
        why: crate::disruption::DisruptionReason,
        #[serde(serialize_with = "serialize_secs")]
        age: Duration,
        step: String,
    },
    /// An expired or drifted node that cannot be replaced now, and why.
    ReplaceHeld {
        node: String,
        pool: String,
        why: crate::disruption::DisruptionReason,
        blocker: String,
    },
    /// `nodes` are replaced by `new_nodes` of `pool`, saving that much.
    Consolidating {
        nodes: Vec<String>,
        pool: String,
        new_nodes: u32,
        saving_per_hour: f64,
    },
    /// A consolidated node drained: the new nodes of `pool` have joined.
    ConsolidationDrain {
        node: String,
        pool: String,
    },
    /// A consolidation worth doing that is not done now.
    ConsolidationHeld {
        nodes: Vec<String>,
        saving_per_hour: f64,
        blocker: String,
    },
    /// No scale-down this soon after a scale-up.
    DelayAfterScaleUp {
        #[serde(serialize_with = "serialize_secs")]
        remaining: Duration,
    },
    NoCandidates,
    /// A cluster-wide limit (`limits.max_nodes`, `max_cpu`, `max_memory`) stops scale-up.
    ClusterLimit {
        limit: String,
        value: String,
    },
    /// Metrics are unavailable: scale-down removes only nodes whose pods fit
    /// elsewhere by their requests (empty ones first), as cluster-autoscaler does.
    ScaleDownByRequestsOnly,
    WithinThresholds,
    /// The node's machine is about to be reclaimed: drain it now and
    /// launch its replacement in the same pool.
    Interrupted {
        node: String,
        pool: String,
        notice: String,
        replaced: bool,
    },
    /// A node of a pool has not been Ready for `since`: deleted without a
    /// drain once that reaches `after`.
    Unready {
        node: String,
        pool: String,
        #[serde(serialize_with = "serialize_secs")]
        since: Duration,
        #[serde(serialize_with = "serialize_secs")]
        after: Duration,
        /// What keeps it nevertheless (its do-not-disrupt annotation).
        #[serde(skip_serializing_if = "Option::is_none")]
        held: Option<String>,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |v: &f64| v * 100.0;
        match self {
            Reason::Above {
                signal,
                observed,
                threshold,
                window,
            } => write!(
                f,
                "{signal} {:.1}% > {:.0}% over {}s",
                pct(observed),
                pct(threshold),
                window.as_secs()
            ),
            Reason::NotBelow {
                signal,
                observed,
                threshold,
                window,
            } => write!(
                f,
                "scale-down needs {signal} < {:.0}% over {}s, observed {:.1}%",
                pct(threshold),
                window.as_secs(),
                pct(observed)
            ),
            Reason::MetricsUnavailable {
                signal,
                cause,
                window,
                direction,
            } => {
                write!(f, "{signal} metrics unavailable")?;
                if !window.is_zero() {
                    write!(f, " over {}s", window.as_secs())?;
                }
                match direction {
                    None => write!(f, " ({cause}): no {signal}-based scaling"),
                    Some(Direction::Up) => write!(f, " ({cause}): no {signal}-based scale-up"),
                    Some(Direction::Down) => write!(f, " ({cause}): {signal} does not gate scale-down"),
                }
            }
            Reason::UnschedulablePods {
                pods,
                fit_existing,
                fit_in_flight,
                need_new_nodes,
            } => write!(
                f,
                "{pods} unschedulable pods: {fit_existing} fit free capacity, {fit_in_flight} fit nodes already launching, {need_new_nodes} need new nodes"
            ),
            Reason::AwaitingPreemption { pods, examples } => write!(
                f,
                "{pods} unschedulable pods wait for the scheduler to preempt lower-priority pods on their nominated nodes ({}): no scale-up for them",
                examples.join(", ")
            ),
            Reason::ExpendablePending { pods, cutoff } => write!(
                f,
                "{pods} unschedulable pods are expendable (priority below {cutoff}): no scale-up for them"
            ),
            Reason::SchedulerDisagrees {
                pods,
                after,
                examples,
            } => write!(
                f,
                "{pods} pods fit existing free capacity by k3scale's model but the scheduler has rejected them for over {}s (e.g. {}): not counting on that capacity",
                after.as_secs(),
                examples.join(", ")
            ),
            Reason::PendingWithinGrace { pods, grace } => {
                write!(
                    f,
                    "{pods} pods unschedulable for less than the {}s grace",
                    grace.as_secs()
                )
            }
            Reason::BinPacked { pool, nodes, pods } => {
                write!(f, "{pods} pending pods bin-packed onto {nodes} new {pool} nodes")
            }
            Reason::Balanced { nodes } => {
                let split: Vec<String> = nodes.iter().map(|(pool, n)| format!("{n} {pool}")).collect();
                write!(f, "balanced over similar pools: {}", split.join(", "))
            }
            Reason::PodsCannotFit { count, examples, why } => write!(
                f,
                "{count} pods fit no pool ({}), e.g. {}; not scaling for them",
                why.join("; "),
                examples.join(", ")
            ),
            Reason::Unready {
                node,
                pool,
                since,
                after,
                held,
            } => {
                write!(
                    f,
                    "node {node} of pool {pool} has not been Ready for {}s",
                    since.as_secs()
                )?;
                if let Some(held) = held {
                    write!(f, ": kept, {held}")
                } else if since >= after {
                    write!(f, ": deleting it without a drain (its pods cannot be evicted)")
                } else {
                    write!(
                        f,
                        ": deleted without a drain if still not Ready at {}s (scale_down.unready_time)",
                        after.as_secs()
                    )
                }
            }
            Reason::Interrupted {
                node,
                pool,
                notice,
                replaced,
            } => {
                write!(f, "node {node} of pool {pool} got a {notice} notice: draining it")?;
                if *replaced {
                    write!(f, " and launching a replacement")
                } else {
                    write!(f, " (no replacement: the pool is above its maximum)")
                }
            }
            Reason::BelowMin { pool, current, min } => {
                write!(f, "pool {pool} has {current} nodes, below its minimum {min}")
            }
            Reason::AtMaxCapacity { pool, max, wanted } => {
                write!(
                    f,
                    "pool {pool} is at its maximum of {max} nodes ({wanted} more wanted)"
                )
            }
            Reason::Cooldown { direction, remaining } => {
                write!(f, "scale-{direction:?} cooldown: {}s left", remaining.as_secs())
            }
            Reason::PoolBackedOff {
                pool,
                remaining,
                cause,
                why,
            } => {
                use crate::lifecycle::HoldCause;
                let left = remaining.as_secs();
                match cause {
                    HoldCause::JoinFailures => {
                        write!(
                            f,
                            "pool {pool} is backing off after failed node joins: {left}s left"
                        )
                    }
                    HoldCause::NoCapacity => write!(
                        f,
                        "pool {pool} is backing off: its provider had no capacity ({why}): {left}s left"
                    ),
                    HoldCause::Retry => write!(
                        f,
                        "pool {pool} launches again in {left}s: its provider failed for now ({why})"
                    ),
                    HoldCause::Failed => write!(
                        f,
                        "pool {pool} has failed and launches nothing until its configuration changes or `k3scale pool reset {pool}`: {why}"
                    ),
                }
            }
            Reason::NodesInFlight { nodes } => write!(
                f,
                "{nodes} nodes still booting: utilization rules wait until their capacity counts"
            ),
            Reason::ScaleDownBlockedByPending { pods } => {
                write!(f, "no scale-down while {pods} pods are unschedulable")
            }
            Reason::Removable {
                node,
                pool,
                utilization,
                empty,
            } => write!(
                f,
                "node {node} ({pool}, {:.0}% requested{}) can be removed: its pods fit elsewhere",
                pct(utilization),
                if *empty { ", empty" } else { "" }
            ),
            Reason::NotRemovable { node, blocker } => {
                write!(f, "node {node} not removed: {blocker}")
            }
            Reason::Unneeded {
                node,
                pool,
                utilization,
                empty,
                remaining,
                held_by,
            } => {
                write!(
                    f,
                    "node {node} ({pool}, {:.0}% requested{}) is unneeded: ",
                    pct(utilization),
                    if *empty { ", empty" } else { "" }
                )?;
                if let Some(budget) = held_by {
                    write!(f, "held by disruption budget {budget}")
                } else if remaining.is_zero() {
                    write!(f, "removed when a delay or the step limit allows")
                } else {
                    write!(f, "removed if still so in {}s", remaining.as_secs())
                }
            }
            Reason::Headroom {
                pool,
                pods,
                cpu_milli,
                memory_bytes,
                waiting,
            } => {
                write!(
                    f,
                    "pool {pool} keeps room for {pods} pods of {cpu_milli}m CPU / {}Mi: ",
                    memory_bytes >> 20
                )?;
                match waiting {
                    0 => write!(f, "all on free room"),
                    n => write!(f, "{n} waiting for a node"),
                }
            }
            Reason::Forecast {
                cpu_milli,
                memory_bytes,
                pods,
                waiting,
            } => {
                write!(
                    f,
                    "forecast: requests rise by {cpu_milli}m CPU / {}Mi within a boot time (as one day or one week ago); room for {pods} pods kept",
                    memory_bytes >> 20
                )?;
                match waiting {
                    0 => Ok(()),
                    n => write!(f, ", {n} waiting for a node"),
                }
            }
            Reason::DisruptionBudget {
                scope,
                budget,
                allowed,
                disrupting,
                held,
            } => write!(
                f,
                "disruption budget {budget} ({scope}) allows {allowed} nodes disrupted at once and {disrupting} are: {held} unneeded nodes wait"
            ),
            Reason::Replacing {
                node,
                pool,
                why,
                age,
                step,
            } => write!(
                f,
                "node {node} of pool {pool} is {why} ({} h old): {step}",
                age.as_secs() / 3600
            ),
            Reason::ReplaceHeld {
                node,
                pool,
                why,
                blocker,
            } => write!(
                f,
                "node {node} of pool {pool} is {why} but is not replaced now: {blocker}"
            ),
            Reason::Consolidating {
                nodes,
                pool,
                new_nodes,
                saving_per_hour,
            } => write!(
                f,
                "consolidation: {} ({} nodes) replaced by {new_nodes} new {pool} nodes, saving ${saving_per_hour:.4}/h; the new nodes first",
                nodes.join(", "),
                nodes.len()
            ),
            Reason::ConsolidationDrain { node, pool } => {
                write!(
                    f,
                    "consolidation: the new {pool} nodes have joined: draining {node}"
                )
            }
            Reason::ConsolidationHeld {
                nodes,
                saving_per_hour,
                blocker,
            } => write!(
                f,
                "consolidation of {} would save ${saving_per_hour:.4}/h but is held: {blocker}",
                nodes.join(", ")
            ),
            Reason::DelayAfterScaleUp { remaining } => {
                write!(
                    f,
                    "no scale-down for {}s after the last scale-up",
                    remaining.as_secs()
                )
            }
            Reason::NoCandidates => write!(f, "no node is a scale-down candidate"),
            Reason::ClusterLimit { limit, value } => {
                write!(f, "cluster limit limits.{limit} ({value}) reached: no more nodes")
            }
            Reason::ScaleDownByRequestsOnly => write!(
                f,
                "without metrics, scale-down goes by requests only: empty nodes and nodes whose pods fit elsewhere"
            ),
            Reason::WithinThresholds => write!(f, "all signals within thresholds"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub at: Time,
    pub dry_run: bool,
    pub scale_up: Vec<ScaleUp>,
    pub scale_down: Vec<ScaleDown>,
    pub reasons: Vec<Reason>,
    /// Pending pods whose bin-packing asked for new nodes, with the pool
    /// chosen for them (at most [`MAX_TRIGGERING_PODS`]): they get a
    /// `TriggeredScaleUp` Event, as cluster-autoscaler's do.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub triggering_pods: Vec<TriggeringPod>,
    /// Unschedulable pods (`namespace/name`) the planner placed on existing
    /// free capacity: see [`crate::Snapshot::remember`].
    #[serde(skip)]
    pub fit_existing: Vec<String>,
    /// Nodes found removable together in this decision, removed or not:
    /// see [`crate::Snapshot::remember`].
    #[serde(skip)]
    pub unneeded: Vec<String>,
    /// Expired or drifted nodes with a replacement on its way or up, not
    /// drained yet: see [`crate::Snapshot::remember`].
    #[serde(skip)]
    pub replacing: Vec<String>,
    /// Nodes a consolidation replaces, with the pool of their new nodes.
    #[serde(skip)]
    pub consolidating: Vec<(String, String)>,
    /// Of the nodes `scale_up` adds, those replacing nodes that leave
    /// (spot interruption, expiry, drift, consolidation), and of
    /// `scale_down`, the nodes leaving for such a replacement: capacity
    /// swapped, not capacity the workload asked for or gave back.
    #[serde(skip)]
    pub replacements_launched: u32,
    #[serde(skip)]
    pub replaced_drained: u32,
}

/// Enough pods to tell a user why nodes were added without an Event storm.
pub const MAX_TRIGGERING_PODS: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriggeringPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub pool: String,
}

impl Decision {
    pub fn new(at: Time, dry_run: bool) -> Self {
        Decision {
            at,
            dry_run,
            scale_up: Vec::new(),
            scale_down: Vec::new(),
            reasons: Vec::new(),
            triggering_pods: Vec::new(),
            fit_existing: Vec::new(),
            unneeded: Vec::new(),
            replacing: Vec::new(),
            consolidating: Vec::new(),
            replacements_launched: 0,
            replaced_drained: 0,
        }
    }

    pub fn is_noop(&self) -> bool {
        self.scale_up.is_empty() && self.scale_down.is_empty()
    }

    pub fn nodes_added(&self) -> u32 {
        self.scale_up.iter().map(|s| s.count).sum()
    }

    pub(crate) fn add_up(&mut self, pool: &str, count: u32) {
        if count == 0 {
            return;
        }
        match self.scale_up.iter_mut().find(|s| s.pool == pool) {
            Some(s) => s.count += count,
            None => self.scale_up.push(ScaleUp {
                pool: pool.to_string(),
                count,
            }),
        }
    }
}
