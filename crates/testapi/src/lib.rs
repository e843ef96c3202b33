//! A test Kubernetes API server: the part of the REST API k3scale uses,
//! answering as a real API server does (checked against recorded answers of
//! a real v1.36 server in `shared/kube-api-golden`).
//!
//! It serves list (with `resourceVersion`, `limit` / `continue`, label and
//! field selectors), watch (history replay, bookmarks, `410 Expired` once
//! compacted), get, create, update (optimistic concurrency), patch (merge,
//! strategic as merge, JSON patch with `test`), delete (`Status` bodies,
//! UID preconditions, graceful pod deletion), `pods/eviction` judged against
//! PodDisruptionBudgets, `metrics.k8s.io` node metrics, bearer-token auth and
//! RBAC rules. Two controllers run inside: the disruption controller (PDB
//! status) and a kubelet that finishes graceful pod deletions.
//!
//! Tests drive the cluster's side (the scheduler, kubelets, other
//! controllers) through [`TestApiServer`]'s methods.

mod disruption;
mod node_lifecycle;
pub mod resources;
pub use node_lifecycle::{NOT_READY, UNREACHABLE};
mod select;
mod server;
mod status;
mod store;

use resources::Resource;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Store;

/// Annotation on a pod whose kubelet never finishes its deletion (a hung node).
pub const NEVER_TERMINATE: &str = "testapi.k3scale.io/never-terminate";

#[derive(Debug, Clone)]
pub struct Options {
    /// Bearer token clients must send; `None` accepts everyone.
    pub token: Option<String>,
    /// Who the token authenticates as (RBAC messages name it).
    pub user: String,
    /// How often open watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// How long the kubelet takes to stop a deleted pod (at most its grace period).
    pub termination_delay: Duration,
    /// How long a Node stays Ready with the not-ready taint before the node
    /// lifecycle controller removes it (~10 ms on the recorded v1.36).
    pub startup_taint_delay: Duration,
}

/// What TokenReviews and SubjectAccessReviews answer.
#[derive(Debug, Clone, Default)]
pub struct Reviews {
    /// Tokens a TokenReview authenticates: token → (user, groups).
    pub tokens: BTreeMap<String, (String, Vec<String>)>,
    /// Non-resource URLs a SubjectAccessReview allows `get` on: (user, path).
    pub grants: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token: Some("test-token".into()),
            user: "system:serviceaccount:k3scale:k3scale".into(),
            bookmark_interval: Duration::from_secs(1),
            termination_delay: Duration::from_millis(200),
            startup_taint_delay: Duration::from_millis(10),
        }
    }
}

/// What `/apis/metrics.k8s.io/v1beta1/nodes` answers.
#[derive(Debug, Clone)]
pub enum MetricsMode {
    /// No APIService: plain-text 404.
    Absent,
    /// APIService registered, backend missing: plain-text 503.
    Unavailable,
    /// Node name → (cpu, memory) usage quantities, e.g. `("1500m", "2Gi")`.
    Serving(BTreeMap<String, (String, String)>),
}

/// One request as RBAC sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestRecord {
    pub verb: String,
    pub group: String,
    /// The plural, with `/subresource` if any (`pods/eviction`).
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

/// One RBAC PolicyRule (`*` matches anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
}

impl Rule {
    pub fn allows(&self, verb: &str, group: &str, resource: &str) -> bool {
        let any = |list: &[String], x: &str| list.iter().any(|v| v == "*" || v == x);
        any(&self.verbs, verb) && any(&self.api_groups, group) && any(&self.resources, resource)
    }
}

#[derive(Debug)]
struct Shared {
    options: Options,
    store: Mutex<Store>,
    metrics: Mutex<MetricsMode>,
    /// `None`: every authenticated request is allowed.
    permissions: Mutex<Option<Vec<Rule>>>,
    reviews: Mutex<Reviews>,
    audit: Mutex<Vec<RequestRecord>>,
    /// Pods being deleted gracefully: when it started, their grace period.
    terminating: Mutex<HashMap<(String, String), (Instant, Duration)>>,
    disruption_paused: AtomicBool,
    node_lifecycle_paused: AtomicBool,
    /// While true every request fails with 503 (an apiserver restart).
    down: AtomicBool,
    close_watches: tokio::sync::watch::Sender<u64>,
    /// While true, new watch requests wait (the connection is down).
    watches_held: tokio::sync::watch::Sender<bool>,
}

/// A running server on 127.0.0.1; it stops when dropped.
#[derive(Debug)]
pub struct TestApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl TestApiServer {
    pub async fn start(options: Options) -> std::io::Result<TestApiServer> {
        let shared = Arc::new(Shared {
            options,
            store: Mutex::new(Store::new()),
            metrics: Mutex::new(MetricsMode::Absent),
            permissions: Mutex::new(None),
            reviews: Mutex::new(Reviews::default()),
            audit: Mutex::new(Vec::new()),
            terminating: Mutex::new(HashMap::new()),
            disruption_paused: AtomicBool::new(false),
            node_lifecycle_paused: AtomicBool::new(false),
            down: AtomicBool::new(false),
            close_watches: tokio::sync::watch::channel(0).0,
            watches_held: tokio::sync::watch::channel(false).0,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(server::handle)
            .with_state(shared.clone());
        let serve = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let kubelet = tokio::spawn(kubelet(shared.clone()));
        let lifecycle = tokio::spawn(node_lifecycle_controller(shared.clone()));
        Ok(TestApiServer {
            addr,
            shared,
            tasks: vec![serve, kubelet, lifecycle],
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token(&self) -> Option<&str> {
        self.shared.options.token.as_deref()
    }

    /// Create or replace an object as the cluster would (the scheduler, a
    /// kubelet, a controller): no validation, uid and timestamps filled in.
    /// Returns the stored object.
    pub fn apply(&self, object: Value) -> Value {
        let r = resource_of(&object);
        let mut store = self.shared.store.lock().expect("store lock");
        let ns = object["metadata"]["namespace"].as_str().unwrap_or("").to_string();
        let name = object["metadata"]["name"].as_str().unwrap_or("").to_string();
        let mut object = object;
        match store.get(&r, &ns, &name) {
            Some(current) => {
                for key in ["uid", "creationTimestamp", "generation"] {
                    if object["metadata"][key].is_null() && !current["metadata"][key].is_null() {
                        object["metadata"][key] = current["metadata"][key].clone();
                    }
                }
                if r.plural == "poddisruptionbudgets" && current["spec"] != object["spec"] {
                    let g = current["metadata"]["generation"].as_i64().unwrap_or(1);
                    object["metadata"]["generation"] = serde_json::json!(g + 1);
                }
                if object["status"].is_null() && !current["status"].is_null() {
                    object["status"] = current["status"].clone();
                }
            }
            None => {
                if object["metadata"]["uid"].is_null() {
                    object["metadata"]["uid"] = serde_json::json!(store.new_uid());
                }
                if object["metadata"]["creationTimestamp"].is_null() {
                    object["metadata"]["creationTimestamp"] = serde_json::json!(store::now_rfc3339());
                }
                if object["metadata"]["generation"].is_null() && r.plural != "nodes" {
                    object["metadata"]["generation"] = serde_json::json!(1);
                }
            }
        }
        let stored = store.put(&r, object);
        server::after_change(&self.shared, &mut store, &r, &ns);
        stored
    }

    pub fn get(&self, r: &Resource, namespace: &str, name: &str) -> Option<Value> {
        self.shared
            .store
            .lock()
            .expect("store lock")
            .get(r, namespace, name)
            .cloned()
    }

    /// Every object of a resource, all namespaces.
    pub fn list(&self, r: &Resource) -> Vec<Value> {
        self.shared
            .store
            .lock()
            .expect("store lock")
            .list(r, "")
            .cloned()
            .collect()
    }

    /// Remove an object at once (a force delete, or the kubelet finishing).
    pub fn remove(&self, r: &Resource, namespace: &str, name: &str) -> Option<Value> {
        let mut store = self.shared.store.lock().expect("store lock");
        let gone = store.remove(r, namespace, name);
        server::after_change(&self.shared, &mut store, r, namespace);
        gone
    }

    /// Close every open watch stream (a dropped connection).
    pub fn disconnect_watches(&self) {
        self.shared.close_watches.send_modify(|g| *g += 1);
    }

    /// Cut watches off until [`TestApiServer::release_watches`]: open streams
    /// close and new ones wait, so changes made meanwhile are missed.
    pub fn hold_watches(&self) {
        self.shared.watches_held.send_replace(true);
        self.disconnect_watches();
    }

    pub fn release_watches(&self) {
        self.shared.watches_held.send_replace(false);
    }

    /// An apiserver restart: open watches close and every request fails
    /// until [`TestApiServer::come_back`]. The store (etcd) keeps changing
    /// through [`TestApiServer::apply`] meanwhile.
    pub fn go_down(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
        self.disconnect_watches();
    }

    pub fn come_back(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
    }

    /// Forget the change history, as etcd compaction does: watches from an
    /// older resourceVersion get `410 Expired` and clients must re-list.
    pub fn compact(&self) {
        self.shared.store.lock().expect("store lock").compact();
    }

    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().expect("store lock").resource_version()
    }

    /// Hold PDB statuses where they are (the controller-manager is down).
    pub fn pause_disruption_controller(&self, paused: bool) {
        self.shared.disruption_paused.store(paused, Ordering::SeqCst);
        if !paused {
            let mut store = self.shared.store.lock().expect("store lock");
            disruption::reconcile(&mut store, "");
        }
    }

    /// Stop (or restart) the node lifecycle controller: while it is
    /// stopped a Node that turned Ready keeps its not-ready taint, holding
    /// open the window a real cluster shows for ~10 ms.
    pub fn pause_node_lifecycle_controller(&self, paused: bool) {
        self.shared.node_lifecycle_paused.store(paused, Ordering::SeqCst);
    }

    /// The Node's kubelet stops posting status: every condition turns
    /// `Unknown`, and the node lifecycle controller taints it unreachable.
    pub fn stop_heartbeat(&self, node: &str) {
        let mut store = self.shared.store.lock().expect("store lock");
        if let Some(mut n) = store.get(&resources::NODES, "", node).cloned() {
            node_lifecycle::stop_heartbeat(&mut n);
            store.put(&resources::NODES, n);
        }
    }

    pub fn set_metrics(&self, mode: MetricsMode) {
        *self.shared.metrics.lock().expect("metrics lock") = mode;
    }

    /// Enforce RBAC rules for the token's user; `None` allows everything.
    /// Who TokenReviews authenticate and what SubjectAccessReviews allow.
    pub fn set_reviews(&self, reviews: Reviews) {
        *self.shared.reviews.lock().expect("reviews lock") = reviews;
    }

    pub fn set_permissions(&self, rules: Option<Vec<Rule>>) {
        *self.shared.permissions.lock().expect("permissions lock") = rules;
    }

    /// Every request served so far, as (verb, group, resource, namespace, name).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.audit.lock().expect("audit lock").clone()
    }
}

fn resource_of(object: &Value) -> Resource {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    resources::by_kind(api_version, kind)
        .unwrap_or_else(|| panic!("testapi does not serve {api_version} {kind}"))
}

/// The node lifecycle controller of kube-controller-manager (see [`node_lifecycle`]).
async fn node_lifecycle_controller(shared: Arc<Shared>) {
    let mut controller = node_lifecycle::Controller::default();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    loop {
        tick.tick().await;
        if shared.node_lifecycle_paused.load(Ordering::SeqCst) {
            continue;
        }
        let mut store = shared.store.lock().expect("store lock");
        controller.reconcile(&mut store, shared.options.startup_taint_delay);
    }
}

/// Finishes graceful pod deletions after `termination_delay` (capped at the
/// pod's grace period), except for pods annotated [`NEVER_TERMINATE`].
async fn kubelet(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        let due: Vec<(String, String)> = {
            let mut terminating = shared.terminating.lock().expect("terminating lock");
            let due: Vec<_> = terminating
                .iter()
                .filter(|(_, (since, grace))| since.elapsed() >= shared.options.termination_delay.min(*grace))
                .map(|(k, _)| k.clone())
                .collect();
            for k in &due {
                terminating.remove(k);
            }
            due
        };
        if due.is_empty() {
            continue;
        }
        let mut store = shared.store.lock().expect("store lock");
        for (ns, name) in due {
            let hung = store
                .get(&resources::PODS, &ns, &name)
                .is_some_and(|p| p["metadata"]["annotations"][NEVER_TERMINATE] == "true");
            if !hung {
                store.remove(&resources::PODS, &ns, &name);
                server::after_change(&shared, &mut store, &resources::PODS, &ns);
            }
        }
    }
}
