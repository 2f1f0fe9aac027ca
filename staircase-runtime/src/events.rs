//! Kubernetes Events about the reconciled objects, published from run reports.
//!
//! Every run that changes something leaves a `Normal` Event on the object (reason = the step,
//! note = the step's description), every failed run and every broken rule a `Warning`, so
//! `kubectl describe foo x` tells the object's story. A run that found a [fight](crate::fight)
//! adds a `Warning` with reason `Fighting`, the same note on every round. Status writes that keep
//! failing leave one
//! `StatusWriteFailing` Warning, at the
//! [`STATUS_FAILURES_REPORTED`](crate::status::STATUS_FAILURES_REPORTED)th failure in a row.
//! Events go through kube-runtime's [`Recorder`], which aggregates repeats of the same event
//! into one Event with a growing `series.count`; on top of that a per-object token bucket (client-go's spam filter: a burst of
//! [`BURST`] Events, then one per [`REFILL`]) bounds the API writes a hot loop can cause. Events
//! are published from a background task fed by a bounded queue, so a slow API server never slows
//! runs down: when the queue is full, Events are dropped (and counted in the metrics).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;

use crate::run::{RunEnd, RunReport};

/// Events one object may publish at once before the filter holds them back.
pub const BURST: u32 = 25;
/// After the burst, one more Event per object per this interval.
pub const REFILL: Duration = Duration::from_secs(300);
/// Events waiting to be published; beyond this they are dropped rather than slowing runs down.
const QUEUE: usize = 1024;
/// The API server rejects Event notes over 1 kB.
const MAX_NOTE: usize = 1024;

/// The Events a run report calls for, in order: one per broken rule, then one for how the run
/// ended (modification, finalizer change or failure), then a `Fighting` Warning when the
/// modification was a round of a [fight](crate::fight). Converged, waiting and done runs publish
/// nothing: they change nothing, and a waiting object would publish on every look.
pub fn events_of(report: &RunReport) -> Vec<Event> {
    let ev = |type_, reason: &str, action: &str, note: String| Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(note)),
        action: action.to_string(),
        secondary: None,
    };
    let mut out: Vec<Event> = report
        .steps
        .iter()
        .filter_map(|s| s.violation.as_ref().map(|v| (s.step, v)))
        .map(|(step, v)| ev(EventType::Warning, step, "RuleViolation", v.to_string()))
        .collect();
    match &report.end {
        RunEnd::Modified { step, description } => {
            out.push(ev(
                EventType::Normal,
                step,
                "Modified",
                description.to_string(),
            ));
        }
        RunEnd::FinalizerAdded => out.push(ev(
            EventType::Normal,
            "FinalizerAdded",
            "Modified",
            "added the finalizer that guards cleanup".into(),
        )),
        RunEnd::FinalizerRemoved => out.push(ev(
            EventType::Normal,
            "FinalizerRemoved",
            "Modified",
            "cleanup finished, finalizer removed".into(),
        )),
        RunEnd::Failed { step, error } => {
            out.push(ev(
                EventType::Warning,
                step.unwrap_or("RunFailed"),
                "Failed",
                error.to_string(),
            ));
        }
        // The same note on every paused run, so repeats aggregate.
        RunEnd::Paused { step, reason, .. } if report.deleting => out.push(ev(
            EventType::Warning,
            "Paused",
            "Paused",
            format!("deletion waits: cleanup is paused before {step} ({reason})"),
        )),
        RunEnd::Paused { step, reason, .. } => out.push(ev(
            EventType::Normal,
            "Paused",
            "Paused",
            format!("paused before {step} ({reason})"),
        )),
        RunEnd::Converged | RunEnd::Waiting { .. } | RunEnd::Done { .. } | RunEnd::SkippedStale => {
        }
        // This replica may no longer act: not even an Event.
        RunEnd::Cancelled { .. } => return Vec::new(),
    }
    // The same note on every round (it names no count), so the recorder aggregates them.
    if let Some(fight) = &report.fight {
        out.push(ev(
            EventType::Warning,
            "Fighting",
            "Fighting",
            fight.to_string(),
        ));
    }
    if let Some(error) = &report.status_error
        && report.status_failures == crate::status::STATUS_FAILURES_REPORTED
    {
        out.push(ev(
            EventType::Warning,
            "StatusWriteFailing",
            "WriteStatus",
            format!(
                "{} status writes in a row failed (retried with backoff): {error}",
                report.status_failures
            ),
        ));
    }
    out
}

/// The Warning Event on an object the operator's watch left out because it does not decode.
pub(crate) fn undecodable(error: &str) -> Event {
    Event {
        type_: EventType::Warning,
        reason: "Undecodable".into(),
        note: Some(truncate(format!(
            "the operator cannot read this object and skips it: {error}"
        ))),
        action: "Decode".into(),
        secondary: None,
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_NOTE {
        let mut end = MAX_NOTE - 3;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

/// client-go's `EventSourceObjectSpamFilter`: a token bucket per object.
#[derive(Debug)]
struct SpamFilter {
    buckets: HashMap<String, (f64, Instant)>,
}

impl SpamFilter {
    fn allow(&mut self, key: &str, now: Instant) -> bool {
        let (tokens, last) = self
            .buckets
            .entry(key.to_string())
            .or_insert((f64::from(BURST), now));
        let refilled = now.duration_since(*last).as_secs_f64() / REFILL.as_secs_f64();
        *tokens = (*tokens + refilled).min(f64::from(BURST));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Buckets that have refilled completely hold no information: forget them.
    fn gc(&mut self, now: Instant) {
        let full = REFILL.mul_f64(f64::from(BURST));
        self.buckets
            .retain(|_, (_, last)| now.duration_since(*last) < full);
    }
}

type Item = (ObjectReference, Event);

/// Publishes the Events of run reports in the background. Cheap to clone; the publishing task
/// ends after [`EventPublisher::close`] once the queue is drained.
#[derive(Clone)]
pub struct EventPublisher {
    tx: Arc<Mutex<Option<mpsc::Sender<Item>>>>,
    on_drop: Arc<dyn Fn() + Send + Sync>,
}

impl EventPublisher {
    /// Starts the publishing task (needs a tokio runtime). `reporter` names the operator (the
    /// Events' `reportingController`) and the replica (`reportingInstance`). `on_drop` is called
    /// for every Event not published (spam filter or full queue).
    pub fn spawn(
        client: kube::Client,
        reporter: Reporter,
        on_drop: impl Fn() + Send + Sync + 'static,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Item>(QUEUE);
        let on_drop: Arc<dyn Fn() + Send + Sync> = Arc::new(on_drop);
        let dropped = on_drop.clone();
        let task = tokio::spawn(async move {
            let recorder = Recorder::new(client, reporter);
            let mut filter = SpamFilter {
                buckets: HashMap::new(),
            };
            while let Some((reference, event)) = rx.recv().await {
                let now = Instant::now();
                filter.gc(now);
                let key = format!(
                    "{}/{}/{}",
                    reference.namespace.as_deref().unwrap_or_default(),
                    reference.name.as_deref().unwrap_or_default(),
                    reference.uid.as_deref().unwrap_or_default()
                );
                if !filter.allow(&key, now) {
                    dropped();
                    continue;
                }
                // An Event is a courtesy: failing to publish one must never affect a run.
                if let Err(e) = recorder.publish(&event, &reference).await {
                    tracing::debug!(reason = event.reason, "publishing an Event failed: {e}");
                }
            }
        });
        let publisher = EventPublisher {
            tx: Arc::new(Mutex::new(Some(tx))),
            on_drop,
        };
        (publisher, task)
    }

    /// Queues the Events of `report` (see [`events_of`]); never waits.
    pub fn observe(&self, report: &RunReport) {
        let mut reference = None;
        for event in events_of(report) {
            // Without the resourceVersion: repeats of one Event about one object (a wait, a
            // pause, a fight's rounds) aggregate across the versions each run saw.
            let r = reference
                .get_or_insert_with(|| ObjectReference {
                    resource_version: None,
                    ..report.object_ref()
                })
                .clone();
            self.queue(r, event);
        }
    }

    /// Queues one Event about `reference`; never waits.
    pub(crate) fn queue(&self, reference: ObjectReference, event: Event) {
        let guard = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = guard.as_ref()
            && tx.try_send((reference, event)).is_err()
        {
            (self.on_drop)();
        }
    }

    /// Stops accepting Events; the task publishes what is queued, then ends.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spam_filter_allows_a_burst_then_one_per_refill() {
        let mut f = SpamFilter {
            buckets: HashMap::new(),
        };
        let t0 = Instant::now();
        let allowed = (0..100).filter(|_| f.allow("ns/a/uid", t0)).count();
        assert_eq!(allowed, BURST as usize);
        assert!(f.allow("ns/b/uid", t0), "buckets are per object");
        assert!(!f.allow("ns/a/uid", t0 + REFILL / 2));
        assert!(f.allow("ns/a/uid", t0 + REFILL));
    }
}
