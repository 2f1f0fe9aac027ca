//! Whether the API server serves streaming lists (`sendInitialEvents`, Kubernetes' `WatchList`
//! feature), asked once per leadership term for [`InitialList::Auto`].

use std::time::Duration;

use futures::StreamExt;
use kube::Api;
use kube::api::{WatchEvent, WatchParams};
use kube::runtime::watcher;

use crate::config::InitialList;
use crate::operator::Watchable;

/// A label no object carries: the probe's initial events are empty, so its answer is one
/// bookmark, whatever the number of objects.
const NOTHING: &str = "staircase.rs/streaming-list-probe=none";

/// How long the probe waits for the bookmark that ends the initial events. A server that
/// ignores `sendInitialEvents` sends nothing and closes the watch at its timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a watch of `api` with `sendInitialEvents=true` ends its initial events with the
/// `k8s.io/initial-events-end` bookmark. Any error (refused by validation, the gate off, an old
/// server) or silence means no.
pub(crate) async fn served<K: Watchable>(api: &Api<K>) -> bool {
    let wp = WatchParams::streaming_lists()
        .labels(NOTHING)
        .timeout(PROBE_TIMEOUT.as_secs() as u32);
    let probe = async {
        let stream = match api.watch(&wp, "0").await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("streaming lists not served: {e}");
                return false;
            }
        };
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(WatchEvent::Bookmark(bm)) => {
                    if bm
                        .metadata
                        .annotations
                        .contains_key("k8s.io/initial-events-end")
                    {
                        return true;
                    }
                }
                Ok(WatchEvent::Error(e)) => {
                    tracing::debug!("streaming lists not served: {}", e.message);
                    return false;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("streaming lists not served: {e}");
                    return false;
                }
            }
        }
        false
    };
    tokio::time::timeout(PROBE_TIMEOUT + Duration::from_secs(1), probe)
        .await
        .unwrap_or(false)
}

/// `config` taking its initial list as `streaming` says.
pub(crate) fn initial_list(config: watcher::Config, streaming: bool) -> watcher::Config {
    if streaming {
        config.streaming_lists()
    } else {
        config
    }
}

/// Whether the watches take streaming lists under `choice`.
pub(crate) async fn choose<K: Watchable>(choice: InitialList, api: &Api<K>) -> bool {
    match choice {
        InitialList::Paged => false,
        InitialList::Streaming => true,
        InitialList::Auto => {
            let on = served(api).await;
            tracing::info!(
                streaming_lists = on,
                "initial lists: {}",
                if on {
                    "streaming (the API server serves sendInitialEvents)"
                } else {
                    "paged (the API server does not serve streaming lists)"
                }
            );
            on
        }
    }
}
