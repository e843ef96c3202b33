//! Scheduling simulation: where would the kube-scheduler put these pods?
//!
//! Used for pending pods (existing free capacity, then nodes in flight, then
//! new nodes of each pool), for scale-down (do a node's pods fit elsewhere?)
//! and by the simulator's scheduler, so all three agree.
//!
//! Pods with the same requests and constraints form one equivalence class;
//! a class walks the targets with a cursor that only moves forward (free
//! capacity only shrinks while packing), so packing costs
//! O(classes × targets + pods) rather than O(pods × targets).

use crate::model::{Labels, Node, Pod, Taint, TaintEffect};
use crate::quantity::Resources;
use std::collections::HashMap;
use std::fmt;

/// Why a pod can never be placed on a node of a given shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    NodeSelector { key: String, want: String },
    Affinity,
    Taint { key: String, effect: TaintEffect },
    TooLarge { resources: Vec<&'static str> },
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::NodeSelector { key, want } => {
                write!(f, "node selector {key}={want} not matched")
            }
            Unfit::Affinity => write!(f, "required node affinity not matched"),
            Unfit::Taint { key, effect } => write!(f, "untolerated taint {key}:{effect:?}"),
            Unfit::TooLarge { resources } => {
                write!(
                    f,
                    "requests more {} than a new node has free",
                    resources.join(" and ")
                )
            }
        }
    }
}

/// Label and taint predicates (not resources) of `pod` on a node shape;
/// `name` is the node's, `None` for a node not launched yet.
pub fn check_constraints(
    pod: &Pod,
    name: Option<&str>,
    labels: &Labels,
    taints: &[Taint],
) -> Result<(), Unfit> {
    for (key, want) in &pod.node_selector {
        if labels.get(key) != Some(want) {
            return Err(Unfit::NodeSelector {
                key: key.clone(),
                want: want.clone(),
            });
        }
    }
    if !pod.affinity.matches(labels, name) {
        return Err(Unfit::Affinity);
    }
    for taint in taints {
        // PreferNoSchedule is a preference: the scheduler may still use the node.
        if taint.effect != TaintEffect::PreferNoSchedule
            && !pod.tolerations.iter().any(|t| t.tolerates(taint))
        {
            return Err(Unfit::Taint {
                key: taint.key.clone(),
                effect: taint.effect,
            });
        }
    }
    Ok(())
}

/// Whether `pod` could ever run on a new, empty node of this shape, and if not, why.
pub fn check_shape(pod: &Pod, labels: &Labels, taints: &[Taint], capacity: &Resources) -> Result<(), Unfit> {
    check_constraints(pod, None, labels, taints)?;
    let over = pod.requests.exceeding(capacity);
    if over.is_empty() {
        Ok(())
    } else {
        Err(Unfit::TooLarge { resources: over })
    }
}

/// Each node's allocatable minus the requests of the non-terminal pods bound to it.
pub fn free_capacity(nodes: &[Node], pods: &[Pod]) -> Vec<Resources> {
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut free: Vec<Resources> = nodes.iter().map(|n| n.allocatable).collect();
    for pod in pods.iter().filter(|p| !p.is_terminal()) {
        if let Some(&i) = pod.node_name.as_deref().and_then(|n| index.get(n)) {
            free[i] = free[i].saturating_sub(&pod.requests);
        }
    }
    free
}

/// A place pods can go: an existing node's free capacity, or a new node.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The node's name; `None` for a node not launched (or registered) yet.
    pub name: Option<&'a str>,
    pub labels: &'a Labels,
    pub taints: &'a [Taint],
    pub free: Resources,
}

/// Pods with identical requests and constraints: one scheduling decision fits all.
#[derive(Debug)]
pub struct PodClass<'p> {
    pub example: &'p Pod,
    /// Indices into the slice the classes were built from.
    pub members: Vec<usize>,
}

/// Group pods into equivalence classes, biggest (and highest priority) first,
/// the order first-fit-decreasing wants.
pub fn classify<'p>(pods: &[&'p Pod]) -> Vec<PodClass<'p>> {
    type Key<'k> = (
        &'k Resources,
        &'k Labels,
        &'k [crate::model::Toleration],
        &'k crate::model::NodeAffinity,
        i32,
    );
    let mut index: HashMap<Key<'p>, usize> = HashMap::new();
    let mut classes: Vec<PodClass<'p>> = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let key: Key<'p> = (
            &pod.requests,
            &pod.node_selector,
            &pod.tolerations,
            &pod.affinity,
            pod.priority,
        );
        let slot = *index.entry(key).or_insert_with(|| {
            classes.push(PodClass {
                example: pod,
                members: Vec::new(),
            });
            classes.len() - 1
        });
        classes[slot].members.push(i);
    }
    classes.sort_by(|a, b| {
        let (ra, rb) = (&a.example.requests, &b.example.requests);
        b.example
            .priority
            .cmp(&a.example.priority)
            .then(rb.cpu_milli.cmp(&ra.cpu_milli))
            .then(rb.memory_bytes.cmp(&ra.memory_bytes))
            .then(a.example.key().cmp(&b.example.key()))
    });
    classes
}

/// First-fit the pods onto `targets` (mutating their free capacity).
/// Returns, for each pod (same order as `pods`), the index of its target.
pub fn pack(pods: &[&Pod], targets: &mut [Target<'_>]) -> Vec<Option<usize>> {
    let mut placed = vec![None; pods.len()];
    for class in classify(pods) {
        let pod = class.example;
        let mut cursor = 0;
        for &member in &class.members {
            while cursor < targets.len() {
                let t = &mut targets[cursor];
                if pod.requests.fits_in(&t.free) && check_constraints(pod, t.name, t.labels, t.taints).is_ok()
                {
                    t.free = t.free - pod.requests;
                    placed[member] = Some(cursor);
                    break;
                }
                cursor += 1;
            }
            if cursor == targets.len() {
                break; // no target left for this class
            }
        }
    }
    placed
}

/// The result of packing pods onto new nodes of one template.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNodeEstimate {
    pub nodes: u32,
    /// Indices (into the input slice) of the pods the new nodes would take.
    pub placed: Vec<usize>,
    /// Requests of the placed pods, for waste and price scoring.
    pub used: Resources,
}

/// First-fit-decreasing of `pods` onto at most `max_nodes` fresh nodes of a shape.
pub fn estimate_new_nodes(
    pods: &[&Pod],
    labels: &Labels,
    taints: &[Taint],
    capacity: &Resources,
    max_nodes: u32,
) -> NewNodeEstimate {
    let mut bins: Vec<Resources> = Vec::new();
    let mut placed = Vec::new();
    let mut used = Resources::ZERO;
    for class in classify(pods) {
        let pod = class.example;
        if check_shape(pod, labels, taints, capacity).is_err() {
            continue;
        }
        let mut cursor = 0;
        for &member in &class.members {
            while cursor < bins.len() && !pod.requests.fits_in(&bins[cursor]) {
                cursor += 1;
            }
            if cursor == bins.len() {
                if bins.len() as u32 >= max_nodes {
                    break;
                }
                bins.push(*capacity);
            }
            bins[cursor] = bins[cursor] - pod.requests;
            used += pod.requests;
            placed.push(member);
        }
    }
    placed.sort_unstable();
    NewNodeEstimate {
        nodes: bins.len() as u32,
        placed,
        used,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Toleration, TolerationOperator};

    fn pod(name: &str, cpu: u64, mem_mi: u64) -> Pod {
        Pod::new("default", name, Resources::pod(cpu, mem_mi << 20))
    }

    #[test]
    fn pack_is_first_fit_over_targets_and_respects_constraints() {
        let empty = Labels::new();
        let gpu: Labels = [("gpu".to_string(), "true".to_string())].into();
        let taint = [Taint {
            key: "gpu".into(),
            value: String::new(),
            effect: TaintEffect::NoSchedule,
        }];
        let mut targets = vec![
            Target {
                name: None,
                labels: &empty,
                taints: &[],
                free: Resources::new(1000, 1 << 30, 10),
            },
            Target {
                name: None,
                labels: &gpu,
                taints: &taint,
                free: Resources::new(4000, 8 << 30, 10),
            },
        ];
        let a = pod("a", 600, 100);
        let b = pod("b", 600, 100);
        let mut c = pod("c", 500, 100);
        c.node_selector = gpu.clone();
        let mut d = c.clone();
        d.name = "d".into();
        d.tolerations = vec![Toleration {
            key: "gpu".into(),
            operator: TolerationOperator::Exists,
            ..Default::default()
        }]
        .into();
        let pods = [&a, &b, &c, &d];
        let placed = pack(&pods, &mut targets);
        // a fits node 0; b does not fit what is left and cannot tolerate node 1's taint;
        // c selects gpu but does not tolerate the taint; d does both.
        assert_eq!(placed, vec![Some(0), None, None, Some(1)]);
        assert_eq!(targets[0].free.cpu_milli, 400);
        assert_eq!(targets[1].free.cpu_milli, 3500);
    }

    #[test]
    fn estimate_counts_nodes_with_first_fit_decreasing() {
        let cap = Resources::new(2000, 4 << 30, 110);
        let big: Vec<Pod> = (0..3).map(|i| pod(&format!("big{i}"), 1500, 100)).collect();
        let small: Vec<Pod> = (0..6).map(|i| pod(&format!("small{i}"), 500, 100)).collect();
        let all: Vec<&Pod> = big.iter().chain(small.iter()).collect();
        let est = estimate_new_nodes(&all, &Labels::new(), &[], &cap, 100);
        // Each big pod opens a node leaving 500m, which one small pod fills;
        // the other three small pods share a fourth node.
        assert_eq!(est.nodes, 4);
        assert_eq!(est.placed.len(), 9);
        let capped = estimate_new_nodes(&all, &Labels::new(), &[], &cap, 2);
        assert_eq!(capped.nodes, 2);
        assert_eq!(capped.placed.len(), 4, "two bigs plus one small beside each");
    }

    #[test]
    fn shape_check_explains_why() {
        let cap = Resources::new(2000, 4 << 30, 110);
        let huge = pod("huge", 3000, 8192);
        match check_shape(&huge, &Labels::new(), &[], &cap) {
            Err(Unfit::TooLarge { resources }) => assert_eq!(resources, vec!["cpu", "memory"]),
            other => panic!("unexpected {other:?}"),
        }
        let mut sel = pod("sel", 100, 10);
        sel.node_selector.insert("zone".into(), "b".into());
        let err = check_shape(&sel, &Labels::new(), &[], &cap).unwrap_err();
        assert_eq!(err.to_string(), "node selector zone=b not matched");
    }
}
