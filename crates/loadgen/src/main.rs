//! `k3scale-load`: HTTP and PostgreSQL load with rate profiles.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use k3scale_loadgen::driver::{self, Model};
use k3scale_loadgen::http::{self as web, HttpClient, RequestSpec, Target};
use k3scale_loadgen::pg::{self, PgSpec};
use k3scale_loadgen::profile::{self, Profile, Shape};
use k3scale_loadgen::report::{Report, Setup};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(
    name = "k3scale-load",
    version,
    about = "Load a cluster on purpose: HTTP or PostgreSQL, on a rate profile, with latency reports"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Send HTTP requests to one or more URLs (round-robin).
    Http(HttpArgs),
    /// Run an app-like read/write mix on a PostgreSQL primary and its read replicas.
    Pg(PgArgs),
}

#[derive(Args, Debug)]
struct HttpArgs {
    /// Target URLs (http:// or https://).
    #[arg(required = true)]
    urls: Vec<String>,
    #[arg(short = 'X', long, default_value = "GET")]
    method: String,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// The request body.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the request body from a file.
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Also trust the CA certificates in this PEM file (https targets).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Accept any certificate, e.g. K3s's Traefik with its self-signed
    /// default one. Never against anything that matters.
    #[arg(long, short = 'k')]
    insecure: bool,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug)]
struct PgArgs {
    /// Read-write connection string (the primary), e.g.
    /// `postgresql://app:secret@db-rw:5432/app` or `host=... user=...`.
    #[arg(long, env = "K3SCALE_LOAD_PRIMARY", hide_env_values = true)]
    primary: String,
    /// Read-only connection string (a replica; repeatable). Without one,
    /// reads go to the primary.
    #[arg(
        long = "replica",
        env = "K3SCALE_LOAD_REPLICAS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    replicas: Vec<String>,
    /// Share of reads among all operations.
    #[arg(long, default_value_t = 0.8)]
    read_ratio: f64,
    /// Create the schema and seed it with --seed-rows rows first.
    #[arg(long)]
    init: bool,
    #[arg(long, default_value_t = 10_000)]
    seed_rows: u64,
    /// Connections per pool (primary, each replica); default: --connections.
    #[arg(long)]
    pool_size: Option<usize>,
    /// Read every n-th insert back on a replica to measure replication lag
    /// (0: off).
    #[arg(long, default_value_t = 10)]
    lag_probe_every: u64,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// How long to run (required: a run always ends), e.g. `30s`, `10m`.
    #[arg(short, long, value_parser = humantime::parse_duration)]
    duration: Duration,
    /// open: requests arrive at the profile's rate whatever the answers
    /// (latency counts queueing); closed: each worker waits for its answer.
    #[arg(long, value_enum, default_value_t = ModelArg::Open)]
    model: ModelArg,
    #[arg(long, value_enum, default_value_t = ShapeArg::Steady)]
    profile: ShapeArg,
    /// Requests per second: the steady rate, the ramp's start, the spike's
    /// and flash sale's baseline, the sawtooth's low.
    #[arg(short, long)]
    rate: Option<f64>,
    /// Ramp: the rate at the end of --over.
    #[arg(long)]
    to: Option<f64>,
    /// Ramp: how long the ramp takes (default: the whole run).
    #[arg(long, value_parser = humantime::parse_duration)]
    over: Option<Duration>,
    /// Spike: the rate during the spike; sawtooth: the high.
    #[arg(long)]
    peak: Option<f64>,
    /// Spike, flash sale: when it starts.
    #[arg(long, value_parser = humantime::parse_duration)]
    at: Option<Duration>,
    /// Spike, flash sale: how long it lasts.
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    hold: Option<Duration>,
    /// Flash sale: how many times the baseline at its height.
    #[arg(long, default_value_t = 10.0)]
    factor: f64,
    /// Sawtooth: the length of one climb.
    #[arg(long, value_parser = humantime::parse_duration)]
    period: Option<Duration>,
    /// A custom shape: `time,rate` lines, linear between points.
    #[arg(long, conflicts_with = "profile")]
    profile_file: Option<PathBuf>,
    /// Open model: the most requests in flight (connections); closed model:
    /// the number of workers.
    #[arg(short, long, default_value_t = 64)]
    connections: usize,
    /// Closed model: the pause between a worker's requests.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    think: Duration,
    /// Per-request timeout.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    timeout: Duration,
    /// Write report.json, timeline.csv and chart.svg here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the report as JSON instead of the summary.
    #[arg(long)]
    json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum ModelArg {
    Open,
    Closed,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum ShapeArg {
    Steady,
    Ramp,
    Spike,
    FlashSale,
    Sawtooth,
}

impl RunArgs {
    fn shape(&self) -> anyhow::Result<(Shape, String)> {
        if let Some(path) = &self.profile_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading profile file {}", path.display()))?;
            let points =
                profile::parse_points(&text).with_context(|| format!("profile file {}", path.display()))?;
            return Ok((Shape::Points(points), format!("file {}", path.display())));
        }
        let need = |v: Option<f64>, flag: &str| {
            v.with_context(|| format!("--profile {} needs {flag}", self.profile.to_possible_value_name()))
        };
        let needd = |v: Option<Duration>, flag: &str| {
            v.with_context(|| format!("--profile {} needs {flag}", self.profile.to_possible_value_name()))
        };
        let rate = need(self.rate, "--rate")?;
        let h = |d: Duration| humantime::format_duration(d).to_string();
        Ok(match self.profile {
            ShapeArg::Steady => (Shape::Steady { rate }, format!("steady {rate}/s")),
            ShapeArg::Ramp => {
                let to = need(self.to, "--to")?;
                let over = self.over.unwrap_or(self.duration);
                (
                    Shape::Ramp { from: rate, to, over },
                    format!("ramp {rate}→{to}/s over {}", h(over)),
                )
            }
            ShapeArg::Spike => {
                let (peak, at, hold) = (
                    need(self.peak, "--peak")?,
                    needd(self.at, "--at")?,
                    needd(self.hold, "--for")?,
                );
                (
                    Shape::Spike {
                        base: rate,
                        peak,
                        at,
                        hold,
                    },
                    format!("spike {rate}→{peak}/s at {} for {}", h(at), h(hold)),
                )
            }
            ShapeArg::FlashSale => {
                let (at, hold) = (needd(self.at, "--at")?, needd(self.hold, "--for")?);
                let factor = self.factor;
                (
                    Shape::FlashSale {
                        base: rate,
                        factor,
                        at,
                        hold,
                    },
                    format!("flash-sale {rate}/s ×{factor} at {} for {}", h(at), h(hold)),
                )
            }
            ShapeArg::Sawtooth => {
                let (peak, period) = (need(self.peak, "--peak")?, needd(self.period, "--period")?);
                (
                    Shape::Sawtooth {
                        low: rate,
                        high: peak,
                        period,
                    },
                    format!("sawtooth {rate}→{peak}/s every {}", h(period)),
                )
            }
        })
    }

    /// The profile (for the closed model: only its duration counts).
    fn plan(&self) -> anyhow::Result<(Arc<Profile>, Model, String)> {
        if self.connections == 0 {
            bail!("--connections must be at least 1");
        }
        if self.timeout.is_zero() {
            bail!("--timeout must be more than 0");
        }
        match self.model {
            ModelArg::Open => {
                let (shape, name) = self.shape()?;
                Ok((Arc::new(Profile::new(&shape, self.duration)?), Model::Open, name))
            }
            ModelArg::Closed => {
                if self.rate.is_some() || self.profile_file.is_some() || self.profile != ShapeArg::Steady {
                    bail!(
                        "the closed model sends as fast as its workers go: drop --rate/--profile, or use --model open"
                    );
                }
                let profile = Profile::new(&Shape::Steady { rate: 1.0 }, self.duration)?;
                Ok((
                    Arc::new(profile),
                    Model::Closed { think: self.think },
                    format!("closed, think {}", humantime::format_duration(self.think)),
                ))
            }
        }
    }
}

trait ValueName {
    fn to_possible_value_name(&self) -> String;
}

impl<T: ValueEnum> ValueName for T {
    fn to_possible_value_name(&self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Cancelled by the first Ctrl-C (the run stops and reports what it has);
/// a second one exits at once.
fn ctrl_c() -> CancellationToken {
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nstopping: finishing requests in flight (Ctrl-C again to quit now)");
            token.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    stop
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.mode {
        Mode::Http(args) => run_http(args).await,
        Mode::Pg(args) => run_pg(args).await,
    }
}

async fn run_http(args: HttpArgs) -> anyhow::Result<ExitCode> {
    let (profile, model, profile_name) = args.run.plan()?;
    let targets: Vec<Target> = args
        .urls
        .iter()
        .map(|u| Target::parse(u))
        .collect::<Result<_, _>>()?;
    let method = args
        .method
        .parse()
        .with_context(|| format!("bad --method `{}`", args.method))?;
    let body = match (&args.body, &args.body_file) {
        (Some(b), _) => Bytes::from(b.clone()),
        (None, Some(path)) => Bytes::from(
            std::fs::read(path).with_context(|| format!("reading --body-file {}", path.display()))?,
        ),
        (None, None) => Bytes::new(),
    };
    let spec = Arc::new(RequestSpec {
        method,
        headers: web::parse_headers(&args.headers)?,
        body,
        timeout: args.run.timeout,
    });
    let tls = web::TlsOptions {
        ca_file: args.ca_file.clone(),
        insecure: args.insecure,
    };
    let connector = web::connector(&tls)?;
    web::check_reachable(&targets, &connector).await?;
    let targets: Arc<[Target]> = targets.into();
    let clients = (0..args.run.connections)
        .map(|_| HttpClient::new(spec.clone(), targets.clone(), connector.clone()))
        .collect();
    let setup = setup(
        "http",
        targets.iter().map(Target::display).collect(),
        &args.run,
        &profile,
        model,
        profile_name,
    );
    let outcome = driver::run(profile, model, clients, ctrl_c(), args.run.timeout).await;
    finish(Report::new(setup, outcome, None), &args.run)
}

async fn run_pg(args: PgArgs) -> anyhow::Result<ExitCode> {
    let (profile, model, profile_name) = args.run.plan()?;
    let spec = PgSpec {
        primary: args.primary.clone(),
        replicas: args.replicas.clone(),
        read_ratio: args.read_ratio,
        pool_size: args.pool_size.unwrap_or(args.run.connections),
        timeout: args.run.timeout,
        lag_probe_every: args.lag_probe_every,
    };
    let pg = pg::connect(&spec, args.init.then_some(args.seed_rows)).await?;
    let clients: Vec<_> = (0..args.run.connections).map(|_| pg.client()).collect();
    let mut targets = vec![format!("primary {}", pg::describe(&args.primary))];
    targets.extend(
        args.replicas
            .iter()
            .map(|r| format!("replica {}", pg::describe(r))),
    );
    let setup = setup("pg", targets, &args.run, &profile, model, profile_name);
    let outcome = driver::run(profile, model, clients, ctrl_c(), args.run.timeout).await;
    pg.finish_probes().await;
    let lag = (!args.replicas.is_empty() && args.lag_probe_every > 0).then(|| pg.lag.report());
    finish(Report::new(setup, outcome, lag), &args.run)
}

fn setup(
    mode: &'static str,
    targets: Vec<String>,
    run: &RunArgs,
    profile: &Profile,
    model: Model,
    profile_name: String,
) -> Setup {
    Setup {
        mode,
        targets,
        model: match model {
            Model::Open => "open",
            Model::Closed { .. } => "closed",
        },
        profile: profile_name,
        workers: run.connections,
        planned: matches!(model, Model::Open).then(|| profile.total()),
        duration_s: profile.duration().as_secs_f64(),
    }
}

fn finish(report: Report, run: &RunArgs) -> anyhow::Result<ExitCode> {
    if run.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.summary());
    }
    if let Some(dir) = &run.out {
        report.write_to(dir)?;
        eprintln!("wrote {}/report.json, timeline.csv, chart.svg", dir.display());
    }
    // Exit 1 when nothing succeeded: a script driving a demo must notice.
    Ok(if report.sent > 0 && report.ok == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
