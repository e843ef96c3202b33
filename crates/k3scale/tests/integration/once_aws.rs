//! `k3scale once` as a scheduled job on AWS: an EC2 pool and the DynamoDB
//! state store, against the emulator (credentials and endpoint from the
//! environment, as the standard AWS chain reads them), and the test API
//! server. A pending pod launches an instance; a second run that finds the
//! act lock held by a live owner does nothing and exits 3.

use k3scale_testsupport::{awsfix, kubefix};
use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use k3scale::state::StateStore;
use k3scale::state::dynamodb::DynamoStore;
use kubefix::*;

async fn prepare(moto: &awsfix::Moto) -> String {
    let config = moto.sdk_config();
    awsfix::launch_template(&config).await;
    awsfix::state_table(&config, "k3s-k3scale").await;
    awsfix::two_az_subnets(&config).await.remove(0)
}

async fn once(moto: &awsfix::Moto, config: &std::path::Path) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_k3scale"))
        .args(["once", "-c"])
        .arg(config)
        .env("AWS_ENDPOINT_URL", &moto.url)
        .env("AWS_ACCESS_KEY_ID", "AKIDK3SCALETEST")
        .env("AWS_SECRET_ACCESS_KEY", awsfix::SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test]
async fn once_launches_on_ec2_with_its_state_in_dynamodb() {
    let moto = awsfix::Moto::start().await;
    let subnet = prepare(&moto).await;
    let k = start().await;
    k3s_server(&k);
    k.server
        .set_metrics(k3scale_testapi::MetricsMode::Serving(BTreeMap::from([(
            "server".to_string(),
            ("200m".to_string(), "512Mi".to_string()),
        )])));
    let dir = k3scale_testsupport::support::TempDir::new("once-aws");
    let kubeconfig_path = dir.join("k3s.yaml");
    std::fs::write(
        &kubeconfig_path,
        kubeconfig(&k.server.url(), k.server.token().unwrap()),
    )
    .unwrap();
    let config = dir.join("k3scale.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster: k3s
kubernetes: {{ kubeconfig: {kc} }}
metrics: {{ source: metrics-server }}
policy:
  scale_up: {{ cooldown: 0s }}
state: {{ backend: dynamodb, table: k3s-k3scale }}
pools:
  - name: workers
    min: 0
    max: 3
    template: {{ cpu: \"2\", memory: 4Gi }}
    provider:
      aws_ec2:
        region: us-east-1
        server_url: https://10.40.16.10:6443
        launch_template: k3s-agent
        subnets: [{subnet}]
        token_secret: k3s/k3s-token
",
            kc = kubeconfig_path.display()
        ),
    )
    .unwrap();
    k.apply(&pod("shop", "web-0", "web", None, "1500m", "1Gi"));

    let (code, text) = once(&moto, &config).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains(awsfix::SECRET_KEY), "{text}");
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let out = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("tag:k3scale.io/cluster")
                .values("k3s")
                .build(),
        )
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let launched: Vec<_> = out.reservations().iter().flat_map(|r| r.instances()).collect();
    assert_eq!(launched.len(), 1, "{text}");

    // The run's history is in the table.
    let store = DynamoStore::with_client(aws_sdk_dynamodb::Client::new(&moto.sdk_config()), "k3s-k3scale");
    let events = store.events(None, 10).await.unwrap();
    assert_eq!(events[0].event.kind, "scale-up", "{events:?}");
    assert!(
        store.unfinished().await.unwrap().is_empty(),
        "the launch intent was closed"
    );

    // Another runner holds the act lock: this run does nothing, exits 3.
    let now = k3scale::provider::unix_now();
    assert!(
        store
            .lock("k3scale-act", "lambda-7f3a", Duration::from_secs(600), now)
            .await
            .unwrap()
            .is_ok()
    );
    k.apply(&pod("shop", "web-1", "web", None, "1500m", "1Gi"));
    let (code, text) = once(&moto, &config).await;
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("lambda-7f3a"), "{text}");
}
