//! metrics-server (`metrics.k8s.io/v1beta1` NodeMetrics), for clusters
//! without Prometheus; K3s ships it. Utilization is the nodes' summed usage
//! over their summed allocatable, counting nodes that report both.

use super::{MetricsError, MetricsSource};
use crate::kube::KubeCluster;
use k3scale_core::Reading;
use k3scale_core::quantity::{parse_cpu, parse_memory};
use serde::Deserialize;
use std::sync::Arc;

const PATH: &str = "/apis/metrics.k8s.io/v1beta1/nodes";

#[derive(Deserialize)]
struct NodeMetricsList {
    items: Vec<NodeMetrics>,
}

#[derive(Deserialize)]
struct NodeMetrics {
    metadata: Meta,
    usage: Usage,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
}

#[derive(Deserialize)]
struct Usage {
    cpu: String,
    memory: String,
}

#[derive(Debug)]
pub struct MetricsServer {
    cluster: Arc<KubeCluster>,
}

impl MetricsServer {
    pub fn new(cluster: Arc<KubeCluster>) -> Self {
        MetricsServer { cluster }
    }

    async fn fetch(&self) -> Result<NodeMetricsList, MetricsError> {
        let request = http::Request::get(PATH)
            .body(Vec::new())
            .map_err(|e| MetricsError::Config(e.to_string()))?;
        self.cluster
            .client()
            .request::<NodeMetricsList>(request)
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) => MetricsError::Status {
                    url: PATH.into(),
                    status: s.code,
                    body: match s.code {
                        404 => format!("{} (is metrics-server installed?)", s.message),
                        _ => s.message.clone(),
                    },
                },
                kube::Error::SerdeError(e) => MetricsError::BadResponse {
                    query: PATH.into(),
                    cause: e.to_string(),
                },
                other => MetricsError::Unreachable {
                    url: PATH.into(),
                    cause: other.to_string(),
                },
            })
    }

    /// (cpu, memory) utilization of the nodes that report usage.
    pub async fn utilization(&self) -> Result<(f64, f64), MetricsError> {
        let list = self.fetch().await?;
        let (mut used_cpu, mut used_mem, mut cap_cpu, mut cap_mem) = (0u64, 0u64, 0u64, 0u64);
        for item in &list.items {
            let Some(node) = self.cluster.node(&item.metadata.name) else {
                continue;
            };
            let bad = |q: &str, e: k3scale_core::quantity::QuantityError| MetricsError::BadResponse {
                query: PATH.into(),
                cause: format!("node {}: {q} usage: {e}", item.metadata.name),
            };
            used_cpu += parse_cpu(&item.usage.cpu).map_err(|e| bad("cpu", e))?;
            used_mem += parse_memory(&item.usage.memory).map_err(|e| bad("memory", e))?;
            cap_cpu += node.allocatable.cpu_milli;
            cap_mem += node.allocatable.memory_bytes;
        }
        if cap_cpu == 0 || cap_mem == 0 {
            return Err(MetricsError::Empty { query: PATH.into() });
        }
        Ok((used_cpu as f64 / cap_cpu as f64, used_mem as f64 / cap_mem as f64))
    }
}

#[async_trait::async_trait]
impl MetricsSource for MetricsServer {
    async fn read(&self) -> Reading {
        let (cpu, memory) = match self.utilization().await {
            Ok((cpu, memory)) => (Ok(cpu), Ok(memory)),
            Err(e) => (Err(e.to_string()), Err(e.to_string())),
        };
        Reading {
            cpu: Some(cpu),
            memory: Some(memory),
            custom: Default::default(),
        }
    }
}
