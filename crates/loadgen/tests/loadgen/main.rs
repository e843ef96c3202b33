//! The load generator's tests in one binary: HTTP and HTTPS against local
//! servers, PostgreSQL against a real server with a read replica.
#![allow(clippy::unwrap_used)]

mod http;
mod https;
mod pg;
mod pgfix;
