//! Sustained-window evaluation of a metric series.

use crate::snapshot::Series;
use crate::time::Time;
use std::time::Duration;

/// Why a windowed value could not be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    NoSamples,
    Stale { age: Duration },
    Missing,
    Gap,
    ShortHistory { covered: Duration },
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::NoSamples => write!(f, "no samples yet"),
            Unavailable::Stale { age } => write!(f, "latest sample is {}s old", age.as_secs()),
            Unavailable::Missing => write!(f, "latest reading failed"),
            Unavailable::Gap => write!(f, "a reading in the window failed"),
            Unavailable::ShortHistory { covered } => {
                write!(f, "history covers only {}s of the window", covered.as_secs())
            }
        }
    }
}

/// The mean of `series` over `[now - window, now]`.
///
/// The latest sample must be fresh (`max_age`), every sample in the window
/// present, and the history must reach back to the window start (within
/// `max_age`): a sustained rule is never decided on a partial window.
/// A zero window means "the latest sample".
pub fn window_mean(
    series: &Series,
    now: Time,
    window: Duration,
    max_age: Duration,
) -> Result<f64, Unavailable> {
    let samples = &series.samples;
    let latest = samples.last().ok_or(Unavailable::NoSamples)?;
    let age = now.since(latest.at);
    if age > max_age {
        return Err(Unavailable::Stale { age });
    }
    let latest_value = latest.value.ok_or(Unavailable::Missing)?;
    if window.is_zero() {
        return Ok(latest_value);
    }
    let start = now.saturating_sub(window);
    let first_in = samples.partition_point(|s| s.at < start);
    let earliest = samples.first().map(|s| s.at).unwrap_or(now);
    if earliest > start + max_age {
        return Err(Unavailable::ShortHistory {
            covered: now.since(earliest),
        });
    }
    let mut sum = 0.0;
    let mut n = 0usize;
    for s in &samples[first_in..] {
        sum += s.value.ok_or(Unavailable::Gap)?;
        n += 1;
    }
    Ok(if n == 0 { latest_value } else { sum / n as f64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: &[(u64, Option<f64>)]) -> Series {
        let mut s = Series::default();
        for &(t, v) in points {
            s.push(Time::from_secs(t), v);
        }
        s
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn averages_over_the_window_not_one_sample() {
        // One spike of 100% among 30% readings does not make a sustained 70%.
        let s = series(&[
            (0, Some(0.3)),
            (60, Some(0.3)),
            (120, Some(1.0)),
            (180, Some(0.3)),
        ]);
        let m = window_mean(&s, Time::from_secs(180), Duration::from_secs(180), MIN).unwrap();
        assert!((m - 0.475).abs() < 1e-9, "{m}");
        // Zero window = latest sample.
        assert_eq!(
            window_mean(&s, Time::from_secs(180), Duration::ZERO, MIN),
            Ok(0.3)
        );
    }

    #[test]
    fn unavailable_states_are_explicit() {
        let now = Time::from_secs(600);
        let w = Duration::from_secs(180);
        assert_eq!(
            window_mean(&Series::default(), now, w, MIN),
            Err(Unavailable::NoSamples)
        );
        let stale = series(&[(400, Some(0.5))]);
        assert!(matches!(
            window_mean(&stale, now, w, MIN),
            Err(Unavailable::Stale { .. })
        ));
        let missing = series(&[(400, Some(0.5)), (590, None)]);
        assert_eq!(window_mean(&missing, now, w, MIN), Err(Unavailable::Missing));
        let gap = series(&[(400, Some(0.5)), (500, None), (590, Some(0.5))]);
        assert_eq!(window_mean(&gap, now, w, MIN), Err(Unavailable::Gap));
        let short = series(&[(550, Some(0.9)), (590, Some(0.9))]);
        assert!(matches!(
            window_mean(&short, now, w, MIN),
            Err(Unavailable::ShortHistory { .. })
        ));
        let nan = series(&[(400, Some(0.5)), (590, Some(f64::NAN))]);
        assert_eq!(window_mean(&nan, now, w, MIN), Err(Unavailable::Missing));
    }

    #[test]
    fn recorded_failures_are_gaps_with_their_cause() {
        use crate::snapshot::{Reading, Snapshot};
        let mut snap = Snapshot::default();
        let keep = Duration::from_secs(900);
        for t in (0..=300).step_by(15) {
            let r = Reading {
                cpu: Some(Ok(0.5)),
                memory: Some(Ok(0.4)),
                ..Reading::default()
            };
            snap.record(Time::from_secs(t), &r, keep);
        }
        assert_eq!(snap.metrics_error, None);
        let now = Time::from_secs(315);
        let broken = Reading {
            cpu: Some(Err("prometheus: connection refused".into())),
            memory: Some(Ok(f64::NAN)),
            ..Reading::default()
        };
        snap.record(now, &broken, keep);
        assert_eq!(
            snap.metrics_error.as_deref(),
            Some("cpu: prometheus: connection refused; memory: not a number (NaN)")
        );
        assert_eq!(
            window_mean(&snap.cpu, now, Duration::from_secs(180), MIN),
            Err(Unavailable::Missing)
        );
        assert_eq!(
            window_mean(&snap.memory, now, Duration::ZERO, MIN),
            Err(Unavailable::Missing)
        );
    }

    #[test]
    fn trim_keeps_the_window_start_covered() {
        let mut s = series(&[
            (0, Some(1.0)),
            (100, Some(1.0)),
            (200, Some(1.0)),
            (300, Some(1.0)),
        ]);
        s.trim(Time::from_secs(300), Duration::from_secs(150));
        assert_eq!(s.samples.first().unwrap().at, Time::from_secs(100));
    }
}
