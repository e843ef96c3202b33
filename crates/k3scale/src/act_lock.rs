//! The state store lock a k3scale process holds while it may act, so a
//! daemon and a cron `once` never act at the same time. It is held with a
//! short expiry and renewed in the background, so a crashed holder blocks
//! others for at most [`TTL`]. It is taken over at once from a holder that
//! crashed on this very host (its process is gone), and from the replica
//! whose leader Lease this one took over (on any host: that replica stopped
//! acting when its Lease ran out).

use crate::provider::unix_now;
use crate::state::{LockHolder, StateError, StateStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

pub const NAME: &str = "k3scale-act";
/// How long a lock outlives its holder's last renewal.
pub const TTL: Duration = Duration::from_secs(60);

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "k3scale".into())
}

/// Who this process is, for locks and Events: `<hostname>-<pid>`.
pub fn identity() -> String {
    format!("{}-{}", hostname(), std::process::id())
}

/// Whether `owner` names a process of this host that no longer runs.
fn crashed_here(owner: &str) -> bool {
    let Some((host, pid)) = owner.rsplit_once('-') else {
        return false;
    };
    host == hostname()
        && pid.parse::<u32>().is_ok_and(|pid| {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
}

#[derive(Debug)]
pub struct ActLock {
    store: Arc<dyn StateStore>,
    owner: String,
    held: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl ActLock {
    /// Take the lock if it is free, expired, ours, held by a crashed
    /// process of this host, or held by `previous_leader` (the replica whose
    /// expired Lease this one took over); else say who holds it.
    pub async fn acquire(
        store: Arc<dyn StateStore>,
        owner: &str,
        previous_leader: Option<&str>,
    ) -> Result<Result<ActLock, LockHolder>, StateError> {
        let now = unix_now();
        match store.lock(NAME, owner, TTL, now).await? {
            Ok(()) => {}
            Err(holder) if crashed_here(&holder.owner) || previous_leader == Some(holder.owner.as_str()) => {
                if !store.take_over(NAME, &holder.owner, owner, TTL, now).await? {
                    return Ok(Err(holder));
                }
                info!(from = %holder.owner, "took over the lock of a k3scale that stopped acting");
            }
            Err(holder) => return Ok(Err(holder)),
        }
        let held = Arc::new(AtomicBool::new(true));
        let (stop, mut stopped) = watch::channel(false);
        let renewer = {
            let (store, owner, held) = (store.clone(), owner.to_string(), held.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(TTL / 3) => {}
                        _ = stopped.wait_for(|s| *s) => return,
                    }
                    match store.lock(NAME, &owner, TTL, unix_now()).await {
                        Ok(Ok(())) => held.store(true, Ordering::SeqCst),
                        Ok(Err(holder)) => {
                            warn!(holder = %holder.owner, "lost the lock");
                            held.store(false, Ordering::SeqCst);
                            return;
                        }
                        // Keep trying; the lock is ours until its expiry.
                        Err(e) => warn!(error = %e, "could not renew the lock"),
                    }
                }
            })
        };
        Ok(Ok(ActLock {
            store,
            owner: owner.to_string(),
            held,
            stop,
            renewer,
        }))
    }

    /// Still ours (renewals succeed).
    pub fn held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    pub async fn release(self) {
        let _ = self.stop.send(true);
        let _ = self.renewer.await;
        if let Err(e) = self.store.unlock(NAME, &self.owner).await {
            warn!(error = %e, "could not release the lock");
        }
    }
}
