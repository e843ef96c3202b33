//! The HTTP side: one handler that parses the path, checks auth, and serves
//! the verbs the way the real API server answers them.

use crate::disruption;
use crate::resources::{self, LEASES, PODS, Resource, Target};
use crate::select::Selector;
use crate::status::{self, ApiError, Cause};
use crate::store::{Change, EventType, Store, now_rfc3339, rv_of};
use crate::{MetricsMode, RequestRecord, Shared};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;

type Query = HashMap<String, String>;

fn json_response(code: u16, body: &Value) -> Response {
    let mut resp = (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    resp.headers_mut().remove(header::CONTENT_LENGTH);
    resp
}

fn text_response(code: StatusCode, text: &'static str) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = json_response(self.code, &self.body);
        if let Some(s) = self.retry_after
            && let Ok(v) = s.to_string().parse()
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

fn parse_query(uri: &Uri) -> Query {
    uri.query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    Some((decode(k)?, decode(v)?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn verb_of(method: &Method, target: &Target, query: &Query) -> &'static str {
    let watching = query.get("watch").is_some_and(|w| w == "1" || w == "true");
    match (method.as_str(), target.name.is_empty()) {
        ("GET", true) if watching => "watch",
        ("GET", true) => "list",
        ("GET", false) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "deletecollection",
        ("DELETE", false) => "delete",
        _ => "unknown",
    }
}

/// The bearer token check and RBAC, as the real server words their failures.
/// Records the request, then checks the caller may make it.
fn audit_and_authorize(
    shared: &Shared,
    headers: &HeaderMap,
    verb: &str,
    target: &Target,
) -> Result<(), ApiError> {
    shared.audit.lock().expect("audit lock").push(RequestRecord {
        verb: verb.to_string(),
        group: target.resource.group.to_string(),
        resource: match &target.subresource {
            Some(sub) => format!("{}/{sub}", target.resource.plural),
            None => target.resource.plural.to_string(),
        },
        namespace: target.namespace.clone(),
        name: target.name.clone(),
    });
    authorize(shared, headers, verb, target)
}

fn authorize(shared: &Shared, headers: &HeaderMap, verb: &str, t: &Target) -> Result<(), ApiError> {
    let Some(expected) = &shared.options.token else {
        return Ok(());
    };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let user = match sent {
        None => "system:anonymous",
        Some(token) if token == expected => shared.options.user.as_str(),
        Some(_) => return Err(status::unauthorized()),
    };
    let allowed = user != "system:anonymous"
        && shared
            .permissions
            .lock()
            .expect("permissions lock")
            .as_ref()
            .is_none_or(|rules| {
                let resource = match &t.subresource {
                    Some(sub) => format!("{}/{sub}", t.resource.plural),
                    None => t.resource.plural.to_string(),
                };
                rules.iter().any(|r| r.allows(verb, t.resource.group, &resource))
            });
    if allowed {
        Ok(())
    } else {
        Err(status::forbidden(
            user,
            verb,
            &t.resource,
            t.subresource.as_deref(),
            &t.namespace,
            &t.name,
        ))
    }
}

pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if shared.down.load(std::sync::atomic::Ordering::SeqCst) {
        // What a client meets while the apiserver restarts behind K3s's
        // load balancer: every request fails (kube treats it as retryable).
        return text_response(StatusCode::SERVICE_UNAVAILABLE, "apiserver is restarting\n");
    }
    let path = uri.path();
    let query = parse_query(&uri);
    if path == "/version" {
        return json_response(200, &version());
    }
    if let Some(rest) = path.strip_prefix("/apis/metrics.k8s.io/v1beta1/") {
        let name = rest.strip_prefix("nodes").unwrap_or(rest).trim_start_matches('/');
        let target = resources::Target {
            resource: resources::NODE_METRICS,
            namespace: String::new(),
            name: name.to_string(),
            subresource: None,
        };
        let verb = if name.is_empty() { "list" } else { "get" };
        if let Err(e) = audit_and_authorize(&shared, &headers, verb, &target) {
            return e.into_response();
        }
        return node_metrics(&shared, rest);
    }
    let reviews = [resources::TOKEN_REVIEWS, resources::SUBJECT_ACCESS_REVIEWS];
    if let Some(resource) = reviews
        .into_iter()
        .find(|r| path == format!("/apis/{}/v1/{}", r.group, r.plural))
        && method == Method::POST
    {
        let target = resources::Target {
            resource,
            namespace: String::new(),
            name: String::new(),
            subresource: None,
        };
        if let Err(e) = audit_and_authorize(&shared, &headers, "create", &target) {
            return e.into_response();
        }
        return match parse_body(&body) {
            Ok(request) => json_response(201, &review(&shared, resource, request)),
            Err(e) => e.into_response(),
        };
    }
    let Some(target) = resources::parse_path(path) else {
        return text_response(StatusCode::NOT_FOUND, "404 page not found\n");
    };
    let verb = verb_of(&method, &target, &query);
    if let Err(e) = audit_and_authorize(&shared, &headers, verb, &target) {
        return e.into_response();
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let result = match (verb, target.subresource.as_deref()) {
        ("watch", None) => {
            let mut held = shared.watches_held.subscribe();
            // Only fails if the server is gone.
            let _ = held.wait_for(|h| !h).await;
            return watch(shared, target, &query);
        }
        ("list", None) => list(&shared, &target, &query),
        ("get", None) => get(&shared, &target),
        ("create", None) => parse_body(&body).and_then(|b| create(&shared, &target, b)),
        ("create", Some("eviction")) if target.resource == PODS => {
            parse_body(&body).and_then(|b| evict(&shared, &target, &b))
        }
        ("update", None | Some("status")) => parse_body(&body).and_then(|b| update(&shared, &target, b)),
        ("patch", None | Some("status")) => patch(&shared, &target, &content_type, &body),
        ("delete", None) => {
            let options = if body.is_empty() {
                Ok(json!({}))
            } else {
                parse_body(&body)
            };
            options.and_then(|o| delete(&shared, &target, &query, &o))
        }
        _ => return text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
    };
    match result {
        Ok((code, value)) => json_response(code, &value),
        Err(e) => e.into_response(),
    }
}

/// A TokenReview or SubjectAccessReview answered as the API server does:
/// the request back, with its `status` filled in.
fn review(shared: &Shared, resource: Resource, mut request: Value) -> Value {
    let reviews = shared.reviews.lock().expect("reviews lock").clone();
    request["status"] = if resource == resources::TOKEN_REVIEWS {
        let token = request["spec"]["token"].as_str().unwrap_or("");
        match reviews.tokens.get(token) {
            Some((user, groups)) => json!({
                "authenticated": true,
                "user": { "username": user, "uid": format!("uid-{user}"), "groups": groups },
                "audiences": ["https://kubernetes.default.svc.cluster.local"]
            }),
            None => json!({ "user": {}, "error": "[invalid bearer token, token lookup failed]" }),
        }
    } else {
        let user = request["spec"]["user"].as_str().unwrap_or("");
        let attributes = &request["spec"]["nonResourceAttributes"];
        let (path, verb) = (
            attributes["path"].as_str().unwrap_or(""),
            attributes["verb"].as_str().unwrap_or(""),
        );
        let allowed = verb == "get" && reviews.grants.iter().any(|(u, p)| u == user && p == path);
        if allowed {
            json!({ "allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding" })
        } else {
            json!({ "allowed": false })
        }
    };
    request
}

fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "emulationMajor": "1", "emulationMinor": "33",
        "minCompatibilityMajor": "1", "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.4+k3s1", "gitCommit": "testapi", "gitTreeState": "clean",
        "buildDate": "2026-11-22T00:00:00Z", "goVersion": "go1.24.6", "compiler": "gc",
        "platform": "linux/amd64"
    })
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| status::bad_request(format!("the body of the request could not be decoded: {e}")))
}

type Answer = Result<(u16, Value), ApiError>;

fn filters(query: &Query) -> Result<(Selector, Selector), ApiError> {
    let parse = |key: &str| {
        Selector::parse(query.get(key).map_or("", String::as_str))
            .map_err(|e| status::bad_request(format!("invalid {key}: {e}")))
    };
    Ok((parse("labelSelector")?, parse("fieldSelector")?))
}

/// The list item shape: no kind / apiVersion on items.
fn as_item(object: &Value) -> Value {
    let mut item = object.clone();
    if let Some(o) = item.as_object_mut() {
        o.remove("kind");
        o.remove("apiVersion");
    }
    item
}

fn list(shared: &Shared, t: &Target, query: &Query) -> Answer {
    let (labels, fields) = filters(query)?;
    let store = shared.store.lock().expect("store lock");
    if query.get("resourceVersionMatch").is_some_and(|m| m == "Exact")
        && let Some(rv) = query.get("resourceVersion").and_then(|rv| rv.parse::<u64>().ok())
        && rv < store.oldest_rv()
    {
        return Err(status::expired(
            "The resourceVersion for the provided list is too old.".into(),
        ));
    }
    // `continue` is an opaque token: here, the offset into the same ordering.
    let start: usize = query
        .get("continue")
        .map(|c| {
            c.parse()
                .map_err(|_| status::bad_request("invalid continue token".into()))
        })
        .transpose()?
        .unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    // Only the page is copied: one more item tells whether another page follows.
    let mut items: Vec<Value> = store
        .list(&t.resource, &t.namespace)
        .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
        .skip(start)
        .take(limit.saturating_add(1))
        .map(as_item)
        .collect();
    let rv = store.resource_version();
    drop(store);
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if items.len() > limit {
        items.truncate(limit);
        metadata["continue"] = json!((start + limit).to_string());
    }
    Ok((
        200,
        json!({
            "kind": format!("{}List", t.resource.kind),
            "apiVersion": t.resource.api_version(),
            "metadata": metadata,
            "items": items,
        }),
    ))
}

fn get(shared: &Shared, t: &Target) -> Answer {
    let store = shared.store.lock().expect("store lock");
    store
        .get(&t.resource, &t.namespace, &t.name)
        .map(|o| (200, o.clone()))
        .ok_or_else(|| status::not_found(&t.resource, &t.name))
}

/// events.k8s.io/v1 validation, as the server words it.
fn validate_event(event: &Value, name: &str) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    if event["eventTime"].is_null() {
        causes.push(Cause::required("eventTime"));
    }
    if event["reportingController"].as_str().unwrap_or("").is_empty() {
        causes.push(Cause::required("reportingController"));
        // The server also runs its name checks on the empty value.
        causes.push(Cause::invalid(
            "reportingController",
            "Invalid value: \"\": name part must be non-empty".into(),
        ));
        causes.push(Cause::invalid(
            "reportingController",
            "Invalid value: \"\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into(),
        ));
    }
    if event["reportingInstance"].as_str().unwrap_or("").is_empty() {
        causes.push(Cause::required("reportingInstance"));
    }
    if event["action"].as_str().unwrap_or("").is_empty() {
        causes.push(Cause::required("action"));
    }
    let kind = event["type"].as_str().unwrap_or("");
    if kind != "Normal" && kind != "Warning" {
        causes.push(Cause::invalid(
            "type",
            format!("Invalid value: \"\": has invalid value: {kind}"),
        ));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(status::invalid(
            "Event",
            name,
            json!({ "kind": "Event" }),
            &causes,
        ))
    }
}

/// Resources whose spec changes bump `metadata.generation`.
fn has_generation(r: &Resource) -> bool {
    !matches!(r.plural, "nodes" | "secrets" | "configmaps" | "events" | "leases")
}

fn create(shared: &Shared, t: &Target, mut object: Value) -> Answer {
    if !t.name.is_empty() {
        return Err(status::bad_request("create takes the collection URL".into()));
    }
    let mut name = object["metadata"]["name"].as_str().unwrap_or("").to_string();
    let mut store = shared.store.lock().expect("store lock");
    if name.is_empty()
        && let Some(prefix) = object["metadata"]["generateName"].as_str()
    {
        let uid = store.new_uid();
        name = format!("{prefix}{}", &uid[uid.len() - 5..]);
    }
    if name.is_empty() {
        let message = "name or generateName is required".to_string();
        return Err(status::invalid(
            &t.resource.qualified(),
            "",
            json!({ "kind": t.resource.plural }),
            &[Cause::required("metadata.name")],
        )
        .with_message(message));
    }
    if t.resource.plural == "events" {
        validate_event(&object, &name)?;
    }
    if t.resource.plural == "nodes" {
        crate::node_lifecycle::admit(&mut object);
    }
    if store.get(&t.resource, &t.namespace, &name).is_some() {
        return Err(status::already_exists(&t.resource, &name));
    }
    let meta = &mut object["metadata"];
    meta["name"] = json!(name);
    if t.resource.namespaced {
        meta["namespace"] = json!(t.namespace);
    }
    meta["uid"] = json!(store.new_uid());
    meta["creationTimestamp"] = json!(now_rfc3339());
    if has_generation(&t.resource) {
        meta["generation"] = json!(1);
    }
    let stored = store.put(&t.resource, object);
    after_change(shared, &mut store, &t.resource, &t.namespace);
    Ok((201, stored))
}

impl ApiError {
    fn with_message(mut self, message: String) -> Self {
        self.body["message"] = json!(message);
        self
    }
}

/// Keep what a client cannot change: uid, creationTimestamp, generation
/// (bumped when the spec changed), deletion state.
fn carry_over(r: &Resource, current: &Value, updated: &mut Value, status_only: bool) {
    if status_only {
        let status = updated["status"].take();
        *updated = current.clone();
        updated["status"] = status;
        return;
    }
    for key in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "name",
    ] {
        if !current["metadata"][key].is_null() {
            updated["metadata"][key] = current["metadata"][key].clone();
        }
    }
    if has_generation(r) {
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
        let changed = current["spec"] != updated["spec"];
        updated["metadata"]["generation"] = json!(generation + i64::from(changed));
    }
    if !status_only && r.plural != "nodes" {
        // The main resource ignores status changes (they go through /status).
        updated["status"] = current["status"].clone();
        if current["status"].is_null()
            && let Some(o) = updated.as_object_mut()
        {
            o.remove("status");
        }
    }
}

fn update(shared: &Shared, t: &Target, mut object: Value) -> Answer {
    if object["metadata"]["name"].as_str() != Some(t.name.as_str()) {
        return Err(status::bad_request(
            "the name of the object does not match the name on the URL".into(),
        ));
    }
    let mut store = shared.store.lock().expect("store lock");
    let current = store
        .get(&t.resource, &t.namespace, &t.name)
        .cloned()
        .ok_or_else(|| status::not_found(&t.resource, &t.name))?;
    match rv_of(&object) {
        None if t.resource == LEASES => {
            return Err(status::invalid(
                &t.resource.qualified(),
                &t.name,
                json!({ "group": t.resource.group, "kind": t.resource.plural }),
                &[Cause::invalid(
                    "metadata.resourceVersion",
                    "Invalid value: 0: must be specified for an update".into(),
                )],
            ));
        }
        Some(rv) if Some(rv) != rv_of(&current) => return Err(status::conflict(&t.resource, &t.name)),
        _ => {}
    }
    carry_over(&t.resource, &current, &mut object, t.subresource.is_some());
    let stored = store.put(&t.resource, object);
    after_change(shared, &mut store, &t.resource, &t.namespace);
    Ok((200, stored))
}

fn patch(shared: &Shared, t: &Target, content_type: &str, body: &[u8]) -> Answer {
    let mut store = shared.store.lock().expect("store lock");
    let current = store
        .get(&t.resource, &t.namespace, &t.name)
        .cloned()
        .ok_or_else(|| status::not_found(&t.resource, &t.name))?;
    let mut patched = current.clone();
    match content_type {
        // Strategic merge is served as a JSON merge patch: the same for the
        // maps and scalars k3scale patches (lists are replaced whole).
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            let p: Value = parse_body(body)?;
            json_patch::merge(&mut patched, &p);
        }
        "application/json-patch+json" => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| status::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut patched, &p).map_err(|_| status::patch_test_failed())?;
        }
        other => return Err(status::unsupported_media_type(other)),
    }
    // A resourceVersion in the patch is a precondition.
    if rv_of(&patched) != rv_of(&current) {
        return Err(status::conflict(&t.resource, &t.name));
    }
    carry_over(&t.resource, &current, &mut patched, t.subresource.is_some());
    if patched == current {
        return Ok((200, current));
    }
    let stored = store.put(&t.resource, patched);
    after_change(shared, &mut store, &t.resource, &t.namespace);
    Ok((200, stored))
}

fn grace_period(query: &Query, options: &Value, pod: &Value) -> i64 {
    query
        .get("gracePeriodSeconds")
        .and_then(|g| g.parse().ok())
        .or_else(|| options["gracePeriodSeconds"].as_i64())
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30)
}

fn check_uid(t: &Target, kind: &str, current: &Value, options: &Value) -> Result<(), ApiError> {
    let actual = current["metadata"]["uid"].as_str().unwrap_or("");
    match options["preconditions"]["uid"].as_str() {
        Some(wanted) if wanted != actual => Err(status::uid_conflict(kind, &t.name, wanted, actual)),
        _ => Ok(()),
    }
}

fn delete(shared: &Shared, t: &Target, query: &Query, options: &Value) -> Answer {
    let mut store = shared.store.lock().expect("store lock");
    let current = store
        .get(&t.resource, &t.namespace, &t.name)
        .cloned()
        .ok_or_else(|| status::not_found(&t.resource, &t.name))?;
    check_uid(t, t.resource.kind, &current, options)?;
    let answer = if t.resource == PODS {
        let grace = grace_period(query, options, &current);
        (200, delete_pod(shared, &mut store, current, grace, None))
    } else {
        store.remove(&t.resource, &t.namespace, &t.name);
        let uid = current["metadata"]["uid"].as_str().unwrap_or("");
        (200, status::deleted(&t.resource, &t.name, uid))
    };
    after_change(shared, &mut store, &t.resource, &t.namespace);
    Ok(answer)
}

/// Delete a pod: a bound pod with a grace period only gets its
/// deletionTimestamp (the kubelet finishes it); others go at once.
fn delete_pod(
    shared: &Shared,
    store: &mut Store,
    mut pod: Value,
    grace: i64,
    condition: Option<Value>,
) -> Value {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("").to_string();
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let bound = pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
    if !bound || grace == 0 {
        return store.remove(&PODS, &ns, &name).unwrap_or(pod);
    }
    if !pod["metadata"]["deletionTimestamp"].is_null() {
        return pod;
    }
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
    pod["metadata"]["deletionTimestamp"] = json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    let generation = pod["metadata"]["generation"].as_i64().unwrap_or(1);
    pod["metadata"]["generation"] = json!(generation + 1);
    if let Some(c) = condition {
        if !pod["status"]["conditions"].is_array() {
            pod["status"]["conditions"] = json!([]);
        }
        if let Some(list) = pod["status"]["conditions"].as_array_mut() {
            list.push(c);
        }
    }
    shared.terminating.lock().expect("terminating lock").insert(
        (ns, name),
        (Instant::now(), Duration::from_secs(grace.unsigned_abs())),
    );
    store.put(&PODS, pod)
}

fn evict(shared: &Shared, t: &Target, eviction: &Value) -> Answer {
    if eviction["metadata"]["name"].as_str().is_some_and(|n| n != t.name) {
        return Err(status::bad_request(
            "name in URL does not match name in Eviction object".into(),
        ));
    }
    let mut store = shared.store.lock().expect("store lock");
    let pod = store
        .get(&PODS, &t.namespace, &t.name)
        .cloned()
        .ok_or_else(|| status::not_found(&PODS, &t.name))?;
    disruption::judge(&mut store, &pod)?;
    let options = &eviction["deleteOptions"];
    if let Err(e) = check_uid(t, "Pod", &pod, options) {
        // The budget was taken all the same; the controller sees it.
        after_change(shared, &mut store, &PODS, &t.namespace);
        return Err(e);
    }
    let grace = grace_period(&Query::new(), options, &pod);
    let condition = json!({
        "type": "DisruptionTarget", "status": "True", "lastProbeTime": null,
        "lastTransitionTime": now_rfc3339(), "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting",
    });
    delete_pod(shared, &mut store, pod, grace, Some(condition));
    after_change(shared, &mut store, &PODS, &t.namespace);
    Ok((201, status::success(201)))
}

/// What controllers do after a write: the disruption controller recomputes PDBs.
pub fn after_change(shared: &Shared, store: &mut Store, r: &Resource, namespace: &str) {
    let pdb_inputs = matches!(r.plural, "pods" | "poddisruptionbudgets");
    if pdb_inputs && !shared.disruption_paused.load(std::sync::atomic::Ordering::SeqCst) {
        disruption::reconcile(store, namespace);
    }
}

fn node_metrics(shared: &Shared, rest: &str) -> Response {
    let mode = shared.metrics.lock().expect("metrics lock").clone();
    let usage = match mode {
        MetricsMode::Absent => return text_response(StatusCode::NOT_FOUND, "404 page not found\n"),
        MetricsMode::Unavailable => {
            return text_response(StatusCode::SERVICE_UNAVAILABLE, "service unavailable\n");
        }
        MetricsMode::Serving(usage) => usage,
    };
    let item = |name: &str, (cpu, memory): &(String, String)| {
        json!({
            "metadata": { "name": name, "creationTimestamp": now_rfc3339() },
            "timestamp": now_rfc3339(),
            "window": "20.059s",
            "usage": { "cpu": cpu, "memory": memory },
        })
    };
    match rest.trim_end_matches('/') {
        "nodes" => {
            let items: Vec<Value> = usage.iter().map(|(n, u)| item(n, u)).collect();
            json_response(
                200,
                &json!({ "kind": "NodeMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items }),
            )
        }
        other => match other
            .strip_prefix("nodes/")
            .and_then(|n| usage.get(n).map(|u| (n, u)))
        {
            Some((name, u)) => {
                let mut one = item(name, u);
                one["kind"] = json!("NodeMetrics");
                one["apiVersion"] = json!("metrics.k8s.io/v1beta1");
                json_response(200, &one)
            }
            None => text_response(StatusCode::NOT_FOUND, "404 page not found\n"),
        },
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({ "type": kind, "object": object }).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// A watch: `200`, then newline-delimited events until `timeoutSeconds`,
/// a disconnect from the test, or the client going away.
fn watch(shared: Arc<Shared>, t: Target, query: &Query) -> Response {
    let (labels, fields) = match filters(query) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let timeout = Duration::from_secs(
        query
            .get("timeoutSeconds")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1800),
    );
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true" || b == "1");
    let send_initial = query.get("sendInitialEvents").is_some_and(|b| b == "true");
    let requested_rv = query
        .get("resourceVersion")
        .and_then(|rv| rv.parse::<u64>().ok())
        .filter(|rv| *rv > 0);
    let resource = t.resource;
    let bookmark_object = move |rv: u64, initial_end: bool| {
        let mut meta = json!({ "resourceVersion": rv.to_string() });
        if initial_end {
            meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        json!({ "kind": resource.kind, "apiVersion": resource.api_version(), "metadata": meta })
    };
    let wanted = {
        let (plural, namespace) = (t.resource.plural, t.namespace.clone());
        move |c: &Change| {
            c.plural == plural
                && (namespace.is_empty() || c.namespace == namespace)
                && labels.matches_labels(&c.object)
                && fields.matches_fields(&c.object)
        }
    };

    let mut first: Vec<Bytes> = Vec::new();
    let (mut live, mut last_rv) = {
        let store = shared.store.lock().expect("store lock");
        match requested_rv {
            Some(rv) if rv < store.oldest_rv() && !send_initial => {
                let expired =
                    status::expired(format!("too old resource version: {rv} ({})", store.oldest_rv()));
                let line = event_line("ERROR", &expired.body);
                return stream_response(futures::stream::iter([Ok::<_, std::convert::Infallible>(line)]));
            }
            Some(rv) if !send_initial => {
                first.extend(
                    store
                        .since(rv)
                        .iter()
                        .filter(|c| wanted(c))
                        .map(|c| event_line(c.kind.as_str(), &c.object)),
                );
            }
            _ => {
                for change in store.list(&t.resource, &t.namespace).map(|o| Change {
                    rv: 0,
                    plural: t.resource.plural,
                    namespace: o["metadata"]["namespace"].as_str().unwrap_or("").to_string(),
                    kind: EventType::Added,
                    object: o.clone(),
                }) {
                    if wanted(&change) {
                        first.push(event_line("ADDED", &change.object));
                    }
                }
                if send_initial && bookmarks {
                    first.push(event_line(
                        "BOOKMARK",
                        &bookmark_object(store.resource_version(), true),
                    ));
                }
            }
        }
        (store.changes.subscribe(), store.resource_version())
    };

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let mut closed = shared.close_watches.subscribe();
    let interval = shared.options.bookmark_interval;
    tokio::spawn(async move {
        for line in first {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            tokio::select! {
                // A disconnect wins over anything that arrives with it.
                biased;
                _ = closed.changed() => return,
                change = live.recv() => match change {
                    Ok(_) if closed.has_changed().unwrap_or(true) => return,
                    Ok(c) if c.rv > last_rv => {
                        last_rv = c.rv;
                        if wanted(&c) && tx.send(event_line(c.kind.as_str(), &c.object)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // Fell behind or the server stopped: end the stream, the client re-watches.
                    Err(RecvError::Lagged(_) | RecvError::Closed) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    // Everything up to the store's version is already in the channel
                    // (writes broadcast under the lock): pass it on, then bookmark.
                    let rv = shared.store.lock().expect("store lock").resource_version();
                    while let Ok(c) = live.try_recv() {
                        if closed.has_changed().unwrap_or(true) {
                            return;
                        }
                        if c.rv > last_rv {
                            last_rv = c.rv;
                            if wanted(&c) && tx.send(event_line(c.kind.as_str(), &c.object)).await.is_err() {
                                return;
                            }
                        }
                    }
                    last_rv = last_rv.max(rv);
                    if tx.send(event_line("BOOKMARK", &bookmark_object(last_rv, false))).await.is_err() {
                        return;
                    }
                }
                _ = &mut deadline => return,
            }
        }
    });
    stream_response(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::convert::Infallible>(line), rx))
    }))
}

fn stream_response<S>(stream: S) -> Response
where
    S: futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
{
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}
