//! Contract test: the test API server answers the recorded requests of a
//! real Kubernetes API server (`golden/`, v1.36) the way it did: same HTTP
//! status, headers that matter, and the same `Status` bodies, word for word
//! where the state could be reproduced (same names and UIDs).
#![allow(clippy::unwrap_used)]

use k3scale_testapi::resources::{NODES, PDBS, PODS};
use k3scale_testapi::{MetricsMode, Options, TestApiServer};
use serde_json::{Value, json};

const TOKEN: &str = "golden-token";

fn golden(name: &str) -> Value {
    let path = format!("{}/golden/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

async fn server() -> TestApiServer {
    TestApiServer::start(Options {
        token: Some(TOKEN.into()),
        ..Options::default()
    })
    .await
    .unwrap()
}

struct Answer {
    status: u16,
    content_type: String,
    retry_after: Option<String>,
    body: Value,
}

/// Send a request as recorded (or as `body_override` says), with the token or `token`.
async fn send(s: &TestApiServer, request: &Value, body: Option<&Value>, token: Option<&str>) -> Answer {
    let client = reqwest::Client::new();
    let query: Vec<(String, String)> = request["query"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let method = reqwest::Method::from_bytes(request["method"].as_str().unwrap().as_bytes()).unwrap();
    let url = format!("{}{}", s.url(), request["path"].as_str().unwrap());
    let mut req = client
        .request(method, url)
        .query(&query)
        .header("accept", "application/json");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let body = body.or(Some(&request["body"])).filter(|b| !b.is_null());
    if let Some(b) = body {
        let ct = request["headers"]["content-type"]
            .as_str()
            .unwrap_or("application/json");
        req = req.header("content-type", ct).body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let header = |h: &str| resp.headers().get(h).map(|v| v.to_str().unwrap().to_string());
    let content_type = header("content-type").unwrap_or_default();
    let retry_after = header("retry-after");
    let text = resp.text().await.unwrap();
    let body = if !content_type.starts_with("application/json") {
        Value::String(text)
    } else if request["query"]["watch"].is_string() {
        // A watch: one JSON event per line.
        Value::Array(text.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
    } else {
        serde_json::from_str(&text).unwrap()
    };
    Answer {
        status,
        content_type,
        retry_after,
        body,
    }
}

/// Replay a golden exchange and check status, content type and Retry-After.
async fn replay_with(
    s: &TestApiServer,
    name: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> (Value, Answer) {
    let g = golden(name);
    let a = send(s, &g["request"], body, token).await;
    let want = &g["response"];
    assert_eq!(
        a.status,
        want["status"].as_u64().unwrap() as u16,
        "{name}: status; body {}",
        a.body
    );
    assert_eq!(
        a.content_type,
        want["headers"]["content-type"].as_str().unwrap(),
        "{name}: content-type"
    );
    assert_eq!(
        a.retry_after.as_deref(),
        want["headers"]["retry-after"].as_str(),
        "{name}: Retry-After"
    );
    (want["body"].clone(), a)
}

async fn replay(s: &TestApiServer, name: &str) -> (Value, Answer) {
    replay_with(s, name, None, Some(TOKEN)).await
}

/// The exact same body.
async fn exact(s: &TestApiServer, name: &str) {
    let (want, got) = replay(s, name).await;
    assert_eq!(got.body, want, "{name}: body");
}

/// Seed an object taken from a golden body (with its name and UID).
fn seed(s: &TestApiServer, mut object: Value) -> Value {
    if let Some(m) = object["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    s.apply(object)
}

fn running_ready(mut pod: Value) -> Value {
    pod["status"] = json!({
        "phase": "Running",
        "conditions": [{ "type": "Ready", "status": "True" }],
    });
    pod
}

fn work_pod(name: &str, app: &str, uid: &str) -> Value {
    running_ready(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "work", "uid": uid, "labels": { "app": app } },
        "spec": { "nodeName": "node-a", "terminationGracePeriodSeconds": 30,
                  "containers": [{ "name": "app", "image": "registry.k8s.io/pause:3.10" }] },
    }))
}

#[tokio::test]
async fn auth_failures() {
    let s = server().await;
    let (want, got) = replay_with(&s, "10-auth-401-bad-token", None, Some("wrong")).await;
    assert_eq!(got.body, want);
    let (want, got) = replay_with(&s, "10-auth-403-anonymous", None, None).await;
    assert_eq!(got.body, want);

    let s = TestApiServer::start(Options {
        token: Some(TOKEN.into()),
        user: "no-perm-user".into(),
        ..Options::default()
    })
    .await
    .unwrap();
    s.set_permissions(Some(vec![]));
    exact(&s, "10-auth-403-no-permission").await;
    exact(&s, "10-auth-403-no-permission-eviction").await;
}

#[tokio::test]
async fn node_patches_and_deletes() {
    let s = server().await;
    exact(&s, "04-patch-node-not-found").await;
    let node_c = seed(
        &s,
        json!({ "apiVersion": "v1", "kind": "Node",
                "metadata": { "name": "node-c", "uid": "a8c00c65-2826-47bd-af93-466eb40ef5ab" },
                "spec": {}, "status": {} }),
    );

    let (want, got) = replay(&s, "04-cordon-strategic-merge-patch").await;
    assert_eq!(want["spec"]["unschedulable"], true);
    assert_eq!(got.body["spec"]["unschedulable"], true);
    let (want, got) = replay(&s, "04-taint-merge-patch").await;
    assert_eq!(
        got.body["spec"]["taints"], want["spec"]["taints"],
        "merge patch replaces the list"
    );

    // The recorded resourceVersions are not ours: the test op and the stale
    // version both fail here as they did there.
    exact(&s, "04-json-patch-test-failed").await;
    exact(&s, "04-json-patch-stale-resourceversion-conflict").await;
    let rv = s.get(&NODES, "", "node-c").unwrap()["metadata"]["resourceVersion"].clone();
    let ok = json!([{ "op": "test", "path": "/metadata/resourceVersion", "value": rv },
                    { "op": "replace", "path": "/spec/unschedulable", "value": false }]);
    let (_, got) = replay_with(&s, "04-json-patch-test-ok", Some(&ok), Some(TOKEN)).await;
    assert_eq!(got.body["spec"]["unschedulable"], false);

    assert_eq!(node_c["metadata"]["uid"], "a8c00c65-2826-47bd-af93-466eb40ef5ab");
    exact(&s, "06-delete-node").await;
    exact(&s, "06-delete-node-404").await;
}

#[tokio::test]
async fn node_password_secret() {
    let s = server().await;
    let (want, got) = replay(&s, "06-create-node-password-secret").await;
    assert_eq!(got.body["metadata"]["name"], want["metadata"]["name"]);
    assert_eq!(got.body["data"], want["data"]);
    let uid = got.body["metadata"]["uid"].clone();
    let (mut want, got) = replay(&s, "06-delete-node-password-secret").await;
    want["details"]["uid"] = uid;
    assert_eq!(got.body, want);
    exact(&s, "06-delete-node-password-secret-404").await;
}

/// The PDB `work/db-pdb` counts as the recorded status does; returns it.
fn budget_as_recorded(s: &TestApiServer, name: &str) -> Value {
    let pdb = s.get(&PDBS, "work", "db-pdb").unwrap();
    let want = golden(name)["response"]["body"]["status"].clone();
    for key in [
        "disruptionsAllowed",
        "currentHealthy",
        "desiredHealthy",
        "expectedPods",
    ] {
        assert_eq!(pdb["status"][key], want[key], "{name}: status.{key}");
    }
    pdb
}

#[tokio::test]
async fn evictions_and_budgets() {
    let s = server().await;
    seed(
        &s,
        work_pod("lonely", "lonely", "14c779ab-38f0-4bee-8a7c-c2e89f8e114a"),
    );
    seed(
        &s,
        work_pod("lonely-2", "lonely-2", "f0ec2d69-227b-46fb-9cb6-264f489202e6"),
    );
    // db-1's UID as the recording names it in a message.
    seed(&s, work_pod("db-0", "db", "00000000-0000-4000-8000-000000000000"));
    seed(&s, work_pod("db-1", "db", "0d4106b7-2d94-4505-b244-e3553d03d229"));
    seed(&s, work_pod("db-2", "db", "00000000-0000-4000-8000-000000000002"));

    exact(&s, "05-eviction-400-name-mismatch").await;
    exact(&s, "05-eviction-404-pod-not-found").await;
    exact(&s, "05-eviction-wrong-uid-no-pdb").await;
    exact(&s, "05-eviction-201-no-pdb").await;
    let (want, got) = replay(&s, "05-eviction-201-pod-afterwards").await;
    assert_eq!(want["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(got.body["metadata"]["deletionGracePeriodSeconds"], 30);
    let target = |pod: &Value| {
        pod["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "DisruptionTarget")
            .map(|c| (c["reason"].clone(), c["status"].clone()))
    };
    assert_eq!(target(&got.body), target(&want));
    assert_eq!(
        target(&got.body),
        Some((json!("EvictionByEvictionAPI"), json!("True")))
    );

    // minAvailable 3 with 3 healthy: nothing may go.
    let (want, got) = replay(&s, "05-pdb-create").await;
    assert_eq!(got.body["spec"], want["spec"]);
    budget_as_recorded(&s, "05-pdb-status-zero-disruptions");
    exact(&s, "05-eviction-429-pdb").await;
    exact(&s, "05-eviction-wrong-uid-pdb-zero-disruptions").await;

    // The spec changes while the controller is down: "still being processed".
    s.pause_disruption_controller(true);
    let (_, got) = replay(&s, "05-pdb-patch-minavailable-2").await;
    assert_eq!(got.body["spec"]["minAvailable"], 2);
    exact(&s, "05-eviction-429-pdb-not-yet-processed").await;
    s.pause_disruption_controller(false);
    budget_as_recorded(&s, "05-pdb-status-one-disruption");

    // A wrong UID with a budget that allows it: 409, but the budget is spent.
    let wrong_uid = golden("05-eviction-wrong-uid-pdb-allows");
    let pod_name = wrong_uid["request"]["path"]
        .as_str()
        .unwrap()
        .split('/')
        .nth(6)
        .unwrap()
        .to_string();
    let (want, got) = replay(&s, "05-eviction-wrong-uid-pdb-allows").await;
    assert_eq!(got.body, want);
    // The recording was taken after db-2 had gone too (its healthy counts
    // are one lower): the spent budget is what it pins down.
    let pdb = s.get(&PDBS, "work", "db-pdb").unwrap();
    let want = golden("05-pdb-status-after-wrong-uid-eviction")["response"]["body"]["status"].clone();
    assert_eq!(pdb["status"]["disruptionsAllowed"], want["disruptionsAllowed"]);
    assert!(
        want["disruptedPods"].as_object().is_some_and(|d| d.len() == 1),
        "{want}"
    );
    assert!(pdb["status"]["disruptedPods"][&pod_name].is_string(), "{pdb}");
    // The spent budget holds until the entry expires.
    exact(&s, "05-eviction-429-after-budget-used").await;
    assert!(s.get(&PODS, "work", &pod_name).unwrap()["metadata"]["deletionTimestamp"].is_null());
}

#[tokio::test]
async fn leases() {
    let s = server().await;
    exact(&s, "07-lease-get-404").await;
    let (want, got) = replay(&s, "07-lease-create").await;
    assert_eq!(got.body["spec"], want["spec"]);
    exact(&s, "07-lease-create-409-exists").await;
    exact(&s, "07-lease-put-no-resourceversion").await;

    let current = s
        .get(
            &k3scale_testapi::resources::LEASES,
            "kube-system",
            "k3scale-leader",
        )
        .unwrap();
    let rv: u64 = current["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut renew = golden("07-lease-renew-put")["request"]["body"].clone();
    renew["metadata"]["resourceVersion"] = json!(rv.to_string());
    renew["metadata"]["uid"] = current["metadata"]["uid"].clone();
    let (want, got) = replay_with(&s, "07-lease-renew-put", Some(&renew), Some(TOKEN)).await;
    assert_eq!(got.body["spec"], want["spec"]);
    let mut stale = golden("07-lease-put-stale-409")["request"]["body"].clone();
    stale["metadata"]["resourceVersion"] = json!(rv.to_string());
    let (want, got) = replay_with(&s, "07-lease-put-stale-409", Some(&stale), Some(TOKEN)).await;
    assert_eq!(got.body, want);
}

#[tokio::test]
async fn events() {
    let s = server().await;
    let (want, got) = replay(&s, "08-event-create").await;
    for key in [
        "eventTime",
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
        "type",
        "note",
        "regarding",
    ] {
        assert_eq!(got.body[key], want[key], "{key}");
    }
    assert_eq!(got.body["kind"], "Event");
    exact(&s, "08-event-missing-eventtime-422").await;
    exact(&s, "08-event-missing-reporting-fields-422").await;
    exact(&s, "08-event-bad-type-422").await;
}

#[tokio::test]
async fn lists_and_watches() {
    let s = server().await;
    let nodes = golden("01-list-nodes")["response"]["body"]["items"].clone();
    for n in nodes.as_array().unwrap() {
        let mut n = n.clone();
        n["apiVersion"] = json!("v1");
        n["kind"] = json!("Node");
        seed(&s, n);
    }
    let (want, got) = replay(&s, "01-list-nodes").await;
    let names = |v: &Value| -> Vec<Value> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].clone())
            .collect()
    };
    assert_eq!(names(&got.body), names(&want));
    assert_eq!(got.body["kind"], "NodeList");
    assert!(got.body["items"][0].get("kind").is_none(), "items carry no kind");

    let pods = golden("01-list-pods-field-selector-node")["response"]["body"]["items"].clone();
    for p in pods.as_array().unwrap() {
        let mut p = p.clone();
        p["apiVersion"] = json!("v1");
        p["kind"] = json!("Pod");
        seed(&s, p);
    }
    seed(
        &s,
        json!({ "apiVersion": "v1", "kind": "Pod",
                      "metadata": { "name": "elsewhere", "namespace": "default" },
                      "spec": { "nodeName": "node-b", "containers": [] } }),
    );
    let (want, got) = replay(&s, "01-list-pods-field-selector-node").await;
    assert_eq!(names(&got.body), names(&want));
    let (want, got) = replay(&s, "01-list-pods-field-selector-node-limit").await;
    assert_eq!(names(&got.body), names(&want));
    assert!(got.body["metadata"]["continue"].is_string());

    s.compact();
    exact(&s, "03-list-exact-rv-compacted").await;
    let (want, got) = replay(&s, "03-watch-too-old-resource-version").await;
    let (want, got) = (&want[0], &got.body[0]);
    assert_eq!(got["type"], "ERROR");
    for key in ["kind", "status", "reason", "code"] {
        assert_eq!(got["object"][key], want["object"][key], "{key}");
    }
    assert!(
        got["object"]["message"]
            .as_str()
            .unwrap()
            .starts_with("too old resource version: 1 (")
    );
}

#[tokio::test]
async fn a_watch_sees_create_modify_graceful_and_forced_delete_then_bookmarks() {
    let s = TestApiServer::start(Options {
        token: Some(TOKEN.into()),
        bookmark_interval: std::time::Duration::from_millis(200),
        ..Options::default()
    })
    .await
    .unwrap();
    let g = golden("02-watch-pods");
    let mut request = g["request"].clone();
    request["query"]["resourceVersion"] = json!(s.resource_version().to_string());
    request["query"]["timeoutSeconds"] = json!("1");
    let watch = send(&s, &request, None, Some(TOKEN));
    let steps = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut pod = work_pod("watched", "watched", "120c8d8c-4be9-4962-92a4-2c1193f8d459");
        pod["metadata"]["namespace"] = json!("default");
        let http = reqwest::Client::new();
        let base = format!("{}/api/v1/namespaces/default/pods", s.url());
        let r = http
            .post(&base)
            .bearer_auth(TOKEN)
            .json(&pod)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = http
            .patch(format!("{base}/watched"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"metadata":{"labels":{"step":"relabelled"}}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // Hold the kubelet back: a graceful delete only marks the pod.
        let mut hung = s.get(&PODS, "default", "watched").unwrap();
        hung["metadata"]["annotations"] = json!({ k3scale_testapi::NEVER_TERMINATE: "true" });
        s.apply(hung);
        let r = http
            .delete(format!("{base}/watched"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = http
            .delete(format!("{base}/watched?gracePeriodSeconds=0"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    let (answer, ()) = tokio::join!(watch, steps);
    let types: Vec<&str> = answer
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = g["response"]["body"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    // The recording has extra MODIFIED events from a real scheduler binding
    // the pod. A bookmark may fall anywhere on a slow machine, even before
    // the first step (a real server sends them whenever its interval is up).
    let first = types.iter().position(|t| *t != "BOOKMARK").expect("an event");
    assert_eq!(types.get(first), want.first(), "{types:?}");
    let deleted = types.iter().position(|t| *t == "DELETED").expect("DELETED seen");
    let changes: Vec<&str> = types[first + 1..deleted]
        .iter()
        .copied()
        .filter(|t| *t != "BOOKMARK")
        .collect();
    assert!(
        changes.iter().all(|t| *t == "MODIFIED") && changes.len() >= 2,
        "{types:?}"
    );
    assert!(
        types[deleted + 1..].iter().all(|t| *t == "BOOKMARK") && types.len() > deleted + 1,
        "{types:?}"
    );
    let last = answer.body.as_array().unwrap().last().unwrap();
    let deleted_rv = &answer.body[deleted]["object"]["metadata"]["resourceVersion"];
    assert_eq!(
        &last["object"]["metadata"]["resourceVersion"], deleted_rv,
        "a bookmark carries the latest version"
    );
}

#[tokio::test]
async fn metrics_api() {
    let s = server().await;
    exact(&s, "11-metrics-api-absent-404").await;
    exact(&s, "11-metrics-api-absent-discovery").await;
    s.set_metrics(MetricsMode::Unavailable);
    exact(&s, "11-metrics-api-unavailable-503").await;
}

/// The parts of a Node the recordings pin down: taints (without the
/// `timeAdded` stamps) and the Ready condition's status and reason.
fn startup_view(node: &Value) -> Value {
    let taints: Vec<Value> = node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| json!({ "key": t["key"], "effect": t["effect"], "timed": !t["timeAdded"].is_null() }))
        .collect();
    let ready = node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap_or(Value::Null);
    json!({ "taints": taints, "ready": ready["status"], "reason": ready["reason"] })
}

#[tokio::test]
async fn a_node_registers_not_ready_turns_ready_still_tainted_then_loses_the_taint() {
    let s = TestApiServer::start(Options {
        token: Some(TOKEN.into()),
        // Wide enough for the watch to see the window on a busy machine.
        startup_taint_delay: std::time::Duration::from_millis(300),
        ..Options::default()
    })
    .await
    .unwrap();
    let g = golden("13-watch-node-startup");
    let mut request = g["request"].clone();
    request["query"]["resourceVersion"] = json!(s.resource_version().to_string());
    request["query"]["timeoutSeconds"] = json!("2");
    let watch = send(&s, &request, None, Some(TOKEN));
    let steps = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // Admission adds the not-ready taint to the registering Node.
        let (want, got) = replay(&s, "13-node-register-gets-not-ready-taint").await;
        assert_eq!(startup_view(&got.body), startup_view(&want), "registered");
        assert_eq!(got.body["metadata"]["labels"], want["metadata"]["labels"]);
        // The kubelet reports Ready; the taint is still there in the answer.
        let (want, got) = replay(&s, "13-node-status-ready-taint-still-present").await;
        assert_eq!(
            startup_view(&got.body),
            startup_view(&want),
            "Ready, still tainted"
        );
        // The node lifecycle controller removes it a moment later.
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        let (want, got) = replay(&s, "13-node-after-lifecycle-controller").await;
        assert_eq!(
            startup_view(&got.body),
            startup_view(&want),
            "after the controller"
        );
    };
    let (answer, ()) = tokio::join!(watch, steps);
    let views = |events: &Value| -> Vec<(String, Value)> {
        events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] != "BOOKMARK")
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_string(),
                    startup_view(&e["object"]),
                )
            })
            .collect()
    };
    let got = views(&answer.body);
    let want = views(&g["response"]["body"]);
    // The recording has one more MODIFIED (the TTL controller's annotation):
    // every state it shows, in its order, is in ours.
    let mut want_states: Vec<&(String, Value)> = Vec::new();
    for w in &want {
        if want_states.last().is_none_or(|last| last.1 != w.1) {
            want_states.push(w);
        }
    }
    let got_states: Vec<&Value> = got.iter().map(|(_, v)| v).collect();
    let mut at = 0;
    for (kind, state) in want_states {
        let found = got_states[at..].iter().position(|g| *g == state);
        assert!(
            found.is_some(),
            "{kind} {state} not seen after event {at}: {got:?}"
        );
        at += found.unwrap_or(0) + 1;
    }
    assert_eq!(got[0].0, "ADDED");

    // ~60 s without heartbeats: Ready=Unknown and the unreachable taint.
    s.stop_heartbeat("node-startup-b");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (want, got) = replay(&s, "13-node-no-heartbeat-unreachable").await;
    assert_eq!(startup_view(&got.body), startup_view(&want), "unreachable");
}

#[tokio::test]
async fn version_has_the_recorded_shape() {
    let s = server().await;
    let (want, got) = replay(&s, "12-version").await;
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&got.body), keys(&want), "the same fields");
    assert_eq!(got.body["major"], want["major"]);
}

/// Recordings no test replays, and why. Every other recording must be
/// replayed (or read) by a test: a new one cannot be forgotten.
const INFORMATIONAL: &[(&str, &str)] = &[
    (
        "05-eviction-201-pdb-allows",
        "the same 201 Status as 05-eviction-201-no-pdb (replayed); the budget it spends is checked against 05-pdb-status-one-disruption",
    ),
    (
        "05-pdb-status-after-eviction",
        "the status after 05-eviction-201-pdb-allows, whose state the wrong-UID path reaches instead",
    ),
    (
        "05-pdb-status-wrong-uid-recovered",
        "recovery after the disrupted-pod entry expires (2 minutes on a real controller): not waited for in a test",
    ),
    (
        "08-event-core-v1-view",
        "k3scale writes events.k8s.io/v1 Events and never reads them back",
    ),
    (
        "09-create-unschedulable-pod",
        "the request that set up 09-unschedulable-pod-status, which the conversion tests read",
    ),
    (
        "11-metrics-apiservice-status",
        "k3scale never reads APIServices: it learns metrics-server is down from the 503 (replayed)",
    ),
];

#[test]
fn every_recording_is_replayed_or_listed_as_informational() {
    let dir = format!("{}/golden", env!("CARGO_MANIFEST_DIR"));
    // This file up to the list below, and the conversion tests.
    let this = include_str!("golden.rs");
    let sources = [
        &this[..this.find("const INFORMATIONAL").unwrap()],
        include_str!("../../k3scale/tests/integration/kube_convert.rs"),
    ]
    .concat();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        let Some(stem) = file.strip_suffix(".json") else {
            continue;
        };
        let read = sources.contains(&format!("\"{stem}\""));
        let listed = INFORMATIONAL.iter().any(|(name, _)| *name == stem);
        assert!(!(read && listed), "{stem} is replayed: take it off INFORMATIONAL");
        if !read && !listed {
            missing.push(stem.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "recordings no test replays or lists: {missing:?}"
    );
    for (name, _) in INFORMATIONAL {
        assert!(
            std::path::Path::new(&format!("{dir}/{name}.json")).exists(),
            "{name} is not a recording"
        );
    }
}
