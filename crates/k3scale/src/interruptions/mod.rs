//! Notices that a machine is about to be reclaimed (a spot interruption
//! warning, a rebalance recommendation). Each reconcile asks its source, maps
//! the notices' instances to the pools' machines, and `decide` drains those
//! nodes at once and launches their replacements. A notice is acknowledged
//! only after the reconcile that acted on it, so a crash redelivers it.

#[cfg(feature = "aws")]
pub mod sqs;

/// One notice, as its source gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The provider's id of the machine (an EC2 instance id).
    pub instance_id: String,
    /// `spot-interruption`, `rebalance-recommendation`; empty for messages
    /// that are not notices (acknowledged and ignored).
    pub notice: String,
    /// What the source needs to acknowledge it.
    pub receipt: String,
}

#[async_trait::async_trait]
pub trait InterruptionSource: Send + Sync + std::fmt::Debug {
    /// Notices waiting now (does not block for long).
    async fn receive(&self) -> Result<Vec<Notice>, String>;
    /// Done with these: do not deliver them again.
    async fn ack(&self, notices: &[Notice]);
}

/// Whether `provider_id` (`aws:///zone/i-0abc`) names `instance_id`.
pub fn is_instance(provider_id: &str, instance_id: &str) -> bool {
    !instance_id.is_empty()
        && (provider_id == instance_id || provider_id.ends_with(&format!("/{instance_id}")))
}
