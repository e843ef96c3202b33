//! The in-cluster state store (`state.backend: kubernetes`): ConfigMaps in
//! `state.namespace` for values, the journal and recent events, and a
//! `coordination.k8s.io` Lease per lock. Every write is conditioned on the
//! resourceVersion just read, so two replicas cannot both win a race.

use super::{Intent, JournalEntry, LockHolder, ScaleEvent, StateError, StateStore, StoredEvent, Versioned};
use crate::kube::KubeError;
use k3scale_core::Time;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::time::Duration;

const VALUES: &str = "k3scale-state";
const JOURNAL: &str = "k3scale-journal";
const EVENTS: &str = "k3scale-events";
/// A ConfigMap holds at most 1 MiB: keep the newest events only.
const EVENTS_KEPT: usize = 200;
/// Read-modify-write attempts that meet a 409 before giving up.
const RETRIES: usize = 8;

#[derive(Debug, Clone)]
pub struct KubernetesStore {
    namespace: String,
    maps: Api<ConfigMap>,
    leases: Api<Lease>,
}

fn unavailable(namespace: &str, e: impl std::fmt::Display) -> StateError {
    StateError::Unavailable {
        location: format!("kubernetes namespace {namespace}"),
        cause: e.to_string(),
    }
}

/// ConfigMap keys allow `[-._a-zA-Z0-9]`: `lifecycle/workers` → `lifecycle.workers`.
fn data_key(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect()
}

fn ms(t: Time) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(i64::try_from(t.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

fn time(t: &MicroTime) -> Time {
    Time::from_millis(u64::try_from(t.0.as_millisecond()).unwrap_or(0))
}

impl KubernetesStore {
    pub fn new(client: Client, namespace: &str) -> Self {
        KubernetesStore {
            namespace: namespace.to_string(),
            maps: Api::namespaced(client.clone(), namespace),
            leases: Api::namespaced(client, namespace),
        }
    }

    fn err(&self, what: &str, e: kube::Error) -> StateError {
        unavailable(&self.namespace, KubeError::from_kube(what.to_string(), e))
    }

    async fn read(&self, name: &str) -> Result<ConfigMap, StateError> {
        let map = self.maps.get_opt(name).await.map_err(|e| self.err(name, e))?;
        Ok(map.unwrap_or_else(|| ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }))
    }

    /// Write back what `read` returned: create if new, else replace with its
    /// resourceVersion. `Ok(false)`: someone else wrote in between.
    async fn write(&self, map: &ConfigMap) -> Result<bool, StateError> {
        let name = map.metadata.name.clone().unwrap_or_default();
        let result = if map.metadata.resource_version.is_none() {
            self.maps.create(&PostParams::default(), map).await
        } else {
            self.maps.replace(&name, &PostParams::default(), map).await
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.err(&name, e)),
        }
    }

    /// Apply `change` to ConfigMap `name` until it sticks (retrying on 409).
    async fn modify<T>(
        &self,
        name: &str,
        mut change: impl FnMut(&mut ConfigMap) -> Result<T, StateError> + Send,
    ) -> Result<T, StateError> {
        for _ in 0..RETRIES {
            let mut map = self.read(name).await?;
            let out = change(&mut map)?;
            if self.write(&map).await? {
                return Ok(out);
            }
        }
        Err(unavailable(
            &self.namespace,
            format!("{name}: too many concurrent writes"),
        ))
    }

    fn counter(map: &ConfigMap, key: &str) -> u64 {
        map.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn set_counter(map: &mut ConfigMap, key: &str, value: u64) {
        map.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_string(), value.to_string());
    }

    async fn lease(&self, name: &str) -> Result<Option<Lease>, StateError> {
        self.leases.get_opt(name).await.map_err(|e| self.err(name, e))
    }

    /// Write lease `name` held by `owner` until `now + ttl`, conditioned on
    /// `current` (create if `None`). `false`: someone else wrote first.
    async fn hold(
        &self,
        name: &str,
        current: Option<Lease>,
        owner: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<bool, StateError> {
        let spec = LeaseSpec {
            holder_identity: Some(owner.to_string()),
            renew_time: Some(MicroTime(ms(now))),
            lease_duration_seconds: Some(i32::try_from(ttl.as_secs().max(1)).unwrap_or(i32::MAX)),
            ..LeaseSpec::default()
        };
        let result = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.leases.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                lease.spec = Some(spec);
                self.leases.replace(name, &PostParams::default(), &lease).await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.err(name, e)),
        }
    }
}

fn holder(lease: &Lease) -> Option<LockHolder> {
    let spec = lease.spec.as_ref()?;
    let owner = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    let renewed = spec.renew_time.as_ref().map_or(Time::ZERO, time);
    let ttl = Duration::from_secs(
        spec.lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0),
    );
    Some(LockHolder {
        owner,
        expires_at: renewed + ttl,
    })
}

fn lease_name(lock: &str) -> String {
    format!("{}-lock", data_key(lock))
}

#[async_trait::async_trait]
impl StateStore for KubernetesStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StateError> {
        let map = self.read(VALUES).await?;
        let k = data_key(key);
        Ok(map.data.as_ref().and_then(|d| d.get(&k)).map(|value| Versioned {
            value: value.clone(),
            version: Self::counter(&map, &format!("k3scale.io/version.{k}")),
        }))
    }

    async fn put(&self, key: &str, value: &str, expected: u64) -> Result<u64, StateError> {
        let k = data_key(key);
        let version_key = format!("k3scale.io/version.{k}");
        self.modify(VALUES, |map| {
            let found = Self::counter(map, &version_key);
            if found != expected {
                return Err(StateError::Conflict {
                    key: key.to_string(),
                    expected,
                    found,
                });
            }
            map.data
                .get_or_insert_with(BTreeMap::new)
                .insert(k.clone(), value.to_string());
            Self::set_counter(map, &version_key, found + 1);
            Ok(found + 1)
        })
        .await
    }

    async fn open(&self, intent: &Intent, now: Time) -> Result<u64, StateError> {
        self.modify(JOURNAL, |map| {
            let id = Self::counter(map, "k3scale.io/next-id") + 1;
            let entry = JournalEntry {
                id,
                intent: intent.clone(),
                opened_at: now,
            };
            let text = serde_json::to_string(&entry).map_err(|e| unavailable("journal", e))?;
            map.data
                .get_or_insert_with(BTreeMap::new)
                .insert(format!("{id:012}"), text);
            Self::set_counter(map, "k3scale.io/next-id", id);
            Ok(id)
        })
        .await
    }

    async fn update(&self, id: u64, detail: &serde_json::Value) -> Result<(), StateError> {
        self.modify(JOURNAL, |map| {
            let key = format!("{id:012}");
            let Some(text) = map.data.as_ref().and_then(|d| d.get(&key)) else {
                return Ok(());
            };
            let mut entry: JournalEntry =
                serde_json::from_str(text).map_err(|e| unavailable("journal", e))?;
            entry.intent.detail = detail.clone();
            let text = serde_json::to_string(&entry).map_err(|e| unavailable("journal", e))?;
            map.data.get_or_insert_with(BTreeMap::new).insert(key, text);
            Ok(())
        })
        .await
    }

    /// A closed intent is dropped: only unfinished ones matter after a crash.
    async fn close(&self, id: u64, _outcome: &str, _now: Time) -> Result<(), StateError> {
        self.modify(JOURNAL, |map| {
            if let Some(d) = map.data.as_mut() {
                d.remove(&format!("{id:012}"));
            }
            Ok(())
        })
        .await
    }

    async fn unfinished(&self) -> Result<Vec<JournalEntry>, StateError> {
        let map = self.read(JOURNAL).await?;
        Ok(map
            .data
            .unwrap_or_default()
            .values()
            .filter_map(|text| serde_json::from_str(text).ok())
            .collect())
    }

    async fn push_event(&self, event: &ScaleEvent) -> Result<u64, StateError> {
        let text = serde_json::to_string(event).map_err(|e| unavailable("events", e))?;
        self.modify(EVENTS, |map| {
            let id = Self::counter(map, "k3scale.io/next-id") + 1;
            let data = map.data.get_or_insert_with(BTreeMap::new);
            data.insert(format!("{id:012}"), text.clone());
            while data.len() > EVENTS_KEPT {
                data.pop_first();
            }
            Self::set_counter(map, "k3scale.io/next-id", id);
            Ok(id)
        })
        .await
    }

    async fn events(&self, before: Option<u64>, limit: usize) -> Result<Vec<StoredEvent>, StateError> {
        let map = self.read(EVENTS).await?;
        Ok(map
            .data
            .unwrap_or_default()
            .iter()
            .rev()
            .filter_map(|(k, text)| Some((k.parse::<u64>().ok()?, text)))
            .filter(|(id, _)| before.is_none_or(|b| *id < b))
            .filter_map(|(id, text)| {
                Some(StoredEvent {
                    id,
                    event: serde_json::from_str(text).ok()?,
                })
            })
            .take(limit)
            .collect())
    }

    async fn lock(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<Result<(), LockHolder>, StateError> {
        let lease_name = lease_name(name);
        let current = self.lease(&lease_name).await?;
        if let Some(h) = current.as_ref().and_then(holder)
            && h.owner != owner
            && h.expires_at > now
        {
            return Ok(Err(h));
        }
        if self.hold(&lease_name, current, owner, ttl, now).await? {
            return Ok(Ok(()));
        }
        // Lost a race: say who won.
        let winner = self.lease(&lease_name).await?.as_ref().and_then(holder);
        Ok(Err(winner.unwrap_or(LockHolder {
            owner: "unknown".into(),
            expires_at: now + ttl,
        })))
    }

    async fn take_over(
        &self,
        name: &str,
        dead_owner: &str,
        owner: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<bool, StateError> {
        let lease_name = lease_name(name);
        let current = self.lease(&lease_name).await?;
        if current
            .as_ref()
            .and_then(holder)
            .is_none_or(|h| h.owner != dead_owner)
        {
            return Ok(false);
        }
        self.hold(&lease_name, current, owner, ttl, now).await
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<bool, StateError> {
        let lease_name = lease_name(name);
        let Some(mut lease) = self.lease(&lease_name).await? else {
            return Ok(false);
        };
        if holder(&lease).is_none_or(|h| h.owner != owner) {
            return Ok(false);
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = Some(String::new());
        }
        match self
            .leases
            .replace(&lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.err(&lease_name, e)),
        }
    }
}
