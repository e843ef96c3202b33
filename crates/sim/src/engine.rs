//! The simulated cluster on a virtual clock: HPA-driven workloads, a
//! least-allocated scheduler, booting and draining nodes, and the autoscaler
//! under test calling the real `decide`.

use crate::clock::VirtualClock;
use crate::trace::{Cursor, DemandUnit, Trace};
use k3scale_core::lifecycle::{Lifecycle, LifecycleAction, ObservedMachine, ObservedNode};
use k3scale_core::model::{Labels, Node, OwnerKind, Pod, PodAffinityTerm, PodPhase, Pool, TopologySpread};
use k3scale_core::scheduling::{HOSTNAME_KEY, Placed, Target, bound_pods, check_constraints, free_capacity};
use k3scale_core::snapshot::Snapshot;
use k3scale_core::{Clock, Decision, Policy, Resources, Time, decide};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

const MI: u64 = 1 << 20;
/// The label every simulated node carries with its own name.
pub const HOSTNAME: &str = HOSTNAME_KEY;

/// The pod template and HPA of every simulated Deployment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WorkloadSpec {
    pub cpu_request_milli: u64,
    pub memory_request: u64,
    /// Pods may burst to this much CPU while others are pending.
    pub cpu_limit_milli: u64,
    /// HPA target: average CPU usage as a share of requests.
    pub target_utilization: f64,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// The pods' labels, and the constraints that look at other pods: what
    /// the simulated scheduler honours like kube-scheduler.
    pub labels: Labels,
    pub topology_spread: Arc<[TopologySpread]>,
    pub pod_anti_affinity: Arc<[PodAffinityTerm]>,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            cpu_request_milli: 250,
            memory_request: 256 * MI,
            cpu_limit_milli: 1000,
            target_utilization: 0.7,
            min_replicas: 2,
            max_replicas: 500,
            labels: Labels::new(),
            topology_spread: Arc::from([]),
            pod_anti_affinity: Arc::from([]),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    pub tick: Duration,
    pub hpa_interval: Duration,
    /// HPA scale-down stabilization window (Kubernetes default: 5 minutes).
    pub hpa_stabilization: Duration,
    pub scrape_interval: Duration,
    /// CPU-seconds per request, for `requests` traces.
    pub cpu_per_request: f64,
    pub workload: WorkloadSpec,
    /// One DaemonSet pod per node (e.g. svclb, node-exporter).
    pub daemonset: Resources,
    /// CPU and memory the K3s agent itself uses on every node.
    pub node_overhead: Resources,
    /// Time from cordon to the node being gone when pods must be evicted.
    pub drain_time: Duration,
    pub empty_delete_time: Duration,
    /// At this offset every pool's node settings change (a new agent
    /// image): nodes launched before are drifted, and replaced.
    pub settings_change_at: Option<Duration>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            tick: Duration::from_secs(5),
            hpa_interval: Duration::from_secs(15),
            hpa_stabilization: Duration::from_secs(300),
            scrape_interval: Duration::from_secs(15),
            cpu_per_request: 0.05,
            workload: WorkloadSpec::default(),
            daemonset: Resources::pod(100, 128 * MI),
            node_overhead: Resources::new(100, 300 * MI, 0),
            drain_time: Duration::from_secs(30),
            empty_delete_time: Duration::from_secs(5),
            settings_change_at: None,
        }
    }
}

/// Who decides the node count in a run.
#[derive(Debug, Clone)]
pub enum Contender {
    /// `decide` with this policy every `interval`, and at once on a new
    /// unschedulable pod or node change when `event_driven`.
    Autoscaler {
        name: String,
        policy: Box<Policy>,
        interval: Duration,
        event_driven: bool,
    },
    /// A fixed number of nodes of the first pool, for the whole run.
    Fixed {
        name: String,
        pools: Vec<Pool>,
        nodes: u32,
    },
    /// Perfect foresight, the limit no autoscaler can beat: at every
    /// instant `max(min, ceil(replicas the HPA wants / pods per node))`
    /// nodes are Ready (the pools as one fleet, priced and sized as the
    /// first), each launched one boot time
    /// before it is needed and deleted once no need within a boot time
    /// would bring it back. No pod ever waits.
    Oracle { name: String, pools: Vec<Pool> },
}

impl Contender {
    pub fn name(&self) -> &str {
        match self {
            Contender::Autoscaler { name, .. }
            | Contender::Fixed { name, .. }
            | Contender::Oracle { name, .. } => name,
        }
    }

    fn pools(&self) -> &[Pool] {
        match self {
            Contender::Autoscaler { policy, .. } => &policy.pools,
            Contender::Fixed { pools, .. } | Contender::Oracle { pools, .. } => pools,
        }
    }
}

/// Raw results of one run, summarized by `report`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunResult {
    pub name: String,
    pub duration: Duration,
    pub node_seconds: f64,
    pub cost: f64,
    /// Seconds each pod waited between creation and binding.
    pub waits: Vec<f64>,
    pub scale_up_events: u32,
    pub nodes_added: u32,
    pub scale_down_events: u32,
    pub nodes_removed: u32,
    /// Nodes alive (launched, not yet gone) at each minute.
    pub nodes_per_minute: Vec<u32>,
    /// Total CPU demand (cores) at each minute.
    pub demand_per_minute: Vec<f64>,
    /// Pods pending (created, not yet bound) at each minute.
    pub pending_per_minute: Vec<u32>,
    pub boot_time: Duration,
    /// Every decision that changed the node count, with its reasons.
    pub events: Vec<ScaleEvent>,
    /// Scale-ups launched for pods a scale-down had evicted within the
    /// flap window: a removal undone by its own pods. `None` where the
    /// policy does not say which pods it launches for (threshold rules).
    pub scale_ups_for_evicted_pods: Option<u32>,
    /// The most nodes voluntarily disrupted at once (draining, or with a
    /// replacement on its way), as a decision saw them.
    pub max_disrupting: u32,
    /// The decision where disrupted nodes were the largest share of the
    /// nodes: (disrupted, nodes).
    pub most_disrupted_share: (u32, u32),
}

/// One acted-on decision, as the daemon would log it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScaleEvent {
    pub at_s: u64,
    pub added: u32,
    pub removed: u32,
    /// Of `added`, nodes launched to replace nodes that leave (expiry,
    /// drift, consolidation, spot interruption); of `removed`, the nodes
    /// leaving for them. Swapped capacity, neither asked for nor given back.
    #[serde(skip_serializing_if = "is_zero")]
    pub replacements: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub replaced: u32,
    pub reasons: Vec<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

struct Machine {
    name: String,
    pool: usize,
    launched_at: Time,
    ready_at: Time,
    gone_at: Option<Time>,
}

struct PodMeta {
    workload: usize,
    created_at: Time,
    /// Re-created after a scale-down evicted its predecessor.
    evicted: bool,
}

struct Workload<'t> {
    name: String,
    cursor: Cursor<'t>,
    /// Seconds per trace row, to turn `requests` into a rate.
    row_secs: f64,
    replicas: u32,
    recommendations: VecDeque<(Time, u32)>,
    /// The trace value in force (cores, requests or replicas).
    wanted: f64,
    /// CPU cores the workload uses at full service.
    demand: f64,
}

struct Sim<'a> {
    opts: &'a SimOptions,
    unit: DemandUnit,
    /// Owned once their settings change mid-run.
    pools: std::borrow::Cow<'a, [Pool]>,
    snap: Snapshot,
    meta: Vec<PodMeta>,
    machines: Vec<Machine>,
    /// Indices of machines launched but not Ready yet.
    booting: Vec<usize>,
    /// Indices of machines not deleted.
    alive: std::collections::BTreeSet<usize>,
    /// Each pool's machine lifecycle, as the daemon keeps it: what is in
    /// flight and which pools are held come from it, not from bookkeeping
    /// of the simulator's own.
    lifecycles: Vec<Lifecycle>,
    deletions: Vec<(Time, String)>,
    workloads: Vec<Workload<'a>>,
    pod_counter: u64,
    pending: usize,
    /// Machines or nodes changed since the lifecycles were last stepped.
    lifecycles_stale: bool,
    result: RunResult,
}

/// How many workload pods a node of `pool` holds once its DaemonSet pods
/// run (at least one; exactly one when they keep apart by hostname).
pub fn pods_per_node(pool: &Pool, opts: &SimOptions) -> u32 {
    let spec = &opts.workload;
    let mut probe = Pod::new("default", "probe", Resources::ZERO);
    probe.labels = spec.labels.clone();
    if spec
        .pod_anti_affinity
        .iter()
        .any(|t| t.topology_key == HOSTNAME_KEY && t.selects(&probe, false))
    {
        return 1;
    }
    let room = pool.template.allocatable.saturating_sub(&opts.daemonset);
    let pod = Resources::pod(opts.workload.cpu_request_milli, opts.workload.memory_request);
    let n = (room.cpu_milli / pod.cpu_milli.max(1))
        .min(room.memory_bytes / pod.memory_bytes.max(1))
        .min(room.pods)
        .max(1);
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Run one contender over a trace. `progress` is called with the fraction done.
pub fn run(
    trace: &Trace,
    contender: &Contender,
    opts: &SimOptions,
    progress: &mut dyn FnMut(f64),
) -> RunResult {
    let pools = contender.pools();
    let mut sim = Sim::new(trace, pools, opts, contender.name());
    sim.result.scale_ups_for_evicted_pods = match contender {
        Contender::Autoscaler { policy, .. }
            if policy.scale_up.pending_pods != k3scale_core::policy::PendingPods::BinPack =>
        {
            None
        }
        _ => Some(0),
    };
    let initial: Vec<(usize, u32)> = match contender {
        Contender::Autoscaler { .. } => pools.iter().enumerate().map(|(i, p)| (i, p.min)).collect(),
        Contender::Fixed { nodes, .. } => vec![(0, *nodes)],
        Contender::Oracle { .. } => return sim.oracle(trace, progress),
    };
    for (pool, n) in initial {
        for _ in 0..n {
            let m = sim.launch(pool, Time::ZERO);
            sim.machines[m].ready_at = Time::ZERO;
        }
    }
    let end = Time::ZERO + trace.duration();
    let mut clock = VirtualClock::new(Time::ZERO);
    let mut last_reconcile: Option<Time> = None;
    // The policy after `settings_change_at`, once it has passed.
    let mut rolled: Option<Box<Policy>> = None;
    let mut last_progress = 0.0;
    while clock.now() < end {
        let now = clock.now();
        sim.update_demand(now.as_millis() / 1000);
        if clock.on_multiple_of(opts.hpa_interval) {
            sim.hpa(now);
        }
        let mut changed = sim.nodes_ready(now);
        changed |= sim.finish_deletions(now);
        changed |= sim.schedule(now);
        if clock.on_multiple_of(opts.scrape_interval) {
            sim.scrape(now);
        }
        if let Contender::Autoscaler {
            policy,
            interval,
            event_driven,
            ..
        } = contender
        {
            if rolled.is_none()
                && let Some(at) = opts.settings_change_at
                && now >= Time::ZERO + at
            {
                rolled = Some(sim.change_settings(policy));
            }
            let policy = rolled.as_ref().unwrap_or(policy);
            let due = last_reconcile.is_none_or(|t| now.since(t) >= *interval);
            if due || (*event_driven && changed) {
                last_reconcile = Some(now);
                sim.observe_lifecycles(now);
                let disrupting =
                    (sim.snap.nodes.iter().filter(|n| n.cordoned).count() + sim.snap.replacing.len()) as u32;
                let nodes = sim.snap.nodes.len() as u32;
                sim.result.max_disrupting = sim.result.max_disrupting.max(disrupting);
                let (d, n) = sim.result.most_disrupted_share;
                if u64::from(disrupting) * u64::from(n.max(1)) > u64::from(d) * u64::from(nodes.max(1)) {
                    sim.result.most_disrupted_share = (disrupting, nodes);
                }
                let decision = decide(&sim.snap, policy, now);
                sim.snap.remember(&decision, now);
                sim.apply(&decision, now);
            }
        }
        if clock.on_multiple_of(Duration::from_secs(60)) {
            sim.sample_minute();
            // The memory of `policy.predictive`, as the daemon keeps it.
            sim.snap.demand.record(now, &sim.snap.pods);
        }
        clock.advance(opts.tick);
        let done = clock.now().as_millis() as f64 / end.as_millis().max(1) as f64;
        if done - last_progress >= 0.01 {
            progress(done.min(1.0));
            last_progress = done;
        }
    }
    sim.finish(end)
}

impl<'a> Sim<'a> {
    fn new(trace: &'a Trace, pools: &'a [Pool], opts: &'a SimOptions, name: &str) -> Self {
        let workloads = trace
            .series
            .iter()
            .map(|(name, points)| Workload {
                name: name.clone(),
                cursor: Cursor::new(points),
                row_secs: points.get(1).map_or(60.0, |p| (p.0 - points[0].0).max(1) as f64),
                replicas: 0,
                recommendations: VecDeque::new(),
                wanted: 0.0,
                demand: 0.0,
            })
            .collect();
        let mut daemonset = Pod::new("kube-system", "svclb", opts.daemonset);
        daemonset.owner = OwnerKind::DaemonSet;
        Sim {
            opts,
            unit: trace.unit,
            pools: std::borrow::Cow::Borrowed(pools),
            snap: Snapshot {
                daemonsets: vec![daemonset],
                ..Snapshot::default()
            },
            meta: Vec::new(),
            machines: Vec::new(),
            booting: Vec::new(),
            alive: std::collections::BTreeSet::new(),
            lifecycles: vec![Lifecycle::default(); pools.len()],
            deletions: Vec::new(),
            workloads,
            pod_counter: 0,
            pending: 0,
            lifecycles_stale: true,
            result: RunResult {
                name: name.to_string(),
                boot_time: pools
                    .iter()
                    .map(|p| p.template.boot_time)
                    .max()
                    .unwrap_or_default(),
                ..RunResult::default()
            },
        }
    }

    fn launch(&mut self, pool: usize, now: Time) -> usize {
        let p = &self.pools[pool];
        self.lifecycles_stale = true;
        let name = format!("{}-{:05x}", p.name, self.machines.len());
        self.lifecycles[pool].launched(&p.name, &name, now);
        self.alive.insert(self.machines.len());
        self.machines.push(Machine {
            name,
            pool,
            launched_at: now,
            ready_at: now + p.template.boot_time,
            gone_at: None,
        });
        self.booting.push(self.machines.len() - 1);
        self.machines.len() - 1
    }

    fn update_demand(&mut self, secs: u64) {
        let per_request = self.opts.cpu_per_request;
        for w in &mut self.workloads {
            let v = w.cursor.value_at(secs);
            w.wanted = v;
            w.demand = match self.unit {
                DemandUnit::Cpu => v,
                DemandUnit::Requests => v / w.row_secs * per_request,
                // Pods of a replica trace run at the HPA target utilization.
                DemandUnit::Replicas => {
                    v.round() * self.opts.workload.cpu_request_milli as f64 / 1000.0
                        * self.opts.workload.target_utilization
                }
            };
        }
    }

    /// Horizontal Pod Autoscaler: replicas for the target CPU utilization,
    /// scale-up limited to max(+4, +100%) per sync, scale-down stabilized.
    fn hpa(&mut self, now: Time) {
        let spec = &self.opts.workload;
        for wi in 0..self.workloads.len() {
            let w = &mut self.workloads[wi];
            let desired = if self.unit == DemandUnit::Replicas {
                w.wanted.round() as u32
            } else {
                let per_pod = spec.cpu_request_milli as f64 / 1000.0 * spec.target_utilization;
                (w.demand / per_pod).ceil() as u32
            }
            .clamp(spec.min_replicas, spec.max_replicas);
            w.recommendations.push_back((now, desired));
            let cutoff = now.saturating_sub(self.opts.hpa_stabilization);
            while w.recommendations.front().is_some_and(|(t, _)| *t < cutoff) {
                w.recommendations.pop_front();
            }
            let stabilized = w.recommendations.iter().map(|r| r.1).max().unwrap_or(desired);
            let current = w.replicas;
            let target = if desired > current {
                desired.min((current * 2).max(current + 4))
            } else {
                stabilized.min(current)
            };
            w.replicas = target;
            match target.cmp(&current) {
                std::cmp::Ordering::Greater => (current..target).for_each(|_| self.create_pod(wi, now)),
                std::cmp::Ordering::Less => self.remove_replicas(wi, (current - target) as usize, now),
                std::cmp::Ordering::Equal => {}
            }
        }
    }

    fn create_pod(&mut self, workload: usize, now: Time) {
        let spec = &self.opts.workload;
        self.pod_counter += 1;
        let name = format!("{}-{:x}", self.workloads[workload].name, self.pod_counter);
        let mut pod = Pod::new(
            "default",
            &name,
            Resources::pod(spec.cpu_request_milli, spec.memory_request),
        );
        pod.phase = PodPhase::Pending;
        pod.labels = spec.labels.clone();
        pod.topology_spread = Arc::clone(&spec.topology_spread);
        pod.pod_anti_affinity = Arc::clone(&spec.pod_anti_affinity);
        self.snap.pods.push(pod);
        self.meta.push(PodMeta {
            workload,
            created_at: now,
            evicted: false,
        });
        self.pending += 1;
    }

    /// The ReplicaSet controller deletes pending pods first, then the newest.
    fn remove_replicas(&mut self, workload: usize, n: usize, now: Time) {
        let mut order: Vec<usize> = (0..self.snap.pods.len())
            .filter(|&i| {
                self.meta[i].workload == workload && self.snap.pods[i].owner == OwnerKind::ReplicaSet
            })
            .collect();
        order.sort_by_key(|&i| {
            (
                self.snap.pods[i].node_name.is_some(),
                std::cmp::Reverse(self.meta[i].created_at),
            )
        });
        let mut doomed: Vec<usize> = order.into_iter().take(n).collect();
        doomed.sort_unstable_by(|a, b| b.cmp(a));
        for i in doomed {
            if self.snap.pods[i].node_name.is_none() {
                self.result
                    .waits
                    .push(now.since(self.meta[i].created_at).as_secs_f64());
                self.pending -= 1;
            }
            self.snap.pods.swap_remove(i);
            self.meta.swap_remove(i);
        }
    }

    /// The pools' machines against the cluster's Nodes, through the same
    /// lifecycle the daemon steps: the snapshot's machines in flight and
    /// held pools come from it. A machine it gives up on (not a Ready node
    /// within its pool's timeouts: a boot slower than them) is deleted.
    fn observe_lifecycles(&mut self, now: Time) {
        // With every machine a Ready node, nothing deleting and no pool
        // held, a step would change nothing: the daemon's step is
        // idempotent then, and skipping it is most of a month's run.
        let settled = self.booting.is_empty() && self.deletions.is_empty() && self.snap.backoff.is_empty();
        if settled && !self.lifecycles_stale {
            return;
        }
        self.lifecycles_stale = false;
        let nodes: Vec<ObservedNode> = self.snap.nodes.iter().map(ObservedNode::from).collect();
        self.snap.in_flight.clear();
        self.snap.backoff.clear();
        // Cheap while borrowed (every run until its settings change).
        let pools = self.pools.clone();
        for (pi, pool) in pools.iter().enumerate() {
            let inventory: Vec<ObservedMachine> = self
                .alive
                .iter()
                .map(|&i| &self.machines[i])
                .filter(|m| m.pool == pi)
                .map(|m| ObservedMachine {
                    name: m.name.clone(),
                    pool: pool.name.clone(),
                    created_at: m.launched_at,
                })
                .collect();
            let cfg = k3scale_core::lifecycle::LifecycleConfig::for_pool(pool);
            let actions = self.lifecycles[pi].step(&inventory, &nodes, now, &cfg);
            for action in actions {
                if let LifecycleAction::DeleteMachine { name, .. } = action {
                    self.machine_gone(&name, now);
                }
            }
            self.snap.in_flight.extend(self.lifecycles[pi].in_flight());
            self.snap.backoff.extend(self.lifecycles[pi].backed_off(now));
        }
    }

    /// Every pool's settings change (a new image): new hash, on the pools
    /// machines launch from and in the policy that decides.
    fn change_settings(&mut self, policy: &Policy) -> Box<Policy> {
        let rehash = |pool: &mut Pool| {
            pool.settings_hash = format!("{}-changed", pool.settings_hash);
            pool.template.labels.insert(
                k3scale_core::model::HASH_LABEL.to_string(),
                pool.settings_hash.clone(),
            );
        };
        self.pools.to_mut().iter_mut().for_each(rehash);
        let mut changed = policy.clone();
        changed.pools.iter_mut().for_each(rehash);
        Box::new(changed)
    }

    /// A machine deleted: billed until now, never to become a node.
    fn machine_gone(&mut self, name: &str, now: Time) {
        self.lifecycles_stale = true;
        if let Some(i) = self.machines.iter().position(|m| m.name == name) {
            self.machines[i].gone_at = Some(now);
            self.alive.remove(&i);
            self.booting.retain(|&b| b != i);
        }
    }

    fn nodes_ready(&mut self, now: Time) -> bool {
        let (ready, booting): (Vec<usize>, Vec<usize>) = self
            .booting
            .iter()
            .partition(|&&m| self.machines[m].ready_at <= now);
        if ready.is_empty() {
            return false;
        }
        self.lifecycles_stale = true;
        self.booting = booting;
        for m in ready {
            let machine = &self.machines[m];
            let pool = &self.pools[machine.pool];
            let mut node = Node::new(&machine.name, Some(&pool.name), pool.template.allocatable, now);
            node.labels = pool.template.labels.clone();
            node.labels.insert(HOSTNAME_KEY.to_string(), machine.name.clone());
            node.taints = pool.template.taints.clone();
            // Every new node runs one pod of each DaemonSet.
            let daemons: Vec<Pod> = self
                .snap
                .daemonsets
                .iter()
                .map(|template| {
                    let mut ds = template.clone();
                    ds.name = format!("{}-{}", template.name, machine.name);
                    ds.uid = format!("uid-{}", ds.name);
                    ds.node_name = Some(machine.name.clone());
                    ds
                })
                .collect();
            self.snap.nodes.push(node);
            for ds in daemons {
                self.snap.pods.push(ds);
                self.meta.push(PodMeta {
                    workload: usize::MAX,
                    created_at: now,
                    evicted: false,
                });
            }
        }
        true
    }

    fn finish_deletions(&mut self, now: Time) -> bool {
        if !self.deletions.iter().any(|(at, _)| *at <= now) {
            return false;
        }
        self.lifecycles_stale = true;
        let (due, later): (Vec<_>, Vec<_>) = self.deletions.drain(..).partition(|(at, _)| *at <= now);
        self.deletions = later;
        for (_, name) in due {
            self.snap.nodes.retain(|n| n.name != name);
            let mut i = 0;
            while i < self.snap.pods.len() {
                if self.snap.pods[i].node_name.as_deref() == Some(name.as_str()) {
                    self.snap.pods.swap_remove(i);
                    self.meta.swap_remove(i);
                } else {
                    i += 1;
                }
            }
            self.machine_gone(&name, now);
        }
        true
    }

    /// kube-scheduler with its default LeastAllocated scoring: each pending
    /// pod goes to the fitting node with the most free capacity.
    /// Returns whether a pod became unschedulable (a watch event).
    fn schedule(&mut self, now: Time) -> bool {
        if self.pending == 0 {
            return false;
        }
        let placements = self.place_pending();
        let mut newly_unschedulable = false;
        for (p, at) in placements {
            let pod = &mut self.snap.pods[p];
            match at {
                Some(i) => {
                    pod.node_name = Some(self.snap.nodes[i].name.clone());
                    pod.phase = PodPhase::Running;
                    pod.unschedulable_since = None;
                    self.result
                        .waits
                        .push(now.since(self.meta[p].created_at).as_secs_f64());
                    self.pending -= 1;
                }
                None if pod.unschedulable_since.is_none() => {
                    pod.unschedulable_since = Some(now);
                    newly_unschedulable = true;
                }
                None => {}
            }
        }
        newly_unschedulable
    }

    /// Where each pending pod goes (its index, and its node's): the
    /// fitting node with the most free capacity, honouring host ports,
    /// inter-pod (anti-)affinity and topology spread as kube-scheduler does.
    fn place_pending(&self) -> Vec<(usize, Option<usize>)> {
        let nodes = &self.snap.nodes;
        let pods = &self.snap.pods;
        let mut free = free_capacity(nodes, pods);
        let pending: Vec<&Pod> = pods.iter().filter(|p| p.node_name.is_none()).collect();
        // Predicates on other pods: only when some pod has them.
        let neighbours = pending.iter().any(|p| p.has_pod_predicates())
            || pods.iter().any(|p| !p.pod_anti_affinity.is_empty());
        let mut targets: Vec<Target<'_>> = Vec::new();
        if neighbours {
            targets = nodes
                .iter()
                .map(|n| Target {
                    name: Some(&n.name),
                    labels: &n.labels,
                    taints: &n.taints,
                    free: Resources::ZERO,
                    extended: Default::default(),
                    pods: Vec::new(),
                })
                .collect();
            for (i, pod) in bound_pods(nodes, pods) {
                targets[i].pods.push(pod);
            }
        }
        let mut index = Placed::of(&targets, &pending);
        let mut placements = Vec::new();
        for (p, pod) in pods.iter().enumerate() {
            if pod.node_name.is_some() {
                continue;
            }
            let best = nodes
                .iter()
                .enumerate()
                .filter(|(i, n)| n.schedulable() && pod.requests.fits_in(&free[*i]))
                .filter(|(_, n)| check_constraints(pod, Some(&n.name), &n.labels, &n.taints).is_ok())
                .filter(|(i, _)| !neighbours || index.check(pod, *i, &targets).is_ok())
                .max_by(|(a, na), (b, nb)| {
                    let score = |i: usize, n: &Node| {
                        let f = free[i];
                        f.cpu_milli as f64 / n.allocatable.cpu_milli.max(1) as f64
                            + f.memory_bytes as f64 / n.allocatable.memory_bytes.max(1) as f64
                    };
                    score(*a, na)
                        .total_cmp(&score(*b, nb))
                        .then(nb.name.cmp(&na.name))
                })
                .map(|(i, _)| i);
            if let Some(i) = best {
                free[i] = free[i] - pod.requests;
                if neighbours {
                    targets[i].pods.push(pod);
                    index.add(&targets, i, pod);
                }
            }
            placements.push((p, best));
        }
        placements
    }

    /// What node-exporter would report: cluster CPU and memory utilization.
    fn scrape(&mut self, now: Time) {
        let keep = Duration::from_secs(20 * 60);
        if self.snap.nodes.is_empty() {
            self.snap.cpu.push(now, None);
            self.snap.memory.push(now, None);
            return;
        }
        let mut running = vec![0u32; self.workloads.len()];
        for (pod, meta) in self.snap.pods.iter().zip(&self.meta) {
            if pod.node_name.is_some() && meta.workload != usize::MAX {
                running[meta.workload] += 1;
            }
        }
        let limit = self.opts.workload.cpu_limit_milli as f64 / 1000.0;
        let per_pod: Vec<f64> = self
            .workloads
            .iter()
            .zip(&running)
            .map(|(w, &r)| {
                if r == 0 {
                    0.0
                } else {
                    (w.demand / r as f64).min(limit)
                }
            })
            .collect();
        let (mut cpu_used, mut mem_used, mut cpu_total, mut mem_total) = (0.0, 0.0, 0.0, 0.0);
        for n in &self.snap.nodes {
            cpu_total += n.allocatable.cpu_milli as f64 / 1000.0;
            mem_total += n.allocatable.memory_bytes as f64;
            cpu_used += self.opts.node_overhead.cpu_milli as f64 / 1000.0;
            mem_used += self.opts.node_overhead.memory_bytes as f64;
        }
        for (pod, meta) in self.snap.pods.iter().zip(&self.meta) {
            if pod.node_name.is_none() {
                continue;
            }
            if meta.workload == usize::MAX {
                cpu_used += pod.requests.cpu_milli as f64 / 2000.0;
                mem_used += pod.requests.memory_bytes as f64 / 2.0;
            } else {
                cpu_used += per_pod[meta.workload];
                mem_used += pod.requests.memory_bytes as f64 * 0.8;
            }
        }
        self.snap.cpu.push(now, Some((cpu_used / cpu_total).min(1.0)));
        self.snap.memory.push(now, Some((mem_used / mem_total).min(1.0)));
        self.snap.cpu.trim(now, keep);
        self.snap.memory.trim(now, keep);
        for s in self.snap.custom.values_mut() {
            s.trim(now, keep);
        }
    }

    fn apply(&mut self, decision: &Decision, now: Time) {
        if !decision.scale_up.is_empty()
            && self.for_evicted_pods(decision, now)
            && let Some(n) = &mut self.result.scale_ups_for_evicted_pods
        {
            *n += 1;
        }
        if !decision.is_noop() {
            self.result.events.push(ScaleEvent {
                at_s: now.as_millis() / 1000,
                added: decision.nodes_added(),
                removed: decision.scale_down.len() as u32,
                replacements: decision.replacements_launched,
                replaced: decision.replaced_drained,
                reasons: decision.reasons.iter().map(ToString::to_string).collect(),
            });
        }
        for up in &decision.scale_up {
            let Some(pool) = self.pools.iter().position(|p| p.name == up.pool) else {
                continue;
            };
            for _ in 0..up.count {
                self.launch(pool, now);
            }
            self.result.scale_up_events += 1;
            self.result.nodes_added += up.count;
            self.snap.last_scale_up = Some(now);
        }
        for down in &decision.scale_down {
            let Some(node) = self.snap.nodes.iter_mut().find(|n| n.name == down.node) else {
                continue;
            };
            node.cordoned = true;
            // Evict: the ReplicaSet recreates each pod, pending until the scheduler places it.
            let mut evicted = Vec::new();
            let mut i = 0;
            while i < self.snap.pods.len() {
                let pod = &self.snap.pods[i];
                if pod.node_name.as_deref() == Some(down.node.as_str()) && !pod.is_node_bound() {
                    evicted.push(self.meta[i].workload);
                    self.snap.pods.swap_remove(i);
                    self.meta.swap_remove(i);
                } else {
                    i += 1;
                }
            }
            for w in evicted {
                self.create_pod(w, now);
                if let Some(meta) = self.meta.last_mut() {
                    meta.evicted = true;
                }
            }
            let delay = if down.empty {
                self.opts.empty_delete_time
            } else {
                self.opts.drain_time
            };
            self.deletions.push((now + delay, down.node.clone()));
            self.result.nodes_removed += 1;
            self.snap.last_scale_down = Some(now);
        }
        if !decision.scale_down.is_empty() {
            self.result.scale_down_events += 1;
        }
    }

    /// Whether a pod `decision` launches nodes for was re-created, within
    /// the flap window, after a scale-down evicted it.
    fn for_evicted_pods(&self, decision: &Decision, now: Time) -> bool {
        decision.triggering_pods.iter().any(|t| {
            self.snap
                .pods
                .iter()
                .zip(&self.meta)
                .find(|(p, _)| p.name == t.name)
                .is_some_and(|(_, m)| m.evicted && now.since(m.created_at) <= crate::report::FLAP_WINDOW)
        })
    }

    /// The oracle's run: the HPA alone decides the replicas (it never looks
    /// at nodes), so their whole timeline is known before any node is
    /// chosen, and the nodes follow it with a boot time of foresight.
    fn oracle(mut self, trace: &Trace, progress: &mut dyn FnMut(f64)) -> RunResult {
        let Some(pool) = self.pools.first().cloned() else {
            return self.finish(Time::ZERO);
        };
        let tick = self.opts.tick.max(Duration::from_millis(1));
        let per_node = u64::from(pods_per_node(&pool, self.opts));
        // The pools as one fleet (the zones scenario splits one in two).
        let min: u32 = self.pools.iter().map(|p| p.min).sum();
        let max: u32 = self.pools.iter().map(|p| p.max).sum::<u32>().max(min);
        let end = Time::ZERO + trace.duration();
        let mut clock = VirtualClock::new(Time::ZERO);
        let (mut needed, mut demand) = (Vec::new(), Vec::new());
        while clock.now() < end {
            let now = clock.now();
            self.update_demand(now.as_millis() / 1000);
            if clock.on_multiple_of(self.opts.hpa_interval) {
                self.hpa(now);
                // Its pods are never pending: they are not the oracle's cost.
                self.snap.pods.clear();
                self.meta.clear();
                self.pending = 0;
            }
            let replicas: u64 = self.workloads.iter().map(|w| u64::from(w.replicas)).sum();
            let nodes = u32::try_from(replicas.div_ceil(per_node)).unwrap_or(u32::MAX);
            needed.push(nodes.clamp(min, max));
            demand.push(self.workloads.iter().map(|w| w.demand).sum::<f64>());
            clock.advance(tick);
            progress(0.5 * clock.now().as_millis() as f64 / end.as_millis().max(1) as f64);
        }
        let boot_ticks = (pool.template.boot_time.as_millis() / tick.as_millis()).max(1) as usize;
        let minute_ticks = (60_000 / tick.as_millis().max(1)).max(1) as usize;
        let result = &mut self.result;
        let mut previous = 0u32;
        for k in 0..needed.len() {
            // Alive now: whatever is needed before a node launched now is Ready.
            let alive = needed[k..needed.len().min(k + boot_ticks + 1)]
                .iter()
                .copied()
                .max()
                .unwrap_or(0);
            let (added, removed) = (alive.saturating_sub(previous), previous.saturating_sub(alive));
            if k > 0 && added > 0 {
                result.scale_up_events += 1;
                result.nodes_added += added;
            } else if removed > 0 {
                result.scale_down_events += 1;
                result.nodes_removed += removed;
            }
            if k > 0 && added + removed > 0 {
                result.events.push(ScaleEvent {
                    at_s: (tick * k as u32).as_secs(),
                    added,
                    removed,
                    replacements: 0,
                    replaced: 0,
                    reasons: vec![format!("{} nodes needed within a boot time", alive)],
                });
            }
            previous = alive;
            result.node_seconds += f64::from(alive) * tick.as_secs_f64();
            if k % minute_ticks == 0 {
                result.nodes_per_minute.push(alive);
                result.demand_per_minute.push(demand[k]);
                result.pending_per_minute.push(0);
            }
        }
        result.cost = result.node_seconds / 3600.0 * pool.template.price_per_hour;
        // Every pod it ran was bound at once.
        result.waits = vec![0.0; self.pod_counter as usize];
        result.duration = end.since(Time::ZERO);
        progress(1.0);
        self.result
    }

    fn sample_minute(&mut self) {
        let alive = self.machines.iter().filter(|m| m.gone_at.is_none()).count() as u32;
        self.result.nodes_per_minute.push(alive);
        self.result
            .demand_per_minute
            .push(self.workloads.iter().map(|w| w.demand).sum());
        self.result
            .pending_per_minute
            .push(u32::try_from(self.pending).unwrap_or(u32::MAX));
    }

    fn finish(mut self, end: Time) -> RunResult {
        for (pod, meta) in self.snap.pods.iter().zip(&self.meta) {
            if pod.node_name.is_none() {
                self.result.waits.push(end.since(meta.created_at).as_secs_f64());
            }
        }
        for m in &self.machines {
            let lifetime = m.gone_at.unwrap_or(end).since(m.launched_at).as_secs_f64();
            self.result.node_seconds += lifetime;
            self.result.cost += lifetime / 3600.0 * self.pools[m.pool].template.price_per_hour;
        }
        self.result.duration = end.since(Time::ZERO);
        self.result
    }
}
