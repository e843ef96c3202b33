//! The DynamoDB state store (`state.backend: dynamodb`), for `k3scale once`
//! run from a scheduled job or Lambda: one table with a string partition
//! key `pk` and a numeric sort key `sk` (deploy/terraform/aws creates it,
//! with TTL on the `ttl` attribute). Every write is a conditional write, so
//! two runs racing for the same value or lock cannot both win.
//!
//! Items: `value#<key>`/0 (value, version); `journal`/<id> (intent,
//! opened_at, `open` while unfinished); `event`/<id>; `counter#journal` and
//! `counter#event`/0 (atomic counters for ids); `lock#<name>`/0 (owner,
//! expires_ms).

use super::{Intent, JournalEntry, LockHolder, ScaleEvent, StateError, StateStore, StoredEvent, Versioned};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use k3scale_core::Time;
use std::collections::HashMap;
use std::time::Duration;

type Item = HashMap<String, AttributeValue>;

/// Closed journal entries and events expire (DynamoDB TTL) after this long.
const KEEP_HISTORY: Duration = Duration::from_secs(90 * 24 * 3600);

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n(item: &Item, key: &str) -> Option<u64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// Unix seconds at which DynamoDB may delete an item written at `now`.
fn ttl_after(now: Time, keep: Duration) -> AttributeValue {
    n((now.as_millis() / 1000) + keep.as_secs())
}

impl DynamoStore {
    /// A store on `table`, with credentials and region from the standard
    /// AWS chain (environment, profile, IMDS, ...); `endpoint` overrides the
    /// service URL (an emulator, a VPC endpoint).
    pub async fn connect(table: &str, endpoint: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(url) = endpoint {
            loader = loader.endpoint_url(url);
        }
        let config = loader.load().await;
        Self::with_client(Client::new(&config), table)
    }

    /// A store using a client built elsewhere (tests, custom credentials).
    pub fn with_client(client: Client, table: &str) -> Self {
        DynamoStore {
            client,
            table: table.to_string(),
        }
    }

    fn unavailable<E: std::error::Error + 'static, R: std::fmt::Debug>(
        &self,
        e: SdkError<E, R>,
    ) -> StateError {
        StateError::Unavailable {
            location: format!("dynamodb table {}", self.table),
            cause: DisplayErrorContext(e).to_string(),
        }
    }

    fn corrupt(&self, what: &str) -> StateError {
        StateError::Unavailable {
            location: format!("dynamodb table {}", self.table),
            cause: format!("malformed item: {what}"),
        }
    }

    fn key(pk: &str, sk: u64) -> Item {
        HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), n(sk))])
    }

    async fn read(&self, pk: &str, sk: u64) -> Result<Option<Item>, StateError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(out.item)
    }

    /// Lock `name` held by `owner` until `until`; DynamoDB removes a
    /// long-dead lock by itself a day later.
    fn lock_item(name: &str, owner: &str, until: Time) -> Item {
        let mut item = Self::key(&format!("lock#{name}"), 0);
        item.insert("owner".into(), s(owner));
        item.insert("expires_ms".into(), n(until.as_millis()));
        item.insert("ttl".into(), ttl_after(until, Duration::from_secs(24 * 3600)));
        item
    }

    /// The next id of a counter (1, 2, ...), atomically.
    async fn next_id(&self, counter: &str) -> Result<u64, StateError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&format!("counter#{counter}"), 0)))
            .update_expression("ADD #n :one")
            .expression_attribute_names("#n", "n")
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| self.unavailable(e))?;
        out.attributes
            .as_ref()
            .and_then(|a| get_n(a, "n"))
            .ok_or_else(|| self.corrupt("counter"))
    }
}

fn is_conditional<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

#[async_trait::async_trait]
impl StateStore for DynamoStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StateError> {
        let Some(item) = self.read(&format!("value#{key}"), 0).await? else {
            return Ok(None);
        };
        match (get_s(&item, "value"), get_n(&item, "version")) {
            (Some(value), Some(version)) => Ok(Some(Versioned {
                value: value.to_string(),
                version,
            })),
            _ => Err(self.corrupt(key)),
        }
    }

    async fn put(&self, key: &str, value: &str, expected: u64) -> Result<u64, StateError> {
        let mut item = Self::key(&format!("value#{key}"), 0);
        item.insert("value".into(), s(value));
        item.insert("version".into(), n(expected + 1));
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        put = if expected == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(expected))
        };
        match put.send().await {
            Ok(_) => Ok(expected + 1),
            Err(e) if is_conditional(&e) => {
                let found = self.get(key).await?.map_or(0, |v| v.version);
                Err(StateError::Conflict {
                    key: key.to_string(),
                    expected,
                    found,
                })
            }
            Err(e) => Err(self.unavailable(e)),
        }
    }

    async fn open(&self, intent: &Intent, now: Time) -> Result<u64, StateError> {
        let id = self.next_id("journal").await?;
        let mut item = Self::key("journal", id);
        let json = serde_json::to_string(intent).map_err(|e| self.corrupt(&e.to_string()))?;
        item.insert("intent".into(), s(&json));
        item.insert("opened_ms".into(), n(now.as_millis()));
        item.insert("open".into(), AttributeValue::Bool(true));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(id)
    }

    async fn update(&self, id: u64, detail: &serde_json::Value) -> Result<(), StateError> {
        let item = self
            .read("journal", id)
            .await?
            .ok_or_else(|| self.corrupt(&format!("journal entry {id} missing")))?;
        let mut intent: Intent = get_s(&item, "intent")
            .and_then(|t| serde_json::from_str(t).ok())
            .ok_or_else(|| self.corrupt(&format!("journal entry {id}")))?;
        intent.detail = detail.clone();
        let json = serde_json::to_string(&intent).map_err(|e| self.corrupt(&e.to_string()))?;
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key("journal", id)))
            .update_expression("SET intent = :intent")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":intent", s(&json))
            .send()
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(())
    }

    async fn close(&self, id: u64, outcome: &str, now: Time) -> Result<(), StateError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key("journal", id)))
            .update_expression("SET outcome = :outcome, closed_ms = :now, #ttl = :ttl REMOVE #open")
            // Closing twice changes nothing: only an open entry is closed.
            .condition_expression("attribute_exists(#open)")
            .expression_attribute_names("#open", "open")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":outcome", s(outcome))
            .expression_attribute_values(":now", n(now.as_millis()))
            .expression_attribute_values(":ttl", ttl_after(now, KEEP_HISTORY))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => Ok(()),
            Err(e) => Err(self.unavailable(e)),
        }
    }

    async fn unfinished(&self) -> Result<Vec<JournalEntry>, StateError> {
        let mut entries = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .filter_expression("attribute_exists(#open)")
                .expression_attribute_names("#open", "open")
                .expression_attribute_values(":pk", s("journal"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.unavailable(e))?;
            for item in out.items() {
                let id = get_n(item, "sk").ok_or_else(|| self.corrupt("journal id"))?;
                let intent = get_s(item, "intent")
                    .and_then(|t| serde_json::from_str(t).ok())
                    .ok_or_else(|| self.corrupt(&format!("journal entry {id}")))?;
                let opened_at = Time::from_millis(get_n(item, "opened_ms").unwrap_or(0));
                entries.push(JournalEntry {
                    id,
                    intent,
                    opened_at,
                });
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        entries.sort_by_key(|e| e.id);
        Ok(entries)
    }

    async fn push_event(&self, event: &ScaleEvent) -> Result<u64, StateError> {
        let id = self.next_id("event").await?;
        let mut item = Self::key("event", id);
        let json = serde_json::to_string(event).map_err(|e| self.corrupt(&e.to_string()))?;
        item.insert("event".into(), s(&json));
        item.insert("ttl".into(), ttl_after(event.at, KEEP_HISTORY));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(id)
    }

    async fn events(&self, before: Option<u64>, limit: usize) -> Result<Vec<StoredEvent>, StateError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk < :before")
            .expression_attribute_values(":pk", s("event"))
            .expression_attribute_values(":before", n(before.unwrap_or(u64::MAX / 2)))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| self.unavailable(e))?;
        out.items()
            .iter()
            .map(|item| {
                let id = get_n(item, "sk").ok_or_else(|| self.corrupt("event id"))?;
                let event = get_s(item, "event")
                    .and_then(|t| serde_json::from_str(t).ok())
                    .ok_or_else(|| self.corrupt(&format!("event {id}")))?;
                Ok(StoredEvent { id, event })
            })
            .collect()
    }

    async fn lock(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<Result<(), LockHolder>, StateError> {
        let item = Self::lock_item(name, owner, now + ttl);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // Taken only if free, expired, or already ours.
            .condition_expression("attribute_not_exists(pk) OR expires_ms <= :now OR #owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":now", n(now.as_millis()))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(e) if is_conditional(&e) => {
                let holder = self.read(&format!("lock#{name}"), 0).await?;
                let holder = holder
                    .as_ref()
                    .and_then(|h| Some((get_s(h, "owner")?, get_n(h, "expires_ms")?)));
                match holder {
                    Some((owner, expires)) => Ok(Err(LockHolder {
                        owner: owner.to_string(),
                        expires_at: Time::from_millis(expires),
                    })),
                    // Released between our write and our read: try again.
                    None => self.lock(name, owner, ttl, now).await,
                }
            }
            Err(e) => Err(self.unavailable(e)),
        }
    }

    async fn take_over(
        &self,
        name: &str,
        dead_owner: &str,
        owner: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<bool, StateError> {
        let item = Self::lock_item(name, owner, now + ttl);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("#owner = :dead")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":dead", s(dead_owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conditional(&e) => Ok(false),
            Err(e) => Err(self.unavailable(e)),
        }
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<bool, StateError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&format!("lock#{name}"), 0)))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conditional(&e) => Ok(false),
            Err(e) => Err(self.unavailable(e)),
        }
    }
}
