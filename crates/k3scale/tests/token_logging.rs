//! The K3s token never reaches the logs, even at `trace` with bollard's own
//! debug output (which prints request bodies) forwarded into tracing.
#![allow(clippy::unwrap_used)]

use k3scale_testsupport::support;

use k3scale::provider::docker::DockerProvider;
use k3scale::provider::secret::Secret;
use k3scale::provider::{NodeProvider, create_many};
use k3scale_core::config::DockerProviderConfig;
use k3scale_core::testkit::{GI, pool};
use std::io::Write;
use std::sync::{Arc, Mutex};
use support::{TOKEN, TestCluster};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn trace_logs_of_real_docker_calls_never_contain_the_token() {
    let captured = Captured::default();
    let sink = captured.clone();
    k3scale::logging::init("trace", false, false, move || sink.clone()).unwrap();

    let cluster = TestCluster::new("logs");
    let cfg = support::standin_config(&cluster);
    let p = DockerProvider::connect(
        &cluster.name,
        pool("workers", 0, 5, 2000, 4 * GI, 0.0),
        cfg.clone(),
        Secret::new(TOKEN),
    )
    .await
    .unwrap();
    let names: Vec<String> = (0..2).map(|i| format!("workers-{}-{i}", cluster.name)).collect();
    for r in create_many(&p, &names, 2).await {
        r.unwrap();
    }
    p.list().await.unwrap();
    p.delete(&names[0]).await.unwrap();
    let missing = DockerProviderConfig {
        host: None,
        image: "k3scale-test/nope:v0".into(),
        ..cfg
    };
    let broken = DockerProvider::connect(
        &cluster.name,
        pool("workers", 0, 5, 2000, 4 * GI, 0.0),
        missing,
        Secret::new(TOKEN),
    )
    .await
    .unwrap();
    assert!(
        broken
            .create(&format!("workers-{}-x", cluster.name))
            .await
            .is_err()
    );

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("creating agent container"),
        "our own events are logged:\n{logs}"
    );
    assert!(!logs.contains(TOKEN), "the token leaked into the logs");
    assert!(
        !logs.contains("K3S_TOKEN="),
        "the agent environment leaked into the logs"
    );
}
