//! Fault injection for crash-safety tests: with `K3SCALE_CRASH_AT=<point>`
//! in its environment, the process kills itself with SIGKILL when it
//! reaches that point (no destructors, no flushing: a real crash). Unset,
//! a crash point costs one comparison.

use std::sync::OnceLock;

/// The points a test can crash at.
pub const POINTS: [&str; 4] = [
    "launch:intent-written",
    "launch:created",
    "drain:evicting",
    "drain:node-deleted",
];

pub fn crash_point(name: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("K3SCALE_CRASH_AT").ok());
    if at.as_deref() == Some(name) {
        tracing::error!(point = name, "K3SCALE_CRASH_AT: crashing on purpose");
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
    }
}
