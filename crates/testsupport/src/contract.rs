//! What every node provider must do, checked the same way for each backend
//! (Docker, exec, EC2, Auto Scaling group): the controller relies on these
//! after a crash, a retry or a second cluster on the same backend.

use k3scale::provider::NodeProvider;

/// A provider under test and a neighbour on the same backend.
pub struct Subject {
    /// The provider under test.
    pub ours: Box<dyn NodeProvider>,
    /// A provider of another pool (or cluster) on the same backend: its
    /// machines are foreign to `ours`.
    pub foreign: Box<dyn NodeProvider>,
    /// A machine name valid for `ours`, and one for `foreign`.
    pub our_name: String,
    pub foreign_name: String,
}

/// The contract as tests, one per rule, for a backend: `$setup` is an async
/// expression giving `(guard, Subject)`; the guard keeps the backend alive.
///
/// ```ignore
/// k3scale_testsupport::provider_contract!(docker_subject());
/// ```
#[macro_export]
macro_rules! provider_contract {
    ($setup:expr) => {
        mod contract {
            use super::*;

            #[tokio::test]
            async fn create_is_idempotent() {
                let (_guard, subject) = $setup.await;
                $crate::contract::create_is_idempotent(&subject).await;
            }

            #[tokio::test]
            async fn deleting_a_missing_machine_is_ok() {
                let (_guard, subject) = $setup.await;
                $crate::contract::deleting_a_missing_machine_is_ok(&subject).await;
            }

            #[tokio::test]
            async fn list_shows_only_its_own_machines() {
                let (_guard, subject) = $setup.await;
                $crate::contract::list_shows_only_its_own_machines(&subject).await;
            }
        }
    };
}

/// Names of the machines `p` lists, sorted.
pub async fn names(p: &dyn NodeProvider) -> Vec<String> {
    let mut names: Vec<String> = p.list().await.unwrap().into_iter().map(|m| m.name).collect();
    names.sort();
    names
}

/// A create retried after a crash or a timeout returns the machine the first
/// one made, and makes no second one.
pub async fn create_is_idempotent(s: &Subject) {
    let first = s.ours.create(&s.our_name).await.unwrap();
    assert_eq!(first.name, s.our_name);
    let again = s.ours.create(&s.our_name).await.unwrap();
    assert_eq!(again.name, s.our_name);
    assert_eq!(
        again.provider_id,
        first.provider_id,
        "{}: a second create returns the same machine",
        s.ours.kind()
    );
    assert_eq!(
        names(&*s.ours).await,
        vec![s.our_name.clone()],
        "{}: one machine, not two",
        s.ours.kind()
    );
    s.ours.delete(&s.our_name).await.unwrap();
}

/// A delete of a machine that never was, or is already gone, succeeds:
/// a drain retried after the machine went is done, not failed.
pub async fn deleting_a_missing_machine_is_ok(s: &Subject) {
    let kind = s.ours.kind();
    s.ours
        .delete(&s.our_name)
        .await
        .unwrap_or_else(|e| panic!("{kind}: delete of a machine that never was: {e}"));
    s.ours.create(&s.our_name).await.unwrap();
    s.ours.delete(&s.our_name).await.unwrap();
    assert!(
        !names(&*s.ours).await.contains(&s.our_name),
        "{kind}: a deleted machine is not listed"
    );
    s.ours
        .delete(&s.our_name)
        .await
        .unwrap_or_else(|e| panic!("{kind}: delete of a machine already gone: {e}"));
}

/// `list` shows this pool's machines and nothing else, and a delete never
/// touches a machine that is not this pool's, whatever its name.
pub async fn list_shows_only_its_own_machines(s: &Subject) {
    let kind = s.ours.kind();
    s.foreign.create(&s.foreign_name).await.unwrap();
    s.ours.create(&s.our_name).await.unwrap();
    assert_eq!(
        names(&*s.ours).await,
        vec![s.our_name.clone()],
        "{kind}: ours only"
    );
    assert_eq!(
        names(&*s.foreign).await,
        vec![s.foreign_name.clone()],
        "{kind}: the neighbour sees its own only"
    );
    // Whether it answers Ok (not ours: nothing to do) or an error, the
    // neighbour's machine stays.
    let _ = s.ours.delete(&s.foreign_name).await;
    assert_eq!(
        names(&*s.foreign).await,
        vec![s.foreign_name.clone()],
        "{kind}: a delete by name left the neighbour's machine alone"
    );
    s.ours.delete(&s.our_name).await.unwrap();
    s.foreign.delete(&s.foreign_name).await.unwrap();
}
