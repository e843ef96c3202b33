//! A controller with one pool backed by a cloud provider (EC2 or an Auto
//! Scaling group in the emulator), on the test API server: what the AWS
//! tests drive through the same controller as with Docker.

use std::collections::BTreeMap;
use std::sync::Arc;

/// A controller with one cloud-backed pool `workers` (the same controller
/// as with Docker), its cluster view, and the test API server.
pub struct Scaled {
    pub k: crate::kubefix::Kube,
    pub cluster: Arc<k3scale::kube::KubeCluster>,
    pub controller: k3scale::controller::Controller,
    _dir: crate::support::TempDir,
}

impl Scaled {
    pub async fn start(provider: Box<dyn k3scale::provider::NodeProvider>, tag: &str) -> Scaled {
        Scaled::start_with(provider, tag, None).await
    }

    /// `start`, with interruption notices read from `interruptions`.
    pub async fn start_with(
        provider: Box<dyn k3scale::provider::NodeProvider>,
        tag: &str,
        interruptions: Option<Box<dyn k3scale::interruptions::InterruptionSource>>,
    ) -> Scaled {
        use k3scale::metrics::metrics_server::MetricsServer;
        use k3scale::state::sqlite::SqliteStore;

        let k = crate::kubefix::start().await;
        crate::kubefix::k3s_server(&k);
        let yaml = "
cluster: home
metrics: { source: metrics-server }
policy:
  scale_up: { cooldown: 0s }
  scale_down: { unneeded_time: 0s, delay_after_scale_up: 0s, cooldown: 0s }
pools:
  - name: workers
    min: 0
    max: 3
    template: { cpu: \"2\", memory: 4Gi, boot_time: 5s }
    provider:
      aws_ec2: { region: us-east-1, server_url: \"https://10.0.0.10:6443\", subnets: [x], launch_template: k3s-agent, token_secret: k3s/agent-token }
";
        // The provider named here only shapes the policy; `provider` acts.
        let loaded = k3scale_core::config::load("k3scale.yaml", yaml).unwrap();
        let pool = loaded.policy.pools[0].clone();
        let dir = crate::support::TempDir::new(&format!("cloud-{tag}"));
        let store = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
        let cluster = k.cluster().await;
        let pools = BTreeMap::from([(
            pool.name.clone(),
            k3scale::wiring::machine_pool(&pool, Some(&loaded.config.pools[0]), provider),
        )]);
        let mut seq = 0u64;
        let mut controller = k3scale::controller::Controller::new(
            loaded.policy,
            cluster.clone(),
            Some(Box::new(MetricsServer::new(cluster.clone()))),
            pools,
            store,
            Box::new(move || {
                seq += 1;
                seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            }),
        );
        if let Some(source) = interruptions {
            controller = controller.with_interruptions(source);
        }
        Scaled {
            k,
            cluster,
            controller,
            _dir: dir,
        }
    }

    pub fn usage(&self, nodes: &[&str], cpu: &str) {
        self.k.server.set_metrics(k3scale_testapi::MetricsMode::Serving(
            nodes
                .iter()
                .map(|n| (n.to_string(), (cpu.to_string(), "512Mi".to_string())))
                .collect(),
        ))
    }

    pub async fn reconcile(&mut self) -> k3scale::controller::Reconciled {
        self.controller
            .reconcile(k3scale::provider::unix_now())
            .await
            .unwrap()
    }

    /// A pending pod launches one instance; it joins and takes the pod.
    pub async fn one_busy_agent(&mut self) -> String {
        use crate::kubefix::*;
        self.usage(&["server"], "200m");
        self.k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));
        let cluster = self.cluster.clone();
        eventually(10, "pending pod seen", || {
            let mut s = k3scale_core::Snapshot::default();
            cluster.fill(&mut s);
            s.pods
                .iter()
                .any(|p| p.name == "web-0" && p.unschedulable_since.is_some())
        })
        .await;
        let up = self.reconcile().await;
        assert_eq!(up.launched.len(), 1, "{:?} {:?}", up.decision.reasons, up.failed);
        let agent = up.launched[0].node.clone();
        // The instance's user data joins it; the scheduler places the pod.
        register(&self.k, &agent);
        self.k
            .apply(&pod("shop", "web-0", "web", Some(&agent), "1500m", "1Gi"));
        self.usage(&["server", &agent], "1500m");
        eventually(10, "pod on the agent", || cluster.pods_on_node(&agent).len() == 1).await;
        agent
    }

    /// The load goes: the next reconcile drains `agent` and removes it.
    pub async fn load_goes_and_drains(&mut self, agent: &str) {
        self.k
            .server
            .remove(&k3scale_testapi::resources::PODS, "shop", "web-0");
        self.usage(&["server", agent], "10m");
        let cluster = self.cluster.clone();
        crate::kubefix::eventually(10, "pod gone", || cluster.pods_on_node(agent).is_empty()).await;
        let down = self.reconcile().await;
        assert_eq!(
            down.removed,
            [agent.to_string()],
            "{:?} {:?}",
            down.decision.reasons,
            down.failed
        );
    }
}
