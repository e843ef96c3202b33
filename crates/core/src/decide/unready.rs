//! Nodes that died: a node of a pool that has not been Ready for
//! `scale_down.unready_time` (its agent or machine is gone) gives no
//! capacity, counts against the pool's maximum and keeps StatefulSet pods
//! stuck terminating until its Node object goes. It is deleted without a
//! drain: no kubelet is there to carry an eviction out.

use super::context::Context;
use crate::decision::{Reason, ScaleDown};
use crate::model::DO_NOT_DISRUPT;

pub(super) fn remove(ctx: &mut Context<'_>) {
    let rules = &ctx.policy.scale_down;
    if !rules.enabled || !rules.unready_enabled {
        return;
    }
    let snapshot = ctx.snapshot;
    for node in &snapshot.nodes {
        // A launch not joined yet is the lifecycle's (its provision timeout).
        if node.ready || snapshot.in_flight.iter().any(|m| m.name == node.name) {
            continue;
        }
        // Already leaving in this decision (a spot interruption).
        if ctx.decision.scale_down.iter().any(|d| d.node == node.name) {
            continue;
        }
        let (Some(pool), Some(since)) = (node.pool.as_deref(), node.not_ready_since) else {
            continue;
        };
        if ctx.policy.pool(pool).is_none() {
            continue;
        }
        let held = node
            .annotation_is(DO_NOT_DISRUPT, "true")
            .then(|| format!("annotated {DO_NOT_DISRUPT}=true"));
        let down_for = ctx.now.since(since);
        let remove = held.is_none() && down_for >= rules.unready_time;
        ctx.decision.reasons.push(Reason::Unready {
            node: node.name.clone(),
            pool: pool.to_string(),
            since: down_for,
            after: rules.unready_time,
            held,
        });
        if remove {
            ctx.decision.scale_down.push(ScaleDown {
                node: node.name.clone(),
                pool: pool.to_string(),
                empty: false,
                forced: true,
            });
            // It held no capacity: the pool's minimum brings a new node now.
            if let Some(size) = ctx.sizes.get_mut(pool) {
                *size = size.saturating_sub(1);
            }
        }
    }
}
