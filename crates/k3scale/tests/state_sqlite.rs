//! The SQLite state store on a real file: the behaviour every store must
//! have (see `statefix`), each handle its own connection.
#![allow(clippy::unwrap_used)]

mod statefix;

use k3scale::state::StateStore;
use k3scale::state::sqlite::SqliteStore;
use std::path::PathBuf;
use std::sync::Arc;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("k3scale-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    /// A directory that does not exist yet: the store creates it.
    fn opener(&self) -> impl Fn() -> Arc<dyn StateStore> + Sync + use<> {
        let db = self.0.join("var/lib/k3scale/state.db");
        move || Arc::new(SqliteStore::open(&db).unwrap()) as Arc<dyn StateStore>
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
    statefix::values_are_compare_and_swap(&dir.opener()).await;
}

#[tokio::test]
async fn the_journal_survives_a_reopen() {
    let dir = TempDir::new("journal");
    statefix::the_journal_survives_a_reopen(&dir.opener()).await;
}

#[tokio::test]
async fn events_page_newest_first() {
    let dir = TempDir::new("events");
    statefix::events_page_newest_first(&dir.opener()).await;
}

#[tokio::test]
async fn only_the_owner_renews_or_releases_a_lock() {
    let dir = TempDir::new("lock");
    statefix::only_the_owner_renews_or_releases_a_lock(&dir.opener()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connections_never_hold_the_lock_together() {
    let dir = TempDir::new("contention");
    statefix::two_handles_never_hold_the_lock_together(&dir.opener(), 200).await;
}

#[test]
fn an_unusable_path_is_an_error_naming_it() {
    let err = SqliteStore::open(std::path::Path::new("/proc/k3scale/state.db")).unwrap_err();
    assert!(err.to_string().contains("/proc/k3scale"), "{err}");
}
