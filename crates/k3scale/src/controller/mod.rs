//! One reconcile: observe → snapshot → decide → act → record → tell.
//!
//! Every action is journaled before it is carried out, and the machine
//! lifecycle and cooldown stamps live in the state store, so a process
//! killed at any point is repaired by the next reconcile, whether that is
//! the next tick of `run` or the next cron `once`.

mod demand;
mod drains;
pub use drains::DrainError;
mod events;
mod launch;
mod observe;
mod tell;

use crate::drain::DrainExecutor;
use crate::kube::KubeCluster;
use crate::kube::events::NodeEvents;
use crate::machines::MachinePool;
use crate::metrics::MetricsSource;
use crate::notify::{Kind, Notification, Notifier};
use crate::state::{Intent, IntentKind, ScaleEvent, StateError, StateStore};
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
    /// Expired or drifted nodes whose replacement was launched, since
    /// when: a restart or a new leader carries on instead of launching
    /// another replacement.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    replacing: BTreeMap<String, Time>,
    /// Nodes a consolidation replaces, and the pool of their new nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    consolidating: BTreeMap<String, (Time, String)>,
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
    task: tokio::task::JoinHandle<Result<DrainOutcome, drains::DrainError>>,
}

/// What an action was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Launch,
    Drain,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Launch => "launch",
            Action::Drain => "drain",
        }
    }
}

/// An action that failed: what, on which node of which pool, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub action: Action,
    pub pool: String,
    pub node: String,
    pub why: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} (pool {}): {}",
            self.action.as_str(),
            self.node,
            self.pool,
            self.why
        )
    }
}

/// What a reconcile read from the store, to write back conditioned on it.
struct Saved {
    stamps: Stamps,
    stamps_version: u64,
    /// Pool → version of its stored lifecycle.
    versions: BTreeMap<String, u64>,
}

/// A machine launched, in its pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Launched {
    pub pool: String,
    pub node: String,
}

/// What one reconcile did.
#[derive(Debug, Clone, Serialize)]
pub struct Reconciled {
    pub decision: Decision,
    pub launched: Vec<Launched>,
    pub removed: Vec<String>,
    /// Actions that failed, with why.
    pub failed: Vec<Failure>,
    /// Journaled actions left by an earlier run and finished here.
    pub recovered: Vec<String>,
}

pub struct Controller {
    policy: Policy,
    kube: Arc<KubeCluster>,
    metrics: Option<Box<dyn MetricsSource>>,
    pools: BTreeMap<String, MachinePool>,
    store: Arc<dyn StateStore>,
    /// Metric history across reconciles (the sustained windows).
    snapshot: Snapshot,
    drain: DrainConfig,
    drain_poll: Duration,
    /// Where notifications go, and the cluster name they carry.
    notifier: Option<(Arc<Notifier>, String)>,
    /// Since when the metrics source has been failing.
    metrics_down_since: Option<Time>,
    /// Metrics failing this long are worth a notification.
    metrics_alert_after: Duration,
    /// An unchanged ScaleDownBlocked Event is repeated at most this often.
    events_repeat_after: Duration,
    /// The last decision's reasons without their numbers (see `log_decision`).
    last_decision_shape: Vec<String>,
    /// Joins and join failures seen while observing, to be told.
    lifecycle_notes: Vec<Notification>,
    /// Notifications still being delivered.
    sending: Vec<tokio::task::JoinHandle<()>>,
    /// Run drains and launches in the background (the daemon), so a long
    /// drain or a hanging `create` never delays the next reconcile, another
    /// pool's launch or a drain; `once` does both inline.
    background_drains: bool,
    /// Notices of machines about to be reclaimed (spot interruptions).
    interruptions: Option<Box<dyn crate::interruptions::InterruptionSource>>,
    /// Drains running in the background, by node.
    draining: BTreeMap<String, RunningDrain>,
    /// Launches running in the background.
    launching: Vec<RunningLaunch>,
    /// Signalled when background work ends, so its outcome (a failed
    /// launch to re-plan) is acted on at once, not at the next tick.
    wake: Arc<tokio::sync::Notify>,
    random: Box<dyn FnMut() -> u64 + Send + Sync>,
    /// The stored demand history's version (`policy.predictive`); `None`
    /// until it is read.
    demand_saved: Option<demand::DemandSaved>,
}

impl Reconciled {
    fn nothing(now: Time, dry_run: bool) -> Reconciled {
        Reconciled {
            decision: Decision::new(now, dry_run),
            launched: Vec::new(),
            removed: Vec::new(),
            failed: Vec::new(),
            recovered: Vec::new(),
        }
    }
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
            demand_saved: None,
        }
    }

    // Settings, given when the controller is built (`Controller::new(..).with_..`).

    /// Where notifications go, and the cluster name they carry.
    pub fn with_notifier(self, notifier: Arc<Notifier>, cluster: &str) -> Self {
        Controller {
            notifier: Some((notifier, cluster.to_string())),
            ..self
        }
    }

    /// Metrics failing this long are worth a notification.
    pub fn with_metrics_alert_after(self, after: Duration) -> Self {
        Controller {
            metrics_alert_after: after,
            ..self
        }
    }

    /// How drains evict, and how often they look at their progress.
    pub fn with_drain(self, drain: DrainConfig, poll: Duration) -> Self {
        Controller {
            drain,
            drain_poll: poll,
            ..self
        }
    }

    /// Drains and launches in the background (the daemon), or inline (`once`).
    pub fn with_background(self, background: bool) -> Self {
        Controller {
            background_drains: background,
            ..self
        }
    }

    /// Notices of machines about to be reclaimed (spot interruptions).
    pub fn with_interruptions(self, source: Box<dyn crate::interruptions::InterruptionSource>) -> Self {
        Controller {
            interruptions: Some(source),
            ..self
        }
    }

    /// Another policy (a dry run of the same configuration, a test's tweak).
    pub fn with_policy(self, policy: Policy) -> Self {
        Controller { policy, ..self }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn drain_config(&self) -> &DrainConfig {
        &self.drain
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
        let mut saved = self.load_state().await?;
        let mut done = Reconciled::nothing(now, self.policy.dry_run);
        // A dry run changes nothing, so it needs no lock: it leaves the
        // journal, the drains and the stored state to whoever acts.
        if !self.policy.dry_run {
            self.collect_drains(now, &mut done).await?;
            self.collect_launches(now, &mut saved.stamps, &mut done).await?;
            self.recover(now, &mut done).await?;
        }
        self.observe(now).await;
        self.restore_demand().await?;
        let notices = self.receive_interruptions().await;
        let decision = self.decide_now(&mut saved.stamps, now);
        done.decision = decision.clone();
        if !self.policy.dry_run {
            self.act(&decision, now, &mut saved.stamps, &mut done).await?;
            self.record_events(&decision, now).await?;
            self.acknowledge(&notices).await;
        }
        self.tell(&done, now);
        // What was just launched is on its way: status and metrics show it now.
        self.refresh_pools_view(now);
        if !self.policy.dry_run {
            self.save_state(&saved).await?;
            self.save_demand(now).await?;
        }
        Ok(done)
    }

    /// The cooldown stamps and every pool's lifecycle, from the store.
    async fn load_state(&mut self) -> Result<Saved, ControllerError> {
        let (raw, stamps_version) = self.load(STAMPS_KEY).await?;
        let stamps: Stamps = parse(STAMPS_KEY, raw)?;
        let mut versions = BTreeMap::new();
        let names: Vec<String> = self.pools.keys().cloned().collect();
        for name in names {
            let key = lifecycle_key(&name);
            let (raw, version) = self.load(&key).await?;
            let lifecycle: Lifecycle = parse(&key, raw)?;
            if let Some(pool) = self.pools.get_mut(&name) {
                pool.lifecycle = lifecycle;
            }
            versions.insert(name, version);
        }
        Ok(Saved {
            stamps,
            stamps_version,
            versions,
        })
    }

    /// The stamps and lifecycles back, each conditioned on the version read.
    async fn save_state(&self, saved: &Saved) -> Result<(), ControllerError> {
        self.save(
            STAMPS_KEY,
            to_json(STAMPS_KEY, &saved.stamps)?,
            saved.stamps_version,
        )
        .await?;
        for (name, pool) in &self.pools {
            let key = lifecycle_key(name);
            let version = saved.versions.get(name).copied().unwrap_or(0);
            self.save(&key, to_json(&key, &pool.lifecycle)?, version).await?;
        }
        Ok(())
    }

    /// Decide on the snapshot as observed; logged.
    fn decide_now(&mut self, stamps: &mut Stamps, now: Time) -> Decision {
        // A node being drained is leaving: never a candidate again, never room for pods.
        for node in &mut self.snapshot.nodes {
            if self.draining.contains_key(&node.name) {
                node.cordoned = true;
            }
        }
        self.snapshot.last_scale_up = stamps.last_scale_up;
        self.snapshot.last_scale_down = stamps.last_scale_down;
        self.snapshot.replacing = stamps.replacing.clone();
        self.snapshot.consolidating = stamps.consolidating.clone();
        // The memory of `policy.predictive` (kept in the state store too).
        self.snapshot.demand.record(now, &self.snapshot.pods);
        let decision = decide(&self.snapshot, &self.policy, now);
        self.snapshot.remember(&decision, now);
        stamps.replacing = self.snapshot.replacing.clone();
        stamps.consolidating = self.snapshot.consolidating.clone();
        self.log_decision(&decision);
        decision
    }

    /// Interruption notices acted on (or not ours) are acknowledged only
    /// now, so a crash before this redelivers them.
    async fn acknowledge(&self, notices: &[crate::interruptions::Notice]) {
        if let Some(source) = &self.interruptions
            && !notices.is_empty()
        {
            source.ack(notices).await;
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
            // One drain per node: a node whose drain runs in the background
            // (one that died meanwhile is removed once that drain ends).
            if self.draining.contains_key(&down.node) {
                continue;
            }
            let mut config = self.drain.clone();
            if let Some(timeout) = self.policy.pool(&down.pool).and_then(|p| p.drain_timeout) {
                config.eviction_timeout = timeout;
            }
            let drain = if down.forced {
                Drain::forced(&down.node, now, config)
            } else {
                Drain::start(&down.node, now, config)
            };
            let intent = Intent {
                kind: IntentKind::Drain,
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
}
