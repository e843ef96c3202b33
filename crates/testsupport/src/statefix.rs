//! What every state store must do, checked the same way for each backend.
//! `open` gives a new handle on the same underlying store (a reopened file,
//! another replica's client).

use k3scale::state::{Intent, ScaleEvent, StateError, StateStore};
use k3scale_core::Time;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

pub type Open<'a> = &'a (dyn Fn() -> Arc<dyn StateStore> + Sync);

/// The state-store behaviour suite as tests, one per behaviour, for a
/// backend: `$setup` is an async expression giving `(guard, open)` (the
/// guard keeps the backend alive: a temp dir, a test API server, an
/// emulator), `$rounds` how many lock contention rounds to run.
///
/// ```ignore
/// k3scale_testsupport::state_store_suite!(sqlite_setup(), 200);
/// ```
#[macro_export]
macro_rules! state_store_suite {
    ($setup:expr, $rounds:expr) => {
        #[tokio::test]
        async fn values_are_compare_and_swap() {
            let (_guard, open) = $setup.await;
            $crate::statefix::values_are_compare_and_swap(&open).await;
        }

        #[tokio::test]
        async fn the_journal_survives_a_reopen() {
            let (_guard, open) = $setup.await;
            $crate::statefix::the_journal_survives_a_reopen(&open).await;
        }

        #[tokio::test]
        async fn events_page_newest_first() {
            let (_guard, open) = $setup.await;
            $crate::statefix::events_page_newest_first(&open).await;
        }

        #[tokio::test]
        async fn only_the_owner_renews_or_releases_a_lock() {
            let (_guard, open) = $setup.await;
            $crate::statefix::only_the_owner_renews_or_releases_a_lock(&open).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn two_handles_never_hold_the_lock_together() {
            let (_guard, open) = $setup.await;
            $crate::statefix::two_handles_never_hold_the_lock_together(&open, $rounds).await;
        }
    };
}

pub async fn values_are_compare_and_swap(open: Open<'_>) {
    let s = open();
    assert_eq!(s.get("lifecycle/workers").await.unwrap(), None);
    assert_eq!(s.put("lifecycle/workers", "t1", 0).await.unwrap(), 1);
    let lost = s.put("lifecycle/workers", "t2", 0).await.unwrap_err();
    assert_eq!(
        lost,
        StateError::Conflict {
            key: "lifecycle/workers".into(),
            expected: 0,
            found: 1
        }
    );
    assert_eq!(s.put("lifecycle/workers", "t2", 1).await.unwrap(), 2);
    let v = open().get("lifecycle/workers").await.unwrap().unwrap();
    assert_eq!((v.value.as_str(), v.version), ("t2", 2));
}

pub async fn the_journal_survives_a_reopen(open: Open<'_>) {
    let intent = |node: &str| Intent {
        kind: k3scale::state::IntentKind::Drain,
        pool: "workers".into(),
        node: node.into(),
        detail: json!({ "step": "cordon" }),
    };
    {
        let s = open();
        let a = s.open(&intent("workers-a"), Time::from_secs(10)).await.unwrap();
        let b = s.open(&intent("workers-b"), Time::from_secs(11)).await.unwrap();
        s.update(a, &json!({ "step": "evict" })).await.unwrap();
        s.close(b, "removed", Time::from_secs(12)).await.unwrap();
        // Closing twice changes nothing.
        s.close(b, "again", Time::from_secs(13)).await.unwrap();
    }
    let open_entries = open().unfinished().await.unwrap();
    assert_eq!(open_entries.len(), 1);
    assert_eq!(open_entries[0].intent.node, "workers-a");
    assert_eq!(open_entries[0].intent.detail, json!({ "step": "evict" }));
    assert_eq!(open_entries[0].opened_at, Time::from_secs(10));
}

pub async fn events_page_newest_first(open: Open<'_>) {
    let s = open();
    for i in 0..25u64 {
        s.push_event(&ScaleEvent {
            at: Time::from_secs(i),
            kind: "scale-up".into(),
            pool: "workers".into(),
            nodes: vec![format!("workers-{i}")],
            message: format!("event {i}"),
        })
        .await
        .unwrap();
    }
    let first = s.events(None, 10).await.unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(first[0].event.message, "event 24");
    let next = s.events(Some(first[9].id), 10).await.unwrap();
    assert_eq!(next[0].event.message, "event 14");
    let last = s.events(Some(next[9].id), 10).await.unwrap();
    assert_eq!(last.len(), 5);
    assert_eq!(last[4].event.message, "event 0");
}

pub async fn only_the_owner_renews_or_releases_a_lock(open: Open<'_>) {
    let (a, b) = (open(), open());
    let ttl = Duration::from_secs(30);
    let t = Time::from_secs;
    assert_eq!(a.lock("act", "a", ttl, t(0)).await.unwrap(), Ok(()));
    let refused = b.lock("act", "b", ttl, t(10)).await.unwrap().unwrap_err();
    assert_eq!((refused.owner.as_str(), refused.expires_at), ("a", t(30)));
    assert!(!b.unlock("act", "b").await.unwrap(), "b cannot release a's lock");
    assert_eq!(a.lock("act", "a", ttl, t(20)).await.unwrap(), Ok(()), "a renews");
    assert!(
        b.lock("act", "b", ttl, t(49)).await.unwrap().is_err(),
        "renewed until 50"
    );
    assert_eq!(
        b.lock("act", "b", ttl, t(50)).await.unwrap(),
        Ok(()),
        "expired: b takes it"
    );
    assert!(a.lock("act", "a", ttl, t(51)).await.unwrap().is_err());
    assert!(!a.unlock("act", "a").await.unwrap());
    assert!(b.unlock("act", "b").await.unwrap());
    assert_eq!(
        a.lock("act", "a", ttl, t(52)).await.unwrap(),
        Ok(()),
        "free again"
    );
    // A crashed holder's lock is taken over only from that holder.
    assert!(!b.take_over("act", "c", "b", ttl, t(53)).await.unwrap());
    assert!(b.take_over("act", "a", "b", ttl, t(53)).await.unwrap());
    assert_eq!(
        a.lock("act", "a", ttl, t(54)).await.unwrap().unwrap_err().owner,
        "b"
    );
}

/// Two handles race for the lock `rounds` times each; never both inside.
pub async fn two_handles_never_hold_the_lock_together(open: Open<'_>, rounds: usize) {
    let inside = Arc::new(AtomicBool::new(false));
    let wins = Arc::new(AtomicUsize::new(0));
    let contender = |owner: &'static str, store: Arc<dyn StateStore>| {
        let (inside, wins) = (inside.clone(), wins.clone());
        async move {
            for _ in 0..rounds {
                let now = k3scale::provider::unix_now();
                if store
                    .lock("race", owner, Duration::from_secs(60), now)
                    .await
                    .unwrap()
                    .is_ok()
                {
                    assert!(!inside.swap(true, Ordering::SeqCst), "both hold the lock");
                    wins.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    inside.store(false, Ordering::SeqCst);
                    assert!(store.unlock("race", owner).await.unwrap());
                }
            }
        }
    };
    let a = tokio::spawn(contender("a", open()));
    let b = tokio::spawn(contender("b", open()));
    a.await.unwrap();
    b.await.unwrap();
    assert!(wins.load(Ordering::SeqCst) > 0);
}
