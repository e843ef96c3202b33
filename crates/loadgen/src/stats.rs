//! Latency and outcome recording: HDR histograms per operation and per
//! second of the run, errors counted by kind.
//!
//! Each worker records into its own [`Recorder`] and hands a second's worth
//! to the shared [`Stats`] when the second is over, so the hot path takes no
//! lock. Seconds older than a few seconds are reduced to their percentiles,
//! which keeps a long run's memory flat.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds with 3 significant digits.
const SIGFIGS: u8 = 3;
/// A worker may hand in a second this late; older seconds are reduced.
const OPEN_SECONDS: u64 = 5;

fn histogram() -> Histogram<u64> {
    Histogram::new(SIGFIGS).expect("3 significant digits is a valid histogram")
}

/// Why a request failed, as a short stable label (`refused`, `timeout`,
/// `status 503`, ...): the report counts errors by this.
pub type ErrorKind = String;

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// One second of the run: what completed in it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    pub second: u64,
    /// Requests that completed successfully in this second.
    pub ok: u64,
    pub errors: u64,
    /// The rate the profile asked for at the start of this second.
    pub target_rate: f64,
    pub latency: Percentiles,
}

#[derive(Debug)]
enum Slot {
    Open {
        ok: u64,
        errors: u64,
        hist: Histogram<u64>,
    },
    Closed(Second),
}

#[derive(Debug, Default)]
struct Shared {
    seconds: Vec<Slot>,
    ops: BTreeMap<&'static str, Histogram<u64>>,
    errors: BTreeMap<ErrorKind, u64>,
}

/// The run's shared record; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    shared: Arc<Mutex<Shared>>,
}

/// What a worker gathered during one second.
#[derive(Debug, Default)]
struct Pending {
    ok: u64,
    errors: u64,
    ops: BTreeMap<&'static str, Histogram<u64>>,
    kinds: BTreeMap<ErrorKind, u64>,
}

/// A worker's own recorder; hands its data to [`Stats`] once per second and
/// when dropped.
#[derive(Debug)]
pub struct Recorder {
    stats: Stats,
    start: Instant,
    second: u64,
    pending: Pending,
}

impl Stats {
    pub fn recorder(&self, start: Instant) -> Recorder {
        Recorder {
            stats: self.clone(),
            start,
            second: 0,
            pending: Pending::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A worker that panicked mid-record leaves counts, not broken state.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn absorb(&self, second: u64, pending: Pending) {
        let mut shared = self.lock();
        let s = second as usize;
        while shared.seconds.len() <= s {
            shared.seconds.push(Slot::Open {
                ok: 0,
                errors: 0,
                hist: histogram(),
            });
        }
        let Shared { seconds, ops, errors } = &mut *shared;
        for (op, h) in &pending.ops {
            let total = ops.entry(op).or_insert_with(histogram);
            let _ = total.add(h);
        }
        for (kind, n) in pending.kinds {
            *errors.entry(kind).or_default() += n;
        }
        match &mut seconds[s] {
            Slot::Open { ok, errors, hist } => {
                *ok += pending.ok;
                *errors += pending.errors;
                for h in pending.ops.values() {
                    let _ = hist.add(h);
                }
            }
            // Too late for the second's percentiles; its counts still add up.
            Slot::Closed(sec) => {
                sec.ok += pending.ok;
                sec.errors += pending.errors;
            }
        }
    }

    /// Reduces seconds before `now_second - OPEN_SECONDS` to percentiles,
    /// stamping each with the rate asked for; returns the newest closed one.
    pub fn close_old(&self, now_second: u64, target: impl Fn(u64) -> f64) -> Option<Second> {
        let mut shared = self.lock();
        let upto = now_second.saturating_sub(OPEN_SECONDS) as usize;
        let mut newest = None;
        for (i, slot) in shared.seconds.iter_mut().enumerate().take(upto) {
            if let Slot::Open { ok, errors, hist } = slot {
                *slot = Slot::Closed(Second {
                    second: i as u64,
                    ok: *ok,
                    errors: *errors,
                    target_rate: target(i as u64),
                    latency: Percentiles::of(hist),
                });
            }
            if let Slot::Closed(sec) = slot {
                newest = Some(sec.clone());
            }
        }
        newest
    }

    /// A snapshot of the last `n` seconds before `now_second` (counts and
    /// percentiles), for the live progress line.
    pub fn recent(&self, now_second: u64, n: u64) -> (u64, u64, Histogram<u64>) {
        let shared = self.lock();
        let mut hist = histogram();
        let (mut ok, mut errors) = (0, 0);
        let from = now_second.saturating_sub(n) as usize;
        for slot in shared.seconds.iter().skip(from).take(n as usize) {
            if let Slot::Open {
                ok: o,
                errors: e,
                hist: h,
            } = slot
            {
                ok += o;
                errors += e;
                let _ = hist.add(h);
            }
        }
        (ok, errors, hist)
    }

    /// The whole record: every second closed, totals per operation.
    pub fn finish(&self, target: impl Fn(u64) -> f64) -> Record {
        let len = self.lock().seconds.len() as u64;
        self.close_old(len + OPEN_SECONDS, &target);
        let shared = self.lock();
        let timeline = shared
            .seconds
            .iter()
            .filter_map(|s| match s {
                Slot::Closed(sec) => Some(sec.clone()),
                Slot::Open { .. } => None,
            })
            .collect();
        let mut all = histogram();
        let mut ops = BTreeMap::new();
        for (op, h) in &shared.ops {
            let _ = all.add(h);
            ops.insert(
                op.to_string(),
                OpTotals {
                    ok: h.len(),
                    latency: Percentiles::of(h),
                },
            );
        }
        Record {
            ok: all.len(),
            latency: Percentiles::of(&all),
            ops,
            errors: shared.errors.clone(),
            timeline,
        }
    }
}

impl Recorder {
    /// Records one completed request: its operation, when it completed and
    /// how long it took (from its intended send time in the open model).
    pub fn record(
        &mut self,
        op: &'static str,
        done: Instant,
        latency: Duration,
        outcome: Result<(), ErrorKind>,
    ) {
        let second = done.saturating_duration_since(self.start).as_secs();
        if second != self.second {
            self.flush();
            self.second = second;
        }
        match outcome {
            Ok(()) => {
                self.pending.ok += 1;
                let us = (latency.as_micros() as u64).max(1);
                let h = self.pending.ops.entry(op).or_insert_with(histogram);
                let _ = h.record(us);
            }
            Err(kind) => {
                self.pending.errors += 1;
                *self.pending.kinds.entry(kind).or_default() += 1;
            }
        }
    }

    /// Hands what this worker gathered to the shared record, e.g. before it
    /// sleeps past the end of a second.
    pub fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        if pending.ok + pending.errors > 0 {
            self.stats.absorb(self.second, pending);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Totals of one operation.
#[derive(Debug, Clone, Serialize)]
pub struct OpTotals {
    pub ok: u64,
    pub latency: Percentiles,
}

/// Everything recorded during a run.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Successful requests.
    pub ok: u64,
    /// Latency of successful requests.
    pub latency: Percentiles,
    pub ops: BTreeMap<String, OpTotals>,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub timeline: Vec<Second>,
}

impl Record {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_records_add_up_per_second_and_per_op() {
        let stats = Stats::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut a = stats.recorder(start);
        let mut b = stats.recorder(start);
        for i in 0..100 {
            a.record("read", at(i * 10), Duration::from_millis(2), Ok(()));
            b.record("write", at(i * 20), Duration::from_millis(10), Ok(()));
        }
        b.record("write", at(2500), Duration::from_secs(5), Err("timeout".into()));
        b.record(
            "write",
            at(2600),
            Duration::from_millis(1),
            Err("status 503".into()),
        );
        drop((a, b));

        let rec = stats.finish(|_| 100.0);
        assert_eq!(rec.ok, 200);
        assert_eq!(rec.ops["read"].ok, 100);
        assert_eq!(rec.ops["write"].ok, 100);
        assert!((rec.ops["read"].latency.p99 - 2.0).abs() < 0.01);
        assert!((rec.ops["write"].latency.p50 - 10.0).abs() < 0.01);
        assert_eq!(rec.errors["timeout"], 1);
        assert_eq!(rec.errors["status 503"], 1);
        // Completions land in the second they completed in.
        let per_second: Vec<_> = rec.timeline.iter().map(|s| (s.ok, s.errors)).collect();
        assert_eq!(per_second, vec![(150, 0), (50, 0), (0, 2)]);
        assert_eq!(rec.timeline[0].target_rate, 100.0);
    }

    #[test]
    fn a_late_hand_in_still_counts() {
        let stats = Stats::default();
        let start = Instant::now();
        let mut late = stats.recorder(start);
        late.record("get", start, Duration::from_millis(1), Ok(()));
        let mut w = stats.recorder(start);
        w.record(
            "get",
            start + Duration::from_secs(20),
            Duration::from_millis(1),
            Ok(()),
        );
        w.flush();
        let newest = stats.close_old(20, |_| 1.0).expect("seconds 0..15 closed");
        assert_eq!((newest.second, newest.ok), (14, 0));
        drop(late);
        let rec = stats.finish(|_| 1.0);
        assert_eq!(rec.timeline[0].ok, 1);
        assert_eq!(rec.ok, 2);
    }
}
