//! Workload traces: demand over time, from a CSV file or a built-in scenario.
//!
//! Format (documented in the README): a header row, then one row per time
//! step and workload. Columns: `time_s` (seconds from the trace start),
//! optional `workload` (default `web`), and exactly one demand column:
//! `cpu` (CPU cores the workload needs; its replicas follow an HPA),
//! `requests` (requests per row interval, turned into cores with
//! `cpu_per_request` CPU-seconds each; HPA as for `cpu`), or `replicas`
//! (the replica count itself, no HPA). A value holds until the workload's
//! next row. Lines starting with `#` are comments.

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DemandUnit {
    Cpu,
    Requests,
    Replicas,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub unit: DemandUnit,
    /// Workload name → (seconds from start, value), sorted by time.
    pub series: BTreeMap<String, Vec<(u64, f64)>>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TraceError {
    #[error("{file}: empty trace: no header row")]
    Empty { file: String },
    #[error("{file}:{line}: {message}")]
    Bad {
        file: String,
        line: usize,
        message: String,
    },
}

impl Trace {
    pub fn parse(file: &str, text: &str) -> Result<Trace, TraceError> {
        Trace::read(file, text.as_bytes())
    }

    /// Reads CSV as spreadsheets and `csv` tools write it: a UTF-8 byte
    /// order mark is skipped, fields may be quoted, `#` starts a comment.
    pub fn read(file: &str, bytes: &[u8]) -> Result<Trace, TraceError> {
        let bad = |line: u64, message: String| TraceError::Bad {
            file: file.to_string(),
            line: usize::try_from(line).unwrap_or(usize::MAX),
            message,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .comment(Some(b'#'))
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let mut rows = reader.byte_records().map(|r| match r {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                let fields = record
                    .iter()
                    .map(|f| String::from_utf8(f.to_vec()).map_err(|_| bad(line, "not UTF-8 text".into())))
                    .collect::<Result<Vec<String>, _>>()?;
                Ok((line, fields))
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                Err(bad(line, format!("not CSV: {e}")))
            }
        });
        // A comment line indented by spaces is still a comment.
        let mut next_row = || {
            rows.find(|r| {
                !matches!(r, Ok((_, f)) if f.iter().all(String::is_empty)
                    || f.first().is_some_and(|c| c.starts_with('#')))
            })
        };
        let (header_line, cols) = next_row().ok_or(TraceError::Empty {
            file: file.to_string(),
        })??;
        let find = |name: &str| cols.iter().position(|c| c == name);
        let time_col =
            find("time_s").ok_or_else(|| bad(header_line, "header has no time_s column".into()))?;
        let workload_col = find("workload");
        let demand: Vec<(DemandUnit, usize)> = [
            (DemandUnit::Cpu, "cpu"),
            (DemandUnit::Requests, "requests"),
            (DemandUnit::Replicas, "replicas"),
        ]
        .into_iter()
        .filter_map(|(unit, name)| find(name).map(|i| (unit, i)))
        .collect();
        let [(unit, value_col)] = demand[..] else {
            return Err(bad(
                header_line,
                "header needs exactly one demand column: cpu, requests or replicas".into(),
            ));
        };
        if let Some(unknown) = cols.iter().find(|c| {
            !matches!(
                c.as_str(),
                "time_s" | "workload" | "cpu" | "requests" | "replicas"
            )
        }) {
            return Err(bad(header_line, format!("unknown column {unknown:?}")));
        }
        let mut series: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
        while let Some(row) = next_row() {
            let (line, fields) = row?;
            if fields.len() != cols.len() {
                return Err(bad(
                    line,
                    format!("expected {} fields, found {}", cols.len(), fields.len()),
                ));
            }
            let time: u64 = fields[time_col].parse().map_err(|_| {
                bad(
                    line,
                    format!("time_s {:?} is not a whole number of seconds", fields[time_col]),
                )
            })?;
            let value: f64 = fields[value_col]
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    bad(
                        line,
                        format!("demand {:?} is not a number >= 0", fields[value_col]),
                    )
                })?;
            let workload = workload_col.map_or("web", |i| fields[i].as_str());
            if workload.is_empty() {
                return Err(bad(line, "empty workload name".into()));
            }
            let points = series.entry(workload.to_string()).or_default();
            if points.last().is_some_and(|(t, _)| *t >= time) {
                return Err(bad(
                    line,
                    format!("time_s {time} is not after the previous row of {workload}"),
                ));
            }
            points.push((time, value));
        }
        if series.is_empty() {
            return Err(bad(header_line, "no data rows".into()));
        }
        // Times count from the first row, whatever the file counts from
        // (seconds since the Unix epoch, say).
        let start = series
            .values()
            .filter_map(|p| p.first())
            .map(|p| p.0)
            .min()
            .unwrap_or(0);
        for points in series.values_mut() {
            for p in points.iter_mut() {
                p.0 -= start;
            }
        }
        Ok(Trace { unit, series })
    }

    /// From the first row to one row-interval past the last.
    pub fn duration(&self) -> Duration {
        let end = self
            .series
            .values()
            .filter_map(|p| {
                let last = p.last()?.0;
                let step = p.len().checked_sub(2).map_or(60, |i| last - p[i].0);
                Some(last + step)
            })
            .max()
            .unwrap_or(0);
        Duration::from_secs(end)
    }

    /// Multiply every value (replay traffic at `factor` times its rate);
    /// refused when a value would no longer be a finite number.
    pub fn scaled(mut self, factor: f64) -> Result<Trace, String> {
        for (workload, points) in self.series.iter_mut() {
            for p in points.iter_mut() {
                let scaled = p.1 * factor;
                if !scaled.is_finite() {
                    return Err(format!(
                        "{workload} at time_s {}: {:e} × {factor} is not a finite number",
                        p.0, p.1
                    ));
                }
                p.1 = scaled;
            }
        }
        Ok(self)
    }

    /// Cut the trace to its first `d`.
    pub fn truncated(mut self, d: Duration) -> Trace {
        for points in self.series.values_mut() {
            points.retain(|(t, _)| *t < d.as_secs());
        }
        self
    }
}

/// Looks up the value in force at a time, walking forward (the simulator's
/// clock only moves forward, so this is O(1) amortized).
#[derive(Debug, Clone)]
pub struct Cursor<'t> {
    points: &'t [(u64, f64)],
    next: usize,
}

impl<'t> Cursor<'t> {
    pub fn new(points: &'t [(u64, f64)]) -> Self {
        Cursor { points, next: 0 }
    }

    pub fn value_at(&mut self, secs: u64) -> f64 {
        while self.next < self.points.len() && self.points[self.next].0 <= secs {
            self.next += 1;
        }
        self.next.checked_sub(1).map_or(0.0, |i| self.points[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_count_from_the_first_row_and_scaling_never_overflows() {
        let t = Trace::parse(
            "epoch.csv",
            "time_s,workload,cpu\n1700000060,a,1\n1700000000,b,2\n1700000120,a,3\n",
        )
        .unwrap();
        assert_eq!(t.series["b"], vec![(0, 2.0)]);
        assert_eq!(t.series["a"], vec![(60, 1.0), (120, 3.0)]);
        assert_eq!(t.duration(), Duration::from_secs(180));
        let huge = Trace::parse("h.csv", "time_s,cpu\n0,1e308\n").unwrap();
        let err = huge.scaled(32.0).unwrap_err();
        assert!(err.contains("not a finite number"), "{err}");
    }

    #[test]
    fn parses_the_nasa_shape_and_multi_workload_files() {
        let t = Trace::parse("nasa.csv", "time_s,requests\n0,42\n60,62\n120,58\n").unwrap();
        assert_eq!(t.unit, DemandUnit::Requests);
        assert_eq!(t.series["web"], vec![(0, 42.0), (60, 62.0), (120, 58.0)]);
        assert_eq!(t.duration(), Duration::from_secs(180));
        let t = Trace::parse(
            "m.csv",
            "# exported\ntime_s,workload,cpu\n0,web,1.5\n0,api,0.5\n60,web,2\n",
        )
        .unwrap();
        assert_eq!(t.series.len(), 2);
        let mut c = Cursor::new(&t.series["web"]);
        assert_eq!(c.value_at(0), 1.5);
        assert_eq!(c.value_at(59), 1.5);
        assert_eq!(c.value_at(61), 2.0);
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let cases = [
            (
                "time_s,cpu\n0,1\n60,x\n",
                "t.csv:3: demand \"x\" is not a number >= 0",
            ),
            (
                "time_s,cpu\n60,1\n0,1\n",
                "t.csv:3: time_s 0 is not after the previous row of web",
            ),
            ("time,cpu\n0,1\n", "t.csv:1: header has no time_s column"),
            (
                "time_s,cpu,replicas\n0,1,1\n",
                "t.csv:1: header needs exactly one demand column",
            ),
            ("time_s,cpu\n0,1,2\n", "t.csv:2: expected 2 fields, found 3"),
            ("time_s,cpu,rps\n", "t.csv:1: unknown column \"rps\""),
            ("time_s,cpu\n0,-1\n", "t.csv:2: demand \"-1\""),
        ];
        for (text, want) in cases {
            let got = Trace::parse("t.csv", text).unwrap_err().to_string();
            assert!(got.starts_with(want), "{got:?} vs {want:?}");
        }
        assert_eq!(
            Trace::parse("t.csv", "# nothing\n"),
            Err(TraceError::Empty { file: "t.csv".into() })
        );
    }

    #[test]
    fn reads_what_spreadsheets_export_bom_quotes_and_crlf() {
        // A UTF-8 byte order mark, quoted header and fields, CRLF line ends.
        let text =
            "\u{feff}\"time_s\",\"workload\",\"cpu\"\r\n\"0\",\"web, eu\",\"1.5\"\r\n60,\"web, eu\",2\r\n";
        let t = Trace::parse("x.csv", text).unwrap();
        assert_eq!(t.series["web, eu"], vec![(0, 1.5), (60, 2.0)]);
        // Comments (even indented) and blank lines keep line numbers right.
        let got = Trace::parse("t.csv", "time_s,cpu\n\n  # note\n0,1\n60,oops\n").unwrap_err();
        assert_eq!(got.to_string(), "t.csv:5: demand \"oops\" is not a number >= 0");
        // Bytes that are not text are an error with a line, not a panic.
        let got = Trace::read("b.csv", b"time_s,cpu\n0,\xff\n").unwrap_err();
        assert_eq!(got.to_string(), "b.csv:2: not UTF-8 text");
    }
}
