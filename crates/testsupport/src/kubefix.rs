//! Kubernetes fixtures: the test API server reached through a kubeconfig
//! file (as a user's would be), and real k8s-openapi objects to put in it.

use k3scale::kube::KubeCluster;
use k3scale_core::config::KubernetesConfig;
use k3scale_testapi::{Options, TestApiServer};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Container, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodCondition, PodSpec, PodStatus,
    PodTemplateSpec, ResourceRequirements, Taint,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub struct Kube {
    pub server: TestApiServer,
    pub client: kube::Client,
    _dir: crate::support::TempDir,
}

/// A kubeconfig for the test server, in the shape K3s writes (`k3s.yaml`).
pub fn kubeconfig(url: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    server: {url}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
preferences: {{}}
users:
- name: default
  user:
    token: {token}
"
    )
}

pub async fn start_with(options: Options) -> Kube {
    let server = TestApiServer::start(options).await.unwrap();
    let dir = crate::support::TempDir::new("kube");
    let path = dir.write(
        "k3s.yaml",
        &kubeconfig(&server.url(), server.token().unwrap_or("")),
    );
    let client = k3scale::kube::client(&KubernetesConfig {
        kubeconfig: Some(path.to_string_lossy().into_owned()),
        context: None,
    })
    .await
    .unwrap();
    Kube {
        server,
        client,
        _dir: dir,
    }
}

pub async fn start() -> Kube {
    start_with(Options::default()).await
}

impl Kube {
    /// A cluster view whose caches have listed once.
    pub async fn cluster(&self) -> Arc<KubeCluster> {
        let cluster = KubeCluster::start(self.client.clone(), "k3scale-test-0");
        tokio::time::timeout(Duration::from_secs(10), cluster.wait_synced())
            .await
            .expect("caches sync within 10s");
        Arc::new(cluster)
    }

    pub fn apply<T: serde::Serialize>(&self, object: &T) -> Value {
        self.server.apply(serde_json::to_value(object).unwrap())
    }
}

/// The K3s server's node as k3scale finds it: not managed, and busy with
/// one pod (so pending pods need new nodes).
pub fn k3s_server(k: &Kube) {
    k.apply(&node("server", None, "2", "4Gi"));
    k.apply(&pod(
        "kube-system",
        "traefik",
        "traefik",
        Some("server"),
        "1",
        "1Gi",
    ));
}

/// Poll `cond` every 20 ms for up to `secs` seconds.
pub async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), Quantity(cpu.into())),
        ("memory".to_string(), Quantity(memory.into())),
    ])
}

pub fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A Ready node; `pool` adds the `k3scale.io/pool` label (a managed node).
pub fn node(name: &str, pool: Option<&str>, cpu: &str, memory: &str) -> Node {
    let mut l = labels(&[("kubernetes.io/hostname", name)]);
    if let Some(p) = pool {
        l.insert("k3scale.io/pool".into(), p.into());
    }
    let mut allocatable = quantities(cpu, memory);
    allocatable.insert("pods".into(), Quantity("110".into()));
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(l),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            provider_id: Some(format!("k3s://{name}")),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(allocatable.clone()),
            allocatable: Some(allocatable),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

pub fn with_taint(mut n: Node, key: &str, effect: &str) -> Node {
    n.spec.get_or_insert_with(Default::default).taints = Some(vec![Taint {
        key: key.into(),
        value: Some("true".into()),
        effect: effect.into(),
        time_added: None,
    }]);
    n
}

/// A Running, Ready pod owned by ReplicaSet `<app>-rs`, bound to `node` (or pending if `None`).
pub fn pod(ns: &str, name: &str, app: &str, node: Option<&str>, cpu: &str, memory: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            labels: Some(labels(&[("app", app)])),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: format!("{app}-rs"),
                uid: format!("rs-{app}"),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(quantities(cpu, memory)),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            node_name: node.map(str::to_string),
            termination_grace_period_seconds: Some(30),
            ..Default::default()
        }),
        status: Some(if node.is_some() {
            PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }
        } else {
            PodStatus {
                phase: Some("Pending".into()),
                conditions: Some(vec![PodCondition {
                    type_: "PodScheduled".into(),
                    status: "False".into(),
                    reason: Some("Unschedulable".into()),
                    message: Some("0/2 nodes are available: 2 Insufficient cpu.".into()),
                    last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        jiff::Timestamp::now(),
                    )),
                    ..Default::default()
                }]),
                ..Default::default()
            }
        }),
    }
}

pub fn pdb(ns: &str, name: &str, app: &str, min_available: i32) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(min_available)),
            selector: Some(LabelSelector {
                match_labels: Some(labels(&[("app", app)])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

pub fn daemonset(ns: &str, name: &str, cpu: &str, memory: &str) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", name)])),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", name)])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "agent".into(),
                        resources: Some(ResourceRequirements {
                            requests: Some(quantities(cpu, memory)),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// A pod owned by DaemonSet `ds` on `node`.
pub fn daemon_pod(ns: &str, ds: &str, node: &str) -> Pod {
    let mut p = pod(ns, &format!("{ds}-{node}"), ds, Some(node), "100m", "128Mi");
    p.metadata.owner_references.as_mut().unwrap()[0].kind = "DaemonSet".into();
    p.metadata.owner_references.as_mut().unwrap()[0].name = ds.into();
    p
}

/// K3s's side of a join: the agent registers its Node (Ready, pool
/// `workers`, 2 CPU / 4 GiB) and its node-password secret.
pub fn register(k: &Kube, name: &str) {
    k.apply(&node(name, Some("workers"), "2", "4Gi"));
    k.server.apply(node_password(name));
}

/// A kubelet's registration as a real control plane shows it (golden
/// `13-*`): the Node is Ready while it still carries the not-ready taint
/// admission put on it. Pause the test server's node lifecycle controller
/// first to hold that window open; resuming it removes the taint.
pub fn register_starting(k: &Kube, name: &str) {
    k.apply(&with_taint(
        node(name, Some("workers"), "2", "4Gi"),
        k3scale_testapi::NOT_READY,
        "NoSchedule",
    ));
    k.server.apply(node_password(name));
}

/// The K3s node-password secret of a node.
pub fn node_password(node: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": format!("{node}.node-password.k3s"), "namespace": "kube-system" },
        "type": "Opaque", "data": { "hash": "c2VjcmV0" }
    })
}
