//! The objects, one resourceVersion counter for all of them (as etcd has),
//! and the history watches are served from.

use crate::resources::Resource;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Key of one object: plural, namespace (`""` if cluster-scoped), name.
pub type Key = (&'static str, String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub plural: &'static str,
    pub namespace: String,
    pub kind: EventType,
    pub object: Value,
}

/// Changes kept for watches; older resourceVersions get 410 Expired.
const HISTORY: usize = 100_000;

#[derive(Debug)]
pub struct Store {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    history: VecDeque<Arc<Change>>,
    /// Watches from a resourceVersion below this are expired.
    oldest_rv: u64,
    uid_seed: u64,
    uid_count: u64,
    pub changes: broadcast::Sender<Arc<Change>>,
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn rv_of(object: &Value) -> Option<&str> {
    object["metadata"]["resourceVersion"].as_str()
}

impl Store {
    pub fn new() -> Store {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Store {
            objects: BTreeMap::new(),
            // Like a fresh etcd, versions do not start at 1.
            rv: 400,
            history: VecDeque::new(),
            oldest_rv: 0,
            uid_seed: seed,
            uid_count: 0,
            changes: broadcast::channel(16_384).0,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn oldest_rv(&self) -> u64 {
        self.oldest_rv
    }

    pub fn new_uid(&mut self) -> String {
        self.uid_count += 1;
        let a = self.uid_seed ^ self.uid_count.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            (a & 0xfff) as u16,
            (self.uid_count & 0xfff) as u16,
            self.uid_count
        )
    }

    pub fn get(&self, r: &Resource, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(r.plural, namespace.to_string(), name.to_string()))
    }

    /// Objects of a resource, in key order; `namespace` `""` means all.
    pub fn list<'a>(&'a self, r: &Resource, namespace: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        let plural = r.plural;
        self.objects
            .iter()
            .filter(move |((p, ns, _), _)| *p == plural && (namespace.is_empty() || ns == namespace))
            .map(|(_, v)| v)
    }

    /// Store `object` (new or changed) under a fresh resourceVersion and tell the watches.
    pub fn put(&mut self, r: &Resource, mut object: Value) -> Value {
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or("").to_string();
        let name = object["metadata"]["name"].as_str().unwrap_or("").to_string();
        let key = (r.plural, namespace.clone(), name);
        let kind = if self.objects.contains_key(&key) {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.rv += 1;
        object["kind"] = json!(r.kind);
        object["apiVersion"] = json!(r.api_version());
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert(key, object.clone());
        self.record(r, namespace, kind, object.clone());
        object
    }

    pub fn remove(&mut self, r: &Resource, namespace: &str, name: &str) -> Option<Value> {
        let mut object = self
            .objects
            .remove(&(r.plural, namespace.to_string(), name.to_string()))?;
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(r, namespace.to_string(), EventType::Deleted, object.clone());
        Some(object)
    }

    fn record(&mut self, r: &Resource, namespace: String, kind: EventType, object: Value) {
        let change = Arc::new(Change {
            rv: self.rv,
            plural: r.plural,
            namespace,
            kind,
            object,
        });
        self.history.push_back(change.clone());
        if self.history.len() > HISTORY
            && let Some(dropped) = self.history.pop_front()
        {
            self.oldest_rv = dropped.rv;
        }
        // No watcher listening is fine.
        let _ = self.changes.send(change);
    }

    /// Changes after `rv`, oldest first.
    pub fn since(&self, rv: u64) -> Vec<Arc<Change>> {
        let start = self.history.partition_point(|c| c.rv <= rv);
        self.history.range(start..).cloned().collect()
    }

    /// Forget the history (as etcd compaction does): older watches get 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.oldest_rv = self.rv;
    }
}
