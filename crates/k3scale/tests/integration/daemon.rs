//! The daemon end to end: watch-driven reaction to a pending pod (with a
//! resync interval far longer than the test), leader election on a Lease,
//! the HTTP endpoints (`/metrics` checked by `promtool check metrics`), a
//! standby replica that never acts, and a clean shutdown that hands the
//! Lease over.

use k3scale::controller::Controller;
use k3scale::daemon::Daemon;
use k3scale::kube::lease::LeaseLock;
use k3scale::server::{Shared, router};
use k3scale::state::StateStore;
use k3scale_core::lease::ElectionConfig;
use k3scale_testapi::resources::LEASES;
use k3scale_testsupport::{kubefix, promfix, rig, support, webhook};
use kubefix::*;
use std::io::Write;
use std::sync::Arc;
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
    let shared = Shared::new(store.clone(), cluster.clone(), identity);
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
    let (stop, task) = daemon.spawn();
    (shared, url, stop, task)
}

/// Stop a daemon started by [`start_daemon`] and wait for its clean exit.
async fn stop_daemon(stop: tokio::sync::oneshot::Sender<()>, task: tokio::task::JoinHandle<()>) {
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
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
        machines,
        k,
        store,
        controller,
        db: _db,
    } = leader_rig;
    let docker = machines.docker();
    k.server.set_metrics(k3scale_testapi::MetricsMode::Serving(
        [("server".to_string(), ("200m".to_string(), "512Mi".to_string()))].into(),
    ));
    let (shared, url, stop, task) = start_daemon(controller, store.clone(), "k3scale-a").await;
    eventually(10, "elected", || shared.status().leader).await;

    // A standby replica on the same cluster and store (its own caches and provider).
    let standby = rig::controller(&k, docker, store.clone(), 1).await;
    let (standby_shared, standby_url, standby_stop, standby_task) =
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

    // The launch runs in the background; its outcome is counted by the
    // reconcile its end wakes.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (code, metrics) = loop {
        let (code, metrics) = get(&format!("{url}/metrics")).await;
        if metrics.contains("k3scale_actions_total{action=\"launch\",result=\"ok\"} 1")
            || std::time::Instant::now() > deadline
        {
            break (code, metrics);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(code, 200);
    let (ok, lint) = promtool_check(&metrics);
    assert!(ok, "promtool check metrics: {lint}\n{metrics}");
    let build = format!(
        "k3scale_build_info{{version=\"{}\",commit=\"{}\",features=\"{}\"}} 1",
        k3scale::build::VERSION,
        k3scale::build::COMMIT,
        k3scale::build::FEATURES
    );
    assert!(
        !k3scale::build::COMMIT.is_empty() && metrics.contains(&build),
        "{build}\n{metrics}"
    );
    for want in [
        "k3scale_leader 1",
        "k3scale_nodes{pool=\"workers\",state=\"launching\"} 1",
        "k3scale_actions_total{action=\"launch\",result=\"ok\"} 1",
        "k3scale_unschedulable_pods 1",
        "k3scale_pods{state=\"pending\"} 1",
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

    // The standby saw the same pod and never acted; its status is its own
    // view of the cluster, naming the leader (the Service selects both).
    assert!(!standby_shared.status().leader);
    assert_eq!(docker.containers().len(), 1, "only the leader launched");
    eventually(5, "standby status built from its caches", || {
        let st = standby_shared.status();
        st.lease_holder.as_deref() == Some("k3scale-a")
            && st.nodes.iter().any(|n| n.name == "server")
            && st.unschedulable_pods == 1
    })
    .await;
    let st = standby_shared.status();
    assert_eq!(st.identity, "k3scale-b");
    assert!(
        st.reasons.iter().any(|r| r.contains("k3scale-a holds the lease")),
        "{:?}",
        st.reasons
    );
    let (code, body) = get(&format!("{standby_url}/readyz")).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("lease: held by k3scale-a"), "{body}");
    let text = cli(vec!["status".into(), "--server".into(), standby_url.clone()]).await;
    assert!(
        text.contains("k3scale-b (standby)") && text.contains("leader: k3scale-a"),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("server")), "{text}");

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
    stop_daemon(standby_stop, standby_task).await;
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

#[tokio::test]
async fn a_prometheus_outage_does_not_hold_a_node_whose_pods_fit_elsewhere_and_is_told() {
    // Prometheus will listen here, but is down for now.
    let port = promfix::free_port();
    let prometheus = k3scale_core::config::PrometheusConfig {
        url: format!("http://127.0.0.1:{port}"),
        timeout: "1s".into(),
        // Quiet: once readable, CPU 10% and memory 20%, so an idle node may go.
        cpu_query: "vector(0.1)".into(),
        memory_query: "vector(0.2)".into(),
        ..Default::default()
    };
    let r = rig::rig_with("outage", Some(prometheus)).await;
    let rig::Rig {
        machines,
        k,
        store,
        controller,
        db: _db,
    } = r;
    let docker = machines.docker();
    let hook = webhook::Receiver::start(0, 200).await;
    let notifier = k3scale::notify::Notifier::new(
        None,
        Some(k3scale::provider::secret::Secret::new(hook.url.clone())),
    );
    let controller = controller
        .with_notifier(Arc::new(notifier), "test")
        .with_metrics_alert_after(Duration::ZERO);

    // An idle agent whose one small pod fits on the server.
    let provider = support::standin_provider(docker).await;
    use k3scale::provider::NodeProvider;
    provider.create("workers-idle0001").await.unwrap();
    register(&k, "workers-idle0001");
    k.apply(&pod(
        "shop",
        "cron-0",
        "cron",
        Some("workers-idle0001"),
        "100m",
        "64Mi",
    ));

    let (shared, url, stop, task) = start_daemon(controller, store.clone(), "k3scale-a").await;
    eventually(10, "elected and reconciled", || {
        shared.status().last_reconcile.is_some()
    })
    .await;
    // A few more reconciles during the outage (node updates trigger them).
    for _ in 0..3 {
        k.apply(&node("server", None, "2", "4Gi"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let status = shared.status();
    assert!(
        status
            .metrics_error
            .as_deref()
            .is_some_and(|e| e.contains("cannot reach")),
        "{status:?}"
    );
    assert!(
        status.reasons.iter().any(|r| r.contains("metrics unavailable")),
        "{:?}",
        status.reasons
    );
    // Utilization cannot be judged, but the node's one small pod fits on the
    // server by its requests: it goes without waiting for metrics.
    eventually(20, "idle node removed during the outage", || {
        k.server
            .get(&k3scale_testapi::resources::NODES, "", "workers-idle0001")
            .is_none()
    })
    .await;
    assert!(docker.containers().is_empty());
    let status = shared.status();
    assert!(
        status
            .reasons
            .iter()
            .any(|r| r.contains("scale-down goes by requests only"))
            || status.reasons.iter().any(|r| r.contains("metrics unavailable")),
        "{:?}",
        status.reasons
    );

    let (code, body) = get(&format!("{url}/readyz")).await;
    assert_eq!(code, 200, "pending-pod scale-up still works: ready, degraded");
    assert!(body.contains("metrics: unavailable"), "{body}");
    let (_, metrics) = get(&format!("{url}/metrics")).await;
    assert!(
        metrics.contains("k3scale_metrics_available{signal=\"cpu\"} 0"),
        "{metrics}"
    );
    eventually(5, "alert delivered", || !hook.bodies().is_empty()).await;
    let alerts: Vec<_> = hook
        .bodies()
        .into_iter()
        .filter(|b| b["kind"] == "metrics_unavailable")
        .collect();
    assert_eq!(
        alerts.len(),
        1,
        "told once, not at every reconcile: {:?}",
        hook.bodies()
    );

    // Prometheus comes back: the signals are available again.
    let _prom = promfix::start("outage", port, None);
    k.apply(&node("server", None, "2", "4Gi"));
    // Node updates trigger reconciles; each reads the metrics again.
    let mut back = false;
    for _ in 0..40 {
        k.apply(&node("server", None, "2", "4Gi"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        back = shared.status().metrics_error.is_none();
        if back {
            break;
        }
    }
    assert!(back, "metrics back: {:?}", shared.status().metrics_error);
    stop_daemon(stop, task).await;
}

#[tokio::test]
async fn a_long_drain_does_not_delay_a_scale_up() {
    let r = rig::rig("longdrain").await;
    let rig::Rig {
        machines,
        k,
        store,
        controller,
        db: _db,
    } = r;
    let docker = machines.docker();
    // An idle agent whose only pod takes its time to stop: its drain will wait.
    let provider = support::standin_provider(docker).await;
    use k3scale::provider::NodeProvider;
    provider.create("workers-long0001").await.unwrap();
    k.apply(&node("workers-long0001", Some("workers"), "2", "4Gi"));
    let mut slow = pod("shop", "db-0", "db", Some("workers-long0001"), "100m", "64Mi");
    slow.metadata.annotations = Some(labels(&[(k3scale_testapi::NEVER_TERMINATE, "true")]));
    k.apply(&slow);
    let usage: std::collections::BTreeMap<String, (String, String)> = ["server", "workers-long0001"]
        .iter()
        .map(|n| (n.to_string(), ("100m".to_string(), "256Mi".to_string())))
        .collect();
    k.server.set_metrics(k3scale_testapi::MetricsMode::Serving(usage));

    let (shared, _url, stop, task) = start_daemon(controller, store.clone(), "k3scale-a").await;
    let cordoned = || {
        k.server
            .get(&k3scale_testapi::resources::NODES, "", "workers-long0001")
            .is_some_and(|n| n["spec"]["unschedulable"] == true)
    };
    eventually(10, "drain started", cordoned).await;

    // While the drain waits on the budget, a pod needs a new node: it gets one at once.
    let asked = std::time::Instant::now();
    k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));
    eventually(5, "agent launched during the drain", || {
        docker.containers().len() == 2
    })
    .await;
    assert!(asked.elapsed() < Duration::from_secs(3), "{:?}", asked.elapsed());
    assert!(cordoned(), "the drain is still going");
    assert!(shared.status().leader);
    eventually(5, "status lists the drain", || {
        shared.status().draining == ["workers-long0001"]
    })
    .await;

    // Shutdown interrupts the drain; it stays journaled for whoever acts
    // next (and so does the launch, if its create had not ended: the next
    // leader adopts the machine or forgets the launch).
    stop_daemon(stop, task).await;
    use k3scale::state::IntentKind;
    let open: Vec<IntentKind> = store
        .unfinished()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.intent.kind)
        .collect();
    assert!(open.contains(&IntentKind::Drain), "{open:?}");
    assert!(
        open.iter()
            .all(|k| matches!(k, IntentKind::Drain | IntentKind::Launch)),
        "{open:?}"
    );
}

/// A daemon in a runtime of its own, so a crash can be simulated: the
/// runtime is dropped with everything in it (no Lease release, no unlock,
/// the renewals just stop), as when the pod's node dies.
fn start_crashable_daemon(
    controller: Controller,
    store: Arc<dyn StateStore>,
    identity: &str,
) -> (Arc<Shared>, tokio::sync::oneshot::Sender<()>) {
    let cluster = controller.cluster();
    let shared = Shared::new(store.clone(), cluster.clone(), identity);
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
        interval: Duration::from_secs(600),
        lease: Some(lease),
    };
    let (crash, crashed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            tokio::select! {
                _ = daemon.run(std::future::pending()) => {}
                _ = crashed => {}
            }
        });
        rt.shutdown_background();
    });
    (shared, crash)
}

#[tokio::test]
async fn a_crashed_leader_on_another_host_is_replaced_within_the_lease_not_the_lock_expiry() {
    let r = rig::rig("failover").await;
    let rig::Rig {
        machines,
        k,
        store,
        controller,
        db: _db,
    } = r;
    let docker = machines.docker();
    // Identities as `run` makes them (`<hostname>-<pid>`), of two other
    // hosts: the same-host crash check cannot apply.
    let (a, crash) = start_crashable_daemon(controller, store.clone(), "node-a-7");
    eventually(15, "a elected and acting", || a.status().leader).await;
    let standby = rig::controller(&k, docker, store.clone(), 1).await;
    let (b, _url, stop, task) = start_daemon(standby, store.clone(), "node-b-9").await;
    eventually(5, "b is standby", || {
        b.status().lease_holder.as_deref() == Some("node-a-7")
    })
    .await;
    let holder = store
        .lock(
            "k3scale-act",
            "probe",
            Duration::from_secs(1),
            k3scale::provider::unix_now(),
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(holder.owner, "node-a-7", "a holds the act lock");

    crash.send(()).unwrap();
    let crashed_at = std::time::Instant::now();
    // The act lock a left behind would block b for up to its 60 s expiry;
    // b took a's Lease over, so it takes the lock at once.
    eventually(40, "b acts well before the act lock would have expired", || {
        b.status().leader
    })
    .await;
    let took = crashed_at.elapsed();
    eprintln!(
        "failover across hosts: {:.1} s (lease {} s)",
        took.as_secs_f64(),
        election().lease_duration.as_secs()
    );
    assert!(took < k3scale::act_lock::TTL, "not the lock's expiry: {took:?}");
    let lease = k.server.get(&LEASES, "kube-system", "k3scale-test").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "node-b-9");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    stop_daemon(stop, task).await;
}

#[tokio::test]
async fn while_the_apiserver_is_down_the_daemon_is_not_ready_and_acts_on_nothing() {
    let r = rig::rig("stale").await;
    let rig::Rig {
        machines,
        k,
        store,
        controller,
        db: _db,
    } = r;
    let docker = machines.docker();
    let (shared, url, stop, task) = start_daemon(controller, store.clone(), "k3scale-a").await;
    eventually(10, "elected and reconciled", || {
        shared.status().last_reconcile.is_some()
    })
    .await;
    k.server.go_down();
    let mut body = String::new();
    for _ in 0..50 {
        let (code, text) = get(&format!("{url}/readyz")).await;
        body = text;
        if code == 503 && body.contains("caches: not synced") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        body.contains("caches: not synced"),
        "not ready while the caches are stale: {body}"
    );
    // A pod that needs a node appears meanwhile: nothing is decided on stale caches.
    k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(docker.containers().is_empty());

    // Back: the re-list triggers the reconcile that launches for the pod.
    k.server.come_back();
    eventually(20, "launched after the re-list", || {
        docker.containers().len() == 1
    })
    .await;
    eventually(10, "ready again", || shared.status().last_error.is_none()).await;
    let (code, body) = get(&format!("{url}/readyz")).await;
    assert_eq!(code, 200, "{body}");
    stop_daemon(stop, task).await;
}

#[tokio::test]
async fn a_replica_that_cannot_use_its_lease_says_so_and_is_not_ready() {
    let r = rig::rig("noleases").await;
    let rig::Rig {
        k,
        store,
        controller,
        db: _db,
        machines: _machines,
    } = r;
    // Everything but Leases: what the shipped RBAC gives outside its namespace.
    k.server.set_permissions(Some(vec![k3scale_testapi::Rule {
        api_groups: ["", "apps", "policy", "events.k8s.io", "metrics.k8s.io"]
            .map(String::from)
            .to_vec(),
        resources: vec!["*".into()],
        verbs: vec!["*".into()],
    }]));
    let (shared, url, stop, task) = start_daemon(controller, store, "k3scale-a").await;
    eventually(10, "lease error in the status", || {
        shared.status().lease_error.is_some()
    })
    .await;
    let st = shared.status();
    assert!(!st.leader);
    assert!(
        st.lease_error.as_deref().unwrap_or("").contains("403"),
        "{:?}",
        st.lease_error
    );
    let (code, body) = get(&format!("{url}/readyz")).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("lease: error"), "{body}");
    stop_daemon(stop, task).await;
}
