//! Kubernetes objects (k8s-openapi) into the core's model, at the edge.
//! Pure functions: the reflector stores feed them, tests feed them recorded
//! objects from a real API server.

use k3scale_core::model::{
    HostPort, LabelSelector as CoreLabelSelector, Labels, NodeAffinity, NodeSelectorRequirement, OwnerKind,
    PodAffinityTerm, PodPhase, SelectorOperator, Taint, TaintEffect, TermNamespaces, Toleration,
    TolerationOperator, TopologySpread,
};
use k3scale_core::quantity::{Extended, is_extended_resource, parse_cpu, parse_memory};
use k3scale_core::{Node, Pod, Resources, Time};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::BTreeMap;
use std::time::Duration;

/// Annotation the kubelet puts on mirror pods of static pods.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

pub fn time(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Time {
    Time::from_millis(u64::try_from(t.0.as_millisecond()).unwrap_or(0))
}

fn labels(map: &Option<BTreeMap<String, String>>) -> Labels {
    map.clone().unwrap_or_default()
}

/// A malformed quantity counts as zero here: the API server validated it,
/// so this only guards against a broken fixture.
fn cpu(q: Option<&Quantity>) -> u64 {
    q.and_then(|q| parse_cpu(&q.0).ok()).unwrap_or(0)
}

fn memory(q: Option<&Quantity>) -> u64 {
    q.and_then(|q| parse_memory(&q.0).ok()).unwrap_or(0)
}

fn resources(map: Option<&BTreeMap<String, Quantity>>, pods: u64) -> Resources {
    Resources::new(
        cpu(map.and_then(|m| m.get("cpu"))),
        memory(map.and_then(|m| m.get("memory"))),
        pods,
    )
}

fn max(a: Resources, b: Resources) -> Resources {
    Resources::new(
        a.cpu_milli.max(b.cpu_milli),
        a.memory_bytes.max(b.memory_bytes),
        a.pods.max(b.pods),
    )
}

/// What the scheduler reserves for a pod: the sum of its containers and
/// sidecars, or the largest init container if that is more, plus overhead.
pub fn pod_requests(spec: &core::PodSpec) -> Resources {
    let requests = |c: &core::Container| resources(c.resources.as_ref().and_then(|r| r.requests.as_ref()), 0);
    let mut sidecars = Resources::ZERO;
    let mut init_peak = Resources::ZERO;
    for c in spec.init_containers.iter().flatten() {
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars += requests(c);
        } else {
            // An init container runs beside the sidecars started before it.
            init_peak = max(init_peak, sidecars + requests(c));
        }
    }
    let running = spec.containers.iter().fold(sidecars, |sum, c| sum + requests(c));
    let overhead = resources(spec.overhead.as_ref(), 0);
    let total = max(running, init_peak) + overhead;
    Resources::new(total.cpu_milli, total.memory_bytes, 1)
}

/// The extended resources in a requests (or allocatable) map, whole counts.
fn extended(map: Option<&BTreeMap<String, Quantity>>) -> Extended {
    map.into_iter()
        .flatten()
        .filter(|(name, _)| is_extended_resource(name))
        .filter_map(|(name, q)| {
            let n = k3scale_core::quantity::Quantity::parse(&q.0).ok()?.whole();
            (n > 0).then(|| (name.clone(), n))
        })
        .collect()
}

/// The extended resources a pod takes: its containers' and sidecars', or an
/// init container's if more. Kubernetes requires requests to equal limits
/// for them, and takes limits as the requests when only limits are set.
pub fn pod_extended(spec: &core::PodSpec) -> Extended {
    let of = |c: &core::Container| {
        let r = c.resources.as_ref();
        let requests = extended(r.and_then(|r| r.requests.as_ref()));
        if requests.is_empty() {
            extended(r.and_then(|r| r.limits.as_ref()))
        } else {
            requests
        }
    };
    let add = |sum: &mut Extended, more: Extended| {
        for (name, n) in more {
            *sum.entry(name).or_default() += n;
        }
    };
    let mut running = Extended::new();
    let mut init_peak = Extended::new();
    for c in spec.init_containers.iter().flatten() {
        if c.restart_policy.as_deref() == Some("Always") {
            add(&mut running, of(c));
        } else {
            for (name, n) in of(c) {
                let peak = init_peak.entry(name.clone()).or_default();
                *peak = (*peak).max(n + running.get(&name).copied().unwrap_or(0));
            }
        }
    }
    for c in &spec.containers {
        add(&mut running, of(c));
    }
    for (name, n) in init_peak {
        let total = running.entry(name).or_default();
        *total = (*total).max(n);
    }
    running
}

fn taint_effect(effect: &str) -> Option<TaintEffect> {
    match effect {
        "NoSchedule" => Some(TaintEffect::NoSchedule),
        "PreferNoSchedule" => Some(TaintEffect::PreferNoSchedule),
        "NoExecute" => Some(TaintEffect::NoExecute),
        _ => None,
    }
}

pub fn taint(t: &core::Taint) -> Option<Taint> {
    Some(Taint {
        key: t.key.clone(),
        value: t.value.clone().unwrap_or_default(),
        effect: taint_effect(&t.effect)?,
    })
}

fn toleration(t: &core::Toleration) -> Toleration {
    Toleration {
        key: t.key.clone().unwrap_or_default(),
        operator: match t.operator.as_deref() {
            Some("Exists") => TolerationOperator::Exists,
            _ => TolerationOperator::Equal,
        },
        value: t.value.clone().unwrap_or_default(),
        effect: t.effect.as_deref().and_then(taint_effect),
    }
}

/// An operator this version does not know becomes `Unknown`, which no node
/// satisfies: what is not understood never loosens a constraint.
fn selector_operator(op: &str) -> SelectorOperator {
    match op {
        "In" => SelectorOperator::In,
        "NotIn" => SelectorOperator::NotIn,
        "Exists" => SelectorOperator::Exists,
        "DoesNotExist" => SelectorOperator::DoesNotExist,
        "Gt" => SelectorOperator::Gt,
        "Lt" => SelectorOperator::Lt,
        _ => SelectorOperator::Unknown,
    }
}

fn requirement(r: &core::NodeSelectorRequirement, field: bool) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: r.key.clone(),
        operator: selector_operator(&r.operator),
        values: r.values.clone().unwrap_or_default(),
        field,
    }
}

/// Required node affinity, `matchExpressions` and `matchFields` alike. A
/// term with neither stays empty, and an empty term matches no node.
fn node_affinity(affinity: Option<&core::Affinity>) -> NodeAffinity {
    let required = affinity
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    node_selector(required)
}

/// A NodeSelector (ORed terms of ANDed requirements) in the core's terms.
fn node_selector(selector: Option<&core::NodeSelector>) -> NodeAffinity {
    let terms = selector
        .map(|required| {
            required
                .node_selector_terms
                .iter()
                .map(|term| {
                    let expressions = term
                        .match_expressions
                        .iter()
                        .flatten()
                        .map(|e| requirement(e, false));
                    let fields = term.match_fields.iter().flatten().map(|e| requirement(e, true));
                    expressions.chain(fields).collect()
                })
                .collect()
        })
        .unwrap_or_default();
    NodeAffinity { terms }
}

/// The node affinity a PersistentVolume requires of the nodes that mount
/// it (`spec.nodeAffinity.required`): local-path volumes name one node.
pub fn volume_affinity(pv: &core::PersistentVolume) -> Option<NodeAffinity> {
    let required = pv.spec.as_ref()?.node_affinity.as_ref()?.required.as_ref()?;
    Some(node_selector(Some(required)))
}

/// The PersistentVolumeClaims a pod mounts: named ones, and the claim an
/// ephemeral volume gets (`<pod>-<volume>`).
pub fn pod_claims(p: &core::Pod) -> Vec<String> {
    let pod_name = p.metadata.name.as_deref().unwrap_or_default();
    p.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(claim), _) => Some(claim.claim_name.clone()),
            (None, Some(_)) => Some(format!("{pod_name}-{}", v.name)),
            (None, None) => None,
        })
        .collect()
}

fn owner(meta: &ObjectMeta) -> OwnerKind {
    if meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
    {
        return OwnerKind::Mirror;
    }
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    match controller.map(|o| o.kind.as_str()) {
        None => OwnerKind::None,
        Some("ReplicaSet") => OwnerKind::ReplicaSet,
        Some("StatefulSet") => OwnerKind::StatefulSet,
        Some("DaemonSet") => OwnerKind::DaemonSet,
        Some("Job") => OwnerKind::Job,
        // K3s runs static control-plane pods as mirror pods owned by their Node.
        Some("Node") => OwnerKind::Mirror,
        Some(_) => OwnerKind::Other,
    }
}

/// cluster-autoscaler's pod annotation listing local volumes (comma
/// separated) whose data may be lost: they do not block a scale-down.
pub const SAFE_TO_EVICT_LOCAL_VOLUMES: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes";

/// emptyDir on disk or hostPath whose data dies with the node, and that the
/// pod does not declare safe to lose.
fn uses_local_storage(spec: &core::PodSpec, annotations: &Labels) -> bool {
    let safe: Vec<&str> = annotations
        .get(SAFE_TO_EVICT_LOCAL_VOLUMES)
        .map(|list| list.split(',').map(str::trim).collect())
        .unwrap_or_default();
    spec.volumes.iter().flatten().any(|v| {
        let local = v.host_path.is_some()
            || v.empty_dir
                .as_ref()
                .is_some_and(|e| e.medium.as_deref() != Some("Memory"));
        local && !safe.contains(&v.name.as_str())
    })
}

fn phase(status: Option<&core::PodStatus>) -> PodPhase {
    match status.and_then(|s| s.phase.as_deref()) {
        Some("Running") => PodPhase::Running,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        _ => PodPhase::Pending,
    }
}

/// Since when the scheduler has said the pod does not fit.
fn unschedulable_since(status: Option<&core::PodStatus>) -> Option<Time> {
    status?.conditions.iter().flatten().find_map(|c| {
        (c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
            .then(|| c.last_transition_time.as_ref().map_or(Time::ZERO, time))
    })
}

/// PDBs of one namespace, ready to match pods against.
#[derive(Debug, Default)]
pub struct PdbIndex {
    by_namespace: BTreeMap<String, Vec<(String, LabelSelector)>>,
    /// `namespace/name` → disruptions allowed now.
    pub allowed: BTreeMap<String, u32>,
}

impl PdbIndex {
    pub fn new<'a>(pdbs: impl IntoIterator<Item = &'a PodDisruptionBudget>) -> Self {
        let mut index = PdbIndex::default();
        for pdb in pdbs {
            let ns = pdb.metadata.namespace.clone().unwrap_or_default();
            let name = pdb.metadata.name.clone().unwrap_or_default();
            let key = format!("{ns}/{name}");
            let allowed = pdb
                .status
                .as_ref()
                .map_or(0, |s| u32::try_from(s.disruptions_allowed).unwrap_or(0));
            index.allowed.insert(key.clone(), allowed);
            // A PDB with no selector selects nothing (policy/v1).
            if let Some(selector) = pdb.spec.as_ref().and_then(|s| s.selector.clone()) {
                index.by_namespace.entry(ns).or_default().push((key, selector));
            }
        }
        index
    }

    /// The PDB covering a pod (`namespace/name`), if any.
    pub fn covering(&self, namespace: &str, pod_labels: &Labels) -> Option<String> {
        self.by_namespace
            .get(namespace)?
            .iter()
            .find(|(_, selector)| selector_matches(selector, pod_labels))
            .map(|(key, _)| key.clone())
    }
}

pub fn selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let match_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    match_labels
        && selector.match_expressions.iter().flatten().all(|e| {
            NodeSelectorRequirement {
                key: e.key.clone(),
                operator: selector_operator(&e.operator),
                values: e.values.clone().unwrap_or_default(),
                field: false,
            }
            .matches(labels)
        })
}

/// A label selector in the core's terms.
fn label_selector(s: &LabelSelector) -> CoreLabelSelector {
    CoreLabelSelector {
        match_labels: labels(&s.match_labels),
        match_expressions: s
            .match_expressions
            .iter()
            .flatten()
            .map(|e| NodeSelectorRequirement {
                key: e.key.clone(),
                operator: selector_operator(&e.operator),
                values: e.values.clone().unwrap_or_default(),
                field: false,
            })
            .collect(),
    }
}

/// A required pod (anti-)affinity term of a pod in `namespace`.
fn affinity_term(t: &core::PodAffinityTerm, namespace: &str) -> PodAffinityTerm {
    let listed = t.namespaces.clone().unwrap_or_default();
    let namespaces = match &t.namespace_selector {
        None if listed.is_empty() => TermNamespaces::Listed(vec![namespace.to_string()]),
        None => TermNamespaces::Listed(listed),
        Some(sel)
            if sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty()) =>
        {
            TermNamespaces::All
        }
        Some(_) => TermNamespaces::Unknown(listed),
    };
    PodAffinityTerm {
        selector: t.label_selector.as_ref().map(label_selector),
        namespaces,
        topology_key: t.topology_key.clone(),
    }
}

/// The hard topology spread constraints of a pod in `namespace` with
/// `pod_labels`. `ScheduleAnyway` is a preference; any other value is taken
/// as hard (never looser than the scheduler).
fn topology_spread(spec: &core::PodSpec, namespace: &str, pod_labels: &Labels) -> Vec<TopologySpread> {
    spec.topology_spread_constraints
        .iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable != "ScheduleAnyway")
        .map(|c| {
            // matchLabelKeys: the pod's own values join the selector.
            let selector = c.label_selector.as_ref().map(|s| {
                let mut selector = label_selector(s);
                for key in c.match_label_keys.iter().flatten() {
                    if let Some(value) = pod_labels.get(key) {
                        selector.match_labels.insert(key.clone(), value.clone());
                    }
                }
                selector
            });
            TopologySpread {
                max_skew: u32::try_from(c.max_skew).unwrap_or(1).max(1),
                topology_key: c.topology_key.clone(),
                selector,
                namespace: namespace.to_string(),
                min_domains: c.min_domains.and_then(|m| u32::try_from(m).ok()),
                honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect()
}

/// The `hostPort`s of a pod's containers (init containers included, as
/// kube-scheduler counts them).
fn host_ports(spec: &core::PodSpec) -> Vec<HostPort> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(HostPort {
                port: u16::try_from(p.host_port?).ok().filter(|&port| port > 0)?,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ip: p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect()
}

/// A Kubernetes pod in the core's terms.
pub fn pod(p: &core::Pod, pdbs: &PdbIndex) -> Pod {
    let meta = &p.metadata;
    let namespace = meta.namespace.clone().unwrap_or_default();
    let pod_labels = labels(&meta.labels);
    let empty = core::PodSpec::default();
    let spec = p.spec.as_ref().unwrap_or(&empty);
    Pod {
        uid: meta.uid.clone().unwrap_or_default(),
        termination_grace: Duration::from_secs(
            spec.termination_grace_period_seconds
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(30),
        ),
        deleted_at: meta.deletion_timestamp.as_ref().map(time),
        nominated_node: p
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.clone())
            .filter(|n| !n.is_empty()),
        requests: pod_requests(spec),
        extended: std::sync::Arc::new(pod_extended(spec)),
        node_selector: labels(&spec.node_selector),
        tolerations: spec.tolerations.iter().flatten().map(toleration).collect(),
        affinity: node_affinity(spec.affinity.as_ref()),
        // Resolved from the pod's claims when a snapshot is made.
        volume_affinity: std::sync::Arc::from([]),
        host_ports: host_ports(spec).into(),
        pod_affinity: spec
            .affinity
            .as_ref()
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .into_iter()
            .flatten()
            .map(|t| affinity_term(t, &namespace))
            .collect(),
        pod_anti_affinity: spec
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .into_iter()
            .flatten()
            .map(|t| affinity_term(t, &namespace))
            .collect(),
        topology_spread: topology_spread(spec, &namespace, &pod_labels).into(),
        owner: owner(meta),
        pdb: pdbs.covering(&namespace, &pod_labels),
        local_storage: uses_local_storage(spec, &labels(&meta.annotations)),
        annotations: labels(&meta.annotations),
        priority: spec.priority.unwrap_or(0),
        phase: phase(p.status.as_ref()),
        node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
        unschedulable_since: unschedulable_since(p.status.as_ref()),
        name: meta.name.clone().unwrap_or_default(),
        labels: pod_labels,
        namespace,
    }
}

/// The pod a DaemonSet would put on a new node (its template).
pub fn daemonset_pod(ds: &DaemonSet) -> Option<Pod> {
    let template = &ds.spec.as_ref()?.template;
    let spec = template.spec.as_ref()?;
    let name = ds.metadata.name.clone().unwrap_or_default();
    let namespace = ds.metadata.namespace.clone().unwrap_or_default();
    let mut pod = Pod::new(&namespace, &name, pod_requests(spec));
    pod.labels = template
        .metadata
        .as_ref()
        .map_or_else(Labels::new, |m| labels(&m.labels));
    pod.extended = std::sync::Arc::new(pod_extended(spec));
    // K3s's ServiceLB runs one DaemonSet per LoadBalancer Service, holding
    // its ports on every node: a new node has them taken from the start.
    pod.host_ports = host_ports(spec).into();
    pod.node_selector = labels(&spec.node_selector);
    pod.tolerations = spec.tolerations.iter().flatten().map(toleration).collect();
    pod.affinity = node_affinity(spec.affinity.as_ref());
    pod.owner = OwnerKind::DaemonSet;
    pod.uid = ds.metadata.uid.clone().unwrap_or_default();
    Some(pod)
}

/// A Kubernetes node in the core's terms; `pool` from the `k3scale.io/pool` label.
pub fn node(n: &core::Node) -> Node {
    let meta = &n.metadata;
    let node_labels = labels(&meta.labels);
    let status = n.status.as_ref();
    let allocatable = status.and_then(|s| s.allocatable.as_ref());
    let pods = allocatable
        .and_then(|a| a.get("pods"))
        .and_then(|q| k3scale_core::quantity::Quantity::parse(&q.0).ok())
        .map_or(0, |q| q.whole());
    let ready_condition = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready");
    let ready = ready_condition.is_some_and(|c| c.status == "True");
    let created_at = meta.creation_timestamp.as_ref().map_or(Time::ZERO, time);
    // False or Unknown (the node controller's word once the kubelet stops
    // posting) since the condition's last transition; no condition yet:
    // since the node was created.
    let not_ready_since = (!ready).then(|| {
        ready_condition
            .and_then(|c| c.last_transition_time.as_ref())
            .map_or(created_at, time)
    });
    let spec = n.spec.as_ref();
    Node {
        name: meta.name.clone().unwrap_or_default(),
        pool: node_labels.get(k3scale_core::model::POOL_LABEL).cloned(),
        allocatable: resources(allocatable, pods),
        extended: extended(allocatable),
        taints: spec
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .filter_map(taint)
            .collect(),
        ready,
        not_ready_since,
        starting: None,
        cordoned: spec.and_then(|s| s.unschedulable).unwrap_or(false),
        created_at,
        annotations: labels(&meta.annotations),
        labels: node_labels,
    }
}
