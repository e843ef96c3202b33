//! Arrival-rate profiles: how many requests per second to send at each
//! moment of a run, and when the n-th request is due.
//!
//! Every shape (steady, ramp, spike, flash sale, sawtooth, a user's file) is
//! one representation: points `(t, rate)` joined by straight lines, the rate
//! held after the last point. A vertical step is two points at the same
//! time. The schedule of the open model is the inverse of the cumulative
//! count, so the n-th request is due when the integral of the rate reaches n.

use std::time::Duration;

/// The highest rate a profile may ask for: a bound, so a typo cannot point
/// a million requests a second at someone's cluster.
pub const MAX_RATE: f64 = 1_000_000.0;
/// The longest run: a load test that never ends is a mistake.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The most sawtooth periods one run may hold (each is two profile points).
pub const MAX_PERIODS: f64 = 100_000.0;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileError {
    #[error("duration must be more than 0 and at most 7 days, got {0:?}")]
    Duration(Duration),
    #[error("rate {0} at {1:.3}s is out of bounds (0..={MAX_RATE} requests/s)")]
    Rate(f64, f64),
    #[error("profile points go back in time at {0:.3}s")]
    Unordered(f64),
    #[error("the profile sends no request at all")]
    Empty,
    #[error("{0}")]
    Parse(String),
}

/// The shapes the command line offers; each becomes a [`Profile`].
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Steady {
        rate: f64,
    },
    /// From `from` to `to` linearly over `over`, then held at `to`.
    Ramp {
        from: f64,
        to: f64,
        over: Duration,
    },
    /// `base`, jumping to `peak` at `at` for `hold`, then back to `base`.
    Spike {
        base: f64,
        peak: f64,
        at: Duration,
        hold: Duration,
    },
    /// A flash sale: `base`, ramping within 5 s to `factor`×base at `at`,
    /// held for `hold`, then back down within 5 s.
    FlashSale {
        base: f64,
        factor: f64,
        at: Duration,
        hold: Duration,
    },
    /// From `low` climbing to `high` over each `period`, then dropping back.
    Sawtooth {
        low: f64,
        high: f64,
        period: Duration,
    },
    /// Points read from a file (see [`parse_points`]).
    Points(Vec<(f64, f64)>),
}

/// A rate over time, bounded by its duration.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    points: Vec<(f64, f64)>,
    /// Cumulative request count at each point.
    cumulative: Vec<f64>,
    duration: f64,
    total: u64,
}

impl Profile {
    pub fn new(shape: &Shape, duration: Duration) -> Result<Self, ProfileError> {
        if duration.is_zero() || duration > MAX_DURATION {
            return Err(ProfileError::Duration(duration));
        }
        let d = duration.as_secs_f64();
        // `--at` and `--for` as given: their sum may not even be a duration.
        let end_of = |at: Duration, hold: Duration| {
            at.checked_add(hold)
                .filter(|end| *end <= MAX_DURATION)
                .ok_or_else(|| ProfileError::Parse("--at plus --for is longer than any run can be".into()))
        };
        let points = match *shape {
            Shape::Steady { rate } => vec![(0.0, rate)],
            Shape::Ramp { from, to, over } => vec![(0.0, from), (over.as_secs_f64(), to)],
            Shape::Spike { base, peak, at, hold } => {
                let (a, b) = (at.as_secs_f64(), end_of(at, hold)?.as_secs_f64());
                vec![(0.0, base), (a, base), (a, peak), (b, peak), (b, base)]
            }
            Shape::FlashSale {
                base,
                factor,
                at,
                hold,
            } => {
                let peak = base * factor;
                let (a, b) = (at.as_secs_f64(), end_of(at, hold)?.as_secs_f64());
                let edge = 5.0_f64.min(hold.as_secs_f64() / 2.0);
                vec![
                    (0.0, base),
                    (a, base),
                    (a + edge, peak),
                    (b - edge, peak),
                    (b, base),
                ]
            }
            Shape::Sawtooth { low, high, period } => {
                let p = period.as_secs_f64();
                if p <= 0.0 {
                    return Err(ProfileError::Parse("sawtooth period must be more than 0".into()));
                }
                if d / p > MAX_PERIODS {
                    return Err(ProfileError::Parse(format!(
                        "sawtooth period {} is too short: at most {MAX_PERIODS} periods in a run of {}",
                        humantime::format_duration(period),
                        humantime::format_duration(duration)
                    )));
                }
                let mut pts = Vec::new();
                let mut t = 0.0;
                while t < d {
                    pts.push((t, low));
                    pts.push((t + p, high));
                    t += p;
                }
                pts
            }
            Shape::Points(ref pts) => pts.clone(),
        };
        Self::from_points(points, d)
    }

    fn from_points(points: Vec<(f64, f64)>, duration: f64) -> Result<Self, ProfileError> {
        if points.is_empty() {
            return Err(ProfileError::Empty);
        }
        let mut prev = 0.0;
        for &(t, r) in &points {
            if !(t.is_finite() && t >= prev) {
                return Err(ProfileError::Unordered(t));
            }
            if !(r.is_finite() && (0.0..=MAX_RATE).contains(&r)) {
                return Err(ProfileError::Rate(r, t));
            }
            prev = t;
        }
        // A profile starting later than 0 holds its first rate until then.
        let mut points = points;
        if points[0].0 > 0.0 {
            points.insert(0, (0.0, points[0].1));
        }
        let mut cumulative = vec![0.0];
        for w in points.windows(2) {
            let (t0, r0) = w[0];
            let (t1, r1) = w[1];
            let last = cumulative[cumulative.len() - 1];
            cumulative.push(last + (r0 + r1) / 2.0 * (t1 - t0));
        }
        let mut profile = Profile {
            points,
            cumulative,
            duration,
            total: 0,
        };
        // Requests due strictly before the end: the n-th is due when the
        // count reaches n - 1, so the first goes at t = 0.
        profile.total = (profile.count_until(duration) - 1e-9).ceil().max(0.0) as u64;
        if profile.total == 0 {
            return Err(ProfileError::Empty);
        }
        Ok(profile)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }

    /// How many requests the whole run sends.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The rate the profile asks for at `t` seconds.
    pub fn rate_at(&self, t: f64) -> f64 {
        let i = self.points.partition_point(|p| p.0 <= t);
        if i == 0 {
            return self.points[0].1;
        }
        let (t0, r0) = self.points[i - 1];
        match self.points.get(i) {
            Some(&(t1, r1)) if t1 > t0 => r0 + (r1 - r0) * (t - t0) / (t1 - t0),
            _ => r0,
        }
    }

    /// The expected number of requests sent by `t` seconds.
    pub fn count_until(&self, t: f64) -> f64 {
        let i = self.points.partition_point(|p| p.0 <= t).max(1);
        let (t0, r0) = self.points[i - 1];
        let r = self.rate_at(t);
        self.cumulative[i - 1] + (r0 + r) / 2.0 * (t - t0)
    }

    /// When request `n` (0-based) is due, in seconds from the start;
    /// `None` when the run has sent all of its requests.
    pub fn due(&self, n: u64) -> Option<f64> {
        if n >= self.total {
            return None;
        }
        let target = n as f64;
        // The last point whose cumulative count is at most the target.
        let i = self.cumulative.partition_point(|&c| c <= target).max(1) - 1;
        let (t0, r0) = self.points[i];
        let left = target - self.cumulative[i];
        let t = match self.points.get(i + 1) {
            Some(&(t1, r1)) if t1 > t0 => {
                // Solve r0·x + (r1 − r0)/(2·(t1 − t0))·x² = left for x.
                let a = (r1 - r0) / (2.0 * (t1 - t0));
                if a.abs() < 1e-12 {
                    t0 + left / r0
                } else {
                    let disc = (r0 * r0 + 4.0 * a * left).max(0.0);
                    t0 + (disc.sqrt() - r0) / (2.0 * a)
                }
            }
            // Past the last point, or a vertical step: the rate is held.
            _ if r0 > 0.0 => t0 + left / r0,
            _ => return None,
        };
        (t < self.duration).then_some(t)
    }
}

/// Parses a profile file: one `time,rate` pair per line (time as seconds or
/// a duration like `90s`, `5m`), `#` comments and blank lines ignored, times
/// in order. Errors name the line.
pub fn parse_points(text: &str) -> Result<Vec<(f64, f64)>, ProfileError> {
    let mut points = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |what: &str| ProfileError::Parse(format!("line {}: {what}: `{line}`", i + 1));
        let (t, r) = line
            .split_once([',', ' ', '\t'])
            .ok_or_else(|| err("expected `time,rate`"))?;
        let t = parse_seconds(t.trim()).map_err(|e| err(&e))?;
        let r: f64 = r.trim().parse().map_err(|_| err("rate is not a number"))?;
        points.push((t, r));
    }
    Ok(points)
}

/// Seconds as a plain number (`90`, `1.5`) or a duration (`90s`, `5m`).
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    if let Ok(v) = s.parse::<f64>() {
        return Ok(v);
    }
    humantime::parse_duration(s)
        .map(|d| d.as_secs_f64())
        .map_err(|e| format!("bad time `{s}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn steady_spaces_requests_evenly() {
        let p = Profile::new(&Shape::Steady { rate: 1000.0 }, secs(10)).unwrap();
        assert_eq!(p.total(), 10_000);
        assert_eq!(p.due(0), Some(0.0));
        assert!((p.due(500).unwrap() - 0.5).abs() < 1e-9);
        assert!((p.due(9_999).unwrap() - 9.999).abs() < 1e-9);
        assert_eq!(p.due(10_000), None);
    }

    #[test]
    fn ramp_sends_the_area_under_the_line() {
        // 0 → 100 rps over 10 s, then held at 100 for 10 s: 500 + 1000.
        let shape = Shape::Ramp {
            from: 0.0,
            to: 100.0,
            over: secs(10),
        };
        let p = Profile::new(&shape, secs(20)).unwrap();
        assert_eq!(p.total(), 1500);
        // Half of the ramp's 500 requests are due at t = 10/√2.
        assert!((p.due(250).unwrap() - 10.0 / 2f64.sqrt()).abs() < 1e-6);
        assert!((p.rate_at(5.0) - 50.0).abs() < 1e-9);
        assert!((p.due(500).unwrap() - 10.0).abs() < 1e-6);
    }

    #[test]
    fn spike_and_flash_sale_step_up_and_back() {
        let spike = Shape::Spike {
            base: 10.0,
            peak: 100.0,
            at: secs(10),
            hold: secs(5),
        };
        let p = Profile::new(&spike, secs(30)).unwrap();
        assert_eq!(p.rate_at(9.9), 10.0);
        assert_eq!(p.rate_at(10.0), 100.0);
        assert_eq!(p.rate_at(15.0), 10.0);
        assert_eq!(p.total(), 25 * 10 + 5 * 100);

        let sale = Shape::FlashSale {
            base: 50.0,
            factor: 10.0,
            at: secs(60),
            hold: secs(60),
        };
        let p = Profile::new(&sale, secs(180)).unwrap();
        assert_eq!(p.rate_at(30.0), 50.0);
        assert_eq!(p.rate_at(90.0), 500.0);
        assert_eq!(p.rate_at(150.0), 50.0);
    }

    #[test]
    fn absurd_spike_times_and_sawtooth_periods_are_errors_not_panics() {
        let huge = Duration::from_secs(u64::MAX / 2);
        for shape in [
            Shape::Spike {
                base: 1.0,
                peak: 2.0,
                at: huge,
                hold: huge,
            },
            Shape::FlashSale {
                base: 1.0,
                factor: 2.0,
                at: huge,
                hold: huge,
            },
        ] {
            let err = Profile::new(&shape, secs(60)).unwrap_err().to_string();
            assert!(err.contains("--at plus --for"), "{err}");
        }
        let saw = Shape::Sawtooth {
            low: 1.0,
            high: 2.0,
            period: Duration::from_nanos(1),
        };
        let err = Profile::new(&saw, secs(60)).unwrap_err().to_string();
        assert!(err.contains("too short"), "{err}");
    }

    #[test]
    fn sawtooth_climbs_and_drops_each_period() {
        let saw = Shape::Sawtooth {
            low: 0.0,
            high: 100.0,
            period: secs(10),
        };
        let p = Profile::new(&saw, secs(30)).unwrap();
        assert!((p.rate_at(5.0) - 50.0).abs() < 1e-9);
        assert!((p.rate_at(15.0) - 50.0).abs() < 1e-9);
        assert_eq!(p.rate_at(10.0), 0.0);
        assert_eq!(p.total(), 1500);
    }

    #[test]
    fn profile_file_points_and_errors() {
        let pts = parse_points("# warm up\n0,10\n1m, 100\n90s 100\n\n").unwrap();
        assert_eq!(pts, vec![(0.0, 10.0), (60.0, 100.0), (90.0, 100.0)]);
        let err = parse_points("0,10\n5,lots\n").unwrap_err();
        assert_eq!(err.to_string(), "line 2: rate is not a number: `5,lots`");
        let back = Profile::new(&Shape::Points(vec![(10.0, 1.0), (5.0, 1.0)]), secs(20));
        assert_eq!(back, Err(ProfileError::Unordered(5.0)));
    }

    #[test]
    fn unbounded_runs_are_refused() {
        let steady = |rate| Shape::Steady { rate };
        assert!(matches!(
            Profile::new(&steady(10.0), Duration::ZERO),
            Err(ProfileError::Duration(_))
        ));
        assert!(matches!(
            Profile::new(&steady(10.0), secs(8 * 24 * 3600)),
            Err(ProfileError::Duration(_))
        ));
        assert!(matches!(
            Profile::new(&steady(2e6), secs(1)),
            Err(ProfileError::Rate(..))
        ));
        assert!(matches!(
            Profile::new(&steady(f64::INFINITY), secs(1)),
            Err(ProfileError::Rate(..))
        ));
        assert_eq!(Profile::new(&steady(0.0), secs(10)), Err(ProfileError::Empty));
    }

    proptest::proptest! {
        /// Due times never go back, stay inside the run, and the number due
        /// by any moment matches the integral of the rate.
        #[test]
        fn due_times_follow_the_integral(
            rates in proptest::collection::vec(0.0f64..500.0, 1..6),
            step in 1u64..20,
        ) {
            let points: Vec<_> =
                rates.iter().enumerate().map(|(i, &r)| ((i as u64 * step) as f64, r)).collect();
            let duration = secs(step * rates.len() as u64 + 5);
            let Ok(p) = Profile::new(&Shape::Points(points), duration) else { return Ok(()) };
            let mut last = 0.0;
            for n in 0..p.total() {
                let t = p.due(n).expect("due inside the run");
                proptest::prop_assert!(t >= last - 1e-9 && t < duration.as_secs_f64());
                proptest::prop_assert!((p.count_until(t) - n as f64).abs() < 1e-6);
                last = t;
            }
        }
    }
}
