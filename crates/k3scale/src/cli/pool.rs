//! `k3scale pool reset NAME -c FILE`: a pool whose provider said `Fatal`
//! launches nothing until its configuration changes or an operator clears
//! it here (in the state store, so the daemon sees it on its next pass).

use anyhow::Context;
use k3scale_core::config::StateBackend;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum PoolCommand {
    /// Let a failed pool launch again (after fixing what its provider said).
    Reset {
        /// The pool's name, as in the configuration.
        name: String,
        /// Configuration file (YAML), for the state store; `-` reads standard input.
        #[arg(short, long)]
        config: std::path::PathBuf,
    },
}

pub fn run(command: PoolCommand) -> anyhow::Result<ExitCode> {
    let PoolCommand::Reset { name, config } = command;
    let (file, text) = crate::cli::once::read_config(&config)?;
    let loaded = k3scale_core::config::load(&file, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    if loaded.policy.pool(&name).is_none() {
        let names: Vec<&str> = loaded.policy.pools.iter().map(|p| p.name.as_str()).collect();
        anyhow::bail!("no pool {name:?} in {file} (pools: {})", names.join(", "));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = match loaded.config.state.backend {
            StateBackend::Kubernetes => Some(k3scale::kube::client(&loaded.config.kubernetes).await?),
            _ => None,
        };
        let store = k3scale::wiring::open_store(&loaded, client).await?;
        let was_failed = k3scale::controller::reset_pool(store.as_ref(), &name)
            .await
            .with_context(|| format!("cannot reset pool {name}"))?;
        if was_failed {
            println!("pool {name}: reset; it launches again from the next reconcile");
        } else {
            println!("pool {name} was not failed: nothing to reset");
        }
        Ok(ExitCode::SUCCESS)
    })
}
