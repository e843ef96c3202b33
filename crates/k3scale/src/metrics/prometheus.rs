//! The Prometheus HTTP API (`/api/v1/query`), as a `MetricsSource`.

use super::{MetricsError, MetricsSource};
use crate::provider::secret::Secret;
use k3scale_core::Reading;
use k3scale_core::config::PrometheusConfig;
use k3scale_core::policy::CustomRule;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug)]
enum Auth {
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

#[derive(Debug)]
pub struct Prometheus {
    client: reqwest::Client,
    base: String,
    timeout: Duration,
    auth: Option<Auth>,
    cpu_query: String,
    memory_query: String,
    custom: Vec<CustomRule>,
}

/// One series of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum ApiData {
    Vector(Vec<VectorSample>),
    Scalar((f64, String)),
    Matrix(Vec<MatrixSeries>),
    // Parsed to tell it apart; a string result is refused.
    String(#[allow(dead_code)] serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct MatrixSeries {
    #[serde(default)]
    metric: Labels,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Most steps asked for in one range query.
pub const MAX_STEPS: usize = 10_000;

/// A series' labels.
pub type Labels = BTreeMap<String, String>;
/// (Unix seconds, value) steps, `None` where a step has no finite value.
pub type Steps = Vec<(f64, Option<f64>)>;
/// One series of a range query.
pub type LabelledSeries = (Labels, Steps);

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: Labels,
    value: (f64, String),
}

/// Prometheus writes sample values as strings: "1.5", "NaN", "+Inf".
fn parse_value(query: &str, raw: &str) -> Result<f64, MetricsError> {
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(MetricsError::NotANumber {
            query: query.to_string(),
            value: raw.to_string(),
        }),
    }
}

impl Prometheus {
    pub fn new(config: &PrometheusConfig, custom: Vec<CustomRule>) -> Result<Self, MetricsError> {
        let timeout = config.timeout.get();
        let auth = if config.bearer_token_file.is_some() || config.bearer_token_env.is_some() {
            let token = Secret::load(
                config.bearer_token_file.as_deref(),
                config.bearer_token_env.as_deref(),
            )
            .map_err(|e| MetricsError::Config(format!("prometheus bearer token: {e}")))?;
            Some(Auth::Bearer(token))
        } else if let Some(basic) = &config.basic_auth {
            let password = Secret::load(basic.password_file.as_deref(), basic.password_env.as_deref())
                .map_err(|e| MetricsError::Config(format!("prometheus basic auth password: {e}")))?;
            Some(Auth::Basic {
                username: basic.username.clone(),
                password,
            })
        } else {
            None
        };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| MetricsError::Config(format!("HTTP client: {e}")))?;
        Ok(Prometheus {
            client,
            base: config.url.trim_end_matches('/').to_string(),
            timeout,
            auth,
            cpu_query: config.cpu_query.clone(),
            memory_query: config.memory_query.clone(),
            custom,
        })
    }

    /// POST one API call (`query` or `query_range`) and return its data.
    async fn call(
        &self,
        endpoint: &str,
        query: &str,
        params: Vec<(&str, String)>,
    ) -> Result<ApiData, MetricsError> {
        let url = format!("{}/api/v1/{endpoint}", self.base);
        let mut req = self.client.post(&url).form(&params);
        req = match &self.auth {
            Some(Auth::Bearer(token)) => req.bearer_auth(token.expose()),
            Some(Auth::Basic { username, password }) => req.basic_auth(username, Some(password.expose())),
            None => req,
        };
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                MetricsError::Timeout {
                    url: url.clone(),
                    timeout_s: self.timeout.as_secs(),
                }
            } else {
                MetricsError::Unreachable {
                    url: url.clone(),
                    cause: root_cause(&e),
                }
            }
        })?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| MetricsError::Unreachable {
            url: url.clone(),
            cause: root_cause(&e),
        })?;
        let parsed: Result<ApiResponse, _> = serde_json::from_str(&body);
        let bad = |cause: String| MetricsError::BadResponse {
            query: query.to_string(),
            cause,
        };
        match parsed {
            // The API reports query errors as JSON with 400 / 422 / 503.
            Ok(api) if api.status == "error" => Err(MetricsError::Query {
                query: query.to_string(),
                kind: api.error_type.unwrap_or_else(|| "error".into()),
                message: api.error.unwrap_or_default(),
            }),
            Ok(api) if status.is_success() && api.status == "success" => {
                api.data.ok_or_else(|| bad("no data".into()))
            }
            _ if !status.is_success() => Err(MetricsError::Status {
                url,
                status: status.as_u16(),
                body: body.chars().take(200).collect(),
            }),
            Ok(_) => Err(bad("status is not success".into())),
            Err(e) => Err(bad(format!("invalid JSON: {e}"))),
        }
    }

    /// Evaluate `query` now (or at `at`, Unix seconds): every series of the result.
    pub async fn query(&self, query: &str, at: Option<f64>) -> Result<Vec<Sample>, MetricsError> {
        let mut params = vec![("query", query.to_string())];
        if let Some(t) = at {
            params.push(("time", format!("{t:.3}")));
        }
        match self.call("query", query, params).await? {
            ApiData::Vector(series) => series
                .into_iter()
                .map(|s| {
                    Ok(Sample {
                        value: parse_value(query, &s.value.1)?,
                        labels: s.metric,
                    })
                })
                .collect(),
            ApiData::Scalar((_, raw)) => Ok(vec![Sample {
                labels: BTreeMap::new(),
                value: parse_value(query, &raw)?,
            }]),
            ApiData::Matrix(_) | ApiData::String(_) => Err(MetricsError::BadResponse {
                query: query.to_string(),
                cause: "expected an instant vector or scalar".into(),
            }),
        }
    }

    /// Evaluate `query` from `start` to `end` (Unix seconds) every `step`; it
    /// must yield one series. A step without a finite value is a gap (`None`).
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<Vec<(f64, Option<f64>)>, MetricsError> {
        let mut series = self.query_range_series(query, start, end, step).await?;
        match series.len() {
            0 => Err(MetricsError::Empty {
                query: query.to_string(),
            }),
            1 => Ok(series.remove(0).1),
            count => Err(MetricsError::Ambiguous {
                query: query.to_string(),
                count,
            }),
        }
    }

    /// Every series `query` yields from `start` to `end` every `step`, asked
    /// for in windows of at most [`MAX_STEPS`] steps (Prometheus refuses more
    /// than 11,000 points per series in one answer) and joined by labels.
    pub async fn query_range_series(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<Vec<LabelledSeries>, MetricsError> {
        let step_s = step.as_secs().max(1) as f64;
        let mut joined: BTreeMap<Labels, Steps> = BTreeMap::new();
        let mut from = start;
        while from <= end {
            let to = (from + step_s * (MAX_STEPS - 1) as f64).min(end);
            let params = vec![
                ("query", query.to_string()),
                ("start", format!("{from:.3}")),
                ("end", format!("{to:.3}")),
                ("step", format!("{step_s}s")),
            ];
            let ApiData::Matrix(series) = self.call("query_range", query, params).await? else {
                return Err(MetricsError::BadResponse {
                    query: query.to_string(),
                    cause: "expected a range vector".into(),
                });
            };
            for one in series {
                let steps = joined.entry(one.metric).or_default();
                steps.extend(
                    one.values
                        .iter()
                        .map(|(t, raw)| (*t, parse_value(query, raw).ok())),
                );
            }
            from = to + step_s;
        }
        Ok(joined.into_iter().collect())
    }

    /// Fill `snapshot`'s CPU, memory and custom series with the last `window`
    /// of history (every `step`, ending at `now`, Unix milliseconds), so
    /// sustained windows are covered right after a start, not only after
    /// they have been observed live. Missing steps stay gaps.
    pub async fn backfill(
        &self,
        snapshot: &mut k3scale_core::Snapshot,
        window: Duration,
        step: Duration,
        now: k3scale_core::Time,
    ) -> Result<usize, MetricsError> {
        let end = now.as_secs_f64();
        let start = end - window.as_secs_f64();
        let mut signals = vec![
            ("cpu".to_string(), self.cpu_query.clone()),
            ("memory".to_string(), self.memory_query.clone()),
        ];
        signals.extend(self.custom.iter().map(|r| (r.name.clone(), r.query.clone())));
        let mut readings: BTreeMap<u64, Reading> = BTreeMap::new();
        for (name, query) in &signals {
            for (t, value) in self.query_range(query, start, end, step).await? {
                let value = value.ok_or_else(|| "no value at this step".to_string());
                let reading = readings.entry((t * 1000.0) as u64).or_default();
                match name.as_str() {
                    "cpu" => reading.cpu = Some(value),
                    "memory" => reading.memory = Some(value),
                    custom => {
                        reading.custom.insert(custom.to_string(), value);
                    }
                }
            }
        }
        let count = readings.len();
        for (ms, reading) in &readings {
            snapshot.record(k3scale_core::Time::from_millis(*ms), reading, window);
        }
        Ok(count)
    }

    /// A query that must yield exactly one number (e.g. a cluster average).
    pub async fn scalar(&self, query: &str, at: Option<f64>) -> Result<f64, MetricsError> {
        let samples = self.query(query, at).await?;
        match samples.as_slice() {
            [] => Err(MetricsError::Empty {
                query: query.to_string(),
            }),
            [one] => Ok(one.value),
            many => Err(MetricsError::Ambiguous {
                query: query.to_string(),
                count: many.len(),
            }),
        }
    }

    async fn signal(&self, query: &str, at: Option<f64>) -> Result<f64, String> {
        self.scalar(query, at).await.map_err(|e| e.to_string())
    }

    /// Every signal at `at` (Unix seconds; `None` = now).
    pub async fn read_at(&self, at: Option<f64>) -> Reading {
        let (cpu, memory) = tokio::join!(
            self.signal(&self.cpu_query, at),
            self.signal(&self.memory_query, at)
        );
        let mut custom = BTreeMap::new();
        for rule in &self.custom {
            custom.insert(rule.name.clone(), self.signal(&rule.query, at).await);
        }
        Reading {
            cpu: Some(cpu),
            memory: Some(memory),
            custom,
        }
    }
}

#[async_trait::async_trait]
impl MetricsSource for Prometheus {
    async fn read(&self) -> Reading {
        self.read_at(None).await
    }
}

/// The innermost error message (reqwest's outer one only says "error sending request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}
