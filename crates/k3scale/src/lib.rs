//! k3scale's runtime pieces: providers now; the controller, adapters and
//! HTTP server as they land. The binary (`main.rs`) is a thin CLI over them.

pub mod act_lock;
pub mod controller;
pub mod daemon;
pub mod drain;
pub mod faults;
pub mod interruptions;
pub mod kube;
pub mod logging;
pub mod machines;
pub mod metrics;
pub mod notify;
pub mod page;
pub mod provider;
pub mod samples;
pub mod server;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod text;
pub mod wiring;

/// This build, for `k3scale --version` and the `k3scale_build_info` metric.
pub mod build {
    pub const VERSION: &str = env!("CARGO_PKG_VERSION");
    /// The git commit it was built from (`unknown` outside a checkout).
    pub const COMMIT: &str = env!("K3SCALE_COMMIT");
    /// The compiled-in cargo features (`aws` or `none`).
    pub const FEATURES: &str = env!("K3SCALE_FEATURES");
    pub const LONG_VERSION: &str = concat!(
        env!("CARGO_PKG_VERSION"),
        " (commit ",
        env!("K3SCALE_COMMIT"),
        ", features: ",
        env!("K3SCALE_FEATURES"),
        ")"
    );
}
