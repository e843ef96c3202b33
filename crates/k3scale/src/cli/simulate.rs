//! `k3scale simulate`: the backtest, no cluster needed.

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use k3scale::metrics::history;
use k3scale::metrics::prometheus::Prometheus;
use k3scale_core::config;
use k3scale_sim::{Candidate, SCENARIOS, SimOptions, Trace, chart, compare_candidates, report, scenario};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Built-in scenario (see --list).
    #[arg(long, default_value = scenario::DEFAULT_SCENARIO, conflicts_with = "trace")]
    scenario: String,
    /// Replay a trace file instead (CSV: time_s[,workload],cpu|requests|replicas).
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Replay your cluster's own history instead: the replicas each
    /// workload had, read from this Prometheus (see --query).
    #[arg(long, conflicts_with = "trace", value_name = "URL")]
    prometheus: Option<String>,
    /// How much history --prometheus replays (e.g. 7d, 36h).
    #[arg(long, default_value = "7d", value_parser = positive_duration, requires = "prometheus")]
    range: Duration,
    /// Where that history ends, in Unix seconds (default: now).
    #[arg(long, requires = "prometheus")]
    until: Option<f64>,
    /// PromQL for --prometheus: replicas per workload, one series each.
    #[arg(long, default_value = history::DEFAULT_QUERY, requires = "prometheus")]
    query: String,
    /// Multiply the trace's demand (replay traffic at N times its rate).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// CPU-seconds each request costs, for `requests` traces.
    #[arg(long, default_value_t = 0.05)]
    cpu_per_request: f64,
    /// Only replay the first N days.
    #[arg(long)]
    days: Option<f64>,
    /// Seed for the built-in scenarios' noise.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Configuration (pools and policy; `-` reads standard input); default:
    /// the embedded default. Given more than once, each runs as a contender
    /// of its own (named after its file) and the baselines use the first.
    #[arg(short, long)]
    config: Vec<PathBuf>,
    /// Where to write the SVG chart.
    #[arg(long, default_value = "k3scale-simulation.svg", conflicts_with = "no_chart")]
    chart: PathBuf,
    /// Write no chart.
    #[arg(long)]
    no_chart: bool,
    /// Replay a trace longer than a year (refused by default: a file that
    /// counts seconds in another unit would run for ages).
    #[arg(long)]
    allow_long_trace: bool,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// List the built-in scenarios and exit.
    #[arg(long)]
    list: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.list {
        for s in SCENARIOS {
            println!("{:14} {}", s.name, s.about);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !(args.scale.is_finite() && args.scale > 0.0) {
        bail!("--scale must be a positive number, got {}", args.scale);
    }
    if !(args.cpu_per_request.is_finite() && args.cpu_per_request > 0.0) {
        bail!(
            "--cpu-per-request must be a positive number of CPU-seconds, got {}",
            args.cpu_per_request
        );
    }
    let days = match args.days {
        None => None,
        Some(d) => match Duration::try_from_secs_f64(d * 86_400.0) {
            Ok(span) if d > 0.0 => Some(span),
            _ => bail!("--days must be a positive number of days, got {d}"),
        },
    };
    let configs = load_configs(&args.config)?;
    let mut opts = SimOptions {
        cpu_per_request: args.cpu_per_request,
        ..SimOptions::default()
    };
    let mut candidates: Vec<Candidate> = configs.iter().map(|l| l.candidate.clone()).collect();

    let (label, mut trace) = match (&args.trace, &args.prometheus) {
        (_, Some(url)) => {
            // The URL is printed in the table and in errors: no credentials in it.
            let authority = url
                .split("://")
                .nth(1)
                .unwrap_or(url)
                .split('/')
                .next()
                .unwrap_or("");
            if authority.contains('@') {
                bail!(
                    "--prometheus: the URL must not carry credentials (they would be printed); put them in the config's metrics.prometheus (basic_auth or bearer_token_file)"
                );
            }
            let until = match args.until {
                Some(t) if t.is_finite() && t > 0.0 => t,
                Some(t) => bail!("--until must be a positive Unix time, got {t}"),
                None => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs_f64(),
            };
            let label = format!("{url} ({} to {until:.0})", config::format_duration(args.range));
            (
                label,
                prometheus_history(url, &configs, &args.query, args.range, until)?,
            )
        }
        (Some(path), None) => {
            let file = path.display().to_string();
            let bytes = std::fs::read(path).with_context(|| format!("cannot read trace {file}"))?;
            (file.clone(), Trace::read(&file, &bytes)?)
        }
        (None, None) => {
            let s = scenario::find(&args.scenario).with_context(|| {
                let names: Vec<_> = SCENARIOS.iter().map(|s| s.name).collect();
                format!(
                    "unknown scenario {:?} (built in: {})",
                    args.scenario,
                    names.join(", ")
                )
            })?;
            // A scenario may shape the pools and the workload (zones, constraints).
            let workload = opts.clone();
            for (i, c) in candidates.iter_mut().enumerate() {
                let mut own = workload.clone();
                s.prepare(&mut c.policy, if i == 0 { &mut opts } else { &mut own });
            }
            (s.name.to_string(), s.trace(args.seed))
        }
    };
    if let Some(days) = days {
        trace = trace.truncated(days);
    }
    if trace.duration() > MAX_TRACE_SPAN && !args.allow_long_trace {
        bail!(
            "{label} spans {:.0} days, more than {} (is time_s in seconds?); --days N replays its start, --allow-long-trace all of it",
            trace.duration().as_secs_f64() / 86_400.0,
            MAX_TRACE_SPAN.as_secs() / 86_400
        );
    }
    if args.scale != 1.0 {
        trace = trace
            .scaled(args.scale)
            .map_err(|e| anyhow::anyhow!("{label}: --scale {}: {e}", args.scale))?;
    }

    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{wide_bar}] {percent:>3}%")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("simulating {label}"));
    let comparison = compare_candidates(&label, &trace, &candidates, &opts, &mut |f| {
        bar.set_position((f * 1000.0) as u64)
    });
    bar.finish_and_clear();

    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&comparison)?),
        Output::Table => {
            println!(
                "scenario {label}: {:.1} h, peak demand {:.1} cores, pools {} ({})",
                comparison.hours,
                comparison.peak_demand_cores,
                candidates[0]
                    .policy
                    .pools
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                configs
                    .iter()
                    .map(|l| l.file.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            println!();
            print!("{}", report::table(&comparison.summaries));
            println!();
            for ours in &candidates {
                for other in ["fixed-peak", "threshold-2m"] {
                    if let Some(saving) = comparison.saving(&ours.name, other) {
                        println!("{} vs {other}: {saving:.1}% fewer node-hours", ours.name);
                    }
                }
            }
        }
    }
    if args.no_chart {
        return Ok(ExitCode::SUCCESS);
    }
    // Drawn after the results are printed: a chart that fails loses nothing else.
    let chart_path = args.chart.display().to_string();
    match chart::write_svg(
        &chart_path,
        &format!("k3scale simulate: {label}"),
        &comparison.runs,
    ) {
        Ok(()) => {
            if args.output == Output::Table {
                println!("chart: {chart_path}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `--range 7d`: a duration above zero.
fn positive_duration(text: &str) -> Result<Duration, String> {
    match config::parse_duration(text)? {
        Duration::ZERO => Err("must be longer than zero".into()),
        d => Ok(d),
    }
}

/// The replicas Prometheus at `url` recorded over `range` up to `until`,
/// asked with the first config's Prometheus credentials and timeout.
fn prometheus_history(
    url: &str,
    configs: &[Loaded],
    query: &str,
    range: Duration,
    until: f64,
) -> anyhow::Result<Trace> {
    let mut settings = configs.first().map(|l| l.prometheus.clone()).unwrap_or_default();
    settings.url = url.to_string();
    let prom = Prometheus::new(&settings, Vec::new())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let start = until - range.as_secs_f64();
    Ok(runtime.block_on(history::replicas(&prom, query, start, until))?)
}

/// One `--config`: its file, its contender, its Prometheus settings.
struct Loaded {
    file: String,
    candidate: Candidate,
    prometheus: config::PrometheusConfig,
}

/// Each configuration with the name it runs under: `k3scale` alone, or
/// `k3scale:<file stem>` when several are compared (numbered if two
/// files share a stem).
fn load_configs(paths: &[PathBuf]) -> anyhow::Result<Vec<Loaded>> {
    if paths.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        bail!("--config -: standard input can be read only once");
    }
    let texts = if paths.is_empty() {
        vec![(
            "(embedded default)".to_string(),
            config::DEFAULT_CONFIG.to_string(),
            "k3scale".to_string(),
        )]
    } else {
        let mut texts = Vec::new();
        for path in paths {
            let (file, text) = crate::cli::once::read_config(path)?;
            let stem = path
                .file_stem()
                .map_or_else(|| "stdin".to_string(), |s| s.to_string_lossy().into_owned());
            texts.push((file, text, stem));
        }
        texts
    };
    let several = texts.len() > 1;
    let mut out: Vec<Loaded> = Vec::new();
    for (file, text, stem) in texts {
        let loaded = config::load(&file, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut name = if several {
            format!("k3scale:{stem}")
        } else {
            "k3scale".to_string()
        };
        let base = name.clone();
        let mut n = 1;
        while out.iter().any(|l| l.candidate.name == name) {
            n += 1;
            name = format!("{base}#{n}");
        }
        out.push(Loaded {
            file,
            prometheus: loaded.config.metrics.prometheus.clone(),
            candidate: Candidate {
                name,
                policy: loaded.policy,
                interval: loaded.interval,
            },
        });
    }
    Ok(out)
}

/// The longest trace replayed without `--allow-long-trace`.
const MAX_TRACE_SPAN: Duration = Duration::from_secs(366 * 86_400);
