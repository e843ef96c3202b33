//! K3s agents as Docker containers (bollard): the local and single-host mode.
//!
//! Each machine is a container running `k3s agent`, privileged, with tmpfs
//! `/run` and `/var/run`, `K3S_URL` / `K3S_TOKEN` in its environment, the node
//! name as hostname and container name, pool labels and taints as K3s flags,
//! attached to the cluster's network, restarted unless stopped.

use super::secret::Secret;
use super::{CLUSTER_LABEL, MANAGED_BY_LABEL, Machine, NodeProvider, POOL_LABEL, ProviderError};
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, HostConfig, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StartContainerOptions, StopContainerOptions,
};
use k3scale_core::config::DockerProviderConfig;
use k3scale_core::{Pool, Time};
use std::collections::HashMap;
use std::time::Duration;
use tracing::{info, warn};

pub struct DockerProvider {
    /// The client before the API version is agreed with the engine.
    client: Docker,
    /// The client once the engine has answered (an engine down when k3scale
    /// starts is asked again on the next call, not a reason to exit).
    docker: tokio::sync::OnceCell<Docker>,
    /// Where the engine is, for messages.
    host: String,
    cluster: String,
    pool: Pool,
    config: DockerProviderConfig,
    token: Secret,
    stop_timeout: Duration,
}

impl std::fmt::Debug for DockerProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerProvider")
            .field("cluster", &self.cluster)
            .field("pool", &self.pool.name)
            .field("host", &self.host)
            .field("image", &self.config.image)
            .field("token", &self.token)
            .finish()
    }
}

/// Where a pool's engine is: the pool's `host`, else `DOCKER_HOST`, else
/// the local socket (as the docker CLI decides).
pub fn engine_host(configured: Option<&str>, docker_host: Option<&str>) -> String {
    configured
        .or(docker_host)
        .filter(|h| !h.is_empty())
        .unwrap_or("unix:///var/run/docker.sock")
        .to_string()
}

impl DockerProvider {
    /// A provider for the pool's engine (`host`, `DOCKER_HOST` or the local
    /// socket). An engine that does not answer yet is not an error here:
    /// every call asks it again and fails as Transient until it answers.
    pub async fn connect(
        cluster: &str,
        pool: Pool,
        config: DockerProviderConfig,
        token: Secret,
    ) -> Result<Self, ProviderError> {
        let host = engine_host(
            config.host.as_deref(),
            std::env::var("DOCKER_HOST").ok().as_deref(),
        );
        let docker = Docker::connect_with_host(&host).map_err(|e| {
            ProviderError::Fatal(format!(
                "pool {}: Docker engine {host}: {e} (unix://, tcp:// and http:// are supported)",
                pool.name
            ))
        })?;
        Self::with_client(docker, &host, cluster, pool, config, token).await
    }

    /// Use a given client for the engine at `host`.
    pub async fn with_client(
        client: Docker,
        host: &str,
        cluster: &str,
        pool: Pool,
        config: DockerProviderConfig,
        token: Secret,
    ) -> Result<Self, ProviderError> {
        let stop_timeout = config.stop_timeout.get();
        let provider = DockerProvider {
            client,
            docker: tokio::sync::OnceCell::new(),
            host: host.to_string(),
            cluster: cluster.to_string(),
            pool,
            config,
            token,
            stop_timeout,
        };
        if let Err(e) = provider.engine().await {
            warn!(pool = %provider.pool.name, error = %e, "the Docker engine does not answer yet; the pool launches nothing until it does");
        }
        Ok(provider)
    }

    /// The engine's client, its API version agreed on first contact.
    async fn engine(&self) -> Result<&Docker, ProviderError> {
        self.docker
            .get_or_try_init(|| async {
                self.client.clone().negotiate_version().await.map_err(|e| {
                    engine_error(
                        e,
                        &format!("cannot reach the Docker engine at {}", self.host),
                        &self.token,
                    )
                })
            })
            .await
    }

    /// What the engine is asked to create for machine `name`.
    pub fn container_spec(&self, name: &str) -> ContainerCreateBody {
        container_spec(&self.cluster, &self.pool, &self.config, &self.token, name)
    }

    fn is_ours(&self, labels: Option<&HashMap<String, String>>) -> bool {
        labels.is_some_and(|l| {
            l.get(CLUSTER_LABEL) == Some(&self.cluster) && l.get(POOL_LABEL) == Some(&self.pool.name)
        })
    }

    async fn machine(&self, name: &str) -> Result<Machine, ProviderError> {
        let info = self
            .engine()
            .await?
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| engine_error(e, &format!("inspect container {name}"), &self.token))?;
        let created_at = info
            .created
            .as_deref()
            .and_then(parse_rfc3339_millis)
            .map_or_else(super::unix_now, Time::from_millis);
        Ok(Machine {
            name: name.to_string(),
            pool: self.pool.name.clone(),
            provider_id: format!("docker://{}", info.id.unwrap_or_default()),
            created_at,
            running: info.state.and_then(|s| s.running).unwrap_or(false),
        })
    }
}

#[async_trait::async_trait]
impl NodeProvider for DockerProvider {
    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn create(&self, name: &str) -> Result<Machine, ProviderError> {
        info!(pool = %self.pool.name, node = %name, image = %self.config.image, "creating agent container");
        let options = CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        let docker = self.engine().await?;
        match docker
            .create_container(Some(options), self.container_spec(name))
            .await
        {
            Ok(_) => {}
            Err(DockerError::DockerResponseServerError { status_code: 409, .. }) => {
                // Created by an earlier attempt: fine if it is ours.
                let existing = docker
                    .inspect_container(name, None::<InspectContainerOptions>)
                    .await
                    .map_err(|e| engine_error(e, &format!("inspect container {name}"), &self.token))?;
                if !self.is_ours(existing.config.as_ref().and_then(|c| c.labels.as_ref())) {
                    return Err(ProviderError::Fatal(format!(
                        "a container named {name} exists and is not a k3scale machine of cluster {} pool {}",
                        self.cluster, self.pool.name
                    )));
                }
            }
            Err(DockerError::DockerResponseServerError {
                status_code: 404,
                message,
            }) if message.to_lowercase().contains("image") => {
                let image = &self.config.image;
                return Err(ProviderError::Fatal(format!(
                    "image {image} is not in the Docker engine at {}: load it first \
                     (docker load -i k3s-image.tar, or docker pull {image} where a registry is reachable)",
                    self.host
                )));
            }
            Err(e) => return Err(engine_error(e, &format!("create container {name}"), &self.token)),
        }
        if let Err(e) = docker.start_container(name, None::<StartContainerOptions>).await {
            let failure = match e {
                DockerError::DockerResponseServerError { message, .. } => {
                    ProviderError::Fatal(self.token.redact(&format!(
                        "container {name} does not start: {message} (network {:?}, privileged {})",
                        self.config.network, self.config.privileged
                    )))
                }
                other => engine_error(other, &format!("start container {name}"), &self.token),
            };
            // Leave nothing half-made behind.
            let remove = RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            if let Err(e) = docker.remove_container(name, Some(remove)).await {
                warn!(node = %name, error = %self.token.redact(&e.to_string()), "cannot remove container that failed to start");
            }
            return Err(failure);
        }
        self.machine(name).await
    }

    async fn delete(&self, name: &str) -> Result<(), ProviderError> {
        let docker = self.engine().await?;
        let labels = match docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => info.config.and_then(|c| c.labels),
            Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => return Ok(()),
            Err(e) => return Err(engine_error(e, &format!("inspect container {name}"), &self.token)),
        };
        if !self.is_ours(labels.as_ref()) {
            return Err(ProviderError::Fatal(format!(
                "refusing to delete container {name}: not a k3scale machine of cluster {} pool {}",
                self.cluster, self.pool.name
            )));
        }
        info!(pool = %self.pool.name, node = %name, "stopping agent container");
        let stop = StopContainerOptions {
            t: Some(self.stop_timeout.as_secs() as i32),
            signal: None,
        };
        match docker.stop_container(name, Some(stop)).await {
            Ok(())
            | Err(DockerError::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => {}
            Err(e) => return Err(engine_error(e, &format!("stop container {name}"), &self.token)),
        }
        let remove = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match docker.remove_container(name, Some(remove)).await {
            Ok(()) | Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(engine_error(e, &format!("remove container {name}"), &self.token)),
        }
    }

    async fn list(&self) -> Result<Vec<Machine>, ProviderError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{CLUSTER_LABEL}={}", self.cluster),
                format!("{POOL_LABEL}={}", self.pool.name),
            ],
        )]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let containers = self
            .engine()
            .await?
            .list_containers(Some(options))
            .await
            .map_err(|e| engine_error(e, "list containers", &self.token))?;
        Ok(containers
            .into_iter()
            .filter(|c| self.is_ours(c.labels.as_ref()))
            .filter_map(|c| {
                let name = c.names?.first()?.trim_start_matches('/').to_string();
                Some(Machine {
                    name,
                    pool: self.pool.name.clone(),
                    provider_id: format!("docker://{}", c.id.unwrap_or_default()),
                    created_at: Time::from_secs(c.created.unwrap_or(0).max(0) as u64),
                    running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
                })
            })
            .collect())
    }
}

fn labels(cluster: &str, pool: &Pool, name: &str) -> HashMap<String, String> {
    HashMap::from([
        (CLUSTER_LABEL.to_string(), cluster.to_string()),
        (POOL_LABEL.to_string(), pool.name.clone()),
        (MANAGED_BY_LABEL.to_string(), "k3scale".to_string()),
        ("k3scale.io/node-name".to_string(), name.to_string()),
    ])
}

/// `k3s agent` arguments: node name, pool labels and taints, extra args.
pub fn agent_args(pool: &Pool, config: &DockerProviderConfig, name: &str) -> Vec<String> {
    let mut args = vec!["agent".to_string(), "--node-name".to_string(), name.to_string()];
    for (k, v) in &pool.template.labels {
        args.extend(["--node-label".to_string(), format!("{k}={v}")]);
    }
    for t in &pool.template.taints {
        args.extend([
            "--node-taint".to_string(),
            format!("{}={}:{:?}", t.key, t.value, t.effect),
        ]);
    }
    args.extend(config.extra_args.iter().cloned());
    args
}

/// What the engine is asked to create for machine `name` of `pool`.
pub fn container_spec(
    cluster: &str,
    pool: &Pool,
    config: &DockerProviderConfig,
    token: &Secret,
    name: &str,
) -> ContainerCreateBody {
    let template = &pool.template;
    let limits = config.limits;
    ContainerCreateBody {
        hostname: Some(name.to_string()),
        image: Some(config.image.clone()),
        cmd: Some(agent_args(pool, config, name)),
        env: Some(vec![
            format!("K3S_URL={}", config.server_url),
            format!("K3S_TOKEN={}", token.expose()),
        ]),
        labels: Some(labels(cluster, pool, name)),
        host_config: Some(HostConfig {
            privileged: Some(config.privileged),
            tmpfs: Some(HashMap::from([
                ("/run".to_string(), String::new()),
                ("/var/run".to_string(), String::new()),
            ])),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            network_mode: Some(config.network.clone()),
            nano_cpus: limits.then(|| (template.allocatable.cpu_milli * 1_000_000) as i64),
            memory: limits.then_some(template.allocatable.memory_bytes as i64),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Engine errors by kind: unreachable or 5xx ⇒ Transient, 404 ⇒ NotFound,
/// other 4xx ⇒ Fatal. The token is scrubbed from every message.
fn engine_error(e: DockerError, context: &str, token: &Secret) -> ProviderError {
    let message = token.redact(&format!("{context}: {e}"));
    match e {
        DockerError::DockerResponseServerError { status_code: 404, .. } => ProviderError::NotFound(message),
        DockerError::DockerResponseServerError { status_code, .. } if status_code >= 500 => {
            ProviderError::Transient(message)
        }
        DockerError::DockerResponseServerError { .. } => ProviderError::Fatal(message),
        _ => ProviderError::Transient(message),
    }
}

/// `2026-11-23T01:02:03.456789Z` → Unix milliseconds (what the engine reports).
fn parse_rfc3339_millis(s: &str) -> Option<u64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let millis: i64 = format!("{:0<3}", &frac.chars().take(3).collect::<String>())
        .parse()
        .ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs * 1000 + millis).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_is_privileged_with_tmpfs_and_no_limits() {
        let yaml = "pools:\n  - name: workers\n    template: { cpu: \"2\", memory: 4Gi }\n    provider:\n      docker: { network: k3s, server_url: \"https://s:6443\", token_env: T }\n";
        let loaded = k3scale_core::config::load("k.yaml", yaml).unwrap();
        let k3scale_core::config::ProviderConfig::Docker(cfg) = loaded.config.pools[0].provider.clone()
        else {
            panic!("docker provider expected")
        };
        let spec = container_spec(
            "home",
            &loaded.policy.pools[0],
            &cfg,
            &Secret::new("tok"),
            "workers-abc",
        );
        let host = spec.host_config.unwrap();
        assert_eq!(host.privileged, Some(true));
        assert_eq!(host.nano_cpus, None);
        assert_eq!(host.tmpfs.unwrap().len(), 2);
        assert_eq!(spec.image.as_deref(), Some("rancher/k3s:v1.33.4-k3s1"));
        assert_eq!(spec.labels.unwrap()["k3scale.io/cluster"], "home");
    }

    #[test]
    fn parses_engine_timestamps() {
        assert_eq!(parse_rfc3339_millis("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            parse_rfc3339_millis("2026-11-23T01:02:03.456789012Z"),
            Some(1_795_395_723_456)
        );
        assert_eq!(parse_rfc3339_millis("garbage"), None);
    }
}
