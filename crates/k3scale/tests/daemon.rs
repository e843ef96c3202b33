//! The daemon end to end: watch-driven reaction to a pending pod (with a
//! resync interval far longer than the test), leader election on a Lease,
//! the HTTP endpoints (`/metrics` checked by `promtool check metrics`), a
//! standby replica that never acts, and a clean shutdown that hands the
//! Lease over.
#![allow(clippy::unwrap_used)]

mod kubefix;
mod rig;
mod support;

use k3scale::controller::Controller;
use k3scale::daemon::Daemon;
use k3scale::kube::lease::LeaseLock;
use k3scale::server::{Shared, router};
use k3scale::state::StateStore;
use k3scale::status::Status;
use k3scale::telemetry::Telemetry;
use k3scale_core::lease::ElectionConfig;
use k3scale_testapi::resources::LEASES;
use kubefix::*;
use std::io::Write;
use std::sync::{Arc, RwLock};
use std::time::Duration;

fn election() -> ElectionConfig {
    ElectionConfig {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(300),
    }
}

/// A daemon around `controller`, its HTTP server on 127.0.0.1, and how to stop it.
async fn start_daemon(
    controller: Controller,
    store: Arc<dyn StateStore>,
    identity: &str,
) -> (
    Arc<Shared>,
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let cluster = controller.cluster();
    let shared = Arc::new(Shared {
        telemetry: Telemetry::new(),
        store: store.clone(),
        status: RwLock::new(Status::default()),
        cluster: cluster.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let lease = LeaseLock::new(
        cluster.client().clone(),
        "kube-system",
        "k3scale-test",
        identity,
        election(),
    );
    let daemon = Daemon {
        controller,
        shared: shared.clone(),
        store,
        identity: identity.into(),
        // Far longer than the test: only watch events and elections trigger reconciles.
        interval: Duration::from_secs(600),
        lease: Some(lease),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(daemon.run(async {
        let _ = stopped.await;
    }));
    (shared, url, stop, task)
}

async fn get(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn promtool_check(exposition: &str) -> (bool, String) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn reacts_to_a_pending_pod_serves_its_state_and_hands_over_on_shutdown() {
    let leader_rig = rig::rig("daemon-a").await;
    let rig::Rig {
        docker,
        k,
        store,
        controller,
        db: _db,
    } = leader_rig;
    k.server.set_metrics(k3scale_testapi::MetricsMode::Serving(
        [("server".to_string(), ("200m".to_string(), "512Mi".to_string()))].into(),
    ));
    let (shared, url, stop, task) = start_daemon(controller, store.clone(), "k3scale-a").await;
    eventually(10, "elected", || shared.status().leader).await;

    // A standby replica on the same cluster and store (its own caches and provider).
    let standby = rig::controller(&k, &docker, store.clone(), 1).await;
    let (standby_shared, _, standby_stop, standby_task) =
        start_daemon(standby, store.clone(), "k3scale-b").await;

    // React: the watch sees the pod, the agent container is created.
    k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));
    eventually(10, "agent container created", || docker.containers().len() == 1).await;
    eventually(5, "status shows it launching", || {
        shared.status().pools.first().is_some_and(|p| p.launching == 1)
    })
    .await;

    let (code, body) = get(&format!("{url}/healthz")).await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, body) = get(&format!("{url}/readyz")).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("caches: synced") && body.contains("state store: ok"),
        "{body}"
    );

    let (code, metrics) = get(&format!("{url}/metrics")).await;
    assert_eq!(code, 200);
    let (ok, lint) = promtool_check(&metrics);
    assert!(ok, "promtool check metrics: {lint}\n{metrics}");
    for want in [
        "k3scale_leader 1",
        "k3scale_nodes{pool=\"workers\",state=\"launching\"} 1",
        "k3scale_actions_total{action=\"launch\",result=\"ok\"} 1",
        "k3scale_unschedulable_pods 1",
        "k3scale_metrics_available{signal=\"cpu\"} 1",
        "k3scale_reconcile_duration_seconds_count",
        "k3scale_last_successful_reconcile_timestamp_seconds",
    ] {
        assert!(metrics.contains(want), "missing {want:?} in\n{metrics}");
    }

    let (_, status) = get(&format!("{url}/api/status")).await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["leader"], true);
    assert_eq!(status["identity"], "k3scale-a");
    assert!(
        status["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("unschedulable"))
    );
    let (_, events) = get(&format!("{url}/api/events?limit=10")).await;
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    assert_eq!(events["events"][0]["kind"], "scale-up");
    let (code, page) = get(&format!("{url}/")).await;
    assert_eq!(code, 200);
    assert!(
        page.contains("<h2>Pools</h2>") && page.contains("workers") && page.contains("leader"),
        "{page}"
    );

    // The CLI on top of the API.
    let cli = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_k3scale"))
            .args(&args)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = cli(vec!["status".into(), "--server".into(), url.clone()]).await;
    assert!(text.contains("k3scale-a (leader)"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("workers") && l.split_whitespace().nth(2) == Some("1")),
        "{text}"
    );
    assert!(text.contains("unschedulable pods: 1"), "{text}");
    let text = cli(vec![
        "explain".into(),
        "server".into(),
        "--server".into(),
        url.clone(),
    ])
    .await;
    assert!(text.contains("not managed by k3scale"), "{text}");
    let text = cli(vec!["explain".into(), "--server".into(), url.clone()]).await;
    assert!(text.contains("unschedulable"), "{text}");
    let json = cli(vec![
        "status".into(),
        "--server".into(),
        url.clone(),
        "-o".into(),
        "json".into(),
    ])
    .await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).unwrap()["leader"],
        true
    );
    let down = tokio::process::Command::new(env!("CARGO_BIN_EXE_k3scale"))
        .args(["status", "--server", "http://127.0.0.1:9"])
        .output()
        .await
        .unwrap();
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot reach the k3scale daemon"));

    // The standby saw the same pod and never acted.
    assert!(!standby_shared.status().leader);
    assert_eq!(docker.containers().len(), 1, "only the leader launched");

    // Shutdown: the Lease is released, and the standby takes over well
    // before the lease would have expired.
    stop.send(()).unwrap();
    let stopped_at = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    eventually(3, "standby takes over", || standby_shared.status().leader).await;
    assert!(
        stopped_at.elapsed() < election().lease_duration,
        "handed over, not expired"
    );
    let lease = k.server.get(&LEASES, "kube-system", "k3scale-test").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "k3scale-b");
    // The new leader found the launch in flight: no second machine.
    assert_eq!(docker.containers().len(), 1);
    standby_stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), standby_task)
        .await
        .unwrap()
        .unwrap();
    let lease = k.server.get(&LEASES, "kube-system", "k3scale-test").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "", "released");
    assert!(
        store
            .lock(
                "k3scale-act",
                "next",
                Duration::from_secs(1),
                k3scale::provider::unix_now()
            )
            .await
            .unwrap()
            .is_ok()
    );
}
