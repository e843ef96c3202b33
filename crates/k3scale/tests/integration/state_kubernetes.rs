//! The Kubernetes state store (ConfigMaps and Leases) against the test API
//! server: the same behaviour as the SQLite store, each handle another
//! replica's client.

use k3scale::state::StateStore;
use k3scale::state::kubernetes::KubernetesStore;
use k3scale_testsupport::kubefix;
use std::sync::Arc;

async fn kubernetes() -> (kubefix::Kube, impl Fn() -> Arc<dyn StateStore> + Sync) {
    let k = kubefix::start().await;
    let client = k.client.clone();
    (k, move || {
        Arc::new(KubernetesStore::new(client.clone(), "k3scale")) as Arc<dyn StateStore>
    })
}

k3scale_testsupport::state_store_suite!(kubernetes(), 50);
