//! Notifications to local Slack and webhook receivers: content, retries on
//! 5xx, no retry on 4xx, standing conditions not repeated, and the webhook
//! URL (a secret) never in an error.

use k3scale::notify::{Kind, Notification, Notifier};
use k3scale::provider::secret::Secret;
use k3scale_core::Time;
use k3scale_testsupport::webhook;
use std::time::Duration;
use webhook::Receiver;

fn note(kind: Kind, message: &str) -> Notification {
    Notification {
        kind,
        cluster: "home".into(),
        pool: "workers".into(),
        nodes: vec!["workers-k2j8x0qa".into()],
        message: message.into(),
        at: 1_000,
    }
}

fn fast(mut n: Notifier) -> Notifier {
    n.retry_base = Duration::from_millis(10);
    n
}

#[tokio::test]
async fn slack_and_webhook_get_their_formats() {
    let (slack, hook) = (Receiver::start(0, 200).await, Receiver::start(0, 200).await);
    let n = fast(Notifier::new(
        Some(Secret::new(slack.url.clone())),
        Some(Secret::new(hook.url.clone())),
    ));
    let results = n
        .send(
            &note(Kind::ScaleUp, "launched: 3 unschedulable pods"),
            Time::from_secs(1),
        )
        .await;
    assert_eq!(results, [Ok(()), Ok(())]);
    let text = slack.bodies()[0]["text"].as_str().unwrap().to_string();
    assert!(
        text.contains(":arrow_up:")
            && text.contains("*home*")
            && text.contains("`workers`")
            && text.contains("workers-k2j8x0qa"),
        "{text}"
    );
    let body = &hook.bodies()[0];
    assert_eq!(body["kind"], "scale_up");
    assert_eq!(body["pool"], "workers");
    assert_eq!(body["nodes"][0], "workers-k2j8x0qa");
    assert_eq!(body["message"], "launched: 3 unschedulable pods");
}

#[tokio::test]
async fn server_errors_are_retried_client_errors_are_not() {
    let flaky = Receiver::start(2, 503).await;
    let n = fast(Notifier::new(None, Some(Secret::new(flaky.url.clone()))));
    assert_eq!(
        n.send(&note(Kind::ScaleDown, "drained"), Time::from_secs(1))
            .await,
        [Ok(())]
    );
    assert_eq!(flaky.requests(), 3, "two 503s, then delivered");

    let refusing = Receiver::start(usize::MAX, 400).await;
    let n = fast(Notifier::new(None, Some(Secret::new(refusing.url.clone()))));
    let results = n
        .send(&note(Kind::ScaleDown, "drained"), Time::from_secs(1))
        .await;
    assert_eq!(results, [Err("HTTP 400".to_string())]);
    assert_eq!(refusing.requests(), 1, "a 400 will not get better");
}

#[tokio::test]
async fn a_standing_condition_is_not_repeated_until_repeat_after() {
    let hook = Receiver::start(0, 200).await;
    let n = fast(Notifier::new(None, Some(Secret::new(hook.url.clone()))));
    let at_max = |wanted: u32| {
        note(
            Kind::AtMaxCapacity,
            &format!("at its maximum ({wanted} more wanted)"),
        )
    };
    assert_eq!(n.send(&at_max(2), Time::from_secs(0)).await.len(), 1);
    assert!(
        n.send(&at_max(3), Time::from_secs(60)).await.is_empty(),
        "same condition"
    );
    assert_eq!(
        n.send(&at_max(3), Time::from_secs(31 * 60)).await.len(),
        1,
        "said again later"
    );
    // Scale events are each news.
    assert_eq!(
        n.send(&note(Kind::ScaleUp, "a"), Time::from_secs(61 * 60))
            .await
            .len(),
        1
    );
    assert_eq!(
        n.send(&note(Kind::ScaleUp, "b"), Time::from_secs(61 * 60))
            .await
            .len(),
        1
    );
    assert_eq!(hook.bodies().len(), 4);
}

#[tokio::test]
async fn an_unreachable_webhook_never_shows_its_url() {
    let secret_url = "http://127.0.0.1:9/hooks/T0000/B0000/s3cr3t-webhook-token";
    let mut n = fast(Notifier::new(None, Some(Secret::new(secret_url))));
    n.attempts = 2;
    let results = n
        .send(&note(Kind::Failure, "launch failed"), Time::from_secs(1))
        .await;
    let err = results[0].clone().unwrap_err();
    assert!(err.contains("after 2 attempts"), "{err}");
    assert!(!err.contains("s3cr3t") && !err.contains("/hooks/"), "{err}");
    assert!(!format!("{n:?}").contains("s3cr3t"));
}
