//! The working state of one decision, shared by the scale-up and
//! scale-down planners.

use crate::decision::{Decision, Direction, Reason, ScaleDown, ScaleUp};
use crate::model::Pool;
use crate::policy::Policy;
use crate::quantity::Resources;
use crate::scheduling::{Shape, daemonsets_on};
use crate::snapshot::{Series, Snapshot};
use crate::time::Time;
use crate::window::{Unavailable, window_mean};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// Working state of one decision.
pub(super) struct Context<'a> {
    pub snapshot: &'a Snapshot,
    pub policy: &'a Policy,
    pub now: Time,
    pub decision: Decision,
    /// Nodes (Ready or not) plus machines in flight, per configured pool.
    pub sizes: BTreeMap<String, u32>,
    /// What a new node of each pool has free once its DaemonSet pods run.
    pub room: BTreeMap<String, Resources>,
    /// Every node of the cluster and every machine on its way: what the
    /// cluster-wide limits count (grows with each scale-up decided here).
    pub cluster_nodes: u32,
    pub cluster_capacity: Resources,
}

impl<'a> Context<'a> {
    pub fn new(snapshot: &'a Snapshot, policy: &'a Policy, now: Time) -> Self {
        let in_flight: HashSet<&str> = snapshot.in_flight.iter().map(|m| m.name.as_str()).collect();
        let mut sizes: BTreeMap<String, u32> = policy.pools.iter().map(|p| (p.name.clone(), 0)).collect();
        let pools = snapshot
            .nodes
            .iter()
            .filter(|n| !in_flight.contains(n.name.as_str()))
            .filter_map(|n| n.pool.as_deref())
            .chain(snapshot.in_flight.iter().map(|m| m.pool.as_str()));
        for pool in pools {
            if let Some(size) = sizes.get_mut(pool) {
                *size += 1;
            }
        }
        let existing = snapshot
            .nodes
            .iter()
            .filter(|n| !in_flight.contains(n.name.as_str()));
        let launching = snapshot
            .in_flight
            .iter()
            .filter_map(|m| policy.pool(&m.pool))
            .map(|p| p.template.allocatable);
        let cluster_capacity = existing
            .clone()
            .map(|n| n.allocatable)
            .chain(launching)
            .fold(Resources::ZERO, |sum, r| sum + r);
        let cluster_nodes = (existing.count() + snapshot.in_flight.len()) as u32;
        let room = policy
            .pools
            .iter()
            .map(|p| {
                let t = &p.template;
                let daemons = daemonsets_on(&snapshot.daemonsets, &t.labels, &t.taints)
                    .fold(Resources::ZERO, |sum, ds| sum + ds.requests);
                (p.name.clone(), t.allocatable.saturating_sub(&daemons))
            })
            .collect();
        Context {
            snapshot,
            policy,
            now,
            decision: Decision::new(now, policy.dry_run),
            sizes,
            room,
            cluster_nodes,
            cluster_capacity,
        }
    }

    /// Record `count` more nodes of `pool` decided in this step.
    pub fn grow(&mut self, pool: &Pool, count: u32) {
        *self.sizes.entry(pool.name.clone()).or_default() += count;
        self.cluster_nodes += count;
        for _ in 0..count {
            self.cluster_capacity += pool.template.allocatable;
        }
    }

    /// How many nodes of `pool` the cluster-wide limits still allow (noting
    /// a limit once when it is what stops the pool).
    fn limit_headroom(&mut self, pool: &Pool) -> u32 {
        let limits = &self.policy.limits;
        let per = pool.template.allocatable;
        let fits = |limit: Option<u64>, used: u64, each: u64| {
            limit.map_or(u32::MAX, |l| {
                u32::try_from(l.saturating_sub(used).checked_div(each).unwrap_or(u64::MAX))
                    .unwrap_or(u32::MAX)
            })
        };
        let bounds = [
            (
                "max_nodes",
                limits.max_nodes.map(|n| n.to_string()),
                fits(limits.max_nodes.map(u64::from), u64::from(self.cluster_nodes), 1),
            ),
            (
                "max_cpu",
                limits.max_cpu_milli.map(|m| format!("{m}m")),
                fits(
                    limits.max_cpu_milli,
                    self.cluster_capacity.cpu_milli,
                    per.cpu_milli,
                ),
            ),
            (
                "max_memory",
                limits.max_memory_bytes.map(|b| format!("{}Mi", b >> 20)),
                fits(
                    limits.max_memory_bytes,
                    self.cluster_capacity.memory_bytes,
                    per.memory_bytes,
                ),
            ),
        ];
        let mut allowed = u32::MAX;
        for (limit, value, left) in bounds {
            if left == 0 {
                let reason = Reason::ClusterLimit {
                    limit: limit.to_string(),
                    value: value.unwrap_or_default(),
                };
                if !self.decision.reasons.contains(&reason) {
                    self.decision.reasons.push(reason);
                }
            }
            allowed = allowed.min(left);
        }
        allowed
    }

    /// Free capacity of a new node of `pool` (allocatable minus DaemonSets).
    pub fn room(&self, pool: &str) -> Resources {
        self.room.get(pool).copied().unwrap_or_default()
    }

    /// A new node of `pool` as the packing sees it.
    pub fn shape(&self, pool: &'a Pool) -> Shape<'a> {
        let t = &pool.template;
        Shape {
            labels: &t.labels,
            taints: &t.taints,
            capacity: self.room(&pool.name),
            extended: &t.extended,
            daemonsets: &self.snapshot.daemonsets,
        }
    }

    /// Nodes `pool` may still add now: 0 at max or while it backs off
    /// (noting the backoff once).
    pub fn headroom(&mut self, pool: &Pool) -> u32 {
        if let Some(hold) = self.snapshot.backoff.get(&pool.name)
            && hold.until > self.now
        {
            let reason = Reason::PoolBackedOff {
                pool: pool.name.clone(),
                remaining: hold.until.since(self.now),
                cause: hold.cause,
                why: hold.why.clone(),
            };
            if !self.decision.reasons.contains(&reason) {
                self.decision.reasons.push(reason);
            }
            return 0;
        }
        let by_pool = pool.max.saturating_sub(self.size(&pool.name));
        if by_pool == 0 {
            return 0;
        }
        by_pool.min(self.limit_headroom(pool))
    }

    pub fn size(&self, pool: &str) -> u32 {
        self.sizes.get(pool).copied().unwrap_or(0)
    }

    /// `count` more nodes of `pool` in this decision's scale-up.
    pub fn launch(&mut self, pool: &str, count: u32) {
        match self.decision.scale_up.iter_mut().find(|u| u.pool == pool) {
            Some(up) => up.count += count,
            None => self.decision.scale_up.push(ScaleUp {
                pool: pool.to_string(),
                count,
            }),
        }
    }

    /// `count` more nodes of `pool` to replace nodes that leave.
    pub fn launch_replacement(&mut self, pool: &str, count: u32) {
        self.launch(pool, count);
        self.decision.replacements_launched += count;
    }

    /// Drain `node` of `pool`, replaced, in this decision: it leaves the pool's size.
    pub fn drain(&mut self, node: &str, pool: &str) {
        let empty = !self
            .snapshot
            .pods
            .iter()
            .any(|p| p.node_name.as_deref() == Some(node) && !p.is_gone(self.now) && !p.is_node_bound());
        self.decision.scale_down.push(ScaleDown {
            node: node.to_string(),
            pool: pool.to_string(),
            empty,
            forced: false,
        });
        self.decision.replaced_drained += 1;
        if let Some(size) = self.sizes.get_mut(pool) {
            *size = size.saturating_sub(1);
        }
    }

    /// Whether a node of `pool` created since `t` is up (a launch then has joined).
    pub fn joined_since(&self, pool: &str, t: Time) -> bool {
        self.snapshot
            .nodes
            .iter()
            .any(|n| n.pool.as_deref() == Some(pool) && n.schedulable() && n.created_since(t))
    }

    /// The windowed mean of a signal for a rule of `direction`, noting when
    /// it is unavailable (once per signal and window).
    pub fn signal(
        &mut self,
        name: &str,
        series: &Series,
        window: Duration,
        direction: Direction,
    ) -> Option<f64> {
        match window_mean(series, self.now, window, self.policy.metrics_max_age) {
            Ok(v) => Some(v),
            Err(cause) => {
                self.note_unavailable(name, window, direction, &cause);
                None
            }
        }
    }

    /// Say that `signal` over `window` cannot be judged, and which rules that
    /// leaves out: the note names the window and the direction, so it never
    /// contradicts a rule of the same signal over another window that could.
    pub fn note_unavailable(
        &mut self,
        signal: &str,
        window: Duration,
        direction: Direction,
        cause: &Unavailable,
    ) {
        let existing = self.decision.reasons.iter_mut().find_map(|r| match r {
            Reason::MetricsUnavailable {
                signal: s,
                window: w,
                direction: d,
                ..
            } if s == signal && *w == window => Some(d),
            _ => None,
        });
        if let Some(d) = existing {
            if *d != Some(direction) {
                *d = None; // both directions
            }
            return;
        }
        let mut cause = cause.to_string();
        if let Some(err) = &self.snapshot.metrics_error {
            cause = format!("{cause}; last error: {err}");
        }
        self.decision.reasons.push(Reason::MetricsUnavailable {
            signal: signal.to_string(),
            cause,
            window,
            direction: Some(direction),
        });
    }

    /// Remaining cooldown since `last`, if any.
    pub fn cooldown_left(&self, last: Option<Time>, cooldown: Duration) -> Option<Duration> {
        let elapsed = self.now.since(last?);
        (elapsed < cooldown).then(|| cooldown - elapsed)
    }
}

/// Free capacity of every node of the snapshot.
/// Each node's room for pods: expendable pods (priority below the cutoff)
/// take none, since the scheduler preempts them for any other pod (as
/// cluster-autoscaler's cluster snapshot leaves them out).
pub(super) fn free_capacity(ctx: &Context<'_>) -> Vec<Resources> {
    let cutoff = ctx.policy.expendable_pods_priority_cutoff;
    crate::scheduling::free_capacity_where(&ctx.snapshot.nodes, &ctx.snapshot.pods, |p| p.priority >= cutoff)
}
