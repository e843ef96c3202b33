//! Metrics sources: where cluster CPU, memory and custom signals come from.
//! A source never invents a zero: every failure is an error with its cause,
//! recorded as a gap (`k3scale_core::Reading`).

pub mod history;
pub mod metrics_server;
pub mod prometheus;

use k3scale_core::Reading;

#[async_trait::async_trait]
pub trait MetricsSource: Send + Sync + std::fmt::Debug {
    /// Read every signal once, now.
    async fn read(&self) -> Reading;
}

/// Why a signal is unavailable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot reach {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("no answer from {url} within {timeout_s}s")]
    Timeout { url: String, timeout_s: u64 },
    #[error("{url} answered HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("query {query:?} failed: {kind}: {message}")]
    Query {
        query: String,
        kind: String,
        message: String,
    },
    #[error("query {query:?} returned no series (is the exporter scraped?)")]
    Empty { query: String },
    #[error(
        "query {query:?} returned {count} series where one was expected (aggregate it, e.g. with avg or sum)"
    )]
    Ambiguous { query: String, count: usize },
    #[error("query {query:?} returned {value:?}, not a number")]
    NotANumber { query: String, value: String },
    #[error("unexpected answer to {query:?}: {cause}")]
    BadResponse { query: String, cause: String },
    #[error("{0}")]
    Config(String),
}
