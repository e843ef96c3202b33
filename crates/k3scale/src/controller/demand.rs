//! `policy.predictive`'s memory across restarts and failovers: the demand
//! history is read back from the state store before the first decision,
//! saved every few minutes, and filled at start from Prometheus (what
//! kube-state-metrics recorded before k3scale ran).

use super::{Controller, ControllerError};
use crate::metrics::prometheus::Prometheus;
use crate::state::StateError;
use k3scale_core::Time;
use k3scale_core::forecast::{KEEP_MINUTES, StoredDemand};
use std::time::Duration;
use tracing::{info, warn};

pub(super) const DEMAND_KEY: &str = "demand-history";
/// How often the history is saved: a crash loses at most this much of it.
const SAVE_EVERY: Duration = Duration::from_secs(5 * 60);

/// The stored history's version, and when this process last saved it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DemandSaved {
    version: u64,
    at: Option<Time>,
}

impl Controller {
    /// Read the stored history into the snapshot's, once (the first
    /// reconcile of a process, or of a new leader). A damaged one is
    /// logged and replaced at the next save: it only feeds a forecast.
    pub(super) async fn restore_demand(&mut self) -> Result<(), ControllerError> {
        if self.policy.predictive.is_none() || self.demand_saved.is_some() {
            return Ok(());
        }
        let (raw, version) = self.load(DEMAND_KEY).await?;
        let stored = raw.map(|text| {
            serde_json::from_str::<StoredDemand>(&text)
                .map_err(|e| e.to_string())
                .and_then(|s| s.minutes())
        });
        match stored {
            Some(Ok(minutes)) => {
                let count = minutes.len();
                self.snapshot.demand.fill(minutes);
                info!(
                    minutes = count,
                    "predictive: demand history read from the state store"
                );
            }
            Some(Err(cause)) => {
                warn!(key = DEMAND_KEY, %cause, "predictive: stored demand history unreadable, starting it again");
            }
            None => {}
        }
        self.demand_saved = Some(DemandSaved { version, at: None });
        Ok(())
    }

    /// Save the history if it was not saved for [`SAVE_EVERY`]. Someone
    /// else having written it since (a replica that led meanwhile) is not
    /// an error: it is read and merged again before the next decision.
    pub(super) async fn save_demand(&mut self, now: Time) -> Result<(), ControllerError> {
        let Some(saved) = self.demand_saved else {
            return Ok(());
        };
        if saved.at.is_some_and(|at| now.since(at) < SAVE_EVERY) || self.snapshot.demand.is_empty() {
            return Ok(());
        }
        let text = super::to_json(DEMAND_KEY, &self.snapshot.demand.to_stored())?;
        match self.store.put(DEMAND_KEY, &text, saved.version).await {
            Ok(version) => {
                self.demand_saved = Some(DemandSaved {
                    version,
                    at: Some(now),
                });
                Ok(())
            }
            Err(StateError::Conflict { .. }) => {
                self.demand_saved = None;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Fill the demand history from Prometheus (the minutes it does not
    /// hold, over the last eight days): the forecast works from the first
    /// day instead of a day after k3scale was switched on. Returns the
    /// minutes added.
    pub async fn backfill_demand(
        &mut self,
        prometheus: &Prometheus,
        now: Time,
    ) -> Result<usize, crate::metrics::MetricsError> {
        if self.policy.predictive.is_none() {
            return Ok(0);
        }
        let end = now.as_secs_f64();
        let start = end - (KEEP_MINUTES * 60) as f64;
        let minutes = crate::metrics::history::demand(prometheus, start, end).await?;
        let before = self.snapshot.demand.len();
        self.snapshot.demand.fill(minutes);
        Ok(self.snapshot.demand.len() - before)
    }
}
