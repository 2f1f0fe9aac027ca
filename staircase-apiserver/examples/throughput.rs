//! Measures what an operator test can expect from the in-process API server through an
//! unmodified `kube::Client`: creates/s, merge patches/s (sequential, one client), and watch
//! events/s delivered to one watcher while another task writes.
//!
//! ```text
//! cargo run --release -p staircase-apiserver --example throughput
//! ```

use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use staircase_apiserver::ApiServer;

const N: usize = 2000;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": "bench"}}, "data": {"k": "v"}}),
    )
    .unwrap()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = ApiServer::start().await?;
    server.stats().set_log_enabled(false);
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());

    let t = Instant::now();
    for i in 0..N {
        api.create(&PostParams::default(), &cm(&format!("c{i}")))
            .await?;
    }
    let creates = N as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    for i in 0..N {
        let p = json!({"data": {"k": i.to_string()}});
        api.patch(
            &format!("c{}", i % 100),
            &PatchParams::default(),
            &Patch::Merge(&p),
        )
        .await?;
    }
    let patches = N as f64 / t.elapsed().as_secs_f64();

    let rv = server.resource_version().to_string();
    let mut stream = api
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await?
        .boxed();
    let writer = {
        let api = api.clone();
        tokio::spawn(async move {
            for i in 0..N {
                let p = json!({"data": {"w": i.to_string()}});
                api.patch(
                    &format!("c{}", i % 100),
                    &PatchParams::default(),
                    &Patch::Merge(&p),
                )
                .await
                .unwrap();
            }
        })
    };
    let t = Instant::now();
    let mut seen = 0;
    while seen < N {
        if let Some(WatchEvent::Modified(_)) = stream.try_next().await? {
            seen += 1;
        }
    }
    let events = N as f64 / t.elapsed().as_secs_f64();
    writer.await?;

    println!("creates/s: {creates:.0}");
    println!("patches/s: {patches:.0}");
    println!("watch events/s (while writing): {events:.0}");
    server.shutdown().await;
    Ok(())
}
