//! Two replicas elect a leader on one Lease in the test API server: never
//! both leader, takeover only after the lease expires, at once after a release.

use k3scale::kube::lease::LeaseLock;
use k3scale::provider::unix_now;
use k3scale_core::lease::ElectionConfig;
use k3scale_testapi::resources::LEASES;
use k3scale_testsupport::kubefix;
use kubefix::*;
use std::time::Duration;

fn config() -> ElectionConfig {
    ElectionConfig {
        lease_duration: Duration::from_millis(1500), // written as 2 s: the API counts whole seconds
        renew_deadline: Duration::from_millis(1000),
        retry_period: Duration::from_millis(200),
    }
}

#[tokio::test]
async fn two_replicas_never_lead_together() {
    let k = start().await;
    let lock = |id: &str| LeaseLock::new(k.client.clone(), "kube-system", "k3scale-leader", id, config());
    let (mut a, mut b) = (lock("k3scale-a"), lock("k3scale-b"));
    assert!(config().check().is_ok());

    // Both race for a Lease that does not exist yet: exactly one wins.
    let (ra, rb) = tokio::join!(a.round(unix_now()), b.round(unix_now()));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra ^ rb, "exactly one leader (a={ra}, b={rb})");
    let (leader, follower) = if ra { (&mut a, &mut b) } else { (&mut b, &mut a) };
    let leader_id = leader.elector.identity.clone();
    let lease = k.server.get(&LEASES, "kube-system", "k3scale-leader").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], leader_id.as_str());
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 2);

    // Both keep going; the leader renews, the follower waits.
    let mut last_round = tokio::time::Instant::now();
    for _ in 0..10 {
        last_round = tokio::time::Instant::now();
        let (l, f) = tokio::join!(leader.round(unix_now()), follower.round(unix_now()));
        assert!(l.unwrap() && !f.unwrap(), "the leader keeps it while renewing");
        tokio::time::sleep(config().retry_period).await;
    }

    // The leader stops renewing (crashed): it stops acting within the renew
    // deadline, and the follower takes over only after the lease duration
    // has passed since it last saw the Lease change.
    loop {
        let now = unix_now();
        let took = follower.round(now).await.unwrap();
        assert!(!(took && leader.elector.is_leader(now)), "two leaders at once");
        if took {
            break;
        }
        tokio::time::sleep(config().retry_period).await;
    }
    assert!(
        last_round.elapsed() >= Duration::from_secs(2),
        "no takeover before expiry"
    );
    let lease = k.server.get(&LEASES, "kube-system", "k3scale-leader").unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    assert_ne!(lease["spec"]["holderIdentity"], leader_id.as_str());

    // The old leader comes back: it reads the new holder and follows.
    assert!(!leader.round(unix_now()).await.unwrap());

    // A release on shutdown hands over at once, not after the lease duration.
    follower.release(unix_now()).await.unwrap();
    let released_at = tokio::time::Instant::now();
    assert!(
        leader.round(unix_now()).await.unwrap(),
        "takes over a released lease at once"
    );
    assert!(released_at.elapsed() < config().lease_duration);
}

#[tokio::test]
async fn a_lost_api_ends_leadership_at_the_renew_deadline() {
    let k = start().await;
    let mut a = LeaseLock::new(
        k.client.clone(),
        "kube-system",
        "k3scale-leader",
        "k3scale-a",
        config(),
    );
    assert!(a.round(unix_now()).await.unwrap());
    // The API server goes away: rounds fail, and leadership ends by the renew deadline.
    drop(k);
    let start = unix_now();
    let mut last_leader = start;
    loop {
        let now = unix_now();
        let r = a.round(now).await;
        assert!(r.is_err(), "the API is gone");
        if a.elector.is_leader(now) {
            last_leader = now;
        } else {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last_leader.since(start) < config().renew_deadline);
}
