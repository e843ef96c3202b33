//! `k3scale simulate --prometheus URL --range 7d`: a week of a cluster's
//! own HPA history, written into a real Prometheus by promtool, replayed
//! through every contender.

use k3scale_testsupport::promfix;
use std::fmt::Write as _;

const WEEK: u64 = 7 * 86_400;
/// Minutes without samples: past Prometheus's 5-minute lookback, the
/// range query has no value there.
const GAP: std::ops::Range<u64> = 3 * 1440 + 720..3 * 1440 + 735;

/// A week at one sample per minute: `shop/web` follows the day (2 to 20
/// replicas, 20 at noon) and misses a quarter of an hour of scrapes at
/// noon on day 3; `shop/api` stays at 3.
fn history(end: u64) -> String {
    let start = end - WEEK;
    let mut out = String::from("# TYPE kube_horizontalpodautoscaler_status_desired_replicas gauge\n");
    for (hpa, shape) in [("web", true), ("api", false)] {
        for t in (start..=end).step_by(60) {
            let minute = (t - start) / 60;
            if shape && GAP.contains(&minute) {
                continue;
            }
            let replicas = if shape {
                let day = (minute % 1440) as f64 / 1440.0;
                (11.0 - 9.0 * (day * std::f64::consts::TAU).cos()).round()
            } else {
                3.0
            };
            writeln!(
                out,
                "kube_horizontalpodautoscaler_status_desired_replicas{{namespace=\"shop\",horizontalpodautoscaler=\"{hpa}\"}} {replicas} {t}"
            )
            .unwrap();
        }
    }
    out.push_str("# EOF\n");
    out
}

fn k3scale(args: &[&str]) -> std::process::Output {
    std::process::Command::new(k3scale_testsupport::support::k3scale_bin())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_week_of_hpa_history_is_replayed_through_every_contender() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let end = now - now % 60 - 120;
    let prom = promfix::start_anywhere("replay", Some((&history(end), end)));
    let until = end.to_string();
    let base = [
        "simulate",
        "--no-chart",
        "--prometheus",
        &prom.url,
        "--until",
        &until,
    ];
    let run = |extra: &[&str]| k3scale(&[&base[..], extra].concat());

    let out = run(&["--range", "7d", "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // A week, minute by minute.
    let minutes = v["per_minute"]["demand_cores"].as_array().unwrap().len() as u64;
    assert!((WEEK / 60 - 1..=WEEK / 60 + 1).contains(&minutes), "{minutes}");
    // 20 + 3 replicas at the peak, each using 70% of its 250m request.
    let peak = v["peak_demand_cores"].as_f64().unwrap();
    assert!((peak - 23.0 * 0.25 * 0.7).abs() < 0.01, "{peak}");
    let names: Vec<&str> = v["summaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["policy"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["k3scale", "threshold-2m", "fixed-peak", "oracle"]);
    let k = &v["summaries"][0];
    assert!(k["vs_oracle"].as_f64().unwrap() >= 0.999, "{k}");
    assert!(k["max_wait_past_boot_s"].as_f64().unwrap() <= 10.0, "{k}");
    // The missed scrapes were a gap, not a drop to zero replicas: the
    // oracle, which follows the replicas exactly, kept its noon fleet.
    let oracle = v["per_minute"]["nodes"]["oracle"].as_array().unwrap();
    let before = oracle[GAP.start as usize - 1].as_u64().unwrap();
    let gap = &oracle[GAP.start as usize..GAP.end as usize];
    assert!(before > 2, "more than the pool's minimum at noon: {before}");
    assert!(gap.iter().all(|n| n.as_u64() == Some(before)), "{gap:?}");

    // The table says what it replayed.
    let table = run(&["--range", "36h"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains(&format!("{} (36h to {until})", prom.url)), "{text}");

    // A query with no series, a server that is not there, and no range.
    let none = run(&[
        "--query",
        "kube_horizontalpodautoscaler_status_desired_replicas{namespace=\"nope\"}",
    ]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("returned no series"));
    let port = promfix::free_port().to_string();
    let gone = k3scale(&[
        "simulate",
        "--no-chart",
        "--prometheus",
        &format!("http://127.0.0.1:{port}"),
    ]);
    assert_eq!(gone.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("cannot reach"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    let zero = run(&["--range", "0s"]);
    assert_eq!(zero.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&zero.stderr).contains("must be longer than zero"));
    let secret = k3scale(&[
        "simulate",
        "--no-chart",
        "--prometheus",
        "http://admin:hunter2@127.0.0.1:9/",
    ]);
    assert_eq!(secret.status.code(), Some(2));
    let said = String::from_utf8_lossy(&secret.stderr);
    assert!(
        said.contains("must not carry credentials") && !said.contains("hunter2"),
        "{said}"
    );
    let stray = k3scale(&["simulate", "--no-chart", "--range", "7d"]);
    assert_eq!(stray.status.code(), Some(2), "--range needs --prometheus");
}
