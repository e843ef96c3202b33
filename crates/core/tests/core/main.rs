//! k3scale-core's tests in one binary: the policy engine, scheduling
//! predicates, upstream cases ported as tables, config, drain, lease and
//! lifecycle, property tests, and the module dependency check.
#![allow(clippy::unwrap_used)]

mod config;
mod config_fuzz;
mod consolidate;
mod decide;
mod disruption;
mod drain;
mod headroom;
mod lease;
mod lifecycle;
mod modules;
mod predictive;
mod properties;
mod replace;
mod scale_down_timing;
mod upstream_estimator;
mod upstream_interpod;
mod upstream_node_affinity;
mod upstream_topology_spread;
