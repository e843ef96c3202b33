//! Carries out a drain: `k3scale_core::drain::Drain` decides each step, this
//! executor performs it against the cluster and the pool's provider, tells
//! the drain how it went, and hands every new state to the caller to journal.

use crate::kube::KubeCluster;
use crate::kube::cluster::EventType;
use crate::provider::{NodeProvider, ProviderError, unix_now};
use k3scale_core::drain::{Drain, DrainAction, DrainOutcome, EvictionResult};
use std::time::{Duration, Instant};
use tracing::{info, warn};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node {node}: {step} still failing after {secs}s: {last_error}")]
pub struct DrainStuck {
    pub node: String,
    pub step: String,
    pub secs: u64,
    pub last_error: String,
}

#[derive(Debug)]
pub struct DrainExecutor<'a> {
    pub cluster: &'a KubeCluster,
    /// The provider of the node's pool: it deletes the machine.
    pub provider: &'a dyn NodeProvider,
    /// How often the drain looks again (pods gone? budget allows now?).
    pub poll: Duration,
    /// How long a step outside the drain's own deadlines (cordon, uncordon,
    /// deleting the machine, Node or secret) may keep failing.
    pub step_timeout: Duration,
}

impl<'a> DrainExecutor<'a> {
    pub fn new(cluster: &'a KubeCluster, provider: &'a dyn NodeProvider) -> Self {
        DrainExecutor {
            cluster,
            provider,
            poll: Duration::from_secs(1),
            step_timeout: Duration::from_secs(300),
        }
    }

    async fn event(&self, node: &str, kind: EventType, reason: &str, action: &str, note: &str) {
        if let Err(e) = self.cluster.node_event(node, kind, reason, action, note).await {
            warn!(node, error = %e, "could not record the event");
        }
    }

    /// Drive `drain` to its outcome. `journal` gets the state after every
    /// step, so a restart can resume it. `Err` means a step kept failing
    /// past `step_timeout`; the drain's state says where it stopped.
    pub async fn run(
        &self,
        drain: &mut Drain,
        journal: &mut (dyn FnMut(&Drain) + Send),
    ) -> Result<DrainOutcome, DrainStuck> {
        let node = drain.node.clone();
        let mut failing: Option<(String, Instant, String)> = None;
        let mut uncordoned = false;
        loop {
            let now = unix_now();
            let pods = self.cluster.pods_on_node(&node);
            let refs: Vec<&k3scale_core::Pod> = pods.iter().collect();
            let exists = self.cluster.node(&node).is_some();
            let mut actions = drain.next(&refs, exists, now);
            // Giving up ends the drain's decisions, but the uncordon must succeed.
            if actions.is_empty() && matches!(drain.outcome, Some(DrainOutcome::GaveUp { .. })) && !uncordoned
            {
                actions.push(DrainAction::Uncordon);
            }
            let mut error = None;
            let evictions: Vec<_> = actions
                .iter()
                .filter_map(|a| match a {
                    DrainAction::Evict { namespace, name, uid } => Some((namespace, name, uid)),
                    _ => None,
                })
                .collect();
            let results = futures::future::join_all(
                evictions
                    .iter()
                    .map(|(ns, name, uid)| self.cluster.evict(ns, name, uid)),
            )
            .await;
            for ((ns, name, _), result) in evictions.iter().zip(results) {
                match &result {
                    EvictionResult::Created => info!(node, pod = %format!("{ns}/{name}"), "evicted"),
                    EvictionResult::TooManyRequests => {
                        info!(node, pod = %format!("{ns}/{name}"), "eviction refused by a disruption budget, will retry")
                    }
                    EvictionResult::Failed(e) => {
                        warn!(node, pod = %format!("{ns}/{name}"), error = %e, "eviction failed, will retry")
                    }
                    EvictionResult::Gone => {}
                }
                let created = result == EvictionResult::Created;
                drain.evicted(&format!("{ns}/{name}"), result, now);
                if created {
                    crate::faults::crash_point("drain:evicting");
                }
            }
            for action in actions.iter().filter(|a| !matches!(a, DrainAction::Evict { .. })) {
                match self.perform(drain, action).await {
                    Ok(()) => uncordoned |= *action == DrainAction::Uncordon,
                    Err(e) => {
                        error = Some((format!("{action:?}"), e));
                        break;
                    }
                }
            }
            journal(drain);
            match (&error, &mut failing) {
                (None, _) => failing = None,
                (Some((step, e)), Some((s, since, last))) if s == step => {
                    *last = e.clone();
                    if since.elapsed() >= self.step_timeout {
                        warn!(node, step, error = %e, "drain step keeps failing");
                        return Err(DrainStuck {
                            node: node.clone(),
                            step: step.clone(),
                            secs: since.elapsed().as_secs(),
                            last_error: e.clone(),
                        });
                    }
                }
                (Some((step, e)), _) => failing = Some((step.clone(), Instant::now(), e.clone())),
            }
            if let Some(outcome) = drain.outcome.clone()
                && error.is_none()
            {
                match &outcome {
                    DrainOutcome::Removed => {
                        info!(node, "node removed");
                        self.event(
                            &node,
                            EventType::Normal,
                            "ScaleDown",
                            "Delete",
                            "node drained and removed",
                        )
                        .await;
                    }
                    DrainOutcome::GaveUp { why } => {
                        warn!(node, why, "drain gave up, node uncordoned");
                        self.event(
                            &node,
                            EventType::Warning,
                            "ScaleDownFailed",
                            "Drain",
                            &format!("not removed: {why}"),
                        )
                        .await;
                    }
                }
                return Ok(outcome);
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// One step other than an eviction; `Err` is retried on the next round.
    async fn perform(&self, drain: &mut Drain, action: &DrainAction) -> Result<(), String> {
        let node = drain.node.clone();
        match action {
            DrainAction::Cordon => match self.cluster.cordon(&node).await {
                Ok(()) => {
                    drain.cordoned();
                    info!(node, "cordoned");
                    self.event(
                        &node,
                        EventType::Normal,
                        "ScaleDown",
                        "Drain",
                        "cordoned; evicting its pods",
                    )
                    .await;
                    Ok(())
                }
                // Gone before we cordoned it: the drain goes straight to removal.
                Err(e) if e.code() == Some(404) => {
                    drain.cordoned();
                    Ok(())
                }
                // Never cordoned, so nothing to undo: the uncordon that
                // follows the abort is harmless.
                Err(e) if unix_now() >= drain.eviction_deadline() => {
                    drain.abort(format!("could not cordon: {e}"));
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            DrainAction::Uncordon => self.cluster.uncordon(&node).await.map_err(|e| e.to_string()),
            DrainAction::DeleteMachine => match self.provider.delete(&node).await {
                Ok(()) | Err(ProviderError::NotFound(_)) => {
                    drain.removal_done(action);
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            DrainAction::DeleteNode => {
                self.cluster.delete_node(&node).await.map_err(|e| e.to_string())?;
                crate::faults::crash_point("drain:node-deleted");
                drain.removal_done(action);
                Ok(())
            }
            DrainAction::DeleteNodePassword => {
                self.cluster
                    .delete_node_password(&node)
                    .await
                    .map_err(|e| e.to_string())?;
                drain.removal_done(action);
                Ok(())
            }
            DrainAction::Evict { .. } => Ok(()),
        }
    }
}
