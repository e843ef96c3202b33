//! Scale-up: launching machines (inline, or in the background in the
//! daemon), collecting their outcomes, and re-planning when a pool fails.

use super::*;

impl Controller {
    /// Launch what the decision asks for. A pool whose launches fail is held
    /// as the provider's error says (see `HoldCause`), and the pods are
    /// re-planned at once onto the next pool the expander ranks, as
    /// Karpenter does when a launch meets insufficient capacity.
    pub(super) async fn scale_up(
        &mut self,
        decision: &Decision,
        now: Time,
        stamps: &mut Stamps,
        done: &mut Reconciled,
    ) -> Result<(), ControllerError> {
        let mut plan = decision.scale_up.clone();
        let mut tried = std::collections::BTreeSet::new();
        while !plan.is_empty() {
            let mut failed = false;
            for up in &plan {
                tried.insert(up.pool.clone());
                let before = stamps.last_scale_up;
                let (launched, failures) = self
                    .launch(&up.pool, up.count, decision, before, now, done)
                    .await?;
                // Only a launch that happened starts the cooldown.
                if launched > 0 {
                    stamps.last_scale_up = Some(now);
                }
                failed |= failures > 0;
            }
            if !failed {
                break;
            }
            self.refresh_pools_view(now);
            let again = decide(&self.snapshot, &self.policy, now);
            plan = again
                .scale_up
                .iter()
                .filter(|u| !tried.contains(&u.pool))
                .cloned()
                .collect();
            for reason in again.reasons {
                if !done.decision.reasons.contains(&reason) {
                    done.decision.reasons.push(reason);
                }
            }
            done.decision.scale_up.extend(plan.iter().cloned());
        }
        Ok(())
    }

    /// Launch `count` machines of `pool`, journaled; returns how many were
    /// launched (or started, in the background) and how many failed.
    /// `stamp_before` is the cooldown stamp a background batch that
    /// launches nothing gives back.
    pub(super) async fn launch(
        &mut self,
        pool_name: &str,
        count: u32,
        decision: &Decision,
        stamp_before: Option<Time>,
        now: Time,
        done: &mut Reconciled,
    ) -> Result<(usize, usize), ControllerError> {
        let Some(pool) = self.pools.get_mut(pool_name) else {
            return Ok((0, 0));
        };
        let names: Vec<String> = (0..count)
            .map(|_| machine_name(pool_name, (self.random)()))
            .collect();
        let mut ids = Vec::new();
        for name in &names {
            let intent = Intent {
                kind: IntentKind::Launch,
                pool: pool_name.to_string(),
                node: name.clone(),
                detail: serde_json::Value::Null,
            };
            ids.push(self.store.open(&intent, now).await?);
        }
        crate::faults::crash_point("launch:intent-written");
        let reasons = decision
            .reasons
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if self.background_drains {
            let work = pool.begin_launch(&names, now);
            let wake = self.wake.clone();
            let task = tokio::spawn(async move {
                let results = work.await;
                wake.notify_one();
                results
            });
            self.launching.push(RunningLaunch {
                pool: pool_name.to_string(),
                names: names.clone(),
                journal_ids: ids,
                reasons,
                started: now,
                stamp_before,
                task,
            });
            // Started: counted as launched until its outcome is collected.
            return Ok((names.len(), 0));
        }
        let launched = pool.launch_named(&names, now).await;
        crate::faults::crash_point("launch:created");
        self.record_launch(pool_name, &names, &ids, launched, &reasons, now, done)
            .await
    }

    /// The outcome of a launch: journal entries closed, nodes launched or
    /// failed, what to tell, the scale-up event. Returns (launched, failed).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn record_launch(
        &mut self,
        pool_name: &str,
        names: &[String],
        ids: &[u64],
        launched: crate::machines::Launched,
        reasons: &str,
        now: Time,
        done: &mut Reconciled,
    ) -> Result<(usize, usize), ControllerError> {
        let mut ok = Vec::new();
        for (name, id) in names.iter().zip(ids) {
            let failure = launched.failures.iter().find(|(n, _)| n == name);
            let outcome = failure.map_or("launched".to_string(), |(_, e)| format!("failed: {e}"));
            self.store.close(*id, &outcome, now).await?;
            match failure {
                None => ok.push(name.clone()),
                Some((_, e)) => done.failed.push(Failure {
                    action: Action::Launch,
                    pool: pool_name.to_string(),
                    node: name.clone(),
                    why: e.to_string(),
                }),
            }
        }
        if !ok.is_empty() {
            self.lifecycle_notes
                .push(launch_note(pool_name, &ok, &format!("launched: {reasons}"), now));
        }
        for report in &launched.reports {
            if let LifecycleAction::LaunchHeld {
                pool,
                machine,
                cause,
                until,
                ..
            } = report
            {
                let why = launched
                    .failures
                    .iter()
                    .find(|(n, _)| n == machine)
                    .map(|(_, e)| e.to_string())
                    .unwrap_or_default();
                let note = held_note(pool, machine, *cause, *until, &why, now);
                self.lifecycle_notes.push(note);
            }
        }
        done.launched.extend(ok.iter().map(|node| Launched {
            pool: pool_name.to_string(),
            node: node.clone(),
        }));
        self.store
            .push_event(&ScaleEvent {
                at: now,
                kind: "scale-up".into(),
                pool: pool_name.to_string(),
                nodes: names.to_vec(),
                message: reasons.to_string(),
            })
            .await?;
        Ok((ok.len(), launched.failures.len()))
    }

    /// Record the launches that finished in the background since last time.
    pub(super) async fn collect_launches(
        &mut self,
        now: Time,
        stamps: &mut Stamps,
        done: &mut Reconciled,
    ) -> Result<(), ControllerError> {
        let (finished, running): (Vec<RunningLaunch>, Vec<RunningLaunch>) =
            std::mem::take(&mut self.launching)
                .into_iter()
                .partition(|l| l.task.is_finished());
        self.launching = running;
        for l in finished {
            let results = l.task.await.unwrap_or_else(|e| {
                let why = format!("launch task failed: {e}");
                l.names
                    .iter()
                    .map(|_| Err(crate::provider::ProviderError::Transient(why.clone())))
                    .collect()
            });
            let Some(pool) = self.pools.get_mut(&l.pool) else {
                continue;
            };
            let launched = pool.finish_launch(&l.names, results, now);
            let (ok, _) = self
                .record_launch(&l.pool, &l.names, &l.journal_ids, launched, &l.reasons, now, done)
                .await?;
            // Nothing launched: the cooldown it started is given back.
            if ok == 0 && stamps.last_scale_up == Some(l.started) {
                stamps.last_scale_up = l.stamp_before;
            }
        }
        Ok(())
    }

    /// Signalled when background work (a launch) ends: worth a reconcile.
    pub fn wake(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    /// Launches whose `create` calls are still running in the background.
    pub fn launching(&self) -> usize {
        self.launching.iter().filter(|l| !l.task.is_finished()).count()
    }

    /// The pools' machines in flight and holds, into the snapshot.
    pub(super) fn refresh_pools_view(&mut self, now: Time) {
        self.snapshot.in_flight = self
            .pools
            .values()
            .flat_map(|p| p.lifecycle.in_flight())
            .collect();
        self.snapshot.backoff = self
            .pools
            .values()
            .flat_map(|p| p.lifecycle.backed_off(now))
            .collect();
    }
}

/// "Launched" for one pool's new machines: named by the pool they were
/// launched in, never guessed from their names (`web` and `web-big`).
pub(super) fn launch_note(pool: &str, nodes: &[String], message: &str, now: Time) -> Notification {
    Notification {
        kind: Kind::ScaleUp,
        cluster: String::new(),
        pool: pool.to_string(),
        nodes: nodes.to_vec(),
        message: message.to_string(),
        at: now.as_millis(),
    }
}

/// What a held pool means, in one notification.
pub(super) fn held_note(
    pool: &str,
    machine: &str,
    cause: k3scale_core::lifecycle::HoldCause,
    until: Time,
    why: &str,
    now: Time,
) -> Notification {
    use k3scale_core::lifecycle::HoldCause;
    let wait = until.since(now).as_secs();
    let then = match cause {
        HoldCause::NoCapacity => format!("no capacity: the pool waits {wait}s, its pods go to the next pool"),
        HoldCause::Retry => {
            format!("the provider failed for now: retried in {wait}s, other pools take the pods meanwhile")
        }
        HoldCause::Failed => format!(
            "the pool has failed and launches nothing until its configuration changes or `k3scale pool reset {pool}`"
        ),
        HoldCause::JoinFailures => format!("the pool waits {wait}s"),
    };
    Notification {
        kind: Kind::Failure,
        cluster: String::new(),
        pool: pool.to_string(),
        nodes: vec![machine.to_string()],
        message: format!("launch {machine} (pool {pool}): {why}; {then}"),
        at: now.as_millis(),
    }
}
