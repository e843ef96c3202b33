//! Everything `decide` looks at, gathered by the observers (or the simulator).

use crate::lifecycle::Hold;
pub use crate::lifecycle::InFlight;
use crate::model::{Node, Pod};
use crate::time::Time;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One metric reading; `None` when the source had no usable answer
/// (error, empty vector, NaN), which is never the same as zero.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    pub at: Time,
    pub value: Option<f64>,
}

/// Readings of one signal, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Series {
    pub samples: Vec<Sample>,
}

impl Series {
    pub fn push(&mut self, at: Time, value: Option<f64>) {
        let value = value.filter(|v| v.is_finite());
        self.samples.push(Sample { at, value });
    }

    /// Drop samples older than `keep` before `now` (bounded memory).
    pub fn trim(&mut self, now: Time, keep: Duration) {
        let cutoff = now.saturating_sub(keep);
        let first_kept = self.samples.partition_point(|s| s.at < cutoff);
        // Keep one sample before the cutoff so the window start stays covered.
        self.samples.drain(..first_kept.saturating_sub(1));
    }
}

/// One poll of the metrics source: each signal a value or why it is unavailable.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Reading {
    pub cpu: Option<Result<f64, String>>,
    pub memory: Option<Result<f64, String>>,
    pub custom: BTreeMap<String, Result<f64, String>>,
}

impl Snapshot {
    /// Append a reading to the series (a failure is a gap, never a zero) and
    /// keep `keep` of history.
    pub fn record(&mut self, at: Time, reading: &Reading, keep: Duration) {
        let mut errors = Vec::new();
        let mut push = |series: &mut Series, name: &str, value: &Result<f64, String>| {
            match value {
                Ok(v) if v.is_finite() => series.push(at, Some(*v)),
                Ok(v) => {
                    errors.push(format!("{name}: not a number ({v})"));
                    series.push(at, None);
                }
                Err(e) => {
                    errors.push(format!("{name}: {e}"));
                    series.push(at, None);
                }
            }
            series.trim(at, keep);
        };
        if let Some(cpu) = &reading.cpu {
            push(&mut self.cpu, "cpu", cpu);
        }
        if let Some(memory) = &reading.memory {
            push(&mut self.memory, "memory", memory);
        }
        for (name, value) in &reading.custom {
            push(self.custom.entry(name.clone()).or_default(), name, value);
        }
        self.metrics_error = (!errors.is_empty()).then(|| errors.join("; "));
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Snapshot {
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    /// One pod template per DaemonSet: each new node runs those that match it,
    /// so they take room on nodes not launched yet.
    pub daemonsets: Vec<Pod>,
    /// PodDisruptionBudget name → disruptions currently allowed.
    pub pdbs: BTreeMap<String, u32>,
    pub in_flight: Vec<InFlight>,
    /// Pools that launch nothing for now: until when, and why.
    pub backoff: BTreeMap<String, Hold>,
    /// Cluster CPU utilization (0..1), e.g. `1 - avg(rate(idle))`.
    pub cpu: Series,
    /// Cluster memory utilization (0..1), `1 - MemAvailable/MemTotal`.
    pub memory: Series,
    pub custom: BTreeMap<String, Series>,
    /// Why the metrics source failed last, if it did.
    pub metrics_error: Option<String>,
    pub last_scale_up: Option<Time>,
    pub last_scale_down: Option<Time>,
    /// Nodes their cloud will take away soon (a spot interruption notice,
    /// a rebalance recommendation): drained now, replaced at once.
    pub interrupted: Vec<Interruption>,
    /// Unschedulable pods the planner has placed on existing free capacity,
    /// since when (kept across decisions by [`Snapshot::remember_fits`]): a
    /// pod the scheduler still rejects after a while is not counted there.
    pub fit_believed_since: BTreeMap<String, Time>,
    /// Nodes found unneeded, since when without a break (kept across
    /// decisions by [`Snapshot::remember`]).
    pub unneeded_since: BTreeMap<String, Time>,
    /// Expired or drifted nodes whose replacement was launched, since when
    /// (kept across decisions by [`Snapshot::remember`]): drained once the
    /// replacement has joined.
    pub replacing: BTreeMap<String, Time>,
    /// Nodes a consolidation replaces: since when, and the pool whose new
    /// nodes they wait for (kept by [`Snapshot::remember`]).
    pub consolidating: BTreeMap<String, (Time, String)>,
    /// What the workloads requested, minute by minute: the memory of
    /// `policy.predictive`.
    pub demand: crate::forecast::DemandHistory,
}

impl Snapshot {
    /// Carry the planner's beliefs into the next decision: the pods `decision`
    /// placed on existing capacity and the nodes it found unneeded keep the
    /// time that started; others are forgotten (a break resets the clock).
    pub fn remember(&mut self, decision: &crate::Decision, now: Time) {
        self.fit_believed_since = since(&self.fit_believed_since, &decision.fit_existing, now);
        self.unneeded_since = since(&self.unneeded_since, &decision.unneeded, now);
        self.replacing = since(&self.replacing, &decision.replacing, now);
        self.consolidating = decision
            .consolidating
            .iter()
            .map(|(node, pool)| {
                let at = self.consolidating.get(node).map_or(now, |(t, _)| *t);
                (node.clone(), (at, pool.clone()))
            })
            .collect();
    }
}

fn since(before: &BTreeMap<String, Time>, now_true: &[String], now: Time) -> BTreeMap<String, Time> {
    now_true
        .iter()
        .map(|key| (key.clone(), before.get(key).copied().unwrap_or(now)))
        .collect()
}

/// A notice that a node's machine is about to be reclaimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interruption {
    pub node: String,
    /// `spot-interruption`, `rebalance-recommendation`...
    pub notice: String,
}
