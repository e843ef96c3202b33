//! The contenders every simulation compares, and the oracle they are measured against.

use crate::engine::{Contender, RunResult, ScaleEvent, SimOptions, pods_per_node, run};
use crate::report::Summary;
use crate::trace::{DemandUnit, Trace};
use k3scale_core::Policy;
use k3scale_core::policy::PendingPods;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How often cron-run threshold scripts evaluate their rules.
pub const BASELINE_INTERVAL: Duration = Duration::from_secs(120);

/// The perfect-foresight contender every other is measured against.
pub const ORACLE: &str = "oracle";

/// One k3scale configuration to replay: its name in the table, its policy
/// and how often it decides.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub policy: Policy,
    pub interval: Duration,
}

/// k3scale with each candidate's policy; the first one's thresholds as a
/// plain script evaluated every 2 minutes with +1/-1 steps; a fixed
/// cluster of its pools sized for the peak; and the oracle.
pub fn contenders(candidates: &[Candidate], trace: &Trace, opts: &SimOptions) -> Vec<Contender> {
    let Some(first) = candidates.first() else {
        return Vec::new();
    };
    let policy = &first.policy;
    let mut plain = policy.clone();
    plain.scale_up.pending_pods = PendingPods::Threshold;
    plain.scale_up.max_step = 1;
    plain.scale_down.max_step = 1;
    plain.scale_down.max_empty_step = 1;
    // A script judges the whole cluster at each run, not each node over
    // time, and waits the seed rules' 10 minutes between scale-downs.
    plain.scale_down.cluster_gate = true;
    plain.scale_down.cooldown = Duration::from_secs(600);
    plain.scale_down.unneeded_time = Duration::ZERO;
    plain.scale_down.delay_after_scale_up = Duration::ZERO;
    let ours = candidates.iter().map(|c| Contender::Autoscaler {
        name: c.name.clone(),
        policy: Box::new(c.policy.clone()),
        interval: c.interval,
        event_driven: true,
    });
    ours.chain([
        Contender::Autoscaler {
            name: "threshold-2m".into(),
            policy: Box::new(plain),
            interval: BASELINE_INTERVAL,
            event_driven: false,
        },
        Contender::Fixed {
            name: "fixed-peak".into(),
            pools: policy.pools.clone(),
            nodes: peak_nodes(policy, trace, opts),
        },
        Contender::Oracle {
            name: ORACLE.into(),
            pools: policy.pools.clone(),
        },
    ])
    .collect()
}

/// Nodes of the first pool needed for the trace's peak replicas (what a
/// user sizing a static cluster by hand would buy), at least its minimum
/// and at most what the pool (and the cluster's node limit) allows: a
/// fixed fleet bigger than k3scale may ever run would inflate the saving.
pub fn peak_nodes(policy: &Policy, trace: &Trace, opts: &SimOptions) -> u32 {
    let Some(pool) = policy.pools.first() else {
        return 0;
    };
    let spec = &opts.workload;
    let replicas: u64 = trace
        .series
        .values()
        .map(|points| {
            let row_secs = points.get(1).map_or(60.0, |p| (p.0 - points[0].0).max(1) as f64);
            let peak = points.iter().map(|p| p.1).fold(0.0, f64::max);
            let r = match trace.unit {
                DemandUnit::Replicas => peak.round(),
                DemandUnit::Cpu => {
                    (peak / (spec.cpu_request_milli as f64 / 1000.0 * spec.target_utilization)).ceil()
                }
                DemandUnit::Requests => {
                    let cores = peak / row_secs * opts.cpu_per_request;
                    (cores / (spec.cpu_request_milli as f64 / 1000.0 * spec.target_utilization)).ceil()
                }
            };
            (r as u64).clamp(u64::from(spec.min_replicas), u64::from(spec.max_replicas))
        })
        .sum();
    let per_node = u64::from(pods_per_node(pool, opts));
    let cap = pool
        .max
        .min(policy.limits.max_nodes.unwrap_or(u32::MAX))
        .max(pool.min);
    u32::try_from(replicas.div_ceil(per_node))
        .unwrap_or(u32::MAX)
        .clamp(pool.min, cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k3scale_core::testkit::{GI, pool};

    #[test]
    fn the_fixed_fleet_is_sized_for_the_peak_within_the_pools_bounds() {
        let opts = SimOptions::default();
        let trace = |cores: f64| Trace::parse("t.csv", &format!("time_s,cpu\n0,1\n60,{cores}\n")).unwrap();
        let policy = Policy::new(vec![pool("workers", 2, 10, 4000, 16 * GI, 0.04)]);
        let small = peak_nodes(&policy, &trace(1.0), &opts);
        let medium = peak_nodes(&policy, &trace(12.0), &opts);
        assert_eq!(small, 2, "at least the pool's minimum");
        assert!(medium > small && medium < 10, "{medium}");
        assert_eq!(
            peak_nodes(&policy, &trace(10_000.0), &opts),
            10,
            "at most the pool's max"
        );
        let mut limited = policy.clone();
        limited.limits.max_nodes = Some(6);
        assert_eq!(
            peak_nodes(&limited, &trace(10_000.0), &opts),
            6,
            "at most the cluster's limit"
        );
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub scenario: String,
    pub hours: f64,
    pub peak_demand_cores: f64,
    pub summaries: Vec<Summary>,
    /// Policy name → its scale events with reasons.
    pub events: BTreeMap<String, Vec<ScaleEvent>>,
    /// What happened minute by minute, to plot or analyse.
    pub per_minute: PerMinute,
    #[serde(skip)]
    pub runs: Vec<RunResult>,
}

impl Comparison {
    pub fn summary(&self, policy: &str) -> Option<&Summary> {
        self.summaries.iter().find(|s| s.policy == policy)
    }

    /// Percent fewer node-hours than `other` (positive = k3scale saves).
    pub fn saving_vs(&self, other: &str) -> Option<f64> {
        self.saving("k3scale", other)
    }

    /// Percent fewer node-hours `ours` uses than `other`.
    pub fn saving(&self, ours: &str, other: &str) -> Option<f64> {
        let ours = self.summary(ours)?.node_hours;
        let theirs = self.summary(other)?.node_hours;
        (theirs > 0.0).then(|| (1.0 - ours / theirs) * 100.0)
    }
}

/// Per-minute series of a comparison (index = minutes since the start).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PerMinute {
    /// CPU the workloads use at full service (cores).
    pub demand_cores: Vec<f64>,
    /// Contender → nodes alive (booting included).
    pub nodes: BTreeMap<String, Vec<u32>>,
    /// Contender → pods created but not yet bound to a node.
    pub pending_pods: BTreeMap<String, Vec<u32>>,
}

impl PerMinute {
    fn of(runs: &[RunResult]) -> PerMinute {
        PerMinute {
            demand_cores: runs
                .first()
                .map(|r| r.demand_per_minute.clone())
                .unwrap_or_default(),
            nodes: runs
                .iter()
                .map(|r| (r.name.clone(), r.nodes_per_minute.clone()))
                .collect(),
            pending_pods: runs
                .iter()
                .map(|r| (r.name.clone(), r.pending_per_minute.clone()))
                .collect(),
        }
    }
}

/// Run k3scale with `policy` and every baseline over `trace`;
/// `progress(done)` goes from 0 to 1.
pub fn compare(
    scenario: &str,
    trace: &Trace,
    policy: &Policy,
    interval: Duration,
    opts: &SimOptions,
    progress: &mut dyn FnMut(f64),
) -> Comparison {
    let k3scale = Candidate {
        name: "k3scale".into(),
        policy: policy.clone(),
        interval,
    };
    compare_candidates(scenario, trace, &[k3scale], opts, progress)
}

/// Run each candidate configuration and the baselines (from the first
/// candidate) over `trace`, side by side.
pub fn compare_candidates(
    scenario: &str,
    trace: &Trace,
    candidates: &[Candidate],
    opts: &SimOptions,
    progress: &mut dyn FnMut(f64),
) -> Comparison {
    let list = contenders(candidates, trace, opts);
    let runs = run_side_by_side(&list, trace, opts, progress);
    let first = runs.first();
    Comparison {
        scenario: scenario.to_string(),
        hours: trace.duration().as_secs_f64() / 3600.0,
        peak_demand_cores: first.map_or(0.0, |r| r.demand_per_minute.iter().copied().fold(0.0, f64::max)),
        summaries: with_oracle_ratio(runs.iter().map(Summary::of).collect()),
        events: runs.iter().map(|r| (r.name.clone(), r.events.clone())).collect(),
        per_minute: PerMinute::of(&runs),
        runs,
    }
}

/// Every contender's run, each on a thread of its own (they share
/// nothing but the trace), in `list`'s order; `progress` hears their mean
/// progress on the calling thread.
fn run_side_by_side(
    list: &[Contender],
    trace: &Trace,
    opts: &SimOptions,
    progress: &mut dyn FnMut(f64),
) -> Vec<RunResult> {
    let n = list.len().max(1) as f64;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<(usize, f64)>();
        let handles: Vec<_> = list
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let tx = tx.clone();
                // A progress report nobody hears any more is no error.
                scope.spawn(move || {
                    run(trace, c, opts, &mut |f| {
                        let _ = tx.send((i, f));
                    })
                })
            })
            .collect();
        drop(tx);
        let mut done = vec![0.0; list.len()];
        for (i, f) in rx {
            done[i] = f;
            progress(done.iter().sum::<f64>() / n);
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

/// Each summary's node-hours as a multiple of the oracle's.
fn with_oracle_ratio(mut summaries: Vec<Summary>) -> Vec<Summary> {
    let oracle = summaries
        .iter()
        .find(|s| s.policy == ORACLE)
        .map(|s| s.node_hours);
    for s in &mut summaries {
        s.vs_oracle = oracle.filter(|&o| o > 0.0).map(|o| s.node_hours / o);
    }
    summaries
}
