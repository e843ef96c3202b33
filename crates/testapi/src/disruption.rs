//! What the disruption controller and the eviction subresource do: PDB
//! status from the pods it selects, and evictions judged against it, in
//! the order the real server checks them.

use crate::resources::{PDBS, PODS};
use crate::select::Selector;
use crate::status::{self, ApiError};
use crate::store::{Store, now_rfc3339};
use serde_json::{Value, json};

/// A `disruptedPods` entry older than this is dropped (the controller's 2 minutes).
const DISRUPTED_EXPIRY_SECS: i64 = 120;

fn is_terminating(pod: &Value) -> bool {
    !pod["metadata"]["deletionTimestamp"].is_null()
}

/// Running, Ready and not being deleted: what the disruption controller counts.
pub fn is_healthy(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && !is_terminating(pod)
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn selects(pdb: &Value, pod: &Value) -> bool {
    pdb["metadata"]["namespace"] == pod["metadata"]["namespace"]
        && Selector::from_label_selector(&pdb["spec"]["selector"]).matches_labels(pod)
}

/// An int-or-percent of `total`, percentages rounded up (as the controller does).
fn scaled(value: &Value, total: i64) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.parse().ok()?;
            Some((pct * total + 99) / 100)
        }
        _ => None,
    }
}

fn age_secs(rfc3339: &str) -> i64 {
    rfc3339
        .parse::<jiff::Timestamp>()
        .map_or(i64::MAX, |t| jiff::Timestamp::now().as_second() - t.as_second())
}

/// Recompute every PDB of `namespace` (all if `""`) from its pods.
pub fn reconcile(store: &mut Store, namespace: &str) {
    let pdbs: Vec<Value> = store.list(&PDBS, namespace).cloned().collect();
    for pdb in pdbs {
        let pods: Vec<Value> = store
            .list(&PODS, pdb["metadata"]["namespace"].as_str().unwrap_or(""))
            .filter(|p| selects(&pdb, p))
            .cloned()
            .collect();
        // Entries stay until the pod is terminating or gone, or they expire.
        let mut disrupted = serde_json::Map::new();
        for (name, at) in pdb["status"]["disruptedPods"].as_object().into_iter().flatten() {
            let live = pods
                .iter()
                .any(|p| p["metadata"]["name"] == name.as_str() && !is_terminating(p));
            if live && age_secs(at.as_str().unwrap_or("")) < DISRUPTED_EXPIRY_SECS {
                disrupted.insert(name.clone(), at.clone());
            }
        }
        let expected = pods.len() as i64;
        let healthy = pods
            .iter()
            .filter(|p| is_healthy(p))
            .filter(|p| !disrupted.contains_key(p["metadata"]["name"].as_str().unwrap_or("")))
            .count() as i64;
        let spec = &pdb["spec"];
        let desired = if !spec["minAvailable"].is_null() {
            scaled(&spec["minAvailable"], expected).unwrap_or(expected)
        } else if !spec["maxUnavailable"].is_null() {
            (expected - scaled(&spec["maxUnavailable"], expected).unwrap_or(0)).max(0)
        } else {
            expected
        };
        let allowed = (healthy - desired).max(0);
        let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(1);
        let previous = &pdb["status"];
        let was_allowed = previous["conditions"][0]["status"] == "True";
        let transition = if previous["conditions"][0].is_null() || was_allowed != (allowed > 0) {
            json!(now_rfc3339())
        } else {
            previous["conditions"][0]["lastTransitionTime"].clone()
        };
        let mut new_status = json!({
            "observedGeneration": generation,
            "disruptionsAllowed": allowed,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "conditions": [{
                "type": "DisruptionAllowed",
                "status": if allowed > 0 { "True" } else { "False" },
                "observedGeneration": generation,
                "lastTransitionTime": transition,
                "reason": if allowed > 0 { "SufficientPods" } else { "InsufficientPods" },
                "message": "",
            }],
        });
        if !disrupted.is_empty() {
            new_status["disruptedPods"] = Value::Object(disrupted);
        }
        if *previous != new_status {
            let mut updated = pdb.clone();
            updated["status"] = new_status;
            store.put(&PDBS, updated);
        }
    }
}

/// Judge an eviction of `pod` (already known to exist) as the real server
/// does: terminating and not-yet-running pods need no budget; otherwise the
/// one PDB covering the pod must have been processed and allow a disruption,
/// which is then taken (even if the UID precondition fails afterwards).
/// `Ok` means: delete the pod gracefully.
pub fn judge(store: &mut Store, pod: &Value) -> Result<(), ApiError> {
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    if is_terminating(pod) || matches!(phase, "Pending" | "Succeeded" | "Failed") {
        return Ok(());
    }
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("");
    let covering: Vec<Value> = store
        .list(&PDBS, namespace)
        .filter(|pdb| selects(pdb, pod))
        .cloned()
        .collect();
    let pdb = match covering.as_slice() {
        [] => return Ok(()),
        [one] => one.clone(),
        _ => {
            return Err(status::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
            ));
        }
    };
    let name = pdb["metadata"]["name"].as_str().unwrap_or("");
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(1);
    if pdb["status"]["observedGeneration"].as_i64().unwrap_or(0) < generation {
        return Err(status::disruption_budget(
            format!("The disruption budget {name} is still being processed by the server."),
            Some(10),
        ));
    }
    let allowed = pdb["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
    if allowed <= 0 {
        return Err(status::disruption_budget(
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                pdb["status"]["desiredHealthy"].as_i64().unwrap_or(0),
                pdb["status"]["currentHealthy"].as_i64().unwrap_or(0)
            ),
            None,
        ));
    }
    let mut updated = pdb.clone();
    updated["status"]["disruptionsAllowed"] = json!(allowed - 1);
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    if !updated["status"]["disruptedPods"].is_object() {
        updated["status"]["disruptedPods"] = json!({});
    }
    updated["status"]["disruptedPods"][pod_name] = json!(now_rfc3339());
    store.put(&PDBS, updated);
    Ok(())
}
