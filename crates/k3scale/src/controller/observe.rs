//! Observing: the pools' machines against the cluster's Nodes, notices
//! of reclaimed machines, and recovery of what an earlier run left open.

use super::*;

impl Controller {
    /// Notices waiting at the source, mapped to the pools' machines by
    /// instance id into `snapshot.interrupted`.
    pub(super) async fn receive_interruptions(&mut self) -> Vec<crate::interruptions::Notice> {
        self.snapshot.interrupted.clear();
        let Some(source) = &self.interruptions else {
            return Vec::new();
        };
        let notices = match source.receive().await {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "cannot read interruption notices");
                return Vec::new();
            }
        };
        let wanted: Vec<&crate::interruptions::Notice> =
            notices.iter().filter(|n| !n.notice.is_empty()).collect();
        if wanted.is_empty() {
            return notices;
        }
        for (name, pool) in &self.pools {
            match pool.provider().list().await {
                Ok(machines) => {
                    for m in machines {
                        if let Some(n) = wanted
                            .iter()
                            .find(|n| crate::interruptions::is_instance(&m.provider_id, &n.instance_id))
                        {
                            info!(node = %m.name, pool = %name, notice = %n.notice, "machine about to be reclaimed");
                            self.snapshot
                                .interrupted
                                .push(k3scale_core::snapshot::Interruption {
                                    node: m.name.clone(),
                                    notice: n.notice.clone(),
                                });
                        }
                    }
                }
                Err(e) => {
                    warn!(pool = %name, error = %e, "cannot list machines to match interruption notices")
                }
            }
        }
        notices
    }

    /// Finish what a killed run left in the journal.
    pub(super) async fn recover(&mut self, now: Time, done: &mut Reconciled) -> Result<(), ControllerError> {
        for entry in self.store.unfinished().await? {
            // Running in the background here: not interrupted, nothing to recover.
            if self.launching.iter().any(|l| l.journal_ids.contains(&entry.id)) {
                continue;
            }
            let Some(pool) = self.pools.get_mut(&entry.intent.pool) else {
                self.store
                    .close(entry.id, "pool no longer configured", now)
                    .await?;
                continue;
            };
            let node = entry.intent.node.clone();
            match entry.intent.kind {
                IntentKind::Launch => {
                    // The name is unique: if the machine exists it is adopted,
                    // if not, the launch never happened. Never launched twice.
                    let exists = pool
                        .provider()
                        .list()
                        .await
                        .map(|ms| ms.iter().any(|m| m.name == node));
                    match exists {
                        Ok(true) => {
                            pool.lifecycle
                                .launched(&entry.intent.pool, &node, entry.opened_at);
                            self.store.close(entry.id, "adopted after restart", now).await?;
                        }
                        // Killed before the provider call: not a failed join, no backoff.
                        Ok(false) => {
                            pool.lifecycle.machines.remove(&node);
                            self.store.close(entry.id, "never launched", now).await?;
                        }
                        // Try again next time.
                        Err(e) => warn!(node, error = %e, "cannot list machines to recover a launch"),
                    }
                }
                // Running in the background here: not interrupted, nothing to recover.
                IntentKind::Drain if self.draining.values().any(|d| d.journal_id == entry.id) => continue,
                IntentKind::Drain => {
                    let drain: Drain = serde_json::from_value(entry.intent.detail.clone()).map_err(|e| {
                        ControllerError::Corrupt {
                            key: format!("journal entry {}", entry.id),
                            cause: e.to_string(),
                        }
                    })?;
                    info!(node, "resuming a drain after restart");
                    if let Some(outcome) = self.drain(&entry.intent.pool, drain, entry.id).await {
                        self.finish_drain(entry.id, &entry.intent.pool, &node, outcome, now, done)
                            .await?;
                    }
                }
                IntentKind::Unknown => {
                    self.store
                        .close(entry.id, "unknown intent (another version of k3scale?)", now)
                        .await?;
                }
            }
            done.recovered.push(format!("{} {node}", entry.intent.kind));
        }
        Ok(())
    }

    pub(super) async fn observe(&mut self, now: Time) {
        let mut snapshot = std::mem::take(&mut self.snapshot);
        self.fill_cluster_view(&mut snapshot);
        self.snapshot = snapshot;
        if let Some(metrics) = &self.metrics {
            let reading = metrics.read().await;
            self.snapshot.record(now, &reading, history_needed(&self.policy));
        }
        let observed: Vec<ObservedNode> = self.snapshot.nodes.iter().map(ObservedNode::from).collect();
        let dry_run = self.policy.dry_run;
        let mut outcomes = Vec::new();
        for (name, pool) in &mut self.pools {
            let launching: Vec<String> = pool.lifecycle.in_flight().into_iter().map(|f| f.name).collect();
            let actions = pool
                .reconcile(&observed, now, !dry_run)
                .await
                .unwrap_or_else(|e| {
                    warn!(pool = %name, error = %e, "cannot list the pool's machines");
                    Vec::new()
                });
            // A scale-up completes when its machines' Nodes are Ready.
            let joined: Vec<String> = launching
                .into_iter()
                .filter(|m| {
                    let state = pool.lifecycle.machines.get(m);
                    state.is_some_and(|s| s.phase == Phase::Ready)
                })
                .collect();
            outcomes.push((name.clone(), actions, joined));
        }
        for (pool, actions, joined) in outcomes {
            self.carry_out(&pool, actions, dry_run, now).await;
            if !joined.is_empty() {
                self.lifecycle_notes.push(Notification {
                    kind: Kind::ScaleUp,
                    cluster: String::new(),
                    pool,
                    nodes: joined,
                    message: "joined the cluster: Ready".into(),
                    at: now.as_millis(),
                });
            }
        }
        self.refresh_pools_view(now);
    }

    /// What a pool's lifecycle asks of the cluster and the notifier.
    async fn carry_out(&mut self, pool: &str, actions: Vec<LifecycleAction>, dry_run: bool, now: Time) {
        for action in actions {
            match action {
                LifecycleAction::DeleteNode { .. } if dry_run => {}
                LifecycleAction::DeleteNode { name: node } => {
                    if let Err(e) = self.kube.delete_node(&node).await {
                        warn!(node, error = %e, "could not delete the Node of a vanished machine");
                    }
                    let _ = self.kube.delete_node_password(&node).await;
                }
                LifecycleAction::JoinFailure {
                    machine,
                    failures,
                    until,
                    ..
                } => {
                    warn!(
                        pool,
                        machine,
                        failures,
                        until = until.as_millis(),
                        "node join failed, pool backs off"
                    );
                    let wait = until.since(now).as_secs();
                    self.lifecycle_notes.push(Notification {
                        kind: Kind::JoinFailed,
                        cluster: String::new(),
                        pool: pool.to_string(),
                        nodes: vec![machine],
                        message: format!(
                            "machine did not become a Ready node in time and was deleted ({failures} in a row); no launches in this pool for {wait}s"
                        ),
                        at: now.as_millis(),
                    });
                }
                LifecycleAction::DeleteMachine { .. } | LifecycleAction::LaunchHeld { .. } => {}
            }
        }
    }
}
