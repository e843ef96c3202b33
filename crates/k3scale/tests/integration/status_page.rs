//! The status page in a real browser: headless Chromium (Debian's package)
//! loads the page a running daemon serves against the test API server,
//! while a launch is on its way and a drain is held by a
//! PodDisruptionBudget. The DOM it renders is checked for the chart, the
//! cost line, the drain and the launch; a screenshot is kept under
//! `target/` as a CI artifact.

use k3scale::daemon::Daemon;
use k3scale::provider::fake::FakeProvider;
use k3scale::provider::unix_now;
use k3scale::server::{Shared, router};
use k3scale::state::sqlite::SqliteStore;
use k3scale::state::{Intent, IntentKind, StateStore};
use k3scale_core::drain::{Drain, DrainConfig};
use k3scale_testsupport::kubefix::*;
use k3scale_testsupport::{rig, support};
use std::sync::Arc;
use std::time::Duration;

const CONFIG: &str = "
cluster: test
metrics: { source: metrics-server }
policy:
  scale_down: { enabled: false }
pools:
  - name: workers
    min: 0
    max: 3
    template: { cpu: \"2\", memory: 4Gi, price_per_hour: 0.05 }
    provider: { exec: { create: c, delete: d, list: l } }
";

fn chromium(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .args(args)
        .output()
        .expect("chromium (Debian package) runs");
    assert!(
        out.status.success(),
        "chromium {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Refusals journaled for the drain of `node` so far.
async fn refusals(store: &Arc<dyn StateStore>, node: &str) -> usize {
    store
        .unfinished()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.intent.node == node)
        .filter_map(|e| serde_json::from_value::<Drain>(e.intent.detail).ok())
        .map(|d| d.progress().refused.len())
        .sum()
}

#[tokio::test]
async fn an_operator_sees_the_day_the_cost_and_what_a_drain_waits_on() {
    let k = start().await;
    k3s_server(&k);
    k.apply(&node("workers-1", Some("workers"), "2", "4Gi"));
    k.apply(&pod("shop", "db-0", "db", Some("workers-1"), "500m", "512Mi"));
    k.apply(&pdb("shop", "db-pdb", "db", 1));
    k.apply(&pod("shop", "web-0", "web", None, "1800m", "1Gi"));

    let dir = support::TempDir::new("status-page");
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    // A drain of workers-1 a previous leader started: this one resumes it,
    // and the budget (one of one pods must stay) refuses every eviction.
    let drain = Drain::start(
        "workers-1",
        unix_now(),
        DrainConfig {
            eviction_timeout: Duration::from_secs(600),
            ..DrainConfig::default()
        },
    );
    let intent = Intent {
        kind: IntentKind::Drain,
        pool: "workers".into(),
        node: "workers-1".into(),
        detail: serde_json::to_value(&drain).unwrap(),
    };
    store.open(&intent, unix_now()).await.unwrap();

    let controller = rig::wire(
        &k,
        CONFIG,
        Box::new(FakeProvider::new("w")),
        store.clone(),
        7,
        None,
    )
    .await;
    let cluster = controller.cluster();
    let shared = Shared::new(store.clone(), cluster.clone(), "k3scale-a");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let app = router(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (stop, task) = Daemon {
        controller,
        shared: shared.clone(),
        store: store.clone(),
        identity: "k3scale-a".into(),
        interval: Duration::from_secs(1),
        lease: None,
    }
    .spawn();

    eventually(20, "a launch on its way", || shared.status().in_flight.len() == 1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while refusals(&store, "workers-1").await == 0 {
        assert!(std::time::Instant::now() < deadline, "no eviction refused");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let page = url.clone();
    let dom = tokio::task::spawn_blocking(move || {
        let out = chromium(&["--virtual-time-budget=2000", "--dump-dom", &page]);
        String::from_utf8(out.stdout).unwrap()
    })
    .await
    .unwrap();
    // The chart, drawn by the binary itself, with a line per pool.
    assert!(dom.contains("<svg id=\"history\""), "{dom}");
    assert!(dom.contains("class=\"nodes\""), "{dom}");
    // The cost line: nodes now, $/h, today's spend.
    let summary = dom.split("id=\"summary\"").nth(1).unwrap_or_default();
    let summary = summary.split("</p>").next().unwrap_or_default();
    assert!(
        summary.contains("node now") && summary.contains("$0.05</b>/h") && summary.contains("spent since"),
        "{summary}"
    );
    // The drain and what holds it; the launch and its deadline.
    let drains = dom.split("id=\"drains\"").nth(1).unwrap_or_default();
    let drains = drains.split("</table>").next().unwrap_or_default();
    assert!(
        drains.contains("workers-1")
            && drains.contains("shop/db-0")
            && drains.contains("PodDisruptionBudget shop/db-pdb"),
        "{drains}"
    );
    let launches = dom.split("id=\"launches\"").nth(1).unwrap_or_default();
    assert!(launches.contains("<td>workers</td>"), "{launches}");

    // Screenshots kept as CI artifacts: a desktop and a phone.
    let target = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target");
    for (file, size) in [
        ("status-page.png", "1200,1800"),
        ("status-page-phone.png", "390,1600"),
    ] {
        let shot = format!("{target}/{file}");
        let (page, path) = (url.clone(), shot.clone());
        tokio::task::spawn_blocking(move || {
            chromium(&[
                &format!("--window-size={size}"),
                &format!("--screenshot={path}"),
                &page,
            ]);
        })
        .await
        .unwrap();
        assert!(
            std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
            "no screenshot at {shot}"
        );
    }

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}
