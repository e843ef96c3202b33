//! Structured logs (`tracing`), with one rule no filter can override: the
//! Docker client, the Kubernetes client and the HTTP stack never log below INFO, because their debug
//! output contains request and response bodies, and those carry the K3s
//! token (the agent container's environment).

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// Targets whose debug/trace output may contain secrets.
const BODY_LOGGERS: &[&str] = &[
    "bollard",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "kube_client",
    "tower",
];

/// Targets that log every failed request again, without context: k3scale
/// logs each failure once, saying what it was doing (an unreachable API
/// would otherwise print a line per watch every few seconds).
const ECHO_LOGGERS: &[&str] = &["kube_client::client::builder"];

/// Whether an event may be logged at all, whatever the user's filter says.
pub fn secret_safe(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    if ECHO_LOGGERS.iter().any(|t| target.starts_with(t)) {
        return false;
    }
    *meta.level() <= Level::INFO || !BODY_LOGGERS.iter().any(|t| target.starts_with(t))
}

/// Install the global subscriber: `directives` as in `RUST_LOG`, text or
/// JSON lines, coloured only when `ansi` (a terminal that has not set `NO_COLOR`).
pub fn init<W>(directives: &str, json: bool, ansi: bool, writer: W) -> Result<(), String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(directives).map_err(|e| format!("bad log filter {directives:?}: {e}"))?;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let fmt = if json { fmt.json().boxed() } else { fmt.boxed() };
    Registry::default()
        .with(fmt.with_filter(filter).with_filter(filter_fn(secret_safe)))
        .try_init()
        .map_err(|e| e.to_string())
}

/// Colours only for a person at a terminal: never in a file, a pipe or a
/// journal, and not when `NO_COLOR` is set (<https://no-color.org>).
pub fn wants_colour(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(wants_colour(true, None));
        assert!(!wants_colour(false, None), "a log file or pipe");
        assert!(!wants_colour(true, Some(std::ffi::OsStr::new("1"))));
        assert!(wants_colour(true, Some(std::ffi::OsStr::new(""))));
    }
}
