//! `k3scale-load`: the load generator a user runs to prove the autoscaler
//! works. Rate profiles drive an open model (arrivals on a schedule, latency
//! from the intended send time) or a closed model (N workers back to back),
//! against HTTP targets or a PostgreSQL primary and its read replicas.

pub mod driver;
pub mod http;
pub mod pg;
pub mod profile;
pub mod report;
pub mod stats;
