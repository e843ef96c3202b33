//! `k3scale simulate`: the backtest, no cluster needed.

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use k3scale_core::config;
use k3scale_sim::{SCENARIOS, SimOptions, Trace, chart, compare, report, scenario};
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
    /// Configuration (pools and policy; `-` reads standard input); default: the embedded default.
    #[arg(short, long)]
    config: Option<PathBuf>,
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
    let (name, text) = match &args.config {
        Some(path) => crate::cli::once::read_config(path)?,
        None => (
            "(embedded default)".to_string(),
            config::DEFAULT_CONFIG.to_string(),
        ),
    };
    let loaded = config::load(&name, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut policy = loaded.policy.clone();
    let mut opts = SimOptions {
        cpu_per_request: args.cpu_per_request,
        ..SimOptions::default()
    };

    let (label, mut trace) = match &args.trace {
        Some(path) => {
            let file = path.display().to_string();
            let bytes = std::fs::read(path).with_context(|| format!("cannot read trace {file}"))?;
            (file.clone(), Trace::read(&file, &bytes)?)
        }
        None => {
            let s = scenario::find(&args.scenario).with_context(|| {
                let names: Vec<_> = SCENARIOS.iter().map(|s| s.name).collect();
                format!(
                    "unknown scenario {:?} (built in: {})",
                    args.scenario,
                    names.join(", ")
                )
            })?;
            // A scenario may shape the pools and the workload (zones, constraints).
            s.prepare(&mut policy, &mut opts);
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
    let comparison = compare(&label, &trace, &policy, loaded.interval, &opts, &mut |f| {
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
                policy
                    .pools
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                name
            );
            println!();
            print!("{}", report::table(&comparison.summaries));
            println!();
            for other in ["fixed-peak", "threshold-2m"] {
                if let Some(saving) = comparison.saving_vs(other) {
                    println!("k3scale vs {other}: {saving:.1}% fewer node-hours");
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

/// The longest trace replayed without `--allow-long-trace`.
const MAX_TRACE_SPAN: Duration = Duration::from_secs(366 * 86_400);
