//! `k3scale once` as a cron job runs it (see `oncefix`): a dry run, a run
//! that finds the lock taken, and a run that launches an agent.

use k3scale::provider::unix_now;
use k3scale::state::StateStore;
use k3scale::state::sqlite::SqliteStore;
use k3scale_testapi::MetricsMode;
use k3scale_testsupport::{kubefix, oncefix, support};
use kubefix::*;
use oncefix::{once, setup};
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test]
async fn once_launches_for_a_pending_pod_and_respects_the_lock() {
    let s = setup("once").await;
    s.k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));
    s.k.server.set_metrics(MetricsMode::Serving(BTreeMap::from([(
        "server".into(),
        ("300m".into(), "1Gi".into()),
    )])));

    // Dry run: the decision, printed; nothing created, not even the state database.
    let (code, _, output) = once(&s, None, &["--dry-run"]).await;
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("would launch: 1 nodes"), "{output}");
    assert!(s.docker.containers().is_empty());
    assert!(
        !s.dir.join("state.db").exists(),
        "a dry run leaves no state behind"
    );

    // Another k3scale (on another host) holds the lock: this run does not act.
    let store = SqliteStore::open(&s.dir.join("state.db")).unwrap();
    store
        .lock(
            "k3scale-act",
            "other-host-42",
            Duration::from_secs(60),
            unix_now(),
        )
        .await
        .unwrap()
        .unwrap();
    let (code, _, output) = once(&s, None, &[]).await;
    assert_eq!(code, Some(3), "{output}");
    assert!(output.contains("other-host-42"), "{output}");
    // The expiry as people read it (RFC 3339), not a raw epoch.
    let year = jiff::Timestamp::now().strftime("%Y-").to_string();
    assert!(output.contains(&year) && output.contains('T'), "{output}");
    assert!(s.docker.containers().is_empty());
    // A dry run changes nothing, so it previews while the lock is held.
    let (code, _, output) = once(&s, None, &["--dry-run"]).await;
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("would launch: 1 nodes"), "{output}");
    assert!(s.docker.containers().is_empty());
    assert!(store.unlock("k3scale-act", "other-host-42").await.unwrap());

    let (code, _, output) = once(&s, None, &["-o", "json"]).await;
    assert_eq!(code, Some(0), "{output}");
    // stdout (the JSON) comes first, then stderr.
    let done: serde_json::Value = serde_json::Deserializer::from_str(&output)
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    let launched = done["launched"].as_array().unwrap();
    assert_eq!(launched.len(), 1, "{output}");
    assert_eq!(launched[0]["pool"], "workers", "{output}");
    assert_eq!(s.docker.containers(), [launched[0]["node"].as_str().unwrap()]);
    assert!(
        !output.contains(support::TOKEN),
        "the token never reaches the output"
    );
    // The lock was released, and the launch is on record.
    assert!(
        store
            .lock("k3scale-act", "me", Duration::from_secs(1), unix_now())
            .await
            .unwrap()
            .is_ok()
    );
    assert_eq!(store.events(None, 5).await.unwrap()[0].event.kind, "scale-up");
}
