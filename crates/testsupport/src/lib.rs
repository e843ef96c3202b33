//! Fixtures for k3scale's tests, in one crate every test binary (and the
//! benches) share instead of copying modules around:
//!
//! - `kubefix`: the test API server behind a K3s-shaped kubeconfig, and
//!   the Kubernetes objects tests seed it with;
//! - `support`: real Docker Engine clusters of the stand-in agent image, and
//!   temp dirs;
//! - `promfix`: a real Prometheus, backfilled with `promtool`;
//! - `webhook`: a local receiver for Slack and webhook notifications;
//! - `statefix`: the behaviour suite every state store runs (`state_store_suite!`);
//! - `contract`: the behaviour suite every node provider runs;
//! - `rig`: a controller wired to all of the above;
//! - `oncefix`: `k3scale once` runs, crashed at chosen points;
//! - `awsfix` / `awsctl` (feature `aws`): the moto AWS emulator, a fault
//!   proxy in front of it, and a controller on a cloud pool.
//!
//! Fixture code panics on setup failures: a test that cannot set up fails.
#![allow(clippy::unwrap_used, missing_debug_implementations)]

#[cfg(feature = "aws")]
pub mod awsctl;
#[cfg(feature = "aws")]
pub mod awsfix;
pub mod contract;
pub mod kubefix;
pub mod oncefix;
pub mod promfix;
pub mod rig;
pub mod statefix;
pub mod support;
pub mod webhook;
