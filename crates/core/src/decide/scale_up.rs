//! Scale-up: pools below their minimum, unschedulable pods (bin-packed onto
//! pool templates) and sustained utilization thresholds.

use super::context::{Context, free_capacity};
use crate::decision::{Direction, Reason};
use crate::model::{Pod, Pool};
use crate::policy::{Expander, PendingPods};
use crate::quantity::{Resources, share};
use crate::scheduling::{
    Neighbourhood, NewNodeEstimate, Placed, Target, classify, estimate_new_nodes, pack, pack_indexed,
};
use crate::window::Unavailable;
use std::cmp::Ordering;
use std::collections::HashMap;

/// Bring every pool up to its minimum (no cooldown: the bound is the contract).
pub(crate) fn to_min(ctx: &mut Context<'_>) {
    for pool in &ctx.policy.pools {
        let current = ctx.size(&pool.name);
        if current >= pool.min {
            continue;
        }
        let count = (pool.min - current).min(ctx.headroom(pool));
        if count > 0 {
            ctx.decision.reasons.push(Reason::BelowMin {
                pool: pool.name.clone(),
                current,
                min: pool.min,
            });
            ctx.decision.add_up(&pool.name, count);
            ctx.grow(pool, count);
        }
    }
}

/// Add exactly the nodes the unschedulable pods need, after counting free
/// capacity and the nodes already launching.
pub(crate) fn for_pending(ctx: &mut Context<'_>, pending: &[&Pod]) {
    if pending.is_empty() {
        return;
    }
    let snapshot = ctx.snapshot;
    let free = free_capacity(ctx);
    let free_ext = crate::scheduling::free_extended(&snapshot.nodes, &snapshot.pods);
    // Host ports and inter-pod (anti-)affinity look at the pods of each node.
    let neighbours = pending.iter().any(|p| p.has_pod_predicates())
        || snapshot.pods.iter().any(|p| !p.pod_anti_affinity.is_empty());
    let mut pods_on: HashMap<&str, Vec<&Pod>> = HashMap::new();
    if neighbours {
        for pod in snapshot.pods.iter().filter(|p| !p.is_terminal()) {
            if let Some(node) = pod.node_name.as_deref() {
                pods_on.entry(node).or_default().push(pod);
            }
        }
    }
    let mut existing: Vec<Target<'_>> = snapshot
        .nodes
        .iter()
        .zip(free.iter().zip(free_ext))
        // Pods on cordoned or starting nodes still count for anti-affinity
        // and topology spread, as in the scheduler's snapshot; they take none.
        .filter(|(n, _)| n.schedulable() || neighbours)
        .map(|(n, (f, ext))| Target {
            name: Some(&n.name),
            labels: &n.labels,
            taints: &n.taints,
            free: if n.schedulable() { *f } else { Resources::ZERO },
            extended: ext,
            pods: pods_on.remove(n.name.as_str()).unwrap_or_default(),
        })
        .collect();
    let mut index = Placed::of(&existing, pending);
    let placed = pack_indexed(pending, &mut existing, &mut index);
    // The scheduler is the truth: a pod it has rejected for a while although
    // the planner fits it here meets a constraint the planner does not model.
    let mut distrusted = Vec::new();
    let mut rest: Vec<&Pod> = Vec::new();
    for (pod, at) in pending.iter().zip(&placed) {
        if at.is_none() {
            rest.push(pod);
            continue;
        }
        let key = pod.key();
        let since = snapshot.fit_believed_since.get(&key).copied();
        ctx.decision.fit_existing.push(key);
        if since.is_some_and(|t| ctx.now.since(t) >= ctx.policy.scale_up.trust_scheduler_after) {
            distrusted.push(*pod);
            rest.push(pod);
        }
    }
    if !distrusted.is_empty() {
        ctx.decision.reasons.push(Reason::SchedulerDisagrees {
            pods: distrusted.len(),
            after: ctx.policy.scale_up.trust_scheduler_after,
            examples: distrusted.iter().take(3).map(|p| p.key()).collect(),
        });
    }
    let fit_existing = pending.len() - rest.len();

    let mut in_flight: Vec<Target<'_>> = snapshot
        .in_flight
        .iter()
        .filter_map(|m| ctx.policy.pool(&m.pool))
        .map(|p| ctx.shape(p).new_node())
        .collect();
    // Machines on their way, then new nodes, are judged among the
    // cluster's pods (and those just placed) when a pod looks at them.
    let (placed, mut around) = if neighbours {
        let mut around = Neighbourhood::packed(existing, index);
        (around.pack_in_flight(&rest, in_flight), around)
    } else {
        (pack(&rest, &mut in_flight), Neighbourhood::default())
    };
    let before = rest.len();
    rest = unplaced(&rest, &placed);
    let fit_in_flight = before - rest.len();
    ctx.decision.reasons.push(Reason::UnschedulablePods {
        pods: pending.len(),
        fit_existing,
        fit_in_flight,
        need_new_nodes: rest.len(),
    });

    let mut candidates: Vec<&Pool> = ctx.policy.pools.iter().collect();
    while !rest.is_empty() {
        let headrooms: Vec<u32> = candidates.iter().map(|p| ctx.headroom(p)).collect();
        let classes = classify(&rest);
        let best = candidates
            .iter()
            .zip(headrooms)
            .enumerate()
            .filter_map(|(i, (pool, headroom))| {
                let est = estimate_new_nodes(&rest, &classes, ctx.shape(pool), headroom, &mut around);
                (!est.placed.is_empty()).then_some((i, *pool, est))
            })
            .min_by(|a, b| compare_options(ctx.policy.expander, (a.1, &a.2), (b.1, &b.2)));
        let Some((i, pool, est)) = best else { break };
        candidates.remove(i);
        ctx.decision.reasons.push(Reason::BinPacked {
            pool: pool.name.clone(),
            nodes: est.nodes,
            pods: est.placed.len(),
        });
        let split = if ctx.policy.balance_similar_pools {
            balance(ctx, pool, &est, &rest, &classes, &mut around)
        } else {
            vec![(pool, est.nodes)]
        };
        if split.len() > 1 {
            ctx.decision.reasons.push(Reason::Balanced {
                nodes: split.iter().map(|(p, n)| (p.name.clone(), *n)).collect(),
            });
        }
        for (p, n) in split {
            ctx.decision.add_up(&p.name, n);
            ctx.grow(p, n);
        }
        let mut taken = vec![false; rest.len()];
        for &i in &est.placed {
            taken[i] = true;
            let triggering = &mut ctx.decision.triggering_pods;
            let pod = rest[i];
            // A placeholder is no pod of the cluster's: no Event for it.
            if triggering.len() < crate::decision::MAX_TRIGGERING_PODS
                && pod.namespace != super::headroom::NAMESPACE
            {
                triggering.push(crate::decision::TriggeringPod {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    uid: pod.uid.clone(),
                    pool: pool.name.clone(),
                });
            }
        }
        rest = rest
            .iter()
            .zip(taken)
            .filter(|(_, t)| !t)
            .map(|(p, _)| *p)
            .collect();
    }
    if !rest.is_empty() {
        explain_leftovers(ctx, &rest, &mut around);
    }
}

/// Labels that tell pools apart without making them different machines.
const BALANCE_IGNORED_LABELS: [&str; 3] = [
    crate::model::POOL_LABEL,
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
];

/// Whether two pools launch the same machines but for their zone (and name).
fn similar(a: &Pool, b: &Pool) -> bool {
    let (ta, tb) = (&a.template, &b.template);
    let labels = |t: &'_ crate::model::NodeTemplate| {
        t.labels
            .iter()
            .filter(|(k, _)| !BALANCE_IGNORED_LABELS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<crate::model::Labels>()
    };
    a.name != b.name
        && ta.allocatable == tb.allocatable
        && ta.extended == tb.extended
        && ta.taints == tb.taints
        && a.provider == b.provider
        && labels(ta) == labels(tb)
}

/// `balance_similar_pools`: the `est.nodes` nodes `chosen`'s estimate needs,
/// spread over it and the similar pools that would take the same pods, the
/// smallest pool first (as cluster-autoscaler balances node groups).
fn balance<'a, 'p: 'a>(
    ctx: &mut Context<'p>,
    chosen: &'p Pool,
    est: &NewNodeEstimate,
    rest: &[&'a Pod],
    classes: &[crate::scheduling::PodClass<'a>],
    around: &mut Neighbourhood<'a>,
) -> Vec<(&'p Pool, u32)> {
    let policy = ctx.policy;
    let mut group: Vec<(&'p Pool, u32, u32)> = vec![(chosen, ctx.size(&chosen.name), ctx.headroom(chosen))];
    for pool in policy.pools.iter().filter(|p| similar(chosen, p)) {
        let headroom = ctx.headroom(pool);
        if headroom == 0 {
            continue;
        }
        // Only a pool that takes the same pods (a zone selector may not).
        let same = estimate_new_nodes(rest, classes, ctx.shape(pool), headroom, around);
        if same.placed == est.placed {
            group.push((pool, ctx.size(&pool.name), headroom));
        }
    }
    let mut added = vec![0u32; group.len()];
    for _ in 0..est.nodes {
        let next = (0..group.len())
            .filter(|&i| added[i] < group[i].2)
            .min_by(|&a, &b| {
                (group[a].1 + added[a])
                    .cmp(&(group[b].1 + added[b]))
                    .then_with(|| group[a].0.name.cmp(&group[b].0.name))
            });
        match next {
            Some(i) => added[i] += 1,
            None => break,
        }
    }
    group
        .iter()
        .zip(added)
        .filter(|(_, n)| *n > 0)
        .map(|((pool, _, _), n)| (*pool, n))
        .collect()
}

fn unplaced<'p>(pods: &[&'p Pod], placed: &[Option<usize>]) -> Vec<&'p Pod> {
    pods.iter()
        .zip(placed)
        .filter(|(_, at)| at.is_none())
        .map(|(p, _)| *p)
        .collect()
}

/// Pods no pool took: at max capacity (could fit) or never fitting (say why,
/// naming the predicate: a node's shape, or the pods a new node would join).
fn explain_leftovers<'a, 'p: 'a>(ctx: &mut Context<'p>, rest: &[&'a Pod], around: &mut Neighbourhood<'a>) {
    let policy = ctx.policy;
    let mut at_max: Vec<(&Pool, Vec<&Pod>)> = Vec::new();
    for class in classify(rest) {
        let pod = class.example;
        let members: Vec<&Pod> = class.members.iter().map(|&i| rest[i]).collect();
        let mut why = Vec::new();
        let mut fits_some = None;
        for pool in &policy.pools {
            match around.check_new_node(pod, ctx.shape(pool)) {
                Ok(()) => {
                    fits_some.get_or_insert(pool);
                }
                Err(unfit) => why.push(format!("{}: {unfit}", pool.name)),
            }
        }
        match fits_some {
            Some(pool) => match at_max.iter_mut().find(|(p, _)| p.name == pool.name) {
                Some((_, pods)) => pods.extend(members),
                None => at_max.push((pool, members)),
            },
            None => {
                if ctx.policy.pools.is_empty() {
                    why.push("no pools configured".to_string());
                }
                ctx.decision.reasons.push(Reason::PodsCannotFit {
                    count: members.len(),
                    examples: members.iter().take(3).map(|p| p.key()).collect(),
                    why,
                });
            }
        }
    }
    for (pool, pods) in at_max {
        if ctx
            .snapshot
            .backoff
            .get(&pool.name)
            .is_some_and(|hold| hold.until > ctx.now)
        {
            continue; // already explained as a backoff
        }
        if ctx.size(&pool.name) < pool.max {
            // Room in the pool: a cluster-wide limit stopped it (and says so).
            ctx.headroom(pool);
            continue;
        }
        let classes = classify(&pods);
        let wanted = estimate_new_nodes(
            &pods,
            &classes,
            ctx.shape(pool),
            u32::MAX,
            &mut Neighbourhood::default(),
        )
        .nodes;
        ctx.decision.reasons.push(Reason::AtMaxCapacity {
            pool: pool.name.clone(),
            max: pool.max,
            wanted,
        });
    }
}

/// Order two scale-up options by the expander (lower is better), then
/// deterministic tie-breakers.
fn compare_options(
    expander: Expander,
    a: (&Pool, &NewNodeEstimate),
    b: (&Pool, &NewNodeEstimate),
) -> Ordering {
    let waste = |(p, e): (&Pool, &NewNodeEstimate)| {
        let cap = p.template.allocatable;
        let n = u64::from(e.nodes.max(1));
        (1.0 - share(e.used.cpu_milli, cap.cpu_milli * n))
            + (1.0 - share(e.used.memory_bytes, cap.memory_bytes * n))
    };
    let price = |(p, e): (&Pool, &NewNodeEstimate)| {
        f64::from(e.nodes) * p.template.price_per_hour / e.placed.len() as f64
    };
    let by_waste = waste(a).total_cmp(&waste(b));
    let by_price = price(a).total_cmp(&price(b));
    let primary = match expander {
        Expander::LeastWaste => by_waste.then(by_price),
        Expander::Price => by_price.then(by_waste),
        Expander::Priority => b.0.priority.cmp(&a.0.priority).then(by_waste),
    };
    primary.then_with(|| a.0.name.cmp(&b.0.name))
}

/// Sustained CPU / memory / custom thresholds (and, in `threshold` mode,
/// "any pod unschedulable"): add nodes to the preferred pool, up to `max_step`.
pub(crate) fn for_utilization(ctx: &mut Context<'_>, pending: &[&Pod]) {
    let policy = ctx.policy;
    let rules = &policy.scale_up;
    let snapshot = ctx.snapshot;
    let signals = [
        (
            "cpu",
            &snapshot.cpu,
            rules.cpu_for,
            rules.cpu_above,
            Some(Capacity::Cpu),
        ),
        (
            "memory",
            &snapshot.memory,
            rules.memory_for,
            rules.memory_above,
            Some(Capacity::Memory),
        ),
    ];
    let mut custom = Vec::new();
    for rule in &policy.custom {
        match (rule.scale_up_above, snapshot.custom.get(&rule.name)) {
            (Some(threshold), Some(series)) => {
                custom.push((rule.name.as_str(), series, rule.window, threshold, None))
            }
            (Some(_), None) => {
                ctx.note_unavailable(&rule.name, rule.window, Direction::Up, &Unavailable::NoSamples)
            }
            (None, _) => {}
        }
    }
    let mut fired = Vec::new();
    // (observed, threshold, capacity it measures) of each fired rule, to size the step.
    let mut over = Vec::new();
    for (name, series, window, threshold, capacity) in signals.into_iter().chain(custom) {
        let Some(observed) = ctx.signal(name, series, window, Direction::Up) else {
            continue;
        };
        if observed <= threshold {
            continue;
        }
        fired.push(Reason::Above {
            signal: name.to_string(),
            observed,
            threshold,
            window,
        });
        over.push((observed, threshold, capacity));
    }
    if rules.pending_pods == PendingPods::Threshold && !pending.is_empty() {
        fired.push(Reason::Above {
            signal: "unschedulable_pods".to_string(),
            observed: pending.len() as f64,
            threshold: 0.0,
            window: rules.pending_grace,
        });
        over.push((pending.len() as f64, 0.0, None));
    }
    if fired.is_empty() {
        return;
    }
    ctx.decision.reasons.extend(fired);
    if !ctx.decision.scale_up.is_empty() {
        return; // this round already adds capacity
    }
    if let Some(remaining) = ctx.cooldown_left(snapshot.last_scale_up, rules.cooldown) {
        ctx.decision.reasons.push(Reason::Cooldown {
            direction: Direction::Up,
            remaining,
        });
        return;
    }
    if !snapshot.in_flight.is_empty() {
        ctx.decision.reasons.push(Reason::NodesInFlight {
            nodes: snapshot.in_flight.len(),
        });
        return;
    }
    let preferred = preferred_pool(ctx);
    // For cpu and memory: enough nodes to bring the signal back under its
    // threshold; `max_step` for signals without a capacity model.
    let ready = snapshot
        .nodes
        .iter()
        .filter(|n| n.ready)
        .fold(Resources::ZERO, |sum, n| sum + n.allocatable);
    let per_node = preferred.map(|p| p.template.allocatable).unwrap_or_default();
    let wanted = over
        .into_iter()
        .map(|(observed, threshold, capacity)| {
            let sizes = capacity.map(|c| (c.of(&ready), c.of(&per_node)));
            nodes_to_relieve(observed, threshold, sizes).unwrap_or(rules.max_step)
        })
        .max()
        .unwrap_or(rules.max_step);
    match preferred {
        Some(pool) => {
            let count = wanted.min(rules.max_step).min(ctx.headroom(pool));
            ctx.decision.add_up(&pool.name, count);
            ctx.grow(pool, count);
        }
        None => {
            let full: Vec<Reason> = policy
                .pools
                .iter()
                .filter(|p| ctx.size(&p.name) >= p.max)
                .map(|p| Reason::AtMaxCapacity {
                    pool: p.name.clone(),
                    max: p.max,
                    wanted,
                })
                .collect();
            ctx.decision.reasons.extend(full);
        }
    }
}

/// Which resource a utilization signal measures.
#[derive(Debug, Clone, Copy)]
enum Capacity {
    Cpu,
    Memory,
}

impl Capacity {
    fn of(self, r: &Resources) -> u64 {
        match self {
            Capacity::Cpu => r.cpu_milli,
            Capacity::Memory => r.memory_bytes,
        }
    }
}

/// New nodes of `per_node` capacity that bring `observed` utilization of
/// `total` capacity down to `threshold` (at least one).
fn nodes_to_relieve(observed: f64, threshold: f64, capacity: Option<(u64, u64)>) -> Option<u32> {
    let (total, per_node) = capacity.filter(|(t, p)| *t > 0 && *p > 0)?;
    let missing = observed * total as f64 / threshold - total as f64;
    Some(((missing / per_node as f64).ceil() as u32).max(1))
}

/// The pool utilization-driven scale-ups add to: the highest priority with the
/// `priority` expander, otherwise the lowest price per CPU core; with room left.
fn preferred_pool<'p>(ctx: &mut Context<'p>) -> Option<&'p Pool> {
    let per_core = |p: &Pool| p.template.price_per_hour / (p.template.allocatable.cpu_milli.max(1) as f64);
    let policy = ctx.policy;
    let open: Vec<&Pool> = policy.pools.iter().filter(|p| ctx.headroom(p) > 0).collect();
    open.into_iter().min_by(|a, b| {
        let order = match policy.expander {
            Expander::Priority => b.priority.cmp(&a.priority),
            _ => per_core(a).total_cmp(&per_core(b)),
        };
        order.then_with(|| a.name.cmp(&b.name))
    })
}
