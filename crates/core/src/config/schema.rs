//! The configuration file's shape: what users write, with the defaults filled
//! in. Unknown keys are errors everywhere (`deny_unknown_fields`).
//! Quantities stay strings here and durations keep their text next to
//! their value: both are checked in `load`, so all their errors are
//! reported at once, each with its key path.

use super::HumanDuration;
use crate::model::Taint;
use crate::policy::{Expander, PendingPods};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Goes into the labels/tags of every machine k3scale creates.
    pub cluster: String,
    pub kubernetes: KubernetesConfig,
    pub metrics: MetricsConfig,
    pub policy: PolicyConfig,
    pub pools: Vec<PoolConfig>,
    pub state: StateConfig,
    pub notify: NotifyConfig,
    pub server: ServerConfig,
    pub leader_election: LeaderElectionConfig,
    /// Cluster-wide bounds on scale-up.
    pub limits: LimitsConfig,
    /// Where notices of machines about to be reclaimed come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interruptions: Option<InterruptionsConfig>,
}

/// An SQS queue fed by EventBridge rules for "EC2 Spot Instance
/// Interruption Warning" and "EC2 Instance Rebalance Recommendation".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterruptionsConfig {
    pub sqs_queue_url: String,
    pub region: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster: "k3s".into(),
            kubernetes: KubernetesConfig::default(),
            metrics: MetricsConfig::default(),
            policy: PolicyConfig::default(),
            pools: Vec::new(),
            state: StateConfig::default(),
            notify: NotifyConfig::default(),
            server: ServerConfig::default(),
            leader_election: LeaderElectionConfig::default(),
            limits: LimitsConfig::default(),
            interruptions: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Default: in-cluster service account, then `KUBECONFIG`, then `~/.kube/config`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricsSourceKind {
    #[default]
    Prometheus,
    MetricsServer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub source: MetricsSourceKind,
    pub prometheus: PrometheusConfig,
    /// A sample older than this makes its signal unavailable.
    pub max_age: HumanDuration,
    pub custom: Vec<CustomMetricConfig>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            source: MetricsSourceKind::Prometheus,
            prometheus: PrometheusConfig::default(),
            max_age: "1m".into(),
            custom: Vec::new(),
        }
    }
}

/// The default CPU query: busy = 1 − idle share, averaged over CPUs (not over modes).
pub const DEFAULT_CPU_QUERY: &str = r#"1 - avg(rate(node_cpu_seconds_total{mode="idle"}[2m]))"#;
pub const DEFAULT_MEMORY_QUERY: &str =
    "1 - sum(node_memory_MemAvailable_bytes) / sum(node_memory_MemTotal_bytes)";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    pub url: String,
    pub timeout: HumanDuration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuthConfig>,
    pub cpu_query: String,
    pub memory_query: String,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            url: "http://127.0.0.1:9090".into(),
            timeout: "10s".into(),
            bearer_token_file: None,
            bearer_token_env: None,
            basic_auth: None,
            cpu_query: DEFAULT_CPU_QUERY.into(),
            memory_query: DEFAULT_MEMORY_QUERY.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomMetricConfig {
    pub name: String,
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up_above: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_below: Option<f64>,
    #[serde(rename = "for", default = "one_minute")]
    pub window: HumanDuration,
}

fn one_minute() -> HumanDuration {
    "1m".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Periodic resync; the daemon also reconciles on watch events.
    pub interval: HumanDuration,
    pub scale_up: ScaleUpConfig,
    pub scale_down: ScaleDownConfig,
    pub expander: Expander,
    pub dry_run: bool,
    /// Taint keys a node carries until an agent of the cluster (a CNI, a CSI
    /// driver) is up, beyond the built-in not-ready / unreachable /
    /// uninitialized: such a node is still starting, not room for pods.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<String>,
    /// Pods below this priority neither trigger a scale-up nor keep a node.
    pub expendable_pods_priority_cutoff: i32,
    /// Spread a scale-up over pools alike but for their zone.
    pub balance_similar_pools: bool,
    /// Launch ahead of the rise the daily and weekly pattern predicts.
    pub predictive: PredictiveConfig,
    /// Cluster-wide disruption budgets (each pool may have its own too).
    #[serde(skip_serializing_if = "DisruptionConfig::is_empty")]
    pub disruption: DisruptionConfig,
    /// Replace several under-used nodes by fewer or cheaper ones.
    pub consolidation: ConsolidationConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsolidationConfig {
    pub enabled: bool,
    /// Dollars per hour a replacement must save.
    pub min_saving_per_hour: f64,
}

impl Default for ConsolidationConfig {
    fn default() -> Self {
        ConsolidationConfig {
            enabled: false,
            min_saving_per_hour: 0.01,
        }
    }
}

/// `disruption`: budgets bounding voluntary removals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisruptionConfig {
    pub budgets: Vec<BudgetConfig>,
}

impl DisruptionConfig {
    pub fn is_empty(&self) -> bool {
        self.budgets.is_empty()
    }
}

/// At most `nodes` (a count, or a percentage of the nodes) disrupted at
/// once, for `reasons` (all if none), while `schedule` + `duration` say
/// (always if no schedule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub nodes: NodesValue,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<crate::disruption::DisruptionReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// `nodes: 2`, `nodes: "2"` or `nodes: "10%"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NodesValue {
    Count(u32),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictiveConfig {
    pub enabled: bool,
    /// The most nodes' worth of room a forecast may keep.
    pub max_extra_nodes: u32,
}

impl Default for PredictiveConfig {
    fn default() -> Self {
        PredictiveConfig {
            enabled: false,
            max_extra_nodes: 2,
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            interval: "10s".into(),
            scale_up: ScaleUpConfig::default(),
            scale_down: ScaleDownConfig::default(),
            expander: Expander::LeastWaste,
            dry_run: false,
            startup_taints: Vec::new(),
            expendable_pods_priority_cutoff: -10,
            balance_similar_pools: false,
            predictive: PredictiveConfig::default(),
            disruption: DisruptionConfig::default(),
            consolidation: ConsolidationConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScaleUpConfig {
    pub cpu_above: f64,
    pub cpu_for: HumanDuration,
    pub memory_above: f64,
    pub memory_for: HumanDuration,
    pub pending_grace: HumanDuration,
    pub pending_pods: PendingPods,
    pub max_step: u32,
    pub cooldown: HumanDuration,
    /// A pod the planner fits on existing capacity but the scheduler keeps
    /// rejecting this long is counted as needing a new node.
    pub trust_scheduler_after: HumanDuration,
}

impl Default for ScaleUpConfig {
    fn default() -> Self {
        ScaleUpConfig {
            cpu_above: 0.70,
            cpu_for: "3m".into(),
            memory_above: 0.75,
            memory_for: "0s".into(),
            pending_grace: "0s".into(),
            pending_pods: PendingPods::BinPack,
            max_step: 2,
            cooldown: "5m".into(),
            trust_scheduler_after: "30s".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScaleDownConfig {
    pub enabled: bool,
    pub unneeded_time: HumanDuration,
    pub delay_after_scale_up: HumanDuration,
    pub cluster_gate: bool,
    pub cpu_below: f64,
    pub cpu_for: HumanDuration,
    pub memory_below: f64,
    pub memory_for: HumanDuration,
    pub max_step: u32,
    pub max_empty_step: u32,
    pub cooldown: HumanDuration,
    pub node_utilization_below: f64,
    pub evict_local_storage: bool,
    pub skip_nodes_with_system_pods: bool,
    pub ignore_daemonsets_utilization: bool,
    /// How long a drain waits on evictions before giving up.
    pub drain_timeout: HumanDuration,
    pub unready_enabled: bool,
    pub unready_time: HumanDuration,
}

impl Default for ScaleDownConfig {
    fn default() -> Self {
        ScaleDownConfig {
            enabled: true,
            unneeded_time: "8m".into(),
            delay_after_scale_up: "5m".into(),
            cluster_gate: false,
            cpu_below: 0.30,
            cpu_for: "10m".into(),
            memory_below: 0.50,
            memory_for: "0s".into(),
            max_step: 1,
            max_empty_step: 10,
            cooldown: "2m".into(),
            node_utilization_below: 0.5,
            evict_local_storage: false,
            skip_nodes_with_system_pods: false,
            ignore_daemonsets_utilization: false,
            drain_timeout: "2m".into(),
            unready_enabled: true,
            unready_time: "20m".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    #[serde(default = "default_min")]
    pub min: u32,
    #[serde(default = "default_max")]
    pub max: u32,
    pub template: TemplateConfig,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    #[serde(default)]
    pub priority: i32,
    /// Overrides `policy.scale_down.node_utilization_below` for this pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_utilization_below: Option<f64>,
    /// Spare room kept ready on this pool's nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headroom: Option<HeadroomConfig>,
    /// This pool's disruption budgets.
    #[serde(default, skip_serializing_if = "DisruptionConfig::is_empty")]
    pub disruption: DisruptionConfig,
    /// Nodes older than this are replaced (e.g. `720h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after: Option<HumanDuration>,
    /// Overrides `policy.scale_down.drain_timeout` for this pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<HumanDuration>,
    /// Launch → Node registered. Default: 10 min, or 3 × `boot_time` if longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision_timeout: Option<HumanDuration>,
    /// Node registered → Ready. Default: 5 min, or `boot_time` if longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_timeout: Option<HumanDuration>,
    pub provider: ProviderConfig,
}

fn default_min() -> u32 {
    2
}

fn default_max() -> u32 {
    10
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    pub cpu: String,
    pub memory: String,
    #[serde(default = "default_pods")]
    pub pods: u32,
    #[serde(default)]
    pub price_per_hour: f64,
    #[serde(default = "default_boot_time")]
    pub boot_time: HumanDuration,
    /// Extended resources a node offers, e.g. `nvidia.com/gpu: 1`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extended_resources: BTreeMap<String, u64>,
}

/// `pods` pods' worth of `cpu` and `memory` each, kept free.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadroomConfig {
    #[serde(default = "one")]
    pub pods: u32,
    pub cpu: String,
    pub memory: String,
}

fn one() -> u32 {
    1
}

fn default_pods() -> u32 {
    110
}

fn default_boot_time() -> HumanDuration {
    "60s".into()
}

/// Exactly one provider per pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderConfig {
    Docker(DockerProviderConfig),
    AwsEc2(Ec2ProviderConfig),
    AwsAsg(AsgProviderConfig),
    Exec(ExecProviderConfig),
}

impl ProviderConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderConfig::Docker(_) => "docker",
            ProviderConfig::AwsEc2(_) => "aws_ec2",
            ProviderConfig::AwsAsg(_) => "aws_asg",
            ProviderConfig::Exec(_) => "exec",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerProviderConfig {
    /// The engine: `unix:///path`, `tcp://host:port` or `http://host:port`.
    /// Default: `DOCKER_HOST`, else the local socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default = "default_k3s_image")]
    pub image: String,
    pub network: String,
    /// `https://<server>:6443`, as seen from the agent containers.
    pub server_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// K3s agents need privileged containers; turn off only for engines that forbid them.
    #[serde(default = "yes")]
    pub privileged: bool,
    /// Apply the pool template's CPU and memory as container limits.
    #[serde(default)]
    pub limits: bool,
    /// Grace given to `k3s agent` on delete before the container is killed.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: HumanDuration,
}

fn yes() -> bool {
    true
}

fn default_stop_timeout() -> HumanDuration {
    "30s".into()
}

fn default_k3s_image() -> String {
    "rancher/k3s:v1.33.4-k3s1".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capacity {
    #[default]
    OnDemand,
    Spot,
    SpotThenOnDemand,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ec2ProviderConfig {
    pub region: String,
    /// `https://<server>:6443`, as the new instances reach the K3s server.
    pub server_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ami: Option<String>,
    pub subnets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    #[serde(default)]
    pub capacity: Capacity,
    /// Secrets Manager secret (name or ARN), or `ssm:<parameter>`, holding
    /// the K3s token: the instance reads it at boot with its own role, so
    /// the token is never in user data, tags or k3scale's logs.
    pub token_secret: String,
    /// Extra tags on every instance and volume (cost allocation).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// An existing Auto Scaling group (the common Terraform setup): k3scale
/// grows it by raising its desired capacity and shrinks it by terminating
/// the drained instance itself, never letting the group pick a victim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsgProviderConfig {
    pub region: String,
    /// The Auto Scaling group's name.
    pub group: String,
    /// How long the group may take to show a new instance after its desired
    /// capacity was raised.
    #[serde(default = "default_asg_launch_wait")]
    pub launch_wait: HumanDuration,
}

fn default_asg_launch_wait() -> HumanDuration {
    "2m".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecProviderConfig {
    pub create: String,
    pub delete: String,
    pub list: String,
    #[serde(default = "default_exec_timeout")]
    pub timeout: HumanDuration,
    /// Settings for the scripts, passed as environment variables (not secrets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Passed to the scripts as `K3S_TOKEN` (redacted from their errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
}

fn default_exec_timeout() -> HumanDuration {
    "5m".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateBackend {
    #[default]
    Sqlite,
    Kubernetes,
    Dynamodb,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    pub backend: StateBackend,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: StateBackend::Sqlite,
            path: "/var/lib/k3scale/state.db".into(),
            namespace: None,
            table: None,
        }
    }
}

/// A secret URL, read only from a file or an environment variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretUrlConfig {
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "webhook_url_file")]
    pub url_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "webhook_url_env")]
    pub url_env: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slack: Option<SecretUrlConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<SecretUrlConfig>,
    /// Metrics failing this long are worth a notification.
    pub metrics_unavailable_after: HumanDuration,
    /// A standing condition (at max capacity, metrics down) is repeated at most this often.
    pub repeat_after: HumanDuration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            slack: None,
            webhook: None,
            metrics_unavailable_after: "5m".into(),
            repeat_after: "30m".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// Who may read `/`, `/metrics` and `/api/*` from another host.
    pub auth: ServerAuth,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            auth: ServerAuth::None,
        }
    }
}

/// How the HTTP server checks callers (`/healthz` and `/readyz` are always
/// open: the kubelet's probes carry no token).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerAuth {
    /// Anyone who can connect.
    #[default]
    None,
    /// A bearer token the API server authenticates (TokenReview) and
    /// authorizes for `get` on the path (SubjectAccessReview), as
    /// kube-rbac-proxy and metrics-server do. Callers on loopback (`kubectl
    /// port-forward`, `k3scale status` in the pod) are let in: reaching
    /// them took `pods/portforward` or `pods/exec` already.
    Kubernetes,
}

/// The Lease `k3scale run` replicas elect a leader on (`k3scale-<cluster>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderElectionConfig {
    /// Default: `POD_NAMESPACE`, else the service account's namespace, else
    /// `state.namespace`, else `k3scale-system` (what the shipped RBAC covers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A leader that stops renewing is replaced this long after its last renewal.
    pub lease_duration: HumanDuration,
    /// A leader that cannot renew for this long stops acting.
    pub renew_deadline: HumanDuration,
    pub retry_period: HumanDuration,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            namespace: None,
            lease_duration: "15s".into(),
            renew_deadline: "10s".into(),
            retry_period: "2s".into(),
        }
    }
}

/// Cluster-wide bounds on what scale-ups may add, counting every node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_nodes: Option<u32>,
    /// A CPU quantity, e.g. `64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cpu: Option<String>,
    /// A memory quantity, e.g. `256Gi`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<String>,
}
