//! Consolidation (`policy.consolidation`): several under-used nodes whose
//! pods all fit on fewer or cheaper new nodes of one pool are replaced by
//! them when that saves at least `min_saving_per_hour`, as Karpenter's
//! multi-node consolidation does. The new nodes are launched first; the old
//! ones are drained once nothing of that pool is launching. Single nodes
//! whose pods fit on what is already there are scale-down's, not this.

use super::budgets::DisruptionBudgets;
use super::context::Context;
use super::scale_down::pod_blocker;
use crate::decision::Reason;
use crate::disruption::DisruptionReason;
use crate::model::{DO_NOT_DISRUPT, Node, Pod, Pool, SCALE_DOWN_DISABLED};
use crate::scheduling::{Target, pack};
use std::collections::BTreeMap;

/// At most this many nodes are looked at together (the least used).
const MAX_SET: usize = 10;

/// Drain the nodes of a consolidation whose new nodes have joined; keep
/// remembering those still waiting.
pub(super) fn progress(ctx: &mut Context<'_>) {
    let snapshot = ctx.snapshot;
    for (name, (since, target)) in &snapshot.consolidating {
        let Some(node) = snapshot.nodes.iter().find(|n| n.name == *name && n.schedulable()) else {
            continue;
        };
        let Some(pool) = node.pool.clone() else { continue };
        if snapshot.in_flight.iter().any(|m| m.pool == *target) {
            ctx.decision.consolidating.push((name.clone(), target.clone()));
            continue;
        }
        if !ctx.joined_since(target, *since) {
            // The new nodes did not come (a failed launch): the old ones stay.
            continue;
        }
        ctx.drain(name, &pool);
        ctx.decision.reasons.push(Reason::ConsolidationDrain {
            node: name.clone(),
            pool: target.clone(),
        });
    }
}

fn pods_on<'s>(ctx: &Context<'s>, node: &'s str) -> impl Iterator<Item = &'s Pod> {
    let now = ctx.now;
    ctx.snapshot
        .pods
        .iter()
        .filter(move |p| p.node_name.as_deref() == Some(node) && !p.is_gone(now))
}

/// A node that may be consolidated away: its workload pods, if all may move.
fn movable<'s>(ctx: &Context<'s>, node: &'s Node) -> Option<Vec<&'s Pod>> {
    if node.annotation_is(DO_NOT_DISRUPT, "true") || node.annotation_is(SCALE_DOWN_DISABLED, "true") {
        return None;
    }
    let evict_local = ctx.policy.scale_down.evict_local_storage;
    let mut pods = Vec::new();
    for pod in pods_on(ctx, &node.name).filter(|p| !p.is_node_bound()) {
        // Pods placed by their neighbours are left to the node-by-node
        // scale-down, which simulates them among the existing pods.
        if pod_blocker(pod, evict_local).is_err() || pod.has_pod_predicates() || pod.pdb.is_some() {
            return None;
        }
        pods.push(pod);
    }
    Some(pods)
}

/// How many new nodes of `pool` hold all of `pods`, if at most `limit` do.
fn new_nodes_for<'s>(ctx: &Context<'s>, pool: &'s Pool, pods: &[&'s Pod], limit: usize) -> Option<usize> {
    let shape = ctx.shape(pool);
    (1..=limit).find(|&m| {
        let mut targets: Vec<Target<'_>> = (0..m).map(|_| shape.new_node()).collect();
        pack(pods, &mut targets).iter().all(Option::is_some)
    })
}

/// One replacement considered: `nodes` (the least used first) by `count`
/// new nodes of `pool`.
struct Plan<'s> {
    nodes: Vec<&'s Node>,
    pool: &'s Pool,
    count: usize,
    saving: f64,
}

pub(super) fn plan(ctx: &mut Context<'_>, unschedulable: usize) {
    let policy = ctx.policy;
    let snapshot = ctx.snapshot;
    let Some(rules) = policy.consolidation else {
        return;
    };
    // Only a settled cluster: nothing waiting, launching, leaving or
    // decided, and no scale event for an unneeded time.
    let settled =
        |t: Option<crate::time::Time>| t.is_none_or(|t| ctx.now.since(t) >= policy.scale_down.unneeded_time);
    if unschedulable > 0
        || !snapshot.in_flight.is_empty()
        || !snapshot.consolidating.is_empty()
        || !snapshot.replacing.is_empty()
        || snapshot.nodes.iter().any(|n| n.cordoned)
        || !ctx.decision.scale_up.is_empty()
        || !ctx.decision.scale_down.is_empty()
        || !settled(snapshot.last_scale_up)
        || !settled(snapshot.last_scale_down)
    {
        return;
    }
    let price = |node: &Node| {
        node.pool
            .as_deref()
            .and_then(|p| policy.pool(p))
            .map_or(0.0, |p| p.template.price_per_hour)
    };
    let free = super::context::free_capacity(ctx);
    let mut candidates: Vec<(f64, &Node, Vec<&Pod>)> = snapshot
        .nodes
        .iter()
        .zip(&free)
        .filter(|(n, _)| n.schedulable() && n.pool.as_deref().is_some_and(|p| policy.pool(p).is_some()))
        .filter_map(|(n, f)| {
            let used = n.allocatable.saturating_sub(f).dominant_share(&n.allocatable);
            Some((used, n, movable(ctx, n)?))
        })
        .collect();
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    candidates.truncate(MAX_SET);

    let mut best: Option<Plan<'_>> = None;
    for k in 2..=candidates.len() {
        let set = &candidates[..k];
        let pods: Vec<&Pod> = set.iter().flat_map(|(_, _, p)| p.iter().copied()).collect();
        let old_cost: f64 = set.iter().map(|(_, n, _)| price(n)).sum();
        for pool in &policy.pools {
            // Fewer nodes, or as many but cheaper.
            let Some(count) = new_nodes_for(ctx, pool, &pods, k) else {
                continue;
            };
            let saving = old_cost - count as f64 * pool.template.price_per_hour;
            if saving < rules.min_saving_per_hour || saving <= 0.0 {
                continue;
            }
            let nodes: Vec<&Node> = set.iter().map(|(_, n, _)| *n).collect();
            if !within_pool_limits(ctx, &nodes, pool, count) {
                continue;
            }
            if best.as_ref().is_none_or(|b| saving > b.saving + 1e-9) {
                best = Some(Plan {
                    nodes,
                    pool,
                    count,
                    saving,
                });
            }
        }
    }
    let Some(plan) = best else {
        return;
    };
    // Every old node is a disruption of its pool and of the cluster.
    let mut budgets = DisruptionBudgets::of(ctx);
    for node in &plan.nodes {
        let pool = node.pool.as_deref().unwrap_or_default();
        if let Some(budget) = budgets.hold(pool, DisruptionReason::Underutilized, ctx.now) {
            ctx.decision.reasons.push(Reason::ConsolidationHeld {
                nodes: plan.nodes.iter().map(|n| n.name.clone()).collect(),
                saving_per_hour: plan.saving,
                blocker: format!("disruption budget {budget}"),
            });
            return;
        }
        budgets.disrupt(pool);
    }
    *ctx.sizes.entry(plan.pool.name.clone()).or_default() += plan.count as u32;
    ctx.launch_replacement(&plan.pool.name, plan.count as u32);
    for node in &plan.nodes {
        ctx.decision
            .consolidating
            .push((node.name.clone(), plan.pool.name.clone()));
    }
    ctx.decision.reasons.push(Reason::Consolidating {
        nodes: plan.nodes.iter().map(|n| n.name.clone()).collect(),
        pool: plan.pool.name.clone(),
        new_nodes: plan.count as u32,
        saving_per_hour: plan.saving,
    });
}

/// The target pool stays within its maximum and every source pool within
/// its minimum once the swap is done.
fn within_pool_limits(ctx: &Context<'_>, nodes: &[&Node], target: &Pool, count: usize) -> bool {
    let mut change: BTreeMap<&str, i64> = BTreeMap::new();
    *change.entry(target.name.as_str()).or_default() += count as i64;
    for n in nodes {
        if let Some(p) = n.pool.as_deref() {
            *change.entry(p).or_default() -= 1;
        }
    }
    change.into_iter().all(|(name, delta)| {
        let Some(pool) = ctx.policy.pool(name) else {
            return false;
        };
        let after = i64::from(ctx.size(name)) + delta;
        after >= i64::from(pool.min) && after <= i64::from(pool.max)
    })
}
