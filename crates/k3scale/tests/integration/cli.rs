//! The binary as users run it.

use std::process::Command;

fn k3scale(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_k3scale"))
        .args(args)
        .output()
        .unwrap()
}

fn temp_dir(name: &str) -> k3scale_testsupport::support::TempDir {
    k3scale_testsupport::support::TempDir::new(&format!("cli-{name}"))
}

#[test]
fn simulate_default_prints_the_comparison_and_writes_a_chart() {
    let dir = temp_dir("sim");
    let chart = dir.join("chart.svg");
    let out = k3scale(&["simulate", "--chart", chart.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    for want in [
        "k3scale",
        "threshold-2m",
        "fixed-peak",
        "oracle",
        "node-hours vs oracle (x)",
        "node-hours",
        "p95 wait (s)",
        "k3scale vs fixed-peak:",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..200.min(svg.len())]);
    // The legend names every contender; the panels: nodes, waiting pods,
    // and (a day is long enough) the zoom on the sale.
    for want in [
        "\nk3scale\n</text>",
        "\noracle\n</text>",
        "\nCPU demand (cores)\n</text>",
        "pods waiting for a node",
        "zoom: hours 17.",
    ] {
        assert!(svg.contains(want), "missing {want:?} in the chart");
    }
}

#[test]
fn simulate_json_is_machine_readable() {
    let dir = temp_dir("json");
    let chart = dir.join("c.svg");
    let out = k3scale(&[
        "simulate",
        "--scenario",
        "spikes",
        "--output",
        "json",
        "--chart",
        chart.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["scenario"], "spikes");
    let policies: Vec<_> = v["summaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["policy"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(policies, ["k3scale", "threshold-2m", "fixed-peak", "oracle"]);
    assert!(v["summaries"][0]["node_hours"].as_f64().unwrap() > 0.0);
    // Each is measured against the oracle, which never does worse.
    for s in v["summaries"].as_array().unwrap() {
        assert!(s["vs_oracle"].as_f64().unwrap() >= 0.999, "{s}");
    }
    // Minute by minute: demand, and nodes and pending pods per contender.
    let minutes = v["per_minute"]["demand_cores"].as_array().unwrap().len();
    assert_eq!(minutes, 2 * 24 * 60, "two days");
    for name in &policies {
        assert_eq!(v["per_minute"]["nodes"][name].as_array().unwrap().len(), minutes);
        assert_eq!(
            v["per_minute"]["pending_pods"][name].as_array().unwrap().len(),
            minutes
        );
    }
    let pending = v["per_minute"]["pending_pods"]["threshold-2m"]
        .as_array()
        .unwrap();
    assert!(
        pending.iter().any(|p| p.as_u64().unwrap() > 0),
        "the script leaves pods waiting"
    );
    // Every k3scale scale event says why.
    let events = v["events"]["k3scale"].as_array().unwrap();
    assert!(!events.is_empty());
    assert!(
        events
            .iter()
            .all(|e| !e["reasons"].as_array().unwrap().is_empty())
    );
    assert!(
        events
            .iter()
            .any(|e| e["reasons"].to_string().contains("bin-packed onto")),
        "{events:?}"
    );
}

#[test]
fn two_configs_run_side_by_side_against_the_same_baselines() {
    let dir = temp_dir("configs");
    let default = k3scale_core::config::DEFAULT_CONFIG;
    let with = |unneeded: &str| default.replace("unneeded_time: 8m", &format!("unneeded_time: {unneeded}"));
    assert_ne!(with("1m"), default, "the embedded default names unneeded_time");
    let eager = dir.write("eager.yaml", &with("1m"));
    let patient = dir.write("patient.yaml", &with("60m"));
    let out = k3scale(&[
        "simulate",
        "--scenario",
        "spikes",
        "--no-chart",
        "--output",
        "json",
        "-c",
        eager.to_str().unwrap(),
        "-c",
        patient.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hours = |name: &str| {
        v["summaries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["policy"] == name)
            .unwrap_or_else(|| panic!("no {name} in {}", v["summaries"]))["node_hours"]
            .as_f64()
            .unwrap()
    };
    // Keeping idle nodes an hour after each spike costs node-hours.
    assert!(hours("k3scale:patient") > hours("k3scale:eager"));
    assert!(hours("oracle") <= hours("k3scale:eager"));
    assert!(hours("threshold-2m") > 0.0 && hours("fixed-peak") > 0.0);

    let table = k3scale(&[
        "simulate",
        "--no-chart",
        "-c",
        eager.to_str().unwrap(),
        "-c",
        patient.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("k3scale:eager vs fixed-peak:") && text.contains("k3scale:patient vs fixed-peak:"),
        "{text}"
    );
    let twice = k3scale(&["simulate", "--no-chart", "-c", "-", "-c", "-"]);
    assert_eq!(twice.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("standard input can be read only once"));
}

#[test]
fn simulate_rejects_unknown_scenarios_and_bad_traces() {
    let out = k3scale(&["simulate", "--scenario", "black-friday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unknown scenario \"black-friday\" (built in: flash-sale")
    );
    let dir = temp_dir("trace");
    let trace = dir.join("bad.csv");
    std::fs::write(&trace, "time_s,cpu\n0,1\n60,lots\n").unwrap();
    let out = k3scale(&["simulate", "--trace", trace.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.csv:3: demand \"lots\" is not a number"));
}

#[test]
fn simulate_refuses_bad_numbers_and_absurd_traces_clearly() {
    let dir = temp_dir("sim-input");
    let no_chart = ["simulate", "--no-chart"];
    let refused = |extra: &[&str], want: &str| {
        let args: Vec<&str> = no_chart.iter().chain(extra).copied().collect();
        let out = k3scale(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(want), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    for days in ["0", "-1", "NaN", "inf", "1e300"] {
        refused(
            &[&format!("--days={days}")],
            "--days must be a positive number of days",
        );
    }
    for c in ["0", "-0.5", "NaN"] {
        refused(
            &[&format!("--cpu-per-request={c}")],
            "--cpu-per-request must be a positive number",
        );
    }
    // Seconds since the epoch count from the first row; a span of ages is refused.
    let epoch = dir.write("epoch.csv", "time_s,cpu\n1700000000,1\n1700000060,2\n");
    let out = k3scale(&["simulate", "--no-chart", "--trace", epoch.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ages = dir.write("ages.csv", "time_s,cpu\n0,1\n100000000000,2\n");
    refused(
        &["--trace", ages.to_str().unwrap()],
        "days, more than 366 (is time_s in seconds?)",
    );
    let huge = dir.write("huge.csv", "time_s,cpu\n0,1e308\n60,1\n");
    refused(
        &["--trace", huge.to_str().unwrap(), "--scale", "32"],
        "1e308 × 32 is not a finite number",
    );
}

#[test]
fn a_chart_that_cannot_be_written_loses_neither_the_table_nor_the_json() {
    for output in ["table", "json"] {
        let out = k3scale(&[
            "simulate",
            "--days",
            "0.1",
            "--output",
            output,
            "--chart",
            "/nonexistent-dir/chart.svg",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{output}");
        assert!(stdout.contains("k3scale"), "{output}: {stdout}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cannot draw chart /nonexistent-dir/chart.svg"),
            "{output}"
        );
    }
    let out = k3scale(&["simulate", "--days", "0.1", "--no-chart"]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("chart:"));
}

#[test]
fn validate_prints_effective_config_or_every_error() {
    let dir = temp_dir("validate");
    let good = dir.join("good.yaml");
    std::fs::write(&good, "pools:\n  - name: w\n    template: { cpu: \"2\", memory: 4Gi }\n    provider: { exec: { create: c, delete: d, list: l } }\n").unwrap();
    let out = k3scale(&["validate", "-c", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("cpu_above: 0.7") && stdout.contains("unneeded_time: 8m"),
        "{stdout}"
    );
    // The machine timings a pool gets, from its boot_time (60s by default).
    assert!(
        stdout.contains("provision_timeout: 10m") && stdout.contains("join_timeout: 5m"),
        "{stdout}"
    );

    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "pools:\n  - name: w\n    min: 4\n    max: 2\n    template: { cpu: \"2\", memory: 4Gi }\n    provider: { exec: { create: c, delete: d, list: l } }\n").unwrap();
    let out = k3scale(&["validate", "-c", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "{}:3: pools[0].min: min (4) is greater than max (2)",
            bad.display()
        )),
        "{stderr}"
    );
}

#[test]
fn validate_names_a_secret_file_it_cannot_read_and_a_zero_exec_timeout() {
    let dir = temp_dir("validate-secrets");
    let token = dir.join("token");
    let cfg = dir.join("k3scale.yaml");
    let write = |timeout: &str| {
        std::fs::write(
            &cfg,
            format!(
                "pools:\n  - name: w\n    template: {{ cpu: \"2\", memory: 4Gi }}\n    provider: {{ exec: {{ create: c, delete: d, list: l, timeout: {timeout}, token_file: {} }} }}\n",
                token.display()
            ),
        )
        .unwrap();
    };
    write("30s");
    let out = k3scale(&["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "pools[0].provider.exec.token_file: cannot read {}: no such file",
            token.display()
        )),
        "{stderr}"
    );
    // Meant for another machine: the configuration alone is checked.
    let out = k3scale(&["validate", "--skip-secret-files", "-c", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // There, and readable: fine, and its content is never printed.
    std::fs::write(&token, "K10secret-token-value").unwrap();
    let out = k3scale(&["validate", "-c", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("secret-token-value"), "{all}");

    write("0s");
    let out = k3scale(&["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("pools[0].provider.exec.timeout: must be greater than zero"),
        "{stderr}"
    );
}

#[test]
fn validate_accepts_the_shipped_example() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../core/src/config/default.yaml");
    // Its token file is where an agent host would keep it, not here.
    assert!(
        k3scale(&["validate", "--skip-secret-files", "-c", path])
            .status
            .success()
    );
}

#[test]
fn status_and_explain_say_what_is_wrong_and_never_hang() {
    // -o takes text or json, nothing else.
    let out = k3scale(&["status", "-o", "yaml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("yaml") && err.contains("json"), "{err}");

    // A daemon that accepts the connection but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let started = std::time::Instant::now();
    // No scheme: http:// is assumed.
    let out = k3scale(&["status", "--server", &addr.to_string()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("http://{addr}/api/status")) && err.contains("no answer within 10s"),
        "{err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "bounded, not forever"
    );
    drop(silent);
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    // `k3scale validate | head -1`: the pipe closes after the first line.
    let dir = temp_dir("pipe");
    let cfg = dir.join("k.yaml");
    std::fs::write(&cfg, "pools:\n  - name: w\n    template: { cpu: \"2\", memory: 4Gi }\n    provider: { exec: { create: c, delete: d, list: l } }\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_k3scale"))
        .args(["validate", "-c", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end at once: every write fails with EPIPE.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        matches!(out.status.code(), Some(0 | 141)),
        "{:?} {stderr}",
        out.status
    );
}

/// Serves one fixed `/api/status` answer to every connection.
fn serve_status(status: &k3scale::status::Status) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let body = serde_json::to_string(status).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn escape_sequences_in_cluster_strings_never_reach_the_terminal() {
    use k3scale::status::{NodeStatus, Status};
    // A node name and a reason that would clear the screen and retitle the window.
    let hostile = "web-1\u{1b}[2J\u{1b}]0;pwned\u{7}";
    let status = Status {
        identity: "k3scale-a".into(),
        leader: true,
        nodes: vec![NodeStatus {
            name: hostile.into(),
            pool: Some("web\u{9b}31m".into()),
            kept_because: vec![format!("pod default/{hostile} is safe-to-evict=false")],
            ..NodeStatus::default()
        }],
        reasons: vec![format!("node {hostile}: kept")],
        ..Status::default()
    };
    let addr = serve_status(&status).to_string();
    for args in [
        vec!["status", "--server", &addr],
        vec!["explain", "--server", &addr],
        vec!["explain", hostile, "--server", &addr],
        vec!["explain", "no\u{1b}[2Jsuch", "--server", &addr],
    ] {
        let out = k3scale(&args);
        for stream in [&out.stdout, &out.stderr] {
            let text = String::from_utf8_lossy(stream);
            assert!(
                !text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\u{9b}'),
                "{args:?}: {text:?}"
            );
        }
        let shown = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(
            shown.contains("\\u{1b}[2J"),
            "{args:?}: the escape is shown, not dropped: {shown}"
        );
    }
}

const EXEC_POOL: &str = "pools:\n  - name: w\n    template: { cpu: \"2\", memory: 4Gi }\n    provider: { exec: { create: c, delete: d, list: l } }\n";

/// Runs k3scale with `stdin` as its standard input.
fn k3scale_with_input(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_k3scale"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_flags_kubectl_users_expect() {
    // --version names the commit and the compiled-in features.
    let out = k3scale(&["--version"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.starts_with(&format!("k3scale {} (commit ", env!("CARGO_PKG_VERSION")))
            && text.contains(", features: ")
            && !text.contains("commit )"),
        "{text}"
    );

    // -c - reads the configuration from standard input; errors name it.
    let out = k3scale_with_input(&["validate", "-c", "-"], EXEC_POOL);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("name: w"));
    let out = k3scale_with_input(&["validate", "-c", "-"], "pools:\n  - name: w\n    min: x\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stdin:3"), "{err}");

    // --kubeconfig and --context override the file's `kubernetes` section.
    let dir = temp_dir("kubeconfig-flag");
    let missing = dir.join("no-such-kubeconfig");
    let out = k3scale_with_input(
        &[
            "once",
            "-c",
            "-",
            "--dry-run",
            "--kubeconfig",
            missing.to_str().unwrap(),
        ],
        EXEC_POOL,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(missing.to_str().unwrap()), "{err}");

    // --log-level is a filter like K3SCALE_LOG, and a bad one is refused by name.
    let out = k3scale(&["--log-level", "k3scale=loud", "simulate", "--list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-level"));
    let out = k3scale(&["simulate", "--list", "--log-level", "debug"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Shell completion scripts.
    for shell in ["bash", "zsh", "fish"] {
        let out = k3scale(&["completion", shell]);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && script.contains("simulate") && script.contains("kubeconfig"),
            "{shell}: {script}"
        );
    }
    let out = k3scale(&["completion", "tcsh"]);
    assert!(!out.status.success());
}

/// A kubeconfig for an API server that is not there (a closed local port),
/// and a config using it, in `dir`.
fn unreachable_cluster(dir: &std::path::Path, listen: &str) -> (String, std::path::PathBuf) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = format!("https://127.0.0.1:{port}");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{ server: \"{api}\", insecure-skip-tls-verify: true }}\ncontexts:\n- name: c\n  context: {{ cluster: c, user: u }}\ncurrent-context: c\nusers:\n- name: u\n  user: {{ token: t }}\n"
        ),
    )
    .unwrap();
    let config = dir.join("k3scale.yaml");
    std::fs::write(
        &config,
        format!(
            "kubernetes: {{ kubeconfig: {} }}\nmetrics: {{ source: metrics-server }}\nstate: {{ path: {} }}\nserver: {{ listen: \"{listen}\" }}\nleader_election: {{ namespace: k3scale-system }}\n{EXEC_POOL}",
            kubeconfig.display(),
            dir.join("state.db").display()
        ),
    )
    .unwrap();
    (api, config)
}

#[test]
fn once_against_an_unreachable_api_says_where_and_why_at_once() {
    let dir = temp_dir("once-unreachable");
    let (api, config) = unreachable_cluster(dir.path(), "127.0.0.1:0");
    let started = std::time::Instant::now();
    let out = k3scale(&["once", "-c", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("cannot reach the Kubernetes API at {api}")) && err.contains("refused"),
        "{err}"
    );
    // One line, not a line per watch and retry; no colours in a pipe.
    assert!(err.lines().count() <= 2 && !err.contains('\u{1b}'), "{err}");
    // Not after the 60 s wait for caches that can never list.
    assert!(started.elapsed() < std::time::Duration::from_secs(50));
}

#[test]
fn run_checks_its_port_first_and_waits_out_an_unreachable_api_serving_health() {
    let dir = temp_dir("run-unreachable");
    // The port is taken: said first, before the API is even tried.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let (_, config) = unreachable_cluster(dir.path(), &listen);
    let out = k3scale(&["run", "-c", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("server.listen: cannot listen on {listen}")),
        "{err}"
    );
    assert!(!err.contains("Kubernetes API"), "the API was tried first: {err}");
    drop(taken);

    // A free port and no API: the daemon stays up, healthy and not ready.
    let (api, config) = unreachable_cluster(dir.path(), &listen);
    let mut child = Command::new(env!("CARGO_BIN_EXE_k3scale"))
        .args(["run", "-c", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let get = |path: &str| -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&listen).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, text))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while get("/healthz").is_none_or(|(code, _)| code != 200) {
        assert!(std::time::Instant::now() < deadline, "no /healthz");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (code, body) = get("/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("caches: not synced"), "{body}");
    assert!(child.try_wait().unwrap().is_none(), "run exited");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot reach the Kubernetes API at {api}")),
        "{err}"
    );
    assert!(
        err.lines().count() < 20,
        "one line per failing thing, not per retry: {err}"
    );
}

#[test]
fn pool_reset_lets_a_failed_pool_launch_again() {
    use k3scale::state::StateStore;
    let dir = temp_dir("pool-reset");
    let db = dir.join("state.db");
    let config = dir.join("k3scale.yaml");
    std::fs::write(
        &config,
        format!("state: {{ path: {} }}\n{EXEC_POOL}", db.display()),
    )
    .unwrap();
    // The pool's provider said Fatal earlier: its lifecycle holds it failed.
    let failed = r#"{"machines":{},"backoff":{"w":{"failures":1,"until":4611686018427387,"cause":"failed","why":"image not found","config":"abc"}},"machine_missing":{}}"#;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = k3scale::state::sqlite::SqliteStore::open(&db).unwrap();
    rt.block_on(store.put("lifecycle/w", failed, 0)).unwrap();
    drop(store);

    let out = k3scale(&["pool", "reset", "w", "-c", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pool w: reset"));
    let store = k3scale::state::sqlite::SqliteStore::open(&db).unwrap();
    let now = rt.block_on(store.get("lifecycle/w")).unwrap().unwrap().value;
    assert!(!now.contains("failed"), "{now}");
    // Again: nothing to reset; an unknown pool is an error naming the pools.
    let out = k3scale(&["pool", "reset", "w", "-c", config.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("was not failed"));
    let out = k3scale(&["pool", "reset", "nope", "-c", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pools: w"));
}
