//! A Docker-backed pool grows and shrinks for real, driven by `decide`, with
//! every container accounted for after a failed join, a restart and a
//! machine deleted behind k3scale's back.

use k3scale::machines::MachinePool;
use k3scale::provider::docker::DockerProvider;
use k3scale::provider::secret::Secret;
use k3scale_core::lifecycle::{LifecycleAction, LifecycleConfig, ObservedNode};
use k3scale_core::testkit::{GI, MI, node_of, pending, pool, snapshot};
use k3scale_core::{Policy, Pool, Reason, Time, decide};
use k3scale_testsupport::support;
use std::collections::BTreeSet;
use std::time::Duration;
use support::{TOKEN, TestCluster};

async fn machine_pool(cluster: &TestCluster, pool: &Pool) -> MachinePool {
    let cfg = support::standin_config(cluster);
    let provider = DockerProvider::connect(&cluster.name, pool.clone(), cfg, Secret::new(TOKEN))
        .await
        .unwrap();
    MachinePool::new(&pool.name, Box::new(provider), LifecycleConfig::default(), 8)
}

/// Running stand-in agents register as Ready Nodes, except the broken ones.
fn nodes(cluster: &TestCluster, broken: &BTreeSet<String>, ghosts: &[String]) -> Vec<ObservedNode> {
    let mut out: Vec<ObservedNode> = cluster
        .containers()
        .into_iter()
        .filter(|n| !broken.contains(n) && cluster.inspect(n)["State"]["Running"] == true)
        .map(|name| ObservedNode {
            name,
            pool: Some("workers".into()),
            ready: true,
        })
        .collect();
    out.extend(ghosts.iter().map(|name| ObservedNode {
        name: name.clone(),
        pool: Some("workers".into()),
        ready: true,
    }));
    out
}

fn snapshot_of(
    p: &Pool,
    nodes: &[ObservedNode],
    pods: Vec<k3scale_core::Pod>,
    cpu: f64,
    mp: &MachinePool,
    now: Time,
) -> k3scale_core::Snapshot {
    let ready: Vec<_> = nodes
        .iter()
        .filter(|n| n.ready)
        .map(|n| node_of(p, &n.name))
        .collect();
    let mut s = snapshot(ready, pods, cpu, 0.3, now);
    s.in_flight = mp.lifecycle.in_flight();
    s.backoff = mp.lifecycle.backed_off(now);
    s
}

#[tokio::test]
async fn a_docker_pool_grows_and_shrinks_and_keeps_count() {
    let cluster = TestCluster::new("pool");
    let workers = pool("workers", 1, 5, 2000, 4 * GI, 0.04);
    // Nodes go the moment they are unneeded: the machines are the point here.
    let policy = k3scale_core::testkit::seed_rules(Policy::new(vec![workers.clone()]));
    let mut mp = machine_pool(&cluster, &workers).await;
    let mut seed = 7u64;
    let mut random = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        seed
    };
    let mut broken = BTreeSet::new();
    let mut now = Time::from_secs(1_000_000);

    // Empty pool below its minimum: one machine.
    let d = decide(
        &snapshot_of(&workers, &nodes(&cluster, &broken, &[]), vec![], 0.5, &mp, now),
        &policy,
        now,
    );
    assert_eq!(d.nodes_added(), 1);
    let launched = mp.launch(d.nodes_added(), now, &mut random).await;
    assert!(launched.failures.is_empty(), "{:?}", launched.failures);
    mp.reconcile(&nodes(&cluster, &broken, &[]), now, true)
        .await
        .unwrap();
    assert!(mp.lifecycle.in_flight().is_empty());

    // Eight pending 600m pods, three per 2-CPU node: three fit the first node, five need two more,
    // created in parallel.
    let pods: Vec<_> = (0..8)
        .map(|i| pending(&format!("web-{i}"), 600, 256 * MI, now))
        .collect();
    let d = decide(
        &snapshot_of(
            &workers,
            &nodes(&cluster, &broken, &[]),
            pods.clone(),
            0.5,
            &mp,
            now,
        ),
        &policy,
        now,
    );
    assert_eq!(d.nodes_added(), 2, "{:?}", d.reasons);
    let grown = mp.launch(2, now, &mut random).await;
    assert_eq!(cluster.containers().len(), 3);
    // While they boot (not registered yet), the same pods launch nothing more.
    let booting: BTreeSet<String> = grown.machines.iter().map(|m| m.name.clone()).collect();
    let d = decide(
        &snapshot_of(
            &workers,
            &nodes(&cluster, &booting, &[]),
            pods.clone(),
            0.5,
            &mp,
            now,
        ),
        &policy,
        now,
    );
    assert_eq!(d.nodes_added(), 0, "{:?}", d.reasons);
    assert!(d.reasons.contains(&Reason::UnschedulablePods {
        pods: 8,
        fit_existing: 3,
        fit_in_flight: 5,
        need_new_nodes: 0
    }));
    now = now + Duration::from_secs(40);
    mp.reconcile(&nodes(&cluster, &broken, &[]), now, true)
        .await
        .unwrap();
    assert!(mp.lifecycle.in_flight().is_empty());

    // A machine that never joins: deleted after the provision timeout, pool backs off.
    let extra = mp.launch(1, now, &mut random).await;
    let bad = extra.machines[0].name.clone();
    broken.insert(bad.clone());
    now = now + Duration::from_secs(601);
    let actions = mp
        .reconcile(&nodes(&cluster, &broken, &[]), now, true)
        .await
        .unwrap();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, LifecycleAction::DeleteMachine { name, .. } if *name == bad)),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, LifecycleAction::JoinFailure { failures: 1, .. }))
    );
    assert!(!cluster.containers().contains(&bad));
    let d = decide(
        &snapshot_of(&workers, &nodes(&cluster, &broken, &[]), pods, 0.95, &mp, now),
        &policy,
        now,
    );
    assert!(
        d.reasons
            .iter()
            .any(|r| matches!(r, Reason::PoolBackedOff { .. })),
        "{:?}",
        d.reasons
    );
    assert_eq!(d.nodes_added(), 0);

    // k3scale restarts: a fresh lifecycle adopts exactly the three machines there are.
    let mut mp = machine_pool(&cluster, &workers).await;
    mp.reconcile(&nodes(&cluster, &broken, &[]), now, true)
        .await
        .unwrap();
    let known: Vec<String> = mp.lifecycle.machines.keys().cloned().collect();
    assert_eq!(known, cluster.containers());
    assert_eq!(known.len(), 3);

    // The load is gone and the cluster is cold: empty nodes go down to the minimum.
    let d = decide(
        &snapshot_of(&workers, &nodes(&cluster, &broken, &[]), vec![], 0.05, &mp, now),
        &policy,
        now,
    );
    assert_eq!(d.scale_down.len(), 2, "{:?}", d.reasons);
    for down in &d.scale_down {
        mp.remove(&down.node).await.unwrap();
    }
    mp.reconcile(&nodes(&cluster, &broken, &[]), now, true)
        .await
        .unwrap();
    assert_eq!(cluster.containers().len(), 1);
    assert_eq!(mp.lifecycle.machines.len(), 1);

    // Someone deletes the last container behind k3scale's back; its Node lingers.
    let last = cluster.containers()[0].clone();
    std::process::Command::new("docker")
        .args(["rm", "-f", &last])
        .output()
        .unwrap();
    let ghosts = vec![last.clone()];
    mp.reconcile(&nodes(&cluster, &broken, &ghosts), now, true)
        .await
        .unwrap();
    now = now + Duration::from_secs(121);
    let actions = mp
        .reconcile(&nodes(&cluster, &broken, &ghosts), now, true)
        .await
        .unwrap();
    assert_eq!(actions, vec![LifecycleAction::DeleteNode { name: last }]);
    // And the pool is brought back to its minimum.
    let d = decide(&snapshot_of(&workers, &[], vec![], 0.05, &mp, now), &policy, now);
    assert_eq!(d.nodes_added(), 1);
    mp.launch(1, now, &mut random).await;
    assert_eq!(cluster.containers().len(), 1);
    assert_eq!(mp.lifecycle.machines.len(), 1);
}
