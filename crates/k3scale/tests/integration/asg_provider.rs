//! The Auto Scaling group provider against a local AWS emulator (moto): it
//! grows the group by desired capacity within its max, claims each new
//! instance by name, terminates exactly the drained instance (decrementing
//! desired capacity), and claims instances the group launched on its own.

use k3scale_testsupport::contract::Subject;
use k3scale_testsupport::{awsctl, awsfix};
use std::collections::BTreeMap;

use k3scale::provider::asg::{AsgProvider, MACHINE_TAG};
use k3scale::provider::{NodeProvider, ProviderError};
use k3scale_core::config::AsgProviderConfig;

const GROUP: &str = "k3s-agents";

/// The emulator with an Auto Scaling group over two AZs: min 0, max 3.
async fn group() -> awsfix::Moto {
    let moto = awsfix::Moto::start().await;
    let config = moto.sdk_config();
    awsfix::launch_template(&config).await;
    let subnets = awsfix::two_az_subnets(&config).await;
    create_group(&config, GROUP, &subnets).await;
    moto
}

async fn create_group(config: &aws_config::SdkConfig, name: &str, subnets: &[String]) {
    aws_sdk_autoscaling::Client::new(config)
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_name("k3s-agent")
                .build(),
        )
        .min_size(0)
        .max_size(3)
        .desired_capacity(0)
        .vpc_zone_identifier(subnets.join(","))
        .send()
        .await
        .unwrap();
}

fn provider(moto: &awsfix::Moto, group: &str) -> AsgProvider {
    provider_of(moto, k3scale_core::testkit::workers(), group)
}

fn provider_of(moto: &awsfix::Moto, pool: k3scale_core::Pool, group: &str) -> AsgProvider {
    let config = moto.sdk_config();
    AsgProvider::with_clients(
        aws_sdk_autoscaling::Client::new(&config),
        aws_sdk_ec2::Client::new(&config),
        "home",
        pool,
        AsgProviderConfig {
            region: "us-east-1".into(),
            group: group.into(),
            launch_wait: "20s".into(),
        },
    )
    .unwrap()
}

/// Pool `workers` on the group, pool `others` on a group of its own.
async fn contract_subject() -> (awsfix::Moto, Subject) {
    let moto = group().await;
    let config = moto.sdk_config();
    create_group(&config, "others", &awsfix::two_az_subnets(&config).await).await;
    let others = k3scale_core::testkit::pool("others", 0, 3, 2000, 4 << 30, 0.0);
    let subject = Subject {
        ours: Box::new(provider(&moto, GROUP)),
        foreign: Box::new(provider_of(&moto, others, "others")),
        our_name: "workers-contract".into(),
        foreign_name: "others-contract".into(),
    };
    (moto, subject)
}

k3scale_testsupport::provider_contract!(contract_subject());

/// The group's desired capacity and its live instance ids.
async fn state(moto: &awsfix::Moto) -> (i32, Vec<String>) {
    let out = aws_sdk_autoscaling::Client::new(&moto.sdk_config())
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(GROUP)
        .send()
        .await
        .unwrap();
    let g = &out.auto_scaling_groups()[0];
    let mut ids: Vec<String> = g
        .instances()
        .iter()
        .filter(|i| !i.lifecycle_state().unwrap().as_str().starts_with("Terminat"))
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    ids.sort();
    (g.desired_capacity().unwrap(), ids)
}

fn id_of(provider_id: &str) -> String {
    provider_id.rsplit('/').next().unwrap().to_string()
}

#[tokio::test]
async fn grows_by_desired_capacity_and_removes_exactly_the_drained_instance() {
    let moto = group().await;
    let p = provider(&moto, GROUP);
    let a = p.create("workers-g0").await.unwrap();
    let b = p.create("workers-g1").await.unwrap();
    assert_eq!(a.name, "workers-g0");
    let (desired, ids) = state(&moto).await;
    assert_eq!(desired, 2);
    let mut want = vec![id_of(&a.provider_id), id_of(&b.provider_id)];
    want.sort();
    assert_eq!(ids, want);

    // The claim is a tag on the instance, so a restart finds it.
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let out = ec2
        .describe_instances()
        .instance_ids(id_of(&a.provider_id))
        .send()
        .await
        .unwrap();
    let tags: BTreeMap<_, _> = out.reservations()[0].instances()[0]
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(
        (
            tags[MACHINE_TAG],
            tags["k3scale.io/cluster"],
            tags["k3scale.io/pool"]
        ),
        ("workers-g0", "home", "workers")
    );

    // Idempotent create; list by claim.
    assert_eq!(p.create("workers-g0").await.unwrap().provider_id, a.provider_id);
    assert_eq!(state(&moto).await.0, 2, "no second instance");
    let mut names: Vec<String> = p.list().await.unwrap().into_iter().map(|m| m.name).collect();
    names.sort();
    assert_eq!(names, ["workers-g0", "workers-g1"]);

    // Remove g0: exactly its instance goes, and desired capacity with it.
    p.delete("workers-g0").await.unwrap();
    assert_eq!(
        state(&moto).await,
        (1, vec![id_of(&b.provider_id)]),
        "the group picked no victim of its own"
    );
    p.delete("workers-g0").await.unwrap();

    // The group launched one by itself (a replacement): claimed, not grown.
    aws_sdk_autoscaling::Client::new(&moto.sdk_config())
        .set_desired_capacity()
        .auto_scaling_group_name(GROUP)
        .desired_capacity(2)
        .send()
        .await
        .unwrap();
    let c = p.create("workers-g2").await.unwrap();
    assert_eq!(state(&moto).await.0, 2, "claimed the group's own instance");
    assert!(!c.provider_id.ends_with(&id_of(&b.provider_id)));

    // Up to the group's max, then InsufficientCapacity.
    p.create("workers-g3").await.unwrap();
    assert_eq!(state(&moto).await.0, 3);
    let err = p.create("workers-g4").await.unwrap_err();
    assert!(
        matches!(err, ProviderError::InsufficientCapacity(ref m) if m.contains("max size 3")),
        "{err:?}"
    );
    assert_eq!(p.list().await.unwrap().len(), 3);

    let missing = provider(&moto, "no-such-group").list().await.unwrap_err();
    assert!(
        matches!(missing, ProviderError::Fatal(ref m) if m.contains("no-such-group")),
        "{missing:?}"
    );
}

/// Through the same controller as with Docker: a pending pod grows the
/// group by one, the claimed instance joins under its claimed name, and
/// when the load goes exactly that instance is terminated with the group's
/// desired capacity back to 0.
#[tokio::test]
async fn an_asg_pool_grows_and_shrinks_through_the_controller() {
    let moto = group().await;
    let mut s = awsctl::Scaled::start(Box::new(provider(&moto, GROUP)), "asg").await;
    let agent = s.one_busy_agent().await;
    let (desired, ids) = state(&moto).await;
    assert_eq!((desired, ids.len()), (1, 1));

    s.load_goes_and_drains(&agent).await;
    assert_eq!(state(&moto).await, (0, vec![]), "terminated with a decrement");
}
