//! The cluster as k3scale sees it over the Kubernetes API: watch-fed caches
//! of Nodes, Pods, PodDisruptionBudgets, DaemonSets, PersistentVolumeClaims
//! and PersistentVolumes, and the writes.

use super::KubeError;
use super::cache::{self, Cache};
use super::convert::{self, PdbIndex};
use super::pod_cache::{CachedPod, PodCompactor, PodShape};
use k3scale_core::drain::EvictionResult;
use k3scale_core::model::NodeAffinity;
use k3scale_core::{Node, Pod, Snapshot};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, Preconditions};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Taint a draining node carries, so nothing new lands on it.
pub const DRAINING_TAINT: &str = "k3scale.io/draining";
/// Namespace of K3s's node-password secrets.
const NODE_PASSWORD_NAMESPACE: &str = "kube-system";
/// Namespace Node events go to (as the kubelet's do).
const EVENT_NAMESPACE: &str = "default";
pub const REPORTING_CONTROLLER: &str = "k3scale.io/autoscaler";
/// Attempts of a read-modify-write that meets 409 Conflicts.
const CONFLICT_RETRIES: usize = 5;

#[derive(Debug, Clone)]
struct CachedNode {
    node: Node,
    uid: String,
}

/// What kind of Event: `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

pub struct KubeCluster {
    client: Client,
    /// This replica's name, as `reportingInstance` of its Events.
    identity: String,
    nodes: Arc<Cache<CachedNode>>,
    pods: Arc<Cache<CachedPod>>,
    pdbs: Arc<Cache<PodDisruptionBudget>>,
    daemonsets: Arc<Cache<Option<Pod>>>,
    /// Each claim's bound volume (`spec.volumeName`), `None` while unbound.
    claims: Arc<Cache<Option<String>>>,
    /// Each volume's required node affinity, if it has one.
    volumes: Arc<Cache<Option<NodeAffinity>>>,
    /// Bumped when a reconcile should run now: a pod became unschedulable, a node changed.
    changes: watch::Sender<u64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("identity", &self.identity)
            .field("nodes", &self.nodes.len())
            .field("pods", &self.pods.len())
            .field("synced", &self.is_synced())
            .finish()
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn bump(changes: &watch::Sender<u64>) {
    changes.send_modify(|n| *n = n.wrapping_add(1));
}

/// For a cache whose changes alone need no reconcile: one when it has
/// listed (at start, and after a failed watch).
fn bump_when_listed<T>(changes: &watch::Sender<u64>) -> impl Fn(&Event<(String, T)>) + Send + 'static {
    let tx = changes.clone();
    move |e| {
        if matches!(e, Event::InitDone) {
            bump(&tx);
        }
    }
}

impl KubeCluster {
    /// Start the watches. Call [`KubeCluster::wait_synced`] before the first snapshot.
    pub fn start(client: Client, identity: &str) -> KubeCluster {
        let changes = watch::channel(0).0;
        let (nodes, pods, pdbs, daemonsets) = (Cache::new(), Cache::new(), Cache::new(), Cache::new());
        let (claims, volumes) = (Cache::new(), Cache::new());
        let cfg = || watcher::Config::default().page_size(100);
        let mut tasks = Vec::new();

        let tx = changes.clone();
        tasks.push(tokio::spawn(cache::run(
            Api::<core::Node>::all(client.clone()),
            cfg(),
            nodes.clone(),
            |n: &core::Node| CachedNode {
                node: convert::node(n),
                uid: n.metadata.uid.clone().unwrap_or_default(),
            },
            move |e: &Event<(String, CachedNode)>| {
                if matches!(e, Event::Apply(_) | Event::Delete(_) | Event::InitDone) {
                    bump(&tx);
                }
            },
        )));

        let tx = changes.clone();
        tasks.push(tokio::spawn(cache::run(
            Api::<core::Pod>::all(client.clone()),
            cfg(),
            pods.clone(),
            {
                let mut compactor = PodCompactor::default();
                move |p: &core::Pod| compactor.compact(p)
            },
            move |e: &Event<(String, CachedPod)>| match e {
                Event::Apply((_, p)) if p.unschedulable() => bump(&tx),
                Event::Delete(_) | Event::InitDone => bump(&tx),
                _ => {}
            },
        )));

        tasks.push(tokio::spawn(cache::run(
            Api::<PodDisruptionBudget>::all(client.clone()),
            cfg(),
            pdbs.clone(),
            |p: &PodDisruptionBudget| {
                let mut p = p.clone();
                p.metadata.managed_fields = None;
                p.metadata.annotations = None;
                p
            },
            bump_when_listed(&changes),
        )));

        tasks.push(tokio::spawn(cache::run(
            Api::<DaemonSet>::all(client.clone()),
            cfg(),
            daemonsets.clone(),
            convert::daemonset_pod,
            bump_when_listed(&changes),
        )));

        // Volumes pin pods to nodes: read when a snapshot is made.
        tasks.push(tokio::spawn(cache::run(
            Api::<core::PersistentVolumeClaim>::all(client.clone()),
            cfg(),
            claims.clone(),
            |c: &core::PersistentVolumeClaim| c.spec.as_ref().and_then(|s| s.volume_name.clone()),
            bump_when_listed(&changes),
        )));
        tasks.push(tokio::spawn(cache::run(
            Api::<core::PersistentVolume>::all(client.clone()),
            cfg(),
            volumes.clone(),
            convert::volume_affinity,
            bump_when_listed(&changes),
        )));

        KubeCluster {
            client,
            identity: identity.to_string(),
            nodes,
            pods,
            pdbs,
            daemonsets,
            claims,
            volumes,
            changes,
            tasks,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Every cache has listed and its watch has not failed since: safe to act on.
    pub fn is_synced(&self) -> bool {
        self.stale().is_empty()
    }

    /// The caches not synced now (not listed yet, or their watch is failing).
    pub fn stale(&self) -> Vec<&'static str> {
        [
            ("nodes", self.nodes.is_synced()),
            ("pods", self.pods.is_synced()),
            ("poddisruptionbudgets", self.pdbs.is_synced()),
            ("daemonsets", self.daemonsets.is_synced()),
            ("persistentvolumeclaims", self.claims.is_synced()),
            ("persistentvolumes", self.volumes.is_synced()),
        ]
        .into_iter()
        .filter(|(_, synced)| !synced)
        .map(|(kind, _)| kind)
        .collect()
    }

    pub async fn wait_synced(&self) {
        self.nodes.wait_synced().await;
        self.pods.wait_synced().await;
        self.pdbs.wait_synced().await;
        self.daemonsets.wait_synced().await;
        self.claims.wait_synced().await;
        self.volumes.wait_synced().await;
    }

    /// Changes that should trigger a reconcile now (see `changes`).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Put the cluster's nodes, pods, DaemonSet templates and PDB budgets into `snapshot`.
    pub fn fill(&self, snapshot: &mut Snapshot) {
        let pdbs = self.pdbs.read();
        let index = PdbIndex::new(pdbs.values());
        drop(pdbs);
        snapshot.nodes = self.nodes.read().values().map(|n| n.node.clone()).collect();
        // Pods of one workload share a shape: match each shape once per namespace.
        let pods = self.pods.read();
        let (claims, volumes) = (self.claims.read(), self.volumes.read());
        let mut covering: HashMap<(&str, *const PodShape), Option<String>> = HashMap::new();
        snapshot.pods = pods
            .iter()
            .map(|(key, c)| {
                let namespace = key.split_once('/').map_or("", |(ns, _)| ns);
                let pdb = covering
                    .entry((namespace, Arc::as_ptr(&c.shape)))
                    .or_insert_with(|| index.covering(namespace, &c.shape.labels))
                    .clone();
                let mut pod = c.to_pod(key, pdb);
                if !c.claims.is_empty() {
                    // A claim not bound yet (WaitForFirstConsumer) pins nothing.
                    pod.volume_affinity = c
                        .claims
                        .iter()
                        .filter_map(|claim| claims.get(&format!("{namespace}/{claim}"))?.as_ref())
                        .filter_map(|volume| volumes.get(volume)?.clone())
                        .collect();
                }
                pod
            })
            .collect();
        drop((pods, claims, volumes));
        snapshot.daemonsets = self.daemonsets.read().values().flatten().cloned().collect();
        snapshot.pdbs = index.allowed;
    }

    pub fn node(&self, name: &str) -> Option<Node> {
        self.nodes.get(name).map(|n| n.node)
    }

    /// Pods bound to `node`, as the cache has them now.
    pub fn pods_on_node(&self, node: &str) -> Vec<Pod> {
        self.pods
            .read()
            .iter()
            .filter(|(_, c)| c.node_name.as_deref() == Some(node))
            .map(|(key, c)| c.to_pod(key, None))
            .collect()
    }

    fn nodes_api(&self) -> Api<core::Node> {
        Api::all(self.client.clone())
    }

    /// Set `spec.unschedulable` and add or remove the draining taint, as a
    /// merge patch conditioned on the resourceVersion just read (the taint
    /// list is replaced whole, so a concurrent change must not be lost).
    async fn set_draining(&self, node: &str, draining: bool) -> Result<(), KubeError> {
        let what = || format!("{} node {node}", if draining { "cordon" } else { "uncordon" });
        let api = self.nodes_api();
        let mut last = None;
        for _ in 0..CONFLICT_RETRIES {
            let current = api.get(node).await.map_err(|e| KubeError::from_kube(what(), e))?;
            let mut taints: Vec<core::Taint> = current
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.key != DRAINING_TAINT)
                .collect();
            if draining {
                taints.push(core::Taint {
                    key: DRAINING_TAINT.into(),
                    value: Some("true".into()),
                    effect: "NoSchedule".into(),
                    time_added: None,
                });
            }
            let patch = json!({
                "metadata": { "resourceVersion": current.metadata.resource_version },
                "spec": { "unschedulable": draining, "taints": taints },
            });
            match api
                .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let e = KubeError::from_kube(what(), e);
                    if e.code() != Some(409) {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| KubeError::Transport {
            what: what(),
            cause: "conflict retries exhausted".into(),
        }))
    }

    pub async fn cordon(&self, node: &str) -> Result<(), KubeError> {
        self.set_draining(node, true).await
    }

    /// Make the node schedulable again; a node that is gone needs nothing.
    pub async fn uncordon(&self, node: &str) -> Result<(), KubeError> {
        match self.set_draining(node, false).await {
            Err(e) if e.code() == Some(404) => Ok(()),
            other => other,
        }
    }

    /// Evict through the Eviction API with the pod's UID as precondition.
    ///
    /// The Eviction is built here rather than with `Api::evict`: kube 5 sends
    /// its delete options as `delete_options`, a field the API server ignores,
    /// so the UID precondition would silently be lost.
    pub async fn evict(&self, namespace: &str, name: &str, uid: &str) -> EvictionResult {
        let what = format!("evict pod {namespace}/{name}");
        let eviction = Eviction {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            delete_options: Some(DeleteOptions {
                preconditions: Some(Preconditions {
                    uid: Some(uid.into()),
                    resource_version: None,
                }),
                ..DeleteOptions::default()
            }),
        };
        let request = serde_json::to_vec(&eviction)
            .map_err(|e| e.to_string())
            .and_then(|body| {
                http::Request::post(format!("/api/v1/namespaces/{namespace}/pods/{name}/eviction"))
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .map_err(|e| e.to_string())
            });
        let request = match request {
            Ok(r) => r,
            Err(e) => return EvictionResult::Failed(format!("{what}: {e}")),
        };
        match self.client.request::<kube::core::Status>(request).await {
            Ok(_) => EvictionResult::Created,
            Err(e) => {
                let e = KubeError::from_kube(what, e);
                match e.code() {
                    Some(429) => EvictionResult::TooManyRequests,
                    Some(404 | 409) => EvictionResult::Gone,
                    _ => EvictionResult::Failed(e.to_string()),
                }
            }
        }
    }

    /// Delete the Node object; already gone is success.
    pub async fn delete_node(&self, node: &str) -> Result<(), KubeError> {
        ignore_not_found(
            self.nodes_api().delete(node, &DeleteParams::default()).await,
            format!("delete node {node}"),
        )
    }

    /// Delete K3s's `<node>.node-password.k3s` secret, so the name could join again.
    pub async fn delete_node_password(&self, node: &str) -> Result<(), KubeError> {
        let api: Api<core::Secret> = Api::namespaced(self.client.clone(), NODE_PASSWORD_NAMESPACE);
        let name = format!("{node}.node-password.k3s");
        ignore_not_found(
            api.delete(&name, &DeleteParams::default()).await,
            format!("delete secret {NODE_PASSWORD_NAMESPACE}/{name}"),
        )
    }

    /// Merge labels into a node (k3scale marks the nodes it manages).
    pub async fn label_node(&self, node: &str, labels: &BTreeMap<String, String>) -> Result<(), KubeError> {
        let patch = json!({ "metadata": { "labels": labels } });
        self.nodes_api()
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|e| KubeError::from_kube(format!("label node {node}"), e))
    }

    /// Record an events.k8s.io/v1 Event about a node (`kubectl describe node` shows it).
    pub async fn node_event(
        &self,
        node: &str,
        kind: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<(), KubeError> {
        let regarding = core::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.into()),
            uid: self.nodes.get(node).map(|n| n.uid),
            ..core::ObjectReference::default()
        };
        self.event(EVENT_NAMESPACE, regarding, kind, reason, action, note)
            .await
            .map_err(|e| KubeError::from_kube(format!("event {reason} on node {node}"), e))
    }

    /// `TriggeredScaleUp` on a pending pod, in its namespace.
    pub async fn pod_event(&self, e: &super::events::PodEvent) -> Result<(), KubeError> {
        let regarding = core::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(e.namespace.clone()),
            name: Some(e.pod.clone()),
            uid: Some(e.uid.clone()).filter(|u| !u.is_empty()),
            ..core::ObjectReference::default()
        };
        self.event(
            &e.namespace,
            regarding,
            EventType::Normal,
            "TriggeredScaleUp",
            "ScaleUp",
            &e.note,
        )
        .await
        .map_err(|err| {
            KubeError::from_kube(
                format!("event TriggeredScaleUp on pod {}/{}", e.namespace, e.pod),
                err,
            )
        })
    }

    async fn event(
        &self,
        namespace: &str,
        regarding: core::ObjectReference,
        kind: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let now = jiff::Timestamp::now();
        let event = KubeEvent {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or("k3scale"),
                    now.as_nanosecond()
                )),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            reporting_controller: Some(REPORTING_CONTROLLER.into()),
            reporting_instance: Some(self.identity.clone()),
            action: Some(action.into()),
            reason: Some(reason.into()),
            type_: Some(match kind {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            // The API caps a note at 1 kB.
            note: Some(truncate(note, 1024)),
            regarding: Some(regarding),
            ..KubeEvent::default()
        };
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), namespace);
        api.create(&PostParams::default(), &event).await.map(|_| ())
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn ignore_not_found<T>(result: Result<T, kube::Error>, what: String) -> Result<(), KubeError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) => match KubeError::from_kube(what, e) {
            e if e.code() == Some(404) => Ok(()),
            e => Err(e),
        },
    }
}

/// How long the watches may take to list everything before a caller gives up.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
