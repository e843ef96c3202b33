//! Headroom: spare room kept ready, as placeholder pods the planners
//! treat like any other, the way cluster-autoscaler users run low-priority
//! pause pods: a pool's `headroom`, and the rise `policy.predictive`
//! forecasts within a boot time. A placeholder sits on free room of its pool's
//! nodes (so a node holding one goes only if the room is found elsewhere)
//! or, when there is none, waits as an unschedulable pod (so a node is
//! launched for it, and none is removed meanwhile). Real pods never wait
//! on them: the room is free in the cluster, only the planner sees them.

use crate::decision::Reason;
use crate::model::{OwnerKind, POOL_LABEL, Pod, PodPhase, Toleration, TolerationOperator};
use crate::policy::Policy;
use crate::quantity::Resources;
use crate::scheduling::check_constraints;
use crate::snapshot::Snapshot;
use crate::time::Time;

/// The namespace of the placeholders: no real pod lives there.
pub const NAMESPACE: &str = "k3scale-headroom";

/// `snapshot` with every pool's placeholders and the forecast's added, and
/// what each keeps; `None` when there are none.
pub(super) fn reserve(snapshot: &Snapshot, policy: &Policy, now: Time) -> Option<(Snapshot, Vec<Reason>)> {
    let forecast = forecast_pods(snapshot, policy, now);
    if policy.pools.iter().all(|p| p.headroom.is_none()) && forecast.is_none() {
        return None;
    }
    let mut snap = snapshot.clone();
    let mut free = crate::scheduling::free_capacity(&snap.nodes, &snap.pods);
    let mut notes = Vec::new();
    if let Some((count, each, rise)) = forecast {
        let mut waiting = 0;
        for i in 0..count {
            let pod = placeholder(&format!("forecast-{i}"), each, policy);
            waiting += u32::from(place(&mut snap, &mut free, pod));
        }
        notes.push(Reason::Forecast {
            cpu_milli: rise.cpu_milli,
            memory_bytes: rise.memory_bytes,
            pods: count,
            waiting,
        });
    }
    for pool in &policy.pools {
        let Some(headroom) = pool.headroom else {
            continue;
        };
        let mut waiting = 0;
        for i in 0..headroom.pods {
            let mut pod = placeholder(&format!("{}-{i}", pool.name), headroom.requests, policy);
            pod.node_selector = [(POOL_LABEL.to_string(), pool.name.clone())].into();
            pod.tolerations = std::sync::Arc::from([Toleration {
                key: String::new(),
                operator: TolerationOperator::Exists,
                value: String::new(),
                effect: None,
            }]);
            waiting += u32::from(place(&mut snap, &mut free, pod));
        }
        notes.push(Reason::Headroom {
            pool: pool.name.clone(),
            pods: headroom.pods,
            cpu_milli: headroom.requests.cpu_milli,
            memory_bytes: headroom.requests.memory_bytes,
            waiting,
        });
    }
    Some((snap, notes))
}

/// Put `pod` on the first schedulable node it may run on (selectors and
/// taints, as the scheduler checks them) with room for it, or leave it
/// unschedulable since ever (no grace period applies); returns whether it waits.
fn place(snap: &mut Snapshot, free: &mut [Resources], mut pod: Pod) -> bool {
    let room = snap.nodes.iter().enumerate().find(|(j, n)| {
        n.schedulable()
            && pod.requests.fits_in(&free[*j])
            && check_constraints(&pod, Some(&n.name), &n.labels, &n.taints).is_ok()
    });
    let waits = match room {
        Some((j, node)) => {
            free[j] = free[j].saturating_sub(&pod.requests);
            pod.node_name = Some(node.name.clone());
            pod.phase = PodPhase::Running;
            false
        }
        None => {
            pod.unschedulable_since = Some(Time::ZERO);
            true
        }
    };
    snap.pods.push(pod);
    waits
}

/// A placeholder pod: movable (a ReplicaSet's), not expendable (it must be
/// placed, and kept placed), pending until put on a node.
fn placeholder(name: &str, requests: Resources, policy: &Policy) -> Pod {
    let mut pod = Pod::new(NAMESPACE, name, requests);
    pod.uid = format!("{NAMESPACE}-{name}");
    pod.owner = OwnerKind::ReplicaSet;
    pod.priority = policy.expendable_pods_priority_cutoff;
    pod.phase = PodPhase::Pending;
    pod
}

/// The forecast's placeholders: how many, each the workloads' average
/// pod, for which expected rise; none without `policy.predictive`, history
/// or a rise. At most `max_extra_nodes` of the first pool's nodes' worth.
fn forecast_pods(snapshot: &Snapshot, policy: &Policy, now: Time) -> Option<(u32, Resources, Resources)> {
    let predictive = policy.predictive?;
    let lead = policy
        .pools
        .iter()
        .map(|p| p.template.boot_time)
        .max()
        .unwrap_or_default()
        + LEAD_MARGIN;
    let rise = snapshot.demand.expected_rise(now, lead)?;
    let workload: Vec<&Pod> = snapshot
        .pods
        .iter()
        .filter(|p| !p.is_terminal() && !p.is_node_bound())
        .collect();
    let total = crate::forecast::requested(&snapshot.pods);
    let n = workload.len() as u64;
    if n == 0 || (rise.cpu_milli == 0 && rise.memory_bytes == 0) {
        return None;
    }
    let each = Resources::pod((total.cpu_milli / n).max(1), (total.memory_bytes / n).max(1));
    let wanted = rise
        .cpu_milli
        .div_ceil(each.cpu_milli)
        .max(rise.memory_bytes.div_ceil(each.memory_bytes));
    let node = policy.pools.first()?.template.allocatable;
    let per_node = (node.cpu_milli / each.cpu_milli)
        .min(node.memory_bytes / each.memory_bytes)
        .min(node.pods)
        .max(1);
    let count = wanted.min(per_node * u64::from(predictive.max_extra_nodes));
    Some((u32::try_from(count).unwrap_or(u32::MAX), each, rise))
}

/// Beyond the slowest boot: the decision's own delay and the scheduler's.
const LEAD_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);
