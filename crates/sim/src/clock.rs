//! The simulator's clock: virtual time that only moves when told to.

use k3scale_core::{Clock, Time};
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtualClock {
    now: Time,
}

impl VirtualClock {
    pub fn new(start: Time) -> Self {
        VirtualClock { now: start }
    }

    pub fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
    }

    /// Whether `now` falls on a multiple of `every` since the epoch.
    pub fn on_multiple_of(&self, every: Duration) -> bool {
        self.now
            .as_millis()
            .is_multiple_of((every.as_millis() as u64).max(1))
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Time {
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_only_when_told() {
        let mut c = VirtualClock::new(Time::ZERO);
        assert_eq!(c.now(), Time::ZERO);
        c.advance(Duration::from_secs(15));
        assert_eq!(c.now(), Time::from_secs(15));
        assert!(c.on_multiple_of(Duration::from_secs(5)));
        assert!(!c.on_multiple_of(Duration::from_secs(10)));
    }
}
