//! Built-in scenarios: synthetic but realistic demand shapes, deterministic
//! for a given seed.

use crate::engine::SimOptions;
use crate::trace::{DemandUnit, Trace};
use k3scale_core::Policy;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::f64::consts::PI;

#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    minutes: u64,
    shape: fn(minute: u64, rng: &mut ChaCha8Rng) -> f64,
    /// What the scenario changes in the cluster and workload it runs on.
    setup: fn(&mut Policy, &mut SimOptions),
}

/// The user's pools and workload as they are.
fn as_configured(_: &mut Policy, _: &mut SimOptions) {}

pub const DEFAULT_SCENARIO: &str = "flash-sale";

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "flash-sale",
        about: "a normal day (0.35-1.1 cores of web traffic) with a 10x flash sale at 19:00 for an hour",
        minutes: 24 * 60,
        shape: flash_sale,
        setup: as_configured,
    },
    Scenario {
        name: "diurnal-week",
        about: "seven days of office-hours traffic (1-8 cores), quieter weekends",
        minutes: 7 * 24 * 60,
        shape: diurnal_week,
        setup: as_configured,
    },
    Scenario {
        name: "steady",
        about: "a flat 3 cores with 5% noise for a day: nothing to gain, nothing to break",
        minutes: 24 * 60,
        shape: steady,
        setup: as_configured,
    },
    Scenario {
        name: "spikes",
        about: "two days at 2 cores with sudden 3-5x spikes lasting 5-20 minutes",
        minutes: 2 * 24 * 60,
        shape: spikes,
        setup: as_configured,
    },
    Scenario {
        name: "zones",
        about: "a day of 1-7 cores of web traffic, one replica per node (hostname anti-affinity), spread evenly over two zones: the first pool split into zone-a and zone-b",
        minutes: 24 * 60,
        shape: zones_day,
        setup: two_zones,
    },
    Scenario {
        name: "consolidation",
        about: "a day that climbs from 1 to 6 cores in small steps and holds there, with a second pool of nodes 4x larger and cheaper per core: consolidation (on here) replaces small nodes by large ones",
        minutes: 24 * 60,
        shape: climb_and_hold,
        setup: two_sizes,
    },
    Scenario {
        name: "rollout",
        about: "a steady 9 cores for 12 hours; at 06:00 the pool's agent image changes and every node is replaced, at most 25% of the pool disrupted at once",
        minutes: 12 * 60,
        shape: nine_cores,
        setup: new_image_at_six,
    },
];

pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

impl Scenario {
    /// Apply what the scenario changes to `policy` and `opts`.
    pub fn prepare(&self, policy: &mut Policy, opts: &mut SimOptions) {
        (self.setup)(policy, opts);
    }

    /// One row per minute of CPU demand for the `web` workload.
    pub fn trace(&self, seed: u64) -> Trace {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let points = (0..self.minutes)
            .map(|m| (m * 60, ((self.shape)(m, &mut rng)).max(0.0)))
            .collect();
        Trace {
            unit: DemandUnit::Cpu,
            series: BTreeMap::from([("web".to_string(), points)]),
        }
    }
}

const ZONE_KEY: &str = "topology.kubernetes.io/zone";

/// The first pool as two, one per zone, each with at least one node; the
/// web pods each want a node of their own and an even spread over zones.
fn two_zones(policy: &mut Policy, opts: &mut SimOptions) {
    use k3scale_core::model::{LabelSelector, PodAffinityTerm, TermNamespaces, TopologySpread};
    use std::sync::Arc;
    if let Some(first) = policy.pools.first().cloned() {
        policy.pools = ["a", "b"]
            .iter()
            .map(|zone| {
                let mut pool = first.clone();
                pool.name = format!("zone-{zone}");
                pool.min = 1;
                pool.template
                    .labels
                    .insert(k3scale_core::model::POOL_LABEL.into(), pool.name.clone());
                pool.template.labels.insert(ZONE_KEY.into(), (*zone).into());
                pool
            })
            .collect();
    }
    let web: k3scale_core::model::Labels = [("app".to_string(), "web".to_string())].into();
    let selector = Some(LabelSelector {
        match_labels: web.clone(),
        match_expressions: vec![],
    });
    let w = &mut opts.workload;
    w.cpu_request_milli = 1000;
    w.cpu_limit_milli = 1500;
    w.memory_request = 512 << 20;
    w.max_replicas = 20;
    w.labels = web;
    w.topology_spread = Arc::from([TopologySpread {
        max_skew: 1,
        topology_key: ZONE_KEY.into(),
        selector: selector.clone(),
        namespace: "default".into(),
        min_domains: None,
        honor_node_affinity: true,
        honor_taints: false,
    }]);
    w.pod_anti_affinity = Arc::from([PodAffinityTerm {
        selector,
        namespaces: TermNamespaces::Listed(vec!["default".into()]),
        topology_key: crate::engine::HOSTNAME.into(),
    }]);
}

fn zones_day(m: u64, rng: &mut ChaCha8Rng) -> f64 {
    (1.0 + 6.0 * daily(m % 1440)) * noise(rng, 0.05)
}

fn noise(rng: &mut ChaCha8Rng, amplitude: f64) -> f64 {
    1.0 + rng.random_range(-amplitude..=amplitude)
}

/// Daily shape in 0..1: low at night, a broad day peak in the evening.
fn daily(minute_of_day: u64) -> f64 {
    let h = minute_of_day as f64 / 60.0;
    let day = ((h - 7.0) / 16.0 * PI).sin().max(0.0); // 07:00..23:00
    day.powf(0.8)
}

fn flash_sale(m: u64, rng: &mut ChaCha8Rng) -> f64 {
    let base = 0.35 + 0.75 * daily(m % 1440);
    let t = m as f64;
    let (start, end) = (19.0 * 60.0, 20.0 * 60.0);
    // Ramps up over 2 minutes (a sale goes live), decays over 5 after it ends.
    let boost = if t < start {
        1.0
    } else if t < start + 2.0 {
        1.0 + 9.0 * (t - start + 1.0) / 2.0
    } else if t < end {
        10.0
    } else {
        1.0 + 9.0 * (-(t - end) / 5.0).exp()
    };
    base * boost * noise(rng, 0.05)
}

fn diurnal_week(m: u64, rng: &mut ChaCha8Rng) -> f64 {
    let day = m / 1440;
    let weekend = day % 7 >= 5;
    let peak = if weekend { 4.5 } else { 8.0 };
    (1.0 + (peak - 1.0) * daily(m % 1440)) * noise(rng, 0.08)
}

/// 1 core at night; from 07:00 up by half a core every 20 minutes to 6
/// cores, held until 19:00, then back down by 20:00; 3% noise.
fn climb_and_hold(m: u64, rng: &mut ChaCha8Rng) -> f64 {
    let minute = m % 1440;
    let level = match minute {
        420..1140 => (1.0 + 0.5 * ((minute - 420) / 20) as f64).min(6.0),
        1140..1200 => 6.0 - 5.0 * (minute - 1140) as f64 / 60.0,
        _ => 1.0,
    };
    level * noise(rng, 0.03)
}

/// The first pool, and `large`: nodes 4x its size at 3.2x its price
/// (cheaper per core, as larger instances often are); consolidation on.
fn two_sizes(policy: &mut Policy, _: &mut SimOptions) {
    let Some(first) = policy.pools.first().cloned() else {
        return;
    };
    let mut large = first;
    large.name = "large".into();
    large.min = 0;
    large.max = 5;
    let a = large.template.allocatable;
    large.template.allocatable = k3scale_core::Resources::new(a.cpu_milli * 4, a.memory_bytes * 4, a.pods);
    large.template.price_per_hour *= 3.2;
    large
        .template
        .labels
        .insert(k3scale_core::model::POOL_LABEL.into(), large.name.clone());
    policy.pools.push(large);
    policy.consolidation = Some(k3scale_core::policy::Consolidation {
        min_saving_per_hour: 0.01,
    });
}

fn nine_cores(_m: u64, rng: &mut ChaCha8Rng) -> f64 {
    9.0 * noise(rng, 0.02)
}

/// A disruption budget of 25% on every pool, and new node settings (an
/// agent image) at 06:00: the nodes launched before are drifted.
fn new_image_at_six(policy: &mut Policy, opts: &mut SimOptions) {
    for pool in &mut policy.pools {
        pool.disruption = vec![k3scale_core::disruption::Budget {
            name: "a-quarter".into(),
            nodes: k3scale_core::disruption::Amount::Percent(25),
            reasons: Vec::new(),
            window: None,
        }];
    }
    opts.settings_change_at = Some(std::time::Duration::from_secs(6 * 3600));
}

fn steady(_m: u64, rng: &mut ChaCha8Rng) -> f64 {
    3.0 * noise(rng, 0.05)
}

fn spikes(m: u64, rng: &mut ChaCha8Rng) -> f64 {
    // Spike schedule: derived from the minute only, so it is the same for every seed.
    let window = m / 360; // one spike per 6 hours
    let offset = (window * 7919) % 300;
    let length = 5 + (window * 31) % 16;
    let height = 3.0 + ((window * 13) % 3) as f64;
    let in_spike = m % 360 >= offset && m % 360 < offset + length;
    2.0 * if in_spike { height } else { 1.0 } * noise(rng, 0.05)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_are_deterministic_and_shaped_as_described() {
        let s = find("flash-sale").unwrap();
        let a = s.trace(7);
        assert_eq!(a, s.trace(7));
        assert_ne!(a, s.trace(8));
        let web = &a.series["web"];
        assert_eq!(web.len(), 1440);
        let at = |h: u64| web[(h * 60) as usize].1;
        assert!(at(3) < 0.5 && at(12) > 0.6, "night {} noon {}", at(3), at(12));
        let ratio = web[19 * 60 + 30].1 / web[18 * 60 + 50].1;
        assert!((8.5..11.5).contains(&ratio), "flash sale ratio {ratio}");
        for s in SCENARIOS {
            assert!(
                s.trace(1).series["web"]
                    .iter()
                    .all(|(_, v)| v.is_finite() && *v >= 0.0)
            );
        }
    }
}
