//! What a real control plane does to Nodes, as recorded in
//! `golden/13-*`: admission adds `node.kubernetes.io/not-ready:NoSchedule`
//! to every Node created through the API; the node lifecycle controller
//! removes it a moment (`Options::startup_taint_delay`, ~10 ms recorded)
//! after the Node turns `Ready=True`, so for that moment a Node is Ready and
//! still tainted; a Node whose `Ready` is `Unknown` (no heartbeats) gets
//! `node.kubernetes.io/unreachable:NoSchedule`, one with `Ready=False` the
//! not-ready taint.

use crate::resources::NODES;
use crate::store::{Store, now_rfc3339};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Admission on create (`TaintNodesByCondition`): a new Node starts not ready.
pub fn admit(node: &mut Value) {
    if !has_taint(node, NOT_READY) {
        add_taint(node, NOT_READY, None);
    }
}

fn ready_status(node: &Value) -> Option<&str> {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str())
}

fn has_taint(node: &Value, key: &str) -> bool {
    node["spec"]["taints"]
        .as_array()
        .is_some_and(|ts| ts.iter().any(|t| t["key"] == key))
}

fn add_taint(node: &mut Value, key: &str, time_added: Option<String>) {
    let mut taint = json!({ "key": key, "effect": "NoSchedule" });
    if let Some(at) = time_added {
        taint["timeAdded"] = json!(at);
    }
    match node["spec"]["taints"].as_array_mut() {
        Some(ts) => ts.push(taint),
        None => node["spec"]["taints"] = json!([taint]),
    }
}

fn remove_taint(node: &mut Value, key: &str) {
    if let Some(ts) = node["spec"]["taints"].as_array_mut() {
        ts.retain(|t| t["key"] != key);
        if ts.is_empty()
            && let Some(spec) = node["spec"].as_object_mut()
        {
            spec.remove("taints");
        }
    }
}

/// The controller's memory: since when each Node has been Ready with the
/// not-ready taint still on.
#[derive(Debug, Default)]
pub struct Controller {
    ready_since: HashMap<String, Instant>,
}

impl Controller {
    /// One pass over the Nodes; returns whether anything was written. It
    /// runs every few milliseconds, so only Nodes that change are copied.
    pub fn reconcile(&mut self, store: &mut Store, startup_taint_delay: Duration) -> bool {
        let mut seen = Vec::new();
        // (node, wants the not-ready taint, wants the unreachable taint)
        let mut changes: Vec<(Value, bool, bool)> = Vec::new();
        for node in store.list(&NODES, "") {
            // No Ready condition yet: the kubelet has not posted status, and
            // the real controller waits out a grace period before judging.
            let Some(ready) = ready_status(node) else {
                continue;
            };
            let (not_ready, unreachable) = match ready {
                "True" => {
                    let held = has_taint(node, NOT_READY) && {
                        let name = node["metadata"]["name"].as_str().unwrap_or("").to_string();
                        seen.push(name.clone());
                        let since = *self.ready_since.entry(name).or_insert_with(Instant::now);
                        since.elapsed() < startup_taint_delay
                    };
                    (held, false)
                }
                "False" => (true, false),
                _ => (false, true),
            };
            if has_taint(node, NOT_READY) != not_ready || has_taint(node, UNREACHABLE) != unreachable {
                changes.push((node.clone(), not_ready, unreachable));
            }
        }
        self.ready_since.retain(|name, _| seen.contains(name));
        let wrote = !changes.is_empty();
        for (mut node, not_ready, unreachable) in changes {
            set_taint(&mut node, NOT_READY, not_ready);
            set_taint(&mut node, UNREACHABLE, unreachable);
            store.put(&NODES, node);
        }
        wrote
    }
}

/// Add (stamped now) or remove the taint `key`, as `on` says.
fn set_taint(node: &mut Value, key: &str, on: bool) {
    match (on, has_taint(node, key)) {
        (true, false) => add_taint(node, key, Some(now_rfc3339())),
        (false, true) => remove_taint(node, key),
        _ => {}
    }
}

/// A kubelet that stopped posting status, as the controller records it
/// once the grace period has passed: every condition `Unknown`.
pub fn stop_heartbeat(node: &mut Value) {
    let now = now_rfc3339();
    if let Some(conditions) = node["status"]["conditions"].as_array_mut() {
        for c in conditions {
            let reason = if c["type"] == "Ready" {
                "NodeStatusUnknown"
            } else {
                "NodeStatusNeverUpdated"
            };
            c["status"] = json!("Unknown");
            c["reason"] = json!(reason);
            c["message"] = json!("Kubelet stopped posting node status.");
            c["lastTransitionTime"] = json!(now);
        }
    }
}
