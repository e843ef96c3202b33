//! Disruption budgets as one decision chooses removals: the nodes of each
//! pool and of the cluster, those already leaving, and the unneeded nodes
//! each budget held back.

use super::context::Context;
use crate::decision::Reason;
use crate::disruption::{DisruptionReason, allowance};
use std::collections::BTreeMap;

/// The counts one decision's removals are checked against.
pub(super) struct DisruptionBudgets<'p> {
    policy: &'p crate::policy::Policy,
    /// Scope (a pool, or `cluster`) → (nodes, disrupting).
    counts: BTreeMap<String, (u32, u32)>,
    /// (scope, budget) → (allowed, disrupting, nodes held).
    held: BTreeMap<(String, String), (u32, u32, u32)>,
}

const CLUSTER: &str = "cluster";

impl<'p> DisruptionBudgets<'p> {
    /// The counts as `ctx` stands: nodes leaving are those cordoned, those
    /// this decision already removes, and those being replaced or
    /// consolidated.
    pub(super) fn of(ctx: &Context<'p>) -> Self {
        let policy = ctx.policy;
        let snapshot = ctx.snapshot;
        let mut budgets = DisruptionBudgets {
            policy,
            counts: BTreeMap::new(),
            held: BTreeMap::new(),
        };
        // No budget anywhere (the default): no count is ever looked at.
        if policy.disruption.is_empty() && policy.pools.iter().all(|p| p.disruption.is_empty()) {
            return budgets;
        }
        for n in &snapshot.nodes {
            let Some(pool) = n.pool.as_deref().filter(|p| policy.pool(p).is_some()) else {
                continue;
            };
            let leaving = n.cordoned
                || snapshot.replacing.contains_key(&n.name)
                || ctx.decision.replacing.contains(&n.name)
                || snapshot.consolidating.contains_key(&n.name)
                || ctx.decision.scale_down.iter().any(|d| d.node == n.name);
            for scope in [pool, CLUSTER] {
                let c = budgets.counts.entry(scope.to_string()).or_default();
                c.0 += 1;
                c.1 += u32::from(leaving);
            }
        }
        budgets
    }

    /// The budget (pool's first, then the cluster's) that allows no more
    /// removals for `reason` in `pool` now, if one does.
    pub(super) fn hold(
        &mut self,
        pool: &str,
        reason: DisruptionReason,
        now: crate::time::Time,
    ) -> Option<String> {
        let own = self
            .policy
            .pool(pool)
            .map_or(&[][..], |p| p.disruption.as_slice());
        for (scope, budgets) in [(pool, own), (CLUSTER, self.policy.disruption.as_slice())] {
            let (total, disrupting) = self.counts.get(scope).copied().unwrap_or_default();
            if let Some(a) = allowance(budgets, reason, total, disrupting, now)
                && a.left == 0
            {
                let held = self
                    .held
                    .entry((scope.to_string(), a.budget.name.clone()))
                    .or_insert((a.allowed, disrupting, 0));
                held.2 += 1;
                return Some(a.budget.name.clone());
            }
        }
        None
    }

    /// `pool` loses one more node in this step.
    pub(super) fn disrupt(&mut self, pool: &str) {
        for scope in [pool, CLUSTER] {
            if let Some(c) = self.counts.get_mut(scope) {
                c.1 += 1;
            }
        }
    }

    pub(super) fn held(self) -> impl Iterator<Item = Reason> {
        self.held.into_iter().map(
            |((scope, budget), (allowed, disrupting, held))| Reason::DisruptionBudget {
                scope,
                budget,
                allowed,
                disrupting,
                held,
            },
        )
    }
}
