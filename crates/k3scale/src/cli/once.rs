//! `k3scale once -c FILE`: one observe → decide → act pass, then exit. For
//! cron jobs and scheduled functions, the way autoscaler scripts are run,
//! but with the daemon's state store, lock and journal: two overlapping
//! runs never both act, and a run killed half-way is finished by the next.

use anyhow::Context;
use k3scale::controller::Reconciled;
use k3scale::metrics::prometheus::Prometheus;
use k3scale::provider::unix_now;
use k3scale_core::config::{self, Loaded, MetricsSourceKind};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use k3scale::act_lock::ActLock;
/// Prometheus history step when backfilling the windows.
const BACKFILL_STEP: Duration = Duration::from_secs(15);

/// The configuration file and the dry-run switch, shared by `run` and `once`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Configuration file (YAML); `-` reads it from standard input.
    #[arg(short, long)]
    config: PathBuf,
    /// Decide and report, act on nothing (overrides `policy.dry_run`).
    #[arg(long)]
    dry_run: bool,
    /// Kubeconfig file (overrides `kubernetes.kubeconfig`).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<String>,
    /// Kubeconfig context (overrides `kubernetes.context`).
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
}

impl ConfigArgs {
    pub fn load(&self) -> anyhow::Result<Loaded> {
        let (name, text) = read_config(&self.config)?;
        let mut loaded = config::load(&name, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
        loaded.policy.dry_run |= self.dry_run;
        let kube = &mut loaded.config.kubernetes;
        if let Some(path) = &self.kubeconfig {
            kube.kubeconfig = Some(path.clone());
        }
        if let Some(context) = &self.context {
            kube.context = Some(context.clone());
        }
        Ok(loaded)
    }
}

/// A configuration file's name (for errors) and text; `-` is standard input.
pub fn read_config(path: &std::path::Path) -> anyhow::Result<(String, String)> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read the configuration from standard input")?;
        return Ok(("stdin".into(), text));
    }
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
    Ok((name, text))
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    #[arg(short, long, value_enum, default_value_t = crate::cli::inspect::Output::Text)]
    output: crate::cli::inspect::Output,
}

pub use k3scale::act_lock::identity;

use k3scale::wiring::controller;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let loaded = args.config.load()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let me = identity();
        let (mut controller, store) = controller(&loaded, &me, true).await?;
        // A dry run changes nothing (no launch, no drain, no stored state),
        // so it previews even while a daemon holds the lock.
        let lock = if loaded.policy.dry_run {
            None
        } else {
            match ActLock::acquire(store.clone(), &me, None).await? {
                Ok(lock) => Some(lock),
                Err(holder) => {
                    eprintln!(
                        "another k3scale ({}) holds the lock until {}; not acting (--dry-run previews without it)",
                        holder.owner,
                        k3scale::status::timestamp(holder.expires_at)
                    );
                    return Ok(ExitCode::from(3));
                }
            }
        };
        if let Some(prom) = prometheus_for_backfill(&loaded)? {
            // Without history a cron run could never judge a sustained window.
            if let Err(e) = controller.backfill(&prom, BACKFILL_STEP, unix_now()).await {
                tracing::warn!(error = %e, "no metric history: sustained windows start empty");
            }
            backfill_demand(&mut controller, &prom).await;
        }
        let result = controller.reconcile(unix_now()).await;
        controller
            .flush_notifications(std::time::Duration::from_secs(30))
            .await;
        if let Some(lock) = lock {
            lock.release().await;
        }
        let done = result?;
        if args.output == crate::cli::inspect::Output::Json {
            println!("{}", serde_json::to_string_pretty(&done)?);
        } else {
            print!("{}", k3scale::text::terminal_safe(&render(&done)));
        }
        Ok(if done.failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

/// The reconcile's outcome as text: the reasons, then what was done.
fn render(done: &Reconciled) -> String {
    let mut out = String::new();
    for reason in &done.decision.reasons {
        let _ = writeln!(out, "{reason}");
    }
    let launched = if done.decision.dry_run {
        format!("would launch: {} nodes", done.decision.nodes_added())
    } else {
        let names: Vec<&str> = done.launched.iter().map(|l| l.node.as_str()).collect();
        format!("launched: {}", names.join(", "))
    };
    let _ = writeln!(out, "{launched}");
    let _ = writeln!(out, "removed: {}", done.removed.join(", "));
    for f in &done.failed {
        let _ = writeln!(out, "failed: {f}");
    }
    for r in &done.recovered {
        let _ = writeln!(out, "recovered: {r}");
    }
    out
}

/// `policy.predictive`'s history from Prometheus: without it, a forecast
/// waits a day after the first start.
pub(crate) async fn backfill_demand(controller: &mut k3scale::controller::Controller, prom: &Prometheus) {
    match controller.backfill_demand(prom, unix_now()).await {
        Ok(0) => {}
        Ok(minutes) => tracing::info!(minutes, "predictive: demand history read from Prometheus"),
        Err(e) => {
            tracing::warn!(error = %e, "predictive: no demand history from Prometheus, the forecast starts from what k3scale sees")
        }
    }
}

pub(crate) fn prometheus_for_backfill(loaded: &Loaded) -> anyhow::Result<Option<Prometheus>> {
    Ok(match loaded.config.metrics.source {
        MetricsSourceKind::Prometheus => Some(Prometheus::new(
            &loaded.config.metrics.prometheus,
            loaded.policy.custom.clone(),
        )?),
        MetricsSourceKind::MetricsServer => None,
    })
}
