//! The status page's memory of the last day: one sample a minute of the
//! nodes per pool, the pods waiting and the cluster's CPU, and what they
//! add up to today in dollars. Kept in memory (a restart starts it again;
//! the scale events come from the state store).

use crate::status::Status;
use k3scale_core::Time;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// How far back the ring reaches.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);
const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub at: Time,
    /// Nodes per pool (registered Node objects, as `/metrics` counts them).
    pub nodes: BTreeMap<String, u32>,
    /// Pods the scheduler says do not fit.
    pub unschedulable: u32,
    /// Cluster CPU utilization (0..1), when the metrics source gave one.
    pub cpu: Option<f64>,
    /// Price per hour of one node of each pool.
    pub prices: BTreeMap<String, f64>,
}

impl Sample {
    /// What `status` says now.
    pub fn of(status: &Status, at: Time) -> Sample {
        Sample {
            at,
            nodes: status.pools.iter().map(|p| (p.name.clone(), p.nodes)).collect(),
            unschedulable: u32::try_from(status.unschedulable_pods).unwrap_or(u32::MAX),
            cpu: status.cluster_cpu,
            prices: status
                .pools
                .iter()
                .map(|p| (p.name.clone(), p.price_per_hour))
                .collect(),
        }
    }

    pub fn dollars_per_hour(&self) -> f64 {
        self.nodes
            .iter()
            .map(|(pool, n)| f64::from(*n) * self.prices.get(pool).copied().unwrap_or(0.0))
            .sum()
    }

    pub fn total_nodes(&self) -> u32 {
        self.nodes.values().sum()
    }
}

/// Today (UTC) in dollars, from the samples of this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Today {
    /// Unix milliseconds of the first sample today.
    pub since: u64,
    pub dollars_per_hour: f64,
    /// Spent since `since`: each sample's price until the next one.
    pub spent: f64,
    /// What a fixed fleet sized for today's peak of each pool would have
    /// cost over the same time.
    pub fixed_fleet: f64,
    /// Today's peak nodes, all pools.
    pub peak_nodes: u32,
}

impl Today {
    pub fn saved(&self) -> f64 {
        self.fixed_fleet - self.spent
    }
}

#[derive(Debug, Clone, Default)]
pub struct Samples {
    ring: VecDeque<Sample>,
}

impl Samples {
    /// Keep `sample`: one per minute (a later one in the same minute
    /// replaces it), the last day only.
    pub fn record(&mut self, sample: Sample) {
        let minute = sample.at.as_millis() / MINUTE_MS;
        match self.ring.back_mut() {
            Some(last) if last.at.as_millis() / MINUTE_MS == minute => *last = sample,
            Some(last) if last.at > sample.at => return,
            _ => self.ring.push_back(sample),
        }
        let newest = self.ring.back().map_or(Time::ZERO, |s| s.at);
        while self.ring.front().is_some_and(|s| newest.since(s.at) > KEEP) {
            self.ring.pop_front();
        }
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Sample> {
        self.ring.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Today's spend and what a fixed fleet would have cost, up to `now`.
    pub fn today(&self, now: Time) -> Option<Today> {
        let midnight = now.as_millis() - now.as_millis() % DAY_MS;
        let today: Vec<&Sample> = self
            .ring
            .iter()
            .filter(|s| s.at.as_millis() >= midnight)
            .collect();
        let first = today.first()?;
        let mut spent = 0.0;
        for (i, s) in today.iter().enumerate() {
            let until = today.get(i + 1).map_or(now, |next| next.at);
            spent += s.dollars_per_hour() * until.since(s.at).as_secs_f64() / 3600.0;
        }
        let mut peak: BTreeMap<&str, u32> = BTreeMap::new();
        for s in &today {
            for (pool, n) in &s.nodes {
                let p = peak.entry(pool).or_default();
                *p = (*p).max(*n);
            }
        }
        let last = today.last()?;
        let hours = now.since(first.at).as_secs_f64() / 3600.0;
        let fixed_fleet = peak
            .iter()
            .map(|(pool, n)| f64::from(*n) * last.prices.get(*pool).copied().unwrap_or(0.0) * hours)
            .sum();
        Some(Today {
            since: first.at.as_millis(),
            dollars_per_hour: last.dollars_per_hour(),
            spent,
            fixed_fleet,
            peak_nodes: today.iter().map(|s| s.total_nodes()).max().unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(minute: u64, workers: u32) -> Sample {
        Sample {
            at: Time::from_millis(minute * MINUTE_MS),
            nodes: [("workers".to_string(), workers)].into(),
            unschedulable: 0,
            cpu: None,
            prices: [("workers".to_string(), 0.5)].into(),
        }
    }

    #[test]
    fn a_sample_a_minute_for_a_day() {
        let mut s = Samples::default();
        for m in 0..3000 {
            s.record(sample(m, 2));
        }
        // The same minute again: replaced, not added; an older one: ignored.
        s.record(sample(2999, 5));
        s.record(sample(10, 9));
        assert_eq!(s.iter().count(), 1441);
        assert_eq!(s.iter().last().map(Sample::total_nodes), Some(5));
        assert_eq!(
            s.iter().next().map(|x| x.at.as_millis() / MINUTE_MS),
            Some(2999 - 1440)
        );
    }

    #[test]
    fn today_adds_up_each_price_until_the_next_sample_and_prices_the_peak_fleet() {
        let mut s = Samples::default();
        // Yesterday's samples do not count; today: 2 nodes for 2 hours,
        // 6 for one, 2 for the last hour.
        let day = 24 * 60;
        s.record(sample(day - 30, 9));
        s.record(sample(day, 2));
        s.record(sample(day + 120, 6));
        s.record(sample(day + 180, 2));
        let now = Time::from_millis((day + 240) * MINUTE_MS);
        let t = s.today(now).unwrap();
        assert_eq!(t.since, day * MINUTE_MS);
        assert!((t.spent - (2.0 * 2.0 + 6.0 + 2.0) * 0.5).abs() < 1e-9, "{t:?}");
        assert!((t.fixed_fleet - 6.0 * 4.0 * 0.5).abs() < 1e-9, "{t:?}");
        assert!((t.saved() - 6.0).abs() < 1e-9);
        assert_eq!((t.peak_nodes, t.dollars_per_hour), (6, 1.0));
        assert_eq!(Samples::default().today(now), None);
    }
}
