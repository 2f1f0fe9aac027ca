//! Sharding: does throughput grow with replicas, how much moves when one joins, and how long a
//! lost replica's objects wait. Every replica runs the `Bench` staircase
//! ([`workload`](crate::workload), five annotation patches per object) with
//! [sharding](staircase::shard) on, in this process, against the embedded API server on a
//! thread of its own; every request of a replica is a round trip of `rtt` (a remote API server),
//! so the work is latency-bound and can scale on a small machine.

use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use serde::Serialize;
use staircase::prelude::*;
use staircase::shard::{self, Assignment};
use staircase::{LeaderElection, OperatorClient};
use staircase_apiserver::Fault;

use crate::harness::{self, Host};
use crate::workload::{Bench, set_a, set_b, set_c, set_d, set_e};

/// What to measure.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// Objects.
    pub n: usize,
    /// Runs in flight per replica.
    pub concurrency: u16,
    /// Every replica request's round trip.
    pub rtt: Duration,
    /// Replica counts to measure throughput at.
    pub replicas: Vec<usize>,
    /// Lease duration, renew deadline, retry period.
    pub lease: (Duration, Duration, Duration),
    /// Give up waiting after this long.
    pub timeout: Duration,
}

/// Throughput at one replica count.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Replicas.
    pub replicas: usize,
    /// From the first create to every object converged, s.
    pub seconds: f64,
    /// Objects converged per second.
    pub per_second: f64,
    /// `per_second` over the single replica's.
    pub speedup: f64,
}

/// Scaling 3 → 4 replicas, then losing one.
#[derive(Debug, Clone, Serialize)]
pub struct Rebalance {
    /// Objects whose settled replica changed when the fourth joined.
    pub moved: usize,
    /// `moved / (n / 4)`.
    pub moved_ratio: f64,
    /// From the fourth replica's start to every slot settled again, s.
    pub join_seconds: f64,
    /// From cutting a replica off (every request fails) to every slot settled on the others, s.
    pub loss_seconds: f64,
    /// The same for the replica that held the leader Lease, s.
    pub leader_loss_seconds: f64,
}

const NS: &str = "shard";

fn election(id: &str, o: &Options) -> LeaderElection {
    let (lease, deadline, retry) = o.lease;
    LeaderElection::new("bench")
        .with_namespace(NS)
        .with_identity(id)
        .with_timing(lease, deadline, retry)
        .sharded()
}

/// A replica whose requests carry the user agent `replica-<i>/1`; ends when `stop` fires.
fn replica(host: &Host, i: usize, o: &Options) -> tokio::sync::oneshot::Sender<()> {
    let id = format!("replica-{i}");
    let mut config = harness::config(&host.url);
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(&format!("{id}/1")).expect("ASCII"),
    ));
    let client = OperatorClient::try_from(config).expect("plain-http client");
    let cfg = OperatorConfig::default()
        .with_name(id.clone())
        .with_namespace(NS)
        .with_concurrency(o.concurrency)
        .with_events(false)
        .with_leader_election(election(&id, o));
    let op = Operator::new(
        client,
        staircase!(Bench => [set_a, set_b, set_c, set_d, set_e]),
    )
    .with_config(cfg);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(op.run_until(async {
        rx.await.ok();
    }));
    tx
}

async fn settled(client: &kube::Client, o: &Options, members: usize) -> anyhow::Result<Assignment> {
    let reader = election("reader", o);
    let deadline = Instant::now() + o.timeout;
    while Instant::now() < deadline {
        if let Some(a) = shard::read(client.clone(), &reader).await?
            && a.members().count() == members
            && a.unsettled() == 0
        {
            return Ok(a);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!(
        "slots not settled on {members} replicas within {:?}",
        o.timeout
    )
}

async fn converged(client: &kube::Client, o: &Options) -> anyhow::Result<()> {
    let deadline = Instant::now() + o.timeout;
    while Instant::now() < deadline {
        if harness::count_converged(client, NS).await? == o.n {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("not every object converged within {:?}", o.timeout)
}

/// A fresh server with the CRD, the namespace and every replica request slowed to `rtt`.
async fn fresh(o: &Options) -> anyhow::Result<(Host, kube::Client)> {
    let host = Host::start();
    let client = harness::client(&host.url);
    harness::install(&client).await?;
    harness::populate(&client, NS, 0).await?;
    host.faults
        .inject(Fault::round_trip(o.rtt).user_agent("replica-"));
    Ok((host, client))
}

async fn throughput(o: &Options, replicas: usize) -> anyhow::Result<f64> {
    let (host, client) = fresh(o).await?;
    let stops: Vec<_> = (0..replicas).map(|i| replica(&host, i, o)).collect();
    settled(&client, o, replicas).await?;
    let start = Instant::now();
    populate_more(&client, o.n).await?;
    converged(&client, o).await?;
    let seconds = start.elapsed().as_secs_f64();
    drop(stops);
    Ok(seconds)
}

async fn populate_more(client: &kube::Client, n: usize) -> anyhow::Result<()> {
    use futures::{StreamExt, TryStreamExt};
    let api: Api<Bench> = Api::namespaced(client.clone(), NS);
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let b = Bench::new(
                    &format!("b-{i}"),
                    crate::workload::BenchSpec { value: "v1".into() },
                );
                api.create(&Default::default(), &b).await.map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn rebalance(o: &Options) -> anyhow::Result<Rebalance> {
    let (host, client) = fresh(o).await?;
    let mut stops: Vec<_> = (0..3).map(|i| replica(&host, i, o)).collect();
    settled(&client, o, 3).await?;
    populate_more(&client, o.n).await?;
    converged(&client, o).await?;
    let three = settled(&client, o, 3).await?;
    let joined = Instant::now();
    stops.push(replica(&host, 3, o));
    let four = settled(&client, o, 4).await?;
    let join_seconds = joined.elapsed().as_secs_f64();
    let api: Api<Bench> = Api::namespaced(client.clone(), NS);
    let moved = api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|b| b.metadata.uid.as_deref().map(shard::slot_of))
        .filter(|&s| three.settled_owner(s) != four.settled_owner(s))
        .count();
    // Lose the newest replica (never the leader), then the leader (the first to start).
    let cut = Instant::now();
    host.faults.inject(
        Fault::fail(503, "ServiceUnavailable")
            .user_agent("replica-3/")
            .always(),
    );
    settled(&client, o, 3).await?;
    let loss_seconds = cut.elapsed().as_secs_f64();
    let cut = Instant::now();
    host.faults.inject(
        Fault::fail(503, "ServiceUnavailable")
            .user_agent("replica-0/")
            .always(),
    );
    settled(&client, o, 2).await?;
    let leader_loss_seconds = cut.elapsed().as_secs_f64();
    drop(stops);
    Ok(Rebalance {
        moved,
        moved_ratio: moved as f64 / (o.n as f64 / 4.0),
        join_seconds,
        loss_seconds,
        leader_loss_seconds,
    })
}

/// Runs every measurement.
pub async fn run(o: &Options) -> anyhow::Result<(Vec<Throughput>, Rebalance)> {
    let mut rows: Vec<Throughput> = Vec::new();
    for &r in &o.replicas {
        let seconds = throughput(o, r).await?;
        let per_second = o.n as f64 / seconds;
        let base = rows.first().map_or(per_second, |b| b.per_second);
        rows.push(Throughput {
            replicas: r,
            seconds,
            per_second,
            speedup: per_second / base,
        });
    }
    Ok((rows, rebalance(o).await?))
}

/// The results as markdown, with method and machine.
pub fn markdown(o: &Options, rows: &[Throughput], rb: &Rebalance, machine: &str) -> String {
    let (lease, deadline, retry) = o.lease;
    let mut md = format!(
        "# Sharding: throughput with replicas, rebalance, loss\n\n\
         N = {} `Bench` objects (five annotation patches each, status off), every replica \
         running them with concurrency {} and every replica request a {:?} round trip on the \
         embedded API server (its own thread, pinned); replicas in one process on the other \
         CPU. Leases: duration {lease:?}, renew deadline {deadline:?}, retry {retry:?}. One \
         repetition per row.\n\n{machine}\n\n\
         | replicas | seconds to converge all | objects/s | × one replica | goal |\n\
         |---:|---:|---:|---:|---:|\n",
        o.n, o.concurrency, o.rtt
    );
    for r in rows {
        md += &format!(
            "| {} | {:.2} | {:.0} | {:.2} | ≥ {:.1} |\n",
            r.replicas,
            r.seconds,
            r.per_second,
            r.speedup,
            0.9 * r.replicas as f64
        );
    }
    md += &format!(
        "\n| 3 → 4 replicas | |\n|---|---:|\n\
         | objects moved | {} ({:.2} × N/4; goal ≤ 1.1) |\n\
         | join to every slot settled | {:.2} s |\n\
         | replica cut off to its slots settled elsewhere | {:.2} s |\n\
         | leader cut off to its slots settled elsewhere | {:.2} s |\n",
        rb.moved, rb.moved_ratio, rb.join_seconds, rb.loss_seconds, rb.leader_loss_seconds
    );
    md
}
