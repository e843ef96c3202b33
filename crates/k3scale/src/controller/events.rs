//! Saying what was decided: the log, and Kubernetes Events.

use super::*;

impl Controller {
    /// A decision is logged at INFO when it acts or its reasons changed
    /// (their numbers aside: "cpu 41%" then "cpu 42%" is the same decision);
    /// a standing one, repeated every few seconds, only at DEBUG.
    pub(super) fn log_decision(&mut self, decision: &Decision) {
        let shape: Vec<String> = decision
            .reasons
            .iter()
            .map(|r| {
                r.to_string()
                    .replace(|c: char| c.is_ascii_digit() || c == '.', "")
            })
            .collect();
        let changed = shape != self.last_decision_shape;
        self.last_decision_shape = shape;
        for reason in &decision.reasons {
            if changed || !decision.is_noop() {
                info!(%reason, "decision");
            } else {
                tracing::debug!(%reason, "decision (unchanged)");
            }
        }
    }

    /// Kubernetes Events for what was decided: on the nodes (removed, or
    /// kept and why, deduplicated across reconciles and leaders through the
    /// state store) and on the pods a launch is for (in the background).
    pub(super) async fn record_events(
        &mut self,
        decision: &Decision,
        now: Time,
    ) -> Result<(), ControllerError> {
        let (raw, version) = self.load(EVENTS_KEY).await?;
        let sent: NodeEvents = parse(EVENTS_KEY, raw)?;
        let mut events = sent.with_repeat_after(self.events_repeat_after);
        let due = events.plan(decision, now);
        for e in &due {
            if let Err(err) = self
                .kube
                .node_event(&e.node, e.kind, e.reason, e.action, &e.note)
                .await
            {
                warn!(node = %e.node, error = %err, "could not record the event");
            }
        }
        if !due.is_empty() || version == 0 {
            self.save(EVENTS_KEY, to_json(EVENTS_KEY, &events)?, version)
                .await?;
        }
        let mut pod_events = Vec::new();
        for up in &decision.scale_up {
            let max = self.policy.pool(&up.pool).map_or(0, |p| p.max);
            pod_events.extend(crate::kube::events::triggered_scale_up(
                decision, &up.pool, up.count, max,
            ));
        }
        if !pod_events.is_empty() {
            let kube = self.kube.clone();
            self.sending.retain(|t| !t.is_finished());
            self.sending.push(tokio::spawn(async move {
                for e in pod_events {
                    if let Err(err) = kube.pod_event(&e).await {
                        warn!(pod = %e.pod, error = %err, "could not record the event");
                    }
                }
            }));
        }
        Ok(())
    }
}
