//! The resync audit: once per resync period, one paginated metadata-only LIST of the resource,
//! compared with the watch cache. An object the API server has at a newer version than the cache
//! (or no longer has) is marked, and its next run re-reads it: a watch that lost an edit is
//! caught within two resync periods, at the cost of one LIST for all objects instead of a read
//! per object.

use std::collections::HashSet;

use kube::Api;
use kube::api::ListParams;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::memory::{Memory, ObjectKey, rv_number};
use crate::operator::Watchable;

/// Objects in a page of the LIST: the API server's default maximum is far above it, and a page
/// this size is a few hundred KB of metadata.
const PAGE: u32 = 500;

/// What one audit found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Found {
    /// Objects the API server listed.
    pub(crate) listed: usize,
    /// Objects marked for a re-read.
    pub(crate) behind: usize,
}

/// Lists `api`'s objects (matching `labels`), compares each with `store` and marks in `memory`
/// those the cache holds at an older version, or holds though the API server has them no more.
pub(crate) async fn audit<K: Watchable>(
    api: &Api<K>,
    labels: Option<&str>,
    store: &Store<K>,
    memory: &Memory,
) -> kube::Result<Found> {
    let mut lp = ListParams::default().limit(PAGE);
    if let Some(sel) = labels {
        lp = lp.labels(sel);
    }
    let mut found = Found::default();
    let mut listed: HashSet<String> = HashSet::new();
    loop {
        let page = api.list_metadata(&lp).await?;
        for item in &page.items {
            let meta = &item.metadata;
            let Some(name) = meta.name.as_deref() else {
                continue;
            };
            let key = ObjectKey {
                namespace: meta.namespace.as_deref(),
                name,
            };
            let r = match key.namespace {
                Some(ns) => ObjectRef::new(name).within(ns),
                None => ObjectRef::new(name),
            };
            let cached = store
                .get(&r)
                .and_then(|o| rv_number(o.meta().resource_version.as_deref()));
            let server = rv_number(meta.resource_version.as_deref());
            if let (Some(c), Some(s)) = (cached, server)
                && s > c
                && memory.suspect(key)
            {
                found.behind += 1;
            }
            listed.insert(key.joined());
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => break,
        }
    }
    found.listed = listed.len();
    // Cached but not listed: deleted, and the watch lost the deletion (or created after the
    // LIST was served: one needless re-read).
    for obj in store.state() {
        let key = ObjectKey::of(obj.meta());
        if !listed.contains(&key.joined()) && memory.suspect(key) {
            found.behind += 1;
        }
    }
    Ok(found)
}
