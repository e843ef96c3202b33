//! The status page's chart of the last 24 hours, drawn here as SVG (the
//! page works offline: no script or font is fetched): nodes per pool
//! above, pods waiting and cluster CPU below, scale events marked with
//! their reasons on hover.

use super::esc;
use crate::samples::{KEEP, Sample};
use crate::state::StoredEvent;
use k3scale_core::Time;
use std::fmt::Write as _;

const W: f64 = 760.0;
const LEFT: f64 = 40.0;
const RIGHT: f64 = 44.0;
/// The nodes panel and the waiting/CPU panel: (top, height).
const NODES: (f64, f64) = (24.0, 130.0);
const WAITING: (f64, f64) = (190.0, 70.0);
const H: f64 = 286.0;
pub const PALETTE: [&str; 6] = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#7f7f7f"];
const WAITING_COLOR: &str = "#d62728";
const CPU_COLOR: &str = "#ff7f0e";

/// The chart of `samples` and `events` (newest first) over the day before `now`.
pub fn history(samples: &[&Sample], pools: &[String], events: &[StoredEvent], now: Time) -> String {
    let start = now.as_millis().saturating_sub(KEEP.as_millis() as u64);
    let x = |t: Time| {
        let f = t.as_millis().saturating_sub(start) as f64 / KEEP.as_millis() as f64;
        LEFT + f.clamp(0.0, 1.0) * (W - LEFT - RIGHT)
    };
    let peak_nodes = samples
        .iter()
        .flat_map(|s| s.nodes.values())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let peak_waiting = samples.iter().map(|s| s.unschedulable).max().unwrap_or(0).max(1);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id=history viewBox="0 0 {W} {H}" role=img aria-label="nodes, pods waiting and CPU over the last 24 hours">"#
    );
    // Axes: whole-number node ticks; waiting pods left and CPU % right below.
    for (top, height, max, label) in [
        (NODES.0, NODES.1, peak_nodes, "nodes"),
        (WAITING.0, WAITING.1, peak_waiting, "waiting"),
    ] {
        let step = max.div_ceil(4).max(1);
        let mut v = 0;
        while v <= max {
            let y = top + height - height * v as f64 / max as f64;
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{v}</text>"##,
                W - RIGHT,
                LEFT - 4.0,
                y + 3.0
            );
            v += step;
        }
        let _ = write!(
            svg,
            r#"<text x="{LEFT}" y="{:.1}" font-size="10">{label}</text>"#,
            top - 8.0
        );
    }
    for pct in [0, 50, 100] {
        let y = WAITING.0 + WAITING.1 - WAITING.1 * f64::from(pct) / 100.0;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{:.1}" font-size="10" fill="{CPU_COLOR}">{pct}%</text>"#,
            W - RIGHT + 4.0,
            y + 3.0
        );
    }
    // Hours along the bottom, every 3 hours (UTC).
    let hour_ms = 3_600_000;
    let mut t = start - start % (3 * hour_ms) + 3 * hour_ms;
    while t <= now.as_millis() {
        let xt = x(Time::from_millis(t));
        let _ = write!(
            svg,
            r##"<line x1="{xt:.1}" x2="{xt:.1}" y1="{}" y2="{}" stroke="#eee"/><text x="{xt:.1}" y="{}" font-size="10" text-anchor="middle">{:02}:00</text>"##,
            NODES.0,
            WAITING.0 + WAITING.1,
            H - 4.0,
            (t / hour_ms) % 24
        );
        t += 3 * hour_ms;
    }
    let line = |svg: &mut String, points: &[(f64, f64)], color: &str, class: &str| {
        if points.is_empty() {
            return;
        }
        let path: Vec<String> = points.iter().map(|(px, py)| format!("{px:.1},{py:.1}")).collect();
        let _ = write!(
            svg,
            r#"<polyline class="{class}" fill="none" stroke="{color}" stroke-width="1.6" points="{}"/>"#,
            path.join(" ")
        );
    };
    // Steps, not slopes: a node count holds until the next sample.
    let steps = |value: &dyn Fn(&Sample) -> Option<f64>, top: f64, height: f64, max: f64| {
        let mut points = Vec::new();
        for s in samples {
            let Some(v) = value(s) else { continue };
            let y = top + height - height * (v / max).min(1.0);
            if let Some(&(_, prev)) = points.last() {
                points.push((x(s.at), prev));
            }
            points.push((x(s.at), y));
        }
        if let (Some(&(_, y)), Some(_)) = (points.last(), samples.last()) {
            points.push((x(now), y));
        }
        points
    };
    for (i, pool) in pools.iter().enumerate() {
        let value = |s: &Sample| s.nodes.get(pool).map(|n| f64::from(*n));
        let points = steps(&value, NODES.0, NODES.1, f64::from(peak_nodes));
        line(&mut svg, &points, PALETTE[i % PALETTE.len()], "nodes");
    }
    let waiting = steps(
        &|s: &Sample| Some(f64::from(s.unschedulable)),
        WAITING.0,
        WAITING.1,
        f64::from(peak_waiting),
    );
    line(&mut svg, &waiting, WAITING_COLOR, "waiting");
    let cpu = steps(&|s: &Sample| s.cpu, WAITING.0, WAITING.1, 1.0);
    line(&mut svg, &cpu, CPU_COLOR, "cpu");
    // Scale events: up above the nodes panel's top, down below it.
    for e in events.iter().filter(|e| e.event.at.as_millis() >= start) {
        let ex = x(e.event.at);
        let (shape, color) = match e.event.kind.as_str() {
            "scale-up" => (
                format!("M{ex:.1},{} l-5,8 h10 z", NODES.0 - 10.0 + 2.0),
                "#2ca02c",
            ),
            "scale-down" => (
                format!("M{ex:.1},{} l-5,-8 h10 z", NODES.0 + NODES.1 + 12.0),
                "#ff7f0e",
            ),
            _ => (
                format!("M{:.1},{} l8,8 m0,-8 l-8,8", ex - 4.0, NODES.0 + NODES.1 + 4.0),
                "#d62728",
            ),
        };
        let _ = write!(
            svg,
            r#"<g class="event"><title>{} {} {} {}: {}</title><path d="{shape}" fill="{color}" stroke="{color}"/></g>"#,
            crate::status::timestamp(e.event.at),
            esc(&e.event.kind),
            esc(&e.event.pool),
            esc(&e.event.nodes.join(", ")),
            esc(&e.event.message)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The chart's legend, as HTML above it (it hides no line).
pub fn legend(pools: &[String]) -> String {
    let mut h = String::from("<p class=legend>");
    for (i, pool) in pools.iter().enumerate() {
        let _ = write!(
            h,
            "<span style=\"color:{}\">&#9632;</span> {} nodes ",
            PALETTE[i % PALETTE.len()],
            esc(pool)
        );
    }
    let _ = write!(
        h,
        "<span style=\"color:{WAITING_COLOR}\">&#9632;</span> pods waiting \
         <span style=\"color:{CPU_COLOR}\">&#9632;</span> cluster CPU \
         <span style=\"color:#2ca02c\">&#9650;</span> scale-up \
         <span style=\"color:#ff7f0e\">&#9660;</span> scale-down</p>"
    );
    h
}
