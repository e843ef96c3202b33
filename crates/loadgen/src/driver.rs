//! Drives a run: hands request numbers to workers, on the profile's
//! schedule (open model) or as fast as each worker can go (closed model),
//! and records every outcome.
//!
//! In the open model request `n` is due at `profile.due(n)`, whichever
//! worker picks it up, and its latency is measured from that due time, not
//! from when a busy worker got round to sending it: a slow server shows up
//! as latency instead of as a lower rate (no coordinated omission).

use std::future::Future;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
// Tokio's clock: the same as the system's, but a test can pause it and
// get exact timings on however busy a machine.
use tokio::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::profile::Profile;
use crate::stats::{ErrorKind, Percentiles, Record, Stats};

/// One worker's connection(s) to the system under load.
pub trait Client: Send + 'static {
    /// The operation request `n` performs (a label for the report).
    fn op(&self, n: u64) -> &'static str;
    /// Performs request `n`, within the client's own timeout.
    fn call(&mut self, n: u64) -> impl Future<Output = Result<(), ErrorKind>> + Send;
}

/// Open: requests arrive on the profile's schedule. Closed: each worker
/// sends its next request when the previous one is answered (and an
/// optional think time has passed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    Open,
    Closed { think: Duration },
}

/// The outcome of a run.
#[derive(Debug)]
pub struct Outcome {
    pub record: Record,
    /// Requests sent (answered or failed).
    pub sent: u64,
    pub elapsed: Duration,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
    /// Scheduled requests never sent: by the time a worker was free they
    /// were more than `late_limit` behind schedule (open model).
    pub not_sent: u64,
}

/// Runs `clients` (one task each) until the profile is done or `stop` is
/// cancelled. In the open model a request is sent late (its wait counts as
/// latency) by up to `late_limit`, then dropped: against a slow or hung
/// target the run ends within `late_limit` plus one request of its end.
pub async fn run<C: Client>(
    profile: Arc<Profile>,
    model: Model,
    clients: Vec<C>,
    stop: CancellationToken,
    late_limit: Duration,
) -> Outcome {
    let stats = Stats::default();
    let next = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + profile.duration();
    let done = CancellationToken::new();
    let progress = tokio::spawn(show_progress(
        stats.clone(),
        profile.clone(),
        model,
        start,
        done.clone(),
    ));

    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        let (stats, next, profile, stop) = (stats.clone(), next.clone(), profile.clone(), stop.clone());
        let dropped = dropped.clone();
        tasks.spawn(async move {
            match model {
                Model::Open => {
                    let late = Late {
                        limit: late_limit,
                        dropped: &dropped,
                    };
                    open_worker(client, &profile, &next, &stats, start, &stop, late).await
                }
                Model::Closed { think } => {
                    closed_worker(client, think, &next, &stats, start, end, &stop).await
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            tracing::error!(error = %e, "a load worker failed");
        }
    }
    let elapsed = start.elapsed();
    done.cancel();
    let _ = progress.await;
    let record = stats.finish(|s| target_rate(&profile, model, s));
    let sent = record.ok + record.error_count();
    Outcome {
        record,
        sent,
        elapsed,
        interrupted: stop.is_cancelled(),
        not_sent: dropped.load(Ordering::Relaxed),
    }
}

/// How late an open-model request may be sent, and the count of those dropped.
#[derive(Debug, Clone, Copy)]
struct Late<'a> {
    limit: Duration,
    dropped: &'a AtomicU64,
}

fn target_rate(profile: &Profile, model: Model, second: u64) -> f64 {
    match model {
        Model::Open => profile.rate_at(second as f64),
        Model::Closed { .. } => 0.0,
    }
}

async fn open_worker<C: Client>(
    mut client: C,
    profile: &Profile,
    next: &AtomicU64,
    stats: &Stats,
    start: Instant,
    stop: &CancellationToken,
    late: Late<'_>,
) {
    let mut rec = stats.recorder(start);
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let Some(due) = profile.due(n) else { break };
        let due = start + Duration::from_secs_f64(due);
        if Instant::now().saturating_duration_since(due) > late.limit {
            late.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if due > Instant::now() {
            // Hand in the finished second before idling across its end.
            rec.flush();
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = stop.cancelled() => break,
            }
        } else if stop.is_cancelled() {
            break;
        }
        let op = client.op(n);
        let outcome = client.call(n).await;
        let now = Instant::now();
        rec.record(op, now, now - due, outcome);
    }
}

async fn closed_worker<C: Client>(
    mut client: C,
    think: Duration,
    next: &AtomicU64,
    stats: &Stats,
    start: Instant,
    end: Instant,
    stop: &CancellationToken,
) {
    let mut rec = stats.recorder(start);
    while Instant::now() < end && !stop.is_cancelled() {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let op = client.op(n);
        let sent = Instant::now();
        let outcome = client.call(n).await;
        let now = Instant::now();
        rec.record(op, now, now - sent, outcome);
        if !think.is_zero() {
            rec.flush();
            tokio::select! {
                _ = tokio::time::sleep(think) => {}
                _ = stop.cancelled() => break,
            }
        }
    }
}

/// A live line on a terminal (rate, p50/p99, errors), redrawn each second;
/// elsewhere (CI logs, pipes) a plain line every 10 s.
async fn show_progress(
    stats: Stats,
    profile: Arc<Profile>,
    model: Model,
    start: Instant,
    done: CancellationToken,
) {
    let total = profile.duration().as_secs().max(1);
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Some(bar)
    } else {
        None
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.cancelled() => break,
        }
        let now = start.elapsed().as_secs();
        stats.close_old(now, |s| target_rate(&profile, model, s));
        // The two seconds before this one: most workers have handed them in.
        let (ok, errors, hist) = stats.recent(now.saturating_sub(1), 2);
        let p = Percentiles::of(&hist);
        let line = format!(
            "rate {:.0}/s{} p50 {:.1}ms p99 {:.1}ms errors {}",
            (ok + errors) as f64 / 2.0,
            match model {
                Model::Open => format!(" (target {:.0}/s)", profile.rate_at(now as f64)),
                Model::Closed { .. } => String::new(),
            },
            p.p50,
            p.p99,
            errors
        );
        match &bar {
            Some(bar) => {
                bar.set_position(now.min(total));
                bar.set_message(line);
            }
            None if now.is_multiple_of(10) => eprintln!("[{now:>5}s] {line}"),
            None => {}
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Shape;

    /// Answers after a fixed delay; every 10th request fails.
    struct Slow(Duration);

    impl Client for Slow {
        fn op(&self, _: u64) -> &'static str {
            "slow"
        }
        async fn call(&mut self, n: u64) -> Result<(), ErrorKind> {
            tokio::time::sleep(self.0).await;
            if n % 10 == 9 {
                Err("status 500".into())
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn open_model_counts_queueing_as_latency() {
        // 200 rps, but 2 workers each take 50 ms: at most 40 rps get
        // answered, so requests queue and latency grows well past 50 ms.
        let shape = Shape::Steady { rate: 200.0 };
        let profile = Arc::new(Profile::new(&shape, Duration::from_secs(1)).unwrap());
        let clients = vec![Slow(Duration::from_millis(50)), Slow(Duration::from_millis(50))];
        let out = run(
            profile,
            Model::Open,
            clients,
            CancellationToken::new(),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(out.sent, 200, "every scheduled request is sent");
        assert_eq!(out.not_sent, 0);
        assert_eq!(out.record.errors["status 500"], 20);
        assert!(
            out.record.latency.max > 4000.0,
            "queued ~4.5 s: {:?}",
            out.record.latency
        );
        assert!(out.record.latency.p50 > 1000.0);
    }

    #[tokio::test(start_paused = true)]
    async fn open_model_drops_what_falls_too_far_behind_instead_of_overrunning() {
        // 100 rps for 1 s against a target that takes 2 s per request:
        // what the two workers cannot start within 200 ms of its time is
        // dropped, so the run ends after one slow round, not 100 s.
        let profile = Arc::new(Profile::new(&Shape::Steady { rate: 100.0 }, Duration::from_secs(1)).unwrap());
        let clients = vec![Slow(Duration::from_secs(2)), Slow(Duration::from_secs(2))];
        let out = run(
            profile,
            Model::Open,
            clients,
            CancellationToken::new(),
            Duration::from_millis(200),
        )
        .await;
        assert!(out.sent < 10, "sent {}", out.sent);
        assert_eq!(
            out.sent + out.not_sent,
            100,
            "every request is sent or counted as dropped"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn closed_model_latency_is_service_time_and_stop_ends_early() {
        let profile = Arc::new(Profile::new(&Shape::Steady { rate: 1.0 }, Duration::from_secs(60)).unwrap());
        let stop = CancellationToken::new();
        let model = Model::Closed {
            think: Duration::ZERO,
        };
        let clients = vec![Slow(Duration::from_millis(20)), Slow(Duration::from_millis(20))];
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            stopper.cancel();
        });
        let out = run(profile, model, clients, stop, Duration::from_secs(10)).await;
        assert!(out.interrupted);
        assert!(out.elapsed < Duration::from_secs(2));
        assert!((30..=52).contains(&out.sent), "sent {}", out.sent);
        assert!(out.record.latency.p99 < 40.0, "{:?}", out.record.latency);
    }
}
