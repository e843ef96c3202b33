//! k3scale's own metrics (`/metrics`, Prometheus text format, `k3scale_`
//! prefix): nodes per pool and state, decisions by reason, actions by
//! result, reconcile duration, metrics-source availability, unschedulable
//! pods, leadership, and the last successful reconcile.

use crate::controller::Reconciled;
use k3scale_core::{Policy, Snapshot, Time};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolState {
    pool: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rule {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Action {
    action: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Signal {
    signal: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PodState {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: String,
    commit: String,
    features: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Pool {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolReason {
    pool: String,
    reason: String,
}

#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    nodes: Family<PoolState, Gauge>,
    decisions: Family<Rule, Counter>,
    actions: Family<Action, Counter>,
    reconcile_seconds: Histogram,
    reconcile_errors: Counter,
    metrics_available: Family<Signal, Gauge>,
    unschedulable: Gauge,
    pods: Family<PodState, Gauge>,
    last_success: Gauge<f64, AtomicU64>,
    leader: Gauge,
    cost_per_hour: Family<Pool, Gauge<f64, AtomicU64>>,
    spent_today: Gauge<f64, AtomicU64>,
    fixed_fleet_today: Gauge<f64, AtomicU64>,
    pool_failed: Family<Pool, Gauge>,
    due: Family<PoolReason, Gauge>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    pub fn new() -> Telemetry {
        let mut registry = Registry::with_prefix("k3scale");
        let t = Telemetry {
            nodes: Family::default(),
            decisions: Family::default(),
            actions: Family::default(),
            reconcile_seconds: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0]),
            reconcile_errors: Counter::default(),
            metrics_available: Family::default(),
            unschedulable: Gauge::default(),
            pods: Family::default(),
            last_success: Gauge::default(),
            leader: Gauge::default(),
            cost_per_hour: Family::default(),
            spent_today: Gauge::default(),
            fixed_fleet_today: Gauge::default(),
            pool_failed: Family::default(),
            due: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "nodes",
            "Nodes per pool and state (ready, starting, not_ready, cordoned, launching)",
            t.nodes.clone(),
        );
        registry.register(
            "decision_reasons",
            "Reasons given by decisions, by rule",
            t.decisions.clone(),
        );
        registry.register(
            "actions",
            "Actions carried out, by action and result",
            t.actions.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            t.reconcile_seconds.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed",
            t.reconcile_errors.clone(),
        );
        registry.register(
            "metrics_available",
            "1 if the signal had a usable value at the last reconcile",
            t.metrics_available.clone(),
        );
        registry.register(
            "unschedulable_pods",
            "Pods the scheduler says do not fit",
            t.unschedulable.clone(),
        );
        registry.register(
            "pods",
            "Pods k3scale sees, by state (scheduled on a node, or pending)",
            t.pods.clone(),
        );
        registry.register(
            "last_successful_reconcile_timestamp_seconds",
            "Unix time of the last reconcile that succeeded",
            t.last_success.clone(),
        );
        registry.register("leader", "1 while this replica may act", t.leader.clone());
        registry.register(
            "cost_per_hour_dollars",
            "Price per hour of the managed nodes, by pool",
            t.cost_per_hour.clone(),
        );
        registry.register(
            "spent_today_dollars",
            "Spent on managed nodes today (UTC), from this replica's samples since its first today",
            t.spent_today.clone(),
        );
        registry.register(
            "fixed_fleet_today_dollars",
            "What a fixed fleet sized for today's peak of each pool would have cost over the same time",
            t.fixed_fleet_today.clone(),
        );
        registry.register(
            "nodes_due_for_replacement",
            "Nodes older than their pool's expire_after (expired) or launched with settings the pool no longer has (drifted)",
            t.due.clone(),
        );
        registry.register(
            "pool_failed",
            "1 while a pool launches nothing because its provider failed (Fatal) until it is reset or reconfigured",
            t.pool_failed.clone(),
        );
        let build = Family::<Build, Gauge>::default();
        build
            .get_or_create(&Build {
                version: crate::build::VERSION.into(),
                commit: crate::build::COMMIT.into(),
                features: crate::build::FEATURES.into(),
            })
            .set(1);
        registry.register("build_info", "Always 1; the labels name the running build", build);
        Telemetry { registry, ..t }
    }

    /// Today's spend and the fixed fleet it is compared with.
    pub fn set_today(&self, today: &crate::samples::Today) {
        self.spent_today.set(today.spent);
        self.fixed_fleet_today.set(today.fixed_fleet);
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn reconcile_failed(&self, took: Duration) {
        self.reconcile_seconds.observe(took.as_secs_f64());
        self.reconcile_errors.inc();
    }

    /// Record what a successful reconcile saw and did.
    pub fn reconciled(
        &self,
        done: &Reconciled,
        snapshot: &Snapshot,
        policy: &Policy,
        took: Duration,
        now: Time,
    ) {
        self.reconcile_seconds.observe(took.as_secs_f64());
        self.last_success.set(now.as_secs_f64());
        for reason in &done.decision.reasons {
            let rule = serde_json::to_value(reason)
                .ok()
                .and_then(|v| v["rule"].as_str().map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            self.decisions.get_or_create(&Rule { rule }).inc();
        }
        let count = |action: &str, result: &str, n: usize| {
            if n > 0 {
                self.actions
                    .get_or_create(&Action {
                        action: action.into(),
                        result: result.into(),
                    })
                    .inc_by(n as u64);
            }
        };
        count("launch", "ok", done.launched.len());
        count("remove", "ok", done.removed.len());
        for failure in &done.failed {
            count(failure.action.as_str(), "failed", 1);
        }
        count("recover", "ok", done.recovered.len());

        for pool in &policy.pools {
            let failed = snapshot
                .backoff
                .get(&pool.name)
                .is_some_and(|h| h.cause == k3scale_core::lifecycle::HoldCause::Failed);
            self.pool_failed
                .get_or_create(&Pool {
                    pool: pool.name.clone(),
                })
                .set(i64::from(failed));
        }
        self.nodes.clear();
        let mut cost: BTreeMap<&str, f64> = policy.pools.iter().map(|p| (p.name.as_str(), 0.0)).collect();
        for pool in &policy.pools {
            for state in ["ready", "starting", "not_ready", "cordoned", "launching"] {
                self.nodes
                    .get_or_create(&PoolState {
                        pool: pool.name.clone(),
                        state: state.into(),
                    })
                    .set(0);
            }
        }
        for node in &snapshot.nodes {
            let Some(pool) = &node.pool else { continue };
            let state = match (node.ready, node.cordoned) {
                (_, true) => "cordoned",
                _ if node.starting.is_some() => "starting",
                (true, false) => "ready",
                (false, false) => "not_ready",
            };
            self.nodes
                .get_or_create(&PoolState {
                    pool: pool.clone(),
                    state: state.into(),
                })
                .inc();
            if let Some(p) = policy.pools.iter().find(|p| p.name == *pool) {
                *cost.entry(p.name.as_str()).or_default() += p.template.price_per_hour;
            }
        }
        self.due.clear();
        for pool in &policy.pools {
            for reason in ["expired", "drifted"] {
                let due = snapshot
                    .nodes
                    .iter()
                    .filter(|n| n.pool.as_deref() == Some(pool.name.as_str()))
                    .filter(|n| {
                        k3scale_core::replacement_due(n, pool, now).is_some_and(|r| r.to_string() == reason)
                    })
                    .count();
                self.due
                    .get_or_create(&PoolReason {
                        pool: pool.name.clone(),
                        reason: reason.into(),
                    })
                    .set(due as i64);
            }
        }
        for f in &snapshot.in_flight {
            self.nodes
                .get_or_create(&PoolState {
                    pool: f.pool.clone(),
                    state: "launching".into(),
                })
                .inc();
        }
        for (pool, dollars) in cost {
            self.cost_per_hour
                .get_or_create(&Pool { pool: pool.into() })
                .set(dollars);
        }
        let latest = |s: &k3scale_core::Series| s.samples.last().is_some_and(|x| x.value.is_some());
        let mut signals = vec![
            ("cpu".to_string(), latest(&snapshot.cpu)),
            ("memory".to_string(), latest(&snapshot.memory)),
        ];
        signals.extend(snapshot.custom.iter().map(|(name, s)| (name.clone(), latest(s))));
        for (signal, ok) in signals {
            self.metrics_available
                .get_or_create(&Signal { signal })
                .set(i64::from(ok));
        }
        let scheduled = snapshot.pods.iter().filter(|p| p.node_name.is_some()).count();
        for (state, n) in [
            ("scheduled", scheduled),
            ("pending", snapshot.pods.len() - scheduled),
        ] {
            self.pods
                .get_or_create(&PodState { state: state.into() })
                .set(n as i64);
        }
        self.unschedulable.set(
            snapshot
                .pods
                .iter()
                .filter(|p| p.unschedulable_since.is_some())
                .count() as i64,
        );
    }

    /// The exposition in the OpenMetrics text format.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The exposition in the Prometheus text format (0.0.4), for clients
    /// that do not ask for OpenMetrics (`promtool check metrics`, older
    /// scrapers): counters are named with their `_total` suffix in HELP and
    /// TYPE too, and there is no `# EOF`.
    pub fn encode_prometheus(&self) -> String {
        let om = self.encode_openmetrics();
        let counters: std::collections::HashSet<&str> = om
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split_once(' '))
            .filter(|(_, kind)| *kind == "counter")
            .map(|(name, _)| name)
            .collect();
        let mut out = String::with_capacity(om.len());
        for line in om.lines().filter(|l| *l != "# EOF") {
            let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
                let rest = line.strip_prefix(prefix)?;
                let (name, tail) = rest.split_once(' ')?;
                counters
                    .contains(name)
                    .then(|| format!("{prefix}{name}_total {tail}"))
            });
            out.push_str(renamed.as_deref().unwrap_or(line));
            out.push('\n');
        }
        out
    }
}
