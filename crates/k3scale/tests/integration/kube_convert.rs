//! Kubernetes objects recorded from a real API server, converted to the
//! core's model: what the scheduler and the disruption controller would see.

use k3scale::kube::convert::{self, PdbIndex};
use k3scale_core::Time;
use k3scale_core::model::{OwnerKind, PodPhase, TaintEffect};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{Value, json};

fn golden(name: &str) -> Value {
    let path = format!("{}/../testapi/golden/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["response"]["body"].clone()
}

fn unix(rfc3339: &str) -> Time {
    let t: jiff::Timestamp = rfc3339.parse().unwrap();
    Time::from_millis(t.as_millisecond() as u64)
}

#[test]
fn recorded_nodes() {
    let items = golden("01-list-nodes")["items"].clone();
    let nodes: Vec<Node> = serde_json::from_value(items).unwrap();
    let n = convert::node(&nodes[0]);
    assert_eq!(n.name, "node-a");
    assert_eq!(n.pool.as_deref(), Some("default"));
    assert_eq!(
        (
            n.allocatable.cpu_milli,
            n.allocatable.memory_bytes,
            n.allocatable.pods
        ),
        (2000, 4 << 30, 110)
    );
    assert!(n.ready && !n.cordoned);
    assert_eq!(n.created_at, unix("2026-11-22T23:24:49Z"));
}

#[test]
fn recorded_cordoned_and_tainted_node() {
    let node: Node = serde_json::from_value(golden("04-taint-merge-patch")).unwrap();
    let n = convert::node(&node);
    assert!(n.cordoned, "cordoned by the earlier strategic merge patch");
    assert_eq!(n.taints.len(), 1);
    assert_eq!(n.taints[0].key, "k3scale.io/scale-down");
    assert_eq!(n.taints[0].effect, TaintEffect::NoSchedule);
}

#[test]
fn recorded_unreachable_node_is_removed_once_not_ready_long_enough() {
    // The node lifecycle controller's word once the kubelet stopped posting
    // status: Ready=Unknown since 17:00:33.
    let node: Node = serde_json::from_value(golden("13-node-no-heartbeat-unreachable")).unwrap();
    let n = convert::node(&node);
    assert!(!n.ready);
    assert_eq!(n.not_ready_since, Some(unix("2026-11-30T17:00:33Z")));
    // A Ready node has no such time.
    let ready: Vec<Node> = serde_json::from_value(golden("01-list-nodes")["items"].clone()).unwrap();
    assert_eq!(convert::node(&ready[0]).not_ready_since, None);

    // Into a decision: 20 minutes after the transition (the default), not before.
    let snapshot = k3scale_core::Snapshot {
        nodes: vec![n],
        ..Default::default()
    };
    let policy = k3scale_core::Policy::new(vec![k3scale_core::testkit::pool(
        "workers",
        0,
        5,
        2000,
        4 << 30,
        0.04,
    )]);
    let at = |t: &str| k3scale_core::decide(&snapshot, &policy, unix(t));
    assert!(at("2026-11-30T17:19:00Z").scale_down.is_empty());
    let d = at("2026-11-30T17:21:00Z");
    assert_eq!(d.scale_down.len(), 1, "{:?}", d.reasons);
    assert!(d.scale_down[0].forced && d.scale_down[0].node == "node-startup-b");
}

#[test]
fn recorded_unschedulable_pod() {
    let pod: Pod = serde_json::from_value(golden("09-unschedulable-pod-status")).unwrap();
    let p = convert::pod(&pod, &PdbIndex::default());
    assert_eq!(p.key(), "default/too-big");
    assert_eq!(p.requests.cpu_milli, 100_000);
    assert_eq!(p.requests.memory_bytes, 64 << 20);
    assert_eq!(p.requests.pods, 1);
    assert_eq!(p.phase, PodPhase::Pending);
    assert_eq!(p.node_name, None);
    assert_eq!(p.unschedulable_since, Some(unix("2026-11-22T23:28:55Z")));
    assert_eq!(p.owner, OwnerKind::None, "created bare");
    assert_eq!(
        p.tolerations.len(),
        2,
        "the default not-ready / unreachable tolerations"
    );
}

#[test]
fn recorded_bound_pod_and_its_budget() {
    let pods: Vec<Pod> =
        serde_json::from_value(golden("01-list-pods-field-selector-node")["items"].clone()).unwrap();
    let bound = convert::pod(&pods[0], &PdbIndex::default());
    assert_eq!(bound.node_name.as_deref(), Some("node-a"));
    assert_eq!(bound.unschedulable_since, None);
    assert_eq!(bound.termination_grace.as_secs(), 30);

    let pdb: PodDisruptionBudget = serde_json::from_value(golden("05-pdb-status-one-disruption")).unwrap();
    let index = PdbIndex::new([&pdb]);
    assert_eq!(index.allowed.get("work/db-pdb"), Some(&1));
    let db: Pod = serde_json::from_value(golden("05-pod-after-wrong-uid-eviction")).unwrap();
    assert_eq!(convert::pod(&db, &index).pdb.as_deref(), Some("work/db-pdb"));
    // Same labels in another namespace: not covered.
    let mut elsewhere = db.clone();
    elsewhere.metadata.namespace = Some("other".into());
    assert_eq!(convert::pod(&elsewhere, &index).pdb, None);
}

fn pod(spec: Value) -> Pod {
    serde_json::from_value(json!({ "metadata": { "name": "p", "namespace": "ns" }, "spec": spec })).unwrap()
}

#[test]
fn requests_count_init_containers_sidecars_and_overhead_as_the_scheduler_does() {
    let c = |name: &str, cpu: &str, mem: &str| json!({ "name": name, "resources": { "requests": { "cpu": cpu, "memory": mem } } });
    // Containers 300m; the largest init container (1 CPU) dominates CPU.
    let p = pod(json!({
        "containers": [c("a", "100m", "64Mi"), c("b", "200m", "64Mi")],
        "initContainers": [c("init", "1", "32Mi")],
    }));
    let r = convert::pod_requests(p.spec.as_ref().unwrap());
    assert_eq!((r.cpu_milli, r.memory_bytes), (1000, 128 << 20));

    // A sidecar (restartPolicy Always) runs beside everything after it.
    let mut sidecar = c("proxy", "50m", "16Mi");
    sidecar["restartPolicy"] = json!("Always");
    let p = pod(json!({
        "containers": [c("a", "100m", "64Mi")],
        "initContainers": [sidecar, c("migrate", "100m", "100Mi")],
        "overhead": { "cpu": "10m", "memory": "1Mi" },
    }));
    let r = convert::pod_requests(p.spec.as_ref().unwrap());
    assert_eq!(r.cpu_milli, 160, "max(50+100, 50+100) + 10 overhead");
    assert_eq!(r.memory_bytes, (116 << 20) + (1 << 20), "max(16+64, 16+100) + 1");
}

#[test]
fn owners_local_storage_and_affinity() {
    let mut p = pod(json!({
        "containers": [],
        "volumes": [{ "name": "cache", "emptyDir": {} }, { "name": "shm", "emptyDir": { "medium": "Memory" } }],
        "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{ "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["a"] }] }]
        } } },
    }));
    p.metadata.owner_references = serde_json::from_value(json!([
        { "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "x", "controller": true }
    ]))
    .unwrap();
    let c = convert::pod(&p, &PdbIndex::default());
    assert_eq!(c.owner, OwnerKind::StatefulSet);
    assert!(c.local_storage, "a disk-backed emptyDir dies with the node");
    assert_eq!(c.affinity.terms.len(), 1);

    p.metadata.annotations = Some([("kubernetes.io/config.mirror".to_string(), "abc".to_string())].into());
    assert_eq!(convert::pod(&p, &PdbIndex::default()).owner, OwnerKind::Mirror);
    let memory_only =
        pod(json!({ "containers": [], "volumes": [{ "name": "shm", "emptyDir": { "medium": "Memory" } }] }));
    assert!(!convert::pod(&memory_only, &PdbIndex::default()).local_storage);
}

#[test]
fn match_fields_empty_terms_and_unknown_operators_are_never_loosened() {
    use k3scale_core::model::Labels;
    let affinity = |terms: Value| {
        let p = pod(json!({
            "containers": [],
            "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": terms
            } } },
        }));
        convert::pod(&p, &PdbIndex::default()).affinity
    };
    let zone_a: Labels = [("zone".to_string(), "a".to_string())].into();
    // How the DaemonSet controller pins a pod to its node.
    let pinned = affinity(
        json!([{ "matchFields": [{ "key": "metadata.name", "operator": "In", "values": ["node-a"] }] }]),
    );
    assert!(pinned.matches(&zone_a, Some("node-a")));
    assert!(!pinned.matches(&zone_a, Some("node-b")));
    assert!(!pinned.matches(&zone_a, None), "never a new node");
    // An empty term matches no node (it used to match every node).
    let empty = affinity(json!([{}]));
    assert!(!empty.matches(&zone_a, Some("node-a")));
    // An operator this version does not know is not dropped: it matches nothing.
    let unknown = affinity(json!([{ "matchExpressions": [
        { "key": "zone", "operator": "In", "values": ["a"] },
        { "key": "zone", "operator": "Near", "values": ["a"] }
    ] }]));
    assert!(!unknown.matches(&zone_a, Some("node-a")));
}

#[test]
fn local_volumes_declared_safe_to_lose_do_not_count_as_local_storage() {
    let spec = json!({
        "containers": [],
        "volumes": [{ "name": "cache", "emptyDir": {} }, { "name": "scratch", "hostPath": { "path": "/tmp/x" } }],
    });
    let mut p = pod(spec);
    assert!(convert::pod(&p, &PdbIndex::default()).local_storage);
    p.metadata.annotations = Some(
        [(
            convert::SAFE_TO_EVICT_LOCAL_VOLUMES.to_string(),
            "cache".to_string(),
        )]
        .into(),
    );
    assert!(
        convert::pod(&p, &PdbIndex::default()).local_storage,
        "scratch still counts"
    );
    p.metadata.annotations = Some(
        [(
            convert::SAFE_TO_EVICT_LOCAL_VOLUMES.to_string(),
            "cache, scratch".to_string(),
        )]
        .into(),
    );
    assert!(!convert::pod(&p, &PdbIndex::default()).local_storage);
}

#[test]
fn host_ports_labels_and_required_pod_affinity_are_read() {
    use k3scale_core::model::TermNamespaces;
    let mut p = pod(json!({
        "containers": [{ "name": "lb", "ports": [
            { "containerPort": 80, "hostPort": 80 },
            { "containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1" },
            { "containerPort": 8080 }
        ] }],
        "affinity": {
            "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [
                { "labelSelector": { "matchLabels": { "app": "lb" } }, "topologyKey": "kubernetes.io/hostname" }
            ] },
            "podAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [
                { "labelSelector": { "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["cache"] }] },
                  "namespaceSelector": {}, "topologyKey": "topology.kubernetes.io/zone" },
                { "labelSelector": { "matchLabels": { "tier": "db" } },
                  "namespaceSelector": { "matchLabels": { "team": "a" } }, "topologyKey": "zone" }
            ] }
        }
    }));
    p.metadata.namespace = Some("edge".into());
    p.metadata.labels = Some([("app".to_string(), "lb".to_string())].into());
    let c = convert::pod(&p, &PdbIndex::default());
    let ports: Vec<(u16, &str, &str)> = c
        .host_ports
        .iter()
        .map(|h| (h.port, h.protocol.as_str(), h.ip.as_str()))
        .collect();
    assert_eq!(
        ports,
        [(80, "TCP", ""), (53, "UDP", "10.0.0.1")],
        "a containerPort alone holds no host port"
    );
    assert_eq!(c.labels.get("app").map(String::as_str), Some("lb"));
    let anti = &c.pod_anti_affinity[0];
    assert_eq!(anti.topology_key, "kubernetes.io/hostname");
    assert_eq!(
        anti.namespaces,
        TermNamespaces::Listed(vec!["edge".into()]),
        "its own namespace"
    );
    assert!(anti.selects(&c, true), "it repels its own kind");
    assert_eq!(c.pod_affinity[0].namespaces, TermNamespaces::All);
    assert_eq!(c.pod_affinity[1].namespaces, TermNamespaces::Unknown(vec![]));
}

#[test]
fn hard_topology_spread_constraints_are_read_with_their_policies() {
    let mut p = pod(json!({
        "containers": [{ "name": "web" }],
        "topologySpreadConstraints": [
            { "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
              "labelSelector": { "matchLabels": { "app": "web" } }, "matchLabelKeys": ["pod-template-hash", "absent"],
              "minDomains": 3 },
            { "maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
              "labelSelector": { "matchLabels": { "app": "web" } } },
            { "maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
              "nodeAffinityPolicy": "Ignore", "nodeTaintsPolicy": "Honor" }
        ]
    }));
    p.metadata.namespace = Some("shop".into());
    p.metadata.labels = Some(
        [
            ("app".to_string(), "web".to_string()),
            ("pod-template-hash".to_string(), "abc".to_string()),
        ]
        .into(),
    );
    let c = convert::pod(&p, &PdbIndex::default());
    assert_eq!(c.topology_spread.len(), 2, "ScheduleAnyway is a preference");
    let zone = &c.topology_spread[0];
    assert_eq!(
        (zone.max_skew, zone.topology_key.as_str(), zone.min_domains),
        (1, "topology.kubernetes.io/zone", Some(3))
    );
    assert_eq!(zone.namespace, "shop");
    assert!(zone.honor_node_affinity && !zone.honor_taints, "the defaults");
    let selector = zone.selector.as_ref().expect("a selector");
    assert_eq!(
        selector.match_labels.get("pod-template-hash").map(String::as_str),
        Some("abc"),
        "matchLabelKeys joins the pod's own value"
    );
    assert!(!selector.match_labels.contains_key("absent"));
    assert!(zone.counts(&c), "it counts itself");
    let host = &c.topology_spread[1];
    assert!(!host.honor_node_affinity && host.honor_taints);
    assert!(host.selector.is_none(), "no labelSelector counts no pod");
    assert!(!host.counts(&c));
}

#[test]
fn extended_resources_are_read_from_pods_and_nodes() {
    let p = pod(json!({
        "initContainers": [{ "name": "warm", "resources": { "requests": { "example.com/dongle": "3" } } }],
        "containers": [
            { "name": "train", "resources": { "limits": { "nvidia.com/gpu": "1", "cpu": "1" } } },
            { "name": "side", "resources": { "requests": { "nvidia.com/gpu": "1", "hugepages-2Mi": "64Mi", "ephemeral-storage": "1Gi" } } }
        ]
    }));
    let c = convert::pod(&p, &PdbIndex::default());
    let got: Vec<(&str, u64)> = c.extended.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        got,
        [("example.com/dongle", 3), ("nvidia.com/gpu", 2)],
        "limits stand in for requests; an init container's peak counts; hugepages and storage are not extended"
    );

    let n: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({
        "metadata": { "name": "g0" },
        "status": { "allocatable": { "cpu": "4", "memory": "8Gi", "pods": "110",
            "nvidia.com/gpu": "2", "hugepages-1Gi": "0", "ephemeral-storage": "50Gi" } }
    }))
    .unwrap();
    let node = convert::node(&n);
    assert_eq!(node.extended.len(), 1);
    assert_eq!(node.extended.get("nvidia.com/gpu"), Some(&2));
}

#[test]
fn a_pod_being_deleted_or_nominated_for_preemption() {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "web", "namespace": "shop", "deletionTimestamp": "2026-11-30T17:00:00Z" },
        "spec": { "containers": [], "terminationGracePeriodSeconds": 60 },
        "status": { "phase": "Pending", "nominatedNodeName": "node-a" }
    }))
    .unwrap();
    let p = convert::pod(&pod, &PdbIndex::default());
    assert_eq!(p.deleted_at, Some(unix("2026-11-30T17:00:00Z")));
    assert_eq!(p.nominated_node.as_deref(), Some("node-a"));
    assert!(
        !p.long_terminating(unix("2026-11-30T17:01:30Z")),
        "60 s grace + 30 s"
    );
    assert!(p.long_terminating(unix("2026-11-30T17:01:31Z")));
    // Through the pod cache as well (it keeps what pods of a workload share once).
    let cached = k3scale::kube::pod_cache::PodCompactor::default().compact(&pod);
    let back = cached.to_pod("shop/web", None);
    assert_eq!(
        (back.deleted_at, back.nominated_node),
        (p.deleted_at, p.nominated_node)
    );
}
