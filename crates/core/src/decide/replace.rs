//! Expired and drifted nodes are replaced, not just removed: a new node of
//! the pool is launched first, and the old one is drained once nothing of
//! the pool is still launching (the replacement has joined), one budget at
//! a time, never below the pool's minimum, never a node or pod that says
//! `do-not-disrupt`. At the pool's maximum a replacement waits for room
//! (a replacement joining, a leaving node gone); with nothing under way
//! there, the old node is drained first and the planner brings a new one
//! up for its pods, as for any pending pod.

use super::budgets::DisruptionBudgets;
use super::context::Context;
use crate::decision::Reason;
use crate::disruption::DisruptionReason;
use crate::model::{DO_NOT_DISRUPT, HASH_LABEL, Node, Pool};
use std::time::Duration;

/// Why `node` of `pool` should be replaced, if it should: expired before drifted.
pub fn due(node: &Node, pool: &Pool, now: crate::time::Time) -> Option<DisruptionReason> {
    if pool.expire_after.is_some_and(|e| now.since(node.created_at) >= e) {
        return Some(DisruptionReason::Expired);
    }
    // A node launched before hashes were written has none: not drifted.
    let hash = node.labels.get(HASH_LABEL)?;
    (!pool.settings_hash.is_empty() && *hash != pool.settings_hash).then_some(DisruptionReason::Drifted)
}

pub(super) fn plan(ctx: &mut Context<'_>) {
    let policy = ctx.policy;
    let snapshot = ctx.snapshot;
    let mut budgets = DisruptionBudgets::of(ctx);
    for pool in &policy.pools {
        if pool.expire_after.is_none() && pool.settings_hash.is_empty() {
            continue;
        }
        let mut due_nodes: Vec<(&Node, DisruptionReason)> = snapshot
            .nodes
            .iter()
            .filter(|n| n.pool.as_deref() == Some(pool.name.as_str()) && n.schedulable())
            .filter_map(|n| Some((n, due(n, pool, ctx.now)?)))
            .collect();
        // Those already being replaced first, then the oldest.
        due_nodes.sort_by_key(|(n, _)| {
            (
                !snapshot.replacing.contains_key(&n.name),
                n.created_at,
                n.name.clone(),
            )
        });
        let launching = snapshot.in_flight.iter().any(|m| m.pool == pool.name);
        let mut launched_now = false;
        for (node, why) in due_nodes {
            let name = node.name.clone();
            if let Some(blocker) = held_by_annotation(ctx, node) {
                ctx.decision.reasons.push(Reason::ReplaceHeld {
                    node: name,
                    pool: pool.name.clone(),
                    why,
                    blocker,
                });
                continue;
            }
            if let Some(&since) = snapshot.replacing.get(&name) {
                if launching {
                    ctx.decision.replacing.push(name.clone());
                    push(ctx, &name, pool, why, "its replacement is still launching");
                } else if ctx.joined_since(&pool.name, since) {
                    drain(ctx, node, pool, why, "its replacement has joined: draining it");
                } else if ctx.size(&pool.name) < pool.max && !snapshot.backoff.contains_key(&pool.name) {
                    // The launch failed: try again, the old node stays meanwhile.
                    *ctx.sizes.entry(pool.name.clone()).or_default() += 1;
                    ctx.launch_replacement(&pool.name, 1);
                    ctx.decision.replacing.push(name.clone());
                    launched_now = true;
                    push(
                        ctx,
                        &name,
                        pool,
                        why,
                        "its replacement did not come: launching another",
                    );
                } else {
                    ctx.decision.replacing.push(name.clone());
                    push(
                        ctx,
                        &name,
                        pool,
                        why,
                        "waiting for room to launch its replacement",
                    );
                }
                continue;
            }
            // A replacement counts against the budget from its launch.
            if let Some(budget) = budgets.hold(&pool.name, why, ctx.now) {
                ctx.decision.reasons.push(Reason::ReplaceHeld {
                    node: name,
                    pool: pool.name.clone(),
                    why,
                    blocker: format!("disruption budget {budget}"),
                });
                continue;
            }
            // Room comes back soon when a node of the pool is leaving or a
            // replacement is on its way: wait for it rather than drain first.
            let leaving = launching
                || launched_now
                || snapshot
                    .nodes
                    .iter()
                    .any(|n| n.cordoned && n.pool.as_deref() == Some(pool.name.as_str()));
            if ctx.size(&pool.name) < pool.max {
                budgets.disrupt(&pool.name);
                *ctx.sizes.entry(pool.name.clone()).or_default() += 1;
                ctx.launch_replacement(&pool.name, 1);
                ctx.decision.replacing.push(name.clone());
                launched_now = true;
                push(ctx, &name, pool, why, "launching its replacement first");
            } else if leaving {
                // A node of the pool is on its way out: once it is gone
                // there is room to launch the replacement first.
                ctx.decision.reasons.push(Reason::ReplaceHeld {
                    node: name,
                    pool: pool.name.clone(),
                    why,
                    blocker: "the pool is at its maximum until a replacement joins or a leaving node is gone"
                        .into(),
                });
            } else if ctx.size(&pool.name) > pool.min {
                budgets.disrupt(&pool.name);
                drain(
                    ctx,
                    node,
                    pool,
                    why,
                    "the pool is at its maximum: draining it first",
                );
            } else {
                ctx.decision.reasons.push(Reason::ReplaceHeld {
                    node: name,
                    pool: pool.name.clone(),
                    why,
                    blocker: "the pool's minimum and maximum leave no room to replace it".into(),
                });
            }
        }
    }
    ctx.decision.reasons.extend(budgets.held());
}

/// `do-not-disrupt` on the node or a pod on it.
fn held_by_annotation(ctx: &Context<'_>, node: &Node) -> Option<String> {
    if node.annotation_is(DO_NOT_DISRUPT, "true") {
        return Some(format!("the node is annotated {DO_NOT_DISRUPT}=true"));
    }
    ctx.snapshot
        .pods
        .iter()
        .filter(|p| p.node_name.as_deref() == Some(node.name.as_str()) && !p.is_gone(ctx.now))
        .find(|p| p.annotation_is(DO_NOT_DISRUPT, "true"))
        .map(|p| format!("pod {} is {DO_NOT_DISRUPT}=true", p.key()))
}

fn drain(ctx: &mut Context<'_>, node: &Node, pool: &Pool, why: DisruptionReason, step: &str) {
    ctx.drain(&node.name, &pool.name);
    push(ctx, &node.name, pool, why, step);
}

fn push(ctx: &mut Context<'_>, node: &str, pool: &Pool, why: DisruptionReason, step: &str) {
    let age = ctx.now.since(
        ctx.snapshot
            .nodes
            .iter()
            .find(|n| n.name == node)
            .map_or(ctx.now, |n| n.created_at),
    );
    ctx.decision.reasons.push(Reason::Replacing {
        node: node.to_string(),
        pool: pool.name.clone(),
        why,
        age: Duration::from_secs(age.as_secs()),
        step: step.to_string(),
    });
}
