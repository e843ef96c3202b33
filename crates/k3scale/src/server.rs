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
use std::sync::{Arc, Mutex, RwLock};

/// What the handlers read; the daemon writes `status` after each reconcile.
#[derive(Debug)]
pub struct Shared {
    pub telemetry: Telemetry,
    pub store: Arc<dyn StateStore>,
    pub status: RwLock<Status>,
    pub cluster: Arc<KubeCluster>,
    /// The last day, a sample a minute (the page's chart and cost).
    samples: Mutex<crate::samples::Samples>,
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
            samples: Mutex::new(crate::samples::Samples::default()),
        })
    }

    pub fn status(&self) -> Status {
        self.status.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_status(&self, status: Status) {
        *self.status.write().unwrap_or_else(|e| e.into_inner()) = status;
    }

    /// A new status at `now`: sampled for the day's history, with today's
    /// cost added (to it and to `/metrics`).
    pub fn publish(&self, mut status: Status, now: k3scale_core::Time) {
        let today = {
            let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
            samples.record(crate::samples::Sample::of(&status, now));
            samples.today(now)
        };
        if let Some(t) = &today {
            self.telemetry.set_today(t);
        }
        status.today = today;
        self.set_status(status);
    }

    /// A copy of the day's samples.
    pub fn samples(&self) -> crate::samples::Samples {
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).clone()
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

async fn page(State(s): State<Arc<Shared>>) -> Html<String> {
    let now = crate::provider::unix_now();
    let status = s.status();
    let day_ago = now
        .as_millis()
        .saturating_sub(crate::samples::KEEP.as_millis() as u64);
    // The store may be down: the page still shows what this process knows.
    let events: Vec<_> = s
        .store
        .events(None, 200)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.event.at.as_millis() >= day_ago)
        .collect();
    let drains = drains_in_progress(&s).await;
    let samples = s.samples();
    Html(crate::page::render(&crate::page::View {
        status: &status,
        samples: &samples,
        events: &events,
        drains: &drains,
        now,
    }))
}

/// Drains the journal holds open (whoever runs them: a standby shows the
/// leader's), with the PodDisruptionBudget of each refused pod.
async fn drains_in_progress(s: &Shared) -> Vec<crate::page::DrainRow> {
    let entries = s.store.unfinished().await.unwrap_or_default();
    let mut rows: Vec<crate::page::DrainRow> = entries
        .into_iter()
        .filter(|e| e.intent.kind == crate::state::IntentKind::Drain)
        .filter_map(|e| {
            let drain: k3scale_core::drain::Drain = serde_json::from_value(e.intent.detail).ok()?;
            Some(crate::page::DrainRow {
                pool: e.intent.pool,
                progress: drain.progress(),
                pdbs: Default::default(),
            })
        })
        .collect();
    if rows.iter().any(|r| !r.progress.refused.is_empty()) {
        let mut snapshot = k3scale_core::Snapshot::default();
        s.cluster.fill(&mut snapshot);
        let pdb_of: std::collections::BTreeMap<String, String> = snapshot
            .pods
            .iter()
            .filter_map(|p| Some((p.key(), p.pdb.clone()?)))
            .collect();
        for row in &mut rows {
            for r in &row.progress.refused {
                if let Some(pdb) = pdb_of.get(&r.pod) {
                    row.pdbs.insert(r.pod.clone(), pdb.clone());
                }
            }
        }
    }
    rows
}
