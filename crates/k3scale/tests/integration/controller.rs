//! The controller end to end: the test API server (playing the K3s server,
//! scheduler and kubelets), the real Docker provider with stand-in agents,
//! metrics-server through the API, and the SQLite state store.
//! A pending pod gets a new agent container; when the load is gone the node
//! is drained and the container, Node and secret are removed. Journaled
//! actions of a killed run are finished by the next one, never repeated.

use k3scale::provider::secret::Secret;
use k3scale::provider::unix_now;
use k3scale::state::{Intent, StateStore};
use k3scale_core::drain::Drain;
use k3scale_testapi::resources::{NODES, PODS};
use k3scale_testsupport::{kubefix, rig, support, webhook};
use kubefix::*;
use rig::rig;
use std::time::Duration;

#[tokio::test]
async fn a_pending_pod_gets_an_agent_and_an_idle_agent_is_drained_away() {
    let mut r = rig("e2e").await;
    let (controller, hook) = told_to_hook(r.controller).await;
    r.controller = controller;
    r.usage("200m");
    r.k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));
    r.synced("pending pod seen", |c| {
        let mut s = k3scale_core::Snapshot::default();
        c.fill(&mut s);
        s.pods
            .iter()
            .any(|p| p.name == "web-0" && p.unschedulable_since.is_some())
    })
    .await;

    let first = r.controller.reconcile(unix_now()).await.unwrap();
    assert_eq!(first.launched.len(), 1, "{:?}", first.decision.reasons);
    let agent = first.launched[0].node.clone();
    assert!(agent.starts_with("workers-"));
    assert_eq!(
        r.machine_names(),
        std::slice::from_ref(&agent),
        "one agent container, named as its Node"
    );
    assert!(
        r.store.unfinished().await.unwrap().is_empty(),
        "the launch intent is closed"
    );

    // A second pass before the node joins: the launch in flight covers the pod.
    let second = r.controller.reconcile(unix_now()).await.unwrap();
    assert!(second.launched.is_empty(), "{:?}", second.decision.reasons);
    assert_eq!(r.machine_names().len(), 1, "no double launch");

    // The agent joins and the scheduler places the pod on it.
    r.register(&agent);
    r.k.apply(&pod("shop", "web-0", "web", Some(&agent), "1500m", "1Gi"));
    r.usage("1500m");
    r.synced("node and pod seen", |c| c.pods_on_node(&agent).len() == 1)
        .await;
    let third = r.controller.reconcile(unix_now()).await.unwrap();
    assert!(
        third.launched.is_empty() && third.removed.is_empty(),
        "{:?}",
        third.decision.reasons
    );

    // The load is gone: the idle agent is drained and removed.
    r.k.server.remove(&PODS, "shop", "web-0");
    r.usage("100m");
    r.synced("pod gone", |c| c.pods_on_node(&agent).is_empty()).await;
    let fourth = r.controller.reconcile(unix_now()).await.unwrap();
    assert_eq!(
        fourth.removed,
        std::slice::from_ref(&agent),
        "{:?}",
        fourth.decision.reasons
    );
    assert!(r.machine_names().is_empty(), "the agent container is gone");
    assert!(r.k.server.get(&NODES, "", &agent).is_none(), "and its Node");
    assert!(
        r.k.server
            .get(
                &k3scale_testapi::resources::SECRETS,
                "kube-system",
                &format!("{agent}.node-password.k3s")
            )
            .is_none()
    );

    r.controller.flush_notifications(Duration::from_secs(10)).await;
    // Started (launched), completed (Ready), then the drain's removal.
    let told: Vec<(String, String, String)> = hook
        .bodies()
        .iter()
        .map(|b| {
            let field = |k: &str| b[k].as_str().unwrap_or("").to_string();
            (
                field("kind"),
                b["nodes"][0].as_str().unwrap_or("").to_string(),
                field("message"),
            )
        })
        .collect();
    let kinds: Vec<&str> = told.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(kinds, ["scale_up", "scale_up", "scale_down"], "{told:?}");
    assert!(told.iter().all(|t| t.1 == agent), "{told:?}");
    assert!(
        told[0].2.starts_with("launched") && told[1].2.contains("Ready"),
        "{told:?}"
    );

    let history = r.store.events(None, 10).await.unwrap();
    let kinds: Vec<&str> = history.iter().map(|e| e.event.kind.as_str()).collect();
    assert_eq!(kinds, ["scale-down", "scale-up"]);
    assert!(
        history[1].event.message.contains("unschedulable"),
        "{}",
        history[1].event.message
    );
    assert!(r.store.unfinished().await.unwrap().is_empty());
}

#[tokio::test]
async fn dry_run_decides_the_same_and_does_nothing() {
    let mut r = rig::fake_rig("dry").await;
    r.usage("200m");
    r.k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));
    r.synced("pending pod seen", |c| {
        let mut s = k3scale_core::Snapshot::default();
        c.fill(&mut s);
        s.pods.iter().any(|p| p.name == "web-0")
    })
    .await;
    // What a killed run left: a dry run must neither finish nor drop it.
    let intent = Intent {
        kind: k3scale::state::IntentKind::Launch,
        pool: "workers".into(),
        node: "workers-left0001".into(),
        detail: serde_json::Value::Null,
    };
    r.store.open(&intent, unix_now()).await.unwrap();
    let mut policy = r.controller.policy().clone();
    policy.dry_run = true;
    r.controller = r.controller.with_policy(policy);
    let done = r.controller.reconcile(unix_now()).await.unwrap();
    assert!(done.decision.dry_run);
    assert_eq!(done.decision.scale_up.len(), 1, "the decision is made");
    assert!(done.launched.is_empty());
    assert!(r.machine_names().is_empty(), "nothing was created");
    assert!(r.store.events(None, 10).await.unwrap().is_empty());
    assert_eq!(
        r.store.unfinished().await.unwrap().len(),
        1,
        "the journal is left to whoever acts"
    );
    assert!(
        r.store.get("stamps").await.unwrap().is_none(),
        "no stored state written"
    );
}

#[tokio::test]
async fn a_killed_run_is_finished_by_the_next_never_repeated() {
    let mut r = rig::fake_rig("recover").await;
    r.usage("100m");
    let provider = r.provider().await;
    let now = unix_now();
    let intent = |kind: &str, node: &str, detail: serde_json::Value| Intent {
        kind: k3scale::state::IntentKind::parse(kind),
        pool: "workers".into(),
        node: node.into(),
        detail,
    };
    // Killed after the provider call: the machine exists, the intent is open.
    r.store
        .open(
            &intent("launch", "workers-made0001", serde_json::Value::Null),
            now,
        )
        .await
        .unwrap();
    provider.create("workers-made0001").await.unwrap();
    // Killed after the intent, before the provider call.
    r.store
        .open(
            &intent("launch", "workers-never001", serde_json::Value::Null),
            now,
        )
        .await
        .unwrap();
    // Killed mid-drain: a cordoned node with its journaled drain state.
    provider.create("workers-drain001").await.unwrap();
    r.register("workers-drain001");
    r.synced("drained node seen", |c| c.node("workers-drain001").is_some())
        .await;
    r.controller_cluster().cordon("workers-drain001").await.unwrap();
    let mut drain = Drain::start("workers-drain001", now, r.controller.drain_config().clone());
    drain.cordoned();
    r.store
        .open(
            &intent("drain", "workers-drain001", serde_json::to_value(&drain).unwrap()),
            now,
        )
        .await
        .unwrap();

    let done = r.controller.reconcile(unix_now()).await.unwrap();
    assert_eq!(done.recovered.len(), 3, "{:?}", done.recovered);
    assert!(r.store.unfinished().await.unwrap().is_empty());
    assert_eq!(
        r.machine_names(),
        ["workers-made0001"],
        "adopted, the drained one gone, none twice"
    );
    assert!(r.k.server.get(&NODES, "", "workers-drain001").is_none());
    let requests = r.k.server.requests();
    assert!(
        !requests
            .iter()
            .any(|q| q.verb == "delete" && q.resource == "pods"),
        "no pod deleted directly"
    );
}

#[tokio::test]
async fn a_node_whose_kubelet_stopped_is_deleted_without_evicting_once_unready_long_enough() {
    let mut r = rig::fake_rig("unready").await;
    r.usage("100m");
    let provider = r.provider().await;
    provider.create("workers-dead0001").await.unwrap();
    r.register("workers-dead0001");
    r.k.apply(&pod(
        "shop",
        "db-0",
        "db",
        Some("workers-dead0001"),
        "1800m",
        "1Gi",
    ));
    pods_seen(&r, &["db-0"]).await;
    // The controller has seen it joined (its pod cannot move: it stays).
    let done = r.controller.reconcile(unix_now()).await.unwrap();
    assert!(done.decision.scale_down.is_empty(), "{:?}", done.decision.reasons);
    // Then its kubelet stops posting status: Ready=Unknown from now on.
    r.k.server.stop_heartbeat("workers-dead0001");
    r.synced("node seen not Ready", |c| {
        c.node("workers-dead0001").is_some_and(|n| !n.ready)
    })
    .await;
    let now = unix_now();

    // Ten minutes on it stays, and says when it would go.
    let done = r
        .controller
        .reconcile(now + Duration::from_secs(600))
        .await
        .unwrap();
    assert!(done.decision.scale_down.is_empty());
    let said = done
        .decision
        .reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>();
    assert!(
        said.iter()
            .any(|s| s.contains("workers-dead0001") && s.contains("if still not Ready at 1200s")),
        "{said:?}"
    );
    assert_eq!(r.machine_names(), ["workers-dead0001"]);

    // Past scale_down.unready_time (20 minutes): machine and Node deleted,
    // its pod never evicted (no kubelet would carry it out).
    let done = r
        .controller
        .reconcile(now + Duration::from_secs(1260))
        .await
        .unwrap();
    assert_eq!(done.decision.scale_down.len(), 1, "{:?}", done.decision.reasons);
    assert!(done.decision.scale_down[0].forced);
    assert!(r.machine_names().is_empty());
    assert!(r.k.server.get(&NODES, "", "workers-dead0001").is_none());
    assert!(
        !r.k.server
            .requests()
            .iter()
            .any(|q| q.resource == "pods/eviction"),
        "nothing evicted"
    );
    assert!(
        r.store.unfinished().await.unwrap().is_empty(),
        "the drain is closed"
    );
}

/// Pods seen by the controller's caches, pending or placed.
async fn pods_seen(r: &rig::Rig, names: &[&str]) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    r.synced("pods seen", move |c| {
        let mut s = k3scale_core::Snapshot::default();
        c.fill(&mut s);
        names.iter().all(|n| {
            s.pods
                .iter()
                .any(|p| &p.name == n && (p.node_name.is_some() || p.unschedulable_since.is_some()))
        })
    })
    .await;
}

#[tokio::test]
async fn a_node_ready_but_still_tainted_not_ready_is_the_launch_in_flight_not_a_reason_for_more() {
    let mut r = rig::fake_rig("taintwindow").await;
    r.usage("200m");
    // Two pods of a whole node each: exactly two nodes' worth.
    r.k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));
    r.k.apply(&pod("shop", "web-1", "web", None, "1500m", "1Gi"));
    pods_seen(&r, &["web-0", "web-1"]).await;
    let first = r.controller.reconcile(unix_now()).await.unwrap();
    assert_eq!(first.launched.len(), 2, "{:?}", first.decision.reasons);

    // The kubelets register: Ready, but the node lifecycle controller has not
    // removed the not-ready taint yet (held open here; ~10 ms in a real cluster,
    // and every Node update triggers a reconcile, so the window is always hit).
    r.k.server.pause_node_lifecycle_controller(true);
    for agent in first.launched.iter().map(|l| &l.node) {
        register_starting(&r.k, agent);
    }
    let agents: Vec<String> = first.launched.iter().map(|l| l.node.clone()).collect();
    r.synced("registered nodes seen", move |c| {
        agents.iter().all(|a| c.node(a).is_some())
    })
    .await;
    let second = r.controller.reconcile(unix_now()).await.unwrap();
    let reasons: Vec<String> = second.decision.reasons.iter().map(ToString::to_string).collect();
    assert!(
        second.launched.is_empty(),
        "no extra node for the taint window: {reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|t| t.contains("2 fit nodes already launching")),
        "{reasons:?}"
    );
    assert_eq!(r.machine_names().len(), 2);
    assert_eq!(r.controller.snapshot().in_flight.len(), 2, "still launching");

    // The taint goes: the launch is complete, and still nothing more.
    r.k.server.pause_node_lifecycle_controller(false);
    let agents: Vec<String> = first.launched.iter().map(|l| l.node.clone()).collect();
    r.synced("taints removed", move |c| {
        agents
            .iter()
            .all(|a| c.node(a).is_some_and(|n| n.taints.is_empty()))
    })
    .await;
    let third = r.controller.reconcile(unix_now()).await.unwrap();
    assert!(third.launched.is_empty(), "{:?}", third.decision.reasons);
    assert!(r.controller.snapshot().in_flight.is_empty(), "joined");

    // The pending pods were told why nodes came (cluster-autoscaler's convention).
    r.controller.flush_notifications(Duration::from_secs(10)).await;
    let triggered: Vec<String> =
        r.k.server
            .list(&k3scale_testapi::resources::EVENTS)
            .into_iter()
            .filter(|e| e["reason"] == "TriggeredScaleUp" && e["regarding"]["kind"] == "Pod")
            .map(|e| e["regarding"]["name"].as_str().unwrap_or("").to_string())
            .collect();
    assert_eq!(triggered.len(), 2, "{triggered:?}");
    assert!(triggered.contains(&"web-0".to_string()) && triggered.contains(&"web-1".to_string()));
}

#[tokio::test]
async fn without_metrics_an_empty_node_launched_in_error_is_still_removed() {
    let mut r = rig::fake_rig("nometrics").await;
    // metrics-server absent (the test server answers 404): no usage at all.
    let provider = r.provider().await;
    provider.create("workers-oops0001").await.unwrap();
    r.register("workers-oops0001");
    r.synced("node seen", |c| c.node("workers-oops0001").is_some())
        .await;
    let done = r.controller.reconcile(unix_now()).await.unwrap();
    let reasons: Vec<String> = done.decision.reasons.iter().map(ToString::to_string).collect();
    assert!(
        reasons.iter().any(|t| t.contains("metrics unavailable")),
        "{reasons:?}"
    );
    assert_eq!(done.removed, ["workers-oops0001"], "{reasons:?}");
    assert!(r.machine_names().is_empty());
}

#[tokio::test]
async fn a_pools_drain_timeout_is_the_deadline_its_drains_are_journaled_with() {
    let mut r = rig::fake_rig("draintimeout").await;
    // A fresh controller takes the policy's deadline (the rig then sets 20 s).
    let loaded = k3scale_core::config::load("k.yaml", rig::CONFIG).unwrap();
    assert_eq!(loaded.policy.scale_down.drain_timeout, Duration::from_secs(120));
    // This pool's override wins.
    let mut policy = r.controller.policy().clone();
    policy.pools[0].drain_timeout = Some(Duration::from_secs(7));
    r.controller = r.controller.with_policy(policy).with_background(true);
    r.usage("100m");
    let provider = r.provider().await;
    provider.create("workers-slow0001").await.unwrap();
    r.register("workers-slow0001");
    // Never finishes terminating: the drain stays journaled while we look.
    let mut cron = pod("shop", "cron-0", "cron", Some("workers-slow0001"), "100m", "64Mi");
    cron.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(k3scale_testapi::NEVER_TERMINATE.into(), "true".into());
    r.k.apply(&cron);
    r.synced("pod seen", |c| c.pods_on_node("workers-slow0001").len() == 1)
        .await;
    let done = r.controller.reconcile(unix_now()).await.unwrap();
    assert_eq!(done.decision.scale_down.len(), 1, "{:?}", done.decision.reasons);
    let open = r.store.unfinished().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        open[0].intent.detail["config"]["eviction_timeout"],
        serde_json::json!({ "secs": 7, "nanos": 0 }),
        "{}",
        open[0].intent.detail
    );
    r.controller.stop_drains();
}

#[tokio::test]
async fn a_failed_launch_is_told_with_its_pool_and_node() {
    use k3scale::provider::ProviderError;
    use k3scale::provider::fake::FakeProvider;
    use k3scale::state::sqlite::SqliteStore;
    let k = start().await;
    k3s_server(&k);
    k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));
    let cluster = k.cluster().await;
    let fake = FakeProvider::new("workers");
    fake.fail_next_create(ProviderError::Fatal("quota of the project reached".into()));
    let dir = support::TempDir::new("failtold");
    let store = std::sync::Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    let loaded = k3scale_core::config::load("k.yaml", rig::CONFIG).unwrap();
    let pools = std::collections::BTreeMap::from([(
        "workers".to_string(),
        k3scale::wiring::machine_pool(
            &loaded.policy.pools[0],
            Some(&loaded.config.pools[0]),
            Box::new(fake),
        ),
    )]);
    let controller = k3scale::controller::Controller::new(
        loaded.policy,
        cluster.clone(),
        None,
        pools,
        store,
        Box::new(|| 7),
    );
    let (mut controller, hook) = told_to_hook(controller).await;
    eventually(10, "pending pod seen", || pending_seen(&cluster, 1)).await;
    let done = controller.reconcile(unix_now()).await.unwrap();
    assert_eq!(done.failed.len(), 1, "{:?}", done.decision.reasons);
    let failure = &done.failed[0];
    assert_eq!(
        (failure.action, failure.pool.as_str()),
        (k3scale::controller::Action::Launch, "workers")
    );
    controller.flush_notifications(Duration::from_secs(10)).await;
    let told: Vec<serde_json::Value> = hook
        .bodies()
        .into_iter()
        .filter(|b| b["kind"] == "failure")
        .collect();
    assert_eq!(told.len(), 1, "{:?}", hook.bodies());
    assert_eq!(told[0]["pool"], "workers");
    assert_eq!(told[0]["nodes"][0], failure.node.as_str());
    let message = told[0]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("quota of the project reached") && message.contains("pool workers"),
        "{message}"
    );
}

/// Two pools of fake machines, `spot` preferred (priority) over `ondemand`,
/// and a webhook receiver for what is told.
const TWO_POOLS: &str = "
cluster: test
metrics: { source: metrics-server }
policy:
  expander: priority
  scale_up: { cooldown: 5m }
  scale_down: { enabled: false }
pools:
  - name: spot
    min: 0
    max: 3
    priority: 10
    template: { cpu: \"2\", memory: 4Gi }
    provider: { exec: { create: c, delete: d, list: l } }
  - name: ondemand
    min: 0
    max: 3
    priority: 1
    template: { cpu: \"2\", memory: 4Gi }
    provider: { exec: { create: c, delete: d, list: l } }
";

struct TwoPools {
    _k: Kube,
    controller: k3scale::controller::Controller,
    spot: std::sync::Arc<k3scale::provider::fake::FakeProvider>,
    ondemand: std::sync::Arc<k3scale::provider::fake::FakeProvider>,
    store: std::sync::Arc<dyn StateStore>,
    hook: webhook::Receiver,
    _dir: support::TempDir,
}

/// `spot` says `spot_error` to its first create; one pending pod waits.
async fn two_pools(tag: &str, spot_error: Option<k3scale::provider::ProviderError>) -> TwoPools {
    use k3scale::provider::fake::FakeProvider;
    use k3scale::state::sqlite::SqliteStore;
    let k = start().await;
    k3s_server(&k);
    k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));
    let cluster = k.cluster().await;
    let spot = std::sync::Arc::new(FakeProvider::new("spot"));
    if let Some(e) = spot_error {
        spot.fail_next_create(e);
    }
    let ondemand = std::sync::Arc::new(FakeProvider::new("ondemand"));
    let dir = support::TempDir::new(&format!("kinds-{tag}"));
    let store: std::sync::Arc<dyn StateStore> =
        std::sync::Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    let loaded = k3scale_core::config::load("k.yaml", TWO_POOLS).unwrap();
    let machines = |name: &str, p: &std::sync::Arc<FakeProvider>| {
        let pool = loaded.policy.pool(name).unwrap();
        let config = loaded.config.pools.iter().find(|c| c.name == name);
        k3scale::wiring::machine_pool(pool, config, Box::new(p.clone()))
    };
    let pools = std::collections::BTreeMap::from([
        ("spot".to_string(), machines("spot", &spot)),
        ("ondemand".to_string(), machines("ondemand", &ondemand)),
    ]);
    let controller = k3scale::controller::Controller::new(
        loaded.policy.clone(),
        cluster.clone(),
        None,
        pools,
        store.clone(),
        Box::new({
            let mut n = 0u64;
            move || {
                n += 1;
                n
            }
        }),
    );
    let (controller, hook) = told_to_hook(controller).await;
    eventually(10, "pending pod seen", || pending_seen(&cluster, 1)).await;
    TwoPools {
        _k: k,
        controller,
        spot,
        ondemand,
        store,
        hook,
        _dir: dir,
    }
}

fn creates(p: &k3scale::provider::fake::FakeProvider) -> usize {
    p.calls()
        .iter()
        .filter(|c| matches!(c, k3scale::provider::fake::Call::Create(_)))
        .count()
}

async fn failures_told(t: &mut TwoPools) -> Vec<serde_json::Value> {
    t.controller.flush_notifications(Duration::from_secs(10)).await;
    t.hook
        .bodies()
        .into_iter()
        .filter(|b| b["kind"] == "failure")
        .collect()
}

#[tokio::test]
async fn no_capacity_in_the_preferred_pool_launches_in_the_next_in_the_same_reconcile() {
    use k3scale::provider::ProviderError;
    let mut t = two_pools(
        "capacity",
        Some(ProviderError::InsufficientCapacity(
            "no spot capacity in eu-west-1a".into(),
        )),
    )
    .await;
    let now = unix_now();
    let done = t.controller.reconcile(now).await.unwrap();
    assert_eq!(
        (creates(&t.spot), creates(&t.ondemand)),
        (1, 1),
        "{:?}",
        done.decision.reasons
    );
    assert_eq!(done.launched.len(), 1);
    assert_eq!(done.launched[0].pool, "ondemand", "{:?}", done.launched);
    let text: Vec<String> = done.decision.reasons.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|r| r.contains("pool spot is backing off: its provider had no capacity")),
        "{text:?}"
    );
    // Told once, with what the provider said and what happens next.
    let told = failures_told(&mut t).await;
    assert_eq!(told.len(), 1, "{told:?}");
    let message = told[0]["message"].as_str().unwrap();
    assert!(
        message.contains("no spot capacity") && message.contains("next pool"),
        "{message}"
    );
    // The launch happened, so the cooldown started; spot stays held (30 s).
    let s = t.controller.snapshot();
    assert_eq!(
        s.backoff.get("spot").map(|h| h.cause),
        Some(k3scale_core::lifecycle::HoldCause::NoCapacity)
    );
}

#[tokio::test]
async fn a_transient_failure_is_retried_soon_without_a_cooldown_and_told_once() {
    use k3scale::provider::ProviderError;
    let mut t = two_pools("transient", None).await;
    // Both pools fail for now: nothing launches, nothing starts a cooldown.
    t.spot
        .fail_next_create(ProviderError::Transient("engine unreachable".into()));
    t.ondemand
        .fail_next_create(ProviderError::Transient("engine unreachable".into()));
    let now = unix_now();
    let done = t.controller.reconcile(now).await.unwrap();
    assert!(done.launched.is_empty());
    assert_eq!((creates(&t.spot), creates(&t.ondemand)), (1, 1));
    let text = done
        .decision
        .reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("pool spot launches again in 10s"), "{text}");
    // Within the retry wait: nothing is tried.
    t.controller
        .reconcile(now + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!((creates(&t.spot), creates(&t.ondemand)), (1, 1));
    // After it, the preferred pool is tried again and works: no 5-minute
    // cooldown was started by launches that did not happen.
    let done = t
        .controller
        .reconcile(now + Duration::from_secs(11))
        .await
        .unwrap();
    assert_eq!(done.launched.len(), 1, "{:?}", done.decision.reasons);
    assert_eq!(done.launched[0].pool, "spot");
    assert_eq!(failures_told(&mut t).await.len(), 2, "one per pool's streak");
}

#[tokio::test]
async fn a_fatal_error_fails_the_pool_until_reset_and_the_pods_go_elsewhere() {
    use k3scale::provider::ProviderError;
    let mut t = two_pools(
        "fatal",
        Some(ProviderError::Fatal("image k3s:v9 not found".into())),
    )
    .await;
    let now = unix_now();
    let done = t.controller.reconcile(now).await.unwrap();
    assert_eq!(done.launched[0].pool, "ondemand", "{:?}", done.launched);
    let text = done
        .decision
        .reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("pool spot has failed") && text.contains("k3scale pool reset spot"),
        "{text}"
    );
    // A day later it is still failed: never tried again.
    t.controller
        .reconcile(now + Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(creates(&t.spot), 1);
    let store = t.store.clone();
    let key = "lifecycle/spot";
    let stored = store.get(key).await.unwrap().unwrap().value;
    assert!(
        stored.contains("\"failed\"") && stored.contains("image k3s:v9 not found"),
        "{stored}"
    );
    // The operator fixes the image and resets the pool.
    assert!(
        k3scale::controller::reset_pool(store.as_ref(), "spot")
            .await
            .unwrap()
    );
    assert!(
        !k3scale::controller::reset_pool(store.as_ref(), "spot")
            .await
            .unwrap(),
        "once"
    );
    let stored = store.get(key).await.unwrap().unwrap().value;
    assert!(!stored.contains("\"failed\""), "{stored}");
    let told = failures_told(&mut t).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0]["message"]
            .as_str()
            .unwrap()
            .contains("k3scale pool reset spot")
    );
}

#[tokio::test]
async fn each_pools_scale_up_notification_names_only_its_own_nodes() {
    // Pools `web` and `web-big` scaling in one pass: `web`'s nodes are not
    // found by the name prefix `web-`.
    use k3scale::provider::fake::FakeProvider;
    use k3scale::state::sqlite::SqliteStore;
    let k = start().await;
    k3s_server(&k);
    // One pod only `web-big` takes (3 CPU), one that fits a `web` node.
    k.apply(&pod("shop", "big-0", "big", None, "3", "1Gi"));
    k.apply(&pod("shop", "small-0", "small", None, "1500m", "1Gi"));
    let cluster = k.cluster().await;
    let config = "
cluster: test
metrics: { source: metrics-server }
policy: { expander: priority, scale_down: { enabled: false } }
pools:
  - { name: web, min: 0, max: 3, priority: 10, template: { cpu: \"2\", memory: 4Gi }, provider: { exec: { create: c, delete: d, list: l } } }
  - { name: web-big, min: 0, max: 3, priority: 1, template: { cpu: \"4\", memory: 8Gi }, provider: { exec: { create: c, delete: d, list: l } } }
";
    let loaded = k3scale_core::config::load("k.yaml", config).unwrap();
    let pools = ["web", "web-big"]
        .into_iter()
        .map(|name| {
            let pool = loaded.policy.pool(name).unwrap();
            let provider = Box::new(FakeProvider::new(name));
            (
                name.to_string(),
                k3scale::wiring::machine_pool(pool, None, provider),
            )
        })
        .collect();
    let dir = support::TempDir::new("prefix");
    let store = std::sync::Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    let controller = k3scale::controller::Controller::new(
        loaded.policy,
        cluster.clone(),
        None,
        pools,
        store,
        Box::new(|| 7),
    );
    let (mut controller, hook) = told_to_hook(controller).await;
    eventually(10, "pending pods seen", || pending_seen(&cluster, 2)).await;
    let done = controller.reconcile(unix_now()).await.unwrap();
    assert_eq!(done.launched.len(), 2, "{:?}", done.decision.reasons);
    controller.flush_notifications(Duration::from_secs(10)).await;
    let ups: Vec<serde_json::Value> = hook
        .bodies()
        .into_iter()
        .filter(|b| b["kind"] == "scale_up")
        .collect();
    assert_eq!(ups.len(), 2, "{ups:?}");
    for up in ups {
        let pool = up["pool"].as_str().unwrap().to_string();
        let nodes: Vec<&str> = up["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert_eq!(nodes.len(), 1, "{pool}: {nodes:?}");
        let suffix = nodes[0]
            .strip_prefix(&format!("{pool}-"))
            .unwrap_or_else(|| panic!("{pool}: {nodes:?}"));
        assert!(
            !suffix.contains('-'),
            "{pool} was told of another pool's node: {nodes:?}"
        );
    }
}

#[tokio::test]
async fn a_machine_already_gone_is_removed_fine() {
    use k3scale::machines::MachinePool;
    use k3scale::provider::fake::FakeProvider;
    let fake = FakeProvider::new("workers");
    // A provider that answers NotFound for a machine already gone.
    fake.fail_next_delete(k3scale::provider::ProviderError::NotFound(
        "no workers-gone".into(),
    ));
    fake.fail_next_delete(k3scale::provider::ProviderError::Transient("engine down".into()));
    let mut pool = MachinePool::new(
        "workers",
        Box::new(fake),
        k3scale_core::lifecycle::LifecycleConfig::default(),
        8,
    );
    pool.remove("workers-gone").await.unwrap();
    // Any other error is still one.
    assert!(pool.remove("workers-gone").await.is_err());
}

#[tokio::test]
async fn a_pool_whose_engine_refuses_the_container_falls_over_to_the_next_pool() {
    // Real Docker: pool `edge` points its agents at a network the engine
    // does not have, so the engine refuses to start them; pool `core` works.
    use k3scale::provider::docker::DockerProvider;
    use k3scale::state::sqlite::SqliteStore;
    let docker = support::TestCluster::new("failover");
    let k = start().await;
    k3s_server(&k);
    k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));
    let cluster = k.cluster().await;
    let config = "
cluster: test
metrics: { source: metrics-server }
policy: { expander: priority, scale_down: { enabled: false } }
pools:
  - { name: edge, min: 0, max: 3, priority: 10, template: { cpu: \"2\", memory: 4Gi }, provider: { exec: { create: c, delete: d, list: l } } }
  - { name: core, min: 0, max: 3, priority: 1, template: { cpu: \"2\", memory: 4Gi }, provider: { exec: { create: c, delete: d, list: l } } }
";
    let loaded = k3scale_core::config::load("k.yaml", config).unwrap();
    let mut pools = std::collections::BTreeMap::new();
    for name in ["edge", "core"] {
        let pool = loaded.policy.pool(name).unwrap().clone();
        let mut cfg = support::standin_config(&docker);
        if name == "edge" {
            cfg.network = format!("{}-missing", docker.network);
        }
        let provider = DockerProvider::connect(&docker.name, pool.clone(), cfg, Secret::new(support::TOKEN))
            .await
            .unwrap();
        pools.insert(
            name.to_string(),
            k3scale::wiring::machine_pool(&pool, None, Box::new(provider)),
        );
    }
    let dir = support::TempDir::new("failover");
    let store = std::sync::Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    let mut controller = k3scale::controller::Controller::new(
        loaded.policy,
        cluster.clone(),
        None,
        pools,
        store,
        Box::new(|| 42),
    );
    eventually(10, "pending pod seen", || pending_seen(&cluster, 1)).await;
    let done = controller.reconcile(unix_now()).await.unwrap();
    assert_eq!(done.failed.len(), 1, "{:?}", done.failed);
    assert_eq!(done.failed[0].pool, "edge");
    assert_eq!(done.launched.len(), 1, "{:?}", done.decision.reasons);
    let node = &done.launched[0].node;
    assert_eq!(done.launched[0].pool, "core", "{node}");
    // The container is running on the engine; edge left nothing behind.
    let containers = docker.containers();
    assert_eq!(containers, vec![node.clone()], "{containers:?}");
    let text = done
        .decision
        .reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("pool edge has failed"), "{text}");
}

/// Pools `slow` (priority; its create script hangs a minute) and `fast` (a
/// fake), a controller acting in the background as the daemon does, and
/// the markers the hanging script leaves: started, finished.
struct Hanging {
    k: Kube,
    cluster: std::sync::Arc<k3scale::kube::KubeCluster>,
    controller: k3scale::controller::Controller,
    fast: std::sync::Arc<k3scale::provider::fake::FakeProvider>,
    started: std::path::PathBuf,
    finished: std::path::PathBuf,
    _dir: support::TempDir,
}

async fn hanging(tag: &str, scale_down: &str) -> Hanging {
    use k3scale::provider::exec::ExecProvider;
    use k3scale::provider::fake::FakeProvider;
    use k3scale::state::sqlite::SqliteStore;
    let dir = support::TempDir::new(&format!("hang-{tag}"));
    let (started, finished) = (dir.join("started"), dir.join("finished"));
    let create = dir.script(
        "create",
        &format!(
            "touch {}; sleep 60; touch {}",
            started.display(),
            finished.display()
        ),
    );
    let list = dir.script("list", "echo '{\"machines\": []}'");
    let k = start().await;
    k3s_server(&k);
    let cluster = k.cluster().await;
    let config = format!(
        "
cluster: test
metrics: {{ source: metrics-server }}
policy: {{ expander: priority, scale_up: {{ cooldown: 0s }}, scale_down: {scale_down} }}
pools:
  - {{ name: slow, min: 0, max: 3, priority: 10, template: {{ cpu: \"2\", memory: 4Gi }}, provider: {{ exec: {{ create: c, delete: d, list: l }} }} }}
  - {{ name: fast, min: 0, max: 3, priority: 1, template: {{ cpu: \"4\", memory: 8Gi }}, provider: {{ exec: {{ create: c, delete: d, list: l }} }} }}
"
    );
    let loaded = k3scale_core::config::load("k.yaml", &config).unwrap();
    let slow_cfg = k3scale_core::config::ExecProviderConfig {
        create,
        delete: "true".into(),
        list,
        timeout: "120s".into(),
        env: Default::default(),
        token_file: None,
        token_env: None,
    };
    let slow_pool = loaded.policy.pool("slow").unwrap().clone();
    let slow = ExecProvider::new("test", slow_pool.clone(), slow_cfg).unwrap();
    let fast = std::sync::Arc::new(FakeProvider::new("fast"));
    let fast_pool = loaded.policy.pool("fast").unwrap();
    let pools = std::collections::BTreeMap::from([
        (
            "slow".to_string(),
            k3scale::wiring::machine_pool(&slow_pool, None, Box::new(slow)),
        ),
        (
            "fast".to_string(),
            k3scale::wiring::machine_pool(fast_pool, None, Box::new(fast.clone())),
        ),
    ]);
    let store = std::sync::Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    let controller = k3scale::controller::Controller::new(
        loaded.policy,
        cluster.clone(),
        None,
        pools,
        store,
        Box::new(|| 5),
    )
    .with_drain(
        k3scale_core::drain::DrainConfig::default(),
        Duration::from_millis(50),
    )
    .with_background(true);
    Hanging {
        k,
        cluster,
        controller,
        fast,
        started,
        finished,
        _dir: dir,
    }
}

/// The controller, telling a local webhook receiver what it does.
async fn told_to_hook(
    controller: k3scale::controller::Controller,
) -> (k3scale::controller::Controller, webhook::Receiver) {
    let hook = webhook::Receiver::start(0, 200).await;
    let notifier = k3scale::notify::Notifier::new(None, Some(Secret::new(hook.url.clone())));
    (
        controller.with_notifier(std::sync::Arc::new(notifier), "test"),
        hook,
    )
}

/// The cluster view holds exactly `n` unschedulable pods.
fn pending_seen(cluster: &k3scale::kube::KubeCluster, n: usize) -> bool {
    let mut s = k3scale_core::Snapshot::default();
    cluster.fill(&mut s);
    s.pods.iter().filter(|p| p.unschedulable_since.is_some()).count() == n
}

#[tokio::test]
async fn a_hanging_create_delays_no_other_pools_launch() {
    // Pool `slow`'s create script hangs; a pod only pool `fast` can take is
    // launched for at once.
    let Hanging {
        k,
        cluster,
        mut controller,
        fast,
        started,
        finished,
        _dir,
    } = hanging("launch", "{ enabled: false }").await;
    k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));
    eventually(10, "pending pod seen", || pending_seen(&cluster, 1)).await;
    controller.reconcile(unix_now()).await.unwrap();
    assert_eq!(controller.launching(), 1);
    eventually(10, "the slow create is running", || started.exists()).await;

    // A pod only `fast` can take (3 CPU): launched while `slow` still hangs.
    k.apply(&pod("shop", "big-0", "big", None, "3", "1Gi"));
    eventually(10, "second pending pod seen", || pending_seen(&cluster, 2)).await;
    let second = controller.reconcile(unix_now()).await.unwrap();
    // The slow machine still counts as launching: only `fast` is asked.
    assert_eq!(
        second
            .decision
            .scale_up
            .iter()
            .map(|u| u.pool.as_str())
            .collect::<Vec<_>>(),
        ["fast"],
        "{:?}",
        second.decision.reasons
    );
    eventually(10, "fast's create called", || {
        fast.calls()
            .iter()
            .any(|c| matches!(c, k3scale::provider::fake::Call::Create(_)))
    })
    .await;
    eventually(10, "fast's launch finished", || controller.launching() == 1).await;
    let done = controller.reconcile(unix_now()).await.unwrap();
    assert!(
        done.launched.iter().any(|l| l.pool == "fast"),
        "{:?} {:?}",
        done.launched,
        done.decision.reasons
    );
    assert!(!finished.exists(), "slow's create is still hanging");
    assert_eq!(controller.launching(), 1, "slow's launch is still running");
    controller.stop_drains();
}

#[tokio::test]
async fn a_hanging_create_does_not_delay_a_drain() {
    // An idle `fast` node is being drained when `slow`'s create starts to
    // hang: the drain finishes and is recorded all the same.
    let Hanging {
        k,
        cluster,
        mut controller,
        fast,
        started,
        finished,
        _dir,
    } = hanging(
        "drain",
        "{ unneeded_time: 0s, delay_after_scale_up: 0s, cooldown: 0s }",
    )
    .await;
    use k3scale::provider::NodeProvider;
    fast.create("fast-idle0001").await.unwrap();
    k.apply(&node("fast-idle0001", Some("fast"), "4", "8Gi"));
    k.server.apply(node_password("fast-idle0001"));
    eventually(10, "idle node seen", || {
        let mut s = k3scale_core::Snapshot::default();
        cluster.fill(&mut s);
        s.nodes.iter().any(|n| n.name == "fast-idle0001")
    })
    .await;
    let first = controller.reconcile(unix_now()).await.unwrap();
    assert_eq!(
        first
            .decision
            .scale_down
            .iter()
            .map(|d| d.node.as_str())
            .collect::<Vec<_>>(),
        ["fast-idle0001"],
        "{:?}",
        first.decision.reasons
    );
    assert_eq!(controller.draining(), ["fast-idle0001"]);
    // A pod arrives; only `slow` is asked for it, and its create hangs.
    k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));
    eventually(10, "pending pod seen", || pending_seen(&cluster, 1)).await;
    controller.reconcile(unix_now()).await.unwrap();
    eventually(10, "the slow create is running", || started.exists()).await;
    // The drain goes on to delete the machine and its Node meanwhile.
    eventually(20, "the idle machine deleted", || {
        fast.calls()
            .contains(&k3scale::provider::fake::Call::Delete("fast-idle0001".into()))
    })
    .await;
    // Its outcome is collected by a reconcile, while the create still hangs.
    let mut removed = Vec::new();
    for _ in 0..100 {
        removed.extend(controller.reconcile(unix_now()).await.unwrap().removed);
        if !removed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(removed, ["fast-idle0001"]);
    assert!(!finished.exists(), "slow's create is still hanging");
    assert_eq!(controller.launching(), 1);
    controller.stop_drains();
}
