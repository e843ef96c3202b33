//! `k3scale-load http` against a local axum server whose latency and errors
//! the test sets: rate accuracy, latency percentiles, errors by kind, and
//! the command's own errors, Ctrl-C and report files.

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::Value;

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
}

/// A server with injected behaviour:
/// `/ok`; `/delay/{ms}`; `/mixed` (every 10th request takes 100 ms, the
/// others 10 ms); `/flaky` (every 4th answers 503); `/auth` (401 without
/// `Authorization: Bearer t0ken`); `/hang` (answers after 30 s).
async fn server() -> (String, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/delay/{ms}",
            get(|Path(ms): Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "late"
            }),
        )
        .route(
            "/mixed",
            get(|State(c): State<Arc<Counters>>| async move {
                let n = c.hits.fetch_add(1, Ordering::Relaxed);
                let ms = if n % 10 == 9 { 100 } else { 10 };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "mixed"
            }),
        )
        .route(
            "/flaky",
            get(|State(c): State<Arc<Counters>>| async move {
                let n = c.hits.fetch_add(1, Ordering::Relaxed);
                if n % 4 == 3 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }),
        )
        .route(
            "/auth",
            get(|h: HeaderMap| async move {
                match h.get("authorization").and_then(|v| v.to_str().ok()) {
                    Some("Bearer t0ken") => StatusCode::OK,
                    _ => StatusCode::UNAUTHORIZED,
                }
            }),
        )
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "finally"
            }),
        )
        .with_state(counters.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), counters)
}

async fn load(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_k3scale-load"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

async fn load_json(args: &[&str]) -> Value {
    let mut all = vec!["http", "--json"];
    all.extend_from_slice(args);
    let out = load(&all).await;
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_model_sends_exactly_the_planned_schedule() {
    // Behaviour only: how close the achieved rate comes to the target on a
    // given machine is a benchmark (`cargo bench -p k3scale-loadgen --bench
    // vs_tools`), not a test that a busy CI machine can fail.
    let (base, _) = server().await;
    let url = format!("{base}/ok");
    let r = load_json(&[&url, "--rate", "1000", "--duration", "3s"]).await;
    assert_eq!(r["planned"], 3_000);
    assert_eq!(r["sent"], 3_000);
    assert_eq!(r["ok"], 3_000, "{}", r["errors"]);
    assert!(f(&r["achieved_rate"]) > 0.0);
    // The timeline carries every request, each second planned at the target rate.
    let timeline = r["timeline"].as_array().unwrap();
    assert!(timeline.len() >= 3);
    let total: f64 = timeline.iter().map(|s| f(&s["ok"])).sum();
    assert_eq!(total, 3_000.0);
    for s in &timeline[..3] {
        assert_eq!(f(&s["target_rate"]), 1000.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_percentiles_reflect_the_injected_delays() {
    // Lower bounds and order only: a latency can never be shorter than the
    // server's delay, but a busy machine may add any amount to it.
    let (base, _) = server().await;
    // 90% answered in 10 ms, 10% in 100 ms.
    let url = format!("{base}/mixed");
    let r = load_json(&[&url, "--rate", "200", "--duration", "5s"]).await;
    assert_eq!(r["ok"], 1000);
    let lat = &r["latency"];
    let (p50, p90, p99, max) = (f(&lat["p50"]), f(&lat["p90"]), f(&lat["p99"]), f(&lat["max"]));
    assert!(p50 >= 10.0, "p50 {p50}");
    assert!(p99 >= 100.0, "the slowest 10% are at least 100 ms: p99 {p99}");
    assert!(p50 <= p90 && p90 <= p99 && p99 <= max, "{lat}");
    assert!(p50 < p99, "two delays, two modes: {lat}");

    // A constant delay: nothing is faster than it.
    let url = format!("{base}/delay/25");
    let r = load_json(&[&url, "--rate", "100", "--duration", "3s"]).await;
    let lat = &r["latency"];
    assert!(f(&lat["p50"]) >= 25.0 && f(&lat["p99"]) >= 25.0, "{lat}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_counted_by_kind() {
    let (base, _) = server().await;
    let flaky = format!("{base}/flaky");
    let auth = format!("{base}/auth");
    let hang = format!("{base}/hang");
    // Round-robin over three targets: 600 requests, 200 each.
    let r = load_json(&[
        &flaky,
        &auth,
        &hang,
        "--rate",
        "300",
        "--duration",
        "2s",
        "--timeout",
        "300ms",
    ])
    .await;
    assert_eq!(r["sent"], 600);
    assert_eq!(r["errors"]["status 503"], 50, "{}", r["errors"]);
    assert_eq!(r["errors"]["auth (401)"], 200);
    assert_eq!(r["errors"]["timeout"], 200);
    assert_eq!(r["ok"], 150);

    // With the token, the auth target answers; the header never shows up.
    let out = load(&[
        "http",
        &auth,
        "-H",
        "Authorization: Bearer t0ken",
        "--rate",
        "50",
        "--duration",
        "1s",
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("ok 50 · errors 0"), "{text}");
    assert!(!text.contains("t0ken") && !String::from_utf8_lossy(&out.stderr).contains("t0ken"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_unauthorized_fails_with_a_hint() {
    let (base, _) = server().await;
    let auth = format!("{base}/auth");
    let out = load(&["http", &auth, "--rate", "20", "--duration", "1s"]).await;
    assert_eq!(out.status.code(), Some(1), "nothing succeeded");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("auth (401): 20"), "{text}");
    assert!(text.contains("check the credentials"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_model_sends_back_to_back() {
    let (base, _) = server().await;
    let url = format!("{base}/delay/20");
    let r = load_json(&[
        &url,
        "--model",
        "closed",
        "--connections",
        "4",
        "--duration",
        "2s",
    ])
    .await;
    // 4 workers × 2 s / 20 ms ≈ 400, less the timer's slack.
    let sent = f(&r["sent"]);
    assert!((250.0..=410.0).contains(&sent), "sent {sent}");
    assert!(f(&r["latency"]["p50"]) < 30.0);
    assert_eq!(r["planned"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_profile_sends_the_area_under_its_curve() {
    let (base, _) = server().await;
    let url = format!("{base}/ok");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("profile.csv");
    std::fs::write(&file, "# time,rate\n0,50\n2s,150\n").unwrap();
    let file_s = file.to_str().unwrap().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec![url.as_str(), "--duration", "4s"];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move { load_json(&args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    let (ramp, spike, sale, saw, custom) = tokio::join!(
        // 0→100 over 4 s: 200.
        run(&["--profile", "ramp", "--rate", "0", "--to", "100"]),
        // 20/s, 200/s during [1 s, 2 s): 3×20 + 200.
        run(&[
            "--profile",
            "spike",
            "--rate",
            "20",
            "--peak",
            "200",
            "--at",
            "1s",
            "--for",
            "1s"
        ]),
        // 10/s, 10x for 2 s from 1 s, with 1 s edges: 10 + 55 + 55 + 10.
        run(&[
            "--profile",
            "flash-sale",
            "--rate",
            "10",
            "--at",
            "1s",
            "--for",
            "2s"
        ]),
        // 0→40 every 2 s: 2 × 40.
        run(&[
            "--profile",
            "sawtooth",
            "--rate",
            "0",
            "--peak",
            "40",
            "--period",
            "2s"
        ]),
        // 50→150 over 2 s, then 150 held: 200 + 300.
        run(&["--profile-file", &file_s]),
    );
    for (name, r, want) in [
        ("ramp", ramp, 200),
        ("spike", spike, 260),
        ("flash-sale", sale, 130),
        ("sawtooth", saw, 80),
        ("file", custom, 500),
    ] {
        assert_eq!(r["planned"], want, "{name}");
        assert_eq!(r["ok"], want, "{name}: {}", r["errors"]);
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_error() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["http", "127.0.0.1:1/x", "--rate", "1", "--duration", "1s"],
            "bad URL `127.0.0.1:1/x`: no scheme",
        ),
        (
            &["http", "http://127.0.0.1:1/", "--rate", "1", "--duration", "1s"],
            "cannot connect to http://127.0.0.1:1/: connection refused",
        ),
        (&["http", "http://127.0.0.1:1/", "--rate", "1"], "--duration"),
        (
            &["http", "http://127.0.0.1:1/", "--duration", "1s"],
            "--profile steady needs --rate",
        ),
        (
            &[
                "http",
                "http://127.0.0.1:1/",
                "--rate",
                "5000000",
                "--duration",
                "1s",
            ],
            "out of bounds",
        ),
        (
            &["http", "http://127.0.0.1:1/", "--rate", "1", "--duration", "30d"],
            "at most 7 days",
        ),
    ];
    for (args, want) in cases {
        let out = load(args).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_prints_the_partial_report_and_out_writes_files() {
    let (base, _) = server().await;
    let url = format!("{base}/ok");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let dir_s = dir.to_str().unwrap().to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_k3scale-load"))
        .args([
            "http",
            &url,
            "--profile",
            "ramp",
            "--rate",
            "10",
            "--to",
            "100",
            "--duration",
            "60s",
        ])
        .args(["--out", &dir_s])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    nix_kill(child.id());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("interrupted: partial report"), "{text}");
    let report: Value = serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["interrupted"], true);
    assert!(f(&report["elapsed_s"]) < 10.0);
    let sent = f(&report["sent"]);
    // The ramp's first 3 s: 10→14.5 rps, about 37 requests.
    assert!((25.0..=50.0).contains(&sent), "sent {sent}");
    let csv = std::fs::read_to_string(dir.join("timeline.csv")).unwrap();
    assert!(csv.starts_with("second,target_rate,ok,errors,p50_ms"));
    assert!(csv.lines().count() >= 3, "{csv}");
    let svg = std::fs::read_to_string(dir.join("chart.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("requests per second") && svg.contains("latency (ms)"));
}

fn nix_kill(pid: u32) {
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
