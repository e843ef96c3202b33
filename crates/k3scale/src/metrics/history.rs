//! A cluster's own demand history, read back from Prometheus as a trace
//! the simulator replays: what k3scale would have done last week, before
//! it is switched on.

use super::MetricsError;
use super::prometheus::Prometheus;
use k3scale_sim::{DemandUnit, Trace};
use std::collections::BTreeMap;
use std::time::Duration;

/// Replicas each HorizontalPodAutoscaler wanted (kube-state-metrics), one
/// series per HPA.
pub const DEFAULT_QUERY: &str =
    "sum by (namespace, horizontalpodautoscaler) (kube_horizontalpodautoscaler_status_desired_replicas)";

/// The trace's resolution, as the built-in traces have.
pub const STEP: Duration = Duration::from_secs(60);

/// Replicas per workload from `start` to `end` (Unix seconds): one
/// workload per series `query` yields, named by its label values. A step
/// without a value keeps the one before (a missed scrape, not zero
/// replicas); a negative count is refused.
pub async fn replicas(prom: &Prometheus, query: &str, start: f64, end: f64) -> Result<Trace, MetricsError> {
    let bad = |cause: String| MetricsError::BadResponse {
        query: query.to_string(),
        cause,
    };
    let mut series = BTreeMap::new();
    for (i, (labels, steps)) in prom
        .query_range_series(query, start, end, STEP)
        .await?
        .into_iter()
        .enumerate()
    {
        let name = if labels.is_empty() {
            format!("series-{i}")
        } else {
            labels.values().cloned().collect::<Vec<_>>().join("/")
        };
        let mut points: Vec<(u64, f64)> = Vec::with_capacity(steps.len());
        for (t, value) in steps {
            let value = match value {
                Some(v) if v < 0.0 => return Err(bad(format!("{name}: {v} replicas at {t}"))),
                Some(v) => v,
                None => match points.last() {
                    Some(&(_, before)) => before,
                    None => continue,
                },
            };
            points.push(((t - start).max(0.0).round() as u64, value));
        }
        if !points.is_empty() {
            series.insert(name, points);
        }
    }
    if series.is_empty() {
        return Err(MetricsError::Empty {
            query: query.to_string(),
        });
    }
    Ok(Trace {
        unit: DemandUnit::Replicas,
        series,
    })
}
