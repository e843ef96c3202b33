//! PostgreSQL mode: an app-like mix of writes on the primary (insert,
//! update by key) and reads on the replicas (point select, small range
//! select), and replication lag measured by reading back its own inserts on
//! the replicas.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use crate::driver::Client;
use crate::stats::{ErrorKind, Percentiles};

pub const TABLE: &str = "k3scale_load";

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("bad {role} connection string: {why}")]
    Url { role: &'static str, why: String },
    #[error("{role} {server}: {why}")]
    Server {
        role: &'static str,
        server: String,
        why: String,
    },
    #[error("table {TABLE} is missing on {0}: run once with --init to create it")]
    NoSchema(String),
    #[error("--read-ratio must be between 0 and 1, got {0}")]
    Ratio(f64),
}

/// What `k3scale-load pg` was asked to do.
#[derive(Debug, Clone)]
pub struct PgSpec {
    pub primary: String,
    pub replicas: Vec<String>,
    /// The share of reads among all operations (0..=1).
    pub read_ratio: f64,
    pub pool_size: usize,
    pub timeout: Duration,
    /// Every n-th insert is read back on a replica to measure lag (0: none).
    pub lag_probe_every: u64,
}

/// Where a connection string points, without its password: safe to print.
pub fn describe(conn: &str) -> String {
    match tokio_postgres::Config::from_str(conn) {
        Ok(c) => {
            let hosts: Vec<String> = c
                .get_hosts()
                .iter()
                .zip(c.get_ports().iter().chain(std::iter::repeat(&5432)))
                .map(|(h, p)| match h {
                    tokio_postgres::config::Host::Tcp(h) => format!("{h}:{p}"),
                    tokio_postgres::config::Host::Unix(path) => format!("{}:{p}", path.display()),
                })
                .collect();
            format!(
                "{}@{}/{}",
                c.get_user().unwrap_or("?"),
                hosts.join(","),
                c.get_dbname().unwrap_or("")
            )
        }
        Err(_) => "(unparsable connection string)".into(),
    }
}

fn pool(role: &'static str, conn: &str, size: usize, timeout: Duration) -> Result<Pool, PgError> {
    // tokio-postgres's own parse errors never include the password.
    let mut config = tokio_postgres::Config::from_str(conn).map_err(|e| PgError::Url {
        role,
        why: e.to_string(),
    })?;
    if config.get_application_name().is_none() {
        config.application_name("k3scale-load");
    }
    config.connect_timeout(timeout);
    let mgr = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(size.max(1))
        .build()
        .map_err(|e| PgError::Url {
            role,
            why: e.to_string(),
        })
}

fn server_error(role: &'static str, conn: &str, e: impl std::fmt::Display) -> PgError {
    PgError::Server {
        role,
        server: describe(conn),
        why: e.to_string(),
    }
}

/// The innermost useful message of an error chain: for a server's refusal,
/// its own words ("password authentication failed for user ..."), for a
/// network failure the OS's ("Connection refused").
fn why(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    loop {
        if let Some(db) = cur.downcast_ref::<tokio_postgres::error::DbError>() {
            return format!("{} (SQLSTATE {})", db.message(), db.code().code());
        }
        match cur.source() {
            Some(next) => cur = next,
            None => return cur.to_string(),
        }
    }
}

/// The pools of a run and what they share.
#[derive(Debug, Clone)]
pub struct Pg {
    primary: Pool,
    replicas: Arc<[Pool]>,
    probes: Arc<[Pool]>,
    write_share: f64,
    timeout: Duration,
    probe_every: u64,
    max_id: Arc<AtomicI64>,
    inserts: Arc<AtomicU64>,
    pub lag: Arc<Lag>,
    stop: CancellationToken,
}

/// Connects to every server, checks roles and (with `init`) creates and
/// seeds the schema.
pub async fn connect(spec: &PgSpec, init: Option<u64>) -> Result<Pg, PgError> {
    if !(0.0..=1.0).contains(&spec.read_ratio) {
        return Err(PgError::Ratio(spec.read_ratio));
    }
    let primary = pool("primary", &spec.primary, spec.pool_size, spec.timeout)?;
    let client = primary
        .get()
        .await
        .map_err(|e| server_error("primary", &spec.primary, why(&e)))?;
    let in_recovery: bool = client
        .query_one("select pg_is_in_recovery()", &[])
        .await
        .map_err(|e| server_error("primary", &spec.primary, why(&e)))?
        .get(0);
    if in_recovery {
        return Err(server_error(
            "primary",
            &spec.primary,
            "is a read-only replica (pg_is_in_recovery() is true)",
        ));
    }
    if let Some(rows) = init {
        create_schema(&client, rows)
            .await
            .map_err(|e| server_error("primary", &spec.primary, why(&e)))?;
    }
    let max_id: Option<i64> = client
        .query_one(&format!("select max(id) from {TABLE}"), &[])
        .await
        .map_err(|e| match e.code() {
            Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                PgError::NoSchema(describe(&spec.primary))
            }
            _ => server_error("primary", &spec.primary, why(&e)),
        })?
        .get(0);
    drop(client);

    let mut replicas = Vec::new();
    let mut probes = Vec::new();
    for url in &spec.replicas {
        let p = pool("replica", url, spec.pool_size, spec.timeout)?;
        let c = p.get().await.map_err(|e| server_error("replica", url, why(&e)))?;
        let in_recovery: bool = c
            .query_one("select pg_is_in_recovery()", &[])
            .await
            .map_err(|e| server_error("replica", url, why(&e)))?
            .get(0);
        if !in_recovery {
            tracing::warn!(replica = %describe(url), "the read-only URL points at a primary");
        }
        drop(c);
        replicas.push(p);
        probes.push(pool("replica", url, 4, spec.timeout)?);
    }
    // Without replicas, reads go to the primary (and there is no lag).
    if replicas.is_empty() {
        replicas.push(primary.clone());
    }
    // Open every pooled connection now, as a warmed-up app has them, so the
    // first second does not measure connection setup.
    warm(&primary, "primary", &spec.primary).await?;
    for (p, url) in replicas.iter().zip(&spec.replicas) {
        warm(p, "replica", url).await?;
    }
    Ok(Pg {
        primary,
        replicas: replicas.into(),
        probes: probes.into(),
        write_share: 1.0 - spec.read_ratio,
        timeout: spec.timeout,
        probe_every: spec.lag_probe_every,
        max_id: Arc::new(AtomicI64::new(max_id.unwrap_or(0))),
        inserts: Arc::new(AtomicU64::new(0)),
        lag: Arc::new(Lag::default()),
        stop: CancellationToken::new(),
    })
}

async fn warm(pool: &Pool, role: &'static str, url: &str) -> Result<(), PgError> {
    let size = pool.status().max_size;
    let conns = futures::future::join_all((0..size).map(|_| pool.get())).await;
    for c in conns {
        drop(c.map_err(|e| server_error(role, url, why(&e)))?);
    }
    Ok(())
}

async fn create_schema(client: &tokio_postgres::Client, rows: u64) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "create table if not exists {TABLE} (
                id bigserial primary key,
                account integer not null,
                payload text not null,
                counter bigint not null default 0,
                updated_at timestamptz not null default now()
            );
            create index if not exists {TABLE}_account on {TABLE} (account);"
        ))
        .await?;
    let have: i64 = client
        .query_one(&format!("select count(*) from {TABLE}"), &[])
        .await?
        .get(0);
    let missing = (rows as i64 - have).max(0);
    if missing > 0 {
        client
            .execute(
                &format!(
                    "insert into {TABLE} (account, payload)
                     select g % 1000, md5(g::text) from generate_series(1, $1::bigint) g"
                ),
                &[&missing],
            )
            .await?;
    }
    Ok(())
}

/// The four operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    PointSelect,
    RangeSelect,
}

impl Op {
    pub fn label(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::PointSelect => "point_select",
            Op::RangeSelect => "range_select",
        }
    }

    pub fn is_write(self) -> bool {
        matches!(self, Op::Insert | Op::Update)
    }
}

/// Which operation request `n` is: writes are spread evenly at the write
/// share (exact over any run), alternating insert and update; one read in
/// four is a range select.
pub fn op_for(n: u64, write_share: f64) -> Op {
    let writes_before = (n as f64 * write_share).floor();
    if ((n + 1) as f64 * write_share).floor() > writes_before {
        if (writes_before as u64).is_multiple_of(2) {
            Op::Insert
        } else {
            Op::Update
        }
    } else if (n - writes_before as u64) % 4 == 3 {
        Op::RangeSelect
    } else {
        Op::PointSelect
    }
}

/// A cheap, well-mixed hash (splitmix64): keys and payloads from `n`.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Replication lag seen by reading back own inserts on the replicas.
#[derive(Debug)]
pub struct Lag {
    hist: std::sync::Mutex<Histogram<u64>>,
    started: AtomicU64,
    gave_up: AtomicU64,
}

impl Default for Lag {
    fn default() -> Self {
        Lag {
            hist: std::sync::Mutex::new(Histogram::new(3).expect("valid histogram")),
            started: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
        }
    }
}

/// The lag part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct LagReport {
    pub probes: u64,
    pub seen: u64,
    pub gave_up: u64,
    /// Milliseconds from the insert's commit to its first sighting on a
    /// replica.
    pub lag: Percentiles,
}

impl Lag {
    pub fn report(&self) -> LagReport {
        let hist = self.hist.lock().unwrap_or_else(|e| e.into_inner());
        LagReport {
            probes: self.started.load(Ordering::Relaxed),
            seen: hist.len(),
            gave_up: self.gave_up.load(Ordering::Relaxed),
            lag: Percentiles::of(&hist),
        }
    }
}

/// How long a probe waits for its row before giving up.
const PROBE_PATIENCE: Duration = Duration::from_secs(30);

impl Pg {
    pub fn client(&self) -> PgClient {
        PgClient { pg: self.clone() }
    }

    /// Stops the lag probes still waiting and waits for them to end.
    pub async fn finish_probes(&self) {
        // Give probes in flight a moment to see their rows, then stop them.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let r = self.lag.report();
            if r.seen + r.gave_up >= r.probes {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.stop.cancel();
    }

    fn probe(&self, id: i64, committed: Instant, n: u64) {
        let Some(pool) = self.probes.get(n as usize % self.probes.len().max(1)).cloned() else {
            return;
        };
        let (lag, stop) = (self.lag.clone(), self.stop.clone());
        lag.started.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let seen = async {
                let client = pool.get().await.ok()?;
                let stmt = client
                    .prepare_cached(&format!("select 1 from {TABLE} where id = $1"))
                    .await
                    .ok()?;
                loop {
                    if !client.query(&stmt, &[&id]).await.ok()?.is_empty() {
                        return Some(committed.elapsed());
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            };
            let outcome = tokio::select! {
                s = tokio::time::timeout(PROBE_PATIENCE, seen) => s.ok().flatten(),
                _ = stop.cancelled() => None,
            };
            match outcome {
                Some(lag_time) => {
                    let us = (lag_time.as_micros() as u64).max(1);
                    let _ = lag.hist.lock().unwrap_or_else(|e| e.into_inner()).record(us);
                }
                None => {
                    lag.gave_up.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

/// One worker: takes connections from the pools per operation, as an app
/// does.
#[derive(Debug)]
pub struct PgClient {
    pg: Pg,
}

impl PgClient {
    async fn perform(&self, n: u64) -> Result<(), ErrorKind> {
        let op = op_for(n, self.pg.write_share);
        let max_id = self.pg.max_id.load(Ordering::Relaxed).max(1);
        let key = (mix(n) % max_id as u64) as i64 + 1;
        let pool = if op.is_write() {
            &self.pg.primary
        } else {
            &self.pg.replicas[n as usize % self.pg.replicas.len()]
        };
        let client = pool.get().await.map_err(pool_kind)?;
        match op {
            Op::Insert => {
                let stmt = client
                    .prepare_cached(&format!(
                        "insert into {TABLE} (account, payload) values ($1, $2) returning id"
                    ))
                    .await
                    .map_err(|e| db_kind(&e))?;
                let account = (mix(n) % 1000) as i32;
                let payload = format!("{:016x}", mix(n ^ 0xABCD));
                let row = client
                    .query_one(&stmt, &[&account, &payload])
                    .await
                    .map_err(|e| db_kind(&e))?;
                let id: i64 = row.get(0);
                self.pg.max_id.fetch_max(id, Ordering::Relaxed);
                let every = self.pg.probe_every;
                let nth = self.pg.inserts.fetch_add(1, Ordering::Relaxed);
                if every > 0 && !self.pg.probes.is_empty() && nth.is_multiple_of(every) {
                    self.pg.probe(id, Instant::now(), n);
                }
            }
            Op::Update => {
                let stmt = client
                    .prepare_cached(&format!(
                        "update {TABLE} set counter = counter + 1, updated_at = now() where id = $1"
                    ))
                    .await
                    .map_err(|e| db_kind(&e))?;
                client.execute(&stmt, &[&key]).await.map_err(|e| db_kind(&e))?;
            }
            Op::PointSelect => {
                let stmt = client
                    .prepare_cached(&format!(
                        "select id, account, payload, counter from {TABLE} where id = $1"
                    ))
                    .await
                    .map_err(|e| db_kind(&e))?;
                client.query(&stmt, &[&key]).await.map_err(|e| db_kind(&e))?;
            }
            Op::RangeSelect => {
                let stmt = client
                    .prepare_cached(&format!(
                        "select id, payload from {TABLE} where id >= $1 order by id limit 20"
                    ))
                    .await
                    .map_err(|e| db_kind(&e))?;
                client.query(&stmt, &[&key]).await.map_err(|e| db_kind(&e))?;
            }
        }
        Ok(())
    }
}

fn pool_kind(e: deadpool_postgres::PoolError) -> ErrorKind {
    match e {
        deadpool_postgres::PoolError::Timeout(_) => "pool timeout".into(),
        deadpool_postgres::PoolError::Backend(e) => db_kind(&e),
        _ => "pool".into(),
    }
}

/// Sorts a database error into a kind: the SQLSTATE class when the server
/// answered (`28P01 auth`, `25006 read-only`), else the transport problem.
fn db_kind(e: &tokio_postgres::Error) -> ErrorKind {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(c)
            if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            "auth".into()
        }
        Some(c) if *c == SqlState::READ_ONLY_SQL_TRANSACTION => "read-only".into(),
        Some(c) => format!("sqlstate {}", c.code()),
        None if e.is_closed() => "closed".into(),
        None => "connection".into(),
    }
}

impl Client for PgClient {
    fn op(&self, n: u64) -> &'static str {
        op_for(n, self.pg.write_share).label()
    }

    async fn call(&mut self, n: u64) -> Result<(), ErrorKind> {
        tokio::time::timeout(self.pg.timeout, self.perform(n))
            .await
            .unwrap_or_else(|_| Err("timeout".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_exact_and_spread() {
        let ops: Vec<Op> = (0..10_000).map(|n| op_for(n, 0.2)).collect();
        let count = |o: Op| ops.iter().filter(|&&x| x == o).count();
        assert_eq!(count(Op::Insert), 1000);
        assert_eq!(count(Op::Update), 1000);
        assert_eq!(count(Op::RangeSelect), 2000);
        assert_eq!(count(Op::PointSelect), 6000);
        // Spread: every window of 10 has exactly 2 writes.
        for w in ops.chunks(10) {
            assert_eq!(w.iter().filter(|o| o.is_write()).count(), 2);
        }
        assert!((0..100).all(|n| !op_for(n, 0.0).is_write()));
        assert!((0..100).all(|n| op_for(n, 1.0).is_write()));
    }

    #[test]
    fn descriptions_never_show_the_password() {
        let d = describe("host=127.0.0.1 port=5433 user=app password=hunter2 dbname=shop");
        assert_eq!(d, "app@127.0.0.1:5433/shop");
        let d = describe("postgresql://app:hunter2@db.local:6432/shop");
        assert_eq!(d, "app@db.local:6432/shop");
    }
}
