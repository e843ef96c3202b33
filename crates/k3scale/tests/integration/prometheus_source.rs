//! The Prometheus source against a real Prometheus (Debian's package),
//! started by the test on 127.0.0.1 with backfilled node-exporter series.

use k3scale::metrics::MetricsError;
use k3scale::metrics::prometheus::Prometheus;
use k3scale_core::config::PrometheusConfig;
use k3scale_core::policy::CustomRule;
use k3scale_core::testkit::{node_of, seed_policy, workers};
use k3scale_core::{Reason, Snapshot, Time, decide};
use k3scale_testsupport::promfix;
use promfix::TestPrometheus;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpListener;

use std::time::{Duration, Instant};

const GI: f64 = 1073741824.0;

/// 30 minutes at 15 s of: CPU seconds per mode for two 2-CPU nodes (node-a 75% busy,
/// node-b 25% busy), memory (1 GiB and 2 GiB available of 4 GiB each), and
/// requests at 500/s + 300/s.
fn openmetrics(end: u64) -> String {
    let start = end - 1800;
    let mut out = String::new();
    let times = || (start..=end).step_by(15);
    out.push_str("# TYPE node_cpu_seconds_total gauge\n");
    for (node, idle, user, system) in [("node-a", 0.25, 0.60, 0.15), ("node-b", 0.75, 0.20, 0.05)] {
        for cpu in 0..2 {
            for (mode, rate) in [("idle", idle), ("user", user), ("system", system)] {
                for t in times() {
                    let v = rate * (t - start) as f64 + 1000.0;
                    writeln!(out, "node_cpu_seconds_total{{instance=\"{node}:9100\",cpu=\"{cpu}\",mode=\"{mode}\"}} {v} {t}").unwrap();
                }
            }
        }
    }
    for (family, values) in [
        ("node_memory_MemAvailable_bytes", [1.0 * GI, 2.0 * GI]),
        ("node_memory_MemTotal_bytes", [4.0 * GI, 4.0 * GI]),
    ] {
        writeln!(out, "# TYPE {family} gauge").unwrap();
        for (node, v) in ["node-a", "node-b"].iter().zip(values) {
            for t in times() {
                writeln!(out, "{family}{{instance=\"{node}:9100\"}} {v} {t}").unwrap();
            }
        }
    }
    out.push_str("# TYPE http_requests_total gauge\n");
    for (svc, rate) in [("web", 500.0), ("api", 300.0)] {
        for t in times() {
            writeln!(
                out,
                "http_requests_total{{service=\"{svc}\"}} {} {t}",
                rate * (t - start) as f64
            )
            .unwrap();
        }
    }
    out.push_str("# EOF\n");
    out
}

fn start_prometheus(tag: &str) -> TestPrometheus {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let end = now - now % 15 - 60;
    promfix::start_anywhere(tag, Some((&openmetrics(end), end)))
}

fn config(url: &str) -> PrometheusConfig {
    PrometheusConfig {
        url: url.to_string(),
        timeout: "2s".into(),
        ..PrometheusConfig::default()
    }
}

fn rps_rule() -> CustomRule {
    CustomRule {
        name: "rps".into(),
        query: "sum(rate(http_requests_total[1m]))".into(),
        scale_up_above: Some(1000.0),
        scale_down_below: None,
        window: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn utilization_is_what_was_written_and_failures_are_errors() {
    let prom = start_prometheus("values");
    let p = Prometheus::new(&config(&prom.url), vec![rps_rule()]).unwrap();
    let at = Some(prom.end as f64);
    let r = p.read_at(at).await;
    let cpu = r.cpu.clone().unwrap().unwrap();
    let memory = r.memory.clone().unwrap().unwrap();
    assert!((cpu - 0.5).abs() < 1e-9, "cluster CPU busy {cpu}");
    assert!((memory - 0.625).abs() < 1e-9, "cluster memory {memory}");
    assert!((r.custom["rps"].clone().unwrap() - 800.0).abs() < 1e-6);
    // The common mistake (averaging over every mode) gives a different number.
    let wrong = p
        .scalar("1 - avg(rate(node_cpu_seconds_total[2m]))", at)
        .await
        .unwrap();
    assert!((wrong - 2.0 / 3.0).abs() < 1e-9, "{wrong}");
    // Per node.
    let per_node = p
        .query(
            "1 - avg by (instance) (rate(node_cpu_seconds_total{mode=\"idle\"}[2m]))",
            at,
        )
        .await
        .unwrap();
    let mut busy: Vec<(String, f64)> = per_node
        .into_iter()
        .map(|s| (s.labels["instance"].clone(), s.value))
        .collect();
    busy.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(busy.len(), 2);
    assert!(
        (busy[0].1 - 0.75).abs() < 1e-9 && (busy[1].1 - 0.25).abs() < 1e-9,
        "{busy:?}"
    );

    // Nothing is ever a zero.
    let empty = p
        .scalar("node_memory_MemAvailable_bytes{instance=\"nowhere\"}", at)
        .await
        .unwrap_err();
    assert!(matches!(empty, MetricsError::Empty { .. }), "{empty:?}");
    let garbage = p.scalar("avg(", at).await.unwrap_err();
    assert!(
        matches!(garbage, MetricsError::Query { ref kind, .. } if kind == "bad_data"),
        "{garbage:?}"
    );
    let nan = p.scalar("0/0", at).await.unwrap_err();
    assert!(
        matches!(nan, MetricsError::NotANumber { ref value, .. } if value == "NaN"),
        "{nan:?}"
    );
    let many = p.scalar("node_memory_MemTotal_bytes", at).await.unwrap_err();
    assert!(
        matches!(many, MetricsError::Ambiguous { count: 2, .. }),
        "{many:?}"
    );
    assert!(many.to_string().contains("aggregate it"));
    let wrong_path = Prometheus::new(&config(&format!("{}/not-prometheus", prom.url)), vec![]).unwrap();
    let status = wrong_path.scalar("up", at).await.unwrap_err();
    assert!(
        matches!(status, MetricsError::Status { status: 404, .. }),
        "{status:?}"
    );
}

#[tokio::test]
async fn range_queries_backfill_the_sustained_windows() {
    let prom = start_prometheus("range");
    let p = Prometheus::new(&config(&prom.url), vec![rps_rule()]).unwrap();
    let end = prom.end as f64;
    let cpu = p
        .query_range(
            &config(&prom.url).cpu_query,
            end - 600.0,
            end,
            Duration::from_secs(15),
        )
        .await
        .unwrap();
    assert_eq!(cpu.len(), 41, "10 minutes at 15 s, both ends included");
    assert!(
        cpu.iter().all(|(_, v)| v.is_some_and(|v| (v - 0.5).abs() < 1e-9)),
        "{cpu:?}"
    );
    let many = p
        .query_range(
            "node_memory_MemTotal_bytes",
            end - 60.0,
            end,
            Duration::from_secs(15),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(many, MetricsError::Ambiguous { count: 2, .. }),
        "{many:?}"
    );
    let none = p
        .query_range("up{job=\"nowhere\"}", end - 60.0, end, Duration::from_secs(15))
        .await
        .unwrap_err();
    assert!(matches!(none, MetricsError::Empty { .. }), "{none:?}");
    // NaN steps are gaps, not zeros.
    let nan = p
        .query_range("0/0", end - 30.0, end, Duration::from_secs(15))
        .await
        .unwrap();
    assert!(nan.iter().all(|(_, v)| v.is_none()), "{nan:?}");

    // A restarted daemon backfills 10 minutes and can judge a 10-minute window at once.
    let mut snapshot = Snapshot::default();
    let now = Time::from_secs(prom.end);
    let steps = p
        .backfill(
            &mut snapshot,
            Duration::from_secs(600),
            Duration::from_secs(15),
            now,
        )
        .await
        .unwrap();
    assert_eq!(steps, 41);
    let mean =
        |s| k3scale_core::window::window_mean(s, now, Duration::from_secs(600), Duration::from_secs(60));
    assert!((mean(&snapshot.cpu).unwrap() - 0.5).abs() < 1e-9);
    assert!((mean(&snapshot.memory).unwrap() - 0.625).abs() < 1e-9);
    assert!((mean(&snapshot.custom["rps"]).unwrap() - 800.0).abs() < 1e-6);
}

#[tokio::test]
async fn prometheus_stopped_mid_run_makes_metrics_unavailable_not_zero() {
    let mut prom = start_prometheus("outage");
    let p = Prometheus::new(&config(&prom.url), vec![]).unwrap();
    let w = workers();
    let mut snap = Snapshot {
        nodes: vec![node_of(&w, "w0"), node_of(&w, "w1"), node_of(&w, "w2")],
        ..Snapshot::default()
    };
    // Fifteen minutes of healthy readings (at the backfilled end time) feed the windows...
    let keep = Duration::from_secs(1200);
    let reading = p.read_at(Some(prom.end as f64)).await;
    for i in 0..60u64 {
        snap.record(Time::from_secs(i * 15), &reading, keep);
    }
    assert_eq!(snap.metrics_error, None);
    // ...then Prometheus goes away.
    prom.child.kill().unwrap();
    prom.child.wait().unwrap();
    let outage = p.read_at(None).await;
    let err = outage.cpu.clone().unwrap().unwrap_err();
    assert!(err.contains("cannot reach") && err.contains(&prom.url), "{err}");
    let now = Time::from_secs(60 * 15);
    snap.record(now, &outage, keep);
    let d = decide(&snap, &seed_policy(), now);
    // Not read as 0 %: the seed rules' gate does not judge the cluster cold, only requests count
    // (the empty node may go; nothing is decided on the missing signals).
    assert!(d.scale_up.is_empty(), "{:?}", d.reasons);
    assert!(
        d.reasons.contains(&Reason::ScaleDownByRequestsOnly),
        "{:?}",
        d.reasons
    );
    assert!(d.scale_down.iter().all(|s| s.empty), "{:?}", d.reasons);
    let unavailable = d.reasons.iter().find_map(|r| match r {
        Reason::MetricsUnavailable { signal, cause, .. } if signal == "cpu" => Some(cause.clone()),
        _ => None,
    });
    let cause = unavailable.expect("decide says cpu is unavailable");
    assert!(cause.contains("cannot reach"), "{cause}");
}

/// A one-connection HTTP server: records the request, answers `response`.
fn one_shot_server(response: &'static str) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 8192];
        let n = s.read(&mut buf).unwrap_or(0);
        if !response.is_empty() {
            let _ = s.write_all(response.as_bytes());
        } else {
            std::thread::sleep(Duration::from_secs(4)); // never answers in time
        }
        String::from_utf8_lossy(&buf[..n]).to_string()
    });
    (url, handle)
}

#[tokio::test]
async fn bearer_token_is_sent_never_shown_and_slow_servers_time_out() {
    let dir = k3scale_testsupport::support::TempDir::new("prom-token");
    std::fs::write(dir.join("token"), "prom-s3cret-token\n").unwrap();
    let body = "{\"status\":\"error\",\"errorType\":\"unavailable\",\"error\":\"overloaded\"}";
    let response: &'static str = Box::leak(
        format!("HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).into_boxed_str(),
    );
    let (url, server) = one_shot_server(response);
    let cfg = PrometheusConfig {
        bearer_token_file: Some(dir.join("token").display().to_string()),
        ..config(&url)
    };
    let p = Prometheus::new(&cfg, vec![]).unwrap();
    let err = p.scalar("up", None).await.unwrap_err();
    let request = server.join().unwrap();
    assert!(
        request.contains("authorization: Bearer prom-s3cret-token")
            || request.contains("Authorization: Bearer prom-s3cret-token"),
        "{request}"
    );
    assert_eq!(
        err,
        MetricsError::Query {
            query: "up".into(),
            kind: "unavailable".into(),
            message: "overloaded".into()
        }
    );
    assert!(!format!("{err} {p:?}").contains("prom-s3cret-token"));

    let (url, server) = one_shot_server("");
    let slow = Prometheus::new(
        &PrometheusConfig {
            timeout: "1s".into(),
            ..config(&url)
        },
        vec![],
    )
    .unwrap();
    let started = Instant::now();
    let err = slow.scalar("up", None).await.unwrap_err();
    assert!(
        matches!(err, MetricsError::Timeout { timeout_s: 1, .. }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    server.join().unwrap();
}
