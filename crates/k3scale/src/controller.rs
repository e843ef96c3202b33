//! One reconcile: observe → snapshot → decide → act → record → tell.
//!
//! Every action is journaled before it is carried out, and the machine
//! lifecycle and cooldown stamps live in the state store, so a process
//! killed at any point is repaired by the next reconcile, whether that is
//! the next tick of `run` or the next cron `once`.

use crate::drain::DrainExecutor;
use crate::kube::KubeCluster;
use crate::kube::events::NodeEvents;
use crate::machines::MachinePool;
use crate::metrics::MetricsSource;
use crate::notify::{Kind, Notification, Notifier};
use crate::state::{Intent, ScaleEvent, StateError, StateStore};
use k3scale_core::drain::{Drain, DrainConfig, DrainOutcome};
use k3scale_core::lifecycle::{Lifecycle, LifecycleAction, ObservedNode, Phase, machine_name};
use k3scale_core::{Decision, Policy, Reason, Snapshot, Time, decide};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::{Instrument, info, info_span, warn};

const STAMPS_KEY: &str = "stamps";
/// Which Events were sent when, so a new leader does not repeat them.
const EVENTS_KEY: &str = "events";
/// By default, metrics failing this long are worth a notification.
pub const METRICS_ALERT_AFTER: Duration = Duration::from_secs(5 * 60);

fn lifecycle_key(pool: &str) -> String {
    format!("lifecycle/{pool}")
}

fn parse<T: for<'de> Deserialize<'de> + Default>(
    key: &str,
    raw: Option<String>,
) -> Result<T, ControllerError> {
    raw.map_or(Ok(T::default()), |text| {
        serde_json::from_str(&text).map_err(|e| ControllerError::Corrupt {
            key: key.to_string(),
            cause: e.to_string(),
        })
    })
}

fn to_json<T: Serialize>(key: &str, value: &T) -> Result<String, ControllerError> {
    serde_json::to_string(value).map_err(|e| ControllerError::Corrupt {
        key: key.to_string(),
        cause: e.to_string(),
    })
}

/// Clear a failed pool's hold in the state store (`k3scale pool reset`):
/// it launches again from the next reconcile, whoever runs it. Returns
/// whether the pool was failed.
pub async fn reset_pool(store: &dyn StateStore, pool: &str) -> Result<bool, ControllerError> {
    let key = lifecycle_key(pool);
    let (raw, version) = match store.get(&key).await? {
        None => (None, 0),
        Some(v) => (Some(v.value), v.version),
    };
    let mut lifecycle: Lifecycle = parse(&key, raw)?;
    if !lifecycle.clear_failed(pool, None) {
        return Ok(false);
    }
    store.put(&key, &to_json(&key, &lifecycle)?, version).await?;
    Ok(true)
}

/// Cooldown stamps: when the last scale-up and scale-down were started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Stamps {
    last_scale_up: Option<Time>,
    last_scale_down: Option<Time>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("stored {key} is unreadable: {cause}")]
    Corrupt { key: String, cause: String },
    /// A watch is failing: the caches may be minutes old, so nothing is decided on them.
    #[error("not acting on stale caches ({}): their watch is failing", .0.join(", "))]
    CachesStale(Vec<&'static str>),
}

/// Launches whose `create` calls run in the background (the daemon).
#[derive(Debug)]
struct RunningLaunch {
    pool: String,
    names: Vec<String>,
    journal_ids: Vec<u64>,
    /// The decision's reasons, for the scale-up event and notification.
    reasons: String,
    /// When it started, and the cooldown stamp before it: a batch that
    /// launched nothing gives the stamp back.
    started: Time,
    stamp_before: Option<Time>,
    task: tokio::task::JoinHandle<Vec<Result<crate::provider::Machine, crate::provider::ProviderError>>>,
}

#[derive(Debug)]
struct RunningDrain {
    journal_id: u64,
    pool: String,
    task: tokio::task::JoinHandle<Result<DrainOutcome, String>>,
}

/// An action that failed: what, on which node of which pool, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// `launch` or `drain`.
    pub action: &'static str,
    pub pool: String,
    pub node: String,
    pub why: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} (pool {}): {}",
            self.action, self.node, self.pool, self.why
        )
    }
}

/// What one reconcile did.
#[derive(Debug, Clone, Serialize)]
pub struct Reconciled {
    pub decision: Decision,
    pub launched: Vec<String>,
    pub removed: Vec<String>,
    /// Actions that failed, with why.
    pub failed: Vec<Failure>,
    /// Journaled actions left by an earlier run and finished here.
    pub recovered: Vec<String>,
}

pub struct Controller {
    pub policy: Policy,
    kube: Arc<KubeCluster>,
    metrics: Option<Box<dyn MetricsSource>>,
    pools: BTreeMap<String, MachinePool>,
    store: Arc<dyn StateStore>,
    /// Metric history across reconciles (the sustained windows).
    snapshot: Snapshot,
    pub drain: DrainConfig,
    pub drain_poll: Duration,
    /// Where notifications go, and the cluster name they carry.
    pub notifier: Option<(Arc<Notifier>, String)>,
    /// Since when the metrics source has been failing.
    metrics_down_since: Option<Time>,
    /// Metrics failing this long are worth a notification.
    pub metrics_alert_after: Duration,
    /// An unchanged ScaleDownBlocked Event is repeated at most this often.
    pub events_repeat_after: Duration,
    /// The last decision's reasons without their numbers (see `log_decision`).
    last_decision_shape: Vec<String>,
    /// Joins and join failures seen while observing, to be told.
    lifecycle_notes: Vec<Notification>,
    /// Notifications still being delivered.
    sending: Vec<tokio::task::JoinHandle<()>>,
    /// Run drains and launches in the background (the daemon), so a long
    /// drain or a hanging `create` never delays the next reconcile, another
    /// pool's launch or a drain; `once` does both inline.
    pub background_drains: bool,
    /// Notices of machines about to be reclaimed (spot interruptions).
    pub interruptions: Option<Box<dyn crate::interruptions::InterruptionSource>>,
    /// Drains running in the background, by node.
    draining: BTreeMap<String, RunningDrain>,
    /// Launches running in the background.
    launching: Vec<RunningLaunch>,
    /// Signalled when background work ends, so its outcome (a failed
    /// launch to re-plan) is acted on at once, not at the next tick.
    wake: Arc<tokio::sync::Notify>,
    random: Box<dyn FnMut() -> u64 + Send + Sync>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("pools", &self.pools.keys().collect::<Vec<_>>())
            .field("dry_run", &self.policy.dry_run)
            .finish()
    }
}

/// How much metric history the policy's longest window needs.
fn history_needed(policy: &Policy) -> Duration {
    let windows = [
        policy.scale_up.cpu_for,
        policy.scale_up.memory_for,
        policy.scale_down.cpu_for,
        policy.scale_down.memory_for,
    ];
    let custom = policy.custom.iter().map(|c| c.window);
    windows.into_iter().chain(custom).max().unwrap_or_default() + policy.metrics_max_age
}

impl Controller {
    pub fn new(
        policy: Policy,
        kube: Arc<KubeCluster>,
        metrics: Option<Box<dyn MetricsSource>>,
        pools: BTreeMap<String, MachinePool>,
        store: Arc<dyn StateStore>,
        random: Box<dyn FnMut() -> u64 + Send + Sync>,
    ) -> Self {
        Controller {
            drain: DrainConfig {
                eviction_timeout: policy.scale_down.drain_timeout,
                ..DrainConfig::default()
            },
            policy,
            kube,
            metrics,
            pools,
            store,
            snapshot: Snapshot::default(),
            drain_poll: Duration::from_secs(1),
            notifier: None,
            metrics_down_since: None,
            metrics_alert_after: METRICS_ALERT_AFTER,
            events_repeat_after: Duration::from_secs(600),
            last_decision_shape: Vec::new(),
            lifecycle_notes: Vec::new(),
            sending: Vec::new(),
            background_drains: false,
            interruptions: None,
            draining: BTreeMap::new(),
            launching: Vec::new(),
            wake: Arc::new(tokio::sync::Notify::new()),
            random,
        }
    }

    /// Fill the metric history from Prometheus, so the sustained windows are
    /// covered at once (a `once` run has no history of its own).
    pub async fn backfill(
        &mut self,
        prometheus: &crate::metrics::prometheus::Prometheus,
        step: Duration,
        now: Time,
    ) -> Result<usize, crate::metrics::MetricsError> {
        let history = history_needed(&self.policy);
        prometheus.backfill(&mut self.snapshot, history, step, now).await
    }

    pub fn cluster(&self) -> Arc<KubeCluster> {
        self.kube.clone()
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Put the cluster as the caches hold it into `snapshot`. A Node is
    /// Ready a moment before its not-ready taint goes: until all startup
    /// taints are gone it is still launching, not room for pods.
    pub fn fill_cluster_view(&self, snapshot: &mut Snapshot) {
        self.kube.fill(snapshot);
        k3scale_core::model::mark_starting(&mut snapshot.nodes, &self.policy.startup_taints);
    }

    /// Drop the cluster part of the snapshot between reconciles (each one
    /// rebuilds it from the caches); the metric history stays.
    pub fn forget_cluster_view(&mut self) {
        self.snapshot.nodes = Vec::new();
        self.snapshot.pods = Vec::new();
        self.snapshot.daemonsets = Vec::new();
    }

    /// The stored value at `key` and its version (0: none). Parsing is kept
    /// out of the async part (generic async fns trip the `Send` check).
    async fn load(&self, key: &str) -> Result<(Option<String>, u64), ControllerError> {
        Ok(match self.store.get(key).await? {
            None => (None, 0),
            Some(v) => (Some(v.value), v.version),
        })
    }

    async fn save(&self, key: &str, text: String, version: u64) -> Result<u64, ControllerError> {
        Ok(self.store.put(key, &text, version).await?)
    }

    /// One observe → decide → act → record pass at `now`.
    ///
    /// Boxed so callers that spawn it see a plain `Send` future.
    pub fn reconcile(
        &mut self,
        now: Time,
    ) -> futures::future::BoxFuture<'_, Result<Reconciled, ControllerError>> {
        let span = info_span!("reconcile", at = now.as_millis());
        Box::pin(self.reconcile_inner(now).instrument(span))
    }

    async fn reconcile_inner(&mut self, now: Time) -> Result<Reconciled, ControllerError> {
        let stale = self.kube.stale();
        if !stale.is_empty() {
            return Err(ControllerError::CachesStale(stale));
        }
        let (raw, stamps_version) = self.load(STAMPS_KEY).await?;
        let mut stamps: Stamps = parse(STAMPS_KEY, raw)?;
        let mut lifecycles = BTreeMap::new();
        let names: Vec<String> = self.pools.keys().cloned().collect();
        for name in names {
            let key = lifecycle_key(&name);
            let (raw, version) = self.load(&key).await?;
            let lifecycle: Lifecycle = parse(&key, raw)?;
            lifecycles.insert(name, (lifecycle, version));
        }
        for (name, pool) in &mut self.pools {
            pool.lifecycle = lifecycles[name].0.clone();
        }
        let mut done = Reconciled {
            decision: Decision::new(now, self.policy.dry_run),
            launched: Vec::new(),
            removed: Vec::new(),
            failed: Vec::new(),
            recovered: Vec::new(),
        };

        // A dry run changes nothing, so it needs no lock: it leaves the
        // journal, the drains and the stored state to whoever acts.
        if !self.policy.dry_run {
            self.collect_drains(now, &mut done).await?;
            self.collect_launches(now, &mut stamps, &mut done).await?;
            self.recover(now, &mut done).await?;
        }
        self.observe(now).await;
        let notices = self.receive_interruptions().await;
        // A node being drained is leaving: never a candidate again, never room for pods.
        for node in &mut self.snapshot.nodes {
            if self.draining.contains_key(&node.name) {
                node.cordoned = true;
            }
        }
        self.snapshot.last_scale_up = stamps.last_scale_up;
        self.snapshot.last_scale_down = stamps.last_scale_down;
        let decision = decide(&self.snapshot, &self.policy, now);
        self.snapshot.remember_fits(&decision, now);
        self.log_decision(&decision);
        done.decision = decision.clone();
        // Dry run: the same decision, logged and returned, nothing executed.
        if !self.policy.dry_run {
            self.act(&decision, now, &mut stamps, &mut done).await?;
            self.record_events(&decision, now).await?;
        }

        // Acted on (or not ours): acknowledged only now, so a crash redelivers.
        if let Some(source) = &self.interruptions
            && !notices.is_empty()
            && !self.policy.dry_run
        {
            source.ack(&notices).await;
        }
        self.tell(&done, now);
        // What was just launched is on its way: status and metrics show it now.
        self.snapshot.in_flight = self
            .pools
            .values()
            .flat_map(|p| p.lifecycle.in_flight())
            .collect();
        if self.policy.dry_run {
            return Ok(done);
        }
        self.save(STAMPS_KEY, to_json(STAMPS_KEY, &stamps)?, stamps_version)
            .await?;
        let saves: Vec<(String, String, u64)> = self
            .pools
            .iter()
            .map(|(name, pool)| {
                let key = lifecycle_key(name);
                to_json(&key, &pool.lifecycle).map(|text| (key, text, lifecycles[name].1))
            })
            .collect::<Result<_, _>>()?;
        for (key, text, version) in saves {
            self.save(&key, text, version).await?;
        }
        Ok(done)
    }

    /// A decision is logged at INFO when it acts or its reasons changed
    /// (their numbers aside: "cpu 41%" then "cpu 42%" is the same decision);
    /// a standing one, repeated every few seconds, only at DEBUG.
    fn log_decision(&mut self, decision: &Decision) {
        let shape: Vec<String> = decision
            .reasons
            .iter()
            .map(|r| {
                r.to_string()
                    .replace(|c: char| c.is_ascii_digit() || c == '.', "")
            })
            .collect();
        let changed = shape != self.last_decision_shape;
        self.last_decision_shape = shape;
        for reason in &decision.reasons {
            if changed || !decision.is_noop() {
                info!(%reason, "decision");
            } else {
                tracing::debug!(%reason, "decision (unchanged)");
            }
        }
    }

    /// Kubernetes Events for what was decided: on the nodes (removed, or
    /// kept and why, deduplicated across reconciles and leaders through the
    /// state store) and on the pods a launch is for (in the background).
    async fn record_events(&mut self, decision: &Decision, now: Time) -> Result<(), ControllerError> {
        let (raw, version) = self.load(EVENTS_KEY).await?;
        let sent: NodeEvents = parse(EVENTS_KEY, raw)?;
        let mut events = sent.with_repeat_after(self.events_repeat_after);
        let due = events.plan(decision, now);
        for e in &due {
            if let Err(err) = self
                .kube
                .node_event(&e.node, e.kind, e.reason, e.action, &e.note)
                .await
            {
                warn!(node = %e.node, error = %err, "could not record the event");
            }
        }
        if !due.is_empty() || version == 0 {
            self.save(EVENTS_KEY, to_json(EVENTS_KEY, &events)?, version)
                .await?;
        }
        let mut pod_events = Vec::new();
        for up in &decision.scale_up {
            let max = self.policy.pool(&up.pool).map_or(0, |p| p.max);
            pod_events.extend(crate::kube::events::triggered_scale_up(
                decision, &up.pool, up.count, max,
            ));
        }
        if !pod_events.is_empty() {
            let kube = self.kube.clone();
            self.sending.retain(|t| !t.is_finished());
            self.sending.push(tokio::spawn(async move {
                for e in pod_events {
                    if let Err(err) = kube.pod_event(&e).await {
                        warn!(pod = %e.pod, error = %err, "could not record the event");
                    }
                }
            }));
        }
        Ok(())
    }

    /// Notices waiting at the source, mapped to the pools' machines by
    /// instance id into `snapshot.interrupted`.
    async fn receive_interruptions(&mut self) -> Vec<crate::interruptions::Notice> {
        self.snapshot.interrupted.clear();
        let Some(source) = &self.interruptions else {
            return Vec::new();
        };
        let notices = match source.receive().await {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "cannot read interruption notices");
                return Vec::new();
            }
        };
        let wanted: Vec<&crate::interruptions::Notice> =
            notices.iter().filter(|n| !n.notice.is_empty()).collect();
        if wanted.is_empty() {
            return notices;
        }
        for (name, pool) in &self.pools {
            match pool.provider().list().await {
                Ok(machines) => {
                    for m in machines {
                        if let Some(n) = wanted
                            .iter()
                            .find(|n| crate::interruptions::is_instance(&m.provider_id, &n.instance_id))
                        {
                            info!(node = %m.name, pool = %name, notice = %n.notice, "machine about to be reclaimed");
                            self.snapshot
                                .interrupted
                                .push(k3scale_core::snapshot::Interruption {
                                    node: m.name.clone(),
                                    notice: n.notice.clone(),
                                });
                        }
                    }
                }
                Err(e) => {
                    warn!(pool = %name, error = %e, "cannot list machines to match interruption notices")
                }
            }
        }
        notices
    }

    /// Finish what a killed run left in the journal.
    async fn recover(&mut self, now: Time, done: &mut Reconciled) -> Result<(), ControllerError> {
        for entry in self.store.unfinished().await? {
            // Running in the background here: not interrupted, nothing to recover.
            if self.launching.iter().any(|l| l.journal_ids.contains(&entry.id)) {
                continue;
            }
            let Some(pool) = self.pools.get_mut(&entry.intent.pool) else {
                self.store
                    .close(entry.id, "pool no longer configured", now)
                    .await?;
                continue;
            };
            let node = entry.intent.node.clone();
            match entry.intent.kind.as_str() {
                "launch" => {
                    // The name is unique: if the machine exists it is adopted,
                    // if not, the launch never happened. Never launched twice.
                    let exists = pool
                        .provider()
                        .list()
                        .await
                        .map(|ms| ms.iter().any(|m| m.name == node));
                    match exists {
                        Ok(true) => {
                            pool.lifecycle
                                .launched(&entry.intent.pool, &node, entry.opened_at);
                            self.store.close(entry.id, "adopted after restart", now).await?;
                        }
                        // Killed before the provider call: not a failed join, no backoff.
                        Ok(false) => {
                            pool.lifecycle.machines.remove(&node);
                            self.store.close(entry.id, "never launched", now).await?;
                        }
                        // Try again next time.
                        Err(e) => warn!(node, error = %e, "cannot list machines to recover a launch"),
                    }
                }
                // Running in the background here: not interrupted, nothing to recover.
                "drain" if self.draining.values().any(|d| d.journal_id == entry.id) => continue,
                "drain" => {
                    let drain: Drain = serde_json::from_value(entry.intent.detail.clone()).map_err(|e| {
                        ControllerError::Corrupt {
                            key: format!("journal entry {}", entry.id),
                            cause: e.to_string(),
                        }
                    })?;
                    info!(node, "resuming a drain after restart");
                    if let Some(outcome) = self.drain(&entry.intent.pool, drain, entry.id).await {
                        self.finish_drain(entry.id, &entry.intent.pool, &node, outcome, now, done)
                            .await?;
                    }
                }
                other => {
                    self.store
                        .close(entry.id, &format!("unknown intent {other}"), now)
                        .await?;
                }
            }
            done.recovered.push(format!("{} {node}", entry.intent.kind));
        }
        Ok(())
    }

    async fn observe(&mut self, now: Time) {
        let mut snapshot = std::mem::take(&mut self.snapshot);
        self.fill_cluster_view(&mut snapshot);
        self.snapshot = snapshot;
        if let Some(metrics) = &self.metrics {
            let reading = metrics.read().await;
            self.snapshot.record(now, &reading, history_needed(&self.policy));
        }
        let observed: Vec<ObservedNode> = self
            .snapshot
            .nodes
            .iter()
            .map(|n| ObservedNode {
                name: n.name.clone(),
                pool: n.pool.clone(),
                ready: n.joined(),
            })
            .collect();
        self.snapshot.in_flight.clear();
        self.snapshot.backoff.clear();
        let dry_run = self.policy.dry_run;
        for (name, pool) in &mut self.pools {
            let launching: Vec<String> = pool.lifecycle.in_flight().into_iter().map(|f| f.name).collect();
            match pool.reconcile(&observed, now, !dry_run).await {
                Ok(actions) => {
                    for action in actions {
                        match action {
                            LifecycleAction::DeleteNode { .. } if dry_run => {}
                            LifecycleAction::DeleteNode { name: node } => {
                                if let Err(e) = self.kube.delete_node(&node).await {
                                    warn!(node, error = %e, "could not delete the Node of a vanished machine");
                                }
                                let _ = self.kube.delete_node_password(&node).await;
                            }
                            LifecycleAction::JoinFailure {
                                machine,
                                failures,
                                until,
                                ..
                            } => {
                                warn!(pool = %name, machine, failures, until = until.as_millis(), "node join failed, pool backs off");
                                let wait = until.since(now).as_secs();
                                self.lifecycle_notes.push(Notification {
                                    kind: Kind::JoinFailed,
                                    cluster: String::new(),
                                    pool: name.clone(),
                                    nodes: vec![machine],
                                    message: format!(
                                        "machine did not become a Ready node in time and was deleted ({failures} in a row); no launches in this pool for {wait}s"
                                    ),
                                    at: now.as_millis(),
                                });
                            }
                            LifecycleAction::DeleteMachine { .. } | LifecycleAction::LaunchHeld { .. } => {}
                        }
                    }
                }
                Err(e) => warn!(pool = %name, error = %e, "cannot list the pool's machines"),
            }
            // A scale-up completes when its machines' Nodes are Ready.
            let joined: Vec<String> = launching
                .into_iter()
                .filter(|m| {
                    pool.lifecycle
                        .machines
                        .get(m)
                        .is_some_and(|s| s.phase == Phase::Ready)
                })
                .collect();
            if !joined.is_empty() {
                self.lifecycle_notes.push(Notification {
                    kind: Kind::ScaleUp,
                    cluster: String::new(),
                    pool: name.clone(),
                    nodes: joined,
                    message: "joined the cluster: Ready".into(),
                    at: now.as_millis(),
                });
            }
            self.snapshot.in_flight.extend(pool.lifecycle.in_flight());
            self.snapshot.backoff.extend(pool.lifecycle.backed_off(now));
        }
    }

    async fn act(
        &mut self,
        decision: &Decision,
        now: Time,
        stamps: &mut Stamps,
        done: &mut Reconciled,
    ) -> Result<(), ControllerError> {
        self.scale_up(decision, now, stamps, done).await?;
        for down in &decision.scale_down {
            let mut config = self.drain.clone();
            if let Some(timeout) = self.policy.pool(&down.pool).and_then(|p| p.drain_timeout) {
                config.eviction_timeout = timeout;
            }
            let drain = Drain::start(&down.node, now, config);
            let intent = Intent {
                kind: "drain".into(),
                pool: down.pool.clone(),
                node: down.node.clone(),
                detail: serde_json::to_value(&drain).unwrap_or_default(),
            };
            let id = self.store.open(&intent, now).await?;
            stamps.last_scale_down = Some(now);
            if let Some(outcome) = self.drain(&down.pool, drain, id).await {
                self.finish_drain(id, &down.pool, &down.node, outcome, now, done)
                    .await?;
            }
        }
        Ok(())
    }

    /// Launch what the decision asks for. A pool whose launches fail is held
    /// as the provider's error says (see `HoldCause`), and the pods are
    /// re-planned at once onto the next pool the expander ranks, as
    /// Karpenter does when a launch meets insufficient capacity.
    async fn scale_up(
        &mut self,
        decision: &Decision,
        now: Time,
        stamps: &mut Stamps,
        done: &mut Reconciled,
    ) -> Result<(), ControllerError> {
        let mut plan = decision.scale_up.clone();
        let mut tried = std::collections::BTreeSet::new();
        while !plan.is_empty() {
            let mut failed = false;
            for up in &plan {
                tried.insert(up.pool.clone());
                let before = stamps.last_scale_up;
                let (launched, failures) = self.launch(&up.pool, up.count, decision, now, done).await?;
                if let Some(l) = self.launching.last_mut()
                    && l.started == now
                    && l.pool == up.pool
                {
                    l.stamp_before = before;
                }
                // Only a launch that happened starts the cooldown.
                if launched > 0 {
                    stamps.last_scale_up = Some(now);
                }
                failed |= failures > 0;
            }
            if !failed {
                break;
            }
            self.refresh_pools_view(now);
            let again = decide(&self.snapshot, &self.policy, now);
            plan = again
                .scale_up
                .iter()
                .filter(|u| !tried.contains(&u.pool))
                .cloned()
                .collect();
            for reason in again.reasons {
                if !done.decision.reasons.contains(&reason) {
                    done.decision.reasons.push(reason);
                }
            }
            done.decision.scale_up.extend(plan.iter().cloned());
        }
        Ok(())
    }

    /// Launch `count` machines of `pool`, journaled; returns how many were
    /// launched and how many failed.
    async fn launch(
        &mut self,
        pool_name: &str,
        count: u32,
        decision: &Decision,
        now: Time,
        done: &mut Reconciled,
    ) -> Result<(usize, usize), ControllerError> {
        let Some(pool) = self.pools.get_mut(pool_name) else {
            return Ok((0, 0));
        };
        let names: Vec<String> = (0..count)
            .map(|_| machine_name(pool_name, (self.random)()))
            .collect();
        let mut ids = Vec::new();
        for name in &names {
            let intent = Intent {
                kind: "launch".into(),
                pool: pool_name.to_string(),
                node: name.clone(),
                detail: serde_json::Value::Null,
            };
            ids.push(self.store.open(&intent, now).await?);
        }
        crate::faults::crash_point("launch:intent-written");
        let reasons = decision
            .reasons
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if self.background_drains {
            let work = pool.begin_launch(&names, now);
            let wake = self.wake.clone();
            let task = tokio::spawn(async move {
                let results = work.await;
                wake.notify_one();
                results
            });
            self.launching.push(RunningLaunch {
                pool: pool_name.to_string(),
                names: names.clone(),
                journal_ids: ids,
                reasons,
                started: now,
                stamp_before: None,
                task,
            });
            // Started: counted as launched until its outcome is collected.
            return Ok((names.len(), 0));
        }
        let launched = pool.launch_named(&names, now).await;
        crate::faults::crash_point("launch:created");
        self.record_launch(pool_name, &names, &ids, launched, &reasons, now, done)
            .await
    }

    /// The outcome of a launch: journal entries closed, nodes launched or
    /// failed, what to tell, the scale-up event. Returns (launched, failed).
    #[allow(clippy::too_many_arguments)]
    async fn record_launch(
        &mut self,
        pool_name: &str,
        names: &[String],
        ids: &[u64],
        launched: crate::machines::Launched,
        reasons: &str,
        now: Time,
        done: &mut Reconciled,
    ) -> Result<(usize, usize), ControllerError> {
        let mut ok = Vec::new();
        for (name, id) in names.iter().zip(ids) {
            let failure = launched.failures.iter().find(|(n, _)| n == name);
            let outcome = failure.map_or("launched".to_string(), |(_, e)| format!("failed: {e}"));
            self.store.close(*id, &outcome, now).await?;
            match failure {
                None => ok.push(name.clone()),
                Some((_, e)) => done.failed.push(Failure {
                    action: "launch",
                    pool: pool_name.to_string(),
                    node: name.clone(),
                    why: e.to_string(),
                }),
            }
        }
        if !ok.is_empty() {
            self.lifecycle_notes
                .push(launch_note(pool_name, &ok, &format!("launched: {reasons}"), now));
        }
        for report in &launched.reports {
            if let LifecycleAction::LaunchHeld { machine, .. } = report {
                let why = launched
                    .failures
                    .iter()
                    .find(|(n, _)| n == machine)
                    .map(|(_, e)| e.to_string())
                    .unwrap_or_default();
                self.lifecycle_notes.push(held_note(report, &why, now));
            }
        }
        done.launched.extend(ok.iter().cloned());
        self.store
            .push_event(&ScaleEvent {
                at: now,
                kind: "scale-up".into(),
                pool: pool_name.to_string(),
                nodes: names.to_vec(),
                message: reasons.to_string(),
            })
            .await?;
        Ok((ok.len(), launched.failures.len()))
    }

    /// Record the launches that finished in the background since last time.
    async fn collect_launches(
        &mut self,
        now: Time,
        stamps: &mut Stamps,
        done: &mut Reconciled,
    ) -> Result<(), ControllerError> {
        let (finished, running): (Vec<RunningLaunch>, Vec<RunningLaunch>) =
            std::mem::take(&mut self.launching)
                .into_iter()
                .partition(|l| l.task.is_finished());
        self.launching = running;
        for l in finished {
            let results = l.task.await.unwrap_or_else(|e| {
                let why = format!("launch task failed: {e}");
                l.names
                    .iter()
                    .map(|_| Err(crate::provider::ProviderError::Transient(why.clone())))
                    .collect()
            });
            let Some(pool) = self.pools.get_mut(&l.pool) else {
                continue;
            };
            let launched = pool.finish_launch(&l.names, results, now);
            let (ok, _) = self
                .record_launch(&l.pool, &l.names, &l.journal_ids, launched, &l.reasons, now, done)
                .await?;
            // Nothing launched: the cooldown it started is given back.
            if ok == 0 && stamps.last_scale_up == Some(l.started) {
                stamps.last_scale_up = l.stamp_before;
            }
        }
        Ok(())
    }

    /// Signalled when background work (a launch) ends: worth a reconcile.
    pub fn wake(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    /// Launches whose `create` calls are still running in the background.
    pub fn launching(&self) -> usize {
        self.launching.iter().filter(|l| !l.task.is_finished()).count()
    }

    /// The pools' machines in flight and holds, into the snapshot.
    fn refresh_pools_view(&mut self, now: Time) {
        self.snapshot.in_flight = self
            .pools
            .values()
            .flat_map(|p| p.lifecycle.in_flight())
            .collect();
        self.snapshot.backoff = self
            .pools
            .values()
            .flat_map(|p| p.lifecycle.backed_off(now))
            .collect();
    }

    /// Notifications for what this reconcile did and what stands in the
    /// way, sent in the background so a slow receiver never delays scaling.
    fn tell(&mut self, done: &Reconciled, now: Time) {
        let failing_since = match &self.snapshot.metrics_error {
            Some(_) => *self.metrics_down_since.get_or_insert(now),
            None => {
                self.metrics_down_since = None;
                now
            }
        };
        let joins = std::mem::take(&mut self.lifecycle_notes);
        let Some((notifier, cluster)) = self.notifier.clone() else {
            return;
        };
        if self.policy.dry_run {
            return;
        }
        let note = |kind, pool: &str, nodes: Vec<String>, message: String| Notification {
            kind,
            cluster: cluster.clone(),
            pool: pool.to_string(),
            nodes,
            message,
            at: now.as_millis(),
        };
        let mut out: Vec<Notification> = joins
            .into_iter()
            .map(|n| Notification {
                cluster: cluster.clone(),
                ..n
            })
            .collect();
        for down in &done.decision.scale_down {
            if self.draining.contains_key(&down.node) {
                out.push(note(
                    Kind::ScaleDown,
                    &down.pool,
                    vec![down.node.clone()],
                    "draining started".into(),
                ));
            }
        }
        // Removed now, or finished in the background since the last reconcile.
        for node in &done.removed {
            // Machine names are `<pool>-<suffix>`.
            let pool = node.rsplit_once('-').map_or("", |(pool, _)| pool);
            out.push(note(
                Kind::ScaleDown,
                pool,
                vec![node.clone()],
                "drained and removed".into(),
            ));
        }
        // Failed launches are told once per streak, as their pool is held
        // (see `launch`); failed drains each time.
        for failure in done.failed.iter().filter(|f| f.action == "drain") {
            out.push(note(
                Kind::Failure,
                &failure.pool,
                vec![failure.node.clone()],
                failure.to_string(),
            ));
        }
        for reason in &done.decision.reasons {
            if let Reason::AtMaxCapacity { pool, max, .. } = reason {
                out.push(note(
                    Kind::AtMaxCapacity,
                    pool,
                    Vec::new(),
                    format!("at its maximum of {max} nodes; pods wait for room"),
                ));
            }
        }
        if let Some(cause) = &self.snapshot.metrics_error
            && now.since(failing_since) >= self.metrics_alert_after
        {
            out.push(note(
                Kind::MetricsUnavailable,
                "",
                Vec::new(),
                format!(
                    "metrics unavailable for {} min ({cause}); no utilization-based scaling until they return, scale-down goes by requests only",
                    now.since(failing_since).as_secs() / 60
                ),
            ));
        }
        if out.is_empty() {
            return;
        }
        self.sending.retain(|t| !t.is_finished());
        self.sending.push(tokio::spawn(async move {
            for n in out {
                notifier.send(&n, now).await;
            }
        }));
    }

    /// Wait (at most `limit`) for notifications still being delivered, e.g.
    /// before a `once` run exits.
    pub async fn flush_notifications(&mut self, limit: Duration) {
        let pending = std::mem::take(&mut self.sending);
        let _ = tokio::time::timeout(limit, futures::future::join_all(pending)).await;
    }

    /// Carry out a drain: inline (awaited here), or in the background and
    /// finished by a later reconcile, in which case this returns `None`.
    async fn drain(
        &mut self,
        pool: &str,
        drain: Drain,
        journal_id: u64,
    ) -> Option<Result<DrainOutcome, String>> {
        let Some(machines) = self.pools.get(pool) else {
            return Some(Err(format!("pool {pool} is not configured")));
        };
        let node = drain.node.clone();
        let work = drive_drain(
            self.kube.clone(),
            machines.provider(),
            self.store.clone(),
            self.drain_poll,
            drain,
            journal_id,
        );
        if !self.background_drains {
            return Some(work.await);
        }
        let task = tokio::spawn(work);
        self.draining.insert(
            node,
            RunningDrain {
                journal_id,
                pool: pool.to_string(),
                task,
            },
        );
        None
    }

    /// Nodes being drained in the background now.
    pub fn draining(&self) -> Vec<String> {
        self.draining.keys().cloned().collect()
    }

    /// Stop the background drains (shutdown, or no longer the leader): their
    /// journal entries stay open, so whoever acts next resumes them.
    pub fn stop_drains(&mut self) {
        for (node, d) in std::mem::take(&mut self.draining) {
            info!(node, "drain interrupted; it stays journaled");
            d.task.abort();
        }
        // Launches too: journaled, so the next run adopts what was created.
        for l in std::mem::take(&mut self.launching) {
            info!(pool = %l.pool, nodes = ?l.names, "launch interrupted; it stays journaled");
            l.task.abort();
        }
    }

    /// Record the drains that finished in the background since last time.
    async fn collect_drains(&mut self, now: Time, done: &mut Reconciled) -> Result<(), ControllerError> {
        let finished: Vec<String> = self
            .draining
            .iter()
            .filter(|(_, d)| d.task.is_finished())
            .map(|(node, _)| node.clone())
            .collect();
        for node in finished {
            let Some(d) = self.draining.remove(&node) else {
                continue;
            };
            let outcome = d
                .task
                .await
                .unwrap_or_else(|e| Err(format!("drain task failed: {e}")));
            self.finish_drain(d.journal_id, &d.pool, &node, outcome, now, done)
                .await?;
        }
        Ok(())
    }

    async fn finish_drain(
        &mut self,
        id: u64,
        pool: &str,
        node: &str,
        outcome: Result<DrainOutcome, String>,
        now: Time,
        done: &mut Reconciled,
    ) -> Result<(), ControllerError> {
        let (summary, kind) = match &outcome {
            Ok(DrainOutcome::Removed) => {
                done.removed.push(node.to_string());
                ("removed".to_string(), "scale-down")
            }
            Ok(DrainOutcome::GaveUp { why }) => {
                done.failed.push(Failure {
                    action: "drain",
                    pool: pool.to_string(),
                    node: node.to_string(),
                    why: why.to_string(),
                });
                (format!("gave up: {why}"), "failure")
            }
            // Left open: the next reconcile resumes it from the journal.
            Err(e) => {
                done.failed.push(Failure {
                    action: "drain",
                    pool: pool.to_string(),
                    node: node.to_string(),
                    why: e.clone(),
                });
                return Ok(());
            }
        };
        self.store.close(id, &summary, now).await?;
        if let Some(p) = self.pools.get_mut(pool)
            && matches!(outcome, Ok(DrainOutcome::Removed))
        {
            p.lifecycle.machines.remove(node);
        }
        self.store
            .push_event(&ScaleEvent {
                at: now,
                kind: kind.into(),
                pool: pool.to_string(),
                nodes: vec![node.to_string()],
                message: summary,
            })
            .await?;
        Ok(())
    }
}

/// Drive a drain to its outcome, journaling each state as it goes.
async fn drive_drain(
    kube: Arc<KubeCluster>,
    provider: Arc<dyn crate::provider::NodeProvider>,
    store: Arc<dyn StateStore>,
    poll: Duration,
    mut drain: Drain,
    journal_id: u64,
) -> Result<DrainOutcome, String> {
    let executor = DrainExecutor {
        poll,
        ..DrainExecutor::new(&kube, provider.as_ref())
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let writer = tokio::spawn(async move {
        while let Some(detail) = rx.recv().await {
            if let Err(e) = store.update(journal_id, &detail).await {
                warn!(error = %e, "could not journal the drain's progress");
            }
        }
    });
    let mut journal = move |d: &Drain| {
        let _ = tx.send(serde_json::to_value(d).unwrap_or_default());
    };
    let result = executor
        .run(&mut drain, &mut journal)
        .await
        .map_err(|e| e.to_string());
    drop(journal);
    let _ = writer.await;
    result
}

/// "Launched" for one pool's new machines: named by the pool they were
/// launched in, never guessed from their names (`web` and `web-big`).
fn launch_note(pool: &str, nodes: &[String], message: &str, now: Time) -> Notification {
    Notification {
        kind: Kind::ScaleUp,
        cluster: String::new(),
        pool: pool.to_string(),
        nodes: nodes.to_vec(),
        message: message.to_string(),
        at: now.as_millis(),
    }
}

/// What a held pool means, in one notification.
fn held_note(report: &LifecycleAction, why: &str, now: Time) -> Notification {
    use k3scale_core::lifecycle::HoldCause;
    let LifecycleAction::LaunchHeld {
        pool,
        machine,
        cause,
        until,
        ..
    } = report
    else {
        return Notification {
            kind: Kind::Failure,
            cluster: String::new(),
            pool: String::new(),
            nodes: Vec::new(),
            message: why.to_string(),
            at: now.as_millis(),
        };
    };
    let wait = until.since(now).as_secs();
    let then = match cause {
        HoldCause::NoCapacity => format!("no capacity: the pool waits {wait}s, its pods go to the next pool"),
        HoldCause::Retry => {
            format!("the provider failed for now: retried in {wait}s, other pools take the pods meanwhile")
        }
        HoldCause::Failed => format!(
            "the pool has failed and launches nothing until its configuration changes or `k3scale pool reset {pool}`"
        ),
        HoldCause::JoinFailures => format!("the pool waits {wait}s"),
    };
    Notification {
        kind: Kind::Failure,
        cluster: String::new(),
        pool: pool.clone(),
        nodes: vec![machine.clone()],
        message: format!("launch {machine} (pool {pool}): {why}; {then}"),
        at: now.as_millis(),
    }
}
