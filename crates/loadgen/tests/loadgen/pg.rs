//! `k3scale-load pg` against a real PostgreSQL primary and streaming
//! replica on 127.0.0.1, started with the demo's own replication script.

use crate::pgfix;
use std::process::{Command, Output};

use serde_json::Value;

fn load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_k3scale-load"))
        .arg("pg")
        .args(args)
        .output()
        .unwrap()
}

fn count(r: &Value, op: &str) -> u64 {
    r["ops"][op]["ok"].as_u64().unwrap_or(0)
}

fn stat(pg: &pgfix::Replicated, port: u16, column: &str) -> u64 {
    let sql = format!("select coalesce({column}, 0) from pg_stat_user_tables where relname = 'k3scale_load'");
    pg.psql(port, &sql).unwrap().parse().unwrap()
}

#[test]
fn writes_go_to_the_primary_reads_to_the_replica_and_lag_is_measured() {
    let pg = pgfix::Replicated::start();
    let (primary, replica) = (pg.url(pg.primary_port), pg.url(pg.replica_port));

    // The replication the demo manifests set up is real: a row written on
    // the primary is read back on the replica, which refuses writes.
    pg.psql(
        pg.primary_port,
        "create table hello (v text); insert into hello values ('from the primary')",
    )
    .unwrap();
    let mut seen = String::new();
    for _ in 0..100 {
        seen = pg
            .psql(pg.replica_port, "select v from hello")
            .unwrap_or_default();
        if !seen.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(seen, "from the primary");
    assert_eq!(
        pg.psql(pg.replica_port, "select pg_is_in_recovery()").unwrap(),
        "t"
    );
    let refused = pg
        .psql(pg.replica_port, "insert into hello values ('on the replica')")
        .unwrap_err();
    assert!(refused.contains("read-only transaction"), "{refused}");

    let out = load(&[
        "--primary",
        &primary,
        "--replica",
        &replica,
        "--init",
        "--seed-rows",
        "5000",
        "--read-ratio",
        "0.8",
        "--rate",
        "400",
        "--duration",
        "5s",
        "--connections",
        "8",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains(pgfix::PASSWORD),
        "the password stays out of the report"
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["sent"], 2000);
    assert_eq!(r["errors"], serde_json::json!({}));
    let (inserts, updates) = (count(&r, "insert"), count(&r, "update"));
    let reads = count(&r, "point_select") + count(&r, "range_select");
    let ratio = reads as f64 / (reads + inserts + updates) as f64;
    assert!((ratio - 0.8).abs() <= 0.02, "read ratio {ratio}");

    // The servers' own counters: every insert and update landed on the
    // primary; the reads' index scans happened on the replica.
    assert_eq!(stat(&pg, pg.primary_port, "n_tup_ins"), 5000 + inserts);
    assert_eq!(stat(&pg, pg.primary_port, "n_tup_upd"), updates);
    let primary_scans = stat(&pg, pg.primary_port, "idx_scan");
    assert!(
        primary_scans <= updates + 5,
        "primary index scans {primary_scans} vs {updates} updates"
    );
    let replica_scans = stat(&pg, pg.replica_port, "idx_scan");
    assert!(
        replica_scans >= reads,
        "replica index scans {replica_scans} vs {reads} reads"
    );
    // What was written is on the replica too.
    let rows = pg
        .psql(pg.replica_port, "select count(*) from k3scale_load")
        .unwrap();
    assert_eq!(rows.parse::<u64>().unwrap(), 5000 + inserts);

    // Replication lag, from reading back own inserts on the replica.
    let lag = &r["replication"];
    let probes = lag["probes"].as_u64().unwrap();
    assert_eq!(probes, inserts.div_ceil(10), "every 10th insert is probed");
    assert_eq!(lag["seen"].as_u64().unwrap(), probes);
    let p50 = lag["lag"]["p50"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 < 1000.0, "lag p50 {p50} ms");
}

#[test]
fn bad_servers_and_credentials_get_clear_errors() {
    let pg = pgfix::Replicated::start();
    let wrong = format!(
        "postgresql://postgres:not-the-password@127.0.0.1:{}/postgres",
        pg.primary_port
    );
    let cases = [
        (
            vec!["--primary", wrong.as_str()],
            "password authentication failed for user \"postgres\"",
        ),
        (
            vec!["--primary", "postgresql://postgres:x@127.0.0.1:1/postgres"],
            "Connection refused",
        ),
        (
            vec!["--primary", "postgresql://[bad"],
            "bad primary connection string",
        ),
    ];
    let replica_as_primary = pg.url(pg.replica_port);
    let no_schema = pg.url(pg.primary_port);
    let mut cases: Vec<(Vec<&str>, &str)> = cases.into_iter().collect();
    cases.push((vec!["--primary", &replica_as_primary], "is a read-only replica"));
    cases.push((vec!["--primary", &no_schema], "run once with --init"));
    cases.push((
        vec!["--primary", &no_schema, "--read-ratio", "1.5"],
        "--read-ratio must be between 0 and 1",
    ));
    for (args, want) in cases {
        let mut all = args.clone();
        all.extend(["--rate", "10", "--duration", "1s"]);
        let out = load(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(
            !err.contains(pgfix::PASSWORD) && !err.contains("not-the-password"),
            "{err}"
        );
    }
}
