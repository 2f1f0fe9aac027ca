//! Calls to services outside Kubernetes, made safe to repeat.
//!
//! A step that orders something from a REST API cannot make the order and record it on the
//! resource in one atomic move: the operator may crash in between. Split it into two steps, each
//! with one modification:
//!
//! 1. **"If the external object does not exist, create it, keyed."** Look it up by an
//!    [`IdempotencyKey`] derived from the resource (its uid and the step's name); if it is
//!    missing, create it, sending the key along ([`IdempotencyKey::HEADER`]) so the service can
//!    also refuse a duplicate. The successful call is this run's one modification:
//!    [`call`] records it in the runtime's write counter, like a write to the API server.
//! 2. **"If it exists and the resource does not record it, record it."** Look it up by the same
//!    key and write its id into the resource (status or an annotation): one Kubernetes write.
//!
//! A crash after step 1 leaves an external object the resource does not mention yet; the next
//! run's step 1 finds it by key and does nothing, and step 2 records it. A crash during step 1
//! (the call may or may not have arrived) is covered the same way, and by the key if the service
//! honours it. Nothing ever depends on having remembered anything in memory.
//!
//! A call that failed may still land after the next run looked for it (a slow service behind a
//! client timeout): [`call`] therefore holds the object back for
//! [`external_call_window`](crate::OperatorConfig::external_call_window) after a failure, and a
//! replica that takes over leadership from one that stopped renewing waits
//! [`LeaderElection::takeover_delay`](crate::LeaderElection::takeover_delay) before it runs
//! anything. A call landing later than that is the service's to refuse by the key.
//!
//! The two steps' bodies (each marked `#[step]` in an operator; the guide's *external effects*
//! page has the whole operator):
//!
//! ```
//! # use staircase_runtime as staircase;
//! use staircase::external::{self, IdempotencyKey};
//! use staircase::{Context, Outcome, Result};
//! # use k8s_openapi::api::core::v1::ConfigMap as Order;
//! # pub struct Shop;
//! # pub struct Placed { id: String }
//! # impl Shop {
//! #     async fn find(&self, _key: &IdempotencyKey) -> anyhow::Result<Option<Placed>> { Ok(None) }
//! #     async fn create(&self, _key: &IdempotencyKey, _item: &str) -> anyhow::Result<Placed> {
//! #         Ok(Placed { id: "order-1".into() })
//! #     }
//! # }
//! # fn recorded_id(_: &Order) -> Option<&str> { None }
//!
//! async fn place_order(order: &Order, ctx: &Context<Shop>) -> Result<Outcome> {
//!     let key = IdempotencyKey::for_step(order, "place_order")?;
//!     if ctx.state().find(&key).await?.is_some() {
//!         return Ok(Outcome::unchanged());
//!     }
//!     let placed = external::call(ctx, &key, "POST /orders", ctx.state().create(&key, "beans")).await?;
//!     Ok(Outcome::modified(format!("ordered as {}", placed.id)))
//! }
//!
//! async fn record_order(order: &Order, ctx: &Context<Shop>) -> Result<Outcome> {
//!     let key = IdempotencyKey::for_step(order, "place_order")?; // the key of step 1
//!     let Some(placed) = ctx.state().find(&key).await? else {
//!         return Ok(Outcome::wait("the shop does not know the order yet"));
//!     };
//!     if recorded_id(order) == Some(placed.id.as_str()) {
//!         return Ok(Outcome::unchanged());
//!     }
//!     // write placed.id into the resource's status: one write
//!     Ok(Outcome::modified(format!("recorded order {}", placed.id)))
//! }
//! # let _ = (place_order, record_order);
//! ```

use std::fmt;

use http::{HeaderName, HeaderValue};
use kube::Resource;

use crate::{Context, Error, Result};

/// A key that names one external effect of one resource, stable across runs, crashes and
/// operator restarts: the resource's uid and the name of the step that causes the effect.
///
/// The uid (not the name) makes a deleted and re-created resource of the same name a new
/// customer, as it should be; the step name lets one resource cause several distinct effects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The HTTP header conventionally carrying the key (IETF `Idempotency-Key`).
    pub const HEADER: &'static str = "Idempotency-Key";

    /// The key of effect `step` of `resource`. Fails (permanently) for an object without a uid,
    /// which only happens for objects built in memory rather than read from the API server.
    pub fn for_step<K: Resource>(resource: &K, step: &str) -> Result<Self> {
        let uid = resource.meta().uid.as_deref().ok_or_else(|| {
            Error::permanent(anyhow::anyhow!(
                "an idempotency key needs the resource's uid; this object was not read from the API server"
            ))
        })?;
        Ok(Self::from_parts(&[uid, step]))
    }

    /// A key from parts of your own (for example the uid plus a generation, to make one
    /// external effect per spec change). Parts are joined with `.`; characters outside
    /// `[A-Za-z0-9_-]` become `_` so the key is valid in headers, URLs and most services' ids.
    pub fn from_parts(parts: &[&str]) -> Self {
        let cleaned: Vec<String> = parts
            .iter()
            .map(|p| {
                p.chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect()
            })
            .collect();
        IdempotencyKey(cleaned.join("."))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `Idempotency-Key` header carrying this key.
    pub fn header(&self) -> (HeaderName, HeaderValue) {
        (
            HeaderName::from_static("idempotency-key"),
            HeaderValue::from_str(&self.0).expect("keys hold only header-safe characters"),
        )
    }

    /// Adds the header to an HTTP request being built.
    pub fn attach(&self, request: http::request::Builder) -> http::request::Builder {
        let (name, value) = self.header();
        request.header(name, value)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How an explained run's error starts when a step would call an external service.
pub(crate) const EXPLAIN_STOP: &str = "would call ";

/// Runs an external call that *modifies* something outside Kubernetes and, when it succeeds,
/// counts it as the step's one modification (`EXTERNAL <description> [key]` in the run's writes).
///
/// A failed call is not counted: the step returns the error and the run is retried, where the
/// existence check by key decides again. A failed call may still land (a client timeout while
/// the service works on), after the next run's lookup: so the object does not run again until
/// [`OperatorConfig::external_call_window`](crate::OperatorConfig::external_call_window) (30 s
/// by default) has passed since the failure. What remains is the service's part: a call that
/// lands later than that is a duplicate unless the service honours the key. Use it only for
/// the modifying call; lookups are plain reads and need no wrapper.
///
/// When the run [explains](crate::explain) an object or [replays](crate::replay) a recorded
/// run, the call is not made: the step fails with an error that names it, and the explanation
/// (or the replay) reports it as the step's modification.
pub async fn call<S, T, E>(
    ctx: &Context<S>,
    key: &IdempotencyKey,
    description: &str,
    call: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T>
where
    E: Into<Error>,
{
    if let Some(mode) = ctx.dry_mode() {
        // Explaining or replaying changes nothing: the call is named, never made.
        return Err(Error::msg(format!(
            "{EXPLAIN_STOP}{description} [{key}]; {mode} makes no call outside Kubernetes, so \
             what the later steps would do is not known"
        )));
    }
    match call.await {
        Ok(value) => {
            ctx.record_external(format!("{description} [{key}]"));
            Ok(value)
        }
        Err(e) => {
            ctx.record_external_unknown(format!("{description} [{key}]"));
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn the_key_is_the_uid_and_step_and_safe_in_a_header() {
        let mut cm = ConfigMap::default();
        assert!(IdempotencyKey::for_step(&cm, "place_order").is_err());
        cm.metadata.uid = Some("0b6f-11".into());
        let key = IdempotencyKey::for_step(&cm, "place_order").unwrap();
        assert_eq!(key.as_str(), "0b6f-11.place_order");
        assert_eq!(
            key,
            IdempotencyKey::for_step(&cm.clone(), "place_order").unwrap()
        );
        assert_ne!(key, IdempotencyKey::for_step(&cm, "refund").unwrap());
        assert_eq!(
            IdempotencyKey::from_parts(&["a b", "ü/1"]).as_str(),
            "a_b.__1"
        );
        assert_eq!(key.header().1, "0b6f-11.place_order");
    }
}
