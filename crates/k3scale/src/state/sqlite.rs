//! The embedded state store: one SQLite file (WAL mode), safe to share
//! between processes on one host (a `run` and a cron `once`).

use super::{Intent, JournalEntry, LockHolder, ScaleEvent, StateError, StateStore, StoredEvent, Versioned};
use k3scale_core::Time;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    pool TEXT NOT NULL,
    node TEXT NOT NULL,
    detail TEXT NOT NULL,
    opened_ms INTEGER NOT NULL,
    closed_ms INTEGER,
    outcome TEXT
);
CREATE INDEX IF NOT EXISTS journal_open ON journal (closed_ms) WHERE closed_ms IS NULL;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
";

/// Events kept; older ones are dropped as new ones come.
const EVENTS_KEPT: i64 = 10_000;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

fn ms(t: Time) -> i64 {
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}

fn time(ms: i64) -> Time {
    Time::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl SqliteStore {
    /// Open (or create) the store at `path`, creating its directory.
    pub fn open(path: &Path) -> Result<SqliteStore, StateError> {
        let fail = |cause: String| StateError::Unavailable {
            location: path.display().to_string(),
            cause,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        Self::prepare(conn, path, &fail)
    }

    /// A store that lives and dies with this process: a dry run with no
    /// store on disk yet leaves nothing behind.
    pub fn in_memory(label: &Path) -> Result<SqliteStore, StateError> {
        let fail = |cause: String| StateError::Unavailable {
            location: label.display().to_string(),
            cause,
        };
        let conn = Connection::open_in_memory().map_err(|e| fail(e.to_string()))?;
        Self::prepare(conn, label, &fail)
    }

    fn prepare(
        conn: Connection,
        path: &Path,
        fail: &dyn Fn(String) -> StateError,
    ) -> Result<SqliteStore, StateError> {
        // Another process may hold the write lock for a moment: wait, do not fail.
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| fail(e.to_string()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| fail(e.to_string()))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| fail(e.to_string()))?;
        conn.execute_batch(SCHEMA).map_err(|e| fail(e.to_string()))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Run `f` on the connection off the async threads.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let conn = self.conn.clone();
        let location = self.path.display().to_string();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| StateError::Unavailable {
            location,
            cause: e.to_string(),
        })?
    }

    fn sql_error(&self) -> impl Fn(rusqlite::Error) -> StateError + Send + 'static {
        let location = self.path.display().to_string();
        move |e| StateError::Unavailable {
            location: location.clone(),
            cause: e.to_string(),
        }
    }
}

#[async_trait::async_trait]
impl StateStore for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StateError> {
        let (key, err) = (key.to_string(), self.sql_error());
        self.with(move |c| {
            c.query_row("SELECT value, version FROM kv WHERE key = ?1", [&key], |r| {
                Ok(Versioned {
                    value: r.get(0)?,
                    version: r.get::<_, i64>(1)? as u64,
                })
            })
            .optional()
            .map_err(err)
        })
        .await
    }

    async fn put(&self, key: &str, value: &str, expected: u64) -> Result<u64, StateError> {
        let (key, value, err) = (key.to_string(), value.to_string(), self.sql_error());
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let found: u64 = tx
                .query_row("SELECT version FROM kv WHERE key = ?1", [&key], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()
                .map_err(&err)?
                .map_or(0, |v| v as u64);
            if found != expected {
                return Err(StateError::Conflict { key, expected, found });
            }
            let next = found + 1;
            tx.execute(
                "INSERT INTO kv (key, value, version) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version",
                params![key, value, next as i64],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)?;
            Ok(next)
        })
        .await
    }

    async fn open(&self, intent: &Intent, now: Time) -> Result<u64, StateError> {
        let (intent, err) = (intent.clone(), self.sql_error());
        self.with(move |c| {
            c.execute(
                "INSERT INTO journal (kind, pool, node, detail, opened_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    intent.kind.as_str(),
                    intent.pool,
                    intent.node,
                    intent.detail.to_string(),
                    ms(now)
                ],
            )
            .map_err(&err)?;
            Ok(c.last_insert_rowid() as u64)
        })
        .await
    }

    async fn update(&self, id: u64, detail: &serde_json::Value) -> Result<(), StateError> {
        let (detail, err) = (detail.to_string(), self.sql_error());
        self.with(move |c| {
            c.execute(
                "UPDATE journal SET detail = ?1 WHERE id = ?2 AND closed_ms IS NULL",
                params![detail, id as i64],
            )
            .map(|_| ())
            .map_err(err)
        })
        .await
    }

    async fn close(&self, id: u64, outcome: &str, now: Time) -> Result<(), StateError> {
        let (outcome, err) = (outcome.to_string(), self.sql_error());
        self.with(move |c| {
            c.execute(
                "UPDATE journal SET closed_ms = ?1, outcome = ?2 WHERE id = ?3 AND closed_ms IS NULL",
                params![ms(now), outcome, id as i64],
            )
            .map(|_| ())
            .map_err(err)
        })
        .await
    }

    async fn unfinished(&self) -> Result<Vec<JournalEntry>, StateError> {
        let err = self.sql_error();
        self.with(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT id, kind, pool, node, detail, opened_ms FROM journal
                     WHERE closed_ms IS NULL ORDER BY id",
                )
                .map_err(&err)?;
            let rows = stmt
                .query_map([], |r| {
                    let detail: String = r.get(4)?;
                    Ok(JournalEntry {
                        id: r.get::<_, i64>(0)? as u64,
                        intent: Intent {
                            kind: super::IntentKind::parse(&r.get::<_, String>(1)?),
                            pool: r.get(2)?,
                            node: r.get(3)?,
                            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                        },
                        opened_at: time(r.get(5)?),
                    })
                })
                .map_err(&err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(&err)
        })
        .await
    }

    async fn push_event(&self, event: &ScaleEvent) -> Result<u64, StateError> {
        let err = self.sql_error();
        let body = serde_json::to_string(event).map_err(|e| StateError::Unavailable {
            location: self.path.display().to_string(),
            cause: e.to_string(),
        })?;
        self.with(move |c| {
            c.execute("INSERT INTO events (body) VALUES (?1)", [&body])
                .map_err(&err)?;
            let id = c.last_insert_rowid();
            c.execute("DELETE FROM events WHERE id <= ?1", [id - EVENTS_KEPT])
                .map_err(&err)?;
            Ok(id as u64)
        })
        .await
    }

    async fn events(&self, before: Option<u64>, limit: usize) -> Result<Vec<StoredEvent>, StateError> {
        let err = self.sql_error();
        let before = before.map_or(i64::MAX, |b| b as i64);
        self.with(move |c| {
            let mut stmt = c
                .prepare("SELECT id, body FROM events WHERE id < ?1 ORDER BY id DESC LIMIT ?2")
                .map_err(&err)?;
            let rows = stmt
                .query_map(params![before, limit as i64], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
                })
                .map_err(&err)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, body) = row.map_err(&err)?;
                // An event written by a newer version that this one cannot read is skipped.
                if let Ok(event) = serde_json::from_str(&body) {
                    out.push(StoredEvent { id, event });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn lock(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<Result<(), LockHolder>, StateError> {
        let (name, owner, err) = (name.to_string(), owner.to_string(), self.sql_error());
        self.with(move |c| {
            let until = ms(now + ttl);
            // One write transaction: the holder read after a refusal is the
            // one that refused us.
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            // Taken only if free, expired, or ours.
            let changed = tx
                .execute(
                    "INSERT INTO locks (name, owner, expires_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_ms = excluded.expires_ms
                     WHERE locks.owner = excluded.owner OR locks.expires_ms <= ?4",
                    params![name, owner, until, ms(now)],
                )
                .map_err(&err)?;
            let result = if changed == 1 {
                Ok(())
            } else {
                Err(tx
                    .query_row(
                        "SELECT owner, expires_ms FROM locks WHERE name = ?1",
                        [&name],
                        |r| {
                            Ok(LockHolder {
                                owner: r.get(0)?,
                                expires_at: time(r.get(1)?),
                            })
                        },
                    )
                    .map_err(&err)?)
            };
            tx.commit().map_err(&err)?;
            Ok(result)
        })
        .await
    }

    async fn take_over(
        &self,
        name: &str,
        dead_owner: &str,
        owner: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<bool, StateError> {
        let (name, dead, owner, err) = (
            name.to_string(),
            dead_owner.to_string(),
            owner.to_string(),
            self.sql_error(),
        );
        self.with(move |c| {
            c.execute(
                "UPDATE locks SET owner = ?1, expires_ms = ?2 WHERE name = ?3 AND owner = ?4",
                params![owner, ms(now + ttl), name, dead],
            )
            .map(|n| n == 1)
            .map_err(err)
        })
        .await
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<bool, StateError> {
        let (name, owner, err) = (name.to_string(), owner.to_string(), self.sql_error());
        self.with(move |c| {
            c.execute(
                "DELETE FROM locks WHERE name = ?1 AND owner = ?2",
                params![name, owner],
            )
            .map(|n| n == 1)
            .map_err(err)
        })
        .await
    }
}
