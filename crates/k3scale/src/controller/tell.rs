//! Notifications for what a reconcile did and what stands in its way.

use super::*;

/// What the notifications of one reconcile are made from.
pub(super) struct Told<'a> {
    pub cluster: &'a str,
    pub done: &'a Reconciled,
    /// Nodes whose drain runs in the background now.
    pub draining: &'a BTreeMap<String, RunningDrain>,
    /// Joins, failed joins, launches and held pools noted while acting.
    pub noted: Vec<Notification>,
    /// Why metrics are unavailable, since when, and when that is worth telling.
    pub metrics_error: Option<&'a str>,
    pub metrics_failing_since: Time,
    pub metrics_alert_after: Duration,
    pub now: Time,
}

/// The notifications of one reconcile (pure: what to say, not saying it).
pub(super) fn notifications(t: Told<'_>) -> Vec<Notification> {
    let now = t.now;
    let note = |kind, pool: &str, nodes: Vec<String>, message: String| Notification {
        kind,
        cluster: t.cluster.to_string(),
        pool: pool.to_string(),
        nodes,
        message,
        at: now.as_millis(),
    };
    let mut out: Vec<Notification> = t
        .noted
        .into_iter()
        .map(|n| Notification {
            cluster: t.cluster.to_string(),
            ..n
        })
        .collect();
    for down in &t.done.decision.scale_down {
        if t.draining.contains_key(&down.node) {
            let message = "draining started".to_string();
            out.push(note(
                Kind::ScaleDown,
                &down.pool,
                vec![down.node.clone()],
                message,
            ));
        }
    }
    // Removed now, or finished in the background since the last reconcile.
    for node in &t.done.removed {
        // Machine names are `<pool>-<suffix>`, the suffix without a dash.
        let pool = node.rsplit_once('-').map_or("", |(pool, _)| pool);
        let forced = t
            .done
            .decision
            .scale_down
            .iter()
            .any(|d| d.forced && d.node == *node);
        let message = if forced {
            "not Ready for scale_down.unready_time: deleted without a drain"
        } else {
            "drained and removed"
        };
        out.push(note(Kind::ScaleDown, pool, vec![node.clone()], message.into()));
    }
    // Failed launches are told once per streak, as their pool is held
    // (see `launch`); failed drains each time.
    for failure in t.done.failed.iter().filter(|f| f.action == Action::Drain) {
        out.push(note(
            Kind::Failure,
            &failure.pool,
            vec![failure.node.clone()],
            failure.to_string(),
        ));
    }
    for reason in &t.done.decision.reasons {
        if let Reason::AtMaxCapacity { pool, max, .. } = reason {
            let message = format!("at its maximum of {max} nodes; pods wait for room");
            out.push(note(Kind::AtMaxCapacity, pool, Vec::new(), message));
        }
    }
    let failing = now.since(t.metrics_failing_since);
    if let Some(cause) = t.metrics_error
        && failing >= t.metrics_alert_after
    {
        let message = format!(
            "metrics unavailable for {} min ({cause}); no utilization-based scaling until they return, scale-down goes by requests only",
            failing.as_secs() / 60
        );
        out.push(note(Kind::MetricsUnavailable, "", Vec::new(), message));
    }
    out
}

impl Controller {
    /// Notifications for what this reconcile did and what stands in the
    /// way, sent in the background so a slow receiver never delays scaling.
    pub(super) fn tell(&mut self, done: &Reconciled, now: Time) {
        let failing_since = match &self.snapshot.metrics_error {
            Some(_) => *self.metrics_down_since.get_or_insert(now),
            None => {
                self.metrics_down_since = None;
                now
            }
        };
        let noted = std::mem::take(&mut self.lifecycle_notes);
        let Some((notifier, cluster)) = self.notifier.clone() else {
            return;
        };
        if self.policy.dry_run {
            return;
        }
        let out = notifications(Told {
            cluster: &cluster,
            done,
            draining: &self.draining,
            noted,
            metrics_error: self.snapshot.metrics_error.as_deref(),
            metrics_failing_since: failing_since,
            metrics_alert_after: self.metrics_alert_after,
            now,
        });
        if out.is_empty() {
            return;
        }
        self.sending.retain(|t| !t.is_finished());
        self.sending.push(tokio::spawn(async move {
            for n in out {
                notifier.send(&n, now).await;
            }
        }));
    }

    /// Wait (at most `limit`) for notifications still being delivered, e.g.
    /// before a `once` run exits.
    pub async fn flush_notifications(&mut self, limit: Duration) {
        let pending = std::mem::take(&mut self.sending);
        let _ = tokio::time::timeout(limit, futures::future::join_all(pending)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Time = Time::from_secs(10_000);

    fn done() -> Reconciled {
        Reconciled::nothing(NOW, false)
    }

    fn told<'a>(done: &'a Reconciled, draining: &'a BTreeMap<String, RunningDrain>) -> Told<'a> {
        Told {
            cluster: "home",
            done,
            draining,
            noted: Vec::new(),
            metrics_error: None,
            metrics_failing_since: NOW,
            metrics_alert_after: Duration::from_secs(300),
            now: NOW,
        }
    }

    #[test]
    fn removed_nodes_are_told_under_their_own_pool() {
        let mut d = done();
        d.removed = vec!["web-big-k2j8x0qa".into(), "web-a1b2c3d4".into()];
        let none = BTreeMap::new();
        let out = notifications(told(&d, &none));
        let pools: Vec<(&str, &str)> = out
            .iter()
            .map(|n| (n.pool.as_str(), n.nodes[0].as_str()))
            .collect();
        assert_eq!(pools, [("web-big", "web-big-k2j8x0qa"), ("web", "web-a1b2c3d4")]);
        assert!(
            out.iter()
                .all(|n| n.cluster == "home" && n.kind == Kind::ScaleDown)
        );
    }

    #[test]
    fn a_dead_node_is_told_as_deleted_without_a_drain() {
        let mut d = done();
        d.removed = vec!["web-dead0001".into(), "web-idle0001".into()];
        d.decision.scale_down.push(k3scale_core::ScaleDown {
            node: "web-dead0001".into(),
            pool: "web".into(),
            empty: false,
            forced: true,
        });
        let none = BTreeMap::new();
        let said: Vec<String> = notifications(told(&d, &none))
            .into_iter()
            .map(|n| format!("{}: {}", n.nodes[0], n.message))
            .collect();
        assert_eq!(
            said,
            [
                "web-dead0001: not Ready for scale_down.unready_time: deleted without a drain",
                "web-idle0001: drained and removed"
            ]
        );
    }

    #[test]
    fn launch_failures_are_told_by_their_held_note_and_drain_failures_each_time() {
        let mut d = done();
        for action in [Action::Launch, Action::Drain] {
            d.failed.push(Failure {
                action,
                pool: "web".into(),
                node: format!("web-{}", action.as_str()),
                why: "boom".into(),
            });
        }
        let none = BTreeMap::new();
        let mut t = told(&d, &none);
        t.noted = vec![super::super::launch::launch_note(
            "web",
            &["web-x".into()],
            "launched: pods pending",
            NOW,
        )];
        let out = notifications(t);
        let kinds: Vec<(Kind, &str)> = out.iter().map(|n| (n.kind, n.nodes[0].as_str())).collect();
        assert_eq!(kinds, [(Kind::ScaleUp, "web-x"), (Kind::Failure, "web-drain")]);
        assert_eq!(out[0].cluster, "home", "noted notes get the cluster too");
    }

    #[test]
    fn metrics_are_told_only_once_they_have_failed_long_enough() {
        let d = done();
        let none = BTreeMap::new();
        let mut t = told(&d, &none);
        t.metrics_error = Some("prometheus: connection refused");
        t.metrics_failing_since = NOW.saturating_sub(Duration::from_secs(299));
        assert!(notifications(t).is_empty());
        let mut t = told(&d, &none);
        t.metrics_error = Some("prometheus: connection refused");
        t.metrics_failing_since = NOW.saturating_sub(Duration::from_secs(360));
        let out = notifications(t);
        assert_eq!(out.len(), 1);
        assert!(
            out[0].message.contains("unavailable for 6 min"),
            "{}",
            out[0].message
        );
    }
}
