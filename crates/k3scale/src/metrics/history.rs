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

/// Workload pods (pending or running; not DaemonSet or static pods), 1
/// each, as kube-state-metrics reports them.
const WORKLOAD_PODS: &str = r#"(max by (namespace, pod) (kube_pod_status_phase{phase=~"Pending|Running"}) == 1) unless on (namespace, pod) kube_pod_owner{owner_kind=~"DaemonSet|Node"}"#;

/// The queries `policy.predictive` fills its history with: CPU cores and
/// memory bytes requested by workload pods, and their count.
pub fn demand_queries() -> [String; 3] {
    let requested = |resource: &str| {
        format!(
            r#"sum(sum by (namespace, pod) (kube_pod_container_resource_requests{{resource="{resource}"}}) * on (namespace, pod) ({WORKLOAD_PODS}))"#
        )
    };
    [
        requested("cpu"),
        requested("memory"),
        format!("count({WORKLOAD_PODS})"),
    ]
}

/// What workload pods requested each minute from `start` to `end` (Unix
/// seconds), as (minute since the epoch, requests): the history
/// `policy.predictive` would have kept had k3scale been running. A minute
/// one of the queries has no value for is left out (unknown, not zero);
/// a query with no series at all is an error.
pub async fn demand(
    prom: &Prometheus,
    start: f64,
    end: f64,
) -> Result<Vec<(u64, k3scale_core::Resources)>, MetricsError> {
    let mut minutes: BTreeMap<u64, [Option<f64>; 3]> = BTreeMap::new();
    for (i, query) in demand_queries().iter().enumerate() {
        let series = prom.query_range_series(query, start, end, STEP).await?;
        if series.is_empty() {
            return Err(MetricsError::Empty { query: query.clone() });
        }
        for (t, value) in series.into_iter().flat_map(|(_, steps)| steps) {
            let Some(value) = value.filter(|v| *v >= 0.0) else {
                continue;
            };
            minutes.entry(t as u64 / 60).or_default()[i] = Some(value);
        }
    }
    Ok(minutes
        .into_iter()
        .filter_map(|(minute, values)| match values {
            [Some(cores), Some(bytes), Some(pods)] => Some((
                minute,
                k3scale_core::Resources {
                    cpu_milli: (cores * 1000.0).ceil() as u64,
                    memory_bytes: bytes.ceil() as u64,
                    pods: pods.round() as u64,
                },
            )),
            _ => None,
        })
        .collect())
}
