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
pub mod provider;
pub mod server;
pub mod state;
pub mod status;
pub mod telemetry;
