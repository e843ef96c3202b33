//! Cases of cluster-autoscaler's drain rules: `utils/drain/drain_test.go`
//! `TestDrain` (run there with skip-nodes-with-system-pods and
//! skip-nodes-with-local-storage on) and the `longterminating` and
//! `terminal` rules of `simulator/drainability/rules`, written again from
//! their inputs and expected answers. Each pod is a Kubernetes object,
//! turned into the core's model by the adapter and judged by `decide`: it
//! sits alone on a node, with room for it on another; the upstream answer
//! "fatal" is a node that stays, any other a node that goes.

use k3scale::kube::convert::{self, PdbIndex};
use k3scale_core::{Node, Policy, Resources, Snapshot, Time, decide, testkit};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{Value, json};
use std::time::Duration;

/// 2026-11-30T17:00:00Z, when every case is judged.
const NOW: Time = Time::from_secs(1_796_058_000);

fn ago(secs: u64) -> String {
    let t = jiff::Timestamp::from_second((NOW.as_millis() / 1000 - secs) as i64).unwrap();
    t.to_string()
}

/// A pod bound to `node` in `ns`, owned (as its controller) by a `kind`.
fn pod(ns: &str, kind: Option<&str>) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "bar", "namespace": ns, "uid": "uid-bar" },
        "spec": { "nodeName": "node", "containers": [] },
        "status": { "phase": "Running" }
    });
    if let Some(kind) = kind {
        p["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": kind, "name": "owner", "uid": "uid-owner", "controller": true
        }]);
    }
    p
}

fn with(mut v: Value, path: &[&str], value: Value) -> Value {
    let mut at = &mut v;
    for key in &path[..path.len() - 1] {
        at = &mut at[*key];
    }
    at[path[path.len() - 1]] = value;
    v
}

fn safe_to_evict(p: Value, value: &str) -> Value {
    with(
        p,
        &["metadata", "annotations"],
        json!({ "cluster-autoscaler.kubernetes.io/safe-to-evict": value }),
    )
}

fn empty_dir(p: Value) -> Value {
    with(
        p,
        &["spec", "volumes"],
        json!([{ "name": "scratch", "emptyDir": { "medium": "" } }]),
    )
}

fn finished(p: Value, restart: &str, phase: &str) -> Value {
    let p = with(p, &["spec", "restartPolicy"], json!(restart));
    with(p, &["status", "phase"], json!(phase))
}

fn deleted(p: Value, secs_ago: u64, grace: Option<u64>) -> Value {
    let mut p = with(p, &["metadata", "deletionTimestamp"], json!(ago(secs_ago)));
    if let Some(g) = grace {
        p["spec"]["terminationGracePeriodSeconds"] = json!(g);
    }
    p
}

/// A PDB of `ns` selecting `k8s-app: app`, one disruption allowed.
fn pdb(ns: &str, app: &str) -> Value {
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": { "name": format!("pdb-{app}"), "namespace": ns },
        "spec": { "selector": { "matchLabels": { "k8s-app": app } } },
        "status": { "disruptionsAllowed": 1, "currentHealthy": 1, "desiredHealthy": 0, "expectedPods": 1 }
    })
}

/// Whether `decide` removes the node holding `pod` alone.
fn removable(pod: &Value, pdbs: &[Value]) -> (bool, String) {
    let pdbs: Vec<PodDisruptionBudget> = pdbs
        .iter()
        .map(|p| serde_json::from_value(p.clone()).unwrap())
        .collect();
    let index = PdbIndex::new(&pdbs);
    let pod: Pod = serde_json::from_value(pod.clone()).unwrap();
    let mut model = convert::pod(&pod, &index);
    model.pdb = model.pdb.filter(|key| index.allowed.contains_key(key));
    let pool = testkit::pool("workers", 0, 5, 2000, 4 << 30, 0.04);
    let nodes: Vec<Node> = ["node", "other"]
        .iter()
        .map(|n| testkit::node_of(&pool, n))
        .collect();
    // `other` has room for the pod and stays itself.
    let mut keep = testkit::running("keep", "other", 1000, 1 << 30);
    keep.annotations
        .insert(k3scale_core::model::SAFE_TO_EVICT.into(), "false".into());
    let snapshot = Snapshot {
        pdbs: index.allowed.clone(),
        ..testkit::snapshot(nodes, vec![model, keep], 0.1, 0.1, NOW)
    };
    let mut policy = Policy::new(vec![pool]);
    policy.scale_down.skip_nodes_with_system_pods = true;
    policy.scale_down.evict_local_storage = false;
    policy.scale_down.unneeded_time = Duration::ZERO;
    let d = decide(&snapshot, &policy, NOW);
    (
        d.scale_down.iter().any(|s| s.node == "node"),
        testkit::reasons_text(&d),
    )
}

#[test]
fn upstream_drain_cases() {
    let kube_system_rc = || {
        with(
            pod("kube-system", Some("ReplicationController")),
            &["metadata", "labels"],
            json!({ "k8s-app": "bar" }),
        )
    };
    let empty_pdb = json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": { "name": "empty" }, "spec": {}
    });
    // (upstream description, pod, PDBs, removable)
    let cases: Vec<(&str, Value, Vec<Value>, bool)> = vec![
        (
            "RC-managed pod",
            pod("default", Some("ReplicationController")),
            vec![],
            true,
        ),
        ("DS-managed pod", pod("default", Some("DaemonSet")), vec![], true),
        ("Job-managed pod", pod("default", Some("Job")), vec![], true),
        ("RS-managed pod", pod("default", Some("ReplicaSet")), vec![], true),
        (
            "RS-managed pod that is being deleted",
            deleted(pod("default", Some("ReplicaSet")), 3600, None),
            vec![],
            true,
        ),
        ("naked pod", pod("default", None), vec![], false),
        (
            "pod with EmptyDir",
            empty_dir(pod("default", None)),
            vec![],
            false,
        ),
        (
            "failed pod",
            finished(pod("default", None), "Never", "Failed"),
            vec![],
            true,
        ),
        (
            "evicted pod",
            finished(pod("default", None), "Always", "Failed"),
            vec![],
            true,
        ),
        (
            "pod in terminal state",
            finished(pod("default", None), "OnFailure", "Succeeded"),
            vec![],
            true,
        ),
        (
            "pod with PodSafeToEvict annotation",
            safe_to_evict(pod("default", None), "true"),
            vec![],
            true,
        ),
        (
            "kube-system pod with PodSafeToEvict annotation",
            safe_to_evict(pod("kube-system", None), "true"),
            vec![],
            true,
        ),
        (
            "pod with EmptyDir and PodSafeToEvict annotation",
            safe_to_evict(empty_dir(pod("default", None)), "true"),
            vec![],
            true,
        ),
        (
            "RC-managed pod with PodSafeToEvict=false annotation",
            safe_to_evict(pod("default", Some("ReplicationController")), "false"),
            vec![],
            false,
        ),
        (
            "Job-managed pod with PodSafeToEvict=false annotation",
            safe_to_evict(pod("default", Some("Job")), "false"),
            vec![],
            false,
        ),
        (
            "empty PDB with RC-managed pod",
            pod("default", Some("ReplicationController")),
            vec![empty_pdb],
            true,
        ),
        (
            "kube-system PDB with matching kube-system pod",
            kube_system_rc(),
            vec![pdb("kube-system", "bar")],
            true,
        ),
        (
            "kube-system PDB with non-matching kube-system pod",
            kube_system_rc(),
            vec![pdb("kube-system", "foo")],
            false,
        ),
        (
            "kube-system PDB with default namespace pod",
            pod("default", Some("ReplicationController")),
            vec![pdb("kube-system", "bar")],
            true,
        ),
        (
            "default namespace PDB with matching labels kube-system pod",
            kube_system_rc(),
            vec![pdb("default", "bar")],
            false,
        ),
        // longterminating/rule_test.go
        (
            "long terminating pod with 0 grace period",
            finished(deleted(pod("default", None), 60, Some(0)), "OnFailure", "Unknown"),
            vec![],
            true,
        ),
        (
            "long terminating pod with extended grace period",
            finished(
                deleted(pod("default", None), 720, Some(360)),
                "OnFailure",
                "Unknown",
            ),
            vec![],
            true,
        ),
    ];
    let mut wrong = Vec::new();
    for (name, pod, pdbs, want) in &cases {
        let (got, why) = removable(pod, pdbs);
        if got != *want {
            wrong.push(format!("{name}: removable {got}, upstream says {want}\n  {why}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Beyond the upstream table: a pod deleted moments ago still holds its
/// node like any other (it may yet run its shutdown for its grace period),
/// and a local-storage pod blocks even with a controller.
#[test]
fn a_pod_being_deleted_counts_until_it_is_long_terminating() {
    let naked = pod("default", None);
    assert!(!removable(&deleted(naked.clone(), 10, None), &[]).0);
    assert!(
        !removable(&deleted(naked.clone(), 55, None), &[]).0,
        "30 s grace + 30 s"
    );
    assert!(removable(&deleted(naked, 61, None), &[]).0);
    assert!(!removable(&empty_dir(pod("default", Some("ReplicaSet"))), &[]).0);
    // A pending pod being deleted launches nothing: its controller made another.
    let mut pending = pod("default", Some("ReplicaSet"));
    pending["spec"]["nodeName"] = Value::Null;
    pending["status"] = json!({ "phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "lastTransitionTime": ago(600)
    }]});
    let pending: Pod = serde_json::from_value(pending).unwrap();
    let mut big = convert::pod(&pending, &PdbIndex::default());
    big.requests = Resources::pod(1500, 1 << 30);
    let pool = testkit::pool("workers", 0, 5, 2000, 4 << 30, 0.04);
    let policy = Policy::new(vec![pool.clone()]);
    let nodes = vec![testkit::node_of(&pool, "node")];
    let busy = testkit::running("busy", "node", 1000, 1 << 30);
    let alive = testkit::snapshot(nodes.clone(), vec![busy.clone(), big.clone()], 0.5, 0.5, NOW);
    assert_eq!(decide(&alive, &policy, NOW).nodes_added(), 1);
    big.deleted_at = Some(Time::from_secs(NOW.as_millis() / 1000 - 5));
    let gone = testkit::snapshot(nodes, vec![busy, big], 0.5, 0.5, NOW);
    assert_eq!(decide(&gone, &policy, NOW).nodes_added(), 0);
}
