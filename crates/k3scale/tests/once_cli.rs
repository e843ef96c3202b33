//! `k3scale once` as a cron job runs it: a config file, a kubeconfig, the
//! token in the environment, the real Docker Engine and a SQLite file. The
//! test API server stands in for the K3s server.
#![allow(clippy::unwrap_used)]

mod kubefix;
mod support;

use k3scale::provider::unix_now;
use k3scale::state::StateStore;
use k3scale::state::sqlite::SqliteStore;
use k3scale_testapi::MetricsMode;
use kubefix::*;
use std::collections::BTreeMap;
use std::time::Duration;

async fn once(config: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_k3scale"))
        .arg("once")
        .arg("-c")
        .arg(config)
        .args(extra)
        .env("K3SCALE_TEST_TOKEN", support::TOKEN)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn once_launches_for_a_pending_pod_and_respects_the_lock() {
    let docker = support::TestCluster::new("once");
    let image = support::standin_image();
    let privileged = support::engine_allows_privileged();
    let k = start().await;
    k.apply(&node("server", None, "2", "4Gi"));
    k.apply(&pod(
        "kube-system",
        "traefik",
        "traefik",
        Some("server"),
        "1",
        "1Gi",
    ));
    k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));
    k.server.set_metrics(MetricsMode::Serving(BTreeMap::from([(
        "server".into(),
        ("300m".into(), "1Gi".into()),
    )])));

    let dir = std::env::temp_dir().join(format!("k3scale-once-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("k3s.yaml");
    std::fs::write(&kubeconfig, kubeconfig_text(&k)).unwrap();
    let db = dir.join("state/state.db");
    let config = dir.join("k3scale.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster: {cluster}
kubernetes: {{ kubeconfig: {kubeconfig} }}
metrics: {{ source: metrics-server }}
state: {{ backend: sqlite, path: {db} }}
pools:
  - name: workers
    min: 0
    max: 3
    template: {{ cpu: \"2\", memory: 4Gi }}
    provider:
      docker:
        image: {image}
        network: {network}
        server_url: https://k3s-server:6443
        token_env: K3SCALE_TEST_TOKEN
        privileged: {privileged}
        stop_timeout: 1s
",
            cluster = docker.name,
            kubeconfig = kubeconfig.display(),
            db = db.display(),
            network = docker.network,
        ),
    )
    .unwrap();

    // Dry run: the decision, printed; nothing created.
    let (code, stdout, stderr) = once(&config, &["--dry-run"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("would launch: 1 nodes"), "{stdout}");
    assert!(docker.containers().is_empty());

    // Another k3scale holds the lock: this run does not act.
    let store = SqliteStore::open(&db).unwrap();
    store
        .lock(
            "k3scale-act",
            "other-host-42",
            Duration::from_secs(60),
            unix_now(),
        )
        .await
        .unwrap()
        .unwrap();
    let (code, _, stderr) = once(&config, &[]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("other-host-42"), "{stderr}");
    assert!(docker.containers().is_empty());
    assert!(store.unlock("k3scale-act", "other-host-42").await.unwrap());

    let (code, stdout, stderr) = once(&config, &["-o", "json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let done: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let launched = done["launched"].as_array().unwrap();
    assert_eq!(launched.len(), 1, "{stdout}");
    assert_eq!(docker.containers(), [launched[0].as_str().unwrap()]);
    assert!(
        !stderr.contains(support::TOKEN),
        "the token never reaches the output"
    );
    // The lock was released, and the launch is on record.
    assert!(
        store
            .lock("k3scale-act", "me", Duration::from_secs(1), unix_now())
            .await
            .unwrap()
            .is_ok()
    );
    assert_eq!(store.events(None, 5).await.unwrap()[0].event.kind, "scale-up");
    let _ = std::fs::remove_dir_all(&dir);
}

fn kubeconfig_text(k: &Kube) -> String {
    kubeconfig(&k.server.url(), k.server.token().unwrap())
}
