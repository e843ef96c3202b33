//! The SVG chart, read at a glance: a legend of its own above the plots
//! (it hides no line), nodes over time for each contender with demand on
//! a second axis, the pods left waiting, and a zoom on the busiest hours
//! so a short event in a long trace is still seen.

use crate::engine::RunResult;
use plotters::coord::Shift;
use plotters::prelude::*;

const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];
const DEMAND: RGBAColor = RGBAColor(0, 0, 0, 0.35);
/// Lines are downsampled to about this many points (max per bucket, so peaks survive).
const MAX_POINTS: usize = 1500;
/// The zoom panel shows this many minutes around the peak demand, when
/// the trace is at least three times as long.
const ZOOM_MINUTES: usize = 4 * 60;

#[derive(Debug, thiserror::Error)]
#[error("cannot draw chart {path}: {message}")]
pub struct ChartError {
    pub path: String,
    pub message: String,
}

/// Write `path` as SVG: node count per run, CPU demand, pending pods, and
/// a zoom on the busiest hours of a long trace.
pub fn write_svg(path: &str, title: &str, runs: &[RunResult]) -> Result<(), ChartError> {
    let err = |e: &dyn std::fmt::Display| ChartError {
        path: path.to_string(),
        message: e.to_string(),
    };
    let demand = runs
        .first()
        .map(|r| r.demand_per_minute.as_slice())
        .unwrap_or(&[]);
    // An infinite axis range never ends its tick loop: refuse it.
    if let Some(v) = demand.iter().find(|v| !v.is_finite()) {
        return Err(err(&format!("demand {v} is not a finite number")));
    }
    let minutes = runs
        .iter()
        .map(|r| r.nodes_per_minute.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let zoom = zoom_window(demand, minutes);

    let height = if zoom.is_some() { 1000 } else { 760 };
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(|e| err(&e))?;
    let (legend, rest) = root.split_vertically(40);
    draw_legend(&legend, runs).map_err(|e| err(&e))?;
    let (nodes_area, rest) = rest.split_vertically(400);
    let (pending_area, zoom_area) = rest.split_vertically(240);
    let all = 0..minutes;
    draw_nodes(
        &nodes_area,
        runs,
        demand,
        all.clone(),
        "nodes (demand on the right axis)",
    )
    .map_err(|e| err(&e))?;
    draw_pending(&pending_area, runs, all).map_err(|e| err(&e))?;
    if let Some(window) = zoom {
        let caption = format!(
            "zoom: hours {:.1} to {:.1}, around the peak demand",
            window.start as f64 / 60.0,
            window.end as f64 / 60.0
        );
        draw_nodes(&zoom_area, runs, demand, window, &caption).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// One swatch and name per line, in a strip of its own.
fn draw_legend(area: &DrawingArea<SVGBackend<'_>, Shift>, runs: &[RunResult]) -> DrawResult {
    let font = ("sans-serif", 15).into_font();
    let mut x = 60;
    let mut entry = |name: &str, style: ShapeStyle| -> DrawResult {
        area.draw(&PathElement::new(vec![(x, 20), (x + 24, 20)], style))?;
        area.draw(&Text::new(name.to_string(), (x + 30, 12), font.clone()))?;
        x += 50 + 8 * name.len() as i32;
        Ok(())
    };
    for (i, run) in runs.iter().enumerate() {
        entry(&run.name, color(i).stroke_width(3))?;
    }
    entry("CPU demand (cores)", DEMAND.stroke_width(2))
}

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Nodes per contender over `window` (minutes), whole-number ticks, the
/// first contender (k3scale) drawn last so no other line hides it.
fn draw_nodes(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    runs: &[RunResult],
    demand: &[f64],
    window: std::ops::Range<usize>,
    caption: &str,
) -> DrawResult {
    let slice = |v: &[u32]| v[window.start.min(v.len())..window.end.min(v.len())].to_vec();
    let max_nodes = runs
        .iter()
        .flat_map(|r| slice(&r.nodes_per_minute))
        .max()
        .unwrap_or(1)
        .max(1);
    let demand = &demand[window.start.min(demand.len())..window.end.min(demand.len())];
    let max_demand = demand.iter().copied().fold(0.0, f64::max).max(0.1);
    let (from, to) = (window.start as f64 / 60.0, window.end as f64 / 60.0);
    let top = max_nodes + 1;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .right_y_label_area_size(60)
        .build_cartesian_2d(from..to, 0u32..top)?
        .set_secondary_coord(from..to, 0.0..max_demand * 1.1);
    chart
        .configure_mesh()
        .x_desc("hours")
        .y_desc("nodes")
        .y_labels(top.min(12) as usize + 1)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("CPU demand (cores)")
        .draw()?;
    chart.draw_secondary_series(LineSeries::new(
        downsample(demand, window.start),
        DEMAND.stroke_width(1),
    ))?;
    for (i, run) in runs.iter().enumerate().rev() {
        let nodes: Vec<f64> = slice(&run.nodes_per_minute).into_iter().map(f64::from).collect();
        let points = downsample(&nodes, window.start)
            .into_iter()
            .map(|(x, y)| (x, y as u32));
        let width = if i == 0 { 3 } else { 2 };
        chart.draw_series(LineSeries::new(points, color(i).stroke_width(width)))?;
    }
    Ok(())
}

/// Pods created and not yet bound, per contender: the cost of waiting.
fn draw_pending(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    runs: &[RunResult],
    window: std::ops::Range<usize>,
) -> DrawResult {
    let most = runs
        .iter()
        .flat_map(|r| r.pending_per_minute.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut chart = ChartBuilder::on(area)
        .caption("pods waiting for a node", ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .right_y_label_area_size(60)
        .build_cartesian_2d(
            window.start as f64 / 60.0..window.end as f64 / 60.0,
            0u32..most + 1,
        )?;
    chart
        .configure_mesh()
        .x_desc("hours")
        .y_desc("pods")
        .y_labels((most + 1).min(6) as usize + 1)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (i, run) in runs.iter().enumerate().rev() {
        let pending: Vec<f64> = run.pending_per_minute.iter().copied().map(f64::from).collect();
        let points = downsample(&pending, window.start)
            .into_iter()
            .map(|(x, y)| (x, y as u32));
        chart.draw_series(LineSeries::new(points, color(i).stroke_width(2)))?;
    }
    Ok(())
}

/// The minutes to zoom on: [`ZOOM_MINUTES`] around the peak demand, when
/// the whole trace is long enough for a short event to be lost in it.
fn zoom_window(demand: &[f64], minutes: usize) -> Option<std::ops::Range<usize>> {
    if minutes < 3 * ZOOM_MINUTES || demand.is_empty() {
        return None;
    }
    let peak = demand
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    let start = peak.saturating_sub(ZOOM_MINUTES / 2).min(minutes - ZOOM_MINUTES);
    Some(start..start + ZOOM_MINUTES)
}

/// (hour, value) points from minute `offset` on, at most about
/// `MAX_POINTS`, keeping each bucket's maximum.
fn downsample(per_minute: &[f64], offset: usize) -> Vec<(f64, f64)> {
    let bucket = per_minute.len().div_ceil(MAX_POINTS).max(1);
    per_minute
        .chunks(bucket)
        .enumerate()
        .map(|(i, c)| {
            (
                (offset + i * bucket) as f64 / 60.0,
                c.iter().copied().fold(f64::MIN, f64::max),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_trace_zooms_on_its_peak_and_a_short_one_does_not() {
        let mut day = vec![1.0; 24 * 60];
        day[19 * 60] = 9.0;
        assert_eq!(zoom_window(&day, day.len()), Some(17 * 60..21 * 60));
        // The peak at the very end: the window stays inside the trace.
        let mut late = vec![1.0; 24 * 60];
        late[24 * 60 - 1] = 9.0;
        assert_eq!(zoom_window(&late, late.len()), Some(20 * 60..24 * 60));
        assert_eq!(zoom_window(&[1.0; 600], 600), None);
    }
}
