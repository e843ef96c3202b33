//! The DynamoDB state store against a local AWS emulator (moto): the same
//! behaviour suite as SQLite and Kubernetes, lock contention between two
//! owners, and throttling / 5xx answers injected by a local proxy (retried
//! with backoff, then a clear error without secrets).

use k3scale_testsupport::awsfix;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use k3scale::state::dynamodb::DynamoStore;
use k3scale::state::{StateError, StateStore};

/// Stores on `table`, reaching the emulator through [`awsfix::serial_proxy`]
/// so lock races are decided atomically, as DynamoDB does.
async fn store_on(moto: &awsfix::Moto, table: &str) -> impl Fn() -> Arc<dyn StateStore> + Sync + use<> {
    awsfix::state_table(&moto.sdk_config(), table).await;
    let config = awsfix::sdk_config(&awsfix::serial_proxy(moto.url.clone()).await);
    let table = table.to_string();
    move || {
        Arc::new(DynamoStore::with_client(
            aws_sdk_dynamodb::Client::new(&config),
            &table,
        )) as Arc<dyn StateStore>
    }
}

/// A table of its own on an emulator of its own.
async fn dynamodb() -> (awsfix::Moto, impl Fn() -> Arc<dyn StateStore> + Sync) {
    let moto = awsfix::Moto::start().await;
    let open = store_on(&moto, "k3scale-state").await;
    (moto, open)
}

k3scale_testsupport::state_store_suite!(dynamodb(), 40);

#[tokio::test]
async fn throttling_is_retried_with_backoff_and_an_outage_is_a_clear_error() {
    let moto = awsfix::Moto::start().await;
    awsfix::state_table(&moto.sdk_config(), "k3scale-faults").await;

    // Two throttled answers, then the emulator: the SDK's standard retry
    // (3 attempts, exponential backoff) gets the write through.
    let throttle_twice =
        |n: usize, _: &str| (n < 2).then(|| awsfix::dynamodb_error(400, "ThrottlingException"));
    let (url, seen) = awsfix::faulty_proxy(moto.url.clone(), throttle_twice).await;
    let store = DynamoStore::with_client(
        aws_sdk_dynamodb::Client::new(&awsfix::sdk_config(&url)),
        "k3scale-faults",
    );
    assert_eq!(store.put("cooldown/workers", "t1", 0).await.unwrap(), 1);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        3,
        "two throttled attempts and one that landed"
    );
    assert_eq!(store.get("cooldown/workers").await.unwrap().unwrap().value, "t1");

    // A service that keeps answering 500: retried, then Unavailable, and
    // the error names the table but carries no credentials.
    let (url, seen) = awsfix::faulty_proxy(moto.url.clone(), |_, _| {
        Some(awsfix::dynamodb_error(500, "InternalServerError"))
    })
    .await;
    let store = DynamoStore::with_client(
        aws_sdk_dynamodb::Client::new(&awsfix::sdk_config(&url)),
        "k3scale-faults",
    );
    let err = store.get("cooldown/workers").await.unwrap_err();
    assert!(seen.load(Ordering::SeqCst) >= 3, "retried before giving up");
    let StateError::Unavailable { location, cause } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(location, "dynamodb table k3scale-faults");
    assert!(cause.contains("InternalServerError"), "{cause}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(awsfix::SECRET_KEY), "{text}");
}
