//! A watch-fed cache that keeps only what k3scale needs of each object.
//!
//! kube-runtime's reflector stores whole objects; 30,000 full Pods would
//! take far more memory than k3scale is allowed. This cache applies the same
//! watcher events (initial list buffered and swapped in at once, so a
//! re-list after `410 Expired` drops what was deleted meanwhile) to a
//! compact value made by a conversion function.

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// Object key: `namespace/name` (just `name` when cluster-scoped).
pub fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or("")),
        None => meta.name.clone().unwrap_or_default(),
    }
}

#[derive(Debug)]
pub struct Cache<T> {
    items: RwLock<BTreeMap<String, T>>,
    /// True after a complete list, false again while the watch fails.
    synced: watch::Sender<bool>,
}

impl<T: Clone> Cache<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(Cache {
            items: RwLock::new(BTreeMap::new()),
            synced: watch::channel(false).0,
        })
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// The watch failed: what the cache holds may be out of date.
    pub fn mark_stale(&self) {
        self.synced.send_replace(false);
    }

    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        // Only fails if the sender is gone, and `self` holds it.
        let _ = rx.wait_for(|synced| *synced).await;
    }

    pub fn get(&self, key: &str) -> Option<T> {
        self.read().get(key).cloned()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Read the whole cache under one lock.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, T>> {
        self.items.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, T>> {
        self.items.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply one watcher event; `buffer` holds the initial list in progress.
    pub fn apply(&self, event: Event<(String, T)>, buffer: &mut Option<BTreeMap<String, T>>) {
        match event {
            Event::Init => *buffer = Some(BTreeMap::new()),
            Event::InitApply((key, value)) => {
                buffer.get_or_insert_with(BTreeMap::new).insert(key, value);
            }
            Event::InitDone => {
                *self.write() = buffer.take().unwrap_or_default();
                self.synced.send_replace(true);
            }
            Event::Apply((key, value)) => {
                self.write().insert(key, value);
            }
            Event::Delete((key, _)) => {
                self.write().remove(&key);
            }
        }
    }
}

/// Longest wait between attempts to re-list after a watch failed: an
/// apiserver back from a restart is seen within this (client-go's 30 s
/// leaves a controller acting on minutes-old caches).
pub const RETRY_MAX: Duration = Duration::from_secs(5);
const RETRY_FIRST: Duration = Duration::from_millis(200);

/// The wait before attempt `failures` (1, 2...): doubling from 200 ms up to
/// [`RETRY_MAX`], each drawn from its upper half so replicas do not retry
/// in lockstep.
pub fn retry_delay(failures: u32, random: f64) -> Duration {
    let doubled = RETRY_FIRST.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)));
    let d = doubled.min(RETRY_MAX);
    d.mul_f64(0.5 + 0.5 * random.clamp(0.0, 1.0))
}

/// Run a watch on `api` forever, feeding `cache` with `convert`ed objects
/// and calling `changed` after each event.
///
/// When the watch fails the cache is marked stale at once (nothing may act
/// on it), and the watch starts over with a fresh list after
/// [`retry_delay`]: after an outage the history it would resume from is
/// often compacted anyway. The cache is synced again, and `changed` sees
/// `InitDone`, when that list completes.
pub async fn run<K, T>(
    api: kube::Api<K>,
    config: watcher::Config,
    cache: Arc<Cache<T>>,
    mut convert: impl FnMut(&K) -> T + Send + 'static,
    changed: impl Fn(&Event<(String, T)>) + Send + 'static,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
    T: Clone + Send + Sync + 'static,
{
    let kind = K::kind(&()).to_string();
    let mut failures = 0u32;
    loop {
        let mut stream = watcher::watcher(api.clone(), config.clone()).boxed();
        let mut buffer = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    let event = map_event(event, |k| (key_of(k.meta()), convert(k)));
                    let listed = matches!(event, Event::InitDone);
                    // Applied before `changed` is told, so a reconcile it
                    // triggers sees the change (the list's items need no telling).
                    if matches!(event, Event::InitApply(_)) {
                        cache.apply(event, &mut buffer);
                    } else {
                        cache.apply(event.clone(), &mut buffer);
                        changed(&event);
                    }
                    if listed {
                        if failures > 0 {
                            tracing::info!(%kind, "watch recovered: listed again");
                        }
                        failures = 0;
                    }
                }
                Err(e) => {
                    cache.mark_stale();
                    failures += 1;
                    // Once per outage at WARN; the retries that follow at DEBUG.
                    if failures == 1 {
                        tracing::warn!(%kind, error = %super::root_cause(&e), "watch failed: cache stale until it lists again");
                    } else {
                        tracing::debug!(%kind, error = %e, failures, "watch still failing");
                    }
                    break;
                }
            }
        }
        tokio::time::sleep(retry_delay(failures.max(1), jitter())).await;
    }
}

/// A number in [0, 1) that differs between processes and calls: enough to
/// spread retries (std's hasher keys are randomly seeded).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

fn map_event<K, T>(event: Event<K>, mut f: impl FnMut(&K) -> T) -> Event<T> {
    match event {
        Event::Apply(k) => Event::Apply(f(&k)),
        Event::Delete(k) => Event::Delete(f(&k)),
        Event::Init => Event::Init,
        Event::InitApply(k) => Event::InitApply(f(&k)),
        Event::InitDone => Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_200ms_and_never_wait_more_than_5s() {
        assert_eq!(retry_delay(1, 1.0), Duration::from_millis(200));
        assert_eq!(retry_delay(2, 1.0), Duration::from_millis(400));
        assert_eq!(retry_delay(5, 1.0), Duration::from_millis(3200));
        assert_eq!(retry_delay(6, 1.0), RETRY_MAX);
        assert_eq!(retry_delay(60, 1.0), RETRY_MAX, "no overflow, still capped");
        // Jitter spreads each wait over its upper half.
        assert_eq!(retry_delay(60, 0.0), RETRY_MAX / 2);
        assert!(jitter() < 1.0 && jitter() >= 0.0);
    }
}
