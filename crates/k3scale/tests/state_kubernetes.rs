//! The Kubernetes state store (ConfigMaps and Leases) against the test API
//! server: the same behaviour as the SQLite store.
#![allow(clippy::unwrap_used)]

mod kubefix;
mod statefix;

use k3scale::state::StateStore;
use k3scale::state::kubernetes::KubernetesStore;
use std::sync::Arc;

async fn opener() -> (kubefix::Kube, impl Fn() -> Arc<dyn StateStore> + Sync) {
    let k = kubefix::start().await;
    let client = k.client.clone();
    (k, move || {
        Arc::new(KubernetesStore::new(client.clone(), "k3scale")) as Arc<dyn StateStore>
    })
}

#[tokio::test]
async fn values_are_compare_and_swap() {
    let (_k, open) = opener().await;
    statefix::values_are_compare_and_swap(&open).await;
}

#[tokio::test]
async fn the_journal_survives_a_reopen() {
    let (_k, open) = opener().await;
    statefix::the_journal_survives_a_reopen(&open).await;
}

#[tokio::test]
async fn events_page_newest_first() {
    let (_k, open) = opener().await;
    statefix::events_page_newest_first(&open).await;
}

#[tokio::test]
async fn only_the_owner_renews_or_releases_a_lock() {
    let (_k, open) = opener().await;
    statefix::only_the_owner_renews_or_releases_a_lock(&open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_hold_the_lock_together() {
    let (_k, open) = opener().await;
    statefix::two_handles_never_hold_the_lock_together(&open, 50).await;
}
