//! The cluster as the core sees it: nodes, pods and pools, translated at the
//! edge from Kubernetes objects (or built by the simulator).

use crate::quantity::{Extended, Resources};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub type Labels = BTreeMap<String, String>;

/// How long past its grace period a pod being deleted counts as long
/// terminating (cluster-autoscaler's `PodLongTerminatingExtraThreshold`).
pub const LONG_TERMINATING_EXTRA: Duration = Duration::from_secs(30);

/// Annotation a user sets on a pod (or node) that k3scale must never disrupt.
pub const DO_NOT_DISRUPT: &str = "k3scale.io/do-not-disrupt";
/// cluster-autoscaler's per-pod opt-out, honoured for compatibility.
pub const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
/// cluster-autoscaler's node annotation that keeps a node from scale-down.
pub const SCALE_DOWN_DISABLED: &str = "cluster-autoscaler.kubernetes.io/scale-down-disabled";
/// The namespace of the cluster's own add-ons.
pub const SYSTEM_NAMESPACE: &str = "kube-system";
/// cluster-autoscaler's annotation for a pod to be treated as a DaemonSet pod.
pub const DAEMONSET_POD: &str = "cluster-autoscaler.kubernetes.io/daemonset-pod";
/// Label k3scale puts on every node it manages, naming its pool.
pub const POOL_LABEL: &str = "k3scale.io/pool";
/// The hash of the pool settings a node was launched with (drift).
pub const HASH_LABEL: &str = "k3scale.io/pool-hash";

/// Taints a node carries while it is still starting: the API server adds
/// `not-ready` at registration and the node lifecycle controller removes it
/// a moment after the node turns Ready (`unreachable` when heartbeats stop);
/// K3s's cloud controller removes `uninitialized` once it has set the node up.
pub const STARTUP_TAINTS: [&str; 3] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "node.cloudprovider.kubernetes.io/uninitialized",
];
/// cluster-autoscaler's prefixes for taints that agents (CNI, CSI) remove
/// once they are up: honoured the same way.
pub const STARTUP_TAINT_PREFIXES: [&str; 2] = [
    "startup-taint.cluster-autoscaler.kubernetes.io/",
    "ignore-taint.cluster-autoscaler.kubernetes.io/",
];

/// Whether a taint key means "this node is still starting"; `extra` are the
/// keys the user configured (`policy.startup_taints`).
pub fn is_startup_taint(key: &str, extra: &[String]) -> bool {
    STARTUP_TAINTS.contains(&key)
        || STARTUP_TAINT_PREFIXES.iter().any(|p| key.starts_with(p))
        || extra.iter().any(|k| k == key)
}

/// Mark the nodes that carry a startup taint as starting: not yet room for
/// pods, and (for a machine of ours) still launching.
pub fn mark_starting(nodes: &mut [Node], extra: &[String]) {
    for node in nodes {
        node.starting = node
            .taints
            .iter()
            .find(|t| t.effect != TaintEffect::PreferNoSchedule && is_startup_taint(&t.key, extra))
            .map(|t| t.key.clone());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Taint {
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub effect: TaintEffect,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TolerationOperator {
    #[default]
    Equal,
    Exists,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Toleration {
    /// Empty key with `Exists` tolerates everything.
    pub key: String,
    pub operator: TolerationOperator,
    pub value: String,
    /// `None` tolerates every effect.
    pub effect: Option<TaintEffect>,
}

impl Toleration {
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        match self.operator {
            TolerationOperator::Exists => self.key.is_empty() || self.key == taint.key,
            TolerationOperator::Equal => self.key == taint.key && self.value == taint.value,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
    /// An operator this version does not know: never satisfied, so a term
    /// that is not understood cannot admit a node it should not.
    Unknown,
}

/// One `matchExpressions` (or, with `field`, `matchFields`) entry of a
/// required node affinity term.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeSelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    pub values: Vec<String>,
    /// A `matchFields` requirement: on the node's fields (Kubernetes allows
    /// only `metadata.name`), not its labels.
    #[serde(default)]
    pub field: bool,
}

/// The only field `matchFields` may select on.
pub const NODE_NAME_FIELD: &str = "metadata.name";

impl NodeSelectorRequirement {
    /// On a node with these labels and, if known, this name (a node not
    /// launched yet has none: `metadata.name In [x]` cannot hold for it).
    pub fn matches_node(&self, labels: &Labels, name: Option<&str>) -> bool {
        if !self.field {
            return self.matches(labels);
        }
        if self.key != NODE_NAME_FIELD {
            return false;
        }
        let fields: Labels = name
            .map(|n| (self.key.clone(), n.to_string()))
            .into_iter()
            .collect();
        self.matches(&fields)
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            SelectorOperator::Unknown => false,
            SelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            SelectorOperator::NotIn => !value.is_some_and(|v| self.values.contains(v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
            SelectorOperator::Gt | SelectorOperator::Lt => {
                let (Some(v), Some(bound)) = (value, self.values.first()) else {
                    return false;
                };
                match (v.parse::<i64>(), bound.parse::<i64>()) {
                    (Ok(v), Ok(b)) if self.operator == SelectorOperator::Gt => v > b,
                    (Ok(v), Ok(b)) => v < b,
                    _ => false,
                }
            }
        }
    }
}

/// `requiredDuringSchedulingIgnoredDuringExecution`: the terms are ORed, the
/// requirements inside a term are ANDed. No terms = no constraint; an empty
/// term matches no node (as in Kubernetes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeAffinity {
    pub terms: Vec<Vec<NodeSelectorRequirement>>,
}

impl NodeAffinity {
    /// On a node with these labels and, if it exists already, this name.
    pub fn matches(&self, labels: &Labels, name: Option<&str>) -> bool {
        self.terms.is_empty()
            || self
                .terms
                .iter()
                .any(|term| !term.is_empty() && term.iter().all(|req| req.matches_node(labels, name)))
    }
}

/// A `hostPort` a container asks for: no two pods hold the same one on a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostPort {
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// `hostIP`; empty (or `0.0.0.0`) means every address.
    pub ip: String,
}

impl HostPort {
    /// kube-scheduler's NodePorts rule: same port and protocol, and the same
    /// address or either on every address.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        let any = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || any(&self.ip) || any(&other.ip))
    }
}

/// A label selector (`matchLabels` and `matchExpressions`, ANDed); an
/// empty one selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LabelSelector {
    pub match_labels: Labels,
    pub match_expressions: Vec<NodeSelectorRequirement>,
}

impl LabelSelector {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

/// Which namespaces a pod (anti-)affinity term looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TermNamespaces {
    /// `namespaces` (or, with neither field set, the pod's own).
    Listed(Vec<String>),
    /// `namespaceSelector: {}`.
    All,
    /// A non-empty `namespaceSelector` (namespace labels are not watched):
    /// never taken as satisfied, so it counts every namespace for
    /// anti-affinity and none for affinity.
    Unknown(Vec<String>),
}

/// One required term of inter-pod affinity or anti-affinity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PodAffinityTerm {
    /// `None` (no `labelSelector`): selects no pod.
    pub selector: Option<LabelSelector>,
    pub namespaces: TermNamespaces,
    pub topology_key: String,
}

impl PodAffinityTerm {
    /// Whether `pod` is one the term selects; `unknown_counts` decides a
    /// namespace selector k3scale cannot evaluate.
    pub fn selects(&self, pod: &Pod, unknown_counts: bool) -> bool {
        let in_namespace = match &self.namespaces {
            TermNamespaces::Listed(ns) => ns.contains(&pod.namespace),
            TermNamespaces::All => true,
            TermNamespaces::Unknown(ns) => unknown_counts || ns.contains(&pod.namespace),
        };
        in_namespace && self.selector.as_ref().is_some_and(|s| s.matches(&pod.labels))
    }
}

/// A `topologySpreadConstraints` entry with `whenUnsatisfiable:
/// DoNotSchedule` (`ScheduleAnyway` is a preference the planner leaves to
/// the scheduler).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TopologySpread {
    pub max_skew: u32,
    pub topology_key: String,
    /// The pods counted, in `namespace` (the pod's own), with the values of
    /// `matchLabelKeys` merged in; `None` (no `labelSelector`) counts none.
    pub selector: Option<LabelSelector>,
    pub namespace: String,
    /// Fewer eligible domains than this make the global minimum 0.
    pub min_domains: Option<u32>,
    /// `nodeAffinityPolicy: Honor` (the default): only nodes the pod's node
    /// selector and required node affinity admit count.
    pub honor_node_affinity: bool,
    /// `nodeTaintsPolicy: Honor`: only nodes whose taints the pod tolerates
    /// count (the default, `Ignore`, counts every node).
    pub honor_taints: bool,
}

impl TopologySpread {
    /// Whether the constraint counts `pod` (`selfMatch` for the pod itself).
    pub fn counts(&self, pod: &Pod) -> bool {
        pod.namespace == self.namespace && self.selector.as_ref().is_some_and(|s| s.matches(&pod.labels))
    }
}

/// What kind of controller owns a pod; decides whether it may be evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OwnerKind {
    /// A bare pod: evicting it loses it.
    None,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    /// A static pod mirrored from the kubelet (`kubernetes.io/config.mirror`).
    Mirror,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    /// `metadata.uid`: evictions use it as a precondition.
    pub uid: String,
    /// `spec.terminationGracePeriodSeconds`.
    #[serde(serialize_with = "crate::time::serialize_secs")]
    pub termination_grace: Duration,
    /// `metadata.deletionTimestamp`: being deleted since then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<Time>,
    /// `status.nominatedNodeName`: the scheduler preempts lower-priority
    /// pods there to make room for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nominated_node: Option<String>,
    pub requests: Resources,
    /// Extended resources it requests; shared, empty for most pods.
    pub extended: Arc<Extended>,
    pub node_selector: Labels,
    /// Shared: most pods carry one of a few identical sets (the defaults).
    pub tolerations: Arc<[Toleration]>,
    pub affinity: NodeAffinity,
    /// The node affinity of each bound PersistentVolume it mounts (a
    /// local-path volume pins it to one node, a zonal disk to a zone): all
    /// must match, as kube-scheduler's VolumeBinding checks.
    pub volume_affinity: Arc<[NodeAffinity]>,
    /// The pod's labels (what other pods' selectors match).
    pub labels: Labels,
    /// `hostPort`s of its containers.
    pub host_ports: Arc<[HostPort]>,
    /// Required inter-pod affinity terms (`requiredDuringScheduling…`).
    pub pod_affinity: Arc<[PodAffinityTerm]>,
    /// Required inter-pod anti-affinity terms.
    pub pod_anti_affinity: Arc<[PodAffinityTerm]>,
    /// Hard topology spread constraints.
    pub topology_spread: Arc<[TopologySpread]>,
    pub owner: OwnerKind,
    /// Name of the PodDisruptionBudget covering this pod, if any.
    pub pdb: Option<String>,
    pub annotations: Labels,
    /// Uses `emptyDir` (not memory-backed) or hostPath: its data dies with the node.
    pub local_storage: bool,
    pub priority: i32,
    pub phase: PodPhase,
    /// The node it is bound to; `None` while pending.
    pub node_name: Option<String>,
    /// Since when the scheduler has said it does not fit
    /// (`PodScheduled=False, reason=Unschedulable`).
    pub unschedulable_since: Option<Time>,
}

impl Pod {
    /// A running, controller-owned pod with the given requests; the base the
    /// adapters and tests fill in.
    pub fn new(namespace: &str, name: &str, requests: Resources) -> Self {
        Pod {
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: format!("uid-{namespace}-{name}"),
            termination_grace: Duration::from_secs(30),
            deleted_at: None,
            nominated_node: None,
            requests,
            extended: Arc::default(),
            node_selector: Labels::new(),
            tolerations: Arc::from([]),
            affinity: NodeAffinity::default(),
            volume_affinity: Arc::from([]),
            labels: Labels::new(),
            host_ports: Arc::from([]),
            pod_affinity: Arc::from([]),
            pod_anti_affinity: Arc::from([]),
            topology_spread: Arc::from([]),
            owner: OwnerKind::ReplicaSet,
            pdb: None,
            annotations: Labels::new(),
            local_storage: false,
            priority: 0,
            phase: PodPhase::Running,
            node_name: None,
            unschedulable_since: None,
        }
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether placing it depends on the other pods of a node or domain.
    pub fn has_pod_predicates(&self) -> bool {
        !self.host_ports.is_empty()
            || !self.pod_affinity.is_empty()
            || !self.pod_anti_affinity.is_empty()
            || !self.topology_spread.is_empty()
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self.phase, PodPhase::Succeeded | PodPhase::Failed)
    }

    /// Deleted longer ago than its grace period plus
    /// [`LONG_TERMINATING_EXTRA`] (its kubelet gone, a finalizer stuck):
    /// cluster-autoscaler's long-terminating pod.
    pub fn long_terminating(&self, now: Time) -> bool {
        self.deleted_at
            .is_some_and(|at| now.since(at) > self.termination_grace + LONG_TERMINATING_EXTRA)
    }

    /// Finished, or long terminating: nothing a drain moves or waits for.
    pub fn is_gone(&self, now: Time) -> bool {
        self.is_terminal() || self.long_terminating(now)
    }

    /// DaemonSet and mirror pods (and pods annotated as DaemonSet pods, as
    /// cluster-autoscaler allows) live and die with their node: a drain
    /// ignores them, and pending they never call for a new node.
    pub fn is_node_bound(&self) -> bool {
        matches!(self.owner, OwnerKind::DaemonSet | OwnerKind::Mirror)
            || self.annotation_is(DAEMONSET_POD, "true")
    }

    pub fn annotation_is(&self, key: &str, value: &str) -> bool {
        self.annotations.get(key).is_some_and(|v| v == value)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub name: String,
    /// The pool this node belongs to; `None` for nodes k3scale does not manage
    /// (the K3s server, hand-added machines): their capacity is used, never removed.
    pub pool: Option<String>,
    pub allocatable: Resources,
    /// Allocatable extended resources.
    #[serde(skip_serializing_if = "Extended::is_empty")]
    pub extended: Extended,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub ready: bool,
    /// Since when it has not been Ready (its Ready condition's last
    /// transition), when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ready_since: Option<Time>,
    /// The startup taint it still carries (see [`mark_starting`]): Ready or
    /// not, no pod without a toleration lands here yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starting: Option<String>,
    /// `spec.unschedulable` (cordoned), e.g. by a drain in progress.
    pub cordoned: bool,
    pub created_at: Time,
    pub annotations: Labels,
}

impl Node {
    pub fn new(name: &str, pool: Option<&str>, allocatable: Resources, created_at: Time) -> Self {
        Node {
            name: name.to_string(),
            pool: pool.map(str::to_string),
            allocatable,
            extended: Extended::new(),
            labels: Labels::new(),
            taints: Vec::new(),
            ready: true,
            not_ready_since: None,
            starting: None,
            cordoned: false,
            created_at,
            annotations: Labels::new(),
        }
    }

    /// Whether annotation `key` is set to `value` (as [`Pod::annotation_is`]).
    pub fn annotation_is(&self, key: &str, value: &str) -> bool {
        self.annotations.get(key).is_some_and(|v| v == value)
    }

    /// Created at or after `t`, to the second (Kubernetes records creation
    /// times in whole seconds: a node registered in the same second counts).
    pub fn created_since(&self, t: Time) -> bool {
        self.created_at.as_millis() / 1000 >= t.as_millis() / 1000
    }

    /// Ready, started and not cordoned: the scheduler may place pods here.
    pub fn schedulable(&self) -> bool {
        self.joined() && !self.cordoned
    }

    /// Ready and rid of its startup taints: a launch is complete.
    pub fn joined(&self) -> bool {
        self.ready && self.starting.is_none()
    }
}

/// The shape of a node a pool would launch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeTemplate {
    pub allocatable: Resources,
    /// Extended resources a new node offers (e.g. `nvidia.com/gpu: 1`).
    #[serde(skip_serializing_if = "Extended::is_empty")]
    pub extended: Extended,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub price_per_hour: f64,
    #[serde(serialize_with = "crate::time::serialize_secs")]
    pub boot_time: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pool {
    pub name: String,
    pub min: u32,
    pub max: u32,
    pub template: NodeTemplate,
    /// Higher wins with the `priority` expander.
    pub priority: i32,
    /// `docker`, `aws_ec2`, `exec`...: which provider creates its machines.
    pub provider: String,
    /// Overrides `policy.scale_down.node_utilization_below` for this pool.
    pub scale_down_utilization_below: Option<f64>,
    /// Overrides `policy.scale_down.drain_timeout` for this pool's nodes.
    #[serde(serialize_with = "crate::time::serialize_opt_secs")]
    pub drain_timeout: Option<Duration>,
    /// Launch to Node registered, then registered to Ready: past either,
    /// the machine is a failed join (see `lifecycle`).
    #[serde(serialize_with = "crate::time::serialize_secs")]
    pub provision_timeout: Duration,
    #[serde(serialize_with = "crate::time::serialize_secs")]
    pub join_timeout: Duration,
    /// Spare room kept ready on this pool's nodes.
    pub headroom: Option<Headroom>,
    /// This pool's disruption budgets.
    pub disruption: Vec<crate::disruption::Budget>,
    /// Nodes older than this are replaced.
    pub expire_after: Option<Duration>,
    /// The hash of the settings that shape its nodes (also the value of
    /// their [`HASH_LABEL`]); empty: drift is not checked.
    pub settings_hash: String,
}

/// Room for `pods` pods of `requests` each, kept free on a pool's nodes
/// (what cluster-autoscaler users get from low-priority pause pods): a
/// burst lands on a Ready node instead of waiting for one to boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Headroom {
    pub pods: u32,
    pub requests: Resources,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn toleration_matching_follows_kubernetes() {
        let taint = Taint {
            key: "dedicated".into(),
            value: "gpu".into(),
            effect: TaintEffect::NoSchedule,
        };
        let exists_all = Toleration {
            operator: TolerationOperator::Exists,
            ..Default::default()
        };
        assert!(exists_all.tolerates(&taint));
        let equal = Toleration {
            key: "dedicated".into(),
            value: "gpu".into(),
            ..Default::default()
        };
        assert!(equal.tolerates(&taint));
        let wrong_value = Toleration {
            value: "cpu".into(),
            ..equal.clone()
        };
        assert!(!wrong_value.tolerates(&taint));
        let wrong_effect = Toleration {
            effect: Some(TaintEffect::NoExecute),
            ..equal
        };
        assert!(!wrong_effect.tolerates(&taint));
    }

    #[test]
    fn affinity_terms_are_ored_requirements_anded() {
        let node = labels(&[("zone", "a"), ("cores", "8")]);
        let req = |key: &str, operator, values: &[&str]| NodeSelectorRequirement {
            key: key.into(),
            operator,
            values: values.iter().map(|s| s.to_string()).collect(),
            field: false,
        };
        let aff = NodeAffinity {
            terms: vec![
                vec![req("zone", SelectorOperator::In, &["b"])],
                vec![
                    req("zone", SelectorOperator::NotIn, &["c"]),
                    req("cores", SelectorOperator::Gt, &["4"]),
                ],
            ],
        };
        assert!(aff.matches(&node, None));
        let aff = NodeAffinity {
            terms: vec![vec![
                req("gpu", SelectorOperator::Exists, &[]),
                req("zone", SelectorOperator::In, &["a"]),
            ]],
        };
        assert!(!aff.matches(&node, None));
        assert!(req("gpu", SelectorOperator::DoesNotExist, &[]).matches(&node));
        assert!(req("cores", SelectorOperator::Lt, &["10"]).matches(&node));
        assert!(!req("zone", SelectorOperator::Lt, &["10"]).matches(&node));
    }
}
