//! The Docker provider against the real Docker Engine on this machine.

use bollard::Docker;
use k3scale::provider::docker::DockerProvider;
use k3scale::provider::secret::Secret;
use k3scale::provider::{NodeProvider, ProviderError, create_many};
use k3scale_core::config::DockerProviderConfig;
use k3scale_core::testkit::{GI, pool};
use k3scale_testsupport::contract::Subject;
use k3scale_testsupport::support;
use support::{TOKEN, TestCluster, standin_image};

fn config(cluster: &TestCluster, image: &str) -> DockerProviderConfig {
    DockerProviderConfig {
        host: None,
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

/// Pools `workers` and `others` of one cluster on the real engine.
async fn contract_subject() -> (TestCluster, Subject) {
    let cluster = TestCluster::new("contract");
    let on = |name: &str| {
        DockerProvider::connect(
            &cluster.name,
            pool(name, 0, 5, 2000, 4 * GI, 0.0),
            support::standin_config(&cluster),
            Secret::new(TOKEN),
        )
    };
    let subject = Subject {
        ours: Box::new(on("workers").await.unwrap()),
        foreign: Box::new(on("others").await.unwrap()),
        our_name: format!("workers-{}", cluster.name),
        foreign_name: format!("others-{}", cluster.name),
    };
    (cluster, subject)
}

k3scale_testsupport::provider_contract!(contract_subject());

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
    let dir = support::TempDir::new("deadsock");
    let sock = dir.join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let host = format!("unix://{}", sock.display());
    let docker = Docker::connect_with_unix(&host, 5, bollard::API_DEFAULT_VERSION).unwrap();
    let p = pool("workers", 0, 10, 2000, 4 * GI, 0.04);
    let cfg = DockerProviderConfig {
        host: None,
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
    // Not an error at start (the daemon must come up and serve status)...
    let provider = DockerProvider::with_client(docker, &host, "c", p, cfg, Secret::new(TOKEN))
        .await
        .unwrap();
    // ...but every call is Transient and names the engine.
    for err in [
        provider.list().await.unwrap_err(),
        provider.create("w-1").await.unwrap_err(),
    ] {
        assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
        assert!(err.to_string().contains(&host), "{err}");
        assert!(!err.to_string().contains(TOKEN));
    }
}

/// Forwards TCP connections on `listener` to the local engine's socket,
/// counting them: an engine reached over `tcp://`.
fn tcp_engine(listener: tokio::net::TcpListener) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut unix) = tokio::net::UnixStream::connect("/var/run/docker.sock").await {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
            });
        }
    });
    seen
}

#[tokio::test]
async fn a_tcp_engine_that_is_down_at_start_is_used_once_it_answers() {
    let cluster = TestCluster::new("tcphost");
    // A port with nothing behind it yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = support::standin_config(&cluster);
    cfg.host = Some(format!("tcp://127.0.0.1:{port}"));
    let provider = DockerProvider::connect(
        &cluster.name,
        pool("workers", 0, 5, 2000, 4 * GI, 0.0),
        cfg,
        Secret::new(TOKEN),
    )
    .await
    .expect("an engine that does not answer yet is not a reason to fail");
    let err = provider.list().await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
    assert!(
        err.to_string().contains(&format!("tcp://127.0.0.1:{port}")),
        "{err}"
    );

    // The engine comes up on that address: the same provider now works, over TCP.
    let seen = tcp_engine(tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap());
    let name = format!("workers-{}-a", cluster.name);
    let m = provider.create(&name).await.unwrap();
    assert!(m.running, "{m:?}");
    assert!(cluster.containers().contains(&name));
    assert!(provider.list().await.unwrap().iter().any(|m| m.name == name));
    assert!(
        seen.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "requests went over tcp://"
    );
    provider.delete(&name).await.unwrap();
}

#[test]
fn the_engine_is_the_pools_host_else_docker_host_else_the_local_socket() {
    use k3scale::provider::docker::engine_host;
    assert_eq!(
        engine_host(Some("tcp://10.0.0.5:2375"), Some("tcp://x:1")),
        "tcp://10.0.0.5:2375"
    );
    assert_eq!(
        engine_host(None, Some("tcp://127.0.0.1:2375")),
        "tcp://127.0.0.1:2375"
    );
    assert_eq!(engine_host(None, None), "unix:///var/run/docker.sock");
    assert_eq!(engine_host(None, Some("")), "unix:///var/run/docker.sock");
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
