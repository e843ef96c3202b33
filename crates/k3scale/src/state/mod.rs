//! What k3scale must remember across restarts: versioned values (cooldown
//! stamps, machine lifecycle), the journal of actions in flight, recent
//! scale events, and a lock so only one `run` or `once` acts at a time.
//!
//! Every write that another replica could race is compare-and-swap, and a
//! lock is only renewed or released by its owner (a lock anyone can release
//! is a known bug of cron-script autoscalers).

#[cfg(feature = "aws")]
pub mod dynamodb;
pub mod kubernetes;
pub mod sqlite;

use k3scale_core::Time;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A compare-and-swap lost: someone else wrote since we read.
    #[error("{key}: changed by someone else (expected version {expected}, found {found})")]
    Conflict { key: String, expected: u64, found: u64 },
    /// The store cannot be used (file, permissions, corrupt data).
    #[error("state store {location}: {cause}")]
    Unavailable { location: String, cause: String },
}

/// A value with the version a compare-and-swap must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: String,
    /// Starts at 1; 0 means "does not exist" in a compare-and-swap.
    pub version: u64,
}

/// An action recorded before it is carried out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub kind: IntentKind,
    pub pool: String,
    pub node: String,
    /// What the action needs to resume (e.g. a serialized drain).
    pub detail: serde_json::Value,
}

/// What a journal entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IntentKind {
    Launch,
    Drain,
    /// Written by another version of k3scale: closed, not acted on.
    #[serde(other)]
    Unknown,
}

impl IntentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentKind::Launch => "launch",
            IntentKind::Drain => "drain",
            IntentKind::Unknown => "unknown",
        }
    }

    /// As stored by `as_str`; anything else is `Unknown`.
    pub fn parse(text: &str) -> IntentKind {
        match text {
            "launch" => IntentKind::Launch,
            "drain" => IntentKind::Drain,
            _ => IntentKind::Unknown,
        }
    }
}

impl std::fmt::Display for IntentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub id: u64,
    pub intent: Intent,
    pub opened_at: Time,
}

/// One line of the scale history (`/api/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleEvent {
    pub at: Time,
    /// `scale-up`, `scale-down`, `failure`...
    pub kind: String,
    pub pool: String,
    pub nodes: Vec<String>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: u64,
    #[serde(flatten)]
    pub event: ScaleEvent,
}

/// Who holds a lock now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub owner: String,
    pub expires_at: Time,
}

#[async_trait::async_trait]
pub trait StateStore: Send + Sync + std::fmt::Debug {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StateError>;

    /// Write `value` if the stored version is `expected` (0: only if absent);
    /// returns the new version.
    async fn put(&self, key: &str, value: &str, expected: u64) -> Result<u64, StateError>;

    /// Record an intent before acting on it; returns its id.
    async fn open(&self, intent: &Intent, now: Time) -> Result<u64, StateError>;

    /// Replace an open intent's detail (a drain's progress).
    async fn update(&self, id: u64, detail: &serde_json::Value) -> Result<(), StateError>;

    /// The action is over (`outcome`: what happened, for the record).
    async fn close(&self, id: u64, outcome: &str, now: Time) -> Result<(), StateError>;

    /// Intents opened and never closed: what a crash interrupted.
    async fn unfinished(&self) -> Result<Vec<JournalEntry>, StateError>;

    async fn push_event(&self, event: &ScaleEvent) -> Result<u64, StateError>;

    /// Newest first: up to `limit` events with an id below `before` (all if `None`).
    async fn events(&self, before: Option<u64>, limit: usize) -> Result<Vec<StoredEvent>, StateError>;

    /// Take or renew lock `name` for `owner` until `now + ttl`: succeeds if it
    /// is free, expired, or already `owner`'s. A refusal is `Ok(Err(holder))`.
    async fn lock(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<Result<(), LockHolder>, StateError>;

    /// Take lock `name` from `dead_owner` (known to have crashed), whatever
    /// its expiry; fails (`false`) if someone else holds it by now.
    async fn take_over(
        &self,
        name: &str,
        dead_owner: &str,
        owner: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<bool, StateError>;

    /// Release lock `name` if `owner` holds it; returns whether it did.
    async fn unlock(&self, name: &str, owner: &str) -> Result<bool, StateError>;
}

#[cfg(test)]
mod intent_kind_tests {
    use super::IntentKind;

    #[test]
    fn kinds_keep_their_stored_names_and_unknown_ones_are_read_not_rejected() {
        for kind in [IntentKind::Launch, IntentKind::Drain] {
            let json = serde_json::to_string(&kind).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<IntentKind>(&json).ok(), Some(kind));
            assert_eq!(IntentKind::parse(kind.as_str()), kind);
        }
        let from_the_future: Option<IntentKind> = serde_json::from_str("\"replace\"").ok();
        assert_eq!(from_the_future, Some(IntentKind::Unknown));
        assert_eq!(IntentKind::parse("replace"), IntentKind::Unknown);
    }
}
