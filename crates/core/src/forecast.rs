//! Predictive pre-scaling's memory and its one forecast: what the
//! workloads asked for, minute by minute, and how much more they asked for
//! over the next few minutes one day and one week ago. Traffic with a daily
//! or weekly shape rises again at the same hour; the rise seen then, added
//! to today's level, is what nodes launched now must be ready for.

use crate::model::Pod;
use crate::quantity::Resources;
use crate::time::Time;
use serde::Serialize;
use std::collections::VecDeque;
use std::time::Duration;

const MINUTE_MS: u64 = 60_000;
const DAY: u64 = 24 * 60;
/// The seasons looked at, in minutes: a day and a week.
const PERIODS: [u64; 2] = [DAY, 7 * DAY];
/// Minutes before the season's instant whose most is its level.
const BASE_MINUTES: u64 = 5;
/// History kept: a week and a day, so the weekly season has its lead too.
const KEEP_MINUTES: u64 = 8 * DAY;

/// The CPU and memory requested by workload pods (pending or running, not
/// DaemonSet or mirror pods), one reading per minute, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DemandHistory {
    minutes: VecDeque<(u64, Resources)>,
}

impl DemandHistory {
    /// Record what `pods` request at `now`: the largest reading of a minute
    /// counts (a burst within it is what nodes must hold).
    pub fn record(&mut self, now: Time, pods: &[Pod]) {
        let requested = requested(pods);
        let minute = now.as_millis() / MINUTE_MS;
        match self.minutes.back_mut() {
            Some((m, r)) if *m == minute => *r = r.max_each(&requested),
            Some((m, _)) if *m > minute => return,
            _ => self.minutes.push_back((minute, requested)),
        }
        while self
            .minutes
            .front()
            .is_some_and(|(m, _)| minute - m > KEEP_MINUTES)
        {
            self.minutes.pop_front();
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
}
