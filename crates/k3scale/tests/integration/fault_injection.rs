//! Crash safety: `k3scale once` is SIGKILLed at each step of a scale-up and
//! of a scale-down (`K3SCALE_CRASH_AT`), then run again. Afterwards there
//! must be no orphaned container, no duplicate launch, no node left
//! cordoned, and no pod deleted other than through the Eviction API.

use k3scale::provider::NodeProvider;
use k3scale_testapi::MetricsMode;
use k3scale_testapi::resources::{NODES, PODS};
use k3scale_testsupport::{kubefix, oncefix, support};
use kubefix::*;
use oncefix::{Setup, once, setup};
use std::collections::BTreeMap;

fn set_usage(s: &Setup, cpu: &str) {
    let usage: BTreeMap<String, (String, String)> =
        s.k.server
            .list(&NODES)
            .iter()
            .map(|n| {
                (
                    n["metadata"]["name"].as_str().unwrap().to_string(),
                    (cpu.to_string(), "512Mi".to_string()),
                )
            })
            .collect();
    s.k.server.set_metrics(MetricsMode::Serving(usage));
}

fn no_pod_deleted_directly(s: &Setup) {
    let requests = s.k.server.requests();
    assert!(
        !requests
            .iter()
            .any(|r| r.verb == "delete" && r.resource == "pods"),
        "a pod was deleted other than by eviction"
    );
}

fn cordoned_nodes(s: &Setup) -> Vec<String> {
    s.k.server
        .list(&NODES)
        .iter()
        .filter(|n| n["spec"]["unschedulable"] == true)
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_scale_up_killed_at_any_step_launches_exactly_once() {
    for point in ["launch:intent-written", "launch:created"] {
        let s = setup(&point.replace(':', "-")).await;
        set_usage(&s, "300m");
        s.k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));

        let (code, signal, output) = once(&s, Some(point), &[]).await;
        assert_eq!(
            (code, signal),
            (None, Some(9)),
            "{point}: killed by SIGKILL\n{output}"
        );
        let after_crash = s.docker.containers().len();
        assert_eq!(after_crash, usize::from(point == "launch:created"), "{point}");

        let (code, _, output) = once(&s, None, &[]).await;
        assert_eq!(code, Some(0), "{point}: the next run succeeds\n{output}");
        assert!(output.contains("recovered: launch"), "{point}: {output}");
        let containers = s.docker.containers();
        assert_eq!(
            containers.len(),
            1,
            "{point}: exactly one agent, never two: {containers:?}\n{output}"
        );

        // A third run changes nothing: the launch is in flight.
        let (code, _, output) = once(&s, None, &[]).await;
        assert_eq!(code, Some(0), "{output}");
        assert_eq!(s.docker.containers(), containers, "{point}: no second launch");
        no_pod_deleted_directly(&s);
    }
}

#[tokio::test]
async fn a_scale_down_killed_at_any_step_still_removes_the_node_cleanly() {
    for point in ["drain:evicting", "drain:node-deleted"] {
        let s = setup(&point.replace(':', "-")).await;
        let provider = support::standin_provider(&s.docker).await;
        // An idle agent with one small pod that fits on the server.
        provider.create("workers-idle0001").await.unwrap();
        register(&s.k, "workers-idle0001");
        s.k.apply(&pod(
            "shop",
            "cron-0",
            "cron",
            Some("workers-idle0001"),
            "100m",
            "64Mi",
        ));
        set_usage(&s, "100m");

        let (code, signal, output) = once(&s, Some(point), &[]).await;
        assert_eq!(
            (code, signal),
            (None, Some(9)),
            "{point}: killed by SIGKILL\n{output}"
        );

        let (code, _, output) = once(&s, None, &[]).await;
        assert_eq!(code, Some(0), "{point}: the next run succeeds\n{output}");
        assert!(output.contains("recovered: drain"), "{point}: {output}");
        assert!(
            s.docker.containers().is_empty(),
            "{point}: no orphaned container\n{output}"
        );
        assert!(
            s.k.server.get(&NODES, "", "workers-idle0001").is_none(),
            "{point}: Node gone"
        );
        assert!(cordoned_nodes(&s).is_empty(), "{point}: nothing left cordoned");
        assert!(
            s.k.server.get(&PODS, "shop", "cron-0").is_none(),
            "{point}: the pod was evicted"
        );
        no_pod_deleted_directly(&s);
    }
}

/// Start `k3scale run` with the setup's config; stderr goes to `log`.
fn run_daemon(s: &Setup, crash_at: Option<&str>, log: &str) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_k3scale"));
    cmd.arg("run")
        .arg("-c")
        .arg(&s.config)
        .env("K3SCALE_TEST_TOKEN", support::TOKEN)
        .env("K3SCALE_LOG", "k3scale=info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(s.dir.join(log)).unwrap());
    if let Some(point) = crash_at {
        cmd.env("K3SCALE_CRASH_AT", point);
    }
    cmd.spawn().unwrap()
}

#[tokio::test]
async fn the_daemon_killed_mid_drain_is_finished_by_its_successor_which_stops_on_sigterm() {
    let s = setup("daemon-kill").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = std::fs::read_to_string(&s.config).unwrap();
    config.push_str(&format!("server: {{ listen: \"127.0.0.1:{port}\" }}\n"));
    std::fs::write(&s.config, config).unwrap();
    let provider = support::standin_provider(&s.docker).await;
    provider.create("workers-dkill001").await.unwrap();
    register(&s.k, "workers-dkill001");
    s.k.apply(&pod(
        "shop",
        "cron-0",
        "cron",
        Some("workers-dkill001"),
        "100m",
        "64Mi",
    ));
    set_usage(&s, "100m");

    let mut first = run_daemon(&s, Some("drain:evicting"), "first.log");
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), first.wait())
        .await
        .unwrap()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    let log = |name: &str| std::fs::read_to_string(s.dir.join(name)).unwrap_or_default();
    assert_eq!(status.signal(), Some(9), "{}", log("first.log"));
    assert!(
        s.k.server.get(&NODES, "", "workers-dkill001").is_some(),
        "killed mid-drain"
    );

    // The successor waits out the dead leader's Lease (15 s), then resumes the drain.
    let mut second = run_daemon(&s, None, "second.log");
    eventually(45, "the successor finishes the drain", || {
        s.k.server.get(&NODES, "", "workers-dkill001").is_none() && s.docker.containers().is_empty()
    })
    .await;
    assert!(cordoned_nodes(&s).is_empty());
    no_pod_deleted_directly(&s);

    // SIGTERM: a clean exit that hands the Lease over.
    let pid = nix::unistd::Pid::from_raw(second.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(15), second.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "{}", log("second.log"));
    // Outside a pod the Lease lives in k3scale-system, the namespace the
    // shipped RBAC covers (never kube-system).
    let lease =
        s.k.server
            .get(
                &k3scale_testapi::resources::LEASES,
                "k3scale-system",
                &format!("k3scale-{}", s.docker.name),
            )
            .unwrap();
    assert!(
        s.k.server
            .list(&k3scale_testapi::resources::LEASES)
            .iter()
            .all(|l| l["metadata"]["namespace"] != "kube-system"),
        "no Lease in kube-system"
    );
    assert_eq!(lease["spec"]["holderIdentity"], "", "released on SIGTERM");
}
