//! Machine lifecycle: what happens to a machine between the provider's
//! `create` and its Node being Ready, and when the two disagree.
//!
//! Pure: the controller feeds it what the provider and the cluster report,
//! and carries out the actions it returns.
//!
//! launched ──(Node appears)──► registered ──(Node Ready)──► ready
//!    └──────────── not Ready within provision_timeout ────────► deleting
//! ready ──(Node gone for orphan_timeout)──► deleting
//! A Node of ours whose machine is gone (deleted outside k3scale) is deleted.

use crate::time::{Time, serialize_secs};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LifecycleConfig {
    /// Launch to Node registered; past it the machine is a failed join.
    #[serde(serialize_with = "serialize_secs")]
    pub provision_timeout: Duration,
    /// Node registered to Ready; past it the machine is a failed join.
    #[serde(serialize_with = "serialize_secs")]
    pub join_timeout: Duration,
    /// A Ready machine whose Node has been gone this long is an orphan.
    #[serde(serialize_with = "serialize_secs")]
    pub orphan_timeout: Duration,
    /// A Node whose machine is missing this long was deleted outside k3scale.
    #[serde(serialize_with = "serialize_secs")]
    pub missing_machine_grace: Duration,
    /// How long a just-launched machine may be absent from the provider's list
    /// (eventually consistent APIs) before it counts as never launched.
    #[serde(serialize_with = "serialize_secs")]
    pub inventory_lag: Duration,
    /// Re-issue a delete that has not taken effect after this long.
    #[serde(serialize_with = "serialize_secs")]
    pub delete_retry: Duration,
    /// A pool whose machines do not join (or that has no capacity) waits
    /// this long, doubling per failure up to `backoff_max`.
    #[serde(serialize_with = "serialize_secs")]
    pub backoff_base: Duration,
    #[serde(serialize_with = "serialize_secs")]
    pub backoff_max: Duration,
    /// A provider that failed for now (`Transient`) is asked again after
    /// this long, doubling up to `retry_max`.
    #[serde(serialize_with = "serialize_secs")]
    pub retry_base: Duration,
    #[serde(serialize_with = "serialize_secs")]
    pub retry_max: Duration,
}

/// A machine the provider has launched whose Node is not Ready yet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InFlight {
    pub pool: String,
    pub name: String,
    pub launched_at: Time,
}

impl LifecycleConfig {
    /// The machine lifecycle's timings for `pool`.
    pub fn for_pool(pool: &crate::model::Pool) -> LifecycleConfig {
        LifecycleConfig {
            provision_timeout: pool.provision_timeout,
            join_timeout: pool.join_timeout,
            ..LifecycleConfig::default()
        }
    }

    /// Machine timings for a pool whose nodes boot in about `boot_time`:
    /// slow images are not killed at a constant made for fast ones.
    pub fn for_boot_time(boot_time: Duration) -> LifecycleConfig {
        let d = LifecycleConfig::default();
        LifecycleConfig {
            provision_timeout: d.provision_timeout.max(boot_time.saturating_mul(3)),
            join_timeout: d.join_timeout.max(boot_time),
            ..d
        }
    }
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            provision_timeout: Duration::from_secs(600),
            join_timeout: Duration::from_secs(300),
            orphan_timeout: Duration::from_secs(600),
            missing_machine_grace: Duration::from_secs(120),
            inventory_lag: Duration::from_secs(120),
            delete_retry: Duration::from_secs(60),
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(1800),
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(120),
        }
    }
}

/// A machine of ours as the provider lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedMachine {
    pub name: String,
    pub pool: String,
    pub created_at: Time,
}

/// A Node as the cluster reports it (`pool` from the `k3scale.io/pool` label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedNode {
    pub name: String,
    pub pool: Option<String>,
    pub ready: bool,
}

impl From<&crate::model::Node> for ObservedNode {
    /// Ready here means joined: Ready and rid of its startup taints.
    fn from(n: &crate::model::Node) -> Self {
        ObservedNode {
            name: n.name.clone(),
            pool: n.pool.clone(),
            ready: n.joined(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Launched,
    Registered,
    Ready,
    Deleting,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineState {
    pub pool: String,
    pub phase: Phase,
    pub launched_at: Time,
    /// When the phase last changed (or the delete was last issued).
    pub since: Time,
    pub node_last_seen: Option<Time>,
    /// Seen in the provider's inventory at least once.
    pub listed: bool,
    /// Why it is being deleted, once it is.
    pub deleting: Option<DeleteReason>,
}

/// Why a pool launches nothing for now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldCause {
    /// Its machines did not become Ready nodes in time.
    #[default]
    JoinFailures,
    /// Its provider had no capacity for the shape (`InsufficientCapacity`).
    NoCapacity,
    /// Its provider failed for now (`Transient`): asked again soon.
    Retry,
    /// Its provider said it will not work (`Fatal`): nothing is launched
    /// until the pool's configuration changes or an operator resets it.
    Failed,
}

/// The provider's verdict on a failed `create`, for `launch_failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchError {
    NoCapacity,
    Transient,
    Fatal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    pub failures: u32,
    pub until: Time,
    #[serde(default)]
    pub cause: HoldCause,
    /// What the provider said (for `Failed`: why the pool stopped).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub why: String,
    /// For `Failed`: the pool's configuration when it failed; another one
    /// clears it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config: String,
}

/// A pool launching nothing until `until`, and why (`Snapshot::backoff`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    pub until: Time,
    pub cause: HoldCause,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DeleteReason {
    /// Not Ready within the provision timeout: a node join failure.
    JoinTimeout { waited_s: u64 },
    /// Its Node has been gone for the orphan timeout.
    Orphan { without_node_s: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum LifecycleAction {
    DeleteMachine {
        name: String,
        pool: String,
        why: DeleteReason,
    },
    /// The Node (and, on K3s, its node-password secret) of a machine that is gone.
    DeleteNode { name: String },
    /// Tell the user: the pool backs off until `until`.
    JoinFailure {
        pool: String,
        machine: String,
        failures: u32,
        until: Time,
    },
    /// Tell the user: a launch failed and the pool is held (see `HoldCause`).
    LaunchHeld {
        pool: String,
        machine: String,
        cause: HoldCause,
        failures: u32,
        until: Time,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub machines: BTreeMap<String, MachineState>,
    pub backoff: BTreeMap<String, Backoff>,
    /// Nodes of ours without a machine, since when.
    pub machine_missing: BTreeMap<String, Time>,
}

impl Lifecycle {
    /// Record a launch (call it before the provider's `create`, so a crash
    /// in between still leaves the machine accounted for).
    pub fn launched(&mut self, pool: &str, name: &str, now: Time) {
        self.machines.entry(name.to_string()).or_insert(MachineState {
            pool: pool.to_string(),
            phase: Phase::Launched,
            launched_at: now,
            since: now,
            node_last_seen: None,
            listed: false,
            deleting: None,
        });
    }

    /// The provider could not create it: forget it and hold the pool, as
    /// the error's kind says (see `HoldCause`). `config` fingerprints the
    /// pool's settings: a `Fatal` hold lasts until they change.
    pub fn launch_failed(
        &mut self,
        name: &str,
        error: LaunchError,
        why: &str,
        config: &str,
        now: Time,
        cfg: &LifecycleConfig,
    ) -> Option<LifecycleAction> {
        let m = self.machines.remove(name)?;
        let pool = m.pool;
        let (cause, base, max) = match error {
            LaunchError::NoCapacity => (HoldCause::NoCapacity, cfg.backoff_base, cfg.backoff_max),
            LaunchError::Transient => (HoldCause::Retry, cfg.retry_base, cfg.retry_max),
            LaunchError::Fatal => (HoldCause::Failed, Duration::ZERO, Duration::ZERO),
        };
        // A streak of one kind doubles; another kind starts a new streak.
        let failures = self
            .backoff
            .get(&pool)
            .filter(|b| b.cause == cause)
            .map_or(0, |b| b.failures)
            + 1;
        let until = if cause == HoldCause::Failed {
            Time::from_millis(u64::MAX / 2)
        } else {
            now + base.saturating_mul(2u32.saturating_pow(failures - 1)).min(max)
        };
        self.backoff.insert(
            pool.clone(),
            Backoff {
                failures,
                until,
                cause,
                why: why.to_string(),
                config: if cause == HoldCause::Failed {
                    config.to_string()
                } else {
                    String::new()
                },
            },
        );
        // Told once per streak (and a failed pool once).
        (failures == 1 || cause == HoldCause::NoCapacity).then(|| LifecycleAction::LaunchHeld {
            pool,
            machine: name.to_string(),
            cause,
            failures,
            until,
        })
    }

    /// A launch succeeded: a retry or capacity hold is over.
    pub fn launch_succeeded(&mut self, pool: &str) {
        if self
            .backoff
            .get(pool)
            .is_some_and(|b| matches!(b.cause, HoldCause::Retry | HoldCause::NoCapacity))
        {
            self.backoff.remove(pool);
        }
    }

    /// Clear a `Failed` hold: the operator reset it, or the pool's
    /// configuration is no longer the one that failed. True if one was cleared.
    pub fn clear_failed(&mut self, pool: &str, unless_config: Option<&str>) -> bool {
        let clear = self
            .backoff
            .get(pool)
            .is_some_and(|b| b.cause == HoldCause::Failed && unless_config.is_none_or(|c| c != b.config));
        if clear {
            self.backoff.remove(pool);
        }
        clear
    }

    /// Machines launched whose Node is not Ready yet, for `Snapshot::in_flight`.
    pub fn in_flight(&self) -> Vec<InFlight> {
        self.machines
            .iter()
            .filter(|(_, m)| matches!(m.phase, Phase::Launched | Phase::Registered))
            .map(|(name, m)| InFlight {
                pool: m.pool.clone(),
                name: name.clone(),
                launched_at: m.launched_at,
            })
            .collect()
    }

    /// Pools that may not launch before the given time, and why.
    pub fn backed_off(&self, now: Time) -> BTreeMap<String, Hold> {
        self.backoff
            .iter()
            .filter(|(_, b)| b.until > now)
            .map(|(pool, b)| {
                let hold = Hold {
                    until: b.until,
                    cause: b.cause,
                    why: b.why.clone(),
                };
                (pool.clone(), hold)
            })
            .collect()
    }

    /// A machine did not join: the pool backs off (join failures double).
    fn fail(&mut self, pool: &str, machine: &str, now: Time, cfg: &LifecycleConfig) -> LifecycleAction {
        let b = self.backoff.entry(pool.to_string()).or_insert(Backoff {
            failures: 0,
            until: now,
            cause: HoldCause::JoinFailures,
            why: String::new(),
            config: String::new(),
        });
        if b.cause != HoldCause::JoinFailures {
            b.cause = HoldCause::JoinFailures;
            b.failures = 0;
            b.why.clear();
            b.config.clear();
        }
        b.failures += 1;
        let factor = 2u32.saturating_pow(b.failures - 1);
        let delay = cfg.backoff_base.saturating_mul(factor).min(cfg.backoff_max);
        b.until = now + delay;
        LifecycleAction::JoinFailure {
            pool: pool.to_string(),
            machine: machine.to_string(),
            failures: b.failures,
            until: b.until,
        }
    }

    /// Reconcile with what the provider and the cluster report now.
    pub fn step(
        &mut self,
        inventory: &[ObservedMachine],
        nodes: &[ObservedNode],
        now: Time,
        cfg: &LifecycleConfig,
    ) -> Vec<LifecycleAction> {
        let mut actions = Vec::new();
        let listed: BTreeMap<&str, &ObservedMachine> =
            inventory.iter().map(|m| (m.name.as_str(), m)).collect();
        let node_of: BTreeMap<&str, &ObservedNode> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();

        // Adopt machines we did not know (e.g. after a restart). One with a
        // Node, older than a launch may take to join, joined before: if its
        // Node is not Ready now, that is the unready rule's business, not a
        // join failure (which would hold its pool back).
        for m in inventory {
            let joined_before = node_of.contains_key(m.name.as_str())
                && now.since(m.created_at) >= cfg.provision_timeout + cfg.join_timeout;
            self.machines.entry(m.name.clone()).or_insert(MachineState {
                pool: m.pool.clone(),
                phase: if joined_before {
                    Phase::Ready
                } else {
                    Phase::Launched
                },
                launched_at: m.created_at,
                since: now,
                node_last_seen: None,
                listed: true,
                deleting: None,
            });
        }
        // Forget machines the provider no longer has: deleted, or never
        // launched (a failed launch once the inventory lag has passed).
        let mut failures = Vec::new();
        self.machines.retain(|name, m| {
            if listed.contains_key(name.as_str()) {
                m.listed = true;
                return true;
            }
            let waiting =
                !m.listed && m.phase != Phase::Deleting && now.since(m.launched_at) < cfg.inventory_lag;
            if !waiting && !m.listed && m.phase != Phase::Deleting {
                failures.push((m.pool.clone(), name.clone()));
            }
            waiting
        });

        for (name, m) in self.machines.iter_mut().filter(|(_, m)| m.listed) {
            let node = node_of.get(name.as_str());
            if node.is_some() {
                m.node_last_seen = Some(now);
            }
            match (m.phase, node) {
                (Phase::Deleting, _) => {
                    if let Some(why) = m.deleting.clone()
                        && now.since(m.since) >= cfg.delete_retry
                    {
                        actions.push(delete(name, m, why, now));
                    }
                }
                (_, Some(n)) if n.ready => {
                    if m.phase != Phase::Ready {
                        m.phase = Phase::Ready;
                        m.since = now;
                        // A join ends join-failure holds; a failed pool
                        // stays failed until it is reset or reconfigured.
                        if self
                            .backoff
                            .get(&m.pool)
                            .is_some_and(|b| b.cause != HoldCause::Failed)
                        {
                            self.backoff.remove(&m.pool);
                        }
                    }
                }
                (Phase::Launched | Phase::Registered, node) => {
                    if node.is_some() && m.phase == Phase::Launched {
                        m.phase = Phase::Registered;
                        m.since = now;
                    }
                    // Not registered within provision_timeout of the launch,
                    // or not Ready within join_timeout of registering.
                    let (waited, limit) = match m.phase {
                        Phase::Launched => (now.since(m.launched_at), cfg.provision_timeout),
                        _ => (now.since(m.since), cfg.join_timeout),
                    };
                    if waited >= limit {
                        let why = DeleteReason::JoinTimeout {
                            waited_s: now.since(m.launched_at).as_secs(),
                        };
                        actions.push(delete(name, m, why, now));
                        failures.push((m.pool.clone(), name.clone()));
                    }
                }
                (Phase::Ready, Some(_)) => {} // NotReady after joining: the kubelet's business, not ours
                (Phase::Ready, None) => {
                    let gone = now.since(m.node_last_seen.unwrap_or(m.since));
                    if gone >= cfg.orphan_timeout {
                        let why = DeleteReason::Orphan {
                            without_node_s: gone.as_secs(),
                        };
                        actions.push(delete(name, m, why, now));
                    }
                }
            }
        }
        for (pool, machine) in failures {
            let report = self.fail(&pool, &machine, now, cfg);
            actions.push(report);
        }

        // Nodes of ours whose machine is gone: deleted outside k3scale.
        let mut still_missing = BTreeMap::new();
        for n in nodes.iter().filter(|n| n.pool.is_some()) {
            if listed.contains_key(n.name.as_str()) || self.machines.contains_key(&n.name) {
                continue;
            }
            let since = self.machine_missing.get(&n.name).copied().unwrap_or(now);
            if now.since(since) >= cfg.missing_machine_grace {
                actions.push(LifecycleAction::DeleteNode { name: n.name.clone() });
            } else {
                still_missing.insert(n.name.clone(), since);
            }
        }
        self.machine_missing = still_missing;
        actions
    }
}

fn delete(name: &str, m: &mut MachineState, why: DeleteReason, now: Time) -> LifecycleAction {
    m.phase = Phase::Deleting;
    m.since = now;
    m.deleting = Some(why.clone());
    LifecycleAction::DeleteMachine {
        name: name.to_string(),
        pool: m.pool.clone(),
        why,
    }
}

/// A unique node name for a new machine of `pool`: `<pool>-<suffix>`, the
/// suffix 8 lowercase base-36 characters from the caller's randomness (names
/// are never reused, so a stale K3s node-password secret cannot reject them).
pub fn machine_name(pool: &str, random: u64) -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut r = random;
    let suffix: String = (0..8)
        .map(|_| {
            let c = ALPHABET[(r % 36) as usize] as char;
            r /= 36;
            c
        })
        .collect();
    format!("{pool}-{suffix}")
}
