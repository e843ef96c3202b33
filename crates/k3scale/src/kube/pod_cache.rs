//! How the cache keeps 30,000 pods in a few MiB: what the pods of one
//! workload have in common (requests, constraints, owner, labels) is stored
//! once and shared; each pod keeps only its identity and state. The core's
//! `Pod` is rebuilt from these when a snapshot is made.

use super::convert::{self, PdbIndex};
use k3scale_core::model::{
    DAEMONSET_POD, DO_NOT_DISRUPT, HostPort, Labels, NodeAffinity, OwnerKind, PodAffinityTerm, PodPhase,
    SAFE_TO_EVICT, Toleration, TopologySpread,
};
use k3scale_core::quantity::Extended;
use k3scale_core::{Pod, Resources, Time};
use k8s_openapi::api::core::v1 as core;
use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

/// What the pods of one workload share.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PodShape {
    termination_grace: Duration,
    requests: Resources,
    extended: Arc<Extended>,
    node_selector: Labels,
    tolerations: Arc<[Toleration]>,
    affinity: NodeAffinity,
    host_ports: Arc<[HostPort]>,
    pod_affinity: Arc<[PodAffinityTerm]>,
    pod_anti_affinity: Arc<[PodAffinityTerm]>,
    topology_spread: Arc<[TopologySpread]>,
    owner: OwnerKind,
    /// Only the annotations the core reads.
    annotations: Labels,
    local_storage: bool,
    priority: i32,
    /// For PDB selectors.
    pub labels: Labels,
}

/// One pod in the cache; its key in the cache is `namespace/name`.
#[derive(Debug, Clone)]
pub struct CachedPod {
    uid: Box<str>,
    pub node_name: Option<Arc<str>>,
    phase: PodPhase,
    unschedulable_since: Option<Time>,
    deleted_at: Option<Time>,
    nominated_node: Option<Arc<str>>,
    /// The PersistentVolumeClaims it mounts (per pod: a StatefulSet's differ).
    pub claims: Box<[String]>,
    pub shape: Arc<PodShape>,
}

/// Equal values stored once. Entries no one else holds any more are
/// dropped when the set has doubled since the last sweep.
#[derive(Debug)]
struct Interner<T: ?Sized> {
    set: HashSet<Arc<T>>,
    sweep_at: usize,
}

impl<T: ?Sized + Hash + Eq> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            set: HashSet::new(),
            sweep_at: 1024,
        }
    }
}

impl<T: ?Sized + Hash + Eq> Interner<T> {
    fn share(&mut self, value: Arc<T>) -> Arc<T> {
        if let Some(shared) = self.set.get(&value) {
            return shared.clone();
        }
        if self.set.len() >= self.sweep_at {
            self.set.retain(|v| Arc::strong_count(v) > 1);
            self.sweep_at = (self.set.len() * 2).max(1024);
        }
        self.set.insert(value.clone());
        value
    }
}

/// Turns watched pods into [`CachedPod`]s, sharing what repeats.
#[derive(Debug, Default)]
pub struct PodCompactor {
    shapes: Interner<PodShape>,
    tolerations: Interner<[Toleration]>,
    node_names: Interner<str>,
}

impl PodCompactor {
    pub fn compact(&mut self, p: &core::Pod) -> CachedPod {
        let pod = convert::pod(p, &PdbIndex::default());
        let claims = convert::pod_claims(p).into_boxed_slice();
        let shape = PodShape {
            termination_grace: pod.termination_grace,
            requests: pod.requests,
            extended: pod.extended,
            node_selector: pod.node_selector,
            tolerations: self.tolerations.share(pod.tolerations),
            affinity: pod.affinity,
            host_ports: pod.host_ports,
            pod_affinity: pod.pod_affinity,
            pod_anti_affinity: pod.pod_anti_affinity,
            topology_spread: pod.topology_spread,
            owner: pod.owner,
            annotations: pod
                .annotations
                .into_iter()
                .filter(|(k, _)| k == DO_NOT_DISRUPT || k == SAFE_TO_EVICT || k == DAEMONSET_POD)
                .collect(),
            local_storage: pod.local_storage,
            priority: pod.priority,
            labels: pod.labels,
        };
        CachedPod {
            uid: pod.uid.into_boxed_str(),
            node_name: pod.node_name.map(|n| self.node_names.share(Arc::from(n))),
            phase: pod.phase,
            unschedulable_since: pod.unschedulable_since,
            deleted_at: pod.deleted_at,
            nominated_node: pod.nominated_node.map(|n| self.node_names.share(Arc::from(n))),
            claims,
            shape: self.shapes.share(Arc::new(shape)),
        }
    }
}

impl CachedPod {
    pub fn unschedulable(&self) -> bool {
        self.unschedulable_since.is_some()
    }

    /// The core's pod, `key` being its `namespace/name`.
    pub fn to_pod(&self, key: &str, pdb: Option<String>) -> Pod {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let s = &self.shape;
        Pod {
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: self.uid.to_string(),
            termination_grace: s.termination_grace,
            deleted_at: self.deleted_at,
            nominated_node: self.nominated_node.as_deref().map(str::to_string),
            requests: s.requests,
            extended: s.extended.clone(),
            node_selector: s.node_selector.clone(),
            tolerations: s.tolerations.clone(),
            affinity: s.affinity.clone(),
            volume_affinity: Arc::from([]),
            labels: s.labels.clone(),
            host_ports: s.host_ports.clone(),
            pod_affinity: s.pod_affinity.clone(),
            pod_anti_affinity: s.pod_anti_affinity.clone(),
            topology_spread: s.topology_spread.clone(),
            owner: s.owner,
            pdb,
            annotations: s.annotations.clone(),
            local_storage: s.local_storage,
            priority: s.priority,
            phase: self.phase,
            node_name: self.node_name.as_deref().map(str::to_string),
            unschedulable_since: self.unschedulable_since,
        }
    }
}
