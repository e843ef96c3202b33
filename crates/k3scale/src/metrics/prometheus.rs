//! The Prometheus HTTP API (`/api/v1/query`), as a `MetricsSource`.

use super::{MetricsError, MetricsSource};
use crate::provider::secret::Secret;
use k3scale_core::Reading;
use k3scale_core::config::{PrometheusConfig, parse_duration};
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
    // Parsed to tell them apart; a range or string result is refused.
    Matrix(#[allow(dead_code)] serde::de::IgnoredAny),
    String(#[allow(dead_code)] serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
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
        let timeout = parse_duration(&config.timeout).map_err(MetricsError::Config)?;
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

    /// Evaluate `query` now (or at `at`, Unix seconds): every series of the result.
    pub async fn query(&self, query: &str, at: Option<f64>) -> Result<Vec<Sample>, MetricsError> {
        let url = format!("{}/api/v1/query", self.base);
        let mut params = vec![("query", query.to_string())];
        if let Some(t) = at {
            params.push(("time", format!("{t:.3}")));
        }
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
        match parsed {
            // The API reports query errors as JSON with 400 / 422 / 503.
            Ok(api) if api.status == "error" => Err(MetricsError::Query {
                query: query.to_string(),
                kind: api.error_type.unwrap_or_else(|| "error".into()),
                message: api.error.unwrap_or_default(),
            }),
            Ok(api) if status.is_success() && api.status == "success" => match api.data {
                Some(ApiData::Vector(series)) => series
                    .into_iter()
                    .map(|s| {
                        Ok(Sample {
                            value: parse_value(query, &s.value.1)?,
                            labels: s.metric,
                        })
                    })
                    .collect(),
                Some(ApiData::Scalar((_, raw))) => Ok(vec![Sample {
                    labels: BTreeMap::new(),
                    value: parse_value(query, &raw)?,
                }]),
                Some(ApiData::Matrix(_) | ApiData::String(_)) | None => Err(MetricsError::BadResponse {
                    query: query.to_string(),
                    cause: "expected an instant vector or scalar".into(),
                }),
            },
            _ if !status.is_success() => Err(MetricsError::Status {
                url,
                status: status.as_u16(),
                body: body.chars().take(200).collect(),
            }),
            Ok(_) => Err(MetricsError::BadResponse {
                query: query.to_string(),
                cause: "status is not success".into(),
            }),
            Err(e) => Err(MetricsError::BadResponse {
                query: query.to_string(),
                cause: format!("invalid JSON: {e}"),
            }),
        }
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
