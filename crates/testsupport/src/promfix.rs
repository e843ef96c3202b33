//! A real Prometheus (Debian's package) of the test's own on 127.0.0.1,
//! optionally with series backfilled by `promtool`; killed and its data
//! removed on drop.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestPrometheus {
    pub child: Child,
    pub dir: crate::support::TempDir,
    pub url: String,
    /// Unix seconds of the last backfilled sample (0 without backfill).
    pub end: u64,
}

impl Drop for TestPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start Prometheus on a free port; `backfill` is OpenMetrics text written
/// into its TSDB with promtool first. Returns once it answers `/-/ready`.
/// The port is free when chosen, not reserved: should another process
/// take it first, Prometheus starts again on another.
pub fn start_anywhere(tag: &str, backfill: Option<(&str, u64)>) -> TestPrometheus {
    for _ in 0..5 {
        if let Ok(prom) = try_start(tag, free_port(), backfill) {
            return prom;
        }
    }
    panic!("prometheus found no free port in 5 tries");
}

/// Start Prometheus on `port` (one a client was already given), as
/// [`start_anywhere`] does.
pub fn start(tag: &str, port: u16, backfill: Option<(&str, u64)>) -> TestPrometheus {
    try_start(tag, port, backfill)
        .unwrap_or_else(|log| panic!("prometheus on port {port} did not start: {log}"))
}

/// Prometheus on `port`, or its log when it exited before it was ready
/// (the port taken, most likely).
fn try_start(tag: &str, port: u16, backfill: Option<(&str, u64)>) -> Result<TestPrometheus, String> {
    let dir = crate::support::TempDir::new(&format!("prom-{tag}"));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut end = 0;
    if let Some((text, last)) = backfill {
        end = last;
        std::fs::write(dir.join("series.om"), text).unwrap();
        let out = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(dir.join("series.om"))
            .arg(dir.join("data"))
            .output()
            .expect("promtool (Debian package prometheus) runs");
        assert!(
            out.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(dir.join("prometheus.yml"), "global:\n  scrape_interval: 15s\n").unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=10y")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus (Debian package) starts");
    let url = format!("http://127.0.0.1:{port}");
    let mut prom = TestPrometheus { child, dir, url, end };
    let data = prom.dir.join("data").display().to_string();
    let get = |path: &str| {
        let mut answer = String::new();
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes());
            let _ = s.read_to_string(&mut answer);
        }
        answer
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = |a: &str| a.starts_with("HTTP/1.0 200") || a.starts_with("HTTP/1.1 200");
        // Ready, and ours (not another test's Prometheus on a port it took first).
        if ok(&get("/-/ready")) && get("/api/v1/status/flags").contains(&data) {
            return Ok(prom);
        }
        let log = || std::fs::read_to_string(prom.dir.join("prometheus.log")).unwrap_or_default();
        if prom.child.try_wait().is_ok_and(|status| status.is_some()) {
            return Err(log());
        }
        assert!(Instant::now() < deadline, "prometheus not ready: {}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
}
