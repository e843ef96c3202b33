//! Rolling a pool to a new agent image with real Docker agents: the pool's
//! image changes (a new k3scale configuration), its nodes are drifted, and
//! with a disruption budget of 1 they are replaced one at a time — the new
//! agent joins before the old one drains — until every agent runs the new
//! image and every pod has been rescheduled.

use k3scale::controller::Controller;
use k3scale::provider::docker::DockerProvider;
use k3scale::provider::secret::Secret;
use k3scale::provider::unix_now;
use k3scale_core::model::HASH_LABEL;
use k3scale_testsupport::kubefix::*;
use k3scale_testsupport::rig::{self, Machines};
use k3scale_testsupport::support::{self, STANDIN_IMAGE, TestCluster};
use std::collections::BTreeMap;

const NEW_IMAGE: &str = "k3scale-test/k3s-agent:stand-in-v2";

fn config(docker: &TestCluster, image: &str) -> String {
    format!(
        "
cluster: test
metrics: {{ source: metrics-server }}
policy:
  scale_up: {{ cooldown: 0s }}
  scale_down: {{ enabled: false }}
pools:
  - name: workers
    min: 2
    max: 3
    template: {{ cpu: \"2\", memory: 4Gi, boot_time: 5s }}
    disruption:
      budgets: [{{ nodes: 1 }}]
    provider:
      docker: {{ image: \"{image}\", network: {}, server_url: \"https://k3s-server:6443\", token_env: UNUSED }}
",
        docker.network
    )
}

async fn controller(r: &rig::Rig, docker: &TestCluster, image: &str, seed: u64) -> Controller {
    let yaml = config(docker, image);
    let loaded = k3scale_core::config::load("k3scale.yaml", &yaml).unwrap();
    let provider = DockerProvider::connect(
        &docker.name,
        loaded.policy.pools[0].clone(),
        k3scale_core::config::DockerProviderConfig {
            image: image.to_string(),
            ..support::standin_config(docker)
        },
        Secret::new(support::TOKEN),
    )
    .await
    .unwrap();
    rig::wire(&r.k, &yaml, Box::new(provider), r.store.clone(), seed << 32, None).await
}

/// K3s's side of a join, as the agent was started: its Node carries the
/// labels given with `--node-label`.
fn join(r: &rig::Rig, docker: &TestCluster, name: &str) {
    let args: Vec<String> = serde_json::from_value(docker.inspect(name)["Config"]["Cmd"].clone()).unwrap();
    let mut node = node(name, Some("workers"), "2", "4Gi");
    let labels = node.metadata.labels.get_or_insert_with(BTreeMap::new);
    for pair in args.windows(2).filter(|w| w[0] == "--node-label") {
        if let Some((k, v)) = pair[1].split_once('=') {
            labels.insert(k.to_string(), v.to_string());
        }
    }
    r.k.apply(&node);
    r.k.server.apply(node_password(name));
}

fn image_of(docker: &TestCluster, name: &str) -> String {
    docker.inspect(name)["Config"]["Image"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn a_new_image_is_rolled_out_one_agent_at_a_time_within_a_budget_of_one() {
    let tag = support::docker(&["tag", support::standin_image(), NEW_IMAGE]);
    assert!(tag.status.success(), "{}", String::from_utf8_lossy(&tag.stderr));
    let mut r = rig::rig("rollout").await;
    let Machines::Docker(docker) = std::mem::replace(&mut r.machines, Machines::Fake(Default::default()))
    else {
        unreachable!("a Docker rig")
    };
    r.usage("300m");

    // Two agents of the first image, each running a pod.
    let mut first = controller(&r, &docker, STANDIN_IMAGE, 1).await;
    let done = first.reconcile(unix_now()).await.unwrap();
    assert_eq!(done.launched.len(), 2, "{:?}", done.decision.reasons);
    let old: Vec<String> = done.launched.iter().map(|l| l.node.clone()).collect();
    for (i, agent) in old.iter().enumerate() {
        join(&r, &docker, agent);
        r.k.apply(&pod(
            "shop",
            &format!("web-{i}"),
            "web",
            Some(agent),
            "500m",
            "512Mi",
        ));
    }
    r.usage("800m");
    let old_hash =
        r.k.server
            .get(&k3scale_testapi::resources::NODES, "", &old[0])
            .unwrap()["metadata"]["labels"][HASH_LABEL]
            .clone();
    assert!(
        old_hash.as_str().is_some_and(|h| h.starts_with("v1-")),
        "{old_hash}"
    );

    // The pool's image changes: a new configuration, the same cluster and store.
    let mut second = controller(&r, &docker, NEW_IMAGE, 2).await;
    // What the new controller's own caches show decides: wait on them.
    let cache = second.cluster();
    eventually(10, "agents seen", || {
        old.iter().all(|a| cache.pods_on_node(a).len() == 1)
    })
    .await;
    let mut replaced: Vec<String> = Vec::new();
    for round in 0..2 {
        // A replacement first, the old agents untouched, the other one held.
        let launch = second.reconcile(unix_now()).await.unwrap();
        let reasons: Vec<String> = launch.decision.reasons.iter().map(ToString::to_string).collect();
        assert_eq!(launch.launched.len(), 1, "round {round}: {reasons:?}");
        assert!(launch.removed.is_empty(), "{reasons:?}");
        if round == 0 {
            assert!(
                reasons
                    .iter()
                    .any(|t| t.contains("is drifted but is not replaced now: disruption budget")),
                "the budget of 1 holds the other: {reasons:?}"
            );
        }
        let new = launch.launched[0].node.clone();
        assert_eq!(image_of(&docker, &new), NEW_IMAGE);
        assert_eq!(docker.containers().len(), 3, "one extra agent at a time");
        if round == 0 {
            // k3scale restarts here: the next process carries on with the
            // stored replacement instead of launching another.
            second = controller(&r, &docker, NEW_IMAGE, 3).await;
        }
        let cache = second.cluster();
        eventually(10, "caches of the new process", || {
            old.iter()
                .filter(|a| !replaced.contains(a))
                .all(|a| cache.node(a).is_some())
        })
        .await;
        let waiting = second.reconcile(unix_now()).await.unwrap();
        assert!(
            waiting.removed.is_empty() && waiting.launched.is_empty(),
            "not joined yet: {:?}",
            waiting.decision.reasons
        );

        // It joins: the drifted agent is drained and removed, its pod rescheduled.
        join(&r, &docker, &new);
        eventually(10, "replacement seen", || cache.node(&new).is_some()).await;
        let drain = second.reconcile(unix_now()).await.unwrap();
        assert_eq!(drain.removed.len(), 1, "{:?}", drain.decision.reasons);
        let gone = drain.removed[0].clone();
        assert!(old.contains(&gone) && !replaced.contains(&gone), "{gone}");
        replaced.push(gone.clone());
        assert_eq!(docker.containers().len(), 2);
        // The ReplicaSet and the scheduler: its pod comes back on the new agent.
        let i = old.iter().position(|a| *a == gone).unwrap();
        assert!(
            r.k.server
                .get(&k3scale_testapi::resources::PODS, "shop", &format!("web-{i}"))
                .is_none(),
            "evicted"
        );
        r.k.apply(&pod(
            "shop",
            &format!("web-{i}"),
            "web",
            Some(&new),
            "500m",
            "512Mi",
        ));
        eventually(10, "pod rescheduled", || cache.pods_on_node(&new).len() == 1).await;
    }
    // Every agent runs the new image; nothing is left to replace.
    let agents = docker.containers();
    assert!(
        agents.iter().all(|a| image_of(&docker, a) == NEW_IMAGE),
        "{agents:?}"
    );
    let last = second.reconcile(unix_now()).await.unwrap();
    assert!(
        last.launched.is_empty() && last.removed.is_empty(),
        "{:?}",
        last.decision.reasons
    );
    drop(docker);
}
