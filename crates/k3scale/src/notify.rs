//! Slack and generic webhook notifications: scale-ups and scale-downs,
//! failures, a pool at its maximum, metrics unavailable for too long.
//!
//! Delivery retries with backoff on 5xx, 429 and network errors. A
//! standing condition (the same kind, pool and message) is repeated only
//! after `repeat_after`, so a stuck cluster does not flood the channel. The
//! webhook URL is a secret: it is never logged and never in an error.

use crate::provider::secret::Secret;
use k3scale_core::Time;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tracing::{info, warn};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ScaleUp,
    ScaleDown,
    /// A launch, drain or removal failed.
    Failure,
    /// A machine never became a Ready node; the pool backs off.
    JoinFailed,
    AtMaxCapacity,
    MetricsUnavailable,
}

/// One message, as the generic webhook receives it (JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub kind: Kind,
    pub cluster: String,
    pub pool: String,
    pub nodes: Vec<String>,
    pub message: String,
    /// Unix milliseconds.
    pub at: u64,
}

impl Notification {
    /// The line Slack shows.
    fn slack_text(&self) -> String {
        let icon = match self.kind {
            Kind::ScaleUp => ":arrow_up:",
            Kind::ScaleDown => ":arrow_down:",
            Kind::Failure | Kind::JoinFailed => ":x:",
            Kind::AtMaxCapacity | Kind::MetricsUnavailable => ":warning:",
        };
        let nodes = if self.nodes.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.nodes.join(", "))
        };
        format!(
            "{icon} *{}* pool `{}`{nodes}: {}",
            self.cluster, self.pool, self.message
        )
    }
}

#[derive(Debug)]
enum Target {
    Slack(Secret),
    Webhook(Secret),
}

#[derive(Debug)]
pub struct Notifier {
    targets: Vec<Target>,
    client: reqwest::Client,
    /// A standing condition is said again only after this long.
    pub repeat_after: Duration,
    pub attempts: u32,
    pub retry_base: Duration,
    sent: Mutex<HashMap<(Kind, String, String), Time>>,
}

impl Notifier {
    pub fn new(slack: Option<Secret>, webhook: Option<Secret>) -> Notifier {
        let mut targets = Vec::new();
        targets.extend(slack.map(Target::Slack));
        targets.extend(webhook.map(Target::Webhook));
        Notifier {
            targets,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            repeat_after: Duration::from_secs(30 * 60),
            attempts: 4,
            retry_base: Duration::from_secs(1),
            sent: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Whether `n` should go out now (not a repeat of a standing condition).
    fn due(&self, n: &Notification, now: Time) -> bool {
        // A standing condition is one per pool whatever its details say;
        // other messages differ by what they report.
        let detail = match n.kind {
            Kind::AtMaxCapacity | Kind::MetricsUnavailable => String::new(),
            _ => n.message.clone(),
        };
        let key = (n.kind, n.pool.clone(), detail);
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.retain(|_, at| now.since(*at) < self.repeat_after);
        if sent.contains_key(&key) {
            return false;
        }
        sent.insert(key, now);
        true
    }

    /// Deliver `n` to every target (unless it repeats a standing condition):
    /// one result per target tried.
    pub async fn send(&self, n: &Notification, now: Time) -> Vec<Result<(), String>> {
        if self.targets.is_empty() || !self.due(n, now) {
            return Vec::new();
        }
        let mut results = Vec::new();
        for target in &self.targets {
            let (name, url, body) = match target {
                Target::Slack(url) => ("slack", url, serde_json::json!({ "text": n.slack_text() })),
                Target::Webhook(url) => ("webhook", url, serde_json::to_value(n).unwrap_or_default()),
            };
            let result = self.post(url, &body).await;
            match &result {
                Ok(()) => info!(target = name, kind = ?n.kind, "notification sent"),
                Err(e) => warn!(target = name, kind = ?n.kind, error = %e, "notification not delivered"),
            }
            results.push(result);
        }
        results
    }

    async fn post(&self, url: &Secret, body: &serde_json::Value) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 0..self.attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(self.retry_base.saturating_mul(1 << (attempt - 1).min(6))).await;
            }
            match self.client.post(url.expose()).json(body).send().await {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    last = format!("HTTP {}", resp.status().as_u16());
                    // Only these can get better by waiting.
                    if !(resp.status().is_server_error() || resp.status().as_u16() == 429) {
                        return Err(last);
                    }
                }
                // `without_url`: the URL is the secret.
                Err(e) => last = url.redact(&e.without_url().to_string()),
            }
        }
        Err(format!("{last} after {} attempts", self.attempts.max(1)))
    }
}
