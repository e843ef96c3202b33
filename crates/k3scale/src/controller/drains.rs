//! Scale-down: drains, inline or in the background, journaled as they go.

use super::*;

/// Why a drain did not reach an outcome (it stays journaled and resumes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrainError {
    #[error(transparent)]
    Stuck(#[from] crate::drain::DrainStuck),
    #[error("pool {0} is no longer configured")]
    PoolGone(String),
    #[error("drain task failed: {0}")]
    Task(String),
}

impl Controller {
    /// Carry out a drain: inline (awaited here), or in the background and
    /// finished by a later reconcile, in which case this returns `None`.
    pub(super) async fn drain(
        &mut self,
        pool: &str,
        drain: Drain,
        journal_id: u64,
    ) -> Option<Result<DrainOutcome, DrainError>> {
        let Some(machines) = self.pools.get(pool) else {
            return Some(Err(DrainError::PoolGone(pool.to_string())));
        };
        let node = drain.node.clone();
        let work = drive_drain(
            self.kube.clone(),
            machines.provider(),
            self.store.clone(),
            self.drain_poll,
            drain,
            journal_id,
        );
        if !self.background_drains {
            return Some(work.await);
        }
        let task = tokio::spawn(work);
        self.draining.insert(
            node,
            RunningDrain {
                journal_id,
                pool: pool.to_string(),
                task,
            },
        );
        None
    }

    /// Nodes being drained in the background now.
    pub fn draining(&self) -> Vec<String> {
        self.draining.keys().cloned().collect()
    }

    /// Stop the background drains (shutdown, or no longer the leader): their
    /// journal entries stay open, so whoever acts next resumes them.
    pub fn stop_drains(&mut self) {
        for (node, d) in std::mem::take(&mut self.draining) {
            info!(node, "drain interrupted; it stays journaled");
            d.task.abort();
        }
        // Launches too: journaled, so the next run adopts what was created.
        for l in std::mem::take(&mut self.launching) {
            info!(pool = %l.pool, nodes = ?l.names, "launch interrupted; it stays journaled");
            l.task.abort();
        }
    }

    /// Record the drains that finished in the background since last time.
    pub(super) async fn collect_drains(
        &mut self,
        now: Time,
        done: &mut Reconciled,
    ) -> Result<(), ControllerError> {
        let finished: Vec<String> = self
            .draining
            .iter()
            .filter(|(_, d)| d.task.is_finished())
            .map(|(node, _)| node.clone())
            .collect();
        for node in finished {
            let Some(d) = self.draining.remove(&node) else {
                continue;
            };
            let outcome = d
                .task
                .await
                .unwrap_or_else(|e| Err(DrainError::Task(e.to_string())));
            self.finish_drain(d.journal_id, &d.pool, &node, outcome, now, done)
                .await?;
        }
        Ok(())
    }

    pub(super) async fn finish_drain(
        &mut self,
        id: u64,
        pool: &str,
        node: &str,
        outcome: Result<DrainOutcome, DrainError>,
        now: Time,
        done: &mut Reconciled,
    ) -> Result<(), ControllerError> {
        let (summary, kind) = match &outcome {
            Ok(DrainOutcome::Removed) => {
                done.removed.push(node.to_string());
                ("removed".to_string(), "scale-down")
            }
            Ok(DrainOutcome::GaveUp { why }) => {
                done.failed.push(Failure {
                    action: Action::Drain,
                    pool: pool.to_string(),
                    node: node.to_string(),
                    why: why.to_string(),
                });
                (format!("gave up: {why}"), "failure")
            }
            // Left open: the next reconcile resumes it from the journal.
            Err(e) => {
                done.failed.push(Failure {
                    action: Action::Drain,
                    pool: pool.to_string(),
                    node: node.to_string(),
                    why: e.to_string(),
                });
                return Ok(());
            }
        };
        self.store.close(id, &summary, now).await?;
        if let Some(p) = self.pools.get_mut(pool)
            && matches!(outcome, Ok(DrainOutcome::Removed))
        {
            p.lifecycle.machines.remove(node);
        }
        self.store
            .push_event(&ScaleEvent {
                at: now,
                kind: kind.into(),
                pool: pool.to_string(),
                nodes: vec![node.to_string()],
                message: summary,
            })
            .await?;
        Ok(())
    }
}

/// Drive a drain to its outcome, journaling each state as it goes.
pub(super) async fn drive_drain(
    kube: Arc<KubeCluster>,
    provider: Arc<dyn crate::provider::NodeProvider>,
    store: Arc<dyn StateStore>,
    poll: Duration,
    mut drain: Drain,
    journal_id: u64,
) -> Result<DrainOutcome, DrainError> {
    let executor = DrainExecutor {
        poll,
        ..DrainExecutor::new(&kube, provider.as_ref())
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let writer = tokio::spawn(async move {
        while let Some(detail) = rx.recv().await {
            if let Err(e) = store.update(journal_id, &detail).await {
                warn!(error = %e, "could not journal the drain's progress");
            }
        }
    });
    let mut journal = move |d: &Drain| {
        let _ = tx.send(serde_json::to_value(d).unwrap_or_default());
    };
    let result = executor
        .run(&mut drain, &mut journal)
        .await
        .map_err(DrainError::Stuck);
    drop(journal);
    let _ = writer.await;
    result
}
