//! The split done by the API server: the primary resource listed and watched with a
//! `shardSelector` (KEP-5866) naming this replica's slots, where the server honours it.

use std::sync::{Arc, RwLock};
use std::task::{Context as TaskContext, Poll};

use http::{Request, Response};
use kube::client::Body;

use super::hash::{SLOTS, ranges};
use crate::writes::SendVia;

/// The `shardSelector` of these slots (`None` of none: then a range no real uid hashes to, as
/// a watch must select something).
pub(crate) fn selector(slots: &[usize]) -> String {
    let mut terms = Vec::new();
    for run in ranges(slots.iter().copied())
        .split(',')
        .filter(|r| !r.is_empty())
    {
        let (a, b): (u128, u128) = match run.split_once('-') {
            Some((a, b)) => (a.parse().expect("a slot"), b.parse().expect("a slot")),
            None => {
                let a = run.parse().expect("a slot");
                (a, a)
            }
        };
        terms.push(format!(
            "shardRange(object.metadata.uid, '0x{:016x}', '0x{:016x}')",
            a << 56,
            (b + 1) << 56
        ));
    }
    if terms.is_empty() {
        terms.push(
            "shardRange(object.metadata.uid, '0x0000000000000000', '0x0000000000000001')"
                .to_string(),
        );
    }
    terms.join(" || ")
}

/// The selector of every slot: what the probe asks for.
fn everything() -> String {
    selector(&(0..SLOTS).collect::<Vec<_>>())
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether the API server filters lists of the collection at `path` by shard: a list asked
/// with a selector answers with `metadata.shardInfo` (a server without the feature ignores the
/// parameter and leaves it out).
pub(crate) async fn supported(client: &kube::Client, path: &str) -> bool {
    let uri = format!("{path}?limit=1&shardSelector={}", encode(&everything()));
    let Ok(req) = Request::get(uri).body(Vec::new()) else {
        return false;
    };
    match client.request::<serde_json::Value>(req).await {
        Ok(list) => list["metadata"].get("shardInfo").is_some(),
        Err(e) => {
            tracing::debug!("sharding: probing for server-side shard selectors failed: {e}");
            false
        }
    }
}

/// Adds the current `shardSelector` to every list and watch of the collection at `path`.
#[derive(Clone)]
pub(crate) struct ShardFilter {
    pub(crate) inner: SendVia,
    pub(crate) path: Arc<str>,
    pub(crate) selector: Arc<RwLock<String>>,
}

impl tower::Service<Request<Body>> for ShardFilter {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = <SendVia as tower::Service<Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        if req.method() == http::Method::GET && req.uri().path() == &*self.path {
            let selector = self
                .selector
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let uri = req.uri().to_string();
            let sep = if uri.contains('?') { '&' } else { '?' };
            if let Ok(u) = format!("{uri}{sep}shardSelector={}", encode(&selector)).parse() {
                *req.uri_mut() = u;
            }
        }
        self.inner.call(req)
    }
}

/// The primary watch with the split done by the API server: restarted with a new selector each
/// time the gate's selection grows (the reflector takes the restart's list in as a relist), and
/// telling the gate which slots its cache holds once each list is in.
pub(crate) fn watch<K>(
    gate: Arc<super::Gate>,
    api: kube::Api<K>,
    config: kube::runtime::watcher::Config,
    selector_cell: Arc<RwLock<String>>,
) -> impl futures::Stream<Item = kube::runtime::watcher::Result<kube::runtime::watcher::Event<K>>>
+ Send
+ 'static
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    use futures::StreamExt;
    use kube::runtime::watcher::{self, Event};
    type Events<K> = futures::stream::BoxStream<'static, watcher::Result<Event<K>>>;
    let reselects = gate.reselects();
    futures::stream::unfold(
        (None::<(Events<K>, Vec<usize>)>, reselects),
        move |(mut current, mut reselects)| {
            let (gate, api, config, cell) = (
                gate.clone(),
                api.clone(),
                config.clone(),
                selector_cell.clone(),
            );
            async move {
                loop {
                    let (events, slots) = match &mut current {
                        Some(c) => c,
                        None => {
                            reselects.borrow_and_update();
                            let slots = gate.selection();
                            *cell.write().unwrap_or_else(|e| e.into_inner()) = selector(&slots);
                            current.insert((
                                watcher::watcher(api.clone(), config.clone()).boxed(),
                                slots,
                            ))
                        }
                    };
                    tokio::select! {
                        ev = events.next() => {
                            let ev = ev?;
                            if matches!(ev, Ok(Event::InitDone)) {
                                gate.synced(slots);
                            }
                            return Some((ev, (current, reselects)));
                        }
                        changed = reselects.changed() => {
                            changed.ok()?;
                            current = None;
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_name_the_slot_ranges() {
        assert_eq!(
            selector(&[0, 1, 255]),
            "shardRange(object.metadata.uid, '0x0000000000000000', '0x0200000000000000') || \
             shardRange(object.metadata.uid, '0xff00000000000000', '0x10000000000000000')"
        );
        assert_eq!(
            everything(),
            "shardRange(object.metadata.uid, '0x0000000000000000', '0x10000000000000000')"
        );
        assert!(selector(&[]).contains("'0x0000000000000001'"));
        assert_eq!(encode("a b'()"), "a%20b%27%28%29");
    }
}
