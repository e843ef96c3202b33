//! Leader election on a `coordination.k8s.io` Lease, as a pure state
//! machine with client-go's semantics: the holder renews every retry period;
//! others may take over only after `lease_duration` without a renewal; a
//! holder that has not renewed for `renew_deadline` (shorter than the lease)
//! stops acting first, so two replicas never act at once. Writes are
//! compare-and-swap on `resourceVersion` (a 409 means someone else wrote).

use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionConfig {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for ElectionConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    fn default() -> Self {
        ElectionConfig {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl ElectionConfig {
    /// The timing that makes "never two leaders" hold: a holder stops acting
    /// (renew deadline) before anyone may take over (lease duration), and it
    /// retries more than once before that.
    pub fn check(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "renew deadline ({}s) must be shorter than the lease duration ({}s)",
                self.renew_deadline.as_secs(),
                self.lease_duration.as_secs()
            ));
        }
        if self.retry_period.saturating_mul(2) > self.renew_deadline {
            return Err(format!(
                "retry period ({}s) must fit at least twice in the renew deadline ({}s)",
                self.retry_period.as_secs(),
                self.renew_deadline.as_secs()
            ));
        }
        Ok(())
    }
}

/// The Lease's spec as k3scale reads and writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// `None` (empty) when released.
    pub holder: Option<String>,
    pub acquire_time: Time,
    pub renew_time: Time,
    pub lease_duration: Duration,
    pub transitions: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStep {
    /// No Lease exists: create it (a 409 means another replica was first).
    Create(LeaseRecord),
    /// Replace the Lease (with the resourceVersion just read): renew or take over.
    Update(LeaseRecord),
    /// Someone else holds it: look again at `retry_at`.
    Wait { holder: String, retry_at: Time },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elector {
    pub identity: String,
    pub config: ElectionConfig,
    /// When our last write of the Lease succeeded (while we hold it).
    renewed_at: Option<Time>,
    /// The record last read and when (by our clock) it last changed: expiry is
    /// judged from our own observation, not the holder's clock.
    observed: Option<(LeaseRecord, Time)>,
    /// The holder whose expired Lease we took over: that replica stopped
    /// acting at its renew deadline, so what it held (the act lock) is ours
    /// to take at once.
    took_over_from: Option<String>,
}

impl Elector {
    pub fn new(identity: &str, config: ElectionConfig) -> Self {
        Elector {
            identity: identity.to_string(),
            config,
            renewed_at: None,
            observed: None,
            took_over_from: None,
        }
    }

    /// Whether this replica may act now: it renewed within the renew deadline.
    pub fn is_leader(&self, now: Time) -> bool {
        self.renewed_at
            .is_some_and(|t| now >= t && now.since(t) < self.config.renew_deadline)
    }

    /// What to write given the Lease as just read (`None`: it does not exist).
    pub fn step(&mut self, current: Option<&LeaseRecord>, now: Time) -> LeaseStep {
        let observed_at = match (&self.observed, current) {
            (Some((seen, at)), Some(lease)) if seen == lease => *at,
            _ => now,
        };
        self.observed = current.map(|l| (l.clone(), observed_at));
        let mine = |acquire_time: Time, transitions: u32| LeaseRecord {
            holder: Some(self.identity.clone()),
            acquire_time,
            renew_time: now,
            lease_duration: self.config.lease_duration,
            transitions,
        };
        let Some(lease) = current else {
            return LeaseStep::Create(mine(now, 0));
        };
        match &lease.holder {
            Some(holder) if *holder == self.identity => {
                LeaseStep::Update(mine(lease.acquire_time, lease.transitions))
            }
            Some(holder) if now < observed_at + lease.lease_duration => LeaseStep::Wait {
                holder: holder.clone(),
                retry_at: now + self.config.retry_period,
            },
            // Expired or released: take it over.
            _ => LeaseStep::Update(mine(now, lease.transitions + 1)),
        }
    }

    /// Our write of `record` succeeded; `now` is when it was sent (not when
    /// the answer came), so the renew deadline errs on the safe side.
    pub fn written(&mut self, record: &LeaseRecord, now: Time) {
        if record.holder.as_deref() == Some(self.identity.as_str()) {
            self.renewed_at = Some(now);
            let before = self.observed.as_ref().and_then(|(r, _)| r.holder.as_deref());
            if let Some(previous) = before.filter(|h| *h != self.identity) {
                self.took_over_from = Some(previous.to_string());
            }
        }
        self.observed = Some((record.clone(), now));
    }

    /// Who holds the Lease as last read or written (maybe this replica).
    pub fn holder(&self) -> Option<&str> {
        self.observed.as_ref().and_then(|(r, _)| r.holder.as_deref())
    }

    /// The replica whose expired Lease this one took over, if it did.
    pub fn took_over_from(&self) -> Option<&str> {
        self.took_over_from.as_deref()
    }

    /// Our write failed (409 conflict, timeout, API down): we keep acting
    /// only until the renew deadline of the last success.
    pub fn write_failed(&mut self, now: Time) {
        if !self.is_leader(now) {
            self.renewed_at = None;
        }
    }

    /// Release on shutdown: what to write so another replica takes over at once.
    pub fn release(&mut self, lease: &LeaseRecord, now: Time) -> Option<LeaseRecord> {
        self.renewed_at = None;
        (lease.holder.as_deref() == Some(self.identity.as_str())).then(|| LeaseRecord {
            holder: None,
            renew_time: now,
            lease_duration: Duration::from_secs(1),
            ..lease.clone()
        })
    }
}
