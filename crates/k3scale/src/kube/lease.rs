//! Leader election over a `coordination.k8s.io` Lease: the I/O around
//! `k3scale_core::lease::Elector` (read, then create or replace with the
//! resourceVersion just read, so a concurrent writer gets a 409).

use super::KubeError;
use k3scale_core::Time;
use k3scale_core::lease::{ElectionConfig, Elector, LeaseRecord, LeaseStep};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use std::time::Duration;

/// The namespace the shipped manifests install into, and where the Lease
/// lives when nothing says otherwise.
pub const DEFAULT_NAMESPACE: &str = "k3scale-system";

/// Where the Lease lives: `leader_election.namespace`, else the pod's
/// namespace, else `state.namespace`, else [`DEFAULT_NAMESPACE`] (the one
/// the shipped RBAC grants Leases in; never `kube-system`, which it does not).
pub fn namespace(config: &k3scale_core::config::Config, pod_namespace: Option<String>) -> String {
    config
        .leader_election
        .namespace
        .clone()
        .or(pod_namespace)
        .or_else(|| config.state.namespace.clone())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.into())
}

/// The namespace of the pod k3scale runs in (`POD_NAMESPACE`, else the
/// service account's), if it runs in one.
pub fn pod_namespace() -> Option<String> {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_string())
        })
}

fn micro_time(t: Time) -> MicroTime {
    let ms = i64::try_from(t.as_millis()).unwrap_or(i64::MAX);
    MicroTime(jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

fn from_micro_time(t: Option<&MicroTime>) -> Time {
    t.map_or(Time::ZERO, |t| {
        Time::from_millis(u64::try_from(t.0.as_millisecond()).unwrap_or(0))
    })
}

fn record(lease: &Lease) -> LeaseRecord {
    let spec = lease.spec.clone().unwrap_or_default();
    LeaseRecord {
        holder: spec.holder_identity.filter(|h| !h.is_empty()),
        acquire_time: from_micro_time(spec.acquire_time.as_ref()),
        renew_time: from_micro_time(spec.renew_time.as_ref()),
        lease_duration: Duration::from_secs(
            spec.lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(15),
        ),
        transitions: spec
            .lease_transitions
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(0),
    }
}

fn spec(r: &LeaseRecord) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(r.holder.clone().unwrap_or_default()),
        acquire_time: Some(micro_time(r.acquire_time)),
        renew_time: Some(micro_time(r.renew_time)),
        // Whole seconds in the API: round up, so followers never wait less than configured.
        lease_duration_seconds: Some(
            i32::try_from(r.lease_duration.as_secs() + u64::from(r.lease_duration.subsec_nanos() > 0))
                .unwrap_or(i32::MAX),
        ),
        lease_transitions: Some(i32::try_from(r.transitions).unwrap_or(i32::MAX)),
        ..LeaseSpec::default()
    }
}

#[derive(Debug)]
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    pub elector: Elector,
}

impl LeaseLock {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, config: ElectionConfig) -> Self {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            elector: Elector::new(identity, config),
        }
    }

    /// One round: read the Lease, then create, renew or take it over if the
    /// elector says so. Returns whether this replica may act until the next
    /// round. An API failure is returned after the elector has been told, so
    /// leadership still ends at the renew deadline.
    pub async fn round(&mut self, now: Time) -> Result<bool, KubeError> {
        let what = format!("lease {}", self.name);
        let current = match self.api.get_opt(&self.name).await {
            Ok(lease) => lease,
            Err(e) => {
                self.elector.write_failed(now);
                return Err(KubeError::from_kube(what, e));
            }
        };
        let (record, create) = match self.elector.step(current.as_ref().map(record).as_ref(), now) {
            LeaseStep::Wait { .. } => return Ok(self.elector.is_leader(now)),
            LeaseStep::Create(r) => (r, true),
            LeaseStep::Update(r) => (r, false),
        };
        let mut lease = current.unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..ObjectMeta::default()
            },
            spec: None,
        });
        lease.spec = Some(spec(&record));
        let written = if create {
            self.api.create(&PostParams::default(), &lease).await
        } else {
            self.api.replace(&self.name, &PostParams::default(), &lease).await
        };
        match written {
            Ok(_) => {
                self.elector.written(&record, now);
                Ok(self.elector.is_leader(now))
            }
            // 409: another replica wrote first; it holds the Lease now.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                self.elector.write_failed(now);
                Ok(self.elector.is_leader(now))
            }
            Err(e) => {
                self.elector.write_failed(now);
                Err(KubeError::from_kube(what, e))
            }
        }
    }

    /// Give the Lease up (on shutdown) so another replica takes over at once.
    pub async fn release(&mut self, now: Time) -> Result<(), KubeError> {
        let what = format!("release lease {}", self.name);
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| KubeError::from_kube(what.clone(), e))?
        else {
            return Ok(());
        };
        if let Some(released) = self.elector.release(&record(&lease), now) {
            lease.spec = Some(spec(&released));
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
                .map_err(|e| KubeError::from_kube(what, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_namespace_is_never_kube_system_by_default() {
        let mut c = k3scale_core::config::Config::default();
        assert_eq!(namespace(&c, None), "k3scale-system", "outside a pod");
        c.state.namespace = Some("state-ns".into());
        assert_eq!(namespace(&c, None), "state-ns");
        assert_eq!(namespace(&c, Some("pod-ns".into())), "pod-ns");
        c.leader_election.namespace = Some("set".into());
        assert_eq!(namespace(&c, Some("pod-ns".into())), "set");
    }
}
