//! Scale-down, node by node as cluster-autoscaler does: a node is unneeded
//! when its pods can all move elsewhere (simulated) and its requested share
//! is under the threshold; one unneeded for `unneeded_time` without a break
//! is removed, empty ones first and in bulk. Never while pods are
//! unschedulable; the seed rules' cluster-wide CPU/memory gate is a setting.

use super::budgets::DisruptionBudgets;
use super::context::{Context, free_capacity};
use crate::decision::{Blocker, Direction, Reason, ScaleDown};
use crate::disruption::DisruptionReason;
use crate::model::{DO_NOT_DISRUPT, OwnerKind, Pod, SAFE_TO_EVICT, SCALE_DOWN_DISABLED, SYSTEM_NAMESPACE};
use crate::quantity::Resources;
use crate::scheduling::{Target, pack};
use crate::window::Unavailable;
use std::collections::{BTreeMap, HashMap};

/// At most this many "not removable" reasons per decision, so a big cluster's
/// status stays readable (the first ones are the most likely candidates).
const MAX_BLOCKER_REASONS: usize = 25;

pub(crate) fn plan(ctx: &mut Context<'_>, unschedulable: usize) {
    let policy = ctx.policy;
    let snapshot = ctx.snapshot;
    let rules = &policy.scale_down;
    if !rules.enabled {
        return;
    }
    if unschedulable > 0 {
        ctx.decision
            .reasons
            .push(Reason::ScaleDownBlockedByPending { pods: unschedulable });
        return;
    }
    if !snapshot.in_flight.is_empty() {
        ctx.decision.reasons.push(Reason::NodesInFlight {
            nodes: snapshot.in_flight.len(),
        });
        return;
    }
    if rules.cluster_gate {
        match cluster_is_cold(ctx) {
            Gate::Cold => {}
            Gate::NotCold => return,
            // Utilization cannot be judged without metrics; removing a node whose
            // pods fit elsewhere by their requests (or that has none) needs no
            // metrics, so it goes on.
            Gate::Unknown => ctx.decision.reasons.push(Reason::ScaleDownByRequestsOnly),
        }
    }
    // The delays hold removals, not the search: unneeded time keeps running.
    let mut may_remove = true;
    if let Some(remaining) = ctx.cooldown_left(snapshot.last_scale_up, rules.delay_after_scale_up) {
        ctx.decision.reasons.push(Reason::DelayAfterScaleUp { remaining });
        may_remove = false;
    }
    if let Some(remaining) = ctx.cooldown_left(snapshot.last_scale_down, rules.cooldown) {
        ctx.decision.reasons.push(Reason::Cooldown {
            direction: Direction::Down,
            remaining,
        });
        may_remove = false;
    }
    choose_nodes(ctx, may_remove);
}

/// The cluster-wide gate of the threshold rules.
enum Gate {
    /// Every signal is available and below its threshold.
    Cold,
    /// Some signal is at or above its threshold.
    NotCold,
    /// No signal is above its threshold, but some are unavailable.
    Unknown,
}

fn cluster_is_cold(ctx: &mut Context<'_>) -> Gate {
    let policy = ctx.policy;
    let snapshot = ctx.snapshot;
    let rules = &policy.scale_down;
    let mut unknown = false;
    let mut checks = vec![
        ("cpu", &snapshot.cpu, rules.cpu_for, rules.cpu_below),
        ("memory", &snapshot.memory, rules.memory_for, rules.memory_below),
    ];
    for rule in &policy.custom {
        if let Some(threshold) = rule.scale_down_below {
            match snapshot.custom.get(&rule.name) {
                Some(series) => checks.push((&rule.name, series, rule.window, threshold)),
                None => {
                    ctx.note_unavailable(&rule.name, rule.window, Direction::Down, &Unavailable::NoSamples);
                    unknown = true;
                }
            }
        }
    }
    let mut hot = false;
    for (name, series, window, threshold) in checks {
        match ctx.signal(name, series, window, Direction::Down) {
            Some(v) if v < threshold => {}
            Some(v) => {
                ctx.decision.reasons.push(Reason::NotBelow {
                    signal: name.to_string(),
                    observed: v,
                    threshold,
                    window,
                });
                hot = true;
            }
            None => unknown = true,
        }
    }
    match (hot, unknown) {
        (true, _) => Gate::NotCold,
        (false, true) => Gate::Unknown,
        (false, false) => Gate::Cold,
    }
}

struct Candidate<'s> {
    node: usize,
    /// How much longer it must stay unneeded before it may go.
    wait: std::time::Duration,
    pool: &'s str,
    utilization: f64,
    movable: Vec<&'s Pod>,
    price: f64,
    /// Requests left out of its utilization (DaemonSet pods, if so set).
    ignored: Resources,
}

/// Find the nodes removable together (the unneeded ones) and remove those
/// unneeded long enough, within the step's limits, when `may_remove`.
fn choose_nodes(ctx: &mut Context<'_>, may_remove: bool) {
    let policy = ctx.policy;
    let snapshot = ctx.snapshot;
    let rules = &policy.scale_down;
    let nodes = &snapshot.nodes;
    let mut free = free_capacity(ctx);
    let mut free_ext = crate::scheduling::free_extended(&snapshot.nodes, &snapshot.pods);

    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut pods_on: Vec<Vec<&Pod>> = vec![Vec::new(); nodes.len()];
    let now = ctx.now;
    for pod in snapshot.pods.iter().filter(|p| !p.is_gone(now)) {
        if let Some(&i) = pod.node_name.as_deref().and_then(|n| index.get(n)) {
            pods_on[i].push(pod);
        }
    }

    // Nodes this decision already drains (an interruption, a replacement).
    let leaving: Vec<String> = ctx.decision.scale_down.iter().map(|d| d.node.clone()).collect();
    let mut candidates: Vec<Candidate<'_>> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.schedulable() && !leaving.contains(&n.name))
        .filter_map(|(i, n)| {
            let pool = policy.pool(n.pool.as_deref()?)?;
            let ignored = if rules.ignore_daemonsets_utilization {
                pods_on[i]
                    .iter()
                    .filter(|p| p.is_node_bound())
                    .fold(Resources::ZERO, |sum, p| sum + p.requests)
            } else {
                Resources::ZERO
            };
            let used = n.allocatable.saturating_sub(&free[i]).saturating_sub(&ignored);
            let since = snapshot.unneeded_since.get(&n.name).copied().unwrap_or(ctx.now);
            Some(Candidate {
                node: i,
                wait: rules.unneeded_time.saturating_sub(ctx.now.since(since)),
                pool: &pool.name,
                utilization: used.dominant_share(&n.allocatable),
                movable: pods_on[i]
                    .iter()
                    .copied()
                    .filter(|p| !p.is_node_bound() && p.priority >= policy.expendable_pods_priority_cutoff)
                    .collect(),
                price: pool.template.price_per_hour,
                ignored,
            })
        })
        .collect();
    // Those unneeded long enough first (they must not lose their turn to
    // newer ones), then empty nodes, least utilized, fewest pods to move,
    // priciest, by name.
    candidates.sort_by(|a, b| {
        (!a.wait.is_zero())
            .cmp(&!b.wait.is_zero())
            .then((!a.movable.is_empty()).cmp(&!b.movable.is_empty()))
            .then(a.utilization.total_cmp(&b.utilization))
            .then(a.movable.len().cmp(&b.movable.len()))
            .then(b.price.total_cmp(&a.price))
            .then_with(|| nodes[a.node].name.cmp(&nodes[b.node].name))
    });
    if candidates.is_empty() {
        ctx.decision.reasons.push(Reason::NoCandidates);
        return;
    }

    // Host ports and inter-pod (anti-)affinity make a move depend on the pods there.
    let with_neighbours = snapshot.pods.iter().any(Pod::has_pod_predicates);
    let uniform_threshold = policy
        .pools
        .iter()
        .all(|p| p.scale_down_utilization_below.is_none());
    let mut removed = vec![false; nodes.len()];
    // Pods moved (in simulation) onto a node earlier in this step stay there:
    // that node, if removed later in the step, must move them too.
    let mut moved_onto: Vec<Vec<&Pod>> = vec![Vec::new(); nodes.len()];
    let mut budgets: BTreeMap<String, u32> = snapshot.pdbs.clone();
    let (mut empties, mut drains, mut blocked, mut unneeded_noted) = (0u32, 0u32, 0usize, 0usize);
    let mut disruption = DisruptionBudgets::of(ctx);
    // A node already leaving (cordoned: draining) does not keep its pool
    // at its minimum: it is going (cluster-autoscaler counts deletions in
    // progress the same way).
    for n in nodes.iter().filter(|n| n.cordoned) {
        if let Some(size) = n.pool.as_deref().and_then(|p| ctx.sizes.get_mut(p)) {
            *size = size.saturating_sub(1);
        }
    }
    // Empty nodes count towards the step too: with max_step = max_empty_step = 1
    // exactly one node goes per step, whatever its state.
    let total = rules.max_step.max(rules.max_empty_step);
    for c in &candidates {
        let movable: Vec<&Pod> = c.movable.iter().chain(&moved_onto[c.node]).copied().collect();
        let empty = movable.is_empty();
        let turn = may_remove
            && c.wait.is_zero()
            && empties + drains < total
            && if empty {
                empties < rules.max_empty_step
            } else {
                drains < rules.max_step
            };
        let node = &nodes[c.node];
        let received = !moved_onto[c.node].is_empty();
        let utilization = if received {
            // Its free room already has the received pods taken out.
            node.allocatable
                .saturating_sub(&free[c.node])
                .saturating_sub(&c.ignored)
                .dominant_share(&node.allocatable)
        } else {
            c.utilization
        };
        let threshold = policy.utilization_below(c.pool);
        let verdict = if !empty && utilization >= threshold {
            Err(Blocker::UtilizationTooHigh {
                utilization,
                threshold,
            })
        } else {
            check_removable(ctx, c, &movable, &budgets).and_then(|()| {
                let neighbours = with_neighbours.then_some((pods_on.as_slice(), moved_onto.as_slice()));
                let room = (free.as_slice(), free_ext.as_slice());
                let moves = simulate_moves(snapshot, c.node, &movable, room, &removed, neighbours)?;
                for (target, pod) in moves {
                    free[target] = free[target].saturating_sub(&pod.requests);
                    crate::quantity::extended_take(&mut free_ext[target], &pod.extended);
                    moved_onto[target].push(pod);
                }
                Ok(())
            })
        };
        match verdict {
            Ok(()) => {
                for pod in &movable {
                    if let Some(budget) = pod.pdb.as_ref().and_then(|n| budgets.get_mut(n)) {
                        *budget = budget.saturating_sub(1);
                    }
                }
                removed[c.node] = true;
                moved_onto[c.node].clear();
                *ctx.sizes.entry(c.pool.to_string()).or_default() -= 1;
                ctx.decision.unneeded.push(node.name.clone());
                let unneeded = |held_by| Reason::Unneeded {
                    node: node.name.clone(),
                    pool: c.pool.to_string(),
                    utilization,
                    empty,
                    remaining: c.wait,
                    held_by,
                };
                if !turn {
                    if unneeded_noted < MAX_BLOCKER_REASONS {
                        ctx.decision.reasons.push(unneeded(None));
                    }
                    unneeded_noted += 1;
                    continue;
                }
                let reason = if empty {
                    DisruptionReason::Empty
                } else {
                    DisruptionReason::Underutilized
                };
                if let Some(budget) = disruption.hold(c.pool, reason, ctx.now) {
                    ctx.decision.reasons.push(unneeded(Some(budget)));
                    continue;
                }
                disruption.disrupt(c.pool);
                if empty {
                    empties += 1;
                } else {
                    drains += 1;
                }
                ctx.decision.reasons.push(Reason::Removable {
                    node: node.name.clone(),
                    pool: c.pool.to_string(),
                    utilization,
                    empty,
                });
                ctx.decision.scale_down.push(ScaleDown {
                    node: node.name.clone(),
                    pool: c.pool.to_string(),
                    empty,
                    forced: false,
                });
            }
            Err(blocker) => {
                let too_high = matches!(blocker, Blocker::UtilizationTooHigh { .. });
                if blocked < MAX_BLOCKER_REASONS {
                    ctx.decision.reasons.push(Reason::NotRemovable {
                        node: node.name.clone(),
                        blocker,
                    });
                }
                blocked += 1;
                // Sorted by utilization: every later non-empty node is hotter,
                // unless pods moved onto this one made it hot or pools differ
                // in their thresholds.
                if too_high && !received && uniform_threshold {
                    break;
                }
            }
        }
    }
    ctx.decision.reasons.extend(disruption.held());
}

/// Annotations, pool minimum and per-pod blockers (before any simulation).
fn check_removable(
    ctx: &Context<'_>,
    c: &Candidate<'_>,
    movable: &[&Pod],
    budgets: &BTreeMap<String, u32>,
) -> Result<(), Blocker> {
    let node = &ctx.snapshot.nodes[c.node];
    if node.annotation_is(DO_NOT_DISRUPT, "true") {
        return Err(Blocker::NodeDoNotDisrupt);
    }
    if node.annotation_is(SCALE_DOWN_DISABLED, "true") {
        return Err(Blocker::NodeScaleDownDisabled);
    }
    let min = ctx.policy.pool(c.pool).map_or(0, |p| p.min);
    if ctx.size(c.pool) <= min {
        return Err(Blocker::PoolAtMin {
            pool: c.pool.to_string(),
            min,
        });
    }
    let mut wanted: BTreeMap<&str, (u32, &Pod)> = BTreeMap::new();
    for pod in movable {
        pod_blocker(pod, ctx.policy.scale_down.evict_local_storage)?;
        if ctx.policy.scale_down.skip_nodes_with_system_pods
            && pod.namespace == SYSTEM_NAMESPACE
            && pod.pdb.is_none()
            && !pod.annotation_is(SAFE_TO_EVICT, "true")
        {
            return Err(Blocker::SystemPod { pod: pod.key() });
        }
        if let Some(pdb) = &pod.pdb {
            wanted.entry(pdb).or_insert((0, pod)).0 += 1;
        }
    }
    // One disruption allowed is enough: the drain evicts one pod at a time,
    // retrying the budget's 429s while replacements become ready (until the
    // drain deadline), as cluster-autoscaler does.
    for (pdb, (needed, pod)) in wanted {
        if budgets.get(pdb).copied().unwrap_or(0) == 0 {
            return Err(Blocker::PdbExhausted {
                pod: pod.key(),
                pdb: pdb.to_string(),
                needed,
            });
        }
    }
    Ok(())
}

/// Why this pod stops its node from being drained, if it does.
pub fn pod_blocker(pod: &Pod, evict_local_storage: bool) -> Result<(), Blocker> {
    let key = || pod.key();
    if pod.annotation_is(DO_NOT_DISRUPT, "true") {
        return Err(Blocker::DoNotDisrupt { pod: key() });
    }
    if pod.annotation_is(SAFE_TO_EVICT, "false") {
        return Err(Blocker::SafeToEvictFalse { pod: key() });
    }
    // An explicit safe-to-evict=true overrides the controller and storage checks, as in cluster-autoscaler.
    if pod.annotation_is(SAFE_TO_EVICT, "true") {
        return Ok(());
    }
    if pod.owner == OwnerKind::None {
        return Err(Blocker::NoController { pod: key() });
    }
    if pod.local_storage && !evict_local_storage {
        return Err(Blocker::LocalStorage { pod: key() });
    }
    Ok(())
}

/// The pods of each node, and those moved onto it in this step.
type Neighbours<'v, 's> = (&'v [Vec<&'s Pod>], &'v [Vec<&'s Pod>]);

/// Where the pods of node `from` would go: (target node index, pod) per
/// pod, or the first pod that fits nowhere.
fn simulate_moves<'s>(
    snapshot: &'s crate::snapshot::Snapshot,
    from: usize,
    movable: &[&'s Pod],
    (free, free_ext): (&[Resources], &[crate::quantity::Extended]),
    removed: &[bool],
    neighbours: Option<Neighbours<'_, 's>>,
) -> Result<Vec<(usize, &'s Pod)>, Blocker> {
    let nodes = &snapshot.nodes;
    let (indices, mut targets): (Vec<usize>, Vec<Target<'_>>) = nodes
        .iter()
        .enumerate()
        .filter(|(i, n)| *i != from && !removed[*i] && n.schedulable())
        .map(|(i, n)| {
            (
                i,
                Target {
                    name: Some(&n.name),
                    labels: &n.labels,
                    taints: &n.taints,
                    free: free[i],
                    extended: free_ext[i].clone(),
                    // Only when some pod's placement depends on its neighbours.
                    pods: match neighbours {
                        Some((pods_on, moved_onto)) => {
                            pods_on[i].iter().chain(&moved_onto[i]).copied().collect()
                        }
                        None => Vec::new(),
                    },
                },
            )
        })
        .unzip();
    let placed = pack(movable, &mut targets);
    movable
        .iter()
        .zip(placed)
        .map(|(pod, at)| match at {
            Some(t) => Ok((indices[t], *pod)),
            None => Err(Blocker::PodsDoNotFit { pod: pod.key() }),
        })
        .collect()
}
