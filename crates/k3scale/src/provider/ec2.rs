//! The AWS EC2 provider (`provider.aws_ec2`, feature `aws`): one instance
//! per machine, launched from a launch template (or an AMI with instance
//! types, security groups and an instance profile), IMDSv2 required, tagged
//! with the cluster, pool and name, spread over the pool's subnets (so over
//! AZs), spot with fallback to on-demand when asked.
//!
//! The instance joins by itself: its user data reads the K3s token from
//! Secrets Manager or SSM with the instance's own role, so the token is
//! never in user data, tags, or k3scale's logs.

use super::{CLUSTER_LABEL, MANAGED_BY_LABEL, Machine, NodeProvider, POOL_LABEL, ProviderError};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    Filter, HttpTokensState, IamInstanceProfileSpecification, Instance, InstanceInterruptionBehavior,
    InstanceMarketOptionsRequest, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceStateName, InstanceType, LaunchTemplateSpecification, MarketType, ResourceType, SpotInstanceType,
    SpotMarketOptions, Tag, TagSpecification,
};
use base64::Engine as _;
use k3scale_core::Time;
use k3scale_core::config::{Capacity, Ec2ProviderConfig};
use std::collections::BTreeMap;

/// Instance states that still count as a machine of ours.
const LIVE: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// One way to try a launch: which market, which instance type.
#[derive(Debug, Clone, PartialEq)]
struct Attempt {
    spot: bool,
    instance_type: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Ec2Provider {
    client: Client,
    cluster: String,
    pool: k3scale_core::Pool,
    config: Ec2ProviderConfig,
}

/// How EC2 (or Auto Scaling) answered, by error code: only capacity is
/// worth trying elsewhere (another type, market or subnet).
pub(super) fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    what: &str,
    e: &SdkError<E, R>,
) -> ProviderError {
    let code = e.code().unwrap_or("");
    let message = e.message().unwrap_or("");
    let text = if code.is_empty() {
        format!("{what}: {}", aws_sdk_ec2::error::DisplayErrorContext(e))
    } else {
        format!("{what}: {code}: {message}")
    };
    match code {
        "InsufficientInstanceCapacity"
        | "InsufficientHostCapacity"
        | "InsufficientCapacity"
        | "InsufficientFreeAddressesInSubnet"
        | "SpotMaxPriceTooLow"
        | "MaxSpotInstanceCountExceeded"
        | "Unsupported"
        // Quotas: nothing to retry until someone raises them; the pool backs off and alerts.
        | "InstanceLimitExceeded"
        | "VcpuLimitExceeded" => ProviderError::InsufficientCapacity(text),
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" | "InternalError" | "ServiceUnavailable"
        | "Unavailable" | "ScalingActivityInProgress" | "ResourceContention" | "" => ProviderError::Transient(text),
        _ => ProviderError::Fatal(text),
    }
}

/// Quoted for a shell script, refusing what cannot be quoted safely.
fn shell_word(what: &str, v: &str) -> Result<String, ProviderError> {
    if v.contains('\'') || v.contains('\n') {
        return Err(ProviderError::Fatal(format!(
            "{what} must not contain quotes or newlines"
        )));
    }
    Ok(format!("'{v}'"))
}

impl Ec2Provider {
    /// A provider with credentials from the standard AWS chain and the
    /// pool's region (`AWS_ENDPOINT_URL` overrides the endpoint).
    pub async fn connect(cluster: &str, pool: k3scale_core::Pool, config: Ec2ProviderConfig) -> Self {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()))
            .load()
            .await;
        Self::with_client(Client::new(&sdk), cluster, pool, config)
    }

    pub fn with_client(
        client: Client,
        cluster: &str,
        pool: k3scale_core::Pool,
        config: Ec2ProviderConfig,
    ) -> Self {
        Ec2Provider {
            client,
            cluster: cluster.to_string(),
            pool,
            config,
        }
    }

    /// The launch attempts in order: spot first when asked, each instance
    /// type in turn (or the launch template's own type).
    fn attempts(&self) -> Vec<Attempt> {
        let types: Vec<Option<String>> = if self.config.instance_types.is_empty() {
            vec![None]
        } else {
            self.config.instance_types.iter().cloned().map(Some).collect()
        };
        let markets: &[bool] = match self.config.capacity {
            Capacity::OnDemand => &[false],
            Capacity::Spot => &[true],
            Capacity::SpotThenOnDemand => &[true, false],
        };
        markets
            .iter()
            .flat_map(|&spot| {
                types.iter().map(move |t| Attempt {
                    spot,
                    instance_type: t.clone(),
                })
            })
            .collect()
    }

    /// The boot script: set the hostname, read the token with the
    /// instance's role, install and join the K3s agent as `name`.
    pub fn user_data(&self, name: &str) -> Result<String, ProviderError> {
        let name_q = shell_word("name", name)?;
        let url = shell_word("server_url", &self.config.server_url)?;
        let secret = shell_word("token_secret", &self.config.token_secret)?;
        let region = shell_word("region", &self.config.region)?;
        let pool = shell_word("pool", &self.pool.name)?;
        // Drift: the hash of the pool settings this instance is launched with.
        let hash = shell_word(
            "pool_hash",
            self.pool
                .template
                .labels
                .get(k3scale_core::model::HASH_LABEL)
                .map_or("", String::as_str),
        )?;
        Ok(format!(
            r#"#!/bin/sh
# k3scale: join this instance to the K3s cluster as agent {name}.
set -eu
name={name_q}
server_url={url}
token_secret={secret}
region={region}
pool={pool}
pool_hash={hash}
hostnamectl set-hostname "$name" 2>/dev/null || hostname "$name"
imds_token="$(curl -sf -X PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')"
imds() {{ curl -sf -H "X-aws-ec2-metadata-token: $imds_token" "http://169.254.169.254/latest/meta-data/$1"; }}
instance_id="$(imds instance-id)"
zone="$(imds placement/availability-zone)"
if ! command -v aws >/dev/null 2>&1; then
    (apt-get update -q && apt-get install -y -q awscli) || dnf install -y awscli || yum install -y awscli
fi
umask 077
mkdir -p /etc/rancher/k3s
case "$token_secret" in
ssm:*) aws ssm get-parameter --region "$region" --name "${{token_secret#ssm:}}" --with-decryption \
           --query Parameter.Value --output text >/etc/rancher/k3s/agent-token ;;
*) aws secretsmanager get-secret-value --region "$region" --secret-id "$token_secret" \
       --query SecretString --output text >/etc/rancher/k3s/agent-token ;;
esac
curl -sfL https://get.k3s.io | K3S_URL="$server_url" INSTALL_K3S_EXEC="agent \
    --token-file /etc/rancher/k3s/agent-token --node-name $name \
    --node-label k3scale.io/pool=$pool --node-label k3scale.io/pool-hash=$pool_hash \
    --kubelet-arg=provider-id=aws:///$zone/$instance_id" sh -
"#
        ))
    }

    fn tags(&self, name: &str) -> Vec<Tag> {
        let mut tags: BTreeMap<&str, &str> = self
            .config
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        tags.insert("Name", name);
        tags.insert(CLUSTER_LABEL, &self.cluster);
        tags.insert(POOL_LABEL, &self.pool.name);
        tags.insert(MANAGED_BY_LABEL, "k3scale");
        tags.into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect()
    }

    /// Our live instances (pending to stopped), with their subnets.
    async fn ours(&self, name: Option<&str>) -> Result<Vec<Instance>, ProviderError> {
        let filter =
            |key: &str, values: Vec<String>| Filter::builder().name(key).set_values(Some(values)).build();
        let mut filters = vec![
            filter(&format!("tag:{CLUSTER_LABEL}"), vec![self.cluster.clone()]),
            filter(&format!("tag:{POOL_LABEL}"), vec![self.pool.name.clone()]),
            filter(
                "instance-state-name",
                LIVE.iter().map(|s| s.to_string()).collect(),
            ),
        ];
        if let Some(name) = name {
            filters.push(filter("tag:Name", vec![name.to_string()]));
        }
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_instances()
                .set_filters(Some(filters.clone()))
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| classify("describe instances", &e))?;
            out.extend(
                page.reservations()
                    .iter()
                    .flat_map(|r| r.instances().iter().cloned()),
            );
            match page.next_token {
                Some(t) if !t.is_empty() => next = Some(t),
                _ => break,
            }
        }
        Ok(out)
    }

    fn machine(&self, i: &Instance) -> Option<Machine> {
        let name = i
            .tags()
            .iter()
            .find(|t| t.key() == Some("Name"))?
            .value()?
            .to_string();
        let id = i.instance_id()?;
        let zone = i.placement().and_then(|p| p.availability_zone()).unwrap_or("");
        Some(Machine {
            name,
            pool: self.pool.name.clone(),
            provider_id: format!("aws:///{zone}/{id}"),
            created_at: Time::from_millis(
                i.launch_time()
                    .map_or(0, |t| t.to_millis().unwrap_or(0).max(0) as u64),
            ),
            running: i.state().and_then(|s| s.name()) == Some(&InstanceStateName::Running),
        })
    }

    /// Subnets in the order to try: fewest of our instances first, so a
    /// pool spreads over its AZs; ties keep the configured order.
    fn subnets_by_load(&self, live: &[Instance]) -> Vec<String> {
        let mut subnets: Vec<(usize, usize, String)> = self
            .config
            .subnets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    live.iter().filter(|x| x.subnet_id() == Some(s.as_str())).count(),
                    i,
                    s.clone(),
                )
            })
            .collect();
        subnets.sort();
        subnets.into_iter().map(|(_, _, s)| s).collect()
    }

    async fn launch(
        &self,
        name: &str,
        subnet: &str,
        attempt: &Attempt,
        token: String,
    ) -> Result<Instance, ProviderError> {
        let user_data = base64::engine::general_purpose::STANDARD.encode(self.user_data(name)?);
        let mut run = self
            .client
            .run_instances()
            .min_count(1)
            .max_count(1)
            .subnet_id(subnet)
            // The same token makes a retried call return the first instance.
            .client_token(token)
            .user_data(user_data)
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .http_put_response_hop_limit(2)
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(self.tags(name)))
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(self.tags(name)))
                    .build(),
            );
        if let Some(lt) = &self.config.launch_template {
            let spec = LaunchTemplateSpecification::builder();
            let spec = if lt.starts_with("lt-") {
                spec.launch_template_id(lt)
            } else {
                spec.launch_template_name(lt)
            };
            run = run.launch_template(spec.version("$Default").build());
        }
        if let Some(ami) = &self.config.ami {
            run = run.image_id(ami);
        }
        if let Some(t) = &attempt.instance_type {
            run = run.instance_type(InstanceType::from(t.as_str()));
        }
        if !self.config.security_groups.is_empty() {
            run = run.set_security_group_ids(Some(self.config.security_groups.clone()));
        }
        if let Some(profile) = &self.config.instance_profile {
            let spec = IamInstanceProfileSpecification::builder();
            let spec = if profile.starts_with("arn:") {
                spec.arn(profile)
            } else {
                spec.name(profile)
            };
            run = run.iam_instance_profile(spec.build());
        }
        if attempt.spot {
            run = run.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .spot_options(
                        SpotMarketOptions::builder()
                            .spot_instance_type(SpotInstanceType::OneTime)
                            .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                            .build(),
                    )
                    .build(),
            );
        }
        let out = run.send().await.map_err(|e| classify("run instances", &e))?;
        out.instances()
            .first()
            .cloned()
            .ok_or_else(|| ProviderError::Transient("run instances: no instance in the answer".into()))
    }
}

#[async_trait::async_trait]
impl NodeProvider for Ec2Provider {
    fn kind(&self) -> &'static str {
        "aws_ec2"
    }

    async fn create(&self, name: &str) -> Result<Machine, ProviderError> {
        if let Some(existing) = self.ours(Some(name)).await?.first() {
            return self
                .machine(existing)
                .ok_or_else(|| ProviderError::Transient(format!("instance {name} has no id yet")));
        }
        let live = self.ours(None).await?;
        let mut last = None;
        // Every market and type in a subnet before the next subnet: spot
        // capacity and quotas differ per AZ.
        for (s, subnet) in self.subnets_by_load(&live).iter().enumerate() {
            for (a, attempt) in self.attempts().iter().enumerate() {
                match self
                    .launch(name, subnet, attempt, format!("{name}-{s}-{a}"))
                    .await
                {
                    Ok(instance) => {
                        tracing::info!(
                            machine = name, subnet = %subnet, spot = attempt.spot,
                            instance_type = ?attempt.instance_type, id = ?instance.instance_id(), "launched"
                        );
                        return self
                            .machine(&instance)
                            .ok_or_else(|| ProviderError::Transient("launched instance has no id".into()));
                    }
                    Err(ProviderError::InsufficientCapacity(why)) => {
                        tracing::warn!(machine = name, subnet = %subnet, spot = attempt.spot, why = %why, "no capacity, trying the next option");
                        last = Some(why);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Err(ProviderError::InsufficientCapacity(
            last.unwrap_or_else(|| "no subnet to launch in".into()),
        ))
    }

    async fn delete(&self, name: &str) -> Result<(), ProviderError> {
        // Only instances carrying our cluster and pool tags are ever terminated.
        let ids: Vec<String> = self
            .ours(Some(name))
            .await?
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        match self
            .client
            .terminate_instances()
            .set_instance_ids(Some(ids))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.code()
                    .is_some_and(|c| c.starts_with("InvalidInstanceID.NotFound")) =>
            {
                Ok(())
            }
            Err(e) => Err(classify("terminate instances", &e)),
        }
    }

    async fn list(&self) -> Result<Vec<Machine>, ProviderError> {
        Ok(self
            .ours(None)
            .await?
            .iter()
            .filter_map(|i| self.machine(i))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(capacity: Capacity, types: &[&str]) -> Ec2Provider {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let config = Ec2ProviderConfig {
            region: "eu-west-1".into(),
            server_url: "https://k3s.internal:6443".into(),
            launch_template: Some("k3s-agent".into()),
            ami: None,
            subnets: vec!["subnet-a".into(), "subnet-b".into()],
            instance_types: types.iter().map(|s| s.to_string()).collect(),
            security_groups: vec![],
            instance_profile: None,
            capacity,
            token_secret: "k3s/token".into(),
            tags: BTreeMap::new(),
        };
        Ec2Provider::with_client(
            Client::new(&sdk),
            "home",
            k3scale_core::testkit::workers(),
            config,
        )
    }

    #[test]
    fn spot_then_on_demand_tries_every_type_in_each_market() {
        let p = provider(Capacity::SpotThenOnDemand, &["m6i.large", "m5.large"]);
        let got: Vec<(bool, Option<String>)> = p
            .attempts()
            .into_iter()
            .map(|a| (a.spot, a.instance_type))
            .collect();
        let t = |s: &str| Some(s.to_string());
        assert_eq!(
            got,
            vec![
                (true, t("m6i.large")),
                (true, t("m5.large")),
                (false, t("m6i.large")),
                (false, t("m5.large"))
            ]
        );
        assert_eq!(
            provider(Capacity::OnDemand, &[]).attempts(),
            vec![Attempt {
                spot: false,
                instance_type: None
            }]
        );
    }

    #[test]
    fn user_data_joins_without_carrying_the_token() {
        let script = provider(Capacity::OnDemand, &[])
            .user_data("workers-ab12cd34")
            .unwrap();
        assert!(script.starts_with("#!/bin/sh"));
        assert!(
            script.contains("name='workers-ab12cd34'")
                && script.contains("server_url='https://k3s.internal:6443'")
        );
        assert!(
            script.contains("secretsmanager get-secret-value") && script.contains("token_secret='k3s/token'")
        );
        assert!(script.contains("--token-file /etc/rancher/k3s/agent-token"));
        assert!(
            !script.contains("K3S_TOKEN="),
            "the token is read at boot, never written here"
        );
        let bad = provider(Capacity::OnDemand, &[]).user_data("x'; rm -rf /; '");
        assert!(matches!(bad, Err(ProviderError::Fatal(_))));
    }
}
