//! One pool's machines: the provider (what exists) and the lifecycle (what
//! it should become), kept in step. The controller calls `launch`, `remove`
//! and `reconcile`; everything here is idempotent, so a crash between any two
//! calls is repaired by the next `reconcile`.

use crate::provider::{Machine, NodeProvider, ProviderError, create_many};
use k3scale_core::Time;
use k3scale_core::lifecycle::{
    LaunchError, Lifecycle, LifecycleAction, LifecycleConfig, ObservedMachine, ObservedNode, machine_name,
};
use tracing::{info, warn};

pub struct MachinePool {
    pool: String,
    provider: std::sync::Arc<dyn NodeProvider>,
    pub lifecycle: Lifecycle,
    config: LifecycleConfig,
    /// Most concurrent `create` calls.
    parallelism: usize,
    /// Fingerprint of the pool's configuration: a pool failed on one
    /// configuration is tried again on another.
    fingerprint: String,
}

impl std::fmt::Debug for MachinePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachinePool")
            .field("pool", &self.pool)
            .field("provider", &self.provider.kind())
            .field("machines", &self.lifecycle.machines.len())
            .finish()
    }
}

/// What a `launch` did.
#[derive(Debug, Default)]
pub struct Launched {
    pub machines: Vec<Machine>,
    pub failures: Vec<(String, ProviderError)>,
    pub reports: Vec<LifecycleAction>,
}

impl MachinePool {
    pub fn new(
        pool: &str,
        provider: Box<dyn NodeProvider>,
        config: LifecycleConfig,
        parallelism: usize,
    ) -> Self {
        MachinePool {
            pool: pool.to_string(),
            provider: provider.into(),
            lifecycle: Lifecycle::default(),
            config,
            parallelism,
            fingerprint: String::new(),
        }
    }

    /// The pool's configuration fingerprint (see `config_fingerprint`).
    pub fn with_fingerprint(self, fingerprint: String) -> Self {
        MachinePool { fingerprint, ..self }
    }

    /// A failed pool whose configuration changed since is tried again.
    fn clear_failed_if_reconfigured(&mut self) -> bool {
        self.lifecycle.clear_failed(&self.pool, Some(&self.fingerprint))
    }

    /// Launch `count` machines with fresh names drawn from `random`.
    pub async fn launch(&mut self, count: u32, now: Time, random: &mut dyn FnMut() -> u64) -> Launched {
        let names: Vec<String> = (0..count).map(|_| machine_name(&self.pool, random())).collect();
        self.launch_named(&names, now).await
    }

    /// Launch machines with these (fresh, unique) names, e.g. ones already journaled.
    pub async fn launch_named(&mut self, names: &[String], now: Time) -> Launched {
        let results = self.begin_launch(names, now).await;
        self.finish_launch(names, results, now)
    }

    /// Record the machines as launching (before the provider is called, so
    /// a crash in between leaves them accounted for), and return the work
    /// that creates them: `launch_named` awaits it, the daemon spawns it.
    pub fn begin_launch(
        &mut self,
        names: &[String],
        now: Time,
    ) -> impl std::future::Future<Output = Vec<Result<Machine, ProviderError>>> + Send + 'static {
        for name in names {
            self.lifecycle.launched(&self.pool, name, now);
        }
        let provider = self.provider.clone();
        let names = names.to_vec();
        let parallelism = self.parallelism;
        async move { create_many(provider.as_ref(), &names, parallelism).await }
    }

    /// What the provider answered for each launched name, into the
    /// lifecycle: a success ends a short hold, a failure holds the pool as
    /// its kind says.
    pub fn finish_launch(
        &mut self,
        names: &[String],
        results: Vec<Result<Machine, ProviderError>>,
        now: Time,
    ) -> Launched {
        let mut out = Launched::default();
        for (name, result) in names.iter().zip(results) {
            match result {
                Ok(m) => {
                    self.lifecycle.launch_succeeded(&self.pool);
                    out.machines.push(m);
                }
                Err(e) => {
                    warn!(pool = %self.pool, node = %name, error = %e, "launch failed");
                    let kind = match &e {
                        ProviderError::InsufficientCapacity(_) => LaunchError::NoCapacity,
                        ProviderError::Fatal(_) => LaunchError::Fatal,
                        // Not found on create: the provider lost it; worth another try.
                        ProviderError::Transient(_) | ProviderError::NotFound(_) => LaunchError::Transient,
                    };
                    let why = e.to_string();
                    if let Some(report) =
                        self.lifecycle
                            .launch_failed(name, kind, &why, &self.fingerprint, now, &self.config)
                    {
                        out.reports.push(report);
                    }
                    out.failures.push((name.clone(), e));
                }
            }
        }
        out
    }

    pub fn provider(&self) -> std::sync::Arc<dyn NodeProvider> {
        self.provider.clone()
    }

    /// Delete a machine (after its Node was drained). Gone already is fine.
    pub async fn remove(&mut self, name: &str) -> Result<(), ProviderError> {
        info!(pool = %self.pool, node = %name, "deleting machine");
        match self.provider.delete(name).await {
            Err(ProviderError::NotFound(_)) => Ok(()),
            other => other,
        }
    }

    /// Compare the provider's inventory with the cluster's Nodes; delete the
    /// machines the lifecycle gives up on (unless `act` is false: a dry run).
    /// Returns every action taken or owed: `DeleteNode` is for the cluster
    /// adapter, `JoinFailure` for the notifier.
    pub async fn reconcile(
        &mut self,
        nodes: &[ObservedNode],
        now: Time,
        act: bool,
    ) -> Result<Vec<LifecycleAction>, ProviderError> {
        if self.clear_failed_if_reconfigured() {
            info!(pool = %self.pool, "the failed pool's configuration changed: launching again");
        }
        let inventory: Vec<ObservedMachine> = self
            .provider
            .list()
            .await?
            .into_iter()
            .map(|m| ObservedMachine {
                name: m.name,
                pool: m.pool,
                created_at: m.created_at,
            })
            .collect();
        let actions = self.lifecycle.step(&inventory, nodes, now, &self.config);
        for action in actions.iter().filter(|_| act) {
            if let LifecycleAction::DeleteMachine { name, why, .. } = action {
                info!(pool = %self.pool, node = %name, reason = ?why, "deleting machine");
                match self.provider.delete(name).await {
                    Ok(()) | Err(ProviderError::NotFound(_)) => {}
                    // Retried after delete_retry by the lifecycle.
                    Err(e) => warn!(pool = %self.pool, node = %name, error = %e, "delete failed"),
                }
            }
        }
        Ok(actions)
    }
}

/// A stable fingerprint of a pool's configuration (its settings, never a
/// secret's value: secrets are files and variables, named not held).
pub fn config_fingerprint(pool: &k3scale_core::config::PoolConfig) -> String {
    use std::hash::{Hash, Hasher};
    let text = serde_json::to_string(pool).unwrap_or_default();
    // DefaultHasher::new() has fixed keys: the same text, the same hash.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    format!("{:016x}", h.finish())
}
