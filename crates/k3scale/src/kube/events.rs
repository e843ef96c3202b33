//! Which Kubernetes Events a decision produces on nodes: every node chosen
//! for removal, and every node that stays with the reason why. A reconcile
//! runs every few seconds, so an unchanged refusal is repeated only after
//! `repeat_after`, as kubectl users expect of a controller's events.

use super::cluster::EventType;
use k3scale_core::{Decision, Reason, Time};
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

#[derive(Debug)]
pub struct NodeEvents {
    repeat_after: Duration,
    /// (node, note) → when it was last emitted.
    sent: BTreeMap<(String, String), Time>,
}

impl Default for NodeEvents {
    fn default() -> Self {
        NodeEvents::new(Duration::from_secs(600))
    }
}

impl NodeEvents {
    pub fn new(repeat_after: Duration) -> Self {
        NodeEvents {
            repeat_after,
            sent: BTreeMap::new(),
        }
    }

    /// The events `decision` calls for that were not emitted within `repeat_after`.
    pub fn plan(&mut self, decision: &Decision, now: Time) -> Vec<NodeEvent> {
        let mut due = Vec::new();
        for reason in &decision.reasons {
            let event = match reason {
                Reason::Removable { node, empty, .. }
                    if decision.scale_down.iter().any(|d| d.node == *node) =>
                {
                    NodeEvent {
                        node: node.clone(),
                        kind: EventType::Normal,
                        reason: "ScaleDown",
                        action: if *empty { "Delete" } else { "Drain" },
                        note: format!("{reason}; {}", decision_summary(decision)),
                    }
                }
                Reason::NotRemovable { node, .. } => NodeEvent {
                    node: node.clone(),
                    kind: EventType::Normal,
                    reason: "ScaleDownBlocked",
                    action: "Drain",
                    note: reason.to_string(),
                },
                _ => continue,
            };
            let key = (event.node.clone(), event.note.clone());
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
mod tests {
    use super::*;
    use k3scale_core::{Blocker, ScaleDown};

    fn decision(at: Time) -> Decision {
        let mut d = Decision::new(at, false);
        d.scale_down.push(ScaleDown {
            node: "workers-a".into(),
            pool: "workers".into(),
            empty: false,
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
        // After the repeat interval, the standing refusal is said again.
        let later = events.plan(&decision(Time::from_secs(601)), Time::from_secs(601));
        assert_eq!(later.len(), 2);
    }
}
