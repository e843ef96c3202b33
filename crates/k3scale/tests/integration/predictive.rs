//! `policy.predictive`'s memory: filled at start from what kube-state-metrics
//! recorded in a real Prometheus (written by promtool), saved in the state
//! store, and read back by the next process; a damaged stored copy is
//! replaced, not fatal.

use k3scale::controller::Controller;
use k3scale::metrics::prometheus::Prometheus;
use k3scale::provider::fake::FakeProvider;
use k3scale::state::StateStore;
use k3scale::state::sqlite::SqliteStore;
use k3scale_core::config::PrometheusConfig;
use k3scale_core::forecast::StoredDemand;
use k3scale_core::{Resources, Time};
use k3scale_testsupport::kubefix::{self, Kube};
use k3scale_testsupport::{promfix, rig, support};
use std::fmt::Write as _;
use std::sync::Arc;

const CONFIG: &str = "
cluster: test
metrics: { source: metrics-server }
policy:
  predictive: { enabled: true, max_extra_nodes: 1 }
  scale_down: { enabled: false }
pools:
  - name: workers
    min: 0
    max: 3
    template: { cpu: \"2\", memory: 4Gi }
    provider: { exec: { create: c, delete: d, list: l } }
";
const MIB: u64 = 1 << 20;

/// A pod as kube-state-metrics describes it.
struct KsmPod {
    name: &'static str,
    owner: &'static str,
    phase: &'static str,
    cpu: f64,
    /// Unix seconds from which it exists.
    from: u64,
}

/// The extra labels and value of each series `family` has for `pod`.
fn series(family: &str, pod: &KsmPod) -> Vec<(String, f64)> {
    match family {
        "kube_pod_container_resource_requests" => vec![
            (r#",container="app",resource="cpu",unit="core""#.into(), pod.cpu),
            (
                r#",container="app",resource="memory",unit="byte""#.into(),
                (512 * MIB) as f64,
            ),
        ],
        "kube_pod_status_phase" => ["Pending", "Running", "Succeeded"]
            .iter()
            .map(|p| (format!(r#",phase="{p}""#), f64::from(u8::from(*p == pod.phase))))
            .collect(),
        _ => vec![(format!(r#",owner_kind="{}""#, pod.owner), 1.0)],
    }
}

/// Three hours of kube-state-metrics, one sample a minute: web-0 and web-1
/// (500m, 512Mi each) all along; in the last hour web-2 running and web-3
/// pending too. A DaemonSet pod and a finished Job pod never count.
fn ksm(end: u64) -> String {
    let start = end - 3 * 3600;
    let late = end - 3600;
    let pod = |name, owner, phase, cpu, from| KsmPod {
        name,
        owner,
        phase,
        cpu,
        from,
    };
    let pods = [
        pod("web-0", "ReplicaSet", "Running", 0.5, start),
        pod("web-1", "ReplicaSet", "Running", 0.5, start),
        pod("web-2", "ReplicaSet", "Running", 0.5, late),
        pod("web-3", "ReplicaSet", "Pending", 0.5, late),
        pod("agent-x", "DaemonSet", "Running", 0.1, start),
        pod("report-1", "Job", "Succeeded", 1.0, start),
    ];
    let mut out = String::new();
    for family in [
        "kube_pod_container_resource_requests",
        "kube_pod_status_phase",
        "kube_pod_owner",
    ] {
        writeln!(out, "# TYPE {family} gauge").unwrap();
        for p in &pods {
            for (labels, value) in series(family, p) {
                for t in (p.from..=end).step_by(60) {
                    writeln!(
                        out,
                        r#"{family}{{namespace="shop",pod="{}"{labels}}} {value} {t}"#,
                        p.name
                    )
                    .unwrap();
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

async fn controller(k: &Kube, store: &Arc<dyn StateStore>) -> Controller {
    rig::wire(
        k,
        CONFIG,
        Box::new(FakeProvider::new("w")),
        store.clone(),
        7,
        None,
    )
    .await
}

/// The stored history's reading of `minute`.
fn reading(stored: &StoredDemand, minute: u64) -> Resources {
    let minutes = stored.minutes().unwrap();
    minutes
        .iter()
        .find(|(m, _)| *m == minute)
        .map(|(_, r)| *r)
        .unwrap_or_else(|| {
            panic!(
                "minute {minute} not held ({} to {})",
                minutes.first().unwrap().0,
                minutes.last().unwrap().0
            )
        })
}

async fn stored(store: &Arc<dyn StateStore>) -> StoredDemand {
    let value = store
        .get("demand-history")
        .await
        .unwrap()
        .expect("the history is saved");
    serde_json::from_str(&value.value).unwrap()
}

#[tokio::test]
async fn the_demand_history_comes_from_prometheus_and_survives_a_restart() {
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let end = now_s - now_s % 60 - 120;
    let prom = promfix::start_anywhere("predictive", Some((&ksm(end), end)));
    let k = kubefix::start().await;
    kubefix::k3s_server(&k);
    let dir = support::TempDir::new("predictive");
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    let now = Time::from_millis(now_s * 1000);

    let mut first = controller(&k, &store).await;
    let source = Prometheus::new(
        &PrometheusConfig {
            url: prom.url.clone(),
            ..PrometheusConfig::default()
        },
        Vec::new(),
    )
    .unwrap();
    let added = first.backfill_demand(&source, now).await.unwrap();
    assert!((170..=190).contains(&added), "{added} minutes");
    first.reconcile(now).await.unwrap();

    // Saved at the first reconcile: two pods before the last hour, four in
    // it (one of them pending); the DaemonSet and the finished Job are not
    // demand.
    let saved = stored(&store).await;
    let early = reading(&saved, (end - 2 * 3600) / 60);
    assert_eq!(
        (early.cpu_milli, early.memory_bytes, early.pods),
        (1000, 1024 * MIB, 2)
    );
    let late = reading(&saved, (end - 30 * 60) / 60);
    assert_eq!(
        (late.cpu_milli, late.memory_bytes, late.pods),
        (2000, 2048 * MIB, 4)
    );

    // The next process reads it back before its first decision.
    let mut second = controller(&k, &store).await;
    assert!(second.snapshot().demand.is_empty());
    second
        .reconcile(now + std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let held = second.snapshot().demand.len();
    assert!(
        held >= added,
        "{held} minutes held after a restart, {added} saved"
    );

    // A damaged copy is no reason to stop: it is started again and replaced.
    let version = store.get("demand-history").await.unwrap().unwrap().version;
    store.put("demand-history", "{not json", version).await.unwrap();
    let mut third = controller(&k, &store).await;
    third
        .reconcile(now + std::time::Duration::from_secs(120))
        .await
        .unwrap();
    assert!(stored(&store).await.minutes().is_ok());
}
