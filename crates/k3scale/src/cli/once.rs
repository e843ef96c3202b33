//! `k3scale once -c FILE`: one observe → decide → act pass, then exit. For
//! cron jobs and scheduled functions, the way autoscaler scripts are run,
//! but with the daemon's state store, lock and journal: two overlapping
//! runs never both act, and a run killed half-way is finished by the next.

use anyhow::Context;
use k3scale::controller::{Controller, Reconciled};
use k3scale::kube::KubeCluster;
use k3scale::kube::cluster::SYNC_TIMEOUT;
use k3scale::machines::MachinePool;
use k3scale::metrics::MetricsSource;
use k3scale::metrics::metrics_server::MetricsServer;
use k3scale::metrics::prometheus::Prometheus;
use k3scale::notify::Notifier;
use k3scale::provider::secret::Secret;
use k3scale::provider::{self, unix_now};
use k3scale::state::StateStore;
use k3scale::state::kubernetes::KubernetesStore;
use k3scale::state::sqlite::SqliteStore;
use k3scale_core::config::{self, Loaded, MetricsSourceKind, StateBackend};
use rand::{RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
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

/// The state store the configuration names (`client` for the kubernetes backend).
pub async fn open_store(
    loaded: &Loaded,
    client: Option<kube::Client>,
) -> anyhow::Result<Arc<dyn StateStore>> {
    let cfg = &loaded.config;
    Ok(match cfg.state.backend {
        StateBackend::Sqlite => {
            let path = std::path::Path::new(&cfg.state.path);
            // A dry run creates no state directory or database of its own.
            if loaded.policy.dry_run && !path.exists() {
                Arc::new(SqliteStore::in_memory(path)?)
            } else {
                Arc::new(SqliteStore::open(path)?)
            }
        }
        StateBackend::Kubernetes => {
            let namespace = cfg
                .state
                .namespace
                .clone()
                .or_else(k3scale::kube::lease::pod_namespace)
                .unwrap_or_else(|| k3scale::kube::lease::DEFAULT_NAMESPACE.into());
            let client = client.context("the kubernetes state backend needs the API")?;
            Arc::new(KubernetesStore::new(client, &namespace))
        }
        #[cfg(feature = "aws")]
        StateBackend::Dynamodb => {
            let table = cfg
                .state
                .table
                .as_deref()
                .context("state.table is required with the dynamodb backend")?;
            Arc::new(k3scale::state::dynamodb::DynamoStore::connect(table, None).await)
        }
        #[cfg(not(feature = "aws"))]
        StateBackend::Dynamodb => {
            anyhow::bail!(
                "state.backend dynamodb needs k3scale built with `--features aws` (the release images are)"
            )
        }
    })
}

/// Everything a controller needs, built from the configuration. With
/// `wait_for_caches` (`once`: it decides once, so on a full view) an
/// unreachable API or caches that do not list in time are errors; the
/// daemon does not wait: it acts on nothing until they have listed.
pub async fn controller(
    loaded: &Loaded,
    identity: &str,
    wait_for_caches: bool,
) -> anyhow::Result<(Controller, Arc<dyn StateStore>)> {
    let cfg = &loaded.config;
    let (client, api) = k3scale::kube::connect(&cfg.kubernetes).await?;
    // Say at once, in one line, when the API cannot be reached. `once` ends
    // there; the daemon waits for it, not ready meanwhile.
    if let Err(why) = k3scale::kube::reachable(&client, &api).await {
        if wait_for_caches {
            anyhow::bail!("{why}");
        }
        tracing::warn!("{why}; waiting for it (not ready meanwhile)");
    }
    let store = open_store(loaded, Some(client.clone())).await?;
    let cluster = Arc::new(KubeCluster::start(client, identity));
    if wait_for_caches
        && tokio::time::timeout(SYNC_TIMEOUT, cluster.wait_synced())
            .await
            .is_err()
    {
        anyhow::bail!(
            "the Kubernetes API at {api} did not list {} within {}s",
            cluster.stale().join(", "),
            SYNC_TIMEOUT.as_secs()
        );
    }
    let mut pools = BTreeMap::new();
    for (pool, pool_cfg) in loaded.policy.pools.iter().zip(&cfg.pools) {
        let p = provider::from_config(&cfg.cluster, pool, &pool_cfg.provider).await?;
        let machines = MachinePool::new(&pool.name, p, pool.lifecycle_config(), 8)
            .with_fingerprint(k3scale::machines::config_fingerprint(pool_cfg));
        pools.insert(pool.name.clone(), machines);
    }
    let metrics: Box<dyn MetricsSource> = match cfg.metrics.source {
        MetricsSourceKind::Prometheus => Box::new(Prometheus::new(
            &cfg.metrics.prometheus,
            loaded.policy.custom.clone(),
        )?),
        MetricsSourceKind::MetricsServer => Box::new(MetricsServer::new(cluster.clone())),
    };
    let seed = unix_now().as_millis() ^ u64::from(std::process::id()).rotate_left(32);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let secret =
        |c: &Option<k3scale_core::config::SecretUrlConfig>, key: &str| -> anyhow::Result<Option<Secret>> {
            c.as_ref()
                .map(|c| Secret::load(c.url_file.as_deref(), c.url_env.as_deref()))
                .transpose()
                .map_err(|e| anyhow::anyhow!("notify.{key}: {e}"))
        };
    let mut notifier = Notifier::new(
        secret(&cfg.notify.slack, "slack")?,
        secret(&cfg.notify.webhook, "webhook")?,
    );
    // Validated by `config::load`.
    let duration = |s: &str| k3scale_core::config::parse_duration(s).unwrap_or_default();
    notifier.repeat_after = duration(&cfg.notify.repeat_after);
    let controller = Controller::new(
        loaded.policy.clone(),
        cluster,
        Some(metrics),
        pools,
        store.clone(),
        Box::new(move || rng.next_u64()),
    );
    let mut controller = controller.with_metrics_alert_after(duration(&cfg.notify.metrics_unavailable_after));
    if !notifier.is_empty() {
        controller = controller.with_notifier(Arc::new(notifier), &cfg.cluster);
    }
    if let Some(i) = &cfg.interruptions {
        #[cfg(feature = "aws")]
        {
            let sqs =
                k3scale::interruptions::sqs::SqsInterruptions::connect(&i.sqs_queue_url, &i.region).await;
            controller = controller.with_interruptions(Box::new(sqs));
        }
        #[cfg(not(feature = "aws"))]
        anyhow::bail!(
            "interruptions ({}) need k3scale built with `--features aws` (the release images are)",
            i.sqs_queue_url
        );
    }
    Ok((controller, store))
}

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
        format!("launched: {}", done.launched.join(", "))
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

fn prometheus_for_backfill(loaded: &Loaded) -> anyhow::Result<Option<Prometheus>> {
    Ok(match loaded.config.metrics.source {
        MetricsSourceKind::Prometheus => Some(Prometheus::new(
            &loaded.config.metrics.prometheus,
            loaded.policy.custom.clone(),
        )?),
        MetricsSourceKind::MetricsServer => None,
    })
}
