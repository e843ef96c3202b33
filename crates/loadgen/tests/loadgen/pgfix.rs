//! A real PostgreSQL primary and streaming replica on 127.0.0.1, started
//! with `deploy/demo/postgres/pg-replication.sh`, the script the demo
//! StatefulSets run. Stopped and removed when dropped.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "app-s3cret-pw";
const REPLICATION_PASSWORD: &str = "repl-s3cret-pw";

#[derive(Debug)]
pub struct Replicated {
    dir: PathBuf,
    /// Removes `dir` once the servers are stopped (fields drop after `drop`).
    _tmp: tempfile::TempDir,
    servers: Vec<Child>,
    pub primary_port: u16,
    pub replica_port: u16,
}

/// Two distinct free ports: both listeners are held while choosing, so the
/// kernel cannot hand out the same port twice.
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = |l: &std::net::TcpListener| l.local_addr().expect("bound").port();
    (port(&a), port(&b))
}

/// Root cannot run PostgreSQL: run it as the `postgres` user then.
fn postgres_ids() -> Option<(u32, u32)> {
    if nix_uid() != 0 {
        return None;
    }
    let id = |flag: &str| {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id runs");
        assert!(out.status.success(), "running as root needs a `postgres` user");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .expect("numeric id")
    };
    Some((id("-u"), id("-g")))
}

fn nix_uid() -> u32 {
    let out = Command::new("id").arg("-u").output().expect("id runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric uid")
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/demo/postgres/pg-replication.sh")
}

impl Replicated {
    pub fn start() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("k3scale-pg-")
            .tempdir()
            .expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let ids = postgres_ids();
        if let Some((uid, gid)) = ids {
            Command::new("chown")
                .arg(format!("{uid}:{gid}"))
                .arg(&dir)
                .status()
                .expect("chown");
        }
        let (primary_port, replica_port) = free_ports();
        let mut me = Replicated {
            dir,
            _tmp: tmp,
            servers: Vec::new(),
            primary_port,
            replica_port,
        };
        me.spawn("primary", me.primary_port, &[], ids);
        me.wait_ready(me.primary_port);
        let primary_port = me.primary_port.to_string();
        me.spawn(
            "replica",
            me.replica_port,
            &[
                ("PRIMARY_HOST", "127.0.0.1"),
                ("PRIMARY_PORT", &primary_port),
                ("REPLICA_SLOT", "replica_1"),
            ],
            ids,
        );
        me.wait_ready(me.replica_port);
        me.wait_streaming();
        me
    }

    /// Until the primary reports its replica streaming through the slot.
    fn wait_streaming(&mut self) {
        let sql = "select count(*) from pg_stat_replication where state = 'streaming'";
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.psql(self.primary_port, sql).as_deref() != Ok("1") {
            assert!(
                Instant::now() < deadline,
                "the replica never streamed: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn spawn(&mut self, role: &str, port: u16, extra: &[(&str, &str)], ids: Option<(u32, u32)>) {
        let log = std::fs::File::create(self.dir.join(format!("{role}.log"))).expect("log file");
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .arg(role)
            .env("PGDATA", self.dir.join(role))
            .env("PGPORT", port.to_string())
            .env("PG_LISTEN", "127.0.0.1")
            .env("PG_SOCKET_DIR", &self.dir)
            .env("PG_CLIENT_CIDR", "127.0.0.1/32")
            .env("POSTGRES_PASSWORD", PASSWORD)
            .env("REPLICATION_PASSWORD", REPLICATION_PASSWORD)
            .env("PRIMARY_WAIT_SECONDS", "30")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        if let Some((uid, gid)) = ids {
            cmd.uid(uid).gid(gid);
        }
        self.servers.push(cmd.spawn().expect("pg-replication.sh starts"));
    }

    fn wait_ready(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && self.query_ok(port) {
                return;
            }
            for s in &mut self.servers {
                if let Ok(Some(status)) = s.try_wait() {
                    panic!("a PostgreSQL server exited ({status}): {}", self.logs());
                }
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL on {port} not ready: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn query_ok(&self, port: u16) -> bool {
        Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-Atc",
                "select 1",
            ])
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "5")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn logs(&self) -> String {
        ["primary.log", "replica.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---\n")
    }

    pub fn url(&self, port: u16) -> String {
        format!("postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres")
    }

    /// Runs SQL with psql; returns its output or its error text.
    pub fn psql(&self, port: u16, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-Atc", sql])
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "5")
            .env("PGOPTIONS", "-c statement_timeout=10000")
            .output()
            .expect("psql runs");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Replicated {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown.
        for s in self.servers.iter().rev() {
            let _ = Command::new("kill").args(["-INT", &s.id().to_string()]).status();
        }
        for s in &mut self.servers {
            let _ = s.wait();
        }
    }
}
