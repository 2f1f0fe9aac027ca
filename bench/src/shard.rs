//! Sharding: does throughput grow with replicas, how much moves when one joins, and how long a
//! lost replica's objects wait. Every replica runs the `Bench` staircase
//! ([`workload`](crate::workload), five annotation patches per object) with
//! [sharding](staircase::shard) on, in this process, against the embedded API server on a
//! thread of its own; every request of a replica is a round trip of `rtt` (a remote API server),
//! so the work is latency-bound and can scale on a small machine.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use serde::Serialize;
use staircase::prelude::*;
use staircase::shard::{self, Assignment};
use staircase::{LeaderElection, OperatorClient};
use staircase_apiserver::Fault;

use std::sync::Arc;

use crate::harness::{self, Host};
use crate::workload::{Bench, Counters, set_a, set_b, set_c, set_d, set_e};

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
    /// The replicas' CPU (one process, one thread) per converged object, µs.
    pub operator_cpu_us: f64,
    /// The API server's CPU per converged object, µs.
    pub server_cpu_us: f64,
    /// The largest replica's share of the objects over an even share (1.0: even): hash
    /// sharding splits slots evenly, objects only as evenly as their uids fall.
    pub largest_share: f64,
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

/// A replica whose requests carry the user agent `replica-<i>/1`, counting its runs into
/// `counters`; ends when the returned sender is dropped.
fn replica(
    host: &Host,
    i: usize,
    o: &Options,
    counters: &Arc<Counters>,
) -> tokio::sync::oneshot::Sender<()> {
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
    let counters = counters.clone();
    let op = op.on_run(move |r| {
        let rv = r
            .observed_resource_version
            .as_deref()
            .and_then(|v| v.parse().ok());
        counters.ran(&r.object, rv, matches!(r.end, staircase::RunEnd::Converged))
    });
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

/// Waits until the replicas' runs found every object converged (counted from their reports:
/// polling the server would load it).
async fn converged(counters: &Counters, o: &Options) -> anyhow::Result<()> {
    let deadline = Instant::now() + o.timeout;
    while Instant::now() < deadline {
        let notified = counters.notify.notified();
        if counters
            .converged_new
            .load(std::sync::atomic::Ordering::Relaxed) as usize
            >= o.n
        {
            return Ok(());
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
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

/// Seconds to converge every object, the operator's and the server's CPU over that (ns), and
/// the largest share.
async fn throughput(o: &Options, replicas: usize) -> anyhow::Result<(f64, u64, u64, f64)> {
    let (host, client) = fresh(o).await?;
    let counters = Arc::new(Counters::for_objects(o.n));
    let stops: Vec<_> = (0..replicas)
        .map(|i| replica(&host, i, o, &counters))
        .collect();
    let assignment = settled(&client, o, replicas).await?;
    let (start, op0, server0) = (Instant::now(), crate::cpu::thread_cpu_ns(), host.cpu_ns());
    populate_more(&client, o.n).await?;
    converged(&counters, o).await?;
    let seconds = start.elapsed().as_secs_f64();
    let (op, server) = (crate::cpu::thread_cpu_ns() - op0, host.cpu_ns() - server0);
    drop(stops);
    let mut shares: BTreeMap<String, usize> = BTreeMap::new();
    for s in slots(&client).await? {
        *shares
            .entry(assignment.settled_owner(s).unwrap_or_default().into())
            .or_default() += 1;
    }
    let largest = shares.values().copied().max().unwrap_or(0);
    Ok((
        seconds,
        op,
        server,
        largest as f64 * replicas as f64 / o.n as f64,
    ))
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

/// Every object's slot.
async fn slots(client: &kube::Client) -> anyhow::Result<Vec<usize>> {
    let api: Api<Bench> = Api::namespaced(client.clone(), NS);
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|b| b.metadata.uid.as_deref().map(shard::slot_of))
        .collect())
}

async fn rebalance(o: &Options) -> anyhow::Result<Rebalance> {
    let (host, client) = fresh(o).await?;
    let counters = Arc::new(Counters::for_objects(o.n));
    let mut stops: Vec<_> = (0..3).map(|i| replica(&host, i, o, &counters)).collect();
    settled(&client, o, 3).await?;
    populate_more(&client, o.n).await?;
    converged(&counters, o).await?;
    let three = settled(&client, o, 3).await?;
    let joined = Instant::now();
    stops.push(replica(&host, 3, o, &counters));
    let four = settled(&client, o, 4).await?;
    let join_seconds = joined.elapsed().as_secs_f64();
    let moved = slots(&client)
        .await?
        .into_iter()
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
        let (seconds, op, server, largest_share) = throughput(o, r).await?;
        let per_second = o.n as f64 / seconds;
        let base = rows.first().map_or(per_second, |b| b.per_second);
        rows.push(Throughput {
            replicas: r,
            seconds,
            per_second,
            speedup: per_second / base,
            operator_cpu_us: op as f64 / 1e3 / o.n as f64,
            server_cpu_us: server as f64 / 1e3 / o.n as f64,
            largest_share,
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
         | replicas | seconds to converge all | objects/s | × one replica | goal | operator CPU/object | server CPU/object | largest share |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
        o.n, o.concurrency, o.rtt
    );
    for r in rows {
        md += &format!(
            "| {} | {:.2} | {:.0} | {:.2} | ≥ {:.1} | {:.0} µs | {:.0} µs | {:.2} × even |\n",
            r.replicas,
            r.seconds,
            r.per_second,
            r.speedup,
            0.9 * r.replicas as f64,
            r.operator_cpu_us,
            r.server_cpu_us,
            r.largest_share
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
