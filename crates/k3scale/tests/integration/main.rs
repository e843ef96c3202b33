//! k3scale's integration tests in one binary: one link of kube, bollard,
//! axum and the AWS SDK instead of one per file, and the tests of every
//! file run in parallel with each other. The fixtures they share are in
//! `crates/testsupport`. (`token_logging` is a binary of its own: it
//! installs the process's global log subscriber at trace level.)
#![allow(clippy::unwrap_used)]

#[cfg(feature = "aws")]
mod asg_provider;
mod cli;
mod controller;
mod daemon;
mod deploy_config;
mod docker_pool;
mod docker_provider;
#[cfg(feature = "aws")]
mod ec2_provider;
mod exec_provider;
mod fault_injection;
mod kube_adapter;
mod kube_convert;
mod kube_drain;
mod kube_lease;
mod notify;
mod observability;
#[cfg(feature = "aws")]
mod once_aws;
mod once_cli;
mod predictive;
mod prometheus_source;
mod rbac;
mod rollout;
mod simulate_replay;
#[cfg(feature = "aws")]
mod state_dynamodb;
mod state_kubernetes;
mod state_sqlite;
mod status_page;
mod upstream_drain;
