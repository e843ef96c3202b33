//! Drains against the test API server: PDBs that block until replacements
//! are Ready, a pod that never terminates, a Node deleted behind our back,
//! and a journaled drain resumed after a stop. One runs with the real
//! Docker provider, so the agent container itself is removed.

use k3scale::drain::DrainExecutor;
use k3scale::kube::KubeCluster;
use k3scale::kube::cluster::DRAINING_TAINT;
use k3scale::provider::docker::DockerProvider;
use k3scale::provider::fake::{Call, FakeProvider};
use k3scale::provider::secret::Secret;
use k3scale::provider::{NodeProvider, unix_now};
use k3scale_core::drain::{Drain, DrainConfig, DrainOutcome};
use k3scale_core::testkit::pool;
use k3scale_testapi::NEVER_TERMINATE;
use k3scale_testapi::resources::{EVENTS, NODES, PODS, SECRETS};
use k3scale_testsupport::{kubefix, support};
use kubefix::*;
use std::time::Duration;

fn fast(eviction_timeout: Duration) -> DrainConfig {
    DrainConfig {
        eviction_timeout,
        termination_slack: Duration::from_secs(1),
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_millis(300),
    }
}

fn executor<'a>(cluster: &'a KubeCluster, provider: &'a dyn NodeProvider) -> DrainExecutor<'a> {
    DrainExecutor {
        poll: Duration::from_millis(50),
        step_timeout: Duration::from_secs(10),
        ..DrainExecutor::new(cluster, provider)
    }
}

fn pods_on(k: &Kube, node: &str) -> Vec<String> {
    k.server
        .list(&PODS)
        .into_iter()
        .filter(|p| p["spec"]["nodeName"] == node)
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn event_reasons(k: &Kube) -> Vec<(String, String)> {
    k.server
        .list(&EVENTS)
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap().to_string(),
                e["note"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn is_draining(k: &Kube, node: &str) -> bool {
    let n = k.server.get(&NODES, "", node).unwrap();
    n["spec"]["unschedulable"] == true
        || n["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["key"] == DRAINING_TAINT)
}

#[tokio::test]
async fn pdb_blocks_until_replacements_are_ready_then_the_agent_container_goes() {
    let docker = support::TestCluster::new("drain");
    let provider = DockerProvider::connect(
        &docker.name,
        pool("workers", 0, 5, 2000, 4 << 30, 0.0),
        support::standin_config(&docker),
        Secret::new(support::TOKEN),
    )
    .await
    .unwrap();
    let machine = provider.create("workers-d1").await.unwrap();
    assert_eq!(docker.containers(), std::slice::from_ref(&machine.name));

    let k = start().await;
    k.apply(&node("workers-d1", Some("workers"), "2", "4Gi"));
    k.apply(&node("workers-d2", Some("workers"), "2", "4Gi"));
    k.server.apply(node_password("workers-d1"));
    k.apply(&pod("shop", "db-0", "db", Some("workers-d1"), "250m", "256Mi"));
    k.apply(&pod("shop", "db-1", "db", Some("workers-d1"), "250m", "256Mi"));
    k.apply(&pdb("shop", "db-pdb", "db", 2));
    let cluster = k.cluster().await;

    let mut drain = Drain::start("workers-d1", unix_now(), fast(Duration::from_secs(30)));
    let mut states = Vec::new();
    let exec = executor(&cluster, &provider);
    let mut journal = |d: &Drain| states.push(d.clone());
    let run = exec.run(&mut drain, &mut journal);
    let cluster_side = async {
        // The budget allows nothing: cordoned, nothing evicted for a while.
        eventually(10, "cordoned", || is_draining(&k, "workers-d1")).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(
            pods_on(&k, "workers-d1"),
            ["db-0", "db-1"],
            "the PDB holds both pods"
        );
        // The ReplicaSet's replacement becomes Ready elsewhere: one may go.
        k.apply(&pod("shop", "db-2", "db", Some("workers-d2"), "250m", "256Mi"));
        eventually(10, "one pod evicted", || pods_on(&k, "workers-d1").len() == 1).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            pods_on(&k, "workers-d1").len(),
            1,
            "the second waits for its replacement"
        );
        k.apply(&pod("shop", "db-3", "db", Some("workers-d2"), "250m", "256Mi"));
    };
    let (outcome, ()) = tokio::join!(run, cluster_side);

    assert_eq!(outcome.unwrap(), DrainOutcome::Removed);
    assert!(docker.containers().is_empty(), "the agent container is gone");
    assert!(k.server.get(&NODES, "", "workers-d1").is_none());
    assert!(
        k.server
            .get(&SECRETS, "kube-system", "workers-d1.node-password.k3s")
            .is_none()
    );
    assert!(k.server.get(&NODES, "", "workers-d2").is_some());
    // Pods left only through the Eviction API: never deleted directly, never forced.
    let requests = k.server.requests();
    assert!(
        !requests
            .iter()
            .any(|r| r.verb == "delete" && r.resource == "pods")
    );
    assert!(
        requests.iter().filter(|r| r.resource == "pods/eviction").count() >= 3,
        "429s were retried"
    );
    let reasons = event_reasons(&k);
    assert!(
        reasons
            .iter()
            .any(|(r, n)| r == "ScaleDown" && n.contains("cordoned")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(r, n)| r == "ScaleDown" && n.contains("removed")),
        "{reasons:?}"
    );
    assert!(states.len() > 3, "every step was journaled");
}

#[tokio::test]
async fn a_pod_that_never_terminates_gives_up_and_uncordons() {
    let k = start().await;
    k.apply(&node("workers-a1", Some("workers"), "2", "4Gi"));
    let mut stuck = pod("shop", "stuck-0", "stuck", Some("workers-a1"), "250m", "256Mi");
    stuck.metadata.annotations = Some(labels(&[(NEVER_TERMINATE, "true")]));
    stuck.spec.as_mut().unwrap().termination_grace_period_seconds = Some(1);
    k.apply(&stuck);
    let cluster = k.cluster().await;
    let provider = FakeProvider::new("workers");

    let mut drain = Drain::start("workers-a1", unix_now(), fast(Duration::from_secs(30)));
    let outcome = executor(&cluster, &provider)
        .run(&mut drain, &mut |_: &Drain| {})
        .await
        .unwrap();

    let DrainOutcome::GaveUp { why } = outcome else {
        panic!("expected to give up, got {outcome:?}");
    };
    assert!(why.contains("shop/stuck-0 did not terminate"), "{why}");
    assert!(!is_draining(&k, "workers-a1"), "uncordoned and untainted");
    assert!(k.server.get(&NODES, "", "workers-a1").is_some());
    assert!(provider.calls().is_empty(), "the machine was not touched");
    let stuck_pod = k
        .server
        .get(&PODS, "shop", "stuck-0")
        .expect("never force-deleted");
    assert!(!stuck_pod["metadata"]["deletionTimestamp"].is_null());
    let reasons = event_reasons(&k);
    assert!(
        reasons
            .iter()
            .any(|(r, n)| r == "ScaleDownFailed" && n.contains("did not terminate")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn a_budget_that_never_allows_ends_at_the_eviction_deadline() {
    let k = start().await;
    k.apply(&node("workers-a1", Some("workers"), "2", "4Gi"));
    k.apply(&pod("shop", "db-0", "db", Some("workers-a1"), "250m", "256Mi"));
    k.apply(&pdb("shop", "db-pdb", "db", 1));
    let cluster = k.cluster().await;
    let provider = FakeProvider::new("workers");

    let mut drain = Drain::start("workers-a1", unix_now(), fast(Duration::from_millis(1500)));
    let outcome = executor(&cluster, &provider)
        .run(&mut drain, &mut |_: &Drain| {})
        .await
        .unwrap();
    let DrainOutcome::GaveUp { why } = outcome else {
        panic!("expected to give up, got {outcome:?}");
    };
    assert!(
        why.contains("eviction deadline") && why.contains("shop/db-0 (disruption budget)"),
        "{why}"
    );
    assert!(!is_draining(&k, "workers-a1"));
    assert_eq!(pods_on(&k, "workers-a1"), ["db-0"]);
    assert!(provider.calls().is_empty());
}

#[tokio::test]
async fn a_node_deleted_mid_drain_still_has_its_machine_removed() {
    let k = start().await;
    k.apply(&node("workers-a1", Some("workers"), "2", "4Gi"));
    k.apply(&pod("shop", "db-0", "db", Some("workers-a1"), "250m", "256Mi"));
    k.apply(&pdb("shop", "db-pdb", "db", 1));
    let cluster = k.cluster().await;
    let provider = FakeProvider::new("workers");
    provider.create("workers-a1").await.unwrap();

    let mut drain = Drain::start("workers-a1", unix_now(), fast(Duration::from_secs(30)));
    let exec = executor(&cluster, &provider);
    let mut journal = |_: &Drain| {};
    let run = exec.run(&mut drain, &mut journal);
    let behind_our_back = async {
        eventually(10, "cordoned", || is_draining(&k, "workers-a1")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        k.server.remove(&NODES, "", "workers-a1");
    };
    let (outcome, ()) = tokio::join!(run, behind_our_back);
    assert_eq!(outcome.unwrap(), DrainOutcome::Removed);
    assert!(provider.names().is_empty(), "the machine is gone too");
    assert!(provider.calls().contains(&Call::Delete("workers-a1".into())));
}

#[tokio::test]
async fn a_journaled_drain_resumes_where_it_stopped() {
    let k = start().await;
    k.apply(&node("workers-a1", Some("workers"), "2", "4Gi"));
    k.apply(&pod("shop", "db-0", "db", Some("workers-a1"), "250m", "256Mi"));
    k.apply(&pod("shop", "web-0", "web", Some("workers-a1"), "250m", "256Mi"));
    k.apply(&pdb("shop", "db-pdb", "db", 1));
    let cluster = k.cluster().await;
    let provider = FakeProvider::new("workers");
    provider.create("workers-a1").await.unwrap();

    // First run: cordons, evicts web-0, is blocked on db-0, then the process "stops".
    let mut journal = String::new();
    let mut drain = Drain::start("workers-a1", unix_now(), fast(Duration::from_secs(30)));
    let exec = executor(&cluster, &provider);
    let mut record = |d: &Drain| journal = serde_json::to_string(d).unwrap();
    let first = exec.run(&mut drain, &mut record);
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), first)
            .await
            .is_err()
    );
    assert!(is_draining(&k, "workers-a1"));
    assert_eq!(pods_on(&k, "workers-a1"), ["db-0"]);

    // A replacement makes room; a new executor resumes from the journal.
    k.apply(&pod("shop", "db-1", "db", Some("workers-b1"), "250m", "256Mi"));
    let mut resumed: Drain = serde_json::from_str(&journal).unwrap();
    let outcome = executor(&cluster, &provider)
        .run(&mut resumed, &mut |_: &Drain| {})
        .await
        .unwrap();
    assert_eq!(outcome, DrainOutcome::Removed);
    let cordons = k
        .server
        .requests()
        .iter()
        .filter(|r| r.verb == "patch" && r.resource == "nodes")
        .count();
    assert_eq!(cordons, 1, "the resumed drain did not cordon again");
    assert!(provider.names().is_empty());
}
