//! The SVG chart: nodes over time for each policy, demand on a second axis.

use crate::engine::RunResult;
use plotters::prelude::*;

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];
/// Lines are downsampled to about this many points (max per bucket, so peaks survive).
const MAX_POINTS: usize = 1500;

#[derive(Debug, thiserror::Error)]
#[error("cannot draw chart {path}: {message}")]
pub struct ChartError {
    pub path: String,
    pub message: String,
}

/// Write `path` as SVG: one line of node count per run, plus CPU demand.
pub fn write_svg(path: &str, title: &str, runs: &[RunResult]) -> Result<(), ChartError> {
    let err = |e: &dyn std::fmt::Display| ChartError {
        path: path.to_string(),
        message: e.to_string(),
    };
    let minutes = runs
        .iter()
        .map(|r| r.nodes_per_minute.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let hours = minutes as f64 / 60.0;
    let max_nodes = runs
        .iter()
        .flat_map(|r| r.nodes_per_minute.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1);
    let demand = runs
        .first()
        .map(|r| r.demand_per_minute.as_slice())
        .unwrap_or(&[]);
    // An infinite axis range never ends its tick loop: refuse it.
    if let Some(v) = demand.iter().find(|v| !v.is_finite()) {
        return Err(err(&format!("demand {v} is not a finite number")));
    }
    let max_demand = demand.iter().copied().fold(0.0, f64::max).max(0.1);

    let root = SVGBackend::new(path, (1100, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .right_y_label_area_size(60)
        .build_cartesian_2d(0.0..hours, 0.0..f64::from(max_nodes) * 1.15)
        .map_err(|e| err(&e))?
        .set_secondary_coord(0.0..hours, 0.0..max_demand * 1.15);
    chart
        .configure_mesh()
        .x_desc("hours")
        .y_desc("nodes")
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .configure_secondary_axes()
        .y_desc("CPU demand (cores)")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_secondary_series(LineSeries::new(
            downsample(demand),
            BLACK.mix(0.35).stroke_width(1),
        ))
        .map_err(|e| err(&e))?
        .label("demand (cores, right axis)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.35)));
    for (i, run) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let nodes: Vec<f64> = run.nodes_per_minute.iter().map(|&n| f64::from(n)).collect();
        chart
            .draw_series(LineSeries::new(downsample(&nodes), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!("{} (nodes)", run.name))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// (hour, value) points, at most about `MAX_POINTS`, keeping each bucket's maximum.
fn downsample(per_minute: &[f64]) -> Vec<(f64, f64)> {
    let bucket = per_minute.len().div_ceil(MAX_POINTS).max(1);
    per_minute
        .chunks(bucket)
        .enumerate()
        .map(|(i, c)| {
            (
                (i * bucket) as f64 / 60.0,
                c.iter().copied().fold(f64::MIN, f64::max),
            )
        })
        .collect()
}
