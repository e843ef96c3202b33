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

use crate::model::{Labels, Node, NodeAffinity, Pod, Taint, TaintEffect, Toleration, TopologySpread};
use crate::quantity::{Extended, Resources, extended_short, extended_take};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Why a pod cannot be placed on a node (of a given shape, or with the
/// pods it has): each names the kube-scheduler predicate it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    NodeSelector {
        key: String,
        want: String,
    },
    Affinity,
    /// VolumeBinding: a bound PersistentVolume's node affinity excludes the node.
    VolumeAffinity,
    Taint {
        key: String,
        effect: TaintEffect,
    },
    TooLarge {
        resources: Vec<&'static str>,
    },
    /// NodeResourcesFit: not enough of an extended resource (a new node of
    /// the shape offers less, or none).
    Extended {
        name: String,
    },
    /// NodePorts: a pod there holds the same host port.
    HostPort {
        port: u16,
        protocol: String,
    },
    /// InterPodAffinity: a pod its anti-affinity selects is in the domain.
    PodAntiAffinity {
        topology_key: String,
    },
    /// InterPodAffinity: a pod in the domain has anti-affinity against it.
    ExistingAntiAffinity {
        topology_key: String,
    },
    /// InterPodAffinity: no pod its affinity selects is in the domain.
    PodAffinity {
        topology_key: String,
    },
    /// PodTopologySpread: the node has no label for a constraint's key.
    SpreadKeyMissing {
        topology_key: String,
    },
    /// PodTopologySpread: the pod there would make the skew exceed maxSkew.
    TopologySpread {
        topology_key: String,
        max_skew: u32,
    },
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::NodeSelector { key, want } => {
                write!(f, "node selector {key}={want} not matched")
            }
            Unfit::Affinity => write!(f, "required node affinity not matched"),
            Unfit::VolumeAffinity => write!(f, "a bound volume's node affinity excludes it (VolumeBinding)"),
            Unfit::Taint { key, effect } => write!(f, "untolerated taint {key}:{effect:?}"),
            Unfit::TooLarge { resources } => {
                write!(
                    f,
                    "requests more {} than a new node has free",
                    resources.join(" and ")
                )
            }
            Unfit::Extended { name } => {
                write!(f, "requests more {name} than a new node has")
            }
            Unfit::HostPort { port, protocol } => {
                write!(f, "host port {port}/{protocol} already taken (NodePorts)")
            }
            Unfit::PodAntiAffinity { topology_key } => {
                write!(
                    f,
                    "required pod anti-affinity on {topology_key} (InterPodAffinity)"
                )
            }
            Unfit::ExistingAntiAffinity { topology_key } => write!(
                f,
                "a pod there has required anti-affinity against it on {topology_key} (InterPodAffinity)"
            ),
            Unfit::PodAffinity { topology_key } => {
                write!(
                    f,
                    "required pod affinity on {topology_key} not met (InterPodAffinity)"
                )
            }
            Unfit::SpreadKeyMissing { topology_key } => {
                write!(f, "node has no {topology_key} label (PodTopologySpread)")
            }
            Unfit::TopologySpread {
                topology_key,
                max_skew,
            } => write!(
                f,
                "topology spread on {topology_key} would exceed maxSkew {max_skew} (PodTopologySpread)"
            ),
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
    if !pod.volume_affinity.iter().all(|a| a.matches(labels, name)) {
        return Err(Unfit::VolumeAffinity);
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
pub fn check_shape(
    pod: &Pod,
    labels: &Labels,
    taints: &[Taint],
    capacity: &Resources,
    extended: &Extended,
) -> Result<(), Unfit> {
    check_constraints(pod, None, labels, taints)?;
    let over = pod.requests.exceeding(capacity);
    if !over.is_empty() {
        return Err(Unfit::TooLarge { resources: over });
    }
    match extended_short(&pod.extended, extended) {
        Some(name) => Err(Unfit::Extended {
            name: name.to_string(),
        }),
        None => Ok(()),
    }
}

/// Each node's allocatable minus the requests of the non-terminal pods bound to it.
pub fn free_capacity(nodes: &[Node], pods: &[Pod]) -> Vec<Resources> {
    free_capacity_where(nodes, pods, |_| true)
}

/// [`free_capacity`] counting only the pods `takes_room` says hold theirs.
pub fn free_capacity_where(
    nodes: &[Node],
    pods: &[Pod],
    takes_room: impl Fn(&Pod) -> bool,
) -> Vec<Resources> {
    let mut free: Vec<Resources> = nodes.iter().map(|n| n.allocatable).collect();
    for (i, pod) in bound_pods(nodes, pods).filter(|(_, p)| takes_room(p)) {
        free[i] = free[i].saturating_sub(&pod.requests);
    }
    free
}

/// The DaemonSets (one pod each) that run on a node with these labels and taints.
pub fn daemonsets_on<'a>(
    daemonsets: &'a [Pod],
    labels: &'a Labels,
    taints: &'a [Taint],
) -> impl Iterator<Item = &'a Pod> {
    daemonsets
        .iter()
        .filter(move |ds| check_constraints(ds, None, labels, taints).is_ok())
}

/// The non-terminal pods bound to one of `nodes`, with that node's index.
pub fn bound_pods<'p>(nodes: &[Node], pods: &'p [Pod]) -> impl Iterator<Item = (usize, &'p Pod)> {
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    pods.iter().filter(|p| !p.is_terminal()).filter_map(move |pod| {
        let i = *index.get(pod.node_name.as_deref()?)?;
        Some((i, pod))
    })
}

/// Each node's allocatable extended resources minus those its pods request;
/// all empty when no pod requests any (nothing to check then).
pub fn free_extended(nodes: &[Node], pods: &[Pod]) -> Vec<Extended> {
    if pods.iter().all(|p| p.extended.is_empty()) {
        return vec![Extended::new(); nodes.len()];
    }
    let mut free: Vec<Extended> = nodes.iter().map(|n| n.extended.clone()).collect();
    for (i, pod) in bound_pods(nodes, pods) {
        extended_take(&mut free[i], &pod.extended);
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
    /// Free extended resources (only filled in when some pod requests one).
    pub extended: Extended,
    /// The pods on it (and those placed there in simulation): what host
    /// ports and inter-pod (anti-)affinity look at.
    pub pods: Vec<&'a Pod>,
}

/// The well-known label of a node's own topology domain.
pub const HOSTNAME_KEY: &str = "kubernetes.io/hostname";

/// The topology domain of target `i` for `key`: its label value, or for the
/// hostname key on a node not launched yet, that node alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Domain<'a> {
    Value(&'a str),
    Own(usize),
}

fn domain<'a>(targets: &[Target<'a>], i: usize, key: &str) -> Option<Domain<'a>> {
    match targets[i].labels.get(key) {
        Some(v) => Some(Domain::Value(v.as_str())),
        None if key == HOSTNAME_KEY => Some(Domain::Own(i)),
        None => None,
    }
}

/// Pods in target `i`'s domain for `key` (none if it has no such domain).
fn pods_in_domain<'t, 'a>(
    targets: &'t [Target<'a>],
    i: usize,
    key: &'t str,
) -> Box<dyn Iterator<Item = &'a Pod> + 't> {
    // Hostnames are unique: the domain is the node itself.
    if key == HOSTNAME_KEY {
        return Box::new(targets[i].pods.iter().copied());
    }
    let here = domain(targets, i, key);
    Box::new(
        targets
            .iter()
            .enumerate()
            .filter(move |(j, _)| here.is_some() && domain(targets, *j, key) == here)
            .flat_map(|(_, t)| t.pods.iter().copied()),
    )
}

/// The pods with required anti-affinity, by topology key and domain: kept
/// by the packer as it places pods, so a check looks only at the pods of
/// its own domain.
#[derive(Debug, Clone)]
pub struct AntiIndex<'a> {
    by_key: HashMap<&'a str, HashMap<Domain<'a>, Vec<&'a Pod>>>,
    /// A label key each term needs a pod to have (from `matchLabels`, `In`
    /// or `Exists`): a pod with none of them is selected by no term. `None`
    /// once some term can select a pod by what it lacks.
    needed_keys: Option<std::collections::HashSet<&'a str>>,
}

impl Default for AntiIndex<'_> {
    fn default() -> Self {
        AntiIndex {
            by_key: HashMap::new(),
            needed_keys: Some(std::collections::HashSet::new()),
        }
    }
}

/// A label key a pod must have for `term` to select it, if there is one.
fn needed_key(term: &crate::model::PodAffinityTerm) -> Option<&str> {
    selector_needs(term.selector.as_ref()?)
}

/// A label key a pod must have for `selector` to select it, if there is one.
fn selector_needs(selector: &crate::model::LabelSelector) -> Option<&str> {
    use crate::model::SelectorOperator::{Exists, In};
    selector
        .match_labels
        .keys()
        .next()
        .map(String::as_str)
        .or_else(|| {
            selector
                .match_expressions
                .iter()
                .find(|r| matches!(r.operator, In | Exists))
                .map(|r| r.key.as_str())
        })
}

impl<'a> AntiIndex<'a> {
    /// Every pod with required anti-affinity on `targets`.
    pub fn of(targets: &[Target<'a>]) -> Self {
        let mut index = AntiIndex::default();
        for (i, t) in targets.iter().enumerate() {
            for q in &t.pods {
                index.add(targets, i, q);
            }
        }
        index
    }

    /// `pod` was placed on target `i`.
    pub fn add(&mut self, targets: &[Target<'a>], i: usize, pod: &'a Pod) {
        for term in pod.pod_anti_affinity.iter() {
            // A term without a selector selects nothing and needs no key.
            if term.selector.is_some() {
                match (needed_key(term), &mut self.needed_keys) {
                    (Some(key), Some(keys)) => {
                        keys.insert(key);
                    }
                    (None, keys) => *keys = None,
                    (Some(_), None) => {}
                }
            }
            if let Some(d) = domain(targets, i, &term.topology_key) {
                self.by_key
                    .entry(term.topology_key.as_str())
                    .or_default()
                    .entry(d)
                    .or_default()
                    .push(pod);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The topology key of a placed pod's anti-affinity that `pod` on
    /// target `at` would break.
    fn repelled_by(&self, pod: &Pod, at: usize, targets: &[Target<'a>]) -> Option<&'a str> {
        if let Some(keys) = &self.needed_keys
            && !keys.iter().any(|k| pod.labels.contains_key(*k))
        {
            return None; // no term can select it: the common case, decided at once
        }
        self.by_key.iter().find_map(|(&key, domains)| {
            let here = domain(targets, at, key)?;
            domains
                .get(&here)?
                .iter()
                .flat_map(|q| q.pod_anti_affinity.iter())
                .any(|term| term.topology_key == key && term.selects(pod, true))
                .then_some(key)
        })
    }
}

/// The counts one hard topology spread constraint of a pending pod looks
/// at: matching pods per domain, over the nodes the constraint counts.
#[derive(Debug, Clone)]
struct SpreadCounts<'a> {
    constraint: &'a TopologySpread,
    /// The pod whose node selector, affinity, tolerations and other keys
    /// decide which nodes count.
    owner: &'a Pod,
    per_domain: HashMap<Domain<'a>, u32>,
    /// How many domains hold each count: the global minimum is the first key.
    histogram: BTreeMap<u32, u32>,
}

impl<'a> SpreadCounts<'a> {
    /// Whether target `i` counts for this constraint (kube-scheduler: it has
    /// every topology key of the pod's constraints, and passes the node
    /// inclusion policies).
    fn counts_node(&self, targets: &[Target<'a>], i: usize) -> Option<Domain<'a>> {
        let t = &targets[i];
        let owner = self.owner;
        if !owner
            .topology_spread
            .iter()
            .all(|c| domain(targets, i, &c.topology_key).is_some())
        {
            return None;
        }
        if self.constraint.honor_node_affinity
            && (owner
                .node_selector
                .iter()
                .any(|(k, v)| t.labels.get(k) != Some(v))
                || !owner.affinity.matches(t.labels, t.name))
        {
            return None;
        }
        if self.constraint.honor_taints
            && t.taints.iter().any(|taint| {
                taint.effect != TaintEffect::PreferNoSchedule
                    && !owner.tolerations.iter().any(|tol| tol.tolerates(taint))
            })
        {
            return None;
        }
        domain(targets, i, &self.constraint.topology_key)
    }

    /// `by` more matching pods in domain `d` (0: the domain joins).
    fn bump(&mut self, d: Domain<'a>, by: u32) {
        let old = self.per_domain.get(&d).copied();
        let new = old.unwrap_or(0) + by;
        self.per_domain.insert(d, new);
        if let Some(old) = old {
            self.unhist(old);
        }
        *self.histogram.entry(new).or_insert(0) += 1;
    }

    fn unhist(&mut self, count: u32) {
        if let Some(n) = self.histogram.get_mut(&count) {
            *n -= 1;
            if *n == 0 {
                self.histogram.remove(&count);
            }
        }
    }

    /// kube-scheduler's global minimum: 0 while fewer domains than
    /// `minDomains` exist, none (no limit) while no node counts.
    fn min(&self) -> Option<u32> {
        let domains = self.per_domain.len() as u32;
        if self.constraint.min_domains.is_some_and(|m| domains < m) {
            return Some(0);
        }
        self.histogram.keys().next().copied()
    }
}

type SpreadKey<'a> = (
    &'a [TopologySpread],
    &'a Labels,
    &'a NodeAffinity,
    &'a [Toleration],
);

fn spread_key(pod: &Pod) -> SpreadKey<'_> {
    (
        &pod.topology_spread,
        &pod.node_selector,
        &pod.affinity,
        &pod.tolerations,
    )
}

/// Topology spread counts for the constraints of the pods being placed.
#[derive(Debug, Clone)]
struct SpreadIndex<'a> {
    entries: Vec<SpreadCounts<'a>>,
    /// The entries of each owner, found by the address of its constraints
    /// (the pods of one workload share them) and then by equality: cheap
    /// to look up on every check.
    by_owner: HashMap<usize, Vec<(SpreadKey<'a>, usize)>>,
    /// Each owner's entries (one per constraint), by index.
    lists: Vec<Box<[usize]>>,
    /// Entries by what decides their counts: owners whose node inclusion
    /// is the same for a constraint share one entry.
    by_signature: HashMap<Signature<'a>, usize>,
    /// The entries of each distinct constraint: a placed pod is matched
    /// against each constraint once, not once per owner.
    by_constraint: Vec<(&'a TopologySpread, Vec<usize>)>,
    /// A label key each constraint needs a pod to have to count it; `None`
    /// once one counts pods by what they lack (as in [`AntiIndex`]).
    needed_keys: Option<std::collections::HashSet<&'a str>>,
    /// The last pod looked up (its address) and its entries: a pod is
    /// checked against target after target. The pods checked outlive the
    /// index (they are the `'a` pods being placed), so an address is never
    /// another pod's.
    last: std::cell::Cell<(usize, usize)>,
}

/// What decides an entry's counts: the constraint, the owner's constraints
/// (a node must have all their keys), and what its node inclusion policies
/// look at of the owner.
type Signature<'a> = (
    usize,
    usize,
    Option<(&'a Labels, &'a NodeAffinity)>,
    Option<&'a [Toleration]>,
);

impl Default for SpreadIndex<'_> {
    fn default() -> Self {
        SpreadIndex {
            entries: Vec::new(),
            by_owner: HashMap::new(),
            lists: Vec::new(),
            by_signature: HashMap::new(),
            by_constraint: Vec::new(),
            needed_keys: Some(std::collections::HashSet::new()),
            last: std::cell::Cell::new((0, 0)),
        }
    }
}

impl<'a> SpreadIndex<'a> {
    /// Count, over `targets`, for the constraints of `owner` (once per
    /// distinct set of constraints and node inclusion).
    fn register(&mut self, targets: &[Target<'a>], owner: &'a Pod) {
        self.register_all(targets, [owner]);
    }

    /// [`SpreadIndex::register`] for many owners: each distinct constraint
    /// counts the pods on each target once, whatever the owners sharing it.
    fn register_all(&mut self, targets: &[Target<'a>], owners: impl IntoIterator<Item = &'a Pod>) {
        let mut matching: HashMap<usize, Vec<u32>> = HashMap::new();
        for owner in owners {
            if owner.topology_spread.is_empty() || self.list(owner).is_some() {
                continue;
            }
            let mut list = Vec::with_capacity(owner.topology_spread.len());
            for constraint in owner.topology_spread.iter() {
                let address = std::ptr::from_ref(constraint) as usize;
                let signature: Signature<'a> = (
                    address,
                    owner.topology_spread.as_ptr() as usize,
                    constraint
                        .honor_node_affinity
                        .then_some((&owner.node_selector, &owner.affinity)),
                    constraint.honor_taints.then_some(&owner.tolerations[..]),
                );
                if let Some(&entry) = self.by_signature.get(&signature) {
                    list.push(entry);
                    continue;
                }
                // No selector counts nothing and needs no key.
                if let Some(selector) = &constraint.selector {
                    match (selector_needs(selector), &mut self.needed_keys) {
                        (Some(key), Some(keys)) => {
                            keys.insert(key);
                        }
                        (None, keys) => *keys = None,
                        (Some(_), None) => {}
                    }
                }
                let per_target = matching.entry(address).or_insert_with(|| {
                    targets
                        .iter()
                        .map(|t| t.pods.iter().filter(|q| constraint.counts(q)).count() as u32)
                        .collect()
                });
                let mut counts = SpreadCounts {
                    constraint,
                    owner,
                    per_domain: HashMap::new(),
                    histogram: BTreeMap::new(),
                };
                for (i, &n) in per_target.iter().enumerate() {
                    if let Some(d) = counts.counts_node(targets, i) {
                        counts.bump(d, n);
                    }
                }
                let entry = self.entries.len();
                self.entries.push(counts);
                self.by_signature.insert(signature, entry);
                list.push(entry);
                match self
                    .by_constraint
                    .iter_mut()
                    .find(|(c, _)| std::ptr::eq(*c, constraint))
                {
                    Some((_, entries)) => entries.push(entry),
                    None => self.by_constraint.push((constraint, vec![entry])),
                }
            }
            self.lists.push(list.into_boxed_slice());
            self.by_owner
                .entry(owner.topology_spread.as_ptr() as usize)
                .or_default()
                .push((spread_key(owner), self.lists.len() - 1));
        }
    }

    /// Which of [`SpreadIndex::lists`] holds `pod`'s entries, if counted.
    fn list(&self, pod: &Pod) -> Option<usize> {
        let address = std::ptr::from_ref(pod) as usize;
        let (last, list) = self.last.get();
        if last == address {
            return Some(list);
        }
        let key = spread_key(pod);
        let list = self
            .by_owner
            .get(&(pod.topology_spread.as_ptr() as usize))?
            .iter()
            // The constraints are at the same address: compare the rest.
            .find(|(k, _)| k.0.len() == key.0.len() && (k.1, k.2, k.3) == (key.1, key.2, key.3))
            .map(|(_, list)| *list)?;
        self.last.set((address, list));
        Some(list)
    }

    /// `pod` was placed on target `i`.
    fn add(&mut self, targets: &[Target<'a>], i: usize, pod: &Pod) {
        if let Some(keys) = &self.needed_keys
            && !keys.iter().any(|k| pod.labels.contains_key(*k))
        {
            return; // no constraint counts it: the common case, decided at once
        }
        for (constraint, entries) in &self.by_constraint {
            if !constraint.counts(pod) {
                continue;
            }
            for &e in entries {
                let counts = &mut self.entries[e];
                if let Some(d) = counts.counts_node(targets, i) {
                    counts.bump(d, 1);
                }
            }
        }
    }

    /// Target `i` was added (a new node): its domains join with no pods.
    /// With `twin` (another new node of the same shape is there already)
    /// only its own hostname domain can be new. Returns what to give
    /// [`SpreadIndex::forget`] if it is taken off again.
    fn add_target(&mut self, targets: &[Target<'a>], i: usize, twin: bool) -> Vec<(usize, Domain<'a>)> {
        let mut joined = Vec::new();
        for (e, counts) in self.entries.iter_mut().enumerate() {
            if twin && counts.constraint.topology_key != HOSTNAME_KEY {
                continue;
            }
            if let Some(d) = counts.counts_node(targets, i)
                && !counts.per_domain.contains_key(&d)
            {
                counts.bump(d, 0);
                joined.push((e, d));
            }
        }
        joined
    }

    fn forget(&mut self, joined: Vec<(usize, Domain<'a>)>) {
        for (e, d) in joined {
            let counts = &mut self.entries[e];
            if let Some(n) = counts.per_domain.remove(&d) {
                counts.unhist(n);
            }
        }
    }

    /// PodTopologySpread's filter for `pod` on target `at`.
    fn check(&self, pod: &Pod, at: usize, targets: &[Target<'a>]) -> Result<(), Unfit> {
        if pod.topology_spread.is_empty() {
            return Ok(());
        }
        let Some(list) = self.list(pod) else {
            // Every entry point counts for its pods first; a pod not counted
            // is not taken to fit.
            let c = &pod.topology_spread[0];
            return Err(Unfit::TopologySpread {
                topology_key: c.topology_key.clone(),
                max_skew: c.max_skew,
            });
        };
        for &e in self.lists[list].iter() {
            let counts = &self.entries[e];
            let c = counts.constraint;
            let Some(here) = domain(targets, at, &c.topology_key) else {
                return Err(Unfit::SpreadKeyMissing {
                    topology_key: c.topology_key.clone(),
                });
            };
            let Some(min) = counts.min() else { continue };
            let matching = counts.per_domain.get(&here).copied().unwrap_or(0);
            let skew = i64::from(matching) + i64::from(c.counts(pod)) - i64::from(min);
            if skew > i64::from(c.max_skew) {
                return Err(Unfit::TopologySpread {
                    topology_key: c.topology_key.clone(),
                    max_skew: c.max_skew,
                });
            }
        }
        Ok(())
    }
}

/// What the predicates that look at other pods need to know of the pods
/// placed so far, kept up to date as the packer places more.
#[derive(Debug, Clone, Default)]
pub struct Placed<'a> {
    anti: AntiIndex<'a>,
    spread: SpreadIndex<'a>,
}

impl<'a> Placed<'a> {
    /// The pods on `targets`, indexed for placing `pods`.
    pub fn of(targets: &[Target<'a>], pods: &[&'a Pod]) -> Self {
        let mut placed = Placed {
            anti: AntiIndex::of(targets),
            spread: SpreadIndex::default(),
        };
        placed.spread.register_all(targets, pods.iter().copied());
        placed
    }

    /// `pod` was placed on target `i`.
    pub fn add(&mut self, targets: &[Target<'a>], i: usize, pod: &'a Pod) {
        self.anti.add(targets, i, pod);
        self.spread.add(targets, i, pod);
    }

    /// Whether a pod without predicates of its own may ignore its neighbours.
    pub fn is_empty(&self) -> bool {
        self.anti.is_empty()
    }

    /// The predicates that look at other pods for `pod` (counted by
    /// [`Placed::of`]) on target `at`.
    pub fn check(&self, pod: &Pod, at: usize, targets: &[Target<'a>]) -> Result<(), Unfit> {
        check_with_index(pod, at, targets, self)
    }
}

/// The predicates that look at other pods (NodePorts, InterPodAffinity's
/// required terms, PodTopologySpread's hard constraints) for `pod` on
/// target `at`, given every target's pods.
pub fn check_pod_predicates<'a>(pod: &'a Pod, at: usize, targets: &[Target<'a>]) -> Result<(), Unfit> {
    check_with_index(pod, at, targets, &Placed::of(targets, &[pod]))
}

/// [`check_pod_predicates`] with the placed pods indexed.
fn check_with_index<'a>(
    pod: &Pod,
    at: usize,
    targets: &[Target<'a>],
    placed: &Placed<'a>,
) -> Result<(), Unfit> {
    let anti = &placed.anti;
    let here = &targets[at];
    for mine in pod.host_ports.iter() {
        if here
            .pods
            .iter()
            .any(|q| q.host_ports.iter().any(|p| p.conflicts(mine)))
        {
            return Err(Unfit::HostPort {
                port: mine.port,
                protocol: mine.protocol.clone(),
            });
        }
    }
    for term in pod.pod_anti_affinity.iter() {
        // A node without the topology key is in no domain: nothing to avoid.
        if pods_in_domain(targets, at, &term.topology_key).any(|q| term.selects(q, true)) {
            return Err(Unfit::PodAntiAffinity {
                topology_key: term.topology_key.clone(),
            });
        }
    }
    // Symmetry: the anti-affinity of pods already there.
    if let Some(key) = anti.repelled_by(pod, at, targets) {
        return Err(Unfit::ExistingAntiAffinity {
            topology_key: key.to_string(),
        });
    }
    for term in pod.pod_affinity.iter() {
        let unmet = || Unfit::PodAffinity {
            topology_key: term.topology_key.clone(),
        };
        domain(targets, at, &term.topology_key).ok_or_else(unmet)?;
        if pods_in_domain(targets, at, &term.topology_key).any(|q| term.selects(q, false)) {
            continue;
        }
        // The first pod of a group that wants to be with its own kind may go
        // anywhere (kube-scheduler's special case), if none exists yet.
        let exists = targets
            .iter()
            .flat_map(|t| t.pods.iter())
            .any(|q| term.selects(q, false));
        if exists || !term.selects(pod, false) {
            return Err(unmet());
        }
    }
    placed.spread.check(pod, at, targets)
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
        (&'k Resources, &'k Labels, &'k [Toleration]),
        (&'k NodeAffinity, &'k [NodeAffinity], i32),
        // What host ports and inter-pod (anti-)affinity judge; empty for most pods.
        (
            &'k [crate::model::HostPort],
            &'k [crate::model::PodAffinityTerm],
            &'k [crate::model::PodAffinityTerm],
            &'k [TopologySpread],
            Option<&'k Labels>,
        ),
    );
    let labels_matter = pods.iter().any(|p| p.has_pod_predicates());
    let mut index: HashMap<Key<'p>, usize> = HashMap::new();
    let mut classes: Vec<PodClass<'p>> = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let key: Key<'p> = (
            (&pod.requests, &pod.node_selector, &pod.tolerations),
            (&pod.affinity, &pod.volume_affinity, pod.priority),
            (
                &pod.host_ports,
                &pod.pod_affinity,
                &pod.pod_anti_affinity,
                &pod.topology_spread,
                // Labels matter once some pod selects pods by them.
                labels_matter.then_some(&pod.labels),
            ),
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

/// First-fit the pods onto `targets` (mutating their free capacity, and
/// adding them to their pods). Returns, for each pod (same order as
/// `pods`), the index of its target.
///
/// A class walks the targets with a cursor that only moves forward: free
/// capacity only shrinks, and so do the places host ports and
/// anti-affinity leave as pods are placed. Topology spread is the
/// exception (placing pods elsewhere raises the minimum and may reopen a
/// domain): such a class goes round the targets once from its cursor.
pub fn pack<'a>(pods: &[&'a Pod], targets: &mut [Target<'a>]) -> Vec<Option<usize>> {
    let mut index = Placed::of(targets, pods);
    pack_indexed(pods, targets, &mut index)
}

/// [`pack`] with `index` (built by `Placed::of(targets, pods)`) kept up to
/// date, for a [`Neighbourhood`] to start from.
pub fn pack_indexed<'a>(
    pods: &[&'a Pod],
    targets: &mut [Target<'a>],
    index: &mut Placed<'a>,
) -> Vec<Option<usize>> {
    pack_from(pods, targets, index, 0)
}

/// [`pack_indexed`] onto `targets[from..]` only: the targets before are
/// there to be counted by the predicates that look at other pods.
fn pack_from<'a>(
    pods: &[&'a Pod],
    targets: &mut [Target<'a>],
    index: &mut Placed<'a>,
    from: usize,
) -> Vec<Option<usize>> {
    let mut placed = vec![None; pods.len()];
    let n = targets.len();
    let open = n.saturating_sub(from);
    for class in classify(pods) {
        let pod = class.example;
        let neighbours = pod.has_pod_predicates() || !index.is_empty();
        let round = !pod.topology_spread.is_empty();
        let mut cursor = from;
        for &member in &class.members {
            let member_pod = pods[member];
            let fits = |targets: &[Target<'a>], index: &Placed<'a>, i: usize| {
                let t = &targets[i];
                pod.requests.fits_in(&t.free)
                    && extended_short(&pod.extended, &t.extended).is_none()
                    && check_constraints(pod, t.name, t.labels, t.taints).is_ok()
                    && (!neighbours || check_with_index(member_pod, i, targets, index).is_ok())
            };
            let found = if round {
                (0..open)
                    .map(|k| from + (cursor - from + k) % open)
                    .find(|&i| fits(targets, index, i))
            } else {
                (cursor..n).find(|&i| fits(targets, index, i))
            };
            let Some(at) = found else {
                break; // no target left for this class
            };
            cursor = at;
            let t = &mut targets[at];
            t.free = t.free - pod.requests;
            extended_take(&mut t.extended, &pod.extended);
            t.pods.push(member_pod);
            index.add(targets, at, member_pod);
            placed[member] = Some(at);
        }
    }
    placed
}

/// A node not launched yet: its labels and taints, and its room for pods
/// (allocatable minus what DaemonSets will take).
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    pub labels: &'a Labels,
    pub taints: &'a [Taint],
    pub capacity: Resources,
    pub extended: &'a Extended,
    /// The cluster's DaemonSets (one pod each): those a node of this shape
    /// runs are on it from the start, with their host ports and extended
    /// resources (K3s's ServiceLB `svclb-*` pods hold the ports of every
    /// LoadBalancer Service on every node).
    pub daemonsets: &'a [Pod],
}

impl<'a> Shape<'a> {
    /// Whether `pod` could ever run on an empty node of this shape, and if not, why.
    pub fn check(&self, pod: &Pod) -> Result<(), Unfit> {
        check_shape(pod, self.labels, self.taints, &self.capacity, self.extended)
    }

    /// A fresh node of this shape: its DaemonSet pods only. (Topology
    /// spread does not count them there: a DaemonSet pod a workload's
    /// spread selects is not worth the bookkeeping.)
    pub fn new_node(&self) -> Target<'a> {
        let mut extended = self.extended.clone();
        let pods: Vec<&'a Pod> = daemonsets_on(self.daemonsets, self.labels, self.taints).collect();
        for ds in &pods {
            extended_take(&mut extended, &ds.extended);
        }
        Target {
            name: None,
            labels: self.labels,
            taints: self.taints,
            free: self.capacity,
            extended,
            pods,
        }
    }
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

/// First-fit-decreasing of `pods` onto at most `max_nodes` fresh nodes of a
/// shape. `around` is the rest of the cluster (nodes with their pods, and
/// machines on their way): host ports and inter-pod (anti-)affinity are
/// judged against it as well as among the new nodes.
///
/// `classes` are `classify(pods)`: the caller classifies once for the
/// estimates of every pool.
pub fn estimate_new_nodes<'a>(
    pods: &[&'a Pod],
    classes: &[PodClass<'a>],
    shape: Shape<'a>,
    max_nodes: u32,
    around: &mut Neighbourhood<'a>,
) -> NewNodeEstimate {
    // Extended resources are rare: the general path counts them.
    if pods
        .iter()
        .any(|p| p.has_pod_predicates() || !p.extended.is_empty())
        || !around.placed.is_empty()
    {
        return estimate_with_neighbours(pods, classes, shape, max_nodes, around);
    }
    // No pod here looks at its neighbours or asks for an extended
    // resource: the DaemonSet pods on a new node matter for their requests
    // alone, taken off `capacity` already.
    let Shape {
        labels,
        taints,
        capacity,
        extended,
        daemonsets: _,
    } = shape;
    let mut bins: Vec<Resources> = Vec::new();
    let mut placed = Vec::new();
    let mut used = Resources::ZERO;
    for class in classes {
        let pod = class.example;
        if check_shape(pod, labels, taints, &capacity, extended).is_err() {
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
                bins.push(capacity);
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

/// [`estimate_new_nodes`] when pods look at their neighbours: each member
/// tries the new nodes so far from its class's cursor, then a fresh one, all
/// judged in `around` plus the new nodes.
fn estimate_with_neighbours<'a>(
    pods: &[&'a Pod],
    classes: &[PodClass<'a>],
    shape: Shape<'a>,
    max_nodes: u32,
    around: &mut Neighbourhood<'a>,
) -> NewNodeEstimate {
    // New nodes go after the cluster's targets, and are taken off again.
    let world = &mut around.targets;
    let mut index = around.placed.clone();
    // Every pod, not each class's example: members equal by value may hold
    // their constraints at other addresses.
    index.spread.register_all(world, pods.iter().copied());
    let first_bin = world.len();
    let mut placed = Vec::new();
    let mut used = Resources::ZERO;
    for class in classes {
        if shape.check(class.example).is_err() {
            continue;
        }
        // As in `pack`: the places a class can use only shrink as it is
        // placed, but for topology spread, which goes round the new nodes.
        let round = !class.example.topology_spread.is_empty();
        let mut cursor = first_bin;
        for &member in &class.members {
            let pod = pods[member];
            let fits = |world: &[Target<'a>], index: &Placed<'a>, i: usize| {
                pod.requests.fits_in(&world[i].free)
                    && extended_short(&pod.extended, &world[i].extended).is_none()
                    && check_with_index(pod, i, world, index).is_ok()
            };
            let bins = world.len() - first_bin;
            // New nodes share their labels: spread on a key the shape sets
            // (a zone) that one refuses, every one refuses, fresh or not.
            if round
                && bins > 0
                && let Err(Unfit::TopologySpread { topology_key, .. }) =
                    index.spread.check(pod, first_bin, world)
                && topology_key != HOSTNAME_KEY
                && shape.labels.contains_key(&topology_key)
            {
                break;
            }
            let mut at = if round {
                (0..bins)
                    .map(|k| first_bin + (cursor - first_bin + k) % bins)
                    .find(|&i| fits(world, &index, i))
            } else {
                (cursor..world.len()).find(|&i| fits(world, &index, i))
            };
            if at.is_none() && (bins as u32) < max_nodes {
                world.push(shape.new_node());
                let fresh = world.len() - 1;
                let joined = index.spread.add_target(world, fresh, bins > 0);
                if fits(world, &index, fresh) {
                    at = Some(fresh);
                } else {
                    // Not even a fresh node takes it.
                    index.spread.forget(joined);
                    world.pop();
                }
            }
            let Some(i) = at else {
                // Nothing changed since: the rest of the class fits nowhere either.
                break;
            };
            cursor = i;
            world[i].free = world[i].free - pod.requests;
            extended_take(&mut world[i].extended, &pod.extended);
            world[i].pods.push(pod);
            index.add(world, i, pod);
            used += pod.requests;
            placed.push(member);
        }
    }
    placed.sort_unstable();
    let nodes = (world.len() - first_bin) as u32;
    world.truncate(first_bin);
    NewNodeEstimate { nodes, placed, used }
}

/// The cluster new nodes would join, for the predicates that look at other
/// pods: its nodes (and machines launching) with their pods, indexed once
/// for all the estimates of one decision.
#[derive(Debug, Default)]
pub struct Neighbourhood<'a> {
    targets: Vec<Target<'a>>,
    placed: Placed<'a>,
}

impl<'a> Neighbourhood<'a> {
    /// `targets` indexed for placing `pods` (others are counted per estimate).
    pub fn new(targets: Vec<Target<'a>>, pods: &[&'a Pod]) -> Self {
        let placed = Placed::of(&targets, pods);
        Neighbourhood { targets, placed }
    }

    /// `targets` with the index [`pack_indexed`] kept for them.
    pub fn packed(targets: Vec<Target<'a>>, placed: Placed<'a>) -> Self {
        Neighbourhood { targets, placed }
    }

    /// Place `pods` on the machines on their way (joined with no pods,
    /// after the cluster's nodes), each judged among the cluster's pods
    /// as the scheduler will judge it once the machine is a node.
    pub fn pack_in_flight(&mut self, pods: &[&'a Pod], in_flight: Vec<Target<'a>>) -> Vec<Option<usize>> {
        let from = self.targets.len();
        for target in in_flight {
            self.join(target);
        }
        pack_from(pods, &mut self.targets, &mut self.placed, from)
    }

    /// One more target (a machine on its way) with the pods placed on it.
    pub fn join(&mut self, target: Target<'a>) {
        self.targets.push(target);
        let k = self.targets.len() - 1;
        self.placed.spread.add_target(&self.targets, k, false);
        for pod in self.targets[k].pods.clone() {
            self.placed.add(&self.targets, k, pod);
        }
    }

    /// Whether `pod` could go on one fresh node of this shape joining the
    /// cluster, and if not, the predicate that keeps it off.
    pub fn check_new_node(&mut self, pod: &'a Pod, shape: Shape<'a>) -> Result<(), Unfit> {
        shape.check(pod)?;
        let index = &mut self.placed;
        index.spread.register(&self.targets, pod);
        self.targets.push(shape.new_node());
        let fresh = self.targets.len() - 1;
        // Joined for this check only: taken off again below.
        let joined = index.spread.add_target(&self.targets, fresh, false);
        let verdict = check_with_index(pod, fresh, &self.targets, index);
        index.spread.forget(joined);
        self.targets.pop();
        verdict
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
                extended: Extended::new(),
                pods: Vec::new(),
            },
            Target {
                name: None,
                labels: &gpu,
                taints: &taint,
                free: Resources::new(4000, 8 << 30, 10),
                extended: Extended::new(),
                pods: Vec::new(),
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
        let empty = Labels::new();
        let shape = Shape {
            labels: &empty,
            taints: &[],
            capacity: cap,
            extended: &Extended::new(),
            daemonsets: &[],
        };
        let classes = classify(&all);
        let est = estimate_new_nodes(&all, &classes, shape, 100, &mut Neighbourhood::default());
        // Each big pod opens a node leaving 500m, which one small pod fills;
        // the other three small pods share a fourth node.
        assert_eq!(est.nodes, 4);
        assert_eq!(est.placed.len(), 9);
        let capped = estimate_new_nodes(&all, &classes, shape, 2, &mut Neighbourhood::default());
        assert_eq!(capped.nodes, 2);
        assert_eq!(capped.placed.len(), 4, "two bigs plus one small beside each");
    }

    #[test]
    fn shape_check_explains_why() {
        let cap = Resources::new(2000, 4 << 30, 110);
        let huge = pod("huge", 3000, 8192);
        match check_shape(&huge, &Labels::new(), &[], &cap, &Extended::new()) {
            Err(Unfit::TooLarge { resources }) => assert_eq!(resources, vec!["cpu", "memory"]),
            other => panic!("unexpected {other:?}"),
        }
        let mut sel = pod("sel", 100, 10);
        sel.node_selector.insert("zone".into(), "b".into());
        let err = check_shape(&sel, &Labels::new(), &[], &cap, &Extended::new()).unwrap_err();
        assert_eq!(err.to_string(), "node selector zone=b not matched");
    }
}
