//! A watch-fed cache that keeps only what k3scale needs of each object.
//!
//! kube-runtime's reflector stores whole objects; 30,000 full Pods would
//! take far more memory than k3scale is allowed. This cache applies the same
//! watcher events (initial list buffered and swapped in at once, so a
//! re-list after `410 Expired` drops what was deleted meanwhile) to a
//! compact value made by a conversion function.

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
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
    /// Flips to true after the first complete list.
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

/// Run a watch on `api` forever (with kube's default backoff on errors),
/// feeding `cache` with `convert`ed objects and calling `changed` after each event.
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
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut buffer = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                let event = map_event(event, |k| (key_of(k.meta()), convert(k)));
                changed(&event);
                cache.apply(event, &mut buffer);
            }
            // The backoff retries; say why once per failure.
            Err(e) => tracing::warn!(%kind, error = %e, "watch failed, retrying"),
        }
    }
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
