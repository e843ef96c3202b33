//! `decide`: the one pure function the daemon, `once` and the simulator share.
//!
//! Dependencies run one way: this module calls `scale_up` and
//! `scale_down`, both of which work on the `context` of one decision.

mod budgets;
mod consolidate;
mod context;
mod headroom;
mod replace;
mod scale_down;
mod scale_up;
mod unready;

pub use replace::due as replacement_due;
pub use scale_down::pod_blocker;

use crate::decision::{Decision, Reason, ScaleDown};
use crate::model::Pod;
use crate::policy::{PendingPods, Policy};
use crate::snapshot::Snapshot;
use crate::time::Time;
use context::Context;

/// Decide what to do now. Deterministic: no I/O, no clock, no randomness.
pub fn decide(snapshot: &Snapshot, policy: &Policy, now: Time) -> Decision {
    let reserved = headroom::reserve(snapshot, policy, now);
    let snapshot = reserved
        .as_ref()
        .map_or(snapshot, |(with_placeholders, _)| with_placeholders);
    let mut ctx = Context::new(snapshot, policy, now);
    if let Some((_, notes)) = &reserved {
        ctx.decision.reasons.extend(notes.iter().cloned());
    }
    replace_interrupted(&mut ctx);
    unready::remove(&mut ctx);
    scale_up::to_min(&mut ctx);
    let (pending, expendable): (Vec<&Pod>, Vec<&Pod>) = unschedulable_pods(snapshot)
        .into_iter()
        .partition(|p| p.priority >= policy.expendable_pods_priority_cutoff);
    if !expendable.is_empty() {
        ctx.decision.reasons.push(Reason::ExpendablePending {
            pods: expendable.len(),
            cutoff: policy.expendable_pods_priority_cutoff,
        });
    }
    // As cluster-autoscaler: a pod nominated to an existing node gets room
    // there by preemption. (Still pending: scale-down waits for it.)
    let (preempting, for_new_nodes): (Vec<&Pod>, Vec<&Pod>) = pending.iter().partition(|p| {
        p.nominated_node
            .as_deref()
            .is_some_and(|n| snapshot.nodes.iter().any(|node| node.name == n))
    });
    if !preempting.is_empty() {
        ctx.decision.reasons.push(Reason::AwaitingPreemption {
            pods: preempting.len(),
            examples: preempting.iter().take(3).map(|p| p.key()).collect(),
        });
    }
    let ripe: Vec<&Pod> = for_new_nodes
        .iter()
        .copied()
        .filter(|p| {
            p.unschedulable_since
                .is_some_and(|t| now.since(t) >= policy.scale_up.pending_grace)
        })
        .collect();
    if ripe.len() < for_new_nodes.len() {
        ctx.decision.reasons.push(Reason::PendingWithinGrace {
            pods: for_new_nodes.len() - ripe.len(),
            grace: policy.scale_up.pending_grace,
        });
    }
    if policy.scale_up.pending_pods == PendingPods::BinPack {
        scale_up::for_pending(&mut ctx, &ripe);
    }
    scale_up::for_utilization(&mut ctx, &ripe);
    replace::plan(&mut ctx);
    consolidate::progress(&mut ctx);
    if ctx.decision.scale_up.is_empty() {
        scale_down::plan(&mut ctx, pending.len());
    }
    consolidate::plan(&mut ctx, pending.len());
    if ctx
        .decision
        .reasons
        .iter()
        .all(|r| matches!(r, Reason::Headroom { .. }))
    {
        ctx.decision.reasons.push(Reason::WithinThresholds);
    }
    ctx.decision
}

/// Nodes whose machines are about to be reclaimed: drained now, whatever the
/// thresholds, cooldowns or minimum say (the cloud takes them anyway), and
/// replaced at once in the same pool. A node already cordoned is already
/// leaving.
fn replace_interrupted(ctx: &mut Context<'_>) {
    for notice in &ctx.snapshot.interrupted {
        let Some(node) = ctx
            .snapshot
            .nodes
            .iter()
            .find(|n| n.name == notice.node && !n.cordoned)
        else {
            continue;
        };
        let Some(pool) = node
            .pool
            .as_deref()
            .and_then(|p| ctx.policy.pools.iter().find(|x| x.name == p))
        else {
            continue;
        };
        // The leaving node still counts in the pool's size, so a replacement
        // keeps the size where it is.
        let replaced = ctx.sizes.get(&pool.name).is_some_and(|&size| size <= pool.max);
        ctx.decision.scale_down.push(ScaleDown {
            node: node.name.clone(),
            pool: pool.name.clone(),
            empty: false,
            forced: false,
        });
        ctx.decision.replaced_drained += 1;
        if replaced {
            ctx.launch_replacement(&pool.name, 1);
        }
        ctx.decision.reasons.push(Reason::Interrupted {
            node: node.name.clone(),
            pool: pool.name.clone(),
            notice: notice.notice.clone(),
            replaced,
        });
    }
}

/// Pods the scheduler has reported as not fitting anywhere. DaemonSet and
/// mirror pods are not among them: a DaemonSet pod that cannot start on its
/// node (K3s's ServiceLB `svclb-*` pods when a host port is taken) needs
/// that node, not a new one, and must not hold every scale-down back.
pub fn unschedulable_pods(snapshot: &Snapshot) -> Vec<&Pod> {
    snapshot
        .pods
        .iter()
        .filter(|p| {
            // A pod being deleted will not run: its controller made another.
            p.node_name.is_none()
                && !p.is_terminal()
                && p.deleted_at.is_none()
                && p.unschedulable_since.is_some()
                && !p.is_node_bound()
        })
        .collect()
}
