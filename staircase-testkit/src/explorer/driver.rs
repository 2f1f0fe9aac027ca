//! Driving one case: a fresh API server, the scenario's actions one phase at a time, and the
//! operator run to convergence after each, either step by step with `run_once` (deterministic:
//! the same plan replays the same requests in the same order) or with the real controller loop
//! (`run_until`, for the variants that need watches).

use std::any::TypeId;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use kube::core::ApiResource;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use staircase_runtime::{ApiScope, Operator, OperatorClient, RunEnd, RunReport, Stairs};
use tokio::sync::Notify;

use super::ExplorableResource;
use super::actor::{Actor, Stage};
use super::backend::{Backend, CaseServer};
use super::compare::{self, CompareConfig, Listed, Names, Snapshot};
use super::diagnose::Recent;
use super::external::ExternalService;
use super::gate::{Gate, GateWrite, Lister};
use super::http::{HttpFake, Recorder};
use super::lag;
use super::liveness::Liveness;
use super::replicas::{Replicas, Spawner};
use super::scenario::{self, Scenario};
use super::shards::{self, Handoff};
use super::stale;
use crate::{Fault, RequestRecord};

/// Builds a fresh operator for a client and the case's external services.
pub(crate) type Factory<K, S, M, C> =
    Arc<dyn Fn(kube::Client, &Externals) -> Operator<K, S, M, C> + Send + Sync>;

/// Starts a case's fake HTTP service.
pub(crate) type StartFake =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, anyhow::Result<HttpFake>> + Send + Sync>;

/// A case's services outside Kubernetes, as the operator factory gets them.
#[derive(Clone)]
pub(crate) struct Externals {
    pub service: ExternalService,
    /// The recorder's URL (empty without a fake HTTP service).
    pub url: String,
}

/// How the operator is driven.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    /// `run_once` on freshly read objects, one at a time, until a quiet round.
    Stepwise,
    /// The controller loop, with the watch lagging by `hold_back` versions and live events
    /// dropped with probability `drop.0` (seed `drop.1`); with `children_only`, only the
    /// watches of other kinds than the primary resource (and creates refused as existing are
    /// problems: re-creates on a stale read).
    Loop {
        hold_back: u64,
        drop: Option<(f64, u64)>,
        children_only: bool,
    },
}

/// Everything that makes one case differ from the reference.
#[derive(Debug, Clone)]
pub(crate) struct CasePlan {
    pub mode: Mode,
    /// Crash the operator right after these committed writes (1-based, over the whole case).
    pub crash_at: BTreeSet<u64>,
    /// Lose the answer of these committed writes.
    pub lose_at: BTreeSet<u64>,
    /// Server faults injected after the action of a phase, cleared before its snapshot.
    pub faults: Vec<(usize, Fault)>,
    /// Runs per object after the last phase that must change nothing.
    pub idle_runs: usize,
    /// Give up after this many runs (stepwise).
    pub max_runs: u64,
    /// Keep the operator's requests per phase (the reference: random plans aim at them).
    pub record_requests: bool,
    /// Controller loop: watch resets, as `(phase, after this many runs of the phase, compact)`;
    /// a compacted reset makes the client's resume fail with `410 Gone`, so it relists.
    pub resets: Vec<(usize, usize, bool)>,
    /// Controller loop: the operator sharded over two replicas, one crashing in a handoff.
    pub handoff: Option<Handoff>,
}

impl CasePlan {
    pub(crate) fn stepwise(max_runs: u64) -> Self {
        CasePlan {
            mode: Mode::Stepwise,
            crash_at: BTreeSet::new(),
            lose_at: BTreeSet::new(),
            faults: Vec::new(),
            idle_runs: 0,
            max_runs,
            resets: Vec::new(),
            record_requests: false,
            handoff: None,
        }
    }
}

/// A problem found in a case.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub phase: usize,
    pub text: String,
}

/// What one case did.
#[derive(Debug, Default)]
pub(crate) struct CaseOutcome {
    /// Runs started (a run interrupted by a crash counts).
    pub runs: u64,
    pub crashes: u64,
    /// The end state after each phase (`None` when the phase did not converge).
    pub snapshots: Vec<Option<Snapshot>>,
    /// The operator's requests in each phase (stepwise reference: where faults can be aimed).
    pub requests: Vec<Vec<RequestRecord>>,
    pub problems: Vec<Problem>,
    pub writes: Vec<GateWrite>,
    /// External effects (`<op> <service>/<key>`, uids named) and how many times each happened.
    pub ext_effects: BTreeMap<String, u64>,
    pub faults_fired: usize,
    /// Times the explorer had to let a lagging watch catch up or force a relist.
    pub nudges: u64,
    /// Watch resets fired (controller loop).
    pub resets_fired: u64,
    pub idle_writes: u64,
    pub idle_effects: u64,
    /// The most runs one object needed to settle in one phase (stepwise).
    pub settle_runs: u64,
    /// What happened in the case worth reporting (shard handoff: the crash).
    pub notes: Vec<String>,
}

impl CaseOutcome {
    pub(crate) fn converged(&self) -> bool {
        self.snapshots.iter().all(Option::is_some)
    }
}

/// What the driver needs to know about the explorer.
pub(crate) struct Setup<K, S, M, C> {
    pub factory: Factory<K, S, M, C>,
    pub crds:
        Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
    pub compare: CompareConfig,
    pub external: String,
    /// A fake HTTP service started for every case, and its name.
    pub http: Option<(String, StartFake)>,
    /// How long the controller loop may stall before the explorer nudges the watch.
    pub patience: Duration,
    /// Upper bound of a loop-mode phase, and the unit of every case's bound: a guard against
    /// hangs, not a timing assumption.
    pub guard: Duration,
    /// The operator's resync period in the controller-loop variants.
    pub resync: Duration,
    /// Actors played in every scenario.
    pub actors: Vec<Actor>,
    /// How the operator's client resends requests.
    pub retries: ClientRetries,
    /// Where each case runs.
    pub backend: Backend,
}

/// The one-write rule, checked on one report: no violation, at most one step write, and
/// (stepwise, where the gate's count can be attributed to the run) the runtime counted every
/// write the run made.
pub(crate) fn check_report(r: &RunReport, gate_writes: Option<u64>) -> Vec<String> {
    let mut out = Vec::new();
    for s in &r.steps {
        if let Some(v) = &s.violation {
            out.push(format!(
                "one-write rule: run {} of {}: {v}",
                r.run_id, r.object
            ));
        }
    }
    if r.step_writes() > 1 {
        out.push(format!(
            "one-write rule: run {} of {} made {} step writes",
            r.run_id,
            r.object,
            r.step_writes()
        ));
    }
    if let Some(seen) = gate_writes {
        let runtime = u64::from(r.status_written)
            + u64::from(matches!(
                r.end,
                RunEnd::FinalizerAdded | RunEnd::FinalizerRemoved
            ));
        let counted = r.step_writes() as u64 + runtime;
        if seen != counted {
            let external = r
                .steps
                .iter()
                .flat_map(|s| &s.writes)
                .any(|w| w.method == "EXTERNAL" && w.succeeded());
            let why = if seen < counted && external {
                "an external call the explorer cannot see: it went to a service the explorer does \
                 not record (use the case's ExternalService or Explorer::with_http_service), so \
                 no case crashes after it, loses its answer or counts its duplicates"
            } else if seen > counted {
                "a write bypassed the step's client, or an external call lacks external::call or \
                 ctx.record_external"
            } else {
                "the runtime counted a write that never reached the server"
            };
            out.push(format!(
                "uncounted write: run {} of {} made {seen} writes the explorer saw, the runtime \
                 counted {counted} ({why})",
                r.run_id, r.object
            ));
        }
    }
    out
}

struct Cx<K, S, M, C> {
    server: CaseServer,
    admin: kube::Client,
    gate: Arc<Gate>,
    ext: Externals,
    http: Option<Recorder>,
    api: Api<K>,
    op: Operator<K, S, M, C>,
    out: CaseOutcome,
    /// Every resource a snapshot may list, with its scope.
    compared: Vec<Listed>,
    names: Names,
    /// The other actors of the cluster.
    stage: Stage,
    /// The namespace the scenario's objects go to (on a real server, the case's own).
    ns: String,
}

/// Runs one case of `scenario` under `plan`.
pub(crate) async fn run_case<K, S, M, C>(
    setup: &Setup<K, S, M, C>,
    scenario: &Scenario<K>,
    plan: &CasePlan,
) -> anyhow::Result<CaseOutcome>
where
    K: ExplorableResource,
    S: Send + Sync + 'static,
    M: Stairs<K, S>,
    C: Stairs<K, S>,
{
    let namespaced = TypeId::of::<K::Scope>() != TypeId::of::<k8s_openapi::ClusterResourceScope>();
    let server = setup
        .backend
        .start(&setup.crds, &scenario.namespace, setup.guard)
        .await?;
    if server.case_namespace().is_some() {
        // Cases share a real server: only a namespace keeps their objects apart, and actors
        // need the embedded server's resourceVersion to know when the world is quiet.
        if !namespaced {
            server.shutdown().await;
            anyhow::bail!(
                "a real server runs only namespaced primary resources: the cases of a \
                 cluster-scoped kind would see each other's objects"
            );
        }
        if !setup.actors.is_empty() || !scenario.actors.is_empty() {
            server.shutdown().await;
            anyhow::bail!("actors run only on the embedded server");
        }
    }
    let admin = server.client();
    // On a real server the case's namespace stands in for the scenario's, and is named like it
    // in everything compared.
    let ns = server
        .case_namespace()
        .unwrap_or(&scenario.namespace)
        .to_string();
    let mut names = Names::default();
    if let Some(case_ns) = server.case_namespace() {
        names.namespace = Some((case_ns.to_string(), scenario.namespace.clone()));
    }
    let gate = Gate::new();
    gate.set_plan(plan.crash_at.clone(), plan.lose_at.clone());
    let http = match &setup.http {
        Some((name, start)) => Some(Recorder::start(name, start().await?, gate.clone()).await?),
        None => None,
    };
    let ext = Externals {
        service: ExternalService::gated(&setup.external, gate.clone()),
        url: http
            .as_ref()
            .map(|h| h.url().to_string())
            .unwrap_or_default(),
    };
    let op = operator(
        setup,
        gate.client(client(server.config(), setup.retries)),
        &ext,
    );
    let api: Api<K> = <K::Scope as ApiScope>::api(admin.clone(), Some(&ns));
    let primary = ApiResource::erase::<K>(&());
    let compared =
        compare::resources(&admin, (primary.clone(), namespaced), &setup.compare).await?;
    let mut cx = Cx {
        server,
        admin,
        gate,
        ext,
        http,
        api,
        op,
        out: CaseOutcome::default(),
        compared,
        names,
        ns,
        stage: Stage::new(
            setup
                .actors
                .iter()
                .chain(&scenario.actors)
                .cloned()
                .collect(),
        ),
    };
    match plan.mode {
        Mode::Stepwise => stepwise(setup, scenario, plan, &mut cx).await?,
        Mode::Loop {
            hold_back,
            drop,
            children_only,
        } => {
            let watch = WatchFaults {
                hold_back,
                drop,
                children_only,
            };
            looped(setup, scenario, plan, &mut cx, &primary, watch).await?
        }
    }
    cx.out.writes = cx.gate.log();
    if let Some((case_ns, shown)) = &cx.names.namespace {
        for w in &mut cx.out.writes {
            w.path = compare::rename_namespace(&w.path, case_ns, shown);
        }
        for p in &mut cx.out.problems {
            p.text = compare::rename_namespace(&p.text, case_ns, shown);
        }
        // No operator is left to remove them, and the namespace would stay behind.
        strip_finalizers(&cx.api).await;
    }
    // Named like the snapshots name them, so a key holding a uid counts as the same key in
    // every case.
    for w in cx.out.writes.iter().filter(|w| w.method == "EXTERNAL") {
        *cx.out
            .ext_effects
            .entry(cx.names.name_uids(&w.path))
            .or_default() += 1;
    }
    cx.server.shutdown().await;
    Ok(cx.out)
}

/// Removes the finalizers of every primary object left.
async fn strip_finalizers<K: ExplorableResource>(api: &Api<K>) {
    let Ok(list) = api.list(&ListParams::default()).await else {
        return;
    };
    let patch = serde_json::json!({"metadata": {"finalizers": null}});
    for o in list.items.iter().filter(|o| !o.finalizers().is_empty()) {
        let _ = api
            .patch(
                &o.name_any(),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await;
    }
}

/// A fresh operator from the user's factory. The explorer's external calls land when they are
/// made or never, so the runtime's wait for a failed call that might land late
/// (`external_call_window`) would only stall the case.
pub(crate) fn operator<K, S, M, C>(
    setup: &Setup<K, S, M, C>,
    client: kube::Client,
    ext: &Externals,
) -> Operator<K, S, M, C>
where
    M: Stairs<K, S>,
    C: Stairs<K, S>,
{
    let op = (setup.factory)(client, ext);
    let cfg = op
        .config()
        .clone()
        .with_external_call_window(Duration::ZERO);
    op.with_config(cfg)
}

/// How the operator's client resends requests the server answered 429, 503 or 504 by itself
/// ([`Explorer::client_retries`](super::Explorer::client_retries)). The random variants answer
/// creates 504 after committing them, so they tell the three apart for an operator that creates
/// with `generateName`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientRetries {
    /// As the client `staircase::preflight::client` and `OperatorClient::try_from` build:
    /// reads, `PUT`, `DELETE` and any request answered 429 are resent, a `POST` or `PATCH`
    /// answered 503 or 504 (which the server may have applied) is not.
    #[default]
    Staircase,
    /// As a `kube::Client` from a default `kube::Config` (`kube::Client::try_default()`):
    /// every request is resent, a create too. A create with `generateName` committed but
    /// answered 504 then makes a second object.
    Kube,
    /// Nothing is resent (`kube::Config::default_retry` off).
    Off,
}

/// A client for the operator on the case's server (on the embedded one plain HTTP, no CA bundle
/// loaded: see `ApiServer::client`), resending requests as `retries` says.
pub(crate) fn client(mut config: kube::Config, retries: ClientRetries) -> kube::Client {
    config.default_retry = retries != ClientRetries::Off;
    match retries {
        // The operator wraps it in its own counting layer; the stack's is then a pass-through.
        ClientRetries::Staircase => OperatorClient::try_from(config)
            .expect("plain-http client")
            .client()
            .clone(),
        ClientRetries::Kube | ClientRetries::Off => {
            kube::Client::try_from(config).expect("plain-http client")
        }
    }
}

impl<K, S, M, C> Cx<K, S, M, C> {
    /// The end state of the case, in every namespace (kinds nobody wrote are not listed); on a
    /// real server, in the case's namespace, every compared kind.
    async fn snapshot(&mut self, setup: &Setup<K, S, M, C>) -> anyhow::Result<Snapshot> {
        let stats = self.server.stats();
        let listed: Vec<Listed> = self
            .compared
            .iter()
            .filter(|(r, _)| stats.as_ref().is_none_or(|s| written(s, r)))
            .cloned()
            .collect();
        self.names.applied = self.gate.applied();
        let http = self.http.as_ref().zip(setup.http.as_ref());
        compare::snapshot(
            &self.admin,
            &listed,
            &setup.compare,
            &self.ext.service,
            http.map(|(h, (name, _))| (name.as_str(), h.state())),
            &mut self.names,
        )
        .await
    }

    /// The end state of a settled phase. A real server's garbage collector deletes the children
    /// of a deleted owner in the background, after the operator has settled: wait (within the
    /// phase timeout) until no compared object names a compared owner that is gone, as the
    /// embedded server leaves it.
    async fn settled_snapshot(&mut self, setup: &Setup<K, S, M, C>) -> anyhow::Result<Snapshot> {
        let deadline = Instant::now() + setup.guard;
        loop {
            let snap = self.snapshot(setup).await?;
            if self.server.case_namespace().is_none() {
                return Ok(snap);
            }
            let orphans = compare::orphans(&snap, &self.compared);
            if orphans.is_empty() {
                return Ok(snap);
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the garbage collector did not delete {} within {:?} (their owners are gone)",
                    orphans.join(", "),
                    setup.guard
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Injects the plan's faults for `phase`; their ids tell later how many fired.
fn inject_phase(plan: &CasePlan, phase: usize, faults: &crate::Faults) -> Vec<crate::FaultId> {
    plan.faults
        .iter()
        .filter(|(p, _)| *p == phase)
        .map(|(_, f)| faults.inject(f.clone()))
        .collect()
}

/// Whether anyone ever asked the server to write an object of this resource: if not, there is
/// none to compare, and the snapshot skips listing it.
fn written(stats: &crate::Stats, ar: &ApiResource) -> bool {
    let name = match ar.group.as_str() {
        "" => ar.plural.clone(),
        g => format!("{}.{g}", ar.plural),
    };
    [crate::Verb::Create, crate::Verb::Update, crate::Verb::Patch]
        .into_iter()
        .any(|v| stats.count_resource(&name, None, v) > 0)
}

/// The explorer's own reads retry: a random fault aimed at the operator can still hit one of
/// them once its matcher has moved on, and the explorer must not fail for that.
async fn retry<T, E, F, Fut>(f: F) -> Result<T, E>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut last = None;
    for _ in 0..5 {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("tried"))
}

/// Every object, sorted by name.
async fn objects<K>(api: &Api<K>) -> anyhow::Result<Vec<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let mut v = api.list(&ListParams::default()).await?.items;
    v.sort_by_key(|o| o.name_any());
    Ok(v)
}

/// The object as it is on the server: `cached` while the server has not changed since it was
/// read (`seen` is the server's resourceVersion then), else read again. Most runs in a quiet
/// round, and every idle run, find nothing changed, so this saves a read per run; it never
/// changes what a run sees.
async fn current<K>(
    cx: &Cx<K, impl Send, impl Send, impl Send>,
    name: &str,
    cached: Option<(K, u64)>,
) -> Result<Option<(K, u64)>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    // A real server has no version that says nothing changed: read every time.
    let now = cx.server.resource_version();
    if let Some((obj, seen)) = cached
        && Some(seen) == now
    {
        return Ok(Some((obj, seen)));
    }
    Ok(retry(|| cx.api.get_opt(name))
        .await?
        .map(|o| (o, now.unwrap_or_default())))
}

async fn stepwise<K, S, M, C>(
    setup: &Setup<K, S, M, C>,
    scenario: &Scenario<K>,
    plan: &CasePlan,
    cx: &mut Cx<K, S, M, C>,
) -> anyhow::Result<()>
where
    K: ExplorableResource,
    S: Send + Sync + 'static,
    M: Stairs<K, S>,
    C: Stairs<K, S>,
{
    // A real server records no requests and injects no faults: its cases plan none.
    let stats = cx.server.stats();
    if let Some(stats) = &stats {
        stats.set_log_enabled(plan.record_requests);
    }
    let faults = cx.server.faults();
    if faults.is_none() && !plan.faults.is_empty() {
        anyhow::bail!("server faults need the embedded server");
    }
    for (phase, action) in scenario.actions.iter().enumerate() {
        cx.gate.set_phase(phase);
        scenario::apply(action, &cx.admin, &cx.ns).await?;
        let ids = match &faults {
            Some(f) => inject_phase(plan, phase, f),
            None => Vec::new(),
        };
        let from = match &stats {
            Some(s) if plan.record_requests => s.requests().len(),
            _ => 0,
        };
        let settled = converge(setup, plan, cx, phase, &scenario.accepted_waits).await;
        if let Some(faults) = &faults {
            cx.out.faults_fired += ids.iter().map(|id| faults.fired(*id)).sum::<usize>();
            faults.clear();
        }
        if plan.record_requests {
            let requests = stats.as_ref().map(|s| s.requests().split_off(from));
            cx.out.requests.push(requests.unwrap_or_default());
        }
        match settled {
            Ok(()) => {
                let snap = cx.settled_snapshot(setup).await?;
                cx.out.snapshots.push(Some(snap));
            }
            Err(why) => {
                cx.out.problems.push(Problem { phase, text: why });
                cx.out.snapshots.push(None);
                // Later phases would only repeat the same failure.
                return Ok(());
            }
        }
    }
    if plan.idle_runs > 0 {
        let before = cx.gate.committed();
        let effects = external_effects(&cx.gate);
        for obj in objects(&cx.api).await? {
            let name = obj.name_any();
            let mut cached = None;
            for _ in 0..plan.idle_runs {
                let Some((obj, seen)) = current(cx, &name, cached.take()).await? else {
                    break;
                };
                cached = Some((obj.clone(), seen));
                // Actors that change something make the run after them see it (and the
                // explorer count the changes it causes).
                if let Err(text) = acts(cx).await {
                    cx.out.problems.push(Problem {
                        phase: scenario.actions.len(),
                        text,
                    });
                    break;
                }
                let w = cx.gate.visible();
                if let Some(r) = cx.op.run_once(obj).await {
                    for text in check_report(&r, Some(cx.gate.visible() - w)) {
                        cx.out.problems.push(Problem {
                            phase: scenario.actions.len(),
                            text,
                        });
                    }
                }
            }
        }
        cx.out.idle_writes = cx.gate.committed() - before;
        cx.out.idle_effects = external_effects(&cx.gate) - effects;
    }
    Ok(())
}

/// Runs every object until a full round changes nothing.
async fn converge<K, S, M, C>(
    setup: &Setup<K, S, M, C>,
    plan: &CasePlan,
    cx: &mut Cx<K, S, M, C>,
    phase: usize,
    accepted: &[String],
) -> Result<(), String>
where
    K: ExplorableResource,
    S: Send + Sync + 'static,
    M: Stairs<K, S>,
    C: Stairs<K, S>,
{
    let mut recent = Recent::default();
    let mut liveness = Liveness::default();
    // Changes the actors made in this phase: a cycle with none is the staircase's own.
    let mut actor_changes = 0u64;
    loop {
        let mut quiet = !acts(cx).await?;
        if !quiet {
            actor_changes += 1;
        }
        let mut unsettled = Vec::new();
        let listed_at = cx.server.resource_version().unwrap_or_default();
        let listed = retry(|| objects(&cx.api))
            .await
            .map_err(|e| format!("listing failed: {e}"))?;
        for obj in listed {
            let name = obj.name_any();
            let key = object_key(&obj);
            let mut cached = Some((obj, listed_at));
            loop {
                if cx.out.runs >= plan.max_runs {
                    return Err(format!(
                        "not converged after {} runs ({name} still changing); {}",
                        cx.out.runs,
                        recent.explain(Some(&key))
                    ));
                }
                if acts(cx).await? {
                    quiet = false;
                    actor_changes += 1;
                }
                let obj = match current(cx, &name, cached.take()).await {
                    Ok(Some((o, seen))) => {
                        cached = Some((o.clone(), seen));
                        o
                    }
                    Ok(None) => break,
                    Err(e) => return Err(format!("reading {name} failed: {e}")),
                };
                let before = cx.gate.visible();
                let committed = cx.gate.committed();
                cx.out.runs += 1;
                let ran = tokio::select! {
                    biased;
                    _ = cx.gate.crashed() => None,
                    r = cx.op.run_once(obj) => Some(r),
                };
                let report = match ran {
                    None => {
                        // The process died after a committed write; a new one starts from scratch.
                        cx.out.crashes += 1;
                        cx.op = operator(
                            setup,
                            cx.gate.client(client(cx.server.config(), setup.retries)),
                            &cx.ext,
                        );
                        quiet = false;
                        continue;
                    }
                    Some(None) => break,
                    Some(Some(r)) => r,
                };
                recent.push(&report);
                let seen = cx.gate.visible() - before;
                for text in check_report(&report, Some(seen)) {
                    cx.out.problems.push(Problem { phase, text });
                }
                // Only a change (seen or not) forces another round over every object; a failed
                // run that changed nothing is simply retried, as the controller's backoff would.
                let wrote = cx.gate.committed() > committed;
                if wrote {
                    quiet = false;
                }
                if liveness.ran(&key, &report, wrote) {
                    let state = cx
                        .snapshot(setup)
                        .await
                        .map_err(|e| format!("reading the cluster failed: {e:#}"))?;
                    liveness.check(&key, state, actor_changes)?;
                }
                match &report.end {
                    // A settled run whose status write failed is retried, as the runtime's
                    // short requeue would.
                    RunEnd::Converged | RunEnd::Done { .. } if report.status_error.is_some() => {}
                    RunEnd::Converged => break,
                    RunEnd::Done { .. } => break,
                    RunEnd::Waiting { step, .. } if accepted.iter().any(|a| a == step) => break,
                    RunEnd::Waiting { step, reason } => {
                        unsettled.push(format!("{name}: {step} waits: {reason}"));
                        break;
                    }
                    _ => {}
                }
            }
        }
        if quiet {
            cx.out.settle_runs = cx.out.settle_runs.max(liveness.most_runs());
            return match unsettled.is_empty() {
                true => Ok(()),
                false => Err(format!(
                    "not converged: {} (nothing changes any more: if another controller would \
                     end the wait, play it with an explorer::Actor; if the wait is the expected \
                     end state, accept it with Scenario::accept_wait)",
                    unsettled.join("; ")
                )),
            };
        }
    }
}

/// External effects committed so far.
fn external_effects(gate: &Gate) -> u64 {
    gate.log().iter().filter(|w| w.method == "EXTERNAL").count() as u64
}

/// Lets the actors react to the world; whether they changed it.
async fn acts<K, S, M, C>(cx: &mut Cx<K, S, M, C>) -> Result<bool, String> {
    let server = &cx.server;
    // Actors run only on the embedded server (see `run_case`).
    cx.stage
        .play(&cx.admin, || server.resource_version().unwrap_or_default())
        .await
        .map_err(|e| format!("{e:#}"))
}

async fn looped<K, S, M, C>(
    setup: &Setup<K, S, M, C>,
    scenario: &Scenario<K>,
    plan: &CasePlan,
    cx: &mut Cx<K, S, M, C>,
    primary: &ApiResource,
    watch: WatchFaults,
) -> anyhow::Result<()>
where
    K: ExplorableResource,
    S: Send + Sync + 'static,
    M: Stairs<K, S>,
    C: Stairs<K, S>,
{
    // With each report, when its run started: only runs that started after an action can show
    // that the operator has seen it.
    let reports: Arc<Mutex<Vec<(Instant, RunReport)>>> = Arc::default();
    let notify = Arc::new(Notify::new());
    cx.gate.watch_primary(primary, lister(&cx.api));
    // The scenario's writes make views stale: the oracle must know their versions.
    let admin = cx.gate.tap(cx.admin.clone());
    let WatchFaults {
        hold_back,
        drop,
        children_only,
    } = watch;
    // The embedded server makes the watches lag or lose events and fires the plan's faults; on
    // a real server only the lag can be had, made in the operator's client.
    let faults = cx.server.faults();
    if let Some(stats) = cx.server.stats() {
        stats.set_log_enabled(false);
    }
    if faults.is_none() && (drop.is_some() || !plan.faults.is_empty() || !plan.resets.is_empty()) {
        anyhow::bail!("watch event drops, resets and request faults need the embedded server");
    }
    let qualified = match primary.group.as_str() {
        "" => primary.plural.clone(),
        g => format!("{}.{g}", primary.plural),
    };
    let lag = (faults.is_none() && hold_back > 0).then(|| {
        let prefix = match primary.group.as_str() {
            "" => format!("/api/{}/", primary.version),
            g => format!("/apis/{g}/{}/", primary.version),
        };
        // The primary resource's watch path, whether namespaced or across namespaces.
        let spare =
            children_only.then(|| format!("{prefix}namespaces/{}/{}", cx.ns, primary.plural));
        lag::WatchLag::new(hold_back, spare)
    });
    let spawner = Spawner {
        setup,
        ext: cx.ext.clone(),
        config: cx.server.config(),
        gate: cx.gate.clone(),
        lag: lag.clone(),
        namespace: cx.server.case_namespace().map(str::to_string),
        reports: reports.clone(),
        notify: notify.clone(),
        spans: Arc::default(),
    };
    let release = || {
        if let Some(f) = &faults {
            f.release_held_watch_events();
        }
        if let Some(l) = &lag {
            l.release();
        }
    };
    if let Some(faults) = &faults {
        if children_only {
            faults.spare_watches_of(&qualified);
        }
        if hold_back > 0 {
            faults.hold_back_watch_events(hold_back);
        }
        if let Some((p, seed)) = drop {
            faults.drop_watch_events(p, seed);
        }
    }
    let mut replicas = match plan.handoff {
        None => Replicas::single(spawner.spawn(None)),
        Some(h) => Replicas::sharded(&spawner, h, &admin).await?,
    };
    for (phase, action) in scenario.actions.iter().enumerate() {
        cx.gate.set_phase(phase);
        let mark = reports.lock().expect("reports").len();
        scenario::apply(action, &admin, &cx.ns).await?;
        // The scenario's change reaches the caches: what lags or is lost is the operator's own
        // writes (no cache shows a change whose event never comes, and without it nothing runs).
        if children_only && hold_back > 0 {
            release();
        }
        if let Some(faults) = &faults
            && children_only
            && drop.is_some()
        {
            // Restarted, a watch resumes where it was and replays what it missed, undropped.
            faults.close_watches();
        }
        replicas.after_action(phase, &spawner);
        let acted = Instant::now();
        let ids = match &faults {
            Some(f) => inject_phase(plan, phase, f),
            None => Vec::new(),
        };
        let mut resets: Vec<(usize, bool)> = plan
            .resets
            .iter()
            .filter(|(p, ..)| *p == phase)
            .map(|(_, after, compact)| (*after, *compact))
            .collect();
        let started = Instant::now();
        let mut last_progress = Instant::now();
        let mut writes = cx.gate.committed();
        // When the actors last changed something: only runs that started later have seen it.
        let mut actors_at = acted;
        let mut actor_error: Option<String>;
        let accepted = &scenario.accepted_waits;
        let settled = loop {
            let notified = notify.notified();
            let ran = reports.lock().expect("reports").len() - mark;
            // Only the embedded server plans resets (checked above).
            if let Some(faults) = &faults {
                resets.retain(|(after, compact)| {
                    if ran < *after {
                        return true;
                    }
                    if *compact {
                        faults.compact();
                    }
                    faults.close_watches();
                    cx.out.resets_fired += 1;
                    false
                });
            }
            // The actors' requests may race the operator's (a conflict): they try again on the
            // next look, and only an error that persists is reported.
            match cx
                .stage
                .play(&admin, || cx.server.resource_version().unwrap_or_default())
                .await
            {
                Ok(changed) => {
                    actor_error = None;
                    if changed {
                        actors_at = Instant::now();
                        last_progress = actors_at;
                    }
                }
                Err(e) => actor_error = Some(format!("{e:#}")),
            }
            replicas.restart_dead(&spawner).await;
            if actor_error.is_none()
                && replicas.settled(&admin).await?
                && settled_in_loop(&cx.api, &reports, mark, actors_at, accepted).await?
            {
                break true;
            }
            if cx.gate.committed() != writes {
                writes = cx.gate.committed();
                last_progress = Instant::now();
            }
            if started.elapsed() > setup.guard {
                let mut recent = Recent::default();
                for (_, r) in &reports.lock().expect("reports")[mark..] {
                    recent.push(r);
                }
                let mut text = format!(
                    "not converged within {:?} under the controller loop; {}",
                    setup.guard,
                    recent.explain(None)
                );
                if let Some(e) = &actor_error {
                    text.push_str(&format!("\n{e}"));
                }
                cx.out.problems.push(Problem { phase, text });
                break false;
            }
            if last_progress.elapsed() > setup.patience {
                // Stalled: a lagging cache catches up eventually, and a client that lost events
                // must relist; do what the cluster would, and count it.
                cx.out.nudges += 1;
                if hold_back > 0 {
                    release();
                }
                if let Some(faults) = &faults
                    && drop.is_some()
                {
                    faults.compact();
                    faults.close_watches();
                }
                last_progress = Instant::now();
            }
            // Woken by the next run report; the timeout only re-checks the server's state.
            let _ = tokio::time::timeout(Duration::from_millis(25), notified).await;
        };
        replicas.end_phase();
        replicas.end_phase();
        if let Some(faults) = &faults {
            cx.out.faults_fired += ids.iter().map(|id| faults.fired(*id)).sum::<usize>();
            // Only this phase's rules go: a lagging or lossy watch stays for the whole case.
            for id in ids {
                faults.remove(id);
            }
        }
        if !settled {
            cx.out.snapshots.push(None);
            break;
        }
        // The loop keeps running while the explorer looks (resyncs, a run already under way):
        // a snapshot counts only if the operator wrote nothing meanwhile and is still settled.
        let snap = loop {
            let before = cx.gate.committed();
            let snap = cx.settled_snapshot(setup).await?;
            let actors_quiet = match cx
                .stage
                .play(&admin, || cx.server.resource_version().unwrap_or_default())
                .await
            {
                Ok(false) => true,
                Ok(true) => {
                    actors_at = Instant::now();
                    false
                }
                Err(_) => false,
            };
            replicas.restart_dead(&spawner).await;
            if cx.gate.committed() == before
                && actors_quiet
                && replicas.settled(&admin).await?
                && settled_in_loop(&cx.api, &reports, mark, actors_at, accepted).await?
            {
                break Some(snap);
            }
            if started.elapsed() > setup.guard {
                break None;
            }
            let notified = notify.notified();
            let _ = tokio::time::timeout(Duration::from_millis(25), notified).await;
        };
        let Some(snap) = snap else {
            cx.out.problems.push(Problem {
                phase,
                text: format!(
                    "kept writing after it seemed settled, for {:?} under the controller loop",
                    setup.guard
                ),
            });
            cx.out.snapshots.push(None);
            break;
        };
        cx.out.snapshots.push(Some(snap));
    }
    let crashed = replicas.crashed.take();
    replicas.stop(setup.guard).await;
    if let Some(h) = plan.handoff {
        match crashed {
            Some(c) => cx.out.notes.push(c),
            None => cx.out.problems.push(Problem {
                phase: h.phase,
                text: format!(
                    "the planned crash never happened: the {} made fewer than {} writes in the \
                     handoff",
                    h.who.name(),
                    h.after
                ),
            }),
        }
        let spans = spawner.spans.lock().expect("spans").clone();
        for text in shards::overlaps(&spans) {
            cx.out.problems.push(Problem {
                phase: h.phase,
                text,
            });
        }
    }
    let all: Vec<RunReport> = reports
        .lock()
        .expect("reports")
        .iter()
        .map(|(_, r)| r.clone())
        .collect();
    cx.out.runs = all.len() as u64;
    if std::env::var_os("XDEBUG").is_some() {
        for r in &all {
            eprintln!(
                "XDEBUG {r} rv={:?} status_written={} failed={}",
                r.observed_resource_version,
                r.status_written,
                r.status_error.is_some()
            );
        }
    }
    for r in &all {
        for text in check_report(r, None) {
            cx.out.problems.push(Problem { phase: 0, text });
        }
    }
    let log = cx.gate.destructive();
    for (phase, text) in stale::check(&all, &log, &cx.gate.history()) {
        cx.out.problems.push(Problem { phase, text });
    }
    if children_only {
        for text in recreates(&all) {
            cx.out.problems.push(Problem { phase: 0, text });
        }
    }
    Ok(())
}

/// The watch faults of a controller-loop case.
struct WatchFaults {
    hold_back: u64,
    drop: Option<(f64, u64)>,
    children_only: bool,
}

/// Creates the server refused because the object existed, into a collection the operator had
/// created an object in before (runs in order): the step read an object it had created as
/// missing from a cache behind its create. (A refused create of an object someone else made is
/// a cache behind that write, which the next runs recover from; it is not counted. The paths
/// of creates name the collection, not the object, so a refused create of another's object in
/// a collection the operator created in would count too.)
fn recreates(reports: &[RunReport]) -> Vec<String> {
    let mut created: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for r in reports {
        for s in &r.steps {
            for w in s.writes.iter().filter(|w| w.method == "POST") {
                if w.succeeded() {
                    created.insert(&w.path);
                } else if w.status == 409 && created.contains(w.path.as_str()) {
                    out.push(format!(
                        "re-create: run {} of {}, step {}: POST {} answered 409 AlreadyExists \
                         (the step read an object it had created as missing from a cache behind \
                         its create)",
                        r.run_id, r.object, s.step, w.path
                    ));
                }
            }
        }
    }
    out
}

/// Reads every primary object's resourceVersion, for the stale-view oracle.
fn lister<K>(api: &Api<K>) -> Lister
where
    K: ExplorableResource,
{
    let api = api.clone();
    Arc::new(move || {
        let api = api.clone();
        Box::pin(async move {
            let list = api.list(&ListParams::default()).await?;
            Ok(list
                .items
                .iter()
                .filter_map(|o| {
                    let rv = o.meta().resource_version.as_deref()?.parse().ok()?;
                    Some((object_key(o), rv))
                })
                .collect())
        })
    })
}

/// The runtime's name for an object: `namespace/name`, or `name` when cluster-scoped.
fn object_key<K: Resource>(o: &K) -> String {
    match o.meta().namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", o.name_any()),
        None => o.name_any(),
    }
}

/// Every live object ran since the action (a run reported from `mark` on that started after
/// `acted`, the action or the actors' latest change: a run already under way may have read the
/// world before it), its newest such run settled (converged, ended early with `Outcome::done`,
/// or waits in a step the scenario accepts a wait of) at its current generation
/// and wrote nothing, not even status (a run that wrote its status triggers another, which could
/// still fail), and nothing is being deleted.
async fn settled_in_loop<K>(
    api: &Api<K>,
    reports: &Mutex<Vec<(Instant, RunReport)>>,
    mark: usize,
    acted: Instant,
    accepted: &[String],
) -> anyhow::Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let objs = api.list(&ListParams::default()).await?.items;
    let reports = reports.lock().expect("reports");
    Ok(objs.iter().all(|o| {
        let key = object_key(o);
        o.meta().deletion_timestamp.is_none()
            && reports[mark..]
                .iter()
                .rev()
                .filter(|(started, _)| *started >= acted)
                .map(|(_, r)| r)
                .find(|r| r.object == key)
                .is_some_and(|r| {
                    let settled = match &r.end {
                        RunEnd::Converged | RunEnd::Done { .. } => true,
                        RunEnd::Waiting { step, .. } => accepted.iter().any(|a| a == step),
                        _ => false,
                    };
                    settled
                        && !r.status_written
                        && r.status_error.is_none()
                        && r.generation == o.meta().generation
                })
    }))
}
