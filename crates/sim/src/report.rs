//! Summaries of runs, side by side: what `k3scale simulate` prints.

use crate::engine::RunResult;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub policy: String,
    pub node_hours: f64,
    pub cost: f64,
    pub pod_seconds_unschedulable: f64,
    pub pods: usize,
    pub pods_that_waited: usize,
    pub p95_wait_s: f64,
    pub max_wait_s: f64,
    /// Longest wait minus the node boot time: the autoscaler's own delay.
    pub max_wait_past_boot_s: f64,
    pub scale_up_events: u32,
    pub nodes_added: u32,
    pub scale_down_events: u32,
    pub nodes_removed: u32,
    /// Scale-ups that came within [`FLAP_WINDOW`] of a scale-down: each
    /// pays a boot for capacity just given back.
    pub scale_ups_soon_after_a_scale_down: u32,
    /// Of those, the ones launched for pods the scale-down itself evicted
    /// (a removal its own pods undo), not for new demand.
    pub scale_ups_for_evicted_pods: Option<u32>,
    pub peak_nodes: u32,
    pub mean_nodes: f64,
    /// Node-hours as a multiple of the oracle's (1.0 is the limit).
    pub vs_oracle: Option<f64>,
}

/// How soon a scale-up after a scale-down counts as undoing it.
pub const FLAP_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

/// Scale-ups whose last scale-down was at most [`FLAP_WINDOW`] before.
/// Replacements (a node launched for one that leaves, and its drain) are
/// neither: a rollout's steps are not capacity given back and asked again.
fn flaps(events: &[crate::engine::ScaleEvent]) -> u32 {
    let mut last_down: Option<u64> = None;
    let mut n = 0;
    for e in events {
        if e.added > e.replacements && last_down.is_some_and(|d| e.at_s - d <= FLAP_WINDOW.as_secs()) {
            n += 1;
        }
        if e.removed > e.replaced {
            last_down = Some(e.at_s);
        }
    }
    n
}

impl Summary {
    pub fn of(r: &RunResult) -> Summary {
        let mut waits = r.waits.clone();
        waits.sort_by(f64::total_cmp);
        let max_wait = waits.last().copied().unwrap_or(0.0);
        let minutes = r.nodes_per_minute.len().max(1) as f64;
        Summary {
            policy: r.name.clone(),
            node_hours: r.node_seconds / 3600.0,
            cost: r.cost,
            pod_seconds_unschedulable: waits.iter().sum(),
            pods: waits.len(),
            pods_that_waited: waits.iter().filter(|w| **w > 0.0).count(),
            p95_wait_s: percentile(&waits, 0.95),
            max_wait_s: max_wait,
            max_wait_past_boot_s: (max_wait - r.boot_time.as_secs_f64()).max(0.0),
            scale_up_events: r.scale_up_events,
            nodes_added: r.nodes_added,
            scale_down_events: r.scale_down_events,
            nodes_removed: r.nodes_removed,
            scale_ups_soon_after_a_scale_down: flaps(&r.events),
            scale_ups_for_evicted_pods: r.scale_ups_for_evicted_pods,
            peak_nodes: r.nodes_per_minute.iter().copied().max().unwrap_or(0),
            mean_nodes: r.nodes_per_minute.iter().map(|&n| f64::from(n)).sum::<f64>() / minutes,
            vs_oracle: None,
        }
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The comparison as a fixed-width text table, policies as columns.
pub fn table(summaries: &[Summary]) -> String {
    type Cell = Box<dyn Fn(&Summary) -> String>;
    let rows: Vec<(&str, Cell)> = vec![
        ("node-hours", Box::new(|s| format!("{:.1}", s.node_hours))),
        (
            "node-hours vs oracle (x)",
            Box::new(|s| s.vs_oracle.map_or("-".into(), |r| format!("{r:.3}"))),
        ),
        ("cost ($)", Box::new(|s| format!("{:.2}", s.cost))),
        (
            "mean / peak nodes",
            Box::new(|s| format!("{:.1} / {}", s.mean_nodes, s.peak_nodes)),
        ),
        (
            "pod-seconds unschedulable",
            Box::new(|s| format!("{:.0}", s.pod_seconds_unschedulable)),
        ),
        (
            "pods that waited",
            Box::new(|s| format!("{} of {}", s.pods_that_waited, s.pods)),
        ),
        ("p95 wait (s)", Box::new(|s| format!("{:.0}", s.p95_wait_s))),
        ("max wait (s)", Box::new(|s| format!("{:.0}", s.max_wait_s))),
        (
            "max wait past boot (s)",
            Box::new(|s| format!("{:.0}", s.max_wait_past_boot_s)),
        ),
        (
            "scale-ups (nodes)",
            Box::new(|s| format!("{} ({})", s.scale_up_events, s.nodes_added)),
        ),
        (
            "scale-downs (nodes)",
            Box::new(|s| format!("{} ({})", s.scale_down_events, s.nodes_removed)),
        ),
        (
            "scale-ups <= 10 min after a scale-down",
            Box::new(|s| format!("{}", s.scale_ups_soon_after_a_scale_down)),
        ),
        (
            "  of which for pods it evicted",
            Box::new(|s| s.scale_ups_for_evicted_pods.map_or("-".into(), |n| n.to_string())),
        ),
    ];
    let label_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(_, f)| summaries.iter().map(f).collect())
        .collect();
    let widths: Vec<usize> = summaries
        .iter()
        .enumerate()
        .map(|(i, s)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
                .max(s.policy.len())
        })
        .collect();
    let mut out = format!("{:label_width$}", "");
    for (s, w) in summaries.iter().zip(&widths) {
        out.push_str(&format!("  {:>w$}", s.policy));
    }
    out.push('\n');
    for ((label, _), row) in rows.iter().zip(&cells) {
        out.push_str(&format!("{label:label_width$}"));
        for (cell, w) in row.iter().zip(&widths) {
            out.push_str(&format!("  {cell:>w$}"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_up_soon_after_a_scale_down_is_a_flap() {
        let e = |at_s, added, removed| crate::engine::ScaleEvent {
            at_s,
            added,
            removed,
            replacements: 0,
            replaced: 0,
            reasons: Vec::new(),
        };
        // Up, down, up 5 min later (a flap), down, up 20 min later (not one).
        let events = [
            e(0, 2, 0),
            e(600, 0, 1),
            e(900, 1, 0),
            e(1000, 0, 1),
            e(2200, 1, 0),
        ];
        assert_eq!(flaps(&events), 1);
        assert_eq!(flaps(&[e(0, 1, 0)]), 0, "a scale-up with no scale-down before");
        // A rollout: replacements launched, the old nodes drained, the next
        // replacements 2 minutes later. No capacity was given back.
        let swap = |at_s, added, removed| crate::engine::ScaleEvent {
            replacements: added,
            replaced: removed,
            ..e(at_s, added, removed)
        };
        let rollout = [swap(0, 2, 0), swap(300, 0, 2), swap(420, 2, 0)];
        assert_eq!(flaps(&rollout), 0, "replacements are not flaps");
        // A replacement's drain and, in the same decision, a node given back:
        // a scale-up for pods after it undoes the removal.
        let both = crate::engine::ScaleEvent {
            replaced: 1,
            ..e(0, 0, 2)
        };
        assert_eq!(flaps(&[both, e(300, 1, 0)]), 1);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.95), 95.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[3.0], 0.95), 3.0);
        assert_eq!(percentile(&[], 0.95), 0.0);
    }
}
