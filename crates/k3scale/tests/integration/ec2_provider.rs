//! The EC2 provider against a local AWS emulator (moto): launch from a
//! launch template, tags, IMDSv2, user data without the token, spread over
//! two AZs, idempotent create, list and terminate only our instances; and,
//! through a fault-injecting proxy, spot falling back to on-demand, quota
//! errors as InsufficientCapacity, throttling retried.

use awsctl::Scaled;
use k3scale_testsupport::contract::Subject;
use k3scale_testsupport::{awsctl, awsfix};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_ec2::types::Filter;
use base64::Engine as _;
use k3scale::provider::ec2::Ec2Provider;
use k3scale::provider::{NodeProvider, ProviderError};
use k3scale_core::config::{Capacity, Ec2ProviderConfig};

struct Aws {
    moto: awsfix::Moto,
    subnets: Vec<String>,
}

/// The emulator with a launch template `k3s-agent` and two default
/// subnets in different AZs.
async fn aws() -> Aws {
    let moto = awsfix::Moto::start().await;
    awsfix::launch_template(&moto.sdk_config()).await;
    let subnets = awsfix::two_az_subnets(&moto.sdk_config()).await;
    Aws { moto, subnets }
}

fn config(aws: &Aws, capacity: Capacity, types: &[&str]) -> Ec2ProviderConfig {
    Ec2ProviderConfig {
        region: "us-east-1".into(),
        server_url: "https://k3s.internal:6443".into(),
        launch_template: Some("k3s-agent".into()),
        ami: None,
        subnets: aws.subnets.clone(),
        instance_types: types.iter().map(|s| s.to_string()).collect(),
        security_groups: vec![],
        instance_profile: None,
        capacity,
        token_secret: "k3s/agent-token".into(),
        tags: BTreeMap::from([("team".to_string(), "platform".to_string())]),
    }
}

fn provider(url: &str, pool: &str, config: Ec2ProviderConfig) -> Ec2Provider {
    let mut p = k3scale_core::testkit::workers();
    p.name = pool.into();
    Ec2Provider::with_client(
        aws_sdk_ec2::Client::new(&awsfix::sdk_config(url)),
        "home",
        p,
        config,
    )
}

async fn instance(aws: &Aws, provider_id: &str) -> aws_sdk_ec2::types::Instance {
    let id = provider_id.rsplit('/').next().unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&aws.moto.sdk_config());
    let out = ec2.describe_instances().instance_ids(id).send().await.unwrap();
    out.reservations()[0].instances()[0].clone()
}

/// Pools `workers` and `others` of one cluster on one emulator.
async fn contract_subject() -> (Aws, Subject) {
    let aws = aws().await;
    let on = |pool: &str| {
        Box::new(provider(
            &aws.moto.url,
            pool,
            config(&aws, Capacity::OnDemand, &[]),
        ))
    };
    let subject = Subject {
        ours: on("workers"),
        foreign: on("others"),
        our_name: "workers-contract".into(),
        foreign_name: "others-contract".into(),
    };
    (aws, subject)
}

k3scale_testsupport::provider_contract!(contract_subject());

#[tokio::test]
async fn launches_spread_over_azs_lists_and_terminates_only_ours() {
    let aws = aws().await;
    let p = provider(&aws.moto.url, "workers", config(&aws, Capacity::OnDemand, &[]));
    let names: Vec<String> = (0..4).map(|i| format!("workers-a{i}")).collect();
    let mut machines = Vec::new();
    for n in &names {
        machines.push(p.create(n).await.unwrap());
    }
    // Two per subnet: each launch goes to the subnet with the fewest.
    let mut per_subnet = BTreeMap::new();
    for m in &machines {
        let i = instance(&aws, &m.provider_id).await;
        *per_subnet.entry(i.subnet_id().unwrap().to_string()).or_insert(0) += 1;
        let tags: BTreeMap<_, _> = i
            .tags()
            .iter()
            .map(|t| (t.key().unwrap(), t.value().unwrap()))
            .collect();
        assert_eq!(tags["Name"], m.name);
        assert_eq!(
            (tags["k3scale.io/cluster"], tags["k3scale.io/pool"]),
            ("home", "workers")
        );
        assert_eq!(
            (tags["app.kubernetes.io/managed-by"], tags["team"]),
            ("k3scale", "platform")
        );
        assert!(!tags.values().any(|v| v.contains("token")), "{tags:?}");
        assert_eq!(i.instance_lifecycle(), None, "on-demand");
    }
    assert_eq!(
        per_subnet.values().copied().collect::<Vec<_>>(),
        vec![2, 2],
        "{per_subnet:?}"
    );

    // User data joins the agent by name, reading the token at boot.
    let ec2 = aws_sdk_ec2::Client::new(&aws.moto.sdk_config());
    let id = machines[0].provider_id.rsplit('/').next().unwrap();
    let attr = ec2
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let script = base64::engine::general_purpose::STANDARD
        .decode(attr.user_data().unwrap().value().unwrap())
        .unwrap();
    let script = String::from_utf8(script).unwrap();
    assert!(
        script.contains("name='workers-a0'") && script.contains("token_secret='k3s/agent-token'"),
        "{script}"
    );

    // Idempotent: the same name gives the same instance.
    let again = p.create("workers-a0").await.unwrap();
    assert_eq!(again.provider_id, machines[0].provider_id);
    let mut listed: Vec<String> = p.list().await.unwrap().into_iter().map(|m| m.name).collect();
    listed.sort();
    assert_eq!(listed, names);

    // Another pool's instance is neither listed nor deleted by this one.
    let other = provider(&aws.moto.url, "gpu", config(&aws, Capacity::OnDemand, &[]));
    other.create("gpu-b0").await.unwrap();
    assert_eq!(p.list().await.unwrap().len(), 4);
    p.delete("gpu-b0").await.unwrap();
    assert_eq!(other.list().await.unwrap().len(), 1, "not ours: untouched");

    p.delete("workers-a1").await.unwrap();
    p.delete("workers-a1").await.unwrap();
    assert_eq!(p.list().await.unwrap().len(), 3, "terminated");
}

fn is_spot(body: &str) -> bool {
    body.contains("Action=RunInstances") && body.contains("InstanceMarketOptions.MarketType=spot")
}

#[tokio::test]
async fn spot_without_capacity_falls_back_to_on_demand() {
    let aws = aws().await;
    let spot_tries = Arc::new(AtomicUsize::new(0));
    let tries = spot_tries.clone();
    let (url, _) = awsfix::faulty_proxy(aws.moto.url.clone(), move |_, body| {
        is_spot(body).then(|| {
            tries.fetch_add(1, Ordering::SeqCst);
            awsfix::ec2_error(500, "InsufficientInstanceCapacity")
        })
    })
    .await;
    let p = provider(
        &url,
        "workers",
        config(&aws, Capacity::SpotThenOnDemand, &["m6i.large", "m5.large"]),
    );
    let m = p.create("workers-s0").await.unwrap();
    let i = instance(&aws, &m.provider_id).await;
    assert_eq!(
        i.instance_lifecycle(),
        None,
        "on-demand after spot had no capacity"
    );
    assert_eq!(
        i.instance_type().unwrap().as_str(),
        "m6i.large",
        "the first type, on demand"
    );
    assert!(
        spot_tries.load(Ordering::SeqCst) >= 2,
        "both types were tried on spot first"
    );

    // Spot only, and no spot anywhere: InsufficientCapacity, nothing launched.
    let p = provider(&url, "spot", config(&aws, Capacity::Spot, &["m6i.large"]));
    let err = p.create("spot-s1").await.unwrap_err();
    assert!(
        matches!(err, ProviderError::InsufficientCapacity(ref m) if m.contains("InsufficientInstanceCapacity")),
        "{err:?}"
    );
    assert!(p.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn quotas_are_insufficient_capacity_throttling_is_retried_bad_templates_are_fatal() {
    let aws = aws().await;
    let (url, _) = awsfix::faulty_proxy(aws.moto.url.clone(), |_, body| {
        body.contains("Action=RunInstances")
            .then(|| awsfix::ec2_error(400, "VcpuLimitExceeded"))
    })
    .await;
    let err = provider(&url, "workers", config(&aws, Capacity::OnDemand, &[]))
        .create("workers-q0")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::InsufficientCapacity(ref m) if m.contains("VcpuLimitExceeded")),
        "{err:?}"
    );

    // Two throttled answers, then the emulator: the SDK retries with backoff.
    let (url, seen) = awsfix::faulty_proxy(aws.moto.url.clone(), |n, _| {
        (n < 2).then(|| awsfix::ec2_error(503, "RequestLimitExceeded"))
    })
    .await;
    let p = provider(&url, "workers", config(&aws, Capacity::OnDemand, &[]));
    assert!(p.list().await.unwrap().is_empty());
    assert_eq!(seen.load(Ordering::SeqCst), 3);

    // A launch template that does not exist will not fix itself.
    let mut bad = config(&aws, Capacity::OnDemand, &[]);
    bad.launch_template = Some("no-such-template".into());
    let err = provider(&aws.moto.url, "workers", bad)
        .create("workers-f0")
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Fatal(_)), "{err:?}");
    let text = format!("{err}");
    assert!(!text.contains(awsfix::SECRET_KEY), "{text}");
}

/// Live instances named `name` in the emulator.
async fn live(aws: &Aws, name: &str) -> usize {
    let ec2 = aws_sdk_ec2::Client::new(&aws.moto.sdk_config());
    let out = ec2
        .describe_instances()
        .filters(Filter::builder().name("tag:Name").values(name).build())
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
    out.reservations().iter().map(|r| r.instances().len()).sum()
}

/// The same controller as with Docker: a pending pod launches an instance in
/// the emulator, the node joins, the load goes, and the drained node's
/// instance is terminated.
#[tokio::test]
async fn an_ec2_pool_grows_and_shrinks_through_the_controller() {
    let aws = aws().await;
    let p = provider(&aws.moto.url, "workers", config(&aws, Capacity::OnDemand, &[]));
    let mut s = Scaled::start(Box::new(p), "ec2-grow").await;
    let agent = s.one_busy_agent().await;
    assert_eq!(live(&aws, &agent).await, 1, "one instance named as its Node");
    let steady = s.reconcile().await;
    assert!(
        steady.launched.is_empty() && steady.removed.is_empty(),
        "{:?}",
        steady.decision.reasons
    );

    // The load goes: drained, Node deleted, instance terminated.
    s.load_goes_and_drains(&agent).await;
    assert_eq!(live(&aws, &agent).await, 0, "terminated");
    assert!(
        s.k.server
            .get(&k3scale_testapi::resources::NODES, "", &agent)
            .is_none()
    );
}

/// A spot interruption warning arrives on SQS (as EventBridge delivers it):
/// the same reconcile launches a replacement and drains the node (its pod
/// evicted, its instance terminated), and the notice is acknowledged.
#[tokio::test]
async fn a_spot_interruption_drains_the_node_and_launches_its_replacement() {
    use k3scale::interruptions::sqs::SqsInterruptions;
    let aws = aws().await;
    let sqs = aws_sdk_sqs::Client::new(&aws.moto.sdk_config());
    let queue = sqs
        .create_queue()
        .queue_name("k3s-interruptions")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let p = provider(&aws.moto.url, "workers", config(&aws, Capacity::OnDemand, &[]));
    let interruptions = Box::new(SqsInterruptions::with_client(sqs.clone(), &queue));
    let mut s = Scaled::start_with(Box::new(p), "ec2-spot", Some(interruptions)).await;
    let agent = s.one_busy_agent().await;

    // A quiet reconcile: no notice, nothing happens.
    let quiet = s.reconcile().await;
    assert!(
        quiet.launched.is_empty() && quiet.removed.is_empty(),
        "{:?}",
        quiet.decision.reasons
    );

    let ec2 = aws_sdk_ec2::Client::new(&aws.moto.sdk_config());
    let out = ec2
        .describe_instances()
        .filters(Filter::builder().name("tag:Name").values(&agent).build())
        .send()
        .await
        .unwrap();
    let instance_id = out.reservations()[0].instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    let event = serde_json::json!({
        "version": "0", "id": "1e5527d7", "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2", "region": "us-east-1",
        "detail": { "instance-id": instance_id, "instance-action": "terminate" }
    });
    sqs.send_message()
        .queue_url(&queue)
        .message_body(event.to_string())
        .send()
        .await
        .unwrap();
    // Not a notice: acknowledged and ignored.
    sqs.send_message()
        .queue_url(&queue)
        .message_body("{\"detail-type\":\"something else\"}")
        .send()
        .await
        .unwrap();

    let r = s.reconcile().await;
    assert_eq!(
        r.launched.len(),
        1,
        "a replacement: {:?} {:?}",
        r.decision.reasons,
        r.failed
    );
    assert_eq!(
        r.removed,
        std::slice::from_ref(&agent),
        "{:?} {:?}",
        r.decision.reasons,
        r.failed
    );
    assert!(
        r.decision
            .reasons
            .iter()
            .any(|x| x.to_string().contains("spot-interruption notice"))
    );
    assert_eq!(live(&aws, &agent).await, 0, "the interrupted instance is gone");
    assert_eq!(live(&aws, &r.launched[0].node).await, 1, "its replacement runs");
    // Deleted, not merely invisible for a while.
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = |name: aws_sdk_sqs::types::QueueAttributeName| attrs.attributes().unwrap()[&name].clone();
    assert_eq!(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages),
        "0"
    );
    assert_eq!(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        "0",
        "both acknowledged"
    );
}
