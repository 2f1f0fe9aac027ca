//! Sharding with several replicas of the Foo operator against one embedded API server: the
//! objects are split, a new replica takes its share, a killed, partitioned or stopped replica's
//! share moves to the others, and no object is ever written by two replicas within one handoff
//! (read from the server's request log, where each replica has its own user agent).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use kube::api::{Api, Patch, PatchParams, PostParams};
use staircase::prelude::*;
use staircase::shard::{self, Assignment};
use staircase::{LeaderElection, Leadership};
use staircase_examples::foo::{self, App, Foo};
use staircase_testkit::{Fault, RequestRecord, Verb};
use staircase_tests::foos::{new_foo, ready};
use staircase_tests::{Env, GUARD, Running, eventually};

const LEASE: Duration = Duration::from_secs(2);
const RENEW_DEADLINE: Duration = Duration::from_secs(1);
const RETRY: Duration = Duration::from_millis(50);

fn election(identity: &str) -> LeaderElection {
    LeaderElection::new("foo-operator")
        .with_namespace("default")
        .with_identity(identity)
        .with_timing(LEASE, RENEW_DEADLINE, RETRY)
        .sharded()
}

/// A replica: its handle, health and metrics.
struct Replica {
    running: Running,
    health: staircase::Health,
    metrics: staircase::metrics::Metrics,
}

/// The value of the series `metric` of replica `name` in its metrics (0 when absent: a
/// histogram has no series before its first observation).
fn metric(r: &Replica, metric: &str, name: &str) -> f64 {
    let series = format!("{metric}{{controller=\"foo-operator-{name}\"}} ");
    r.metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&series).map(|v| v.parse().unwrap()))
        .unwrap_or(0.0)
}

/// A replica whose requests carry the user agent `<name>/1`.
fn replica(env: &Env, name: &str) -> Replica {
    replica_with(env, name, election(name))
}

fn replica_with(env: &Env, name: &str, election: LeaderElection) -> Replica {
    let mut config = env.server.config();
    config.headers.push((
        HeaderName::from_static("user-agent"),
        HeaderValue::from_str(&format!("{name}/1")).unwrap(),
    ));
    let client = kube::Client::try_from(config).unwrap();
    let op = Operator::with_state(
        client,
        foo::stairs(),
        App {
            manager: "foo-operator".into(),
        },
    )
    .with_status()
    .with_config(
        OperatorConfig::default()
            .with_name(format!("foo-operator-{name}"))
            .with_leader_election(election),
    );
    let (health, metrics) = (op.health(), op.metrics());
    Replica {
        running: Running::operator(op),
        health,
        metrics,
    }
}

async fn assignment(env: &Env) -> Option<Assignment> {
    shard::read(env.client.clone(), &election("reader"))
        .await
        .unwrap()
}

/// Waits until the assignment names exactly `members` and every slot is settled; returns it.
async fn settled_on(env: &Env, members: &[&str]) -> Assignment {
    settled_after(env, members, 0).await
}

/// [`settled_on`], in an assignment of a generation after `generation`.
async fn settled_after(env: &Env, members: &[&str], generation: u64) -> Assignment {
    let mut last = None;
    let wait = async {
        loop {
            if let Some(a) = assignment(env).await {
                let named: Vec<&str> = a.members().collect();
                if named == members && a.unsettled() == 0 && a.generation() > generation {
                    return a;
                }
                last = Some(a);
            }
            tokio::time::sleep(RETRY).await;
        }
    };
    match tokio::time::timeout(GUARD, wait).await {
        Ok(a) => a,
        Err(_) => {
            let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
                Api::namespaced(env.client.clone(), "default");
            let acks: Vec<_> = leases
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|l| (l.metadata.name, l.metadata.annotations))
                .collect();
            panic!(
                "never settled on {members:?}; last: {}; leases: {acks:?}",
                last.map(|a| format!("{a:?}")).unwrap_or_default()
            )
        }
    }
}

/// The Foo a write of the Foo operator belongs to, or `None` for any other write.
fn foo_of(r: &RequestRecord) -> Option<String> {
    let write = matches!(
        r.verb,
        Some(Verb::Create | Verb::Update | Verb::Patch | Verb::Delete)
    );
    if !write || r.status >= 300 {
        return None;
    }
    let name = r.name.clone()?;
    match r.resource.as_deref()? {
        "foos.demo.staircase.rs" | "services" => Some(name),
        "configmaps" => name.strip_suffix("-config").map(str::to_string),
        "secrets" => name.strip_suffix("-token").map(str::to_string),
        _ => None,
    }
}

fn agent(r: &RequestRecord) -> String {
    r.user_agent
        .as_deref()
        .and_then(|u| u.split('/').next())
        .unwrap_or_default()
        .to_string()
}

/// Checks the writes since `from` in the request log: each Foo's writers form contiguous
/// blocks (a replica that wrote it never writes it again once another has: within one handoff
/// a slot moves once), and the last writer is the replica its slot is settled on in `now`.
/// Returns the log's length, the start of the next phase.
fn one_writer_at_a_time(
    env: &Env,
    from: usize,
    now: &Assignment,
    uids: &BTreeMap<String, String>,
) -> usize {
    let log = env.server.stats().requests();
    let mut writers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &log[from..] {
        let a = agent(r);
        // The test's own writes (creating and editing the Foos) carry no user agent.
        if let Some(foo) = foo_of(r).filter(|_| !a.is_empty()) {
            let w = writers.entry(foo).or_default();
            if w.last() != Some(&a) {
                assert!(
                    !w.contains(&a),
                    "{} written by {a} again after {:?} (two writers in one handoff)",
                    r.name.as_deref().unwrap_or_default(),
                    w
                );
                w.push(a);
            }
        }
    }
    for (foo, w) in &writers {
        let owner = now.settled_owner(shard::slot_of(&uids[foo]));
        assert_eq!(
            owner,
            w.last().map(String::as_str),
            "the last writer of {foo}"
        );
    }
    log.len()
}

async fn all_ready(foos: &Api<Foo>, names: &[String]) {
    eventually(GUARD, "every Foo Ready", || async {
        let mut ok = true;
        for n in names {
            ok &= ready(foos.get_opt(n).await.unwrap().as_ref());
        }
        ok
    })
    .await;
}

/// Changes every Foo's message: each needs a write from whoever runs it now.
async fn edit_all(foos: &Api<Foo>, names: &[String], round: u32) {
    for n in names {
        let patch = serde_json::json!({ "spec": { "message": format!("round {round}") } });
        foos.patch(n, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn replicas_share_the_foos_and_hand_them_off_one_writer_at_a_time() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    env.server.stats().set_log_enabled(true);
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");

    let mut replicas: BTreeMap<&str, Replica> = ["a", "b", "c"]
        .into_iter()
        .map(|n| (n, replica(&env, n)))
        .collect();
    let three = settled_on(&env, &["a", "b", "c"]).await;
    for m in ["a", "b", "c"] {
        assert!((85..=86).contains(&three.settled_on(m).len()), "{three:?}");
    }

    let names: Vec<String> = (0..24).map(|i| format!("f{i:02}")).collect();
    let mut uids = BTreeMap::new();
    for n in &names {
        let created = foos
            .create(&PostParams::default(), &new_foo(n))
            .await
            .unwrap();
        uids.insert(n.clone(), created.metadata.uid.unwrap());
    }
    all_ready(&foos, &names).await;
    let mut mark = one_writer_at_a_time(&env, 0, &three, &uids);
    let owners = |a: &Assignment| -> Vec<Option<String>> {
        names
            .iter()
            .map(|n| {
                a.settled_owner(shard::slot_of(&uids[n]))
                    .map(str::to_string)
            })
            .collect()
    };
    let writers: std::collections::BTreeSet<String> =
        owners(&three).into_iter().flatten().collect();
    assert!(
        writers.len() > 1,
        "24 Foos all in one replica's share: {three:?}"
    );
    // The embedded server honours `shardSelector` (as 1.37 with `ShardedListAndWatch` does):
    // each replica's watch of the Foos selects its own slots only.
    for m in ["a", "b", "c"] {
        let selected = env.server.stats().requests().into_iter().any(|r| {
            agent(&r) == m
                && r.resource.as_deref() == Some("foos.demo.staircase.rs")
                && r.verb == Some(Verb::Watch)
                && r.query.contains("shardSelector=")
        });
        assert!(selected, "{m} watches the Foos split by the server");
    }

    // A fourth replica takes a quarter, from the others, and nothing else moves. The others'
    // ConfigMap writes are slowed, so the handoff happens with their runs in flight: a new
    // owner that started before they finished would write the same objects beside them.
    let slow: Vec<_> = ["a/", "b/", "c/"]
        .into_iter()
        .map(|agent| {
            env.server.faults().inject(
                Fault::latency(Duration::from_millis(400))
                    .user_agent(agent)
                    .resource("configmaps")
                    .verb(Verb::Patch),
            )
        })
        .collect();
    edit_all(&foos, &names, 1).await;
    replicas.insert("d", replica(&env, "d"));
    let four = settled_on(&env, &["a", "b", "c", "d"]).await;
    // `b`'s renewals are slowed from the start; its ConfigMap writes only once it runs.
    let fired: usize = slow.iter().map(|f| env.server.faults().fired(*f)).sum();
    assert!(fired > 0, "the slowing faults fired");
    for f in slow {
        env.server.faults().remove(f);
    }
    let moved = (0..shard::SLOTS)
        .filter(|&s| three.settled_owner(s) != four.settled_owner(s))
        .count();
    assert_eq!(moved, shard::SLOTS / 4);
    all_ready(&foos, &names).await;
    mark = one_writer_at_a_time(&env, mark, &four, &uids);

    // Killed: every request of `b` fails. Its slots move once its Lease expires.
    let killed = env.server.faults().inject(
        Fault::fail(503, "ServiceUnavailable")
            .user_agent("b/")
            .always(),
    );
    let cut = Instant::now();
    let without_b = settled_on(&env, &["a", "c", "d"]).await;
    let gap = cut.elapsed();
    // The bound: the lease duration plus a renew period, plus scheduling slack on a loaded machine.
    assert!(
        gap < LEASE + RETRY * 4 + Duration::from_secs(1),
        "ownership back after {gap:?}"
    );
    eprintln!("killed replica: full ownership back after {gap:?} (lease {LEASE:?})");
    assert_eq!(replicas["b"].health.leadership(), Leadership::Standby);
    // Each replica runs what is settled on it once it has read the assignment.
    for m in ["a", "c", "d"] {
        let slots = without_b.settled_on(m).len() as f64;
        let r = &replicas[m];
        eventually(GUARD, "the replica's slots in its metrics", || async {
            metric(r, "staircase_shard_slots", m) == slots
        })
        .await;
    }
    // The assigning replica measured the gap of every slot `b` had.
    let gaps: f64 = ["a", "c", "d"]
        .iter()
        .map(|m| metric(&replicas[m], "staircase_shard_gap_seconds_count", m))
        .sum();
    assert!(
        gaps >= four.settled_on("b").len() as f64,
        "{gaps} gaps measured"
    );
    edit_all(&foos, &names, 2).await;
    all_ready(&foos, &names).await;
    mark = one_writer_at_a_time(&env, mark, &without_b, &uids);

    // Partitioned: `c`'s connections drop. Its share moves; once healed it rejoins under a new
    // term and gets a share back through handoffs.
    let partition = env
        .server
        .faults()
        .inject(Fault::drop_connection().user_agent("c/").always());
    let two = settled_on(&env, &["a", "d"]).await;
    edit_all(&foos, &names, 3).await;
    all_ready(&foos, &names).await;
    mark = one_writer_at_a_time(&env, mark, &two, &uids);
    env.server.faults().remove(partition);
    let healed = settled_on(&env, &["a", "c", "d"]).await;
    edit_all(&foos, &names, 4).await;
    all_ready(&foos, &names).await;
    mark = one_writer_at_a_time(&env, mark, &healed, &uids);

    // Stopped gracefully: `a` finishes its runs and releases its Lease; no lease-duration wait.
    replicas.remove("a").unwrap().running.stop().await;
    let last = settled_on(&env, &["c", "d"]).await;
    edit_all(&foos, &names, 5).await;
    all_ready(&foos, &names).await;
    one_writer_at_a_time(&env, mark, &last, &uids);

    env.server.faults().remove(killed);
    for (_, r) in replicas {
        r.running.stop().await;
    }
}

/// A replica crashes while it hands slots to a new one, with runs in flight in them: the slots
/// wait for its Lease to expire, go to the survivors, and no Foo is ever written by two replicas.
#[tokio::test]
async fn a_replica_crashing_in_the_middle_of_a_handoff_leaves_no_second_writer() {
    crash_in_the_middle_of_a_handoff("b").await;
}

/// The same with the leader crashing: its successor takes the assignment over from the
/// ConfigMap, moving slots and all, and finishes the handoffs.
#[tokio::test]
async fn the_leader_crashing_in_the_middle_of_a_handoff_leaves_no_second_writer() {
    crash_in_the_middle_of_a_handoff("a").await;
}

/// Replicas `a` (the leader: it starts first) and `b` share 16 Foos; `c` joins while `b`'s
/// ConfigMap writes and Lease renewals are slow, so `b` is slow to hand slots over; `crashed`
/// crashes while slots are moving. The survivors converge every Foo, one writer at a time.
async fn crash_in_the_middle_of_a_handoff(crashed: &str) {
    let env = Env::start().await;
    env.install::<Foo>().await;
    env.server.stats().set_log_enabled(true);
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    let mut replicas: BTreeMap<&str, Replica> = BTreeMap::new();
    replicas.insert("a", replica(&env, "a"));
    settled_on(&env, &["a"]).await;
    replicas.insert("b", replica(&env, "b"));
    settled_on(&env, &["a", "b"]).await;
    let names: Vec<String> = (0..16).map(|i| format!("h{i:02}")).collect();
    let mut uids = BTreeMap::new();
    for n in &names {
        let created = foos
            .create(&PostParams::default(), &new_foo(n))
            .await
            .unwrap();
        uids.insert(n.clone(), created.metadata.uid.unwrap());
    }
    all_ready(&foos, &names).await;
    let mark = env.server.stats().requests().len();

    // `b`'s runs hang in their ConfigMap writes, and its acknowledgements (Lease renewals) are
    // slow, though within the renew deadline: its slots stay moving long enough to crash then.
    let slow = [
        Fault::latency(Duration::from_millis(800))
            .user_agent("b/")
            .resource("configmaps")
            .verb(Verb::Patch),
        Fault::latency(RENEW_DEADLINE / 2)
            .user_agent("b/")
            .resource("leases.coordination.k8s.io")
            .verb(Verb::Update),
    ]
    .map(|f| env.server.faults().inject(f));
    edit_all(&foos, &names, 1).await;
    replicas.insert("c", replica(&env, "c"));
    let started = std::time::Instant::now();
    loop {
        let a = assignment(&env).await;
        if a.as_ref()
            .is_some_and(|a| a.members().count() == 3 && a.unsettled() > 0)
        {
            break;
        }
        assert!(
            started.elapsed() < GUARD,
            "no handoff under way: {}",
            a.map(|a| a.summary()).unwrap_or_default()
        );
        tokio::time::sleep(RETRY / 5).await;
    }
    replicas.remove(crashed).unwrap().running.crash().await;
    // `b`'s renewals are slowed from the start; its ConfigMap writes only once it runs.
    let fired: usize = slow.iter().map(|f| env.server.faults().fired(*f)).sum();
    assert!(fired > 0, "the slowing faults fired");
    for f in slow {
        env.server.faults().remove(f);
    }

    let survivors: Vec<&str> = replicas.keys().copied().collect();
    let after = settled_on(&env, &survivors).await;
    all_ready(&foos, &names).await;
    edit_all(&foos, &names, 2).await;
    all_ready(&foos, &names).await;
    one_writer_at_a_time(&env, mark, &after, &uids);
    for (_, r) in replicas {
        r.running.stop().await;
    }
}

/// With a takeover delay, the slots of a replica that crashed go to nobody until the delay has
/// passed since its Lease expired (its external calls may still land), and those of a replica
/// restarted under its identity (a new term, no release) wait as long; a graceful stop hands
/// its slots over at once.
#[tokio::test]
async fn a_crashed_replicas_slots_wait_out_the_takeover_delay() {
    const DELAY: Duration = Duration::from_secs(2);
    let env = Env::start().await;
    env.install::<Foo>().await;
    let delayed = |name: &str| replica_with(&env, name, election(name).with_takeover_delay(DELAY));
    let mut replicas: BTreeMap<&str, Replica> = BTreeMap::new();
    replicas.insert("a", delayed("a"));
    settled_on(&env, &["a"]).await;
    replicas.insert("b", delayed("b"));
    let two = settled_on(&env, &["a", "b"]).await;
    let of_b = two.settled_on("b");
    assert!(!of_b.is_empty());

    // Restarted under its identity: a new term without a release.
    replicas.remove("b").unwrap().running.crash().await;
    let restarted = Instant::now();
    replicas.insert("b", delayed("b"));
    let again = settled_after(&env, &["a", "b"], two.generation()).await;
    let waited = restarted.elapsed();
    assert!(waited >= DELAY, "b's old slots given out after {waited:?}");
    assert_eq!(
        again.settled_on("b").len() + again.settled_on("a").len(),
        shard::SLOTS
    );

    // Crashed for good: its Lease expires, then the delay runs.
    replicas.remove("b").unwrap().running.crash().await;
    let crashed = Instant::now();
    let alone = settled_on(&env, &["a"]).await;
    let waited = crashed.elapsed();
    // Its last renewal came at most a retry period before the crash.
    assert!(
        waited + RETRY * 2 >= LEASE + DELAY,
        "b's slots given out after {waited:?}"
    );
    assert_eq!(alone.settled_on("a").len(), shard::SLOTS);

    // A graceful stop: released, no delay.
    replicas.insert("c", delayed("c"));
    settled_on(&env, &["a", "c"]).await;
    replicas.remove("c").unwrap().running.stop().await;
    let stopped = Instant::now();
    settled_on(&env, &["a"]).await;
    let waited = stopped.elapsed();
    assert!(waited < DELAY, "a released share waited {waited:?}");
    for (_, r) in replicas {
        r.running.stop().await;
    }
}
