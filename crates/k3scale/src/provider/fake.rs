//! A recording fake provider for controller tests: an in-memory inventory,
//! every call recorded, failures injectable per call.

use super::{Machine, NodeProvider, ProviderError, unix_now};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Create(String),
    Delete(String),
    List,
}

#[derive(Debug, Default)]
pub struct FakeProvider {
    pool: String,
    machines: Mutex<BTreeMap<String, Machine>>,
    calls: Mutex<Vec<Call>>,
    /// Errors returned by the next create calls, in order.
    create_failures: Mutex<VecDeque<ProviderError>>,
    /// Errors returned by the next delete calls, in order.
    delete_failures: Mutex<VecDeque<ProviderError>>,
}

impl FakeProvider {
    pub fn new(pool: &str) -> Self {
        FakeProvider {
            pool: pool.to_string(),
            ..Default::default()
        }
    }

    pub fn fail_next_create(&self, error: ProviderError) {
        self.create_failures.lock().expect("fake lock").push_back(error);
    }

    pub fn fail_next_delete(&self, error: ProviderError) {
        self.delete_failures.lock().expect("fake lock").push_back(error);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("fake lock").clone()
    }

    pub fn names(&self) -> Vec<String> {
        self.machines.lock().expect("fake lock").keys().cloned().collect()
    }

    fn record(&self, call: Call) {
        self.calls.lock().expect("fake lock").push(call);
    }
}

#[async_trait::async_trait]
impl NodeProvider for FakeProvider {
    fn kind(&self) -> &'static str {
        "fake"
    }

    async fn create(&self, name: &str) -> Result<Machine, ProviderError> {
        self.record(Call::Create(name.to_string()));
        if let Some(e) = self.create_failures.lock().expect("fake lock").pop_front() {
            return Err(e);
        }
        let mut machines = self.machines.lock().expect("fake lock");
        let m = machines.entry(name.to_string()).or_insert_with(|| Machine {
            name: name.to_string(),
            pool: self.pool.clone(),
            provider_id: format!("fake://{name}"),
            created_at: unix_now(),
            running: true,
        });
        Ok(m.clone())
    }

    async fn delete(&self, name: &str) -> Result<(), ProviderError> {
        self.record(Call::Delete(name.to_string()));
        if let Some(e) = self.delete_failures.lock().expect("fake lock").pop_front() {
            return Err(e);
        }
        self.machines.lock().expect("fake lock").remove(name);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Machine>, ProviderError> {
        self.record(Call::List);
        Ok(self
            .machines
            .lock()
            .expect("fake lock")
            .values()
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::create_many;

    #[tokio::test]
    async fn records_calls_and_injects_failures() {
        let fake = FakeProvider::new("workers");
        fake.fail_next_create(ProviderError::InsufficientCapacity("no spot".into()));
        let names: Vec<String> = ["workers-a", "workers-b", "workers-c"].map(String::from).to_vec();
        let results = create_many(&fake, &names, 2).await;
        assert_eq!(
            results[0],
            Err(ProviderError::InsufficientCapacity("no spot".into()))
        );
        assert!(results[1].is_ok() && results[2].is_ok());
        assert_eq!(fake.names(), vec!["workers-b", "workers-c"]);
        fake.delete("workers-b").await.unwrap();
        fake.delete("workers-b").await.unwrap(); // gone already: fine
        assert_eq!(fake.list().await.unwrap().len(), 1);
        assert_eq!(fake.calls().len(), 6);
    }
}
