//! A simulated external service (think: an order API outside Kubernetes) for scenarios whose
//! steps have side effects beyond the cluster. It counts every call, so the explorer can prove
//! that no effect happened twice or went missing, and it obeys the explorer's crash points like
//! a Kubernetes write does. (An operator with a REST client of its own uses
//! [`Explorer::with_http_service`](super::Explorer::with_http_service) instead.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::gate::{Gate, GateWrite, Verdict};

/// An error from the simulated service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalError {
    /// The call reached the service and took effect, but the answer was lost.
    #[error("{0}: the connection broke before the answer arrived")]
    Lost(String),
    /// No record with this id.
    #[error("{0} not found")]
    NotFound(String),
}

/// One record held by the service.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The id the service assigned (`<service>-1`, `<service>-2`, … in creation order).
    pub id: String,
    /// The caller's idempotency key, used for the existence check.
    pub key: String,
    /// The payload.
    pub value: Value,
}

/// Call counts of an [`ExternalService`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    /// Look-ups (`find`, `get`): harmless to repeat.
    pub reads: u64,
    /// Creates that took effect.
    pub creates: u64,
    /// Updates that took effect.
    pub updates: u64,
    /// Deletes that took effect.
    pub deletes: u64,
}

impl Calls {
    /// Calls with an effect.
    pub fn effects(&self) -> u64 {
        self.creates + self.updates + self.deletes
    }
}

#[derive(Default)]
struct Inner {
    records: Vec<Record>,
    next_id: u64,
    calls: Calls,
    creates_by_key: BTreeMap<String, u64>,
}

/// A simulated external service: a non-idempotent `create` (every call makes a new record with a
/// fresh id, as most real HTTP APIs do), an existence check by idempotency key (`find`), and
/// `update` and `delete` by id. The explorer counts each effect under the record's key and
/// compares the counts with the reference run: a create or delete more is a duplicate, any
/// effect fewer is a lost effect (an update more is not: setting a value twice is harmless).
///
/// The correct pattern (the "two-step" pattern of staircase) is: step 1 "if `find(key)` is
/// empty, `create(key, ..)` and `ctx.record_external(..)`", step 2 "if the resource does not
/// record the id yet, record it". A step that creates without the check creates twice after a
/// crash, and the explorer reports the duplicate.
///
/// Clone it into your operator's state; the explorer gives each case a fresh one. Outside the
/// explorer, [`ExternalService::new`] makes a standalone instance (for unit tests of steps).
#[derive(Clone)]
pub struct ExternalService {
    name: Arc<str>,
    inner: Arc<Mutex<Inner>>,
    gate: Option<Arc<Gate>>,
}

impl std::fmt::Debug for ExternalService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalService")
            .field("name", &self.name)
            .field("calls", &self.calls())
            .finish()
    }
}

impl ExternalService {
    /// A standalone service named `name` (the prefix of its record ids).
    pub fn new(name: &str) -> Self {
        ExternalService {
            name: name.into(),
            inner: Arc::default(),
            gate: None,
        }
    }

    pub(crate) fn gated(name: &str, gate: Arc<Gate>) -> Self {
        ExternalService {
            gate: Some(gate),
            ..Self::new(name)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The existence check: the record created with idempotency key `key`, if any.
    pub async fn find(&self, key: &str) -> Option<Record> {
        let mut i = self.lock();
        i.calls.reads += 1;
        i.records.iter().find(|r| r.key == key).cloned()
    }

    /// The record with this id.
    pub async fn get(&self, id: &str) -> Option<Record> {
        let mut i = self.lock();
        i.calls.reads += 1;
        i.records.iter().find(|r| r.id == id).cloned()
    }

    /// Creates a record and returns its id. Not idempotent: calling it twice with the same key
    /// makes two records (the duplicate effect the explorer hunts for).
    pub async fn create(&self, key: &str, value: Value) -> Result<String, ExternalError> {
        let id = {
            let mut i = self.lock();
            i.next_id += 1;
            let id = format!("{}-{}", self.name, i.next_id);
            i.records.push(Record {
                id: id.clone(),
                key: key.to_string(),
                value,
            });
            i.calls.creates += 1;
            *i.creates_by_key.entry(key.to_string()).or_default() += 1;
            id
        };
        self.committed("create", key).await?;
        Ok(id)
    }

    /// Replaces the payload of the record with this id.
    pub async fn update(&self, id: &str, value: Value) -> Result<(), ExternalError> {
        let key = {
            let mut i = self.lock();
            let Some(r) = i.records.iter_mut().find(|r| r.id == id) else {
                return Err(ExternalError::NotFound(id.to_string()));
            };
            r.value = value;
            let key = r.key.clone();
            i.calls.updates += 1;
            key
        };
        self.committed("update", &key).await
    }

    /// Deletes the record with this id.
    pub async fn delete(&self, id: &str) -> Result<(), ExternalError> {
        let key = {
            let mut i = self.lock();
            let Some(at) = i.records.iter().position(|r| r.id == id) else {
                return Err(ExternalError::NotFound(id.to_string()));
            };
            i.calls.deletes += 1;
            i.records.remove(at).key
        };
        self.committed("delete", &key).await
    }

    /// Tells the explorer an effect happened; it may crash the operator here or lose the answer.
    async fn committed(&self, op: &str, key: &str) -> Result<(), ExternalError> {
        let Some(gate) = &self.gate else {
            return Ok(());
        };
        match gate.commit(GateWrite::external(op, &self.name, key)) {
            Verdict::Deliver => Ok(()),
            Verdict::Crash => futures::future::pending().await,
            Verdict::Lose => Err(ExternalError::Lost(format!("{}/{op} {key}", self.name))),
        }
    }

    /// Call counts so far.
    pub fn calls(&self) -> Calls {
        self.lock().calls
    }

    /// The records held now, in creation order.
    pub fn records(&self) -> Vec<Record> {
        self.lock().records.clone()
    }

    /// How many creates each idempotency key got (more than one is a duplicate effect).
    pub fn creates_by_key(&self) -> BTreeMap<String, u64> {
        self.lock().creates_by_key.clone()
    }
}
