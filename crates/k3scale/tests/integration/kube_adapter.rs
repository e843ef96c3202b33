//! The Kubernetes adapter against the test API server, over HTTP, through a
//! K3s-style kubeconfig: watches into the snapshot, cordon, eviction, deletes,
//! Events, and metrics-server.

use k3scale::kube::cluster::{DRAINING_TAINT, EventType};
use k3scale::metrics::metrics_server::MetricsServer;
use k3scale::provider::unix_now;
use k3scale_core::config::{DEFAULT_CONFIG, load};
use k3scale_core::drain::EvictionResult;
use k3scale_core::model::OwnerKind;
use k3scale_core::{Snapshot, decide};
use k3scale_testapi::resources::{EVENTS, NODES, PDBS, PODS};
use k3scale_testapi::{MetricsMode, Options};
use k3scale_testsupport::kubefix;
use kubefix::*;
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test]
async fn snapshot_reflects_the_cluster_and_feeds_decide() {
    let k = start().await;
    k.apply(&node("server", None, "2", "4Gi"));
    k.apply(&node("workers-a1", Some("workers"), "2", "4Gi"));
    k.apply(&pod("shop", "db-0", "db", Some("workers-a1"), "500m", "1Gi"));
    k.apply(&pod("shop", "db-1", "db", Some("server"), "500m", "1Gi"));
    k.apply(&pdb("shop", "db-pdb", "db", 1));
    // As K3s's ServiceLB: the LoadBalancer Service's port on every node.
    let mut svclb = daemonset("kube-system", "svclb", "100m", "64Mi");
    if let Some(spec) = svclb.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.containers[0].ports = Some(vec![k8s_openapi::api::core::v1::ContainerPort {
            container_port: 80,
            host_port: Some(80),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]);
    }
    k.apply(&svclb);
    k.apply(&daemon_pod("kube-system", "svclb", "workers-a1"));
    // Needs more than any node has free: unschedulable.
    k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));
    let cluster = k.cluster().await;

    let mut snapshot = Snapshot::default();
    cluster.fill(&mut snapshot);
    let names: Vec<_> = snapshot
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.pool.as_deref()))
        .collect();
    assert_eq!(names, [("server", None), ("workers-a1", Some("workers"))]);
    assert_eq!(snapshot.nodes[1].allocatable.cpu_milli, 2000);
    assert_eq!(snapshot.nodes[1].allocatable.pods, 110);
    assert!(snapshot.nodes[1].ready && !snapshot.nodes[1].cordoned);

    let by_name = |n: &str| snapshot.pods.iter().find(|p| p.name == n).unwrap();
    assert_eq!(by_name("db-0").pdb.as_deref(), Some("shop/db-pdb"));
    assert_eq!(by_name("db-0").requests.cpu_milli, 500);
    assert_eq!(by_name("db-0").owner, OwnerKind::ReplicaSet);
    assert_eq!(by_name("svclb-workers-a1").owner, OwnerKind::DaemonSet);
    let pending = by_name("web-0");
    assert!(pending.node_name.is_none());
    let since = pending.unschedulable_since.expect("unschedulable condition read");
    assert!(unix_now().since(since) < Duration::from_secs(60));
    // minAvailable 1 of 2 healthy: one disruption allowed, computed by the server's controller.
    assert_eq!(snapshot.pdbs.get("shop/db-pdb"), Some(&1));
    assert_eq!(snapshot.daemonsets.len(), 1);
    let svclb = &snapshot.daemonsets[0];
    assert_eq!(svclb.requests.cpu_milli, 100);
    assert_eq!(svclb.host_ports.iter().map(|p| p.port).collect::<Vec<_>>(), [80]);
    assert_eq!(svclb.labels.get("app").map(String::as_str), Some("svclb"));

    // Observe → decide: the pending pod gets a new worker.
    let policy = load("default.yaml", DEFAULT_CONFIG).unwrap().policy;
    let decision = decide(&snapshot, &policy, unix_now());
    assert_eq!(decision.scale_up.len(), 1, "{:?}", decision.reasons);
    assert_eq!(decision.scale_up[0].pool, "workers");
}

#[tokio::test]
async fn watches_follow_changes_through_disconnects_and_compaction() {
    let k = start_with(Options {
        bookmark_interval: Duration::from_millis(100),
        ..Options::default()
    })
    .await;
    k.apply(&node("workers-a1", Some("workers"), "2", "4Gi"));
    let cluster = k.cluster().await;
    let mut changes = cluster.changes();
    changes.borrow_and_update();

    k.apply(&pod("shop", "web-0", "web", None, "100m", "64Mi"));
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("an unschedulable pod triggers a reconcile")
        .unwrap();
    let pods = |c: &k3scale::kube::KubeCluster| {
        let mut s = Snapshot::default();
        c.fill(&mut s);
        s.pods.iter().map(|p| p.name.clone()).collect::<Vec<_>>()
    };
    eventually(5, "web-0 seen", || pods(&cluster) == ["web-0"]).await;

    // A dropped connection: the watch resumes from its last resourceVersion.
    k.server.disconnect_watches();
    k.apply(&pod("shop", "web-1", "web", Some("workers-a1"), "100m", "64Mi"));
    eventually(10, "web-1 seen after reconnect", || {
        pods(&cluster) == ["web-0", "web-1"]
    })
    .await;

    // History compacted while disconnected: the resumed watch gets 410 Expired,
    // the cache re-lists, and a deletion it never saw as an event is applied.
    let lists_before = k.server.requests().iter().filter(|r| r.verb == "list").count();
    k.server.hold_watches();
    k.server.remove(&PODS, "shop", "web-0");
    k.server.compact();
    k.server.release_watches();
    eventually(15, "web-0 gone after re-list", || pods(&cluster) == ["web-1"]).await;
    let lists_after = k.server.requests().iter().filter(|r| r.verb == "list").count();
    assert!(lists_after > lists_before, "the cache re-listed after 410");
}

#[tokio::test]
async fn an_apiserver_restart_marks_the_caches_stale_until_a_relist_that_triggers_a_reconcile() {
    let k = start().await;
    k.apply(&node("workers-a1", Some("workers"), "2", "4Gi"));
    let cluster = k.cluster().await;
    assert!(cluster.is_synced());

    // The apiserver restarts and etcd compacts meanwhile; a node comes and
    // a pod goes while nobody can watch.
    k.apply(&pod("shop", "web-0", "web", Some("workers-a1"), "100m", "64Mi"));
    eventually(5, "web-0 seen", || cluster.pods_on_node("workers-a1").len() == 1).await;
    k.server.go_down();
    eventually(10, "caches marked stale while the watches fail", || {
        !cluster.is_synced()
    })
    .await;
    assert!(!cluster.stale().is_empty());
    k.apply(&node("workers-a2", Some("workers"), "2", "4Gi"));
    k.server.remove(&PODS, "shop", "web-0");
    k.server.compact();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!cluster.is_synced(), "still stale: nothing could be listed");
    assert!(cluster.node("workers-a2").is_none());

    let mut changes = cluster.changes();
    changes.borrow_and_update();
    k.server.come_back();
    // The retry backoff is capped at 5 s: fresh within a few seconds.
    eventually(20, "synced again with what changed", || {
        cluster.is_synced()
            && cluster.node("workers-a2").is_some()
            && cluster.pods_on_node("workers-a1").is_empty()
    })
    .await;
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("the completed re-list triggers a reconcile")
        .unwrap();
}

#[tokio::test]
async fn cordon_adds_the_draining_taint_and_uncordon_removes_only_it() {
    let k = start().await;
    k.apply(&with_taint(
        node("workers-a1", Some("workers"), "2", "4Gi"),
        "dedicated",
        "NoSchedule",
    ));
    let cluster = k.cluster().await;

    cluster.cordon("workers-a1").await.unwrap();
    let n = k.server.get(&NODES, "", "workers-a1").unwrap();
    assert_eq!(n["spec"]["unschedulable"], true);
    let keys: Vec<&str> = n["spec"]["taints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["dedicated", DRAINING_TAINT]);
    // Idempotent: a second cordon does not add the taint twice.
    cluster.cordon("workers-a1").await.unwrap();
    let n = k.server.get(&NODES, "", "workers-a1").unwrap();
    assert_eq!(n["spec"]["taints"].as_array().unwrap().len(), 2);
    eventually(5, "cache sees the cordon", || {
        cluster.node("workers-a1").unwrap().cordoned
    })
    .await;

    cluster.uncordon("workers-a1").await.unwrap();
    let n = k.server.get(&NODES, "", "workers-a1").unwrap();
    assert_eq!(n["spec"]["unschedulable"], false);
    assert_eq!(n["spec"]["taints"][0]["key"], "dedicated");
    assert_eq!(n["spec"]["taints"].as_array().unwrap().len(), 1);
    // A node that is gone needs no uncordon; cordoning it is an error that says 404.
    cluster.uncordon("nope").await.unwrap();
    let err = cluster.cordon("nope").await.unwrap_err();
    assert_eq!(err.code(), Some(404), "{err}");
}

#[tokio::test]
async fn eviction_answers_map_to_drain_results() {
    let k = start().await;
    k.apply(&node("n1", Some("workers"), "2", "4Gi"));
    let db0 = k.apply(&pod("shop", "db-0", "db", Some("n1"), "100m", "64Mi"));
    k.apply(&pod("shop", "db-1", "db", Some("n1"), "100m", "64Mi"));
    k.apply(&pdb("shop", "db-pdb", "db", 2));
    let lonely = k.apply(&pod("shop", "lonely", "lonely", Some("n1"), "100m", "64Mi"));
    let cluster = k.cluster().await;
    let uid = |v: &serde_json::Value| v["metadata"]["uid"].as_str().unwrap().to_string();

    // The budget allows nothing: 429.
    assert_eq!(
        cluster.evict("shop", "db-0", &uid(&db0)).await,
        EvictionResult::TooManyRequests
    );
    // A different pod now holds the name: the UID precondition says 409, i.e. ours is gone.
    assert_eq!(
        cluster.evict("shop", "lonely", "0000-not-it").await,
        EvictionResult::Gone
    );
    assert_eq!(cluster.evict("shop", "nobody", "x").await, EvictionResult::Gone);
    assert_eq!(
        cluster.evict("shop", "lonely", &uid(&lonely)).await,
        EvictionResult::Created
    );
    let evicted = k.server.get(&PODS, "shop", "lonely").unwrap();
    assert!(
        !evicted["metadata"]["deletionTimestamp"].is_null(),
        "graceful deletion started"
    );
    eventually(5, "kubelet finished the pod", || {
        k.server.get(&PODS, "shop", "lonely").is_none()
    })
    .await;
}

#[tokio::test]
async fn deletes_are_idempotent_and_events_are_recorded() {
    let k = start().await;
    k.apply(&node("workers-a1", Some("workers"), "2", "4Gi"));
    k.server.apply(node_password("workers-a1"));
    let cluster = k.cluster().await;

    cluster
        .node_event(
            "workers-a1",
            EventType::Warning,
            "ScaleDownBlocked",
            "Drain",
            "not removed: pod shop/db-0 is safe-to-evict=false",
        )
        .await
        .unwrap();
    let events = k.server.list(&EVENTS);
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["regarding"]["name"], "workers-a1");
    assert_eq!(e["regarding"]["kind"], "Node");
    assert!(!e["regarding"]["uid"].as_str().unwrap_or("").is_empty());
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["reportingController"], "k3scale.io/autoscaler");
    assert_eq!(e["reportingInstance"], "k3scale-test-0");
    assert!(e["note"].as_str().unwrap().contains("safe-to-evict=false"));

    let mut managed = BTreeMap::new();
    managed.insert("app.kubernetes.io/managed-by".to_string(), "k3scale".to_string());
    cluster.label_node("workers-a1", &managed).await.unwrap();
    let n = k.server.get(&NODES, "", "workers-a1").unwrap();
    assert_eq!(n["metadata"]["labels"]["app.kubernetes.io/managed-by"], "k3scale");
    assert_eq!(
        n["metadata"]["labels"]["k3scale.io/pool"], "workers",
        "merge keeps other labels"
    );

    cluster.delete_node("workers-a1").await.unwrap();
    cluster.delete_node_password("workers-a1").await.unwrap();
    assert!(k.server.get(&NODES, "", "workers-a1").is_none());
    assert!(k.server.list(&k3scale_testapi::resources::SECRETS).is_empty());
    // Already gone is success.
    cluster.delete_node("workers-a1").await.unwrap();
    cluster.delete_node_password("workers-a1").await.unwrap();
}

#[tokio::test]
async fn a_wrong_token_is_an_error_that_names_401_and_never_the_token() {
    let k = start().await;
    let dir = k3scale_testsupport::support::TempDir::new("badtoken");
    let path = dir.write("k3s.yaml", &kubeconfig(&k.server.url(), "not-the-token-s3cr3t"));
    let client = k3scale::kube::client(&k3scale_core::config::KubernetesConfig {
        kubeconfig: Some(path.to_string_lossy().into_owned()),
        context: None,
    })
    .await
    .unwrap();
    let cluster = k3scale::kube::KubeCluster::start(client, "k3scale-test-0");
    let err = cluster.delete_node("any").await.unwrap_err();
    assert_eq!(err.code(), Some(401));
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    assert!(!cluster.is_synced());

    let Err(missing) = k3scale::kube::client(&k3scale_core::config::KubernetesConfig {
        kubeconfig: Some("/nonexistent/k3s.yaml".into()),
        context: None,
    })
    .await
    else {
        panic!("a missing kubeconfig is an error");
    };
    assert!(missing.to_string().contains("/nonexistent/k3s.yaml"), "{missing}");
}

#[tokio::test]
async fn metrics_server_usage_over_allocatable() {
    let k = start().await;
    k.apply(&node("n1", Some("workers"), "2", "4Gi"));
    k.apply(&node("n2", Some("workers"), "2", "4Gi"));
    let cluster = k.cluster().await;
    let source = MetricsServer::new(cluster.clone());

    // Absent (K3s started with --disable=metrics-server): a 404 that says what to check.
    let err = source.utilization().await.unwrap_err().to_string();
    assert!(err.contains("404") && err.contains("metrics-server"), "{err}");

    k.server.set_metrics(MetricsMode::Unavailable);
    let err = source.utilization().await.unwrap_err().to_string();
    assert!(err.contains("503"), "{err}");

    // The units metrics-server really reports: nanocores and KiB.
    k.server.set_metrics(MetricsMode::Serving(BTreeMap::from([
        ("n1".into(), ("1500000000n".into(), "3145728Ki".into())),
        ("n2".into(), ("500m".into(), "1Gi".into())),
        // A node the cluster no longer has is not counted.
        ("gone".into(), ("2".into(), "4Gi".into())),
    ])));
    let (cpu, memory) = source.utilization().await.unwrap();
    assert!((cpu - 0.5).abs() < 1e-9, "cpu {cpu}");
    assert!((memory - 0.5).abs() < 1e-9, "memory {memory}");

    k.server.set_metrics(MetricsMode::Serving(BTreeMap::from([(
        "n1".into(),
        ("lots".into(), "1Gi".into()),
    )])));
    let err = source.utilization().await.unwrap_err().to_string();
    assert!(err.contains("lots"), "{err}");

    k.server.set_metrics(MetricsMode::Serving(BTreeMap::new()));
    let reading = k3scale::metrics::MetricsSource::read(&source).await;
    assert!(
        reading.cpu.unwrap().is_err(),
        "no node reports: unavailable, not zero"
    );
}

#[tokio::test]
async fn pdb_status_follows_pod_health() {
    let k = start().await;
    k.apply(&node("n1", Some("workers"), "2", "4Gi"));
    k.apply(&pdb("shop", "db-pdb", "db", 1));
    k.apply(&pod("shop", "db-0", "db", Some("n1"), "100m", "64Mi"));
    let cluster = k.cluster().await;
    let allowed = || {
        let mut s = Snapshot::default();
        cluster.fill(&mut s);
        s.pdbs.get("shop/db-pdb").copied()
    };
    eventually(5, "0 allowed with one pod", || allowed() == Some(0)).await;
    k.apply(&pod("shop", "db-1", "db", Some("n1"), "100m", "64Mi"));
    eventually(5, "1 allowed with two pods", || allowed() == Some(1)).await;
    assert_eq!(
        k.server.get(&PDBS, "shop", "db-pdb").unwrap()["status"]["currentHealthy"],
        2
    );
}

#[tokio::test]
async fn the_watched_pods_carry_what_the_planner_judges() {
    let k = start().await;
    k.apply(&node("workers-a1", Some("workers"), "2", "4Gi"));
    let mut lb = serde_json::to_value(pod("edge", "lb-0", "lb", None, "100m", "64Mi")).unwrap();
    lb["spec"]["containers"][0]["ports"] = serde_json::json!([{ "containerPort": 80, "hostPort": 80 }]);
    lb["spec"]["affinity"] = serde_json::json!({ "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [
        { "labelSelector": { "matchLabels": { "app": "lb" } }, "topologyKey": "kubernetes.io/hostname" }
    ] } });
    lb["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = serde_json::json!("1");
    lb["spec"]["topologySpreadConstraints"] = serde_json::json!([{ "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": { "matchLabels": { "app": "lb" } } }]);
    k.server.apply(lb);
    let mut agent = serde_json::to_value(pod("edge", "agent-0", "agent", None, "10m", "16Mi")).unwrap();
    agent["metadata"]["annotations"] =
        serde_json::json!({ "cluster-autoscaler.kubernetes.io/daemonset-pod": "true" });
    k.server.apply(agent);
    let cluster = k.cluster().await;
    let mut s = Snapshot::default();
    cluster.fill(&mut s);
    let lb = s.pods.iter().find(|p| p.name == "lb-0").unwrap();
    assert_eq!(lb.host_ports.len(), 1);
    assert_eq!(lb.host_ports[0].port, 80);
    assert_eq!(lb.pod_anti_affinity.len(), 1);
    assert_eq!(lb.topology_spread.len(), 1);
    assert_eq!(lb.extended.get("nvidia.com/gpu"), Some(&1));
    assert_eq!(lb.topology_spread[0].namespace, "edge");
    assert_eq!(lb.labels.get("app").map(String::as_str), Some("lb"));
    // The DaemonSet-pod annotation survives the cache: it is never unschedulable workload.
    let pending: Vec<&str> = k3scale_core::unschedulable_pods(&s)
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(pending, ["lb-0"]);
}

#[tokio::test]
async fn a_pod_on_a_bound_local_volume_carries_the_volume_node_affinity() {
    let k = start().await;
    k.apply(&node("n1", Some("workers"), "2", "4Gi"));
    // K3s's local-path provisioner: a volume on n1, its claim bound; a
    // second claim still waits for its first consumer.
    k.server.apply(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": { "name": "pvc-1234" },
        "spec": { "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "local-path", "hostPath": { "path": "/var/lib/rancher/k3s/storage/pvc-1234" },
            "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [
                { "key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"] }] }] } } }
    }));
    for (name, volume) in [("data-db-0", Some("pvc-1234")), ("data-db-1", None)] {
        let mut spec = serde_json::json!({ "accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
            "resources": { "requests": { "storage": "1Gi" } } });
        if let Some(v) = volume {
            spec["volumeName"] = serde_json::json!(v);
        }
        k.server.apply(serde_json::json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": { "name": name, "namespace": "shop" }, "spec": spec
        }));
    }
    for (pod_name, claim) in [("db-0", "data-db-0"), ("db-1", "data-db-1")] {
        let mut p = serde_json::to_value(pod("shop", pod_name, "db", None, "100m", "64Mi")).unwrap();
        p["spec"]["volumes"] =
            serde_json::json!([{ "name": "data", "persistentVolumeClaim": { "claimName": claim } }]);
        k.server.apply(p);
    }
    let cluster = k.cluster().await;
    let mut s = Snapshot::default();
    cluster.fill(&mut s);
    let db0 = s.pods.iter().find(|p| p.name == "db-0").unwrap();
    assert_eq!(db0.volume_affinity.len(), 1);
    let on = |host: &str| {
        let labels = [("kubernetes.io/hostname".to_string(), host.to_string())].into();
        db0.volume_affinity[0].matches(&labels, Some(host))
    };
    assert!(on("n1") && !on("workers-new"), "pinned to n1");
    let db1 = s.pods.iter().find(|p| p.name == "db-1").unwrap();
    assert!(
        db1.volume_affinity.is_empty(),
        "an unbound claim pins nothing yet"
    );
}
