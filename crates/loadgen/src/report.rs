//! The final report: a summary for people, JSON and a per-second CSV for
//! tools, and an SVG chart of rate and latency over time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;
use serde::Serialize;

use crate::driver::Outcome;
use crate::pg::LagReport;
use crate::stats::{ErrorKind, OpTotals, Percentiles, Second};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: &'static str,
    /// Where the load went, without credentials.
    pub targets: Vec<String>,
    pub model: &'static str,
    pub profile: String,
    pub workers: usize,
    /// Requests the profile scheduled (open model).
    pub planned: Option<u64>,
    pub duration_s: f64,
    pub elapsed_s: f64,
    pub interrupted: bool,
    pub sent: u64,
    /// Scheduled requests dropped: the target fell too far behind (open model).
    pub not_sent: u64,
    /// Requests answered or failed per second of the run.
    pub achieved_rate: f64,
    /// The rate the profile asked for on average (open model).
    pub target_rate: Option<f64>,
    pub ok: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub latency: Percentiles,
    pub ops: BTreeMap<String, OpTotals>,
    pub replication: Option<LagReport>,
    pub timeline: Vec<Second>,
}

/// How the run was set up, for the report.
#[derive(Debug, Clone)]
pub struct Setup {
    pub mode: &'static str,
    pub targets: Vec<String>,
    pub model: &'static str,
    pub profile: String,
    pub workers: usize,
    pub planned: Option<u64>,
    pub duration_s: f64,
}

impl Report {
    pub fn new(setup: Setup, outcome: Outcome, replication: Option<LagReport>) -> Self {
        let elapsed_s = outcome.elapsed.as_secs_f64();
        let r = outcome.record;
        Report {
            mode: setup.mode,
            targets: setup.targets,
            model: setup.model,
            profile: setup.profile,
            workers: setup.workers,
            planned: setup.planned,
            duration_s: setup.duration_s,
            elapsed_s,
            interrupted: outcome.interrupted,
            sent: outcome.sent,
            not_sent: outcome.not_sent,
            achieved_rate: if elapsed_s > 0.0 {
                outcome.sent as f64 / elapsed_s
            } else {
                0.0
            },
            target_rate: setup.planned.map(|p| p as f64 / setup.duration_s),
            ok: r.ok,
            errors: r.errors,
            latency: r.latency,
            ops: r.ops,
            replication,
            timeline: r.timeline,
        }
    }

    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "k3scale-load {} → {}{}",
            self.mode,
            self.targets.join(", "),
            if self.interrupted {
                "  (interrupted: partial report)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "  model {} · profile {} · {} workers · {:.1}s of {:.0}s",
            self.model, self.profile, self.workers, self.elapsed_s, self.duration_s
        );
        let target = self
            .target_rate
            .map(|t| format!(" (target {t:.1}/s)"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  requests {} · ok {} · errors {} · rate {:.1}/s{target}",
            self.sent,
            self.ok,
            self.error_total(),
            self.achieved_rate
        );
        if self.not_sent > 0 {
            let _ = writeln!(
                s,
                "  not sent {}: the target fell more than the request timeout behind schedule",
                self.not_sent
            );
        }
        let _ = writeln!(s, "  latency (ms)     p50      p90      p99    p99.9      max");
        let row = |name: &str, p: &Percentiles| {
            format!(
                "  {name:<12} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
                p.p50, p.p90, p.p99, p.p999, p.max
            )
        };
        s.push_str(&row("all", &self.latency));
        if self.ops.len() > 1 {
            for (op, t) in &self.ops {
                s.push_str(&row(op, &t.latency));
            }
        }
        if !self.errors.is_empty() {
            let kinds: Vec<String> = self.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            let _ = writeln!(s, "  errors by kind: {}", kinds.join(", "));
        }
        if let Some(hint) = self.hint() {
            let _ = writeln!(s, "  {hint}");
        }
        if let Some(r) = &self.replication {
            let _ = writeln!(
                s,
                "  replication lag (own inserts read back on replicas): {} probes, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{}",
                r.probes,
                r.lag.p50,
                r.lag.p99,
                r.lag.max,
                if r.gave_up > 0 {
                    format!(", {} not seen", r.gave_up)
                } else {
                    String::new()
                }
            );
        }
        s
    }

    /// What to check when most requests failed the same way.
    fn hint(&self) -> Option<&'static str> {
        let (kind, n) = self.errors.iter().max_by_key(|(_, n)| **n)?;
        if *n * 2 < self.sent {
            return None;
        }
        Some(match kind.as_str() {
            k if k.starts_with("auth") => {
                "most requests were refused as unauthorized: check the credentials (--header Authorization: ..., or the connection string)"
            }
            "refused" => "most connections were refused: the server went away or its port is wrong",
            "timeout" => "most requests timed out: the target is overloaded or --timeout is too short",
            "read-only" => "writes went to a read-only server: --primary must be the read-write one",
            _ => "most requests failed: see errors by kind",
        })
    }

    /// The per-second timeline as CSV.
    pub fn timeline_csv(&self) -> String {
        let mut s = String::from("second,target_rate,ok,errors,p50_ms,p90_ms,p99_ms,max_ms\n");
        for t in &self.timeline {
            let _ = writeln!(
                s,
                "{},{:.1},{},{},{:.3},{:.3},{:.3},{:.3}",
                t.second,
                t.target_rate,
                t.ok,
                t.errors,
                t.latency.p50,
                t.latency.p90,
                t.latency.p99,
                t.latency.max
            );
        }
        s
    }

    /// Writes `report.json`, `timeline.csv` and `chart.svg` into `dir`.
    pub fn write_to(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = serde_json::to_string_pretty(self)?;
        let write = |name: &str, body: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))
        };
        write("report.json", json.as_bytes())?;
        write("timeline.csv", self.timeline_csv().as_bytes())?;
        self.chart(&dir.join("chart.svg"))
    }

    /// Rate (achieved and asked for) above, latency p50/p99 below, per
    /// second.
    pub fn chart(&self, path: &Path) -> anyhow::Result<()> {
        let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(300);
        let secs = self.timeline.len().max(1) as f64;
        let rate = |s: &Second| (s.ok + s.errors) as f64;
        let max_rate = self
            .timeline
            .iter()
            .map(|s| rate(s).max(s.target_rate))
            .fold(1.0, f64::max);
        let max_lat = self.timeline.iter().map(|s| s.latency.p99).fold(1.0, f64::max);

        let mut c = ChartBuilder::on(&top)
            .caption("requests per second", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(25)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..secs, 0.0..max_rate * 1.1)?;
        c.configure_mesh().x_desc("second").draw()?;
        if self.timeline.iter().any(|s| s.target_rate > 0.0) {
            c.draw_series(LineSeries::new(
                self.timeline.iter().map(|s| (s.second as f64, s.target_rate)),
                &BLUE,
            ))?
            .label("target")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
        }
        c.draw_series(LineSeries::new(
            self.timeline.iter().map(|s| (s.second as f64, rate(s))),
            &GREEN,
        ))?
        .label("achieved")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], GREEN));
        c.draw_series(LineSeries::new(
            self.timeline.iter().map(|s| (s.second as f64, s.errors as f64)),
            &RED,
        ))?
        .label("errors")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;

        let mut c = ChartBuilder::on(&bottom)
            .caption("latency (ms)", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(25)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..secs, 0.0..max_lat * 1.1)?;
        c.configure_mesh().x_desc("second").draw()?;
        c.draw_series(LineSeries::new(
            self.timeline.iter().map(|s| (s.second as f64, s.latency.p50)),
            &BLUE,
        ))?
        .label("p50")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
        c.draw_series(LineSeries::new(
            self.timeline.iter().map(|s| (s.second as f64, s.latency.p99)),
            &MAGENTA,
        ))?
        .label("p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], MAGENTA));
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    }
}
