//! The Auto Scaling group provider (`provider.aws_asg`, feature `aws`), for
//! clusters whose agents already come from an ASG. k3scale grows the group
//! by raising its desired capacity (within its max) and claims the new
//! instance by tagging it with the machine's name; it shrinks the group by
//! terminating exactly the drained instance with
//! `TerminateInstanceInAutoScalingGroup` (decrementing desired capacity),
//! so the group never picks a victim of its own.
//!
//! The launch template's user data names the node after the instance's
//! `k3scale-machine` tag (readable from IMDS when instance metadata tags
//! are enabled; deploy/terraform/aws shows how).

use super::ec2::classify;
use super::{CLUSTER_LABEL, MANAGED_BY_LABEL, Machine, NodeProvider, POOL_LABEL, ProviderError};
use aws_sdk_autoscaling::types::AutoScalingGroup;
use aws_sdk_ec2::types::{Instance, InstanceStateName, Tag};
use k3scale_core::Time;
use k3scale_core::config::AsgProviderConfig;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The claim tag; no `/` in its key, so IMDS instance tags can show it.
pub const MACHINE_TAG: &str = "k3scale-machine";

#[derive(Debug)]
pub struct AsgProvider {
    asg: aws_sdk_autoscaling::Client,
    ec2: aws_sdk_ec2::Client,
    cluster: String,
    pool: k3scale_core::Pool,
    group: String,
    launch_wait: Duration,
    poll: Duration,
    /// Creates read and raise the desired capacity: one at a time.
    creating: tokio::sync::Mutex<()>,
}

fn tag<'a>(i: &'a Instance, key: &str) -> Option<&'a str> {
    i.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

impl AsgProvider {
    pub async fn connect(
        cluster: &str,
        pool: k3scale_core::Pool,
        config: AsgProviderConfig,
    ) -> Result<Self, ProviderError> {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()))
            .load()
            .await;
        Self::with_clients(
            aws_sdk_autoscaling::Client::new(&sdk),
            aws_sdk_ec2::Client::new(&sdk),
            cluster,
            pool,
            config,
        )
    }

    pub fn with_clients(
        asg: aws_sdk_autoscaling::Client,
        ec2: aws_sdk_ec2::Client,
        cluster: &str,
        pool: k3scale_core::Pool,
        config: AsgProviderConfig,
    ) -> Result<Self, ProviderError> {
        let launch_wait = config.launch_wait.get();
        Ok(AsgProvider {
            asg,
            ec2,
            cluster: cluster.to_string(),
            pool,
            group: config.group,
            launch_wait,
            poll: Duration::from_millis(500),
            creating: tokio::sync::Mutex::new(()),
        })
    }

    async fn describe_group(&self) -> Result<AutoScalingGroup, ProviderError> {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.group)
            .send()
            .await
            .map_err(|e| classify("describe auto scaling groups", &e))?;
        out.auto_scaling_groups()
            .first()
            .cloned()
            .ok_or_else(|| ProviderError::Fatal(format!("auto scaling group {} not found", self.group)))
    }

    /// The group's instances that are not on their way out, as EC2 sees them.
    async fn members(&self, group: &AutoScalingGroup) -> Result<Vec<Instance>, ProviderError> {
        let ids: Vec<String> = group
            .instances()
            .iter()
            .filter(|i| {
                !i.lifecycle_state()
                    .is_some_and(|s| s.as_str().starts_with("Terminat"))
            })
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let out = self
            .ec2
            .describe_instances()
            .set_instance_ids(Some(ids))
            .send()
            .await
            .map_err(|e| classify("describe instances", &e))?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances().iter().cloned())
            .filter(|i| {
                !matches!(
                    i.state().and_then(|s| s.name()),
                    Some(InstanceStateName::ShuttingDown | InstanceStateName::Terminated)
                )
            })
            .collect())
    }

    fn is_ours(&self, i: &Instance) -> bool {
        tag(i, MACHINE_TAG).is_some()
            && tag(i, CLUSTER_LABEL) == Some(&self.cluster)
            && tag(i, POOL_LABEL) == Some(&self.pool.name)
    }

    fn machine(&self, i: &Instance) -> Option<Machine> {
        let zone = i.placement().and_then(|p| p.availability_zone()).unwrap_or("");
        Some(Machine {
            name: tag(i, MACHINE_TAG)?.to_string(),
            pool: self.pool.name.clone(),
            provider_id: format!("aws:///{zone}/{}", i.instance_id()?),
            created_at: Time::from_millis(
                i.launch_time()
                    .map_or(0, |t| t.to_millis().unwrap_or(0).max(0) as u64),
            ),
            running: i.state().and_then(|s| s.name()) == Some(&InstanceStateName::Running),
        })
    }

    /// Tags `instance` as machine `name` of this cluster and pool.
    async fn claim(&self, instance: &Instance, name: &str) -> Result<Machine, ProviderError> {
        let id = instance
            .instance_id()
            .ok_or_else(|| ProviderError::Transient("instance without id".into()))?;
        let tags: Vec<Tag> = [
            (MACHINE_TAG, name),
            ("Name", name),
            (CLUSTER_LABEL, &self.cluster),
            (POOL_LABEL, &self.pool.name),
            (MANAGED_BY_LABEL, "k3scale"),
        ]
        .iter()
        .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
        .collect();
        self.ec2
            .create_tags()
            .resources(id)
            .set_tags(Some(tags.clone()))
            .send()
            .await
            .map_err(|e| classify("create tags", &e))?;
        let mut claimed = instance.clone();
        claimed.tags = Some(tags);
        self.machine(&claimed)
            .ok_or_else(|| ProviderError::Transient("claimed instance has no id".into()))
    }
}

#[async_trait::async_trait]
impl NodeProvider for AsgProvider {
    fn kind(&self) -> &'static str {
        "aws_asg"
    }

    async fn create(&self, name: &str) -> Result<Machine, ProviderError> {
        let _one_at_a_time = self.creating.lock().await;
        let group = self.describe_group().await?;
        let members = self.members(&group).await?;
        if let Some(existing) = members.iter().find(|i| tag(i, MACHINE_TAG) == Some(name)) {
            return self
                .machine(existing)
                .ok_or_else(|| ProviderError::Transient(format!("{name} has no id yet")));
        }
        // An instance nobody claimed (a launch whose tagging was cut short,
        // or the group's own replacement): take it instead of growing.
        if let Some(free) = members.iter().find(|i| tag(i, MACHINE_TAG).is_none()) {
            return self.claim(free, name).await;
        }
        let desired = group.desired_capacity().unwrap_or(0);
        let max = group.max_size().unwrap_or(0);
        if desired >= max {
            return Err(ProviderError::InsufficientCapacity(format!(
                "auto scaling group {} is at its max size {max}",
                self.group
            )));
        }
        let known: HashSet<String> = members
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        self.asg
            .set_desired_capacity()
            .auto_scaling_group_name(&self.group)
            .desired_capacity(desired + 1)
            .honor_cooldown(false)
            .send()
            .await
            .map_err(|e| classify("set desired capacity", &e))?;
        let deadline = Instant::now() + self.launch_wait;
        loop {
            let group = self.describe_group().await?;
            let members = self.members(&group).await?;
            if let Some(new) = members
                .iter()
                .find(|i| i.instance_id().is_some_and(|id| !known.contains(id)))
            {
                tracing::info!(machine = name, group = %self.group, id = ?new.instance_id(), "claimed the group's new instance");
                return self.claim(new, name).await;
            }
            if Instant::now() >= deadline {
                // The desired capacity stays raised: the next create claims the instance.
                return Err(ProviderError::Transient(format!(
                    "auto scaling group {} showed no new instance within {:?}",
                    self.group, self.launch_wait
                )));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn delete(&self, name: &str) -> Result<(), ProviderError> {
        let group = self.describe_group().await?;
        let members = self.members(&group).await?;
        let Some(id) = members
            .iter()
            .find(|i| self.is_ours(i) && tag(i, MACHINE_TAG) == Some(name))
            .and_then(|i| i.instance_id())
        else {
            return Ok(());
        };
        match self
            .asg
            .terminate_instance_in_auto_scaling_group()
            .instance_id(id)
            .should_decrement_desired_capacity(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match classify("terminate instance in auto scaling group", &e) {
                ProviderError::Fatal(why) if why.contains("min") => Err(ProviderError::Fatal(format!(
                    "{why} (the group's min size is above the pool's min: lower the group's min size)"
                ))),
                other => Err(other),
            },
        }
    }

    async fn list(&self) -> Result<Vec<Machine>, ProviderError> {
        let group = self.describe_group().await?;
        Ok(self
            .members(&group)
            .await?
            .iter()
            .filter(|i| self.is_ours(i))
            .filter_map(|i| self.machine(i))
            .collect())
    }
}
