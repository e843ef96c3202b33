//! Leader election on a Lease: takeover only after expiry, and never two leaders.

use k3scale_core::Time;
use k3scale_core::lease::*;
use proptest::prelude::*;
use std::time::Duration;

fn t(s: u64) -> Time {
    Time::from_secs(s)
}

/// A Lease store with compare-and-swap on a version, like the API server (409 on conflict).
#[derive(Default)]
struct Store {
    lease: Option<LeaseRecord>,
    version: u64,
}

impl Store {
    fn read(&self) -> (Option<LeaseRecord>, u64) {
        (self.lease.clone(), self.version)
    }
    fn write(&mut self, record: LeaseRecord, expected: u64) -> bool {
        if expected != self.version {
            return false;
        }
        self.lease = Some(record);
        self.version += 1;
        true
    }
}

/// One election round of `e` at `now`; `reachable` false = the write is lost.
fn round(e: &mut Elector, store: &mut Store, now: Time, reachable: bool) {
    let (current, version) = store.read();
    match e.step(current.as_ref(), now) {
        LeaseStep::Create(r) | LeaseStep::Update(r) => {
            if reachable && store.write(r.clone(), version) {
                e.written(&r, now);
            } else {
                e.write_failed(now);
            }
        }
        LeaseStep::Wait { .. } => {}
    }
}

#[test]
fn first_creates_second_waits_and_takes_over_after_expiry() {
    let mut store = Store::default();
    let mut a = Elector::new("a", ElectionConfig::default());
    let mut b = Elector::new("b", ElectionConfig::default());
    round(&mut a, &mut store, t(0), true);
    assert!(a.is_leader(t(0)));
    let (lease, _) = store.read();
    assert_eq!(
        b.step(lease.as_ref(), t(1)),
        LeaseStep::Wait {
            holder: "a".into(),
            retry_at: t(3)
        }
    );
    // a keeps renewing: b never takes over.
    for s in (2..60).step_by(2) {
        round(&mut a, &mut store, t(s), true);
        round(&mut b, &mut store, t(s), true);
        assert!(a.is_leader(t(s)) && !b.is_leader(t(s)));
    }
    // a stops (crash): b takes over once 15 s have passed since it last saw a change.
    for s in (60..90).step_by(2) {
        round(&mut b, &mut store, t(s), true);
        if b.is_leader(t(s)) {
            assert!(s >= 58 + 15, "took over at {s}");
            break;
        }
    }
    assert!(b.is_leader(t(74)) || b.is_leader(t(76)));
    assert_eq!(store.read().0.unwrap().transitions, 1);
    assert!(!a.is_leader(t(76)));
}

#[test]
fn a_leader_that_cannot_renew_stops_before_anyone_else_can_start() {
    let mut store = Store::default();
    let mut a = Elector::new("a", ElectionConfig::default());
    round(&mut a, &mut store, t(0), true);
    round(&mut a, &mut store, t(2), false); // partitioned from here on
    assert!(a.is_leader(t(9)), "within the renew deadline of the last success");
    round(&mut a, &mut store, t(10), false);
    assert!(!a.is_leader(t(10)), "renew deadline passed");
}

#[test]
fn unsafe_timings_are_rejected() {
    assert_eq!(ElectionConfig::default().check(), Ok(()));
    let bad = ElectionConfig {
        renew_deadline: Duration::from_secs(20),
        ..ElectionConfig::default()
    };
    assert_eq!(
        bad.check(),
        Err("renew deadline (20s) must be shorter than the lease duration (15s)".into())
    );
    let slow = ElectionConfig {
        retry_period: Duration::from_secs(6),
        ..ElectionConfig::default()
    };
    assert!(slow.check().unwrap_err().contains("retry period"));
}

#[test]
fn release_hands_over_at_once() {
    let mut store = Store::default();
    let mut a = Elector::new("a", ElectionConfig::default());
    let mut b = Elector::new("b", ElectionConfig::default());
    round(&mut a, &mut store, t(0), true);
    round(&mut b, &mut store, t(1), true);
    let (lease, version) = store.read();
    let released = a.release(lease.as_ref().unwrap(), t(2)).unwrap();
    assert!(store.write(released, version));
    assert!(!a.is_leader(t(2)));
    round(&mut b, &mut store, t(3), true);
    assert!(b.is_leader(t(3)));
}

#[test]
fn clock_skew_does_not_shorten_the_lease() {
    // b's clock runs 100 s ahead: the holder's renew_time looks ancient to it,
    // but b judges expiry from when it saw the record change.
    let mut store = Store::default();
    let mut a = Elector::new("a", ElectionConfig::default());
    let mut b = Elector::new("b", ElectionConfig::default());
    for s in (0..40).step_by(2) {
        round(&mut a, &mut store, t(s), true);
        round(&mut b, &mut store, t(s + 100), true);
        assert!(!b.is_leader(t(s + 100)), "b took over a live lease at {s}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any interleaving of rounds, time steps and lost writes: at no instant
    /// do both replicas consider themselves leader.
    #[test]
    fn never_two_leaders(ops in prop::collection::vec((any::<bool>(), 0u64..5, any::<bool>()), 1..300)) {
        let mut store = Store::default();
        let mut electors = [Elector::new("a", ElectionConfig::default()), Elector::new("b", ElectionConfig::default())];
        let mut now = 0u64;
        for (which, advance, reachable) in ops {
            now += advance;
            let e = &mut electors[usize::from(which)];
            round(e, &mut store, t(now), reachable);
            let leaders = electors.iter().filter(|e| e.is_leader(t(now))).count();
            prop_assert!(leaders <= 1, "two leaders at {now}");
        }
    }
}

#[test]
fn a_takeover_names_the_replica_it_replaced_and_a_handover_does_not() {
    let cfg = ElectionConfig::default();
    let mut store = Store::default();
    let mut a = Elector::new("host-a-1", cfg.clone());
    let mut b = Elector::new("host-b-1", cfg.clone());
    round(&mut a, &mut store, t(0), true);
    round(&mut b, &mut store, t(1), true);
    assert_eq!(b.holder(), Some("host-a-1"), "the standby knows the leader");
    assert_eq!(a.took_over_from(), None, "created, replaced nobody");
    // a stops renewing (crashed): b takes over once the Lease has expired.
    round(&mut b, &mut store, t(10), true);
    assert_eq!(b.took_over_from(), None, "not expired yet");
    round(&mut b, &mut store, t(17), true);
    assert!(b.is_leader(t(17)));
    assert_eq!(b.took_over_from(), Some("host-a-1"));
    assert_eq!(b.holder(), Some("host-b-1"));
    // Its own renewals do not change that.
    round(&mut b, &mut store, t(19), true);
    assert_eq!(b.took_over_from(), Some("host-a-1"));

    // A Lease released on shutdown has no holder: nothing to take over from.
    let mut store = Store::default();
    let mut a = Elector::new("host-a-1", cfg.clone());
    let mut b = Elector::new("host-b-1", cfg);
    round(&mut a, &mut store, t(0), true);
    let (current, version) = store.read();
    let released = a.release(&current.expect("created"), t(1)).expect("held by a");
    assert!(store.write(released, version));
    round(&mut b, &mut store, t(2), true);
    assert!(b.is_leader(t(2)));
    assert_eq!(b.took_over_from(), None);
}
