//! `k3scale run`: the controller as a daemon. It reconciles on every watch
//! event that matters (a pod becomes unschedulable, a node changes) and at
//! least every `policy.interval`. Only the Lease holder acts, and only with
//! the state store's lock (so a cron `once` cannot act beside it); the
//! others serve read-only status. On shutdown the current reconcile
//! finishes (or stays journaled), then the Lease and lock are released.

use crate::act_lock::ActLock;
use crate::controller::Controller;
use crate::kube::lease::LeaseLock;
use crate::provider::unix_now;
use crate::server::Shared;
use crate::state::StateStore;
use crate::status::Status;
use k3scale_core::lease::Elector;
use k3scale_core::{Decision, Snapshot};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Debug)]
pub struct Daemon {
    pub controller: Controller,
    pub shared: Arc<Shared>,
    pub store: Arc<dyn StateStore>,
    pub identity: String,
    pub interval: Duration,
    /// `None`: no election (a single replica outside the cluster).
    pub lease: Option<LeaseLock>,
}

/// What the election task publishes: the elector after its latest round,
/// and why that round failed, if it did.
#[derive(Debug, Clone)]
struct LeaseView {
    elector: Elector,
    error: Option<String>,
}

/// Keep the Lease: a round every retry period, each publishing the elector
/// (whose `is_leader(now)` ends at the renew deadline).
async fn elect(
    mut lease: LeaseLock,
    tx: watch::Sender<LeaseView>,
    mut stop: watch::Receiver<bool>,
) -> LeaseLock {
    let retry = lease.elector.config.retry_period;
    let mut last_error: Option<String> = None;
    loop {
        let now = unix_now();
        let error = lease.round(now).await.err().map(|e| e.to_string());
        // Said once when it starts failing, and once when it recovers.
        match (&error, &last_error) {
            (Some(e), None) => warn!(error = %e, "lease round failed: not taking part in leader election"),
            (None, Some(_)) => info!("lease rounds succeed again"),
            _ => {}
        }
        last_error.clone_from(&error);
        // Always the latest view; wake the daemon only when leadership flips
        // or what a status shows of it (the holder, the error) changes.
        let latest = LeaseView {
            elector: lease.elector.clone(),
            error,
        };
        tx.send_if_modified(|v| {
            let changed = v.elector.is_leader(now) != latest.elector.is_leader(now)
                || v.elector.holder() != latest.elector.holder()
                || v.error != latest.error;
            *v = latest;
            changed
        });
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = stop.wait_for(|s| *s) => return lease,
        }
    }
}

impl Daemon {
    /// Run in the background until the returned sender is used (or dropped).
    pub fn spawn(self) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async {
            let _ = stopped.await;
        }));
        (stop, task)
    }

    /// Run until `shutdown` completes.
    pub fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(self.run_inner(shutdown))
    }

    async fn run_inner(mut self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let cluster = self.controller.cluster();
        let mut changes = cluster.changes();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (task, mut leader_rx) = match self.lease.take() {
            Some(lease) => {
                let (tx, rx) = watch::channel(LeaseView {
                    elector: lease.elector.clone(),
                    error: None,
                });
                (Some(tokio::spawn(elect(lease, tx, stop_rx))), Some(rx))
            }
            None => (None, None),
        };
        // A long drain or a hanging create must not hold up the next reconcile.
        self.controller = self.controller.with_background(true);
        let wake = self.controller.wake();
        let mut act_lock: Option<ActLock> = None;
        let mut waiting_for_caches = false;
        tokio::pin!(shutdown);
        // After a failed reconcile (or a lock the store could not give),
        // try again soon rather than at the next tick, doubling up to it.
        let mut retry = Retry::new(self.interval);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
                _ = retry.due() => {}
                // Background work ended (a launch): act on its outcome now.
                _ = wake.notified() => {}
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                // Just became leader (or stopped being): act now.
                _ = async {
                    match &mut leader_rx {
                        Some(rx) => rx.changed().await.ok(),
                        None => std::future::pending().await,
                    }
                } => {}
            }
            let now = unix_now();
            let view = leader_rx.as_ref().map(|rx| rx.borrow().clone());
            let leader = view.as_ref().is_none_or(|v| v.elector.is_leader(now));
            if !leader && let Some(lock) = act_lock.take() {
                // A new leader (or a cron `once`) may need it now.
                self.controller.stop_drains();
                lock.release().await;
            }
            if leader && !act_lock.as_ref().is_some_and(ActLock::held) {
                let previous = view
                    .as_ref()
                    .and_then(|v| v.elector.took_over_from().map(str::to_string));
                act_lock = self.take_lock(previous.as_deref()).await;
                if act_lock.is_none() {
                    retry.failed();
                }
            }
            let acting = leader && act_lock.as_ref().is_some_and(ActLock::held);
            self.shared.telemetry.set_leader(acting);
            if !acting {
                self.serve_standby(now, view.as_ref());
                continue;
            }
            // Never decide on caches a failing watch left behind; the re-list
            // that ends the outage triggers the next reconcile.
            let stale = cluster.stale();
            if !stale.is_empty() {
                if !waiting_for_caches {
                    warn!(caches = ?stale, "caches stale: not acting until they list again");
                }
                waiting_for_caches = true;
                self.shared.set_status(Status {
                    last_error: Some(format!("caches stale ({}): not acting", stale.join(", "))),
                    ..self.shared.status()
                });
                continue;
            }
            waiting_for_caches = false;
            if self.reconcile(now, view.as_ref()).await {
                retry.succeeded();
            } else {
                retry.failed();
            }
        }
        info!("shutting down");
        self.controller.stop_drains();
        let _ = stop_tx.send(true);
        if let Some(task) = task
            && let Ok(mut lease) = task.await
            && let Err(e) = lease.release(unix_now()).await
        {
            warn!(error = %e, "could not release the lease");
        }
        if let Some(lock) = act_lock {
            lock.release().await;
        }
    }

    /// A standby's status: its own view of the cluster (nodes, pools, pods
    /// from its caches) and who the leader is, so any replica behind the
    /// Service answers alike. It decides nothing.
    fn serve_standby(&self, now: k3scale_core::Time, view: Option<&LeaseView>) {
        let policy = self.controller.policy();
        let mut snapshot = Snapshot::default();
        self.controller.fill_cluster_view(&mut snapshot);
        let holder = view.and_then(|v| v.elector.holder()).map(str::to_string);
        let mut status = Status::build(&snapshot, &Decision::new(now, policy.dry_run), policy, now);
        status.identity = self.identity.clone();
        status.leader = false;
        status.reasons = vec![match &holder {
            Some(h) if *h != self.identity => format!("standby: {h} holds the lease and acts"),
            _ => "standby: waiting for the lease or the act lock".to_string(),
        }];
        status.lease_holder = holder;
        status.lease_error = view.and_then(|v| v.error.clone());
        status.last_reconcile = None;
        self.shared.publish(status, now);
    }

    async fn take_lock(&self, previous_leader: Option<&str>) -> Option<ActLock> {
        match ActLock::acquire(self.store.clone(), &self.identity, previous_leader).await {
            Ok(Ok(lock)) => Some(lock),
            Ok(Err(holder)) => {
                info!(holder = %holder.owner, "another k3scale holds the lock; not acting");
                None
            }
            Err(e) => {
                warn!(error = %e, "state store unavailable; not acting");
                None
            }
        }
    }

    /// One reconcile, its status and telemetry; whether it succeeded.
    async fn reconcile(&mut self, now: k3scale_core::Time, view: Option<&LeaseView>) -> bool {
        let started = Instant::now();
        let result = self.controller.reconcile(now).await;
        let ok = result.is_ok();
        let took = started.elapsed();
        let telemetry = &self.shared.telemetry;
        let status = match result {
            Ok(done) => {
                let snapshot = self.controller.snapshot();
                telemetry.reconciled(&done, snapshot, self.controller.policy(), took, now);
                Status::build(snapshot, &done.decision, self.controller.policy(), now)
            }
            Err(e) => {
                warn!(error = %e, "reconcile failed");
                telemetry.reconcile_failed(took);
                Status {
                    last_error: Some(e.to_string()),
                    ..self.shared.status()
                }
            }
        };
        self.shared.publish(
            Status {
                identity: self.identity.clone(),
                leader: true,
                lease_holder: view.map_or(Some(self.identity.clone()), |v| {
                    v.elector.holder().map(str::to_string)
                }),
                lease_error: view.and_then(|v| v.error.clone()),
                draining: self.controller.draining(),
                ..status
            },
            now,
        );
        // 30,000 pods need not stay in memory until the next reconcile.
        self.controller.forget_cluster_view();
        ok
    }
}

/// When to try again after a failure: 1 s, doubling up to the interval.
#[derive(Debug)]
struct Retry {
    max: Duration,
    delay: Option<Duration>,
    at: Option<tokio::time::Instant>,
}

impl Retry {
    fn new(max: Duration) -> Self {
        Retry {
            max,
            delay: None,
            at: None,
        }
    }

    fn failed(&mut self) {
        let delay = self
            .delay
            .map_or(Duration::from_secs(1), |d| d.saturating_mul(2))
            .min(self.max);
        self.delay = Some(delay);
        self.at = Some(tokio::time::Instant::now() + delay);
    }

    fn succeeded(&mut self) {
        self.delay = None;
        self.at = None;
    }

    /// Resolves when a retry is due (never while none is).
    async fn due(&mut self) {
        match self.at {
            Some(at) => {
                tokio::time::sleep_until(at).await;
                self.at = None;
            }
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_one_second_up_to_the_interval_and_reset_on_success() {
        let mut retry = Retry::new(Duration::from_secs(5));
        let delays: Vec<_> = (0..4)
            .map(|_| {
                retry.failed();
                retry.delay.unwrap().as_secs()
            })
            .collect();
        assert_eq!(delays, [1, 2, 4, 5]);
        assert!(retry.at.is_some());
        retry.succeeded();
        assert!(retry.at.is_none());
        retry.failed();
        assert_eq!(retry.delay, Some(Duration::from_secs(1)));
    }
}
