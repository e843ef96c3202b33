//! Which Kubernetes Events a decision produces: on nodes, every node chosen
//! for removal and every node that stays with the reason why; on pods,
//! `TriggeredScaleUp` for the pending pods a launch is for. A reconcile
//! runs every few seconds, so an unchanged refusal (same node, same kind of
//! blocker, whatever its numbers) is repeated only after `repeat_after`, as
//! kubectl users expect of a controller's events. What was sent lives in the
//! state store, so a new leader does not say it all again.

use super::cluster::EventType;
use k3scale_core::{Decision, Reason, Time};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    pub node: String,
    pub kind: EventType,
    /// `ScaleDown` or `ScaleDownBlocked`.
    pub reason: &'static str,
    /// `Drain` or `Delete`.
    pub action: &'static str,
    pub note: String,
}

/// A pending pod's `TriggeredScaleUp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub note: String,
}

/// The pods behind this decision's launches in `pool` (launched `count`, max `max`).
pub fn triggered_scale_up(decision: &Decision, pool: &str, count: u32, max: u32) -> Vec<PodEvent> {
    decision
        .triggering_pods
        .iter()
        .filter(|p| p.pool == pool)
        .map(|p| PodEvent {
            namespace: p.namespace.clone(),
            pod: p.name.clone(),
            uid: p.uid.clone(),
            note: format!("pod triggered scale-up: pool {pool} +{count} nodes (max {max})"),
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeEvents {
    #[serde(skip, default = "default_repeat_after")]
    repeat_after: Duration,
    /// `node` + what the event is about → when it was last emitted.
    sent: BTreeMap<String, Time>,
}

fn default_repeat_after() -> Duration {
    Duration::from_secs(600)
}

impl Default for NodeEvents {
    fn default() -> Self {
        NodeEvents::new(default_repeat_after())
    }
}

impl NodeEvents {
    pub fn new(repeat_after: Duration) -> Self {
        NodeEvents {
            repeat_after,
            sent: BTreeMap::new(),
        }
    }

    /// The same record with another repeat interval (the interval is a
    /// setting, not stored).
    pub fn with_repeat_after(mut self, repeat_after: Duration) -> Self {
        self.repeat_after = repeat_after;
        self
    }

    /// The events `decision` calls for that were not emitted within `repeat_after`.
    pub fn plan(&mut self, decision: &Decision, now: Time) -> Vec<NodeEvent> {
        let mut due = Vec::new();
        for reason in &decision.reasons {
            let (event, about) = match reason {
                Reason::Removable { node, empty, .. }
                    if decision.scale_down.iter().any(|d| d.node == *node) =>
                {
                    let event = NodeEvent {
                        node: node.clone(),
                        kind: EventType::Normal,
                        reason: "ScaleDown",
                        action: if *empty { "Delete" } else { "Drain" },
                        note: format!("{reason}; {}", decision_summary(decision)),
                    };
                    (event, "scale-down".to_string())
                }
                // A node that died: a Warning, as the node controller's own.
                Reason::Unready { node, .. }
                    if decision.scale_down.iter().any(|d| d.node == *node && d.forced) =>
                {
                    let event = NodeEvent {
                        node: node.clone(),
                        kind: EventType::Warning,
                        reason: "ScaleDown",
                        action: "Delete",
                        note: reason.to_string(),
                    };
                    (event, "unready".to_string())
                }
                Reason::NotRemovable { node, blocker } => {
                    let event = NodeEvent {
                        node: node.clone(),
                        kind: EventType::Normal,
                        reason: "ScaleDownBlocked",
                        action: "Drain",
                        note: reason.to_string(),
                    };
                    (event, blocker.key())
                }
                _ => continue,
            };
            let key = format!("{} {about}", event.node);
            let recent = self
                .sent
                .get(&key)
                .is_some_and(|at| now.since(*at) < self.repeat_after);
            if !recent {
                self.sent.insert(key, now);
                due.push(event);
            }
        }
        // Forget what could be sent again anyway.
        let repeat_after = self.repeat_after;
        self.sent.retain(|_, at| now.since(*at) < repeat_after);
        due
    }
}

/// The signals behind a scale-down, for the event's note.
fn decision_summary(decision: &Decision) -> String {
    let signals: Vec<String> = decision
        .reasons
        .iter()
        .filter(|r| matches!(r, Reason::WithinThresholds | Reason::NotBelow { .. }))
        .map(ToString::to_string)
        .collect();
    if signals.is_empty() {
        "utilization below the scale-down thresholds".into()
    } else {
        signals.join("; ")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k3scale_core::{Blocker, ScaleDown};

    fn decision(at: Time) -> Decision {
        let mut d = Decision::new(at, false);
        d.scale_down.push(ScaleDown {
            node: "workers-a".into(),
            pool: "workers".into(),
            empty: false,
            forced: false,
        });
        d.reasons = vec![
            Reason::Removable {
                node: "workers-a".into(),
                pool: "workers".into(),
                utilization: 0.1,
                empty: false,
            },
            Reason::NotRemovable {
                node: "workers-b".into(),
                blocker: Blocker::SafeToEvictFalse {
                    pod: "shop/db-0".into(),
                },
            },
        ];
        d
    }

    #[test]
    fn a_dead_node_deleted_is_a_warning() {
        let mut d = Decision::new(Time::from_secs(0), false);
        d.scale_down.push(ScaleDown {
            node: "workers-d".into(),
            pool: "workers".into(),
            empty: false,
            forced: true,
        });
        let unready = |node: &str| Reason::Unready {
            node: node.into(),
            pool: "workers".into(),
            since: Duration::from_secs(1260),
            after: Duration::from_secs(1200),
            held: None,
        };
        // Another node not Ready yet long enough is not deleted: no event.
        d.reasons = vec![unready("workers-d"), unready("workers-e")];
        let events = NodeEvents::new(Duration::from_secs(600)).plan(&d, Time::from_secs(0));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(
            (e.node.as_str(), e.kind, e.reason, e.action),
            ("workers-d", EventType::Warning, "ScaleDown", "Delete")
        );
        assert!(e.note.contains("deleting it without a drain"), "{}", e.note);
    }

    #[test]
    fn removals_and_refusals_become_events_without_repeats() {
        let mut events = NodeEvents::new(Duration::from_secs(600));
        let first = events.plan(&decision(Time::from_secs(0)), Time::from_secs(0));
        assert_eq!(first.len(), 2);
        assert_eq!(
            (first[0].node.as_str(), first[0].reason, first[0].action),
            ("workers-a", "ScaleDown", "Drain")
        );
        assert_eq!(first[1].reason, "ScaleDownBlocked");
        assert!(
            first[1].note.contains("shop/db-0") && first[1].note.contains("safe-to-evict"),
            "{}",
            first[1].note
        );
        // The next reconciles say the same: nothing new.
        assert!(
            events
                .plan(&decision(Time::from_secs(10)), Time::from_secs(10))
                .is_empty()
        );
        // The same refusal with other numbers is the same refusal.
        let mut hotter = decision(Time::from_secs(20));
        hotter.reasons.push(Reason::NotRemovable {
            node: "workers-c".into(),
            blocker: Blocker::UtilizationTooHigh {
                utilization: 0.61,
                threshold: 0.5,
            },
        });
        assert_eq!(
            events.plan(&hotter, Time::from_secs(20)).len(),
            1,
            "workers-c is new"
        );
        if let Some(Reason::NotRemovable { blocker, .. }) = hotter.reasons.last_mut() {
            *blocker = Blocker::UtilizationTooHigh {
                utilization: 0.64,
                threshold: 0.5,
            };
        }
        assert!(
            events.plan(&hotter, Time::from_secs(30)).is_empty(),
            "61% → 64%: not re-sent"
        );
        // A new leader restores what was sent from the state store.
        let stored = serde_json::to_string(&events).unwrap();
        let mut successor: NodeEvents = serde_json::from_str(&stored).unwrap();
        assert!(
            successor.plan(&hotter, Time::from_secs(40)).is_empty(),
            "not re-sent after a leader change"
        );
        // After the repeat interval, the standing refusal is said again.
        let later = events.plan(&decision(Time::from_secs(601)), Time::from_secs(601));
        assert_eq!(later.len(), 2);
    }
}
