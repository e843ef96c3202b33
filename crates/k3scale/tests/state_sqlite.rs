//! The SQLite state store on a real file: compare-and-swap, a journal that
//! survives a reopen, paginated events, and a lock that only its owner can
//! renew or release, contended by two connections at once.
#![allow(clippy::unwrap_used)]

use k3scale::state::sqlite::SqliteStore;
use k3scale::state::{Intent, ScaleEvent, StateError, StateStore};
use k3scale_core::Time;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("k3scale-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
    fn db(&self) -> PathBuf {
        // A directory that does not exist yet: the store creates it.
        self.0.join("var/lib/k3scale/state.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn values_are_compare_and_swap() {
    let dir = TempDir::new("kv");
    let s = SqliteStore::open(&dir.db()).unwrap();
    assert_eq!(s.get("cooldown").await.unwrap(), None);
    assert_eq!(s.put("cooldown", "t1", 0).await.unwrap(), 1);
    let lost = s.put("cooldown", "t2", 0).await.unwrap_err();
    assert_eq!(
        lost,
        StateError::Conflict {
            key: "cooldown".into(),
            expected: 0,
            found: 1
        }
    );
    assert_eq!(s.put("cooldown", "t2", 1).await.unwrap(), 2);
    let v = s.get("cooldown").await.unwrap().unwrap();
    assert_eq!((v.value.as_str(), v.version), ("t2", 2));
}

#[tokio::test]
async fn the_journal_survives_a_reopen() {
    let dir = TempDir::new("journal");
    let intent = |node: &str| Intent {
        kind: "drain".into(),
        pool: "workers".into(),
        node: node.into(),
        detail: json!({ "step": "cordon" }),
    };
    {
        let s = SqliteStore::open(&dir.db()).unwrap();
        let a = s.open(&intent("workers-a"), Time::from_secs(10)).await.unwrap();
        let b = s.open(&intent("workers-b"), Time::from_secs(11)).await.unwrap();
        s.update(a, &json!({ "step": "evict" })).await.unwrap();
        s.close(b, "removed", Time::from_secs(12)).await.unwrap();
        // Closing twice changes nothing.
        s.close(b, "again", Time::from_secs(13)).await.unwrap();
    }
    let s = SqliteStore::open(&dir.db()).unwrap();
    let open = s.unfinished().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].intent.node, "workers-a");
    assert_eq!(open[0].intent.detail, json!({ "step": "evict" }));
    assert_eq!(open[0].opened_at, Time::from_secs(10));
}

#[tokio::test]
async fn events_page_newest_first() {
    let dir = TempDir::new("events");
    let s = SqliteStore::open(&dir.db()).unwrap();
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

#[tokio::test]
async fn only_the_owner_renews_or_releases_a_lock_and_expiry_hands_it_over() {
    let dir = TempDir::new("lock");
    let a = SqliteStore::open(&dir.db()).unwrap();
    let b = SqliteStore::open(&dir.db()).unwrap();
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
}

#[test]
fn two_connections_never_hold_the_lock_together() {
    let dir = TempDir::new("contention");
    let path = dir.db();
    SqliteStore::open(&path).unwrap();
    let inside = Arc::new(AtomicBool::new(false));
    let wins = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|owner| {
            let (path, inside, wins) = (path.clone(), inside.clone(), wins.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let store = SqliteStore::open(&path).unwrap();
                    for _ in 0..200 {
                        let now = k3scale::provider::unix_now();
                        if store
                            .lock("act", owner, Duration::from_secs(60), now)
                            .await
                            .unwrap()
                            .is_ok()
                        {
                            assert!(!inside.swap(true, Ordering::SeqCst), "both hold the lock");
                            wins.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_micros(200));
                            inside.store(false, Ordering::SeqCst);
                            assert!(store.unlock("act", owner).await.unwrap());
                        }
                    }
                });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(wins.load(Ordering::SeqCst) > 0);
}

#[test]
fn an_unusable_path_is_an_error_naming_it() {
    let err = SqliteStore::open(std::path::Path::new("/proc/k3scale/state.db")).unwrap_err();
    assert!(err.to_string().contains("/proc/k3scale"), "{err}");
}

#[tokio::test]
async fn a_crashed_holders_lock_is_taken_over_only_from_that_holder() {
    let dir = TempDir::new("takeover");
    let s = SqliteStore::open(&dir.db()).unwrap();
    let ttl = Duration::from_secs(60);
    let t = Time::from_secs;
    assert_eq!(s.lock("act", "host-1", ttl, t(0)).await.unwrap(), Ok(()));
    assert!(
        !s.take_over("act", "host-2", "me", ttl, t(1)).await.unwrap(),
        "host-2 does not hold it"
    );
    assert!(s.take_over("act", "host-1", "me", ttl, t(1)).await.unwrap());
    let holder = s.lock("act", "other", ttl, t(2)).await.unwrap().unwrap_err();
    assert_eq!(holder.owner, "me");
}
