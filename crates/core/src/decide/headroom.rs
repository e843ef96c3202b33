//! Headroom: spare room a pool keeps ready, as placeholder pods the
//! planners treat like any other, the way cluster-autoscaler users run
//! low-priority pause pods. A placeholder sits on free room of its pool's
//! nodes (so a node holding one goes only if the room is found elsewhere)
//! or, when there is none, waits as an unschedulable pod (so a node is
//! launched for it, and none is removed meanwhile). Real pods never wait
//! on them: the room is free in the cluster, only the planner sees them.

use crate::decision::Reason;
use crate::model::{OwnerKind, POOL_LABEL, Pod, PodPhase, Toleration, TolerationOperator};
use crate::policy::Policy;
use crate::snapshot::Snapshot;
use crate::time::Time;

/// The namespace of the placeholders: no real pod lives there.
pub const NAMESPACE: &str = "k3scale-headroom";

/// `snapshot` with every pool's placeholders added, and what each pool
/// keeps; `None` when no pool asks for headroom.
pub(super) fn reserve(snapshot: &Snapshot, policy: &Policy) -> Option<(Snapshot, Vec<Reason>)> {
    if policy.pools.iter().all(|p| p.headroom.is_none()) {
        return None;
    }
    let mut snap = snapshot.clone();
    let mut free = crate::scheduling::free_capacity(&snap.nodes, &snap.pods);
    let mut notes = Vec::new();
    for pool in &policy.pools {
        let Some(headroom) = pool.headroom else {
            continue;
        };
        let mut waiting = 0;
        for i in 0..headroom.pods {
            let mut pod = Pod::new(NAMESPACE, &format!("{}-{i}", pool.name), headroom.requests);
            pod.uid = format!("headroom-{}-{i}", pool.name);
            pod.owner = OwnerKind::ReplicaSet;
            // Not expendable: it must be placed, and kept placed.
            pod.priority = policy.expendable_pods_priority_cutoff;
            pod.node_selector = [(POOL_LABEL.to_string(), pool.name.clone())].into();
            pod.tolerations = std::sync::Arc::from([Toleration {
                key: String::new(),
                operator: TolerationOperator::Exists,
                value: String::new(),
                effect: None,
            }]);
            let room = snap.nodes.iter().enumerate().find(|(j, n)| {
                n.pool.as_deref() == Some(pool.name.as_str())
                    && n.schedulable()
                    && headroom.requests.fits_in(&free[*j])
            });
            match room {
                Some((j, node)) => {
                    free[j] = free[j].saturating_sub(&headroom.requests);
                    pod.node_name = Some(node.name.clone());
                    pod.phase = PodPhase::Running;
                }
                None => {
                    // Unschedulable since ever: no grace period applies.
                    pod.phase = PodPhase::Pending;
                    pod.unschedulable_since = Some(Time::ZERO);
                    waiting += 1;
                }
            }
            snap.pods.push(pod);
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
