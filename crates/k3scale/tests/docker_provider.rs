//! The Docker provider against the real Docker Engine on this machine.
#![allow(clippy::unwrap_used)]

mod support;

use bollard::Docker;
use k3scale::provider::docker::DockerProvider;
use k3scale::provider::secret::Secret;
use k3scale::provider::{NodeProvider, ProviderError, create_many};
use k3scale_core::config::DockerProviderConfig;
use k3scale_core::testkit::{GI, pool};
use support::{TOKEN, TestCluster, standin_image};

fn config(cluster: &TestCluster, image: &str) -> DockerProviderConfig {
    DockerProviderConfig {
        image: image.to_string(),
        token_env: Some("K3S_TOKEN".into()),
        extra_args: vec!["--kubelet-arg=max-pods=50".into()],
        stop_timeout: "2s".into(),
        ..support::standin_config(cluster)
    }
}

async fn provider(cluster: &TestCluster, cfg: DockerProviderConfig) -> DockerProvider {
    let mut p = pool("workers", 0, 10, 2000, 4 * GI, 0.04);
    p.template.labels.insert("node-role".into(), "worker".into());
    p.template.taints.push(k3scale_core::model::Taint {
        key: "dedicated".into(),
        value: "ci".into(),
        effect: k3scale_core::model::TaintEffect::NoSchedule,
    });
    DockerProvider::connect(&cluster.name, p, cfg, Secret::new(TOKEN))
        .await
        .unwrap()
}

#[tokio::test]
async fn create_list_delete_and_survive_a_restart() {
    let cluster = TestCluster::new("life");
    let cfg = config(&cluster, standin_image());
    let p = provider(&cluster, cfg.clone()).await;
    let names: Vec<String> = (0..3).map(|i| format!("workers-{}-{i}", cluster.name)).collect();
    for r in create_many(&p, &names, 3).await {
        let m = r.unwrap();
        assert!(m.running && m.provider_id.starts_with("docker://"), "{m:?}");
    }
    let mut listed: Vec<String> = p.list().await.unwrap().into_iter().map(|m| m.name).collect();
    listed.sort();
    assert_eq!(listed, names);
    assert_eq!(cluster.containers(), names);

    // Idempotent create: the same name again returns the existing machine.
    assert_eq!(p.create(&names[0]).await.unwrap().name, names[0]);
    assert_eq!(p.list().await.unwrap().len(), 3);

    p.delete(&names[1]).await.unwrap();
    p.delete(&names[1]).await.unwrap(); // gone already: success
    assert_eq!(p.list().await.unwrap().len(), 2);
    let again = format!("workers-{}-3", cluster.name);
    p.create(&again).await.unwrap();

    // A new provider (k3scale restarted) finds exactly the same machines...
    let restarted = provider(&cluster, cfg.clone()).await;
    let mut after: Vec<String> = restarted
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    after.sort();
    assert_eq!(after, vec![names[0].clone(), names[2].clone(), again.clone()]);
    // ...and nothing of another cluster on the same engine.
    let other = TestCluster::new("other");
    let foreign = provider(&other, config(&other, standin_image())).await;
    foreign
        .create(&format!("workers-{}-x", other.name))
        .await
        .unwrap();
    assert_eq!(restarted.list().await.unwrap().len(), 3);
    assert_eq!(foreign.list().await.unwrap().len(), 1);
    // It refuses to delete what is not its own.
    let err = restarted
        .delete(&format!("workers-{}-x", other.name))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Fatal(ref m) if m.contains("refusing to delete")),
        "{err:?}"
    );
}

#[tokio::test]
async fn container_spec_is_what_a_k3s_agent_needs() {
    let cluster = TestCluster::new("spec");
    let mut cfg = config(&cluster, standin_image());
    cfg.limits = true;
    let p = provider(&cluster, cfg.clone()).await;
    let name = format!("workers-{}-spec", cluster.name);
    p.create(&name).await.unwrap();
    let c = cluster.inspect(&name);
    assert_eq!(c["Config"]["Hostname"], name);
    assert_eq!(c["Config"]["Image"], standin_image());
    assert_eq!(c["HostConfig"]["Privileged"], cfg.privileged);
    assert_eq!(c["HostConfig"]["NetworkMode"], cluster.network);
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(c["HostConfig"]["NanoCpus"], 2_000_000_000i64);
    assert_eq!(c["HostConfig"]["Memory"], 4 * GI as i64);
    let tmpfs = c["HostConfig"]["Tmpfs"].as_object().unwrap();
    assert!(tmpfs.contains_key("/run") && tmpfs.contains_key("/var/run"));
    let labels = &c["Config"]["Labels"];
    assert_eq!(labels["k3scale.io/cluster"], cluster.name);
    assert_eq!(labels["k3scale.io/pool"], "workers");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "k3scale");
    let env: Vec<&str> = c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"K3S_URL=https://k3s-server:6443"));
    assert!(env.contains(&format!("K3S_TOKEN={TOKEN}").as_str()));
    // What the agent process itself was started with.
    let args = cluster.exec(&name, &["cat", "/run/k3scale/args"]);
    assert_eq!(
        args.trim(),
        format!(
            "agent --node-name {name} --node-label k3scale.io/pool=workers --node-label node-role=worker --node-taint dedicated=ci:NoSchedule --kubelet-arg=max-pods=50"
        )
    );
    assert!(
        cluster
            .exec(&name, &["cat", "/run/k3scale/env"])
            .contains(&format!("K3S_TOKEN={TOKEN}"))
    );
    // The token never shows in the provider's Debug output.
    assert!(!format!("{p:?}").contains(TOKEN));
}

#[tokio::test]
async fn missing_image_is_fatal_and_says_how_to_load_it() {
    let cluster = TestCluster::new("noimg");
    let p = provider(&cluster, config(&cluster, "k3scale-test/does-not-exist:v0")).await;
    let err = p
        .create(&format!("workers-{}-a", cluster.name))
        .await
        .unwrap_err();
    match &err {
        ProviderError::Fatal(m) => assert!(m.contains("docker load") && m.contains("does-not-exist"), "{m}"),
        other => panic!("expected Fatal, got {other:?}"),
    }
    assert!(!err.to_string().contains(TOKEN));
    assert!(cluster.containers().is_empty());
}

#[tokio::test]
async fn a_container_that_cannot_start_is_removed_and_the_error_is_clean() {
    let cluster = TestCluster::new("nostart");
    let mut cfg = config(&cluster, standin_image());
    cfg.network = format!("{}-missing", cluster.network);
    let p = provider(&cluster, cfg).await;
    let err = p
        .create(&format!("workers-{}-a", cluster.name))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Fatal(_) | ProviderError::NotFound(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing"), "{err}");
    assert!(!err.to_string().contains(TOKEN), "{err}");
    assert!(
        cluster.containers().is_empty(),
        "left behind: {:?}",
        cluster.containers()
    );
}

#[tokio::test]
async fn unreachable_engine_is_transient() {
    // A socket file whose engine is gone: connections are refused.
    let dir = std::env::temp_dir().join(format!("k3scale-deadsock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let docker = Docker::connect_with_unix(sock.to_str().unwrap(), 5, bollard::API_DEFAULT_VERSION).unwrap();
    let p = pool("workers", 0, 10, 2000, 4 * GI, 0.04);
    let cfg = DockerProviderConfig {
        image: "x".into(),
        network: "n".into(),
        server_url: "https://s:6443".into(),
        token_file: None,
        token_env: None,
        extra_args: vec![],
        privileged: true,
        limits: false,
        stop_timeout: "1s".into(),
    };
    let err = DockerProvider::with_client(docker, "c", p, cfg, Secret::new(TOKEN))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
    assert!(!err.to_string().contains(TOKEN));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_foreign_container_with_our_name_is_not_adopted() {
    let cluster = TestCluster::new("foreign");
    let name = format!("workers-{}-taken", cluster.name);
    let out = std::process::Command::new("docker")
        .args([
            "create",
            "--name",
            &name,
            "--label",
            &format!("k3scale.io/cluster={}", cluster.name),
            standin_image(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let p = provider(&cluster, config(&cluster, standin_image())).await;
    let err = p.create(&name).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Fatal(ref m) if m.contains("is not a k3scale machine")),
        "{err:?}"
    );
}
