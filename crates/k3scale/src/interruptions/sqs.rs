//! Interruption notices from an SQS queue fed by EventBridge (the usual AWS
//! setup: rules for "EC2 Spot Instance Interruption Warning" and "EC2
//! Instance Rebalance Recommendation" targeting one queue).

use super::{InterruptionSource, Notice};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;

#[derive(Debug, Clone)]
pub struct SqsInterruptions {
    client: Client,
    url: String,
}

/// The notice an EventBridge event carries, if it is one.
pub fn parse(body: &str) -> Option<(String, String)> {
    let event: serde_json::Value = serde_json::from_str(body).ok()?;
    let notice = match event["detail-type"].as_str()? {
        "EC2 Spot Instance Interruption Warning" => "spot-interruption",
        "EC2 Instance Rebalance Recommendation" => "rebalance-recommendation",
        _ => return None,
    };
    Some((
        event["detail"]["instance-id"].as_str()?.to_string(),
        notice.to_string(),
    ))
}

impl SqsInterruptions {
    pub async fn connect(url: &str, region: &str) -> Self {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .load()
            .await;
        Self::with_client(Client::new(&sdk), url)
    }

    pub fn with_client(client: Client, url: &str) -> Self {
        SqsInterruptions {
            client,
            url: url.to_string(),
        }
    }
}

#[async_trait::async_trait]
impl InterruptionSource for SqsInterruptions {
    async fn receive(&self) -> Result<Vec<Notice>, String> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .map_err(|e| format!("sqs receive from {}: {}", self.url, DisplayErrorContext(e)))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let receipt = m.receipt_handle()?.to_string();
                let (instance_id, notice) = m.body().and_then(parse).unwrap_or_default();
                Some(Notice {
                    instance_id,
                    notice,
                    receipt,
                })
            })
            .collect())
    }

    async fn ack(&self, notices: &[Notice]) {
        for chunk in notices.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&n.receipt)
                        .build()
                        .ok()
                })
                .collect();
            if let Err(e) = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                tracing::warn!(queue = %self.url, error = %DisplayErrorContext(e), "could not acknowledge interruption notices");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventbridge_events_become_notices() {
        let spot = r#"{"version":"0","detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2",
            "detail":{"instance-id":"i-0abc","instance-action":"terminate"}}"#;
        assert_eq!(parse(spot), Some(("i-0abc".into(), "spot-interruption".into())));
        let rebalance =
            r#"{"detail-type":"EC2 Instance Rebalance Recommendation","detail":{"instance-id":"i-0def"}}"#;
        assert_eq!(
            parse(rebalance),
            Some(("i-0def".into(), "rebalance-recommendation".into()))
        );
        assert_eq!(
            parse(r#"{"detail-type":"EC2 Instance State-change Notification","detail":{}}"#),
            None
        );
        assert_eq!(parse("not json"), None);
    }
}
