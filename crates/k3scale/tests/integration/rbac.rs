//! The shipped RBAC (`deploy/kubernetes/k3scale/rbac.yaml`) is exactly what
//! k3scale needs. k3scale runs a scale-up and a drain, holds the leader
//! Lease and uses the Kubernetes state store, against the test API server
//! enforcing those rules. Then the recorded requests are checked both ways:
//! every request is allowed (in its namespace), and every rule is used.

use k3scale_testsupport::{kubefix, rig, statefix};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k3scale::kube::lease::LeaseLock;
use k3scale::provider::unix_now;
use k3scale::state::StateStore;
use k3scale::state::kubernetes::KubernetesStore;
use k3scale_core::lease::ElectionConfig;
use k3scale_testapi::resources::{NODES, PODS};
use k3scale_testapi::{RequestRecord, Rule};
use kubefix::*;

const NAMESPACE: &str = "k3scale-system";

/// One rule of a ClusterRole (namespace `None`) or a Role.
#[derive(Debug, Clone)]
struct Scoped {
    role: String,
    namespace: Option<String>,
    rule: Rule,
}

fn shipped_rules() -> Vec<Scoped> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/k3scale/rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = Vec::new();
    for doc in text.split("\n---\n") {
        let v: serde_json::Value = serde_saphyr::from_str(doc).unwrap();
        let kind = v["kind"].as_str().unwrap();
        if kind != "ClusterRole" && kind != "Role" {
            continue;
        }
        let strings = |x: &serde_json::Value| -> Vec<String> {
            x.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        for r in v["rules"].as_array().unwrap() {
            out.push(Scoped {
                role: format!("{kind}/{}", v["metadata"]["name"].as_str().unwrap()),
                namespace: (kind == "Role").then(|| v["metadata"]["namespace"].as_str().unwrap().to_string()),
                rule: Rule {
                    api_groups: strings(&r["apiGroups"]),
                    resources: strings(&r["resources"]),
                    verbs: strings(&r["verbs"]),
                },
            });
        }
    }
    out
}

fn allows(s: &Scoped, r: &RequestRecord) -> bool {
    s.rule.allows(&r.verb, &r.group, &r.resource) && s.namespace.as_ref().is_none_or(|ns| *ns == r.namespace)
}

#[tokio::test]
async fn the_shipped_rbac_allows_every_call_and_nothing_unused() {
    let rules = shipped_rules();
    assert!(
        rules.iter().all(|s| !s.rule.verbs.contains(&"*".to_string())),
        "no wildcards"
    );
    let r = rig::rig("rbac").await;
    // The test server enforces the union; namespaces are checked below.
    r.k.server
        .set_permissions(Some(rules.iter().map(|s| s.rule.clone()).collect()));

    // Scale up for a pending pod, then drain the idle agent away.
    let mut controller = r.controller;
    r.k.server.set_metrics(k3scale_testapi::MetricsMode::Serving(
        [("server".to_string(), ("200m".to_string(), "512Mi".to_string()))].into(),
    ));
    r.k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));
    let cluster = controller.cluster();
    eventually(10, "pending pod seen", || {
        let mut s = k3scale_core::Snapshot::default();
        cluster.fill(&mut s);
        s.pods
            .iter()
            .any(|p| p.name == "web-0" && p.unschedulable_since.is_some())
    })
    .await;
    let up = controller.reconcile(unix_now()).await.unwrap();
    assert_eq!(up.launched.len(), 1, "{:?} {:?}", up.decision.reasons, up.failed);
    let agent = up.launched[0].node.clone();
    register(&r.k, &agent);
    r.k.apply(&pod("shop", "web-0", "web", Some(&agent), "1500m", "1Gi"));
    eventually(10, "pod placed on the agent", || {
        cluster.pods_on_node(&agent).len() == 1
    })
    .await;
    // The load goes; one small pod stays, to be evicted by the drain.
    r.k.server.remove(&PODS, "shop", "web-0");
    r.k.apply(&pod("shop", "tiny-0", "tiny", Some(&agent), "10m", "16Mi"));
    r.k.server.set_metrics(k3scale_testapi::MetricsMode::Serving(
        [
            ("server".to_string(), ("200m".to_string(), "512Mi".to_string())),
            (agent.clone(), ("10m".to_string(), "100Mi".to_string())),
        ]
        .into(),
    ));
    eventually(10, "only the small pod left", || {
        cluster
            .pods_on_node(&agent)
            .iter()
            .map(|p| p.name.as_str())
            .eq(["tiny-0"])
    })
    .await;
    let down = controller.reconcile(unix_now()).await.unwrap();
    assert_eq!(
        down.removed,
        std::slice::from_ref(&agent),
        "{:?} {:?}",
        down.decision.reasons,
        down.failed
    );
    assert!(r.k.server.get(&NODES, "", &agent).is_none());

    // The leader Lease in k3scale's namespace, as `k3scale run` holds it.
    let election = ElectionConfig {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(300),
    };
    let mut lease = LeaseLock::new(
        cluster.client().clone(),
        NAMESPACE,
        "k3scale-home",
        "k3scale-a",
        election,
    );
    let now = unix_now();
    assert!(lease.round(now).await.unwrap(), "elected");
    assert!(lease.round(now).await.unwrap(), "renewed");
    lease.release(now).await.unwrap();

    // state.backend: kubernetes, in k3scale's namespace.
    let client = cluster.client().clone();
    let open = move || Arc::new(KubernetesStore::new(client.clone(), NAMESPACE)) as Arc<dyn StateStore>;
    statefix::values_are_compare_and_swap(&open).await;
    statefix::the_journal_survives_a_reopen(&open).await;
    statefix::events_page_newest_first(&open).await;
    statefix::only_the_owner_renews_or_releases_a_lock(&open).await;

    // server.auth: kubernetes, as a scrape from another pod meets it.
    http_callers_are_reviewed(&r.k, cluster.clone(), open()).await;

    let requests = r.k.server.requests();
    let denied: BTreeSet<String> = requests
        .iter()
        .filter(|q| !rules.iter().any(|s| allows(s, q)))
        .map(|q| {
            format!(
                "{} {}/{} in {:?} ({})",
                q.verb, q.group, q.resource, q.namespace, q.name
            )
        })
        .collect();
    assert!(
        denied.is_empty(),
        "calls the shipped RBAC does not allow:\n{}",
        Vec::from_iter(denied).join("\n")
    );
    let mut unused = Vec::new();
    for s in &rules {
        for group in &s.rule.api_groups {
            for resource in &s.rule.resources {
                for verb in &s.rule.verbs {
                    let used = requests.iter().any(|q| {
                        q.verb == *verb && q.group == *group && q.resource == *resource && allows(s, q)
                    });
                    if !used {
                        unused.push(format!("{}: {verb} {group}/{resource}", s.role));
                    }
                }
            }
        }
    }
    assert!(
        unused.is_empty(),
        "rules k3scale never needed:\n{}",
        unused.join("\n")
    );
}

/// `server.auth: kubernetes`: a token the API server does not know is 401,
/// a known user without a grant 403, a granted one reads; loopback callers
/// and the probes need no token.
async fn http_callers_are_reviewed(
    k: &Kube,
    cluster: Arc<k3scale::kube::KubeCluster>,
    store: Arc<dyn StateStore>,
) {
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use k3scale::kube::review::Reviewer;
    use k3scale::server::{Shared, guarded_router};
    use tower::ServiceExt;

    k.server.set_reviews(k3scale_testapi::Reviews {
        tokens: [
            (
                "prom-token".to_string(),
                ("system:serviceaccount:monitoring:prometheus".to_string(), vec![]),
            ),
            (
                "dev-token".to_string(),
                ("jane".to_string(), vec!["devs".to_string()]),
            ),
        ]
        .into(),
        grants: vec![(
            "system:serviceaccount:monitoring:prometheus".to_string(),
            "/metrics".to_string(),
        )],
    });
    let shared = Shared::new(store, cluster.clone(), "k3scale-a");
    let app = guarded_router(shared, Some(Arc::new(Reviewer::new(cluster.client().clone()))));
    let call = |path: &str, token: Option<&str>, from: &str| {
        let mut request = http::Request::get(path);
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let mut request = request.body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(from.parse::<std::net::SocketAddr>().unwrap()));
        let app = app.clone();
        async move { app.oneshot(request).await.unwrap().status().as_u16() }
    };
    let pod = "10.42.1.7:40000";
    assert_eq!(call("/metrics", None, pod).await, 401);
    assert_eq!(call("/metrics", Some("stolen"), pod).await, 401);
    assert_eq!(call("/metrics", Some("dev-token"), pod).await, 403);
    assert_eq!(call("/api/status", Some("prom-token"), pod).await, 403);
    assert_eq!(call("/metrics", Some("prom-token"), pod).await, 200);
    // The answer is kept: the same scrape again asks the API server nothing.
    let asked = k.server.requests().len();
    assert_eq!(call("/metrics", Some("prom-token"), pod).await, 200);
    assert_eq!(k.server.requests().len(), asked);
    // kubectl port-forward arrives on loopback; the kubelet's probes carry no token.
    assert_eq!(call("/api/status", None, "127.0.0.1:5555").await, 200);
    assert_eq!(call("/healthz", None, pod).await, 200);
    assert_ne!(call("/readyz", None, pod).await, 401);
}
