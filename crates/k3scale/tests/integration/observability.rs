//! Every metric the shipped alert rules and Grafana dashboards use is one
//! that k3scale or a real node-exporter actually exports (or Prometheus's
//! own `up`): a renamed metric breaks this test, not a dashboard at 3 am.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k3scale::controller::Reconciled;
use k3scale::telemetry::Telemetry;
use k3scale_core::testkit::{default_policy, node_of, pending, running, snapshot, workers};
use k3scale_core::time::Time;

/// What k3scale exports once it has reconciled: a real `decide` over a
/// small cluster (one busy node, one pending pod), a launch, a failed drain
/// and a failed reconcile, so every family has a series.
fn k3scale_exposition() -> String {
    let now = Time::from_secs(3600);
    let pool = workers();
    let pods = vec![
        running("web-1", "w-1", 1900, 1 << 30),
        pending("web-2", 1500, 1 << 30, Time::from_secs(3500)),
    ];
    let snap = snapshot(vec![node_of(&pool, "w-1")], pods, 0.95, 0.5, now);
    let policy = default_policy();
    let decision = k3scale_core::decide(&snap, &policy, now);
    assert!(!decision.reasons.is_empty());
    let done = Reconciled {
        decision,
        launched: vec![k3scale::controller::Launched {
            pool: "workers".into(),
            node: "workers-a1".into(),
        }],
        removed: vec![],
        failed: vec![k3scale::controller::Failure {
            action: k3scale::controller::Action::Drain,
            pool: "workers".into(),
            node: "w-0".into(),
            why: "the budget never allowed".into(),
        }],
        recovered: vec![],
    };
    let telemetry = Telemetry::new();
    telemetry.set_leader(true);
    telemetry.reconciled(&done, &snap, &policy, Duration::from_millis(12), now);
    telemetry.reconcile_failed(Duration::from_millis(3));
    telemetry.encode_prometheus()
}

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// The metric names a PromQL expression selects. Label matchers, ranges,
/// strings, grouping label lists, function names, keywords and Grafana
/// variables are not metric names.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Blank out {...}, [...] and "..." contents.
    let mut flat = String::new();
    let (mut depth, mut quoted) = (0, false);
    for c in expr.chars() {
        match c {
            '"' if depth == 0 => quoted = !quoted,
            _ if quoted => {}
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            _ if depth == 0 => flat.push(c),
            _ => {}
        }
    }
    // Drop grouping clauses with their label lists: `by (pool, state)`.
    let grouping = ["by", "without", "on", "ignoring", "group_left", "group_right"];
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '$';
    let chars: Vec<char> = flat.chars().collect();
    // (word, the character after it, where it ends)
    let mut words: Vec<(String, Option<char>, usize)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !is_ident(chars[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut j = i;
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        let next = chars.get(j).copied();
        if grouping.contains(&word.as_str()) {
            if next == Some('(') {
                i = j + chars[j..].iter().position(|&c| c == ')').unwrap_or(0) + 1;
            }
            // `sum by (pool) (...)`: what follows the clause follows `sum`.
            let mut k = i;
            while k < chars.len() && chars[k].is_whitespace() {
                k += 1;
            }
            if let Some(last) = words.last_mut()
                && chars[last.2..start].iter().all(|c| c.is_whitespace())
            {
                last.1 = chars.get(k).copied();
                last.2 = i;
            }
            continue;
        }
        words.push((word, next, i));
    }
    let keywords = ["bool", "and", "or", "unless", "offset"];
    let mut names = BTreeSet::new();
    for (word, next, _) in words {
        let aggregation_before_group = next == Some('(');
        if keywords.contains(&word.as_str())
            || word.starts_with('$')
            || word.starts_with(|c: char| c.is_ascii_digit())
            || aggregation_before_group
        {
            continue;
        }
        names.insert(word);
    }
    names
}

#[test]
fn the_extractor_finds_metric_names_only() {
    let got = metric_names(
        r#"sum by (pool, state) (rate(k3scale_actions_total{action="drain",result=~"fail.*"}[5m])) / on() group_left max(k3scale_nodes) > 0.5"#,
    );
    assert_eq!(
        got,
        BTreeSet::from(["k3scale_actions_total".into(), "k3scale_nodes".into()])
    );
    let got = metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(k3scale_reconcile_duration_seconds_bucket[$__rate_interval]))) or vector(0)"#,
    );
    assert_eq!(
        got,
        BTreeSet::from(["k3scale_reconcile_duration_seconds_bucket".into()])
    );
    let got = metric_names("node_a / on(instance) (node_b) and ignoring(cpu) node_c offset 5m");
    assert_eq!(
        got,
        BTreeSet::from(["node_a".into(), "node_b".into(), "node_c".into()])
    );
    let got = metric_names(r#"up{job="k3scale"} == 0 or absent(up{job="k3scale"})"#);
    assert_eq!(got, BTreeSet::from(["up".into()]));
}

/// Every expression in the alert rules and the dashboards, with where it
/// came from.
fn shipped_expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let rules_path = deploy().join("prometheus/k3scale-alerts.yaml");
    let rules: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&rules_path).unwrap()).unwrap();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
            out.push((
                format!("alert {name}"),
                rule["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    let dir = deploy().join("grafana/dashboards");
    let mut dashboards = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let d: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        dashboards += 1;
        for panel in d["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().unwrap() {
                let title = format!(
                    "{} / {}",
                    d["title"].as_str().unwrap(),
                    panel["title"].as_str().unwrap()
                );
                out.push((title, t["expr"].as_str().unwrap().to_string()));
            }
        }
    }
    assert!(dashboards >= 2, "the cluster and k3scale dashboards");
    out
}

/// Sample and family names in a text exposition.
fn exposed_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            names.insert(name.to_string());
            if kind == "histogram" || kind == "summary" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

struct NodeExporter(Child);

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn node_exporter_names() -> BTreeSet<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _exporter = NodeExporter(
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-node-exporter (Debian package) is installed by scripts/test.sh"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await
            && resp.status().is_success()
        {
            return exposed_names(&resp.text().await.unwrap());
        }
        assert!(Instant::now() < deadline, "node-exporter did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_metric_in_rules_and_dashboards_is_exported() {
    let k3scale = exposed_names(&k3scale_exposition());
    assert!(
        k3scale.contains("k3scale_nodes") && k3scale.contains("k3scale_actions_total"),
        "{k3scale:?}"
    );
    let node = node_exporter_names().await;
    assert!(
        node.contains("node_cpu_seconds_total"),
        "a real node-exporter: {node:?}"
    );

    let mut unknown = Vec::new();
    let exprs = shipped_expressions();
    for (place, expr) in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place}: no metric in `{expr}`");
        for name in names {
            if name != "up" && !k3scale.contains(&name) && !node.contains(&name) {
                unknown.push(format!("{place}: {name}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics nobody exports:\n{}",
        unknown.join("\n")
    );
    assert!(exprs.len() > 20, "{} expressions checked", exprs.len());
}
