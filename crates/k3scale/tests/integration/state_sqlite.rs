//! The SQLite state store on a real file: the behaviour every store must
//! have (see `statefix`), each handle its own connection.

use k3scale::state::StateStore;
use k3scale::state::sqlite::SqliteStore;
use k3scale_testsupport::support::TempDir;
use std::sync::Arc;

/// A store in a directory that does not exist yet: the store creates it.
async fn sqlite() -> (TempDir, impl Fn() -> Arc<dyn StateStore> + Sync) {
    let dir = TempDir::new("state");
    let db = dir.join("var/lib/k3scale/state.db");
    (dir, move || {
        Arc::new(SqliteStore::open(&db).unwrap()) as Arc<dyn StateStore>
    })
}

k3scale_testsupport::state_store_suite!(sqlite(), 200);

#[test]
fn an_unusable_path_is_an_error_naming_it() {
    let err = SqliteStore::open(std::path::Path::new("/proc/k3scale/state.db")).unwrap_err();
    assert!(err.to_string().contains("/proc/k3scale"), "{err}");
}
