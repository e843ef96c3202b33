//! Predictive pre-scaling's memory and its one forecast: what the
//! workloads asked for, minute by minute, and how much more they asked for
//! over the next few minutes one day and one week ago. Traffic with a daily
//! or weekly shape rises again at the same hour; the rise seen then, added
//! to today's level, is what nodes launched now must be ready for.

use crate::model::Pod;
use crate::quantity::Resources;
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

const MINUTE_MS: u64 = 60_000;
const DAY: u64 = 24 * 60;
/// The seasons looked at, in minutes: a day and a week.
const PERIODS: [u64; 2] = [DAY, 7 * DAY];
/// Minutes before the season's instant whose most is its level.
const BASE_MINUTES: u64 = 5;
/// History kept: a week and a day, so the weekly season has its lead too.
pub const KEEP_MINUTES: u64 = 8 * DAY;
/// Minutes per step of the stored history (see [`StoredDemand`]).
const STORED_STEP: u64 = 5;
const MIB: u64 = 1 << 20;

/// The history as the state store keeps it across restarts: the most of
/// each five minutes, equal steps run together. Eight days of it stay well
/// under the size limits of a ConfigMap (shared with the other values) and
/// of a DynamoDB item (400 KB): at worst 2,304 runs of about 30 bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredDemand {
    /// Minutes per step.
    pub step_minutes: u64,
    /// `[first step (minute / step_minutes), steps, CPU millicores, memory
    /// MiB (rounded up), pods]`, oldest first.
    pub runs: Vec<[u64; 5]>,
}

impl StoredDemand {
    /// Minute by minute again (each minute of a step reads the step's most),
    /// or what is wrong with it.
    pub fn minutes(&self) -> Result<Vec<(u64, Resources)>, String> {
        let step = self.step_minutes;
        if !(1..=60).contains(&step) {
            return Err(format!("step_minutes is {step}, not 1 to 60"));
        }
        let mut out = Vec::new();
        let mut next = 0;
        for (i, &[first, steps, cpu_milli, memory_mib, pods]) in self.runs.iter().enumerate() {
            if first < next || steps == 0 {
                return Err(format!("run {i} overlaps the one before it or is empty"));
            }
            next = first.saturating_add(steps);
            if (out.len() as u64).saturating_add(steps.saturating_mul(step)) > KEEP_MINUTES + step {
                return Err(format!("more than {KEEP_MINUTES} minutes"));
            }
            let r = Resources {
                cpu_milli,
                memory_bytes: memory_mib.saturating_mul(MIB),
                pods,
            };
            let (Some(from), Some(to)) = (first.checked_mul(step), next.checked_mul(step)) else {
                return Err(format!("run {i} starts past the end of time"));
            };
            out.extend((from..to).map(|m| (m, r)));
        }
        Ok(out)
    }
}

/// The CPU and memory requested by workload pods (pending or running, not
/// DaemonSet or mirror pods), one reading per minute, oldest first.
///
/// Shared on clone (every decision with placeholders clones the snapshot,
/// and eight days of minutes would be copied each time); copied only when
/// written while a clone still holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DemandHistory {
    minutes: Arc<VecDeque<(u64, Resources)>>,
}

impl DemandHistory {
    /// Record what `pods` request at `now`: the largest reading of a minute
    /// counts (a burst within it is what nodes must hold).
    pub fn record(&mut self, now: Time, pods: &[Pod]) {
        let requested = requested(pods);
        let minute = now.as_millis() / MINUTE_MS;
        let minutes = Arc::make_mut(&mut self.minutes);
        match minutes.back_mut() {
            Some((m, r)) if *m == minute => *r = r.max_each(&requested),
            Some((m, _)) if *m > minute => return,
            _ => minutes.push_back((minute, requested)),
        }
        while minutes.front().is_some_and(|(m, _)| minute - m > KEEP_MINUTES) {
            minutes.pop_front();
        }
    }

    /// The reading of `minute`, or of the latest minute before it within
    /// five minutes (a missed minute is not zero demand).
    fn at(&self, minute: u64) -> Option<Resources> {
        let i = self.minutes.partition_point(|(m, _)| *m <= minute);
        let (m, r) = self.minutes.get(i.checked_sub(1)?)?;
        (minute - m <= 5).then_some(*r)
    }

    /// How far demand is expected to rise above its level now within
    /// `lead`: the largest rise over the same stretch one day or one week
    /// ago (per resource). `None` while no season has history yet.
    pub fn expected_rise(&self, now: Time, lead: Duration) -> Option<Resources> {
        let minute = now.as_millis() / MINUTE_MS;
        let lead = lead.as_secs().div_ceil(60);
        let mut rise: Option<Resources> = None;
        for period in PERIODS {
            let Some(then) = minute.checked_sub(period) else {
                continue;
            };
            // The level then: the most of its last few minutes, so
            // minute-to-minute noise is not taken for a rise.
            let Some(base) = (then.saturating_sub(BASE_MINUTES)..=then)
                .filter_map(|m| self.at(m))
                .reduce(|a, b| a.max_each(&b))
            else {
                continue;
            };
            let peak = (1..=lead)
                .filter_map(|h| self.at(then + h))
                .fold(base, |a, b| a.max_each(&b));
            let this = peak.saturating_sub(&base);
            rise = Some(rise.map_or(this, |r| r.max_each(&this)));
        }
        rise
    }

    /// The history in its stored form.
    pub fn to_stored(&self) -> StoredDemand {
        let mut steps: BTreeMap<u64, Resources> = BTreeMap::new();
        for (m, r) in self.minutes.iter() {
            let step = steps.entry(m / STORED_STEP).or_insert(*r);
            *step = step.max_each(r);
        }
        let mut runs: Vec<[u64; 5]> = Vec::new();
        for (step, r) in steps {
            let row = [r.cpu_milli, r.memory_bytes.div_ceil(MIB), r.pods];
            match runs.last_mut() {
                Some(run) if run[0] + run[1] == step && run[2..] == row => run[1] += 1,
                _ => runs.push([step, 1, row[0], row[1], row[2]]),
            }
        }
        StoredDemand {
            step_minutes: STORED_STEP,
            runs,
        }
    }

    /// Add what is known of minutes not held (a restart's stored history,
    /// another leader's, Prometheus's): a minute held already is not
    /// replaced, and what is older than the history keeps is dropped.
    pub fn fill(&mut self, known: impl IntoIterator<Item = (u64, Resources)>) {
        let mut all: BTreeMap<u64, Resources> = BTreeMap::new();
        for (m, r) in known {
            let reading = all.entry(m).or_insert(r);
            *reading = reading.max_each(&r);
        }
        all.extend(self.minutes.iter().copied());
        let newest = all.last_key_value().map_or(0, |(m, _)| *m);
        self.minutes = Arc::new(
            all.into_iter()
                .filter(|(m, _)| newest - m <= KEEP_MINUTES)
                .collect(),
        );
    }

    /// The first minute held (minutes since the Unix epoch).
    pub fn first_minute(&self) -> Option<u64> {
        self.minutes.front().map(|(m, _)| *m)
    }

    pub fn len(&self) -> usize {
        self.minutes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty()
    }
}

/// What workload pods (pending or running) request in all.
pub fn requested(pods: &[Pod]) -> Resources {
    pods.iter()
        .filter(|p| !p.is_terminal() && !p.is_node_bound())
        .fold(Resources::ZERO, |sum, p| sum + p.requests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{GI, running};

    fn at_minute(m: u64) -> Time {
        Time::from_millis(m * MINUTE_MS)
    }

    /// `cpu` millicores of one running pod.
    fn pods(cpu: u64) -> Vec<Pod> {
        vec![running("p", "n", cpu, GI)]
    }

    #[test]
    fn yesterdays_rise_over_the_lead_is_expected_again() {
        let mut h = DemandHistory::default();
        // Yesterday: 1 CPU until 09:00, then 3 CPUs from 09:02.
        for m in 0..DAY + 600 {
            let day_minute = m % DAY;
            let cpu = if (542..600).contains(&day_minute) {
                3000
            } else {
                1000
            };
            if m < DAY + 538 {
                h.record(at_minute(m), &pods(cpu));
            }
        }
        // Today 08:58: a 5-minute lead sees 09:00..09:03 yesterday.
        let rise = h
            .expected_rise(at_minute(DAY + 538), Duration::from_secs(300))
            .unwrap();
        assert_eq!(rise.cpu_milli, 2000);
        // Far from the rise: nothing expected.
        let calm = h
            .expected_rise(at_minute(DAY + 300), Duration::from_secs(300))
            .unwrap();
        assert_eq!(calm.cpu_milli, 0);
    }

    #[test]
    fn no_history_no_forecast_and_old_minutes_are_dropped() {
        let mut h = DemandHistory::default();
        assert_eq!(h.expected_rise(at_minute(10), Duration::from_secs(60)), None);
        for m in (0..10 * DAY).step_by(30) {
            h.record(at_minute(m), &pods(500));
        }
        assert!(h.len() as u64 <= KEEP_MINUTES / 30 + 2, "{}", h.len());
        // Two readings in one minute: the larger counts; an older one is ignored.
        h.record(at_minute(10 * DAY), &pods(500));
        h.record(at_minute(10 * DAY), &pods(900));
        h.record(at_minute(10 * DAY - 1), &pods(5000));
        assert_eq!(h.at(10 * DAY).unwrap().cpu_milli, 900);
    }

    #[test]
    fn the_stored_form_keeps_the_most_of_each_step_and_fills_a_restart() {
        let mut h = DemandHistory::default();
        // Two days: 1 CPU, and 4 CPUs in minute 7 of every hour.
        for m in 0..2 * DAY {
            h.record(at_minute(m), &pods(if m % 60 == 7 { 4000 } else { 1000 }));
        }
        let stored = h.to_stored();
        // Two runs an hour (the busy step and the rest), not one per minute.
        assert_eq!(
            stored.runs.len() as u64,
            2 * 24 * 2 + 1,
            "{:?}",
            &stored.runs[..4]
        );
        let json = serde_json::to_string(&stored).unwrap();
        assert!(json.len() < 4_000, "{}", json.len());
        let back: StoredDemand = serde_json::from_str(&json).unwrap();
        let minutes = back.minutes().unwrap();
        assert_eq!(minutes.len() as u64, 2 * DAY);
        // Minutes 5..10 of an hour read the busy minute's 4 CPUs; memory is
        // rounded up to whole MiB, never down.
        let at = |m: u64| minutes.iter().find(|(x, _)| *x == m).unwrap().1;
        assert_eq!(at(DAY + 9).cpu_milli, 4000);
        assert_eq!(at(DAY + 10).cpu_milli, 1000);
        assert_eq!(at(DAY + 10).memory_bytes, GI);

        // A restart an hour later: the new process has one minute, the
        // stored history fills what came before it.
        let mut restarted = DemandHistory::default();
        restarted.record(at_minute(2 * DAY + 60), &pods(2000));
        restarted.fill(minutes);
        assert_eq!(restarted.len() as u64, 2 * DAY + 1);
        assert_eq!(restarted.at(2 * DAY + 60).unwrap().cpu_milli, 2000);
        // Yesterday's busy minute is foreseen again.
        let rise = restarted
            .expected_rise(at_minute(2 * DAY + 63), Duration::from_secs(180))
            .unwrap();
        assert_eq!(rise.cpu_milli, 3000);
    }

    #[test]
    fn filling_never_replaces_a_held_minute_and_keeps_eight_days() {
        let mut h = DemandHistory::default();
        h.record(at_minute(20 * DAY - 100), &pods(800));
        h.record(at_minute(20 * DAY), &pods(700));
        let known = (0..20 * DAY + 1).map(|m| {
            (
                m,
                Resources {
                    cpu_milli: 1,
                    ..Resources::ZERO
                },
            )
        });
        h.fill(known);
        assert_eq!(h.at(20 * DAY).unwrap().cpu_milli, 700);
        assert_eq!(h.at(20 * DAY - 100).unwrap().cpu_milli, 800);
        // The gap between the two held minutes is filled.
        assert_eq!(h.at(20 * DAY - 50).unwrap().cpu_milli, 1);
        assert_eq!(h.len() as u64, KEEP_MINUTES + 1);
        assert_eq!(h.first_minute(), Some(20 * DAY - KEEP_MINUTES));
    }

    #[test]
    fn a_damaged_stored_history_is_refused_with_what_is_wrong() {
        let bad =
            |step_minutes, runs: Vec<[u64; 5]>| StoredDemand { step_minutes, runs }.minutes().unwrap_err();
        assert!(bad(0, vec![]).contains("step_minutes is 0"));
        assert!(bad(5, vec![[10, 2, 1, 1, 1], [11, 1, 1, 1, 1]]).contains("run 1 overlaps"));
        assert!(bad(5, vec![[10, 0, 1, 1, 1]]).contains("run 0"));
        assert!(bad(5, vec![[0, u64::MAX, 1, 1, 1]]).contains("more than"));
        assert!(bad(5, vec![[u64::MAX / 2, 1, 1, 1, 1]]).contains("end of time"));
    }
}
