//! The HTTP server: `/healthz`, `/readyz`, `/metrics`, `/api/status`,
//! `/api/events` and a status page at `/` that refreshes itself.

use crate::kube::KubeCluster;
use crate::kube::review::{Denied, Reviewer};
use crate::state::StateStore;
use crate::status::Status;
use crate::telemetry::Telemetry;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

/// What the handlers read; the daemon writes `status` after each reconcile.
#[derive(Debug)]
pub struct Shared {
    pub telemetry: Telemetry,
    pub store: Arc<dyn StateStore>,
    pub status: RwLock<Status>,
    pub cluster: Arc<KubeCluster>,
}

impl Shared {
    pub fn new(store: Arc<dyn StateStore>, cluster: Arc<KubeCluster>, identity: &str) -> Arc<Shared> {
        Arc::new(Shared {
            telemetry: Telemetry::new(),
            store,
            status: RwLock::new(Status {
                identity: identity.to_string(),
                ..Status::default()
            }),
            cluster,
        })
    }

    pub fn status(&self) -> Status {
        self.status.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_status(&self, status: Status) {
        *self.status.write().unwrap_or_else(|e| e.into_inner()) = status;
    }
}

/// Every route open to anyone who can connect (`server.auth: none`).
pub fn router(shared: Arc<Shared>) -> Router {
    guarded_router(shared, None)
}

/// With a reviewer, `/`, `/metrics` and `/api/*` need a bearer token the
/// API server accepts for `get` on the path, except from loopback; the
/// probes stay open. Serve it with `into_make_service_with_connect_info`.
pub fn guarded_router(shared: Arc<Shared>, reviewer: Option<Arc<Reviewer>>) -> Router {
    let probes = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready));
    let mut reads = Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/api/events", get(events));
    if let Some(reviewer) = reviewer {
        reads = reads.route_layer(axum::middleware::from_fn_with_state(reviewer, guard));
    }
    probes.merge(reads).with_state(shared)
}

/// Let a caller through only with a token the API server vouches for.
async fn guard(
    State(reviewer): State<Arc<Reviewer>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_canonical());
    if peer.is_some_and(|ip| ip.is_loopback()) {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required (server.auth: kubernetes)\n",
        )
            .into_response();
    };
    match reviewer.check(token, request.uri().path()).await {
        Ok(()) => next.run(request).await,
        Err(Denied::Unauthenticated(_)) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "the API server does not accept this token\n",
        )
            .into_response(),
        Err(denied @ Denied::Forbidden { .. }) => {
            (StatusCode::FORBIDDEN, format!("{denied}\n")).into_response()
        }
        Err(Denied::Unavailable(why)) => {
            tracing::warn!(error = %why, "cannot review a caller's token: turned away");
            (StatusCode::SERVICE_UNAVAILABLE, "cannot check the token now\n").into_response()
        }
    }
}

/// Ready when the caches are synced (listed, their watches not failing),
/// the state store answers and Lease rounds succeed; a
/// metrics source that fails is reported but does not make k3scale unready
/// (pending-pod scale-up still works without it).
async fn ready(State(s): State<Arc<Shared>>) -> Response {
    let mut body = String::new();
    let stale = s.cluster.stale();
    let synced = stale.is_empty();
    let _ = if synced {
        writeln!(body, "caches: synced")
    } else {
        writeln!(body, "caches: not synced ({})", stale.join(", "))
    };
    let store = s.store.get("stamps").await;
    let _ = writeln!(
        body,
        "state store: {}",
        match &store {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        }
    );
    let status = s.status();
    let _ = writeln!(
        body,
        "lease: {}",
        match (&status.lease_error, &status.lease_holder) {
            (Some(e), _) => format!("error: {e}"),
            (None, Some(holder)) => format!("held by {holder}"),
            (None, None) => "not held".to_string(),
        }
    );
    let _ = writeln!(
        body,
        "metrics: {}",
        status
            .metrics_error
            .as_deref()
            .map_or("ok".to_string(), |e| format!("unavailable: {e}"))
    );
    // A replica whose Lease rounds fail (RBAC, a missing namespace) can
    // never take over: not ready, so the operator sees it.
    let code = if synced && store.is_ok() && status.lease_error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body).into_response()
}

/// OpenMetrics for clients that ask for it (Prometheus does), else the
/// Prometheus text format.
async fn metrics(State(s): State<Arc<Shared>>, headers: axum::http::HeaderMap) -> Response {
    let wants_om = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if wants_om {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            s.telemetry.encode_openmetrics(),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            s.telemetry.encode_prometheus(),
        )
            .into_response()
    }
}

async fn status(State(s): State<Arc<Shared>>) -> Json<Status> {
    Json(s.status())
}

#[derive(Debug, Deserialize)]
struct Page {
    before: Option<u64>,
    limit: Option<usize>,
}

async fn events(State(s): State<Arc<Shared>>, Query(page): Query<Page>) -> Response {
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    match s.store.events(page.before, limit).await {
        Ok(events) => {
            let next = (events.len() == limit)
                .then(|| events.last().map(|e| e.id))
                .flatten();
            Json(serde_json::json!({ "events": events, "next_before": next })).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn page(State(s): State<Arc<Shared>>) -> Html<String> {
    let st = s.status();
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=10>\
         <title>k3scale</title><style>body{{font-family:sans-serif;margin:2em}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}\
         .warn{{color:#a40}}.failed{{color:#fff;background:#b00}}</style></head><body><h1>k3scale</h1><p>{} &middot; {}{}</p>",
        esc(&st.identity),
        if st.leader { "leader" } else { "standby" },
        if st.dry_run {
            " &middot; <b>dry run</b>"
        } else {
            ""
        }
    );
    if let Some(e) = &st.last_error {
        let _ = write!(h, "<p class=warn>last reconcile failed: {}</p>", esc(e));
    }
    if let Some(e) = &st.metrics_error {
        let _ = write!(h, "<p class=warn>metrics unavailable: {}</p>", esc(e));
    }
    h.push_str("<h2>Pools</h2><table><tr><th>pool</th><th>nodes</th><th>launching</th><th>min</th><th>max</th><th>$/h each</th><th>launches</th></tr>");
    for p in &st.pools {
        use k3scale_core::lifecycle::HoldCause;
        let launches = match p.held {
            None => String::new(),
            Some(HoldCause::Failed) => format!(
                "<span class=failed>failed: k3scale pool reset {}</span>",
                esc(&p.name)
            ),
            Some(HoldCause::NoCapacity) => "<span class=warn>held: no capacity</span>".into(),
            Some(HoldCause::Retry) => "<span class=warn>held: provider failing, retrying</span>".into(),
            Some(HoldCause::JoinFailures) => "<span class=warn>held: nodes failed to join</span>".into(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{launches}</td></tr>",
            esc(&p.name),
            p.nodes,
            p.launching,
            p.min,
            p.max,
            p.price_per_hour
        );
    }
    h.push_str("</table><h2>Nodes</h2><table><tr><th>node</th><th>pool</th><th>state</th><th>requested</th><th>pods</th><th>scale-down</th></tr>");
    for n in &st.nodes {
        let state = match (n.ready, n.cordoned) {
            (_, true) => "cordoned",
            _ if n.starting.is_some() => "starting",
            (true, _) => "ready",
            _ => "not ready",
        };
        let why = if n.removable {
            "removable".to_string()
        } else {
            esc(&n.kept_because.join("; "))
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{state}</td><td>{:.0}%</td><td>{}</td><td>{why}</td></tr>",
            esc(&n.name),
            esc(n.pool.as_deref().unwrap_or("(not managed)")),
            n.requested * 100.0,
            n.pods
        );
    }
    h.push_str("</table>");
    if !st.draining.is_empty() {
        let _ = write!(h, "<p>draining now: {}</p>", esc(&st.draining.join(", ")));
    }
    h.push_str("<h2>Last decision</h2><ul>");
    for r in &st.reasons {
        let _ = write!(h, "<li>{}</li>", esc(r));
    }
    let _ = write!(
        h,
        "</ul><p>cooldowns: scale-up {} s, scale-down {} s &middot; unschedulable pods: {}</p>\
         <p><a href=/api/status>status JSON</a> &middot; <a href=/api/events>events</a> &middot; <a href=/metrics>metrics</a></p></body></html>",
        st.cooldown_up_s, st.cooldown_down_s, st.unschedulable_pods
    );
    Html(h)
}
