//! Drain: the decisions of a safe node removal, as a pure state machine.
//!
//! cordon → evict every evictable pod (Eviction API, pod UID as
//! precondition) → a 429 (a PDB says not now) is retried with backoff until
//! the eviction deadline → evicted pods get their grace period + 30 s to go
//! → when the node holds no evictable pod: delete the machine (the agent
//! must be gone first, or it re-registers the Node), then the Node, then its
//! K3s node-password secret. On any deadline: uncordon and give up. Pods are
//! never force-deleted. The state serializes, so a journaled drain resumes.

use crate::model::Pod;
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrainConfig {
    /// How long evictions are attempted (and PDB refusals retried).
    pub eviction_timeout: Duration,
    /// Added to each pod's termination grace period before giving up on it.
    pub termination_slack: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            eviction_timeout: Duration::from_secs(120),
            termination_slack: Duration::from_secs(30),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// What the executor must do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum DrainAction {
    /// Cordon and taint `k3scale.io/draining:NoSchedule`.
    Cordon,
    Evict {
        namespace: String,
        name: String,
        uid: String,
    },
    /// Give up: make the node schedulable again.
    Uncordon,
    DeleteMachine,
    DeleteNode,
    /// `<node>.node-password.k3s` in kube-system.
    DeleteNodePassword,
}

/// The answer of one eviction call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictionResult {
    /// 201: the pod is being terminated.
    Created,
    /// 429: a PodDisruptionBudget does not allow it now.
    TooManyRequests,
    /// 404 (pod gone) or 409 (UID precondition failed: a different pod now).
    Gone,
    /// Anything else; retried like a 429.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DrainOutcome {
    /// Pods moved, machine, Node and secret deleted.
    Removed,
    /// Uncordoned and left in place.
    GaveUp { why: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TrackedPod {
    uid: String,
    grace: Duration,
    evicted_at: Option<Time>,
    attempts: u32,
    next_try: Time,
    last_refusal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drain {
    pub node: String,
    pub started_at: Time,
    config: DrainConfig,
    cordoned: bool,
    pods: BTreeMap<String, TrackedPod>,
    /// Removal steps done so far, in order.
    removed: Vec<DrainAction>,
    pub outcome: Option<DrainOutcome>,
    /// Cordon, then remove without evicting: a node not Ready for long,
    /// where no kubelet would carry an eviction out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    forced: bool,
}

/// A drain as the status page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrainProgress {
    pub node: String,
    pub started_at: Time,
    /// Evictions stop (and the node is uncordoned) after this.
    pub deadline: Time,
    /// Pods on the node still to be evicted or gone (0 before the first look).
    pub pods_left: usize,
    /// Pods whose eviction was refused, oldest name first.
    pub refused: Vec<Refused>,
}

/// A pod whose eviction was refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refused {
    /// `namespace/name`.
    pub pod: String,
    /// Refusals so far (429s from a PodDisruptionBudget, or errors).
    pub times: u32,
    /// What the last one said (`disruption budget` for a 429).
    pub last: String,
}

/// Pods a drain evicts: not finished or long terminating, not DaemonSet
/// or mirror pods.
pub fn evictable(pod: &Pod, now: Time) -> bool {
    !pod.is_gone(now) && !pod.is_node_bound()
}

const REMOVAL: [DrainAction; 3] = [
    DrainAction::DeleteMachine,
    DrainAction::DeleteNode,
    DrainAction::DeleteNodePassword,
];

impl Drain {
    pub fn start(node: &str, now: Time, config: DrainConfig) -> Drain {
        Drain {
            node: node.to_string(),
            started_at: now,
            config,
            cordoned: false,
            pods: BTreeMap::new(),
            removed: Vec::new(),
            outcome: None,
            forced: false,
        }
    }

    /// A drain that evicts nothing (see [`ScaleDown::forced`](crate::ScaleDown::forced)).
    pub fn forced(node: &str, now: Time, config: DrainConfig) -> Drain {
        Drain {
            forced: true,
            ..Drain::start(node, now, config)
        }
    }

    pub fn eviction_deadline(&self) -> Time {
        self.started_at + self.config.eviction_timeout
    }

    /// What to do now, given the pods currently bound to the node and
    /// whether the Node object still exists.
    pub fn next(&mut self, pods_on_node: &[&Pod], node_exists: bool, now: Time) -> Vec<DrainAction> {
        if self.outcome.is_some() {
            return Vec::new();
        }
        if !self.cordoned {
            if !node_exists {
                return self.remove();
            }
            return vec![DrainAction::Cordon];
        }
        if self.forced {
            return self.remove();
        }
        let present: BTreeMap<String, &Pod> = pods_on_node
            .iter()
            .filter(|p| evictable(p, now))
            .map(|p| (p.key(), *p))
            .collect();
        // Forget pods that are gone (terminated, or replaced by another UID).
        self.pods
            .retain(|key, t| present.get(key).is_some_and(|p| p.uid == t.uid));
        for (key, pod) in &present {
            self.pods.entry(key.clone()).or_insert_with(|| TrackedPod {
                uid: pod.uid.clone(),
                grace: pod.termination_grace,
                evicted_at: None,
                attempts: 0,
                next_try: now,
                last_refusal: None,
            });
        }
        if present.is_empty() || !node_exists {
            // Empty (or the Node was deleted behind our back): remove the rest.
            return self.remove();
        }
        // A pod that was evicted but outlived its grace period + slack.
        if let Some((key, _)) = self.pods.iter().find(|(_, t)| {
            t.evicted_at
                .is_some_and(|at| now >= at + t.grace + self.config.termination_slack)
        }) {
            let why = format!(
                "pod {key} did not terminate within its grace period + {}s",
                self.config.termination_slack.as_secs()
            );
            return self.give_up(why);
        }
        let waiting: Vec<(&String, &TrackedPod)> =
            self.pods.iter().filter(|(_, t)| t.evicted_at.is_none()).collect();
        if now >= self.eviction_deadline() && !waiting.is_empty() {
            let blocked: Vec<String> = waiting
                .iter()
                .map(|(k, t)| match &t.last_refusal {
                    Some(r) => format!("{k} ({r})"),
                    None => k.to_string(),
                })
                .collect();
            let why = format!(
                "eviction deadline of {}s passed; still not evicted: {}",
                self.config.eviction_timeout.as_secs(),
                blocked.join(", ")
            );
            return self.give_up(why);
        }
        waiting
            .into_iter()
            .filter(|(_, t)| t.next_try <= now)
            .map(|(key, t)| {
                let (namespace, name) = key.split_once('/').unwrap_or(("", key));
                DrainAction::Evict {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    uid: t.uid.clone(),
                }
            })
            .collect()
    }

    pub fn cordoned(&mut self) {
        self.cordoned = true;
    }

    /// Where the drain stands, for people: pods still to go, evictions
    /// refused, and the deadline.
    pub fn progress(&self) -> DrainProgress {
        DrainProgress {
            node: self.node.clone(),
            started_at: self.started_at,
            deadline: self.eviction_deadline(),
            pods_left: self.pods.len(),
            refused: self
                .pods
                .iter()
                .filter(|(_, t)| t.attempts > 0)
                .map(|(pod, t)| Refused {
                    pod: pod.clone(),
                    times: t.attempts,
                    last: t.last_refusal.clone().unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// Report the answer to an `Evict` of `namespace/name`.
    pub fn evicted(&mut self, key: &str, result: EvictionResult, now: Time) {
        let config = &self.config;
        let Some(t) = self.pods.get_mut(key) else { return };
        match result {
            EvictionResult::Created => t.evicted_at = Some(now),
            EvictionResult::Gone => {
                self.pods.remove(key);
            }
            EvictionResult::TooManyRequests | EvictionResult::Failed(_) => {
                t.attempts += 1;
                let factor = 2u32.saturating_pow(t.attempts - 1);
                t.next_try = now + config.retry_base.saturating_mul(factor).min(config.retry_max);
                t.last_refusal = Some(match result {
                    EvictionResult::Failed(e) => e,
                    _ => "disruption budget".to_string(),
                });
            }
        }
    }

    /// Report that a removal step (`DeleteMachine`, `DeleteNode`, `DeleteNodePassword`) is done.
    pub fn removal_done(&mut self, step: &DrainAction) {
        if REMOVAL.contains(step) && !self.removed.contains(step) {
            self.removed.push(step.clone());
        }
        if self.removed.len() == REMOVAL.len() {
            self.outcome = Some(DrainOutcome::Removed);
        }
    }

    /// The removal steps still to do, in order (machine first).
    fn remove(&mut self) -> Vec<DrainAction> {
        REMOVAL
            .iter()
            .filter(|s| !self.removed.contains(s))
            .cloned()
            .collect()
    }

    /// The executor cannot go on (e.g. the cordon keeps failing past the
    /// eviction deadline): give up and uncordon.
    pub fn abort(&mut self, why: String) -> Vec<DrainAction> {
        if self.outcome.is_some() {
            return Vec::new();
        }
        self.give_up(why)
    }

    fn give_up(&mut self, why: String) -> Vec<DrainAction> {
        self.outcome = Some(DrainOutcome::GaveUp { why });
        vec![DrainAction::Uncordon]
    }
}
