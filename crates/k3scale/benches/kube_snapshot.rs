//! `cargo bench -p k3scale --bench kube_snapshot`: a cluster of 1,000 nodes
//! and 30,000 pods served by the test API server (in a child process, so its
//! memory is not counted), watched into k3scale's caches. Reports:
//! - the resident memory the caches add to the process (VmRSS after the
//!   caches synced, minus VmRSS of the same process with a client and no caches);
//! - the time to build a snapshot from the caches (median of 50), and the
//!   RSS after those snapshots were built and dropped.
#![allow(clippy::unwrap_used)]

use k3scale::kube::KubeCluster;
use k3scale_core::Snapshot;
use k3scale_core::config::KubernetesConfig;
use k3scale_testapi::{Options, TestApiServer};
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

const NODES: usize = 1_000;
const PODS: usize = 30_000;
const ROUNDS: usize = 50;
const ROLE: &str = "K3SCALE_BENCH_ROLE";

fn node(i: usize) -> Value {
    let name = format!("workers-{i:05}");
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": {
            "k3scale.io/pool": "workers", "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": "k3s" },
            "annotations": { "k3s.io/node-args": "[\"agent\"]", "flannel.alpha.coreos.com/public-ip": "10.0.0.1" } },
        "spec": { "providerID": format!("k3s://{name}"), "podCIDR": "10.42.1.0/24" },
        "status": {
            "capacity": { "cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "40Gi" },
            "allocatable": { "cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "40Gi" },
            "conditions": [
                { "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                  "lastHeartbeatTime": "2026-11-22T23:24:49Z", "lastTransitionTime": "2026-11-22T23:24:49Z" },
                { "type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                  "lastHeartbeatTime": "2026-11-22T23:24:49Z", "lastTransitionTime": "2026-11-22T23:24:49Z" }
            ],
            "addresses": [{ "type": "InternalIP", "address": "10.0.0.1" }, { "type": "Hostname", "address": name }],
            "nodeInfo": { "kubeletVersion": "v1.33.4+k3s1", "containerRuntimeVersion": "containerd://2.0.5-k3s2",
                          "osImage": "Debian GNU/Linux 12", "architecture": "amd64", "operatingSystem": "linux" }
        }
    })
}

/// A pod about the size of a real Deployment's: labels, owner, env, probes, statuses.
fn pod(i: usize) -> Value {
    let app = format!("app-{}", i % 300);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{app}-7d9f8c6b5-{i:06}"), "namespace": format!("team-{}", i % 20),
            "labels": { "app": app, "pod-template-hash": "7d9f8c6b5", "tier": "web" },
            "annotations": { "prometheus.io/scrape": "true", "prometheus.io/port": "8080" },
            "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-7d9f8c6b5"),
                                  "uid": "4b2c3a1e-0000-4000-8000-000000000000", "controller": true, "blockOwnerDeletion": true }]
        },
        "spec": {
            "nodeName": format!("workers-{:05}", i % NODES),
            "containers": [{
                "name": "app", "image": "registry.example/app:1.4.2", "ports": [{ "containerPort": 8080, "protocol": "TCP" }],
                "env": [{ "name": "LOG_LEVEL", "value": "info" }, { "name": "DB_HOST", "value": "postgres-rw.db.svc" }],
                "resources": { "requests": { "cpu": "100m", "memory": "128Mi" }, "limits": { "cpu": "500m", "memory": "256Mi" } },
                "readinessProbe": { "httpGet": { "path": "/healthz", "port": 8080 }, "periodSeconds": 10 },
                "volumeMounts": [{ "name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true }]
            }],
            "volumes": [{ "name": "kube-api-access", "projected": { "sources": [{ "serviceAccountToken": { "path": "token" } }] } }],
            "tolerations": [
                { "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 },
                { "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 }
            ],
            "terminationGracePeriodSeconds": 30, "priority": 0, "schedulerName": "default-scheduler"
        },
        "status": {
            "phase": "Running", "podIP": "10.42.1.17", "qosClass": "Burstable",
            "conditions": [
                { "type": "Ready", "status": "True", "lastTransitionTime": "2026-11-22T23:25:30Z" },
                { "type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-22T23:25:27Z" }
            ],
            "containerStatuses": [{ "name": "app", "ready": true, "restartCount": 0, "image": "registry.example/app:1.4.2",
                                    "imageID": "registry.example/app@sha256:0123456789abcdef", "containerID": "containerd://0123456789abcdef",
                                    "started": true, "state": { "running": { "startedAt": "2026-11-22T23:25:29Z" } } }]
        }
    })
}

fn pdb(i: usize) -> Value {
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": { "name": format!("app-{i}-pdb"), "namespace": format!("team-{}", i % 20) },
        "spec": { "maxUnavailable": 1, "selector": { "matchLabels": { "app": format!("app-{i}") } } }
    })
}

/// The child: serve the cluster, print the URL, wait for stdin to close.
fn serve() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let server = TestApiServer::start(Options {
            token: None,
            ..Options::default()
        })
        .await
        .unwrap();
        for i in 0..NODES {
            server.apply(node(i));
        }
        for i in 0..PODS {
            server.apply(pod(i));
        }
        // After the pods, so the disruption controller runs once per budget.
        for i in 0..300 {
            server.apply(pdb(i));
        }
        println!("{}", server.url());
        std::io::stdout().flush().unwrap();
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
        })
        .await
        .unwrap();
    });
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn main() {
    if std::env::var(ROLE).is_ok_and(|r| r == "server") {
        return serve();
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "server")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_string();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("k3scale-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("config");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- cluster: {{server: {url}}}\n  name: c\ncontexts:\n- context: {{cluster: c, user: u}}\n  name: c\ncurrent-context: c\nusers:\n- name: u\n  user: {{token: t}}\n"
            ),
        )
        .unwrap();
        let client = k3scale::kube::client(&KubernetesConfig {
            kubeconfig: Some(kubeconfig.to_string_lossy().into_owned()),
            context: None,
        })
        .await
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let empty = rss_kib();

        let start = Instant::now();
        let cluster = KubeCluster::start(client, "bench");
        tokio::time::timeout(Duration::from_secs(300), cluster.wait_synced()).await.unwrap();
        let sync = start.elapsed();
        let mut snapshot = Snapshot::default();
        cluster.fill(&mut snapshot);
        assert_eq!((snapshot.nodes.len(), snapshot.pods.len()), (NODES, PODS));
        assert!(snapshot.pods.iter().all(|p| p.pdb.is_some()));
        drop(snapshot);
        let full = rss_kib();

        let mut times = Vec::new();
        for _ in 0..ROUNDS {
            let mut s = Snapshot::default();
            let t = Instant::now();
            cluster.fill(&mut s);
            times.push(t.elapsed());
            std::hint::black_box(&s);
        }
        times.sort();
        let after_snapshots = rss_kib();
        println!("caches: {NODES} nodes, {PODS} pods, 300 PDBs; initial list + sync {:.2?}", sync);
        println!(
            "snapshot from the caches: median {:.2?}, min {:.2?}, max {:.2?} ({ROUNDS} rounds)",
            times[ROUNDS / 2],
            times[0],
            times[ROUNDS - 1]
        );
        println!(
            "RSS: {:.1} MiB without caches, {:.1} MiB with them: +{:.1} MiB",
            empty as f64 / 1024.0,
            full as f64 / 1024.0,
            (full.saturating_sub(empty)) as f64 / 1024.0
        );
        println!(
            "RSS after {ROUNDS} snapshots (each built, then dropped): {:.1} MiB: +{:.1} MiB",
            after_snapshots as f64 / 1024.0,
            (after_snapshots.saturating_sub(empty)) as f64 / 1024.0
        );
    });
    drop(child.stdin.take());
    let _ = child.wait();
}
