//! The crash-anywhere explorer: proves that a staircase operator converges to the same end state
//! however it is interrupted — crashed after any write, answered with lost responses, fed a
//! lagging or lossy watch, or hit by random API errors — and that it never repeats an effect.
//!
//! A staircase makes one write per run, so the places where a crash can hit are few and
//! enumerable: the explorer records a **reference** run of each scenario (every object run to
//! convergence after each user action), then replays the scenario once per disturbance, each
//! time against a fresh embedded [`ApiServer`](crate::ApiServer), and compares every phase's end
//! state with the reference (ignoring `resourceVersion`, `uid`, `creationTimestamp`,
//! `managedFields`, `generation`, owner-reference uids, server-allocated cluster IPs and the
//! timestamps inside conditions). A uid inside any value — a label, a Secret, an external
//! record's key or body — is replaced by the name of its object (`<uid of
//! orders/default/o1>`), and the children step's
//! [`APPLIED_HASH_ANNOTATION`](staircase_runtime::children::APPLIED_HASH_ANNOTATION), which
//! hashes the parent's uid along with the configuration, by the configuration it hashes.
//!
//! # Running it on your operator
//!
//! Enable the feature in your dev-dependencies:
//! `staircase-testkit = { version = "0.1", features = ["explorer"] }`, then:
//!
//! ```no_run
//! use kube::CustomResourceExt;
//! use staircase::prelude::*;
//! use staircase_testkit::explorer::{Explorer, Scenario};
//! # use kube::CustomResource;
//! # use schemars::JsonSchema;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
//! # #[kube(group = "example.com", version = "v1", kind = "Foo", namespaced)]
//! # pub struct FooSpec { message: String }
//! # fn foo(name: &str) -> Foo {
//! #     Foo::new(name, FooSpec { message: "hello".into() })
//! # }
//! # mod foo {
//! #     use super::*;
//! #     #[step] async fn noop(_: &Foo) -> Result<Outcome> { Ok(Outcome::unchanged()) }
//! #     pub fn stairs() -> impl Reconciler<Foo, ()> { staircase!(Foo => [noop]) }
//! # }
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn foo_survives_anything() {
//!     Explorer::new(|client| Operator::new(client, foo::stairs()))
//!         .crd(Foo::crd())
//!         .scenario(Scenario::new("create").create(foo("a")))
//!         .scenario(
//!             Scenario::new("spec change")
//!                 .create(foo("a"))
//!                 .then_edit("a", |f: &mut Foo| f.spec.message = "changed".into()),
//!         )
//!         .run()
//!         .await
//!         .assert_all_converged();
//! }
//! # fn main() {}
//! ```
//!
//! The factory closure is called for every fresh operator (each case, and again after each
//! simulated crash): build the operator exactly as your `main` does, from the client it gets.
//! An operator with effects outside Kubernetes keeps its own REST client and talks, through a
//! recorder, to a fake of the service ([`Explorer::with_http_service`], [`HttpFake`]); or its
//! steps use an [`ExternalService`] ([`Explorer::with_external`]). Either way those effects are
//! crash points too, and their duplicates and lost effects are counted.
//!
//! # Other actors, accepted waits, generated names
//!
//! The embedded server runs no controllers. An operator that waits for one (a Deployment
//! becoming available) gets it played by an [`Actor`] — a closure over the objects of one kind,
//! run by the explorer while the operator runs ([`Explorer::actor`], [`Scenario::with_actor`];
//! [`Actor::deployment_controller`] makes every Deployment available) — or has its wait accepted
//! as a settled end state ([`Scenario::accept_wait`]). Objects named by `generateName` are
//! compared under their identity (generateName, owners, labels) instead of their random name,
//! and a case with more objects of one identity than the reference reports a duplicate. A phase
//! that never settles is reported with the object's last runs, the steps that acted or failed
//! (with their errors) and the objects the operator keeps creating.
//!
//! # Variants and pass criteria
//!
//! See [`Variant`]. In the controller-loop variants the **stale-view oracle** also holds every
//! destructive write (delete, replace, finalizer removal) to the view its run acted on
//! ([`RunReport::observed_resource_version`](staircase_runtime::RunReport)): if the primary
//! object on the server was already newer when the write left, by anything but the operator's
//! own status writes, the case fails with the run, the write and both versions.
//!
//! The **liveness oracle** holds every stepwise phase to settling: once the cluster comes back
//! to a state it was in earlier in the phase, the runs between are a cycle the operator would
//! repeat forever (two steps, or a step and an [`Actor`], undo each other), and the case fails
//! there, naming the runs of the cycle. The report gives, per variant, the most runs one object
//! needed to settle after an action ([`VariantStats::max_settle_runs`]).
//!
//! Every run of every variant is also checked against the one-write rule: no
//! [`RuleViolation`](staircase_runtime::RuleViolation), at most one step write, and — where runs
//! are sequential — the writes the explorer saw on the wire equal the writes the runtime counted
//! (a write through another client, or an external call without `external::call` or
//! `ctx.record_external`, shows; so does an external call the explorer cannot see).
//!
//! # Reproducing a failure
//!
//! Every failure prints a command. Environment variables narrow a run down:
//! `STAIRCASE_EXPLORER_SCENARIO=<name>` (one scenario), `STAIRCASE_EXPLORER_CASE=<variant>/<case>`
//! (e.g. `crash/3`: one case), `STAIRCASE_SEED=<n>` (replay random seed `n` only) and
//! `STAIRCASE_EXPLORER_SEEDS=<n>` (how many random seeds per scenario) and
//! `STAIRCASE_EXPLORER_LOOP_SEEDS=<n>` (how many random-loop seeds). The report's last line
//! counts the random cases that ran.
//!
//! # Determinism
//!
//! The crash, lost-response, idle and random variants drive the operator with
//! [`Operator::run_once`] on objects freshly read from the server, one object at a time, so a
//! case replays the same requests in the same order every time: write `i` is the same write, and
//! seed `n` fires the same faults. The stale-view, lost-events and random-loop variants need
//! watches and use the real controller loop ([`Operator::run_until`]) with resync, the
//! read-your-writes grace and the retry backoff shortened (50 ms, 20 ms, 20–200 ms); their event
//! drops, faults and watch resets are seeded, but task scheduling is not, so their cases are
//! reproducible in distribution rather than request by request.
//!
//! # Cost
//!
//! Each case gets a fresh in-process [`ApiServer`](crate::ApiServer) (cheap: a loopback
//! listener and an empty store), or, with `Explorer::on_real_server` (feature `real`), a fresh
//! namespace on a real kube-apiserver (a case then takes tenths of a second). A stepwise case
//! costs tens of milliseconds of CPU in a debug build with optimised dependencies; the explorer
//! reads an object again only when the server changed since it last read it and snapshots only
//! the kinds somebody wrote. A controller-loop
//! case mostly waits for the loop, up to a second or so.

mod actor;
mod backend;
mod compare;
mod diagnose;
mod driver;
mod external;
mod gate;
mod http;
mod lag;
mod liveness;
mod replicas;
mod report;
mod scenario;
mod seed;
mod shards;
mod stale;
mod variants;

use std::fmt::Debug;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Resource;
use kube::core::ApiResource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use staircase_runtime::{ApiScope, Operator, Stairs};

use shards::{Handoff, Who};

pub use actor::Actor;
pub use compare::{Snapshot, diff};
pub use driver::ClientRetries;
pub use external::{Calls, ExternalError, ExternalService, Record};
pub use http::HttpFake;
pub use report::{Failure, Report, ScenarioReport, VariantStats};
pub use scenario::{Action, Scenario};
pub use seed::{LOOP_SEEDS_VAR, SEED_VAR, SEEDS_VAR};
pub use variants::Variant;

use driver::{CaseOutcome, CasePlan, Setup, StartFake};

/// A resource the explorer can drive: a typed, serialisable Kubernetes resource the runtime can
/// reconcile. Implemented for every type that qualifies; it only names the bounds once.
pub trait ExplorableResource:
    Resource<DynamicType = (), Scope: ApiScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> ExplorableResource for K where
    K: Resource<DynamicType = (), Scope: ApiScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}
use variants::Judge;

/// A case abandoned at its bound.
#[derive(Debug, thiserror::Error)]
#[error(
    "hung: did not finish within {0:?} (the phase timeout × (phases + 2)): a step or request \
     that never returns, or a phase that never settles"
)]
struct Hung(Duration);

/// Random seeds per scenario when `STAIRCASE_EXPLORER_SEEDS` is not set.
pub const DEFAULT_SEEDS: u64 = 100;

/// Seeds of the random-loop variant per scenario when `STAIRCASE_EXPLORER_LOOP_SEEDS` is not
/// set: a controller-loop case costs a second or so, a stepwise one milliseconds.
pub const DEFAULT_LOOP_SEEDS: u64 = 4;

/// Explores scenarios of one operator. Build it, add scenarios, [`run`](Explorer::run) it.
pub struct Explorer<K, S, M, C> {
    setup: Setup<K, S, M, C>,
    scenarios: Vec<Scenario<K>>,
    variants: Vec<Variant>,
    seeds: u64,
    loop_seeds: u64,
    stale_lags: Vec<u64>,
    drop_ps: Vec<f64>,
    drop_seeds: u64,
    idle_runs: usize,
    max_extra_runs: i64,
    handoff_crashes: u64,
    parallelism: usize,
    reproduce: String,
}

struct Filter {
    scenario: Option<String>,
    case: Option<(String, String)>,
    seed: Option<u64>,
}

impl Filter {
    fn from_env() -> Self {
        let case = std::env::var("STAIRCASE_EXPLORER_CASE").ok().and_then(|c| {
            let (v, c) = c.split_once('/')?;
            Some((v.to_string(), c.to_string()))
        });
        Filter {
            scenario: std::env::var("STAIRCASE_EXPLORER_SCENARIO").ok(),
            case,
            seed: seed::replay_seed(),
        }
    }

    /// Why a filter from the environment selected nothing of this explorer, if it did: a
    /// misspelt name must not pass as a green test that ran no case.
    fn selected_nothing(&self, scenarios: &[&str], cases: u64) -> Option<String> {
        if let Some(name) = &self.scenario
            && !scenarios.contains(&name.as_str())
        {
            return Some(format!(
                "STAIRCASE_EXPLORER_SCENARIO={name:?} names no scenario of this explorer \
                 (its scenarios: {scenarios:?}); run the test that has it, or unset the variable"
            ));
        }
        if cases == 0 && (self.case.is_some() || self.seed.is_some()) {
            return Some(
                "STAIRCASE_EXPLORER_CASE / STAIRCASE_SEED selected no case of this explorer \
                 (a case is `<variant>/<n>`, e.g. `crash/3`, as a failure report prints it)"
                    .into(),
            );
        }
        None
    }

    fn wants(&self, variant: Variant, case: &str) -> bool {
        if let Some(seed) = self.seed {
            return variant == Variant::Random && case == seed.to_string();
        }
        match &self.case {
            Some((v, c)) => v == variant.name() && c == case,
            None => true,
        }
    }
}

impl<K, S, M, C> Explorer<K, S, M, C>
where
    K: ExplorableResource,
    S: Send + Sync + 'static,
    M: Stairs<K, S>,
    C: Stairs<K, S>,
{
    /// An explorer for the operator `factory` builds from a client. Configure the operator as in
    /// production (`with_status`, `with_config`); the explorer only shortens resync and the
    /// read-your-writes grace in the controller-loop variants.
    pub fn new(
        factory: impl Fn(kube::Client) -> Operator<K, S, M, C> + Send + Sync + 'static,
    ) -> Self {
        Self::with_external("external", move |client, _| factory(client))
    }

    /// Like [`Explorer::new`], for operators with effects outside Kubernetes: `factory` also gets
    /// the case's fresh [`ExternalService`] named `name`, to put into the operator's state.
    pub fn with_external(
        name: &str,
        factory: impl Fn(kube::Client, &ExternalService) -> Operator<K, S, M, C> + Send + Sync + 'static,
    ) -> Self {
        Self::build(name, None, move |client, ext| factory(client, &ext.service))
    }

    /// Like [`Explorer::new`], for operators that call an HTTP service with a REST client of
    /// their own: the operator's code stays as in production, only the base URL changes.
    ///
    /// For every case the explorer calls `start` for a fresh fake of the service (see
    /// [`HttpFake`]), puts a recorder in front of it and gives `factory` the recorder's URL, to
    /// build the operator's client with. The recorder forwards every request to the fake; a
    /// `POST`, `PUT`, `PATCH` or `DELETE` the fake answers with success is an effect — a create,
    /// update or delete of the record named by the request's
    /// [`Idempotency-Key`](staircase_runtime::external::IdempotencyKey::HEADER) header (else by
    /// its path) — that the explorer numbers like a Kubernetes write: a crash case stops the
    /// operator right after it, a lost-response case breaks the connection before the answer.
    /// Counts are compared with the reference's like [`ExternalService`]'s, and so is the
    /// fake's state after each phase. A `POST` answered `200` rather than `201` under a key
    /// already created is the fake recognising a replay by the key, not a create.
    pub fn with_http_service<F, Fut>(
        name: &str,
        start: F,
        factory: impl Fn(kube::Client, &str) -> Operator<K, S, M, C> + Send + Sync + 'static,
    ) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<HttpFake>> + Send + 'static,
    {
        let start: StartFake =
            Arc::new(move || -> futures::future::BoxFuture<'static, _> { Box::pin(start()) });
        Self::build(name, Some(start), move |client, ext| {
            factory(client, &ext.url)
        })
    }

    fn build(
        name: &str,
        http: Option<StartFake>,
        factory: impl Fn(kube::Client, &driver::Externals) -> Operator<K, S, M, C>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Explorer {
            setup: Setup {
                factory: Arc::new(factory),
                crds: Vec::new(),
                compare: Default::default(),
                external: name.to_string(),
                http: http.map(|h| (name.to_string(), h)),
                patience: Duration::from_millis(400),
                // A guard against hangs only: generous, so a loaded CI machine never trips it.
                guard: Duration::from_secs(60),
                resync: Duration::from_millis(50),
                actors: Vec::new(),
                retries: ClientRetries::default(),
                backend: Default::default(),
            },
            scenarios: Vec::new(),
            variants: Variant::ALL.to_vec(),
            seeds: seed::seed_count(DEFAULT_SEEDS),
            loop_seeds: seed::loop_seed_count(DEFAULT_LOOP_SEEDS),
            stale_lags: vec![1, 3],
            drop_ps: vec![0.3, 0.9],
            drop_seeds: 2,
            idle_runs: 50,
            max_extra_runs: 2,
            handoff_crashes: 2,
            parallelism: 4,
            reproduce: running_test(),
        }
    }

    /// Installs this CRD on every fresh server (once per CRD the operator uses).
    pub fn crd(mut self, crd: CustomResourceDefinition) -> Self {
        self.setup.crds.push(crd);
        self
    }

    /// Plays another actor of the cluster in every scenario (see [`Actor`] and
    /// [`Scenario::with_actor`]).
    pub fn actor(mut self, actor: Actor) -> Self {
        self.setup.actors.push(actor);
        self
    }

    /// How the operator's client resends requests answered 429, 503 or 504: set it as your
    /// production client is built (see [`ClientRetries`]; by default as
    /// `staircase::preflight::client` builds it).
    pub fn client_retries(mut self, retries: ClientRetries) -> Self {
        self.setup.retries = retries;
        self
    }

    /// Runs every case on the real kube-apiserver `server`, each in a fresh namespace of its
    /// own, instead of on a fresh embedded [`ApiServer`](crate::ApiServer): the findings then
    /// cannot be artefacts of the embedded server.
    ///
    /// What runs there: [`Variant::Crash`], [`Variant::LostResponse`] and [`Variant::Idle`],
    /// whose disturbances live in the operator's client, and [`Variant::StaleView`] and
    /// [`Variant::ChildStaleView`], whose watch lag a layer of the operator's client makes: each
    /// watch stream's events are held back until `N` later events of the same stream have
    /// arrived (the embedded server counts `N` resourceVersions of the whole server), a streaming
    /// list's initial events excepted. The variants that need the embedded server's faults
    /// (dropped watch events, random API errors, watch resets: [`Variant::LostEvents`],
    /// [`Variant::ChildLostEvents`], [`Variant::Random`], [`Variant::RandomLoop`]) are skipped,
    /// each with a row in the report that says so.
    ///
    /// The scenario's namespace is replaced by the case's, and named like the scenario's in
    /// every snapshot, write path and report, so cases compare with each other (and read like
    /// embedded ones); a [`Scenario::then`] action's client defaults to the case's namespace
    /// (use `Api::default_namespaced`). Only the case's namespace is compared (and
    /// cluster-scoped kinds added with [`Explorer::compare_also`], which other users of the
    /// server may also write); what the control plane puts into every namespace
    /// (`kube-root-ca.crt`, the `default` ServiceAccount) is not.
    ///
    /// Before a phase's end state is read, the real garbage collector is given time (up to
    /// [`Explorer::phase_timeout`]) to delete the children of deleted owners (it notices a new
    /// CRD only at its next discovery refresh, about 30 s later). CRDs are installed once for
    /// the whole server (an existing one is kept) and waited for until served. The primary
    /// resource must be namespaced, and [`Actor`]s are not played: a case that needs either
    /// fails as could-not-run. In the controller-loop cases the operator watches only the
    /// case's namespace. Each case's namespace is deleted at its end.
    ///
    /// A real server is slower than the embedded one by an order of magnitude per request:
    /// choose a few scenarios (`STAIRCASE_EXPLORER_CASE` still picks one case).
    #[cfg(feature = "real")]
    pub fn on_real_server(mut self, server: &crate::real::RealApiServer) -> Self {
        self.setup.backend = backend::Backend::Real(Box::new(server.config()));
        self
    }

    /// Adds a scenario.
    pub fn scenario(mut self, s: Scenario<K>) -> Self {
        self.scenarios.push(s);
        self
    }

    /// Runs only these variants, in place of the default set ([`Variant::ALL`]; the child
    /// variants of [`Variant::CHILDREN`] are not in it).
    pub fn variants(mut self, v: &[Variant]) -> Self {
        self.variants = v.to_vec();
        self
    }

    /// Random-fault seeds per scenario (default: `STAIRCASE_EXPLORER_SEEDS`, else
    /// [`DEFAULT_SEEDS`]). An explicit value still yields to the environment variable, so CI can
    /// scale the count without code changes.
    pub fn seeds(mut self, n: u64) -> Self {
        self.seeds = seed::seed_count(n);
        self
    }

    /// Seeds of the random-loop variant per scenario (default: `STAIRCASE_EXPLORER_LOOP_SEEDS`,
    /// else [`DEFAULT_LOOP_SEEDS`]); like [`Explorer::seeds`], yields to the variable.
    pub fn loop_seeds(mut self, n: u64) -> Self {
        self.loop_seeds = seed::loop_seed_count(n);
        self
    }

    /// Watch lags (in resourceVersions) of the stale-view variant; one case each. Default 1 and 3.
    pub fn stale_lags(mut self, lags: &[u64]) -> Self {
        self.stale_lags = lags.to_vec();
        self
    }

    /// Drop probabilities of the lost-events variant and seeds per probability. Default 0.3 and
    /// 0.9, two seeds each.
    pub fn drop_probabilities(mut self, ps: &[f64], seeds: u64) -> Self {
        self.drop_ps = ps.to_vec();
        self.drop_seeds = seeds;
        self
    }

    /// The operator's resync period in the controller-loop variants (default 50 ms, so that a
    /// converged object is looked at again soon; production's 10 minutes would stall a case).
    pub fn loop_resync(mut self, d: Duration) -> Self {
        self.setup.resync = d;
        self
    }

    /// How long one phase of a case may take (default 60 s): a guard against hangs, not a timing
    /// assumption. A controller-loop phase that has not settled by then fails the case ("not
    /// converged within …"); a case as a whole that takes longer than `phases + 2` times this —
    /// a step or request that never returns, in any variant — is abandoned and reported as hung,
    /// with its reproduction command, instead of hanging the test.
    pub fn phase_timeout(mut self, d: Duration) -> Self {
        self.setup.guard = d;
        self
    }

    /// Runs per object in the idle variant (default 50).
    pub fn idle_runs(mut self, n: usize) -> Self {
        self.idle_runs = n;
        self
    }

    /// Runs a crash or lost-response case may need beyond the reference (default 2).
    pub fn max_extra_runs(mut self, n: i64) -> Self {
        self.max_extra_runs = n;
        self
    }

    /// Crash points per phase and replica of the [`Variant::ShardHandoff`] variant: the replica
    /// dies after its first, second, … `n`-th write of the handoff (default 2), and is
    /// restarted under its identity in one case, replaced by a new one in another.
    pub fn handoff_crashes(mut self, n: u64) -> Self {
        self.handoff_crashes = n;
        self
    }

    /// Cases run concurrently, each on its own server (default 4). Results do not depend on it.
    pub fn parallelism(mut self, n: usize) -> Self {
        self.parallelism = n.max(1);
        self
    }

    /// Also compares objects of this resource, namespaced or cluster-scoped (e.g. `Namespace`;
    /// the server's discovery says which). ConfigMaps, Secrets, Services, ServiceAccounts, Pods,
    /// Deployments, StatefulSets, Jobs and the primary resource are compared by default, in
    /// every namespace.
    pub fn compare_also(mut self, ar: ApiResource) -> Self {
        self.setup.compare.extra.push(ar);
        self
    }

    /// Ignores a field path (e.g. `status.lastSync`) in every compared object and every external
    /// record, for values your operator derives from time or randomness on purpose.
    ///
    /// The path names keys separated by dots. A key that contains dots goes in brackets and
    /// quotes, or has its dots escaped with a backslash: `metadata.annotations["example.com/at"]`
    /// and `metadata.annotations.example\.com/at` name the same annotation. An external record
    /// compares as `{"id": .., "value": <payload>}`, so `value.placedAt` names a payload field.
    pub fn ignore_field(mut self, path: &str) -> Self {
        self.setup.compare.ignore.push(path.to_string());
        self
    }

    /// The command printed in reproduction hints, in place of the default: the command that
    /// reruns the running test (`cargo test -p <package> --test <binary> <test> --
    /// --nocapture`), which is usually what you want. Set it when that is not how the test is
    /// run (e.g. through a wrapper script).
    pub fn reproduce_with(mut self, cmd: &str) -> Self {
        self.reproduce = cmd.to_string();
        self
    }

    /// Explores every scenario under every variant and returns the report (also printed to
    /// stderr). Use [`Report::assert_all_converged`] to fail a test on any failure.
    pub async fn run(self) -> Report {
        let started = Instant::now();
        let filter = Filter::from_env();
        let mut report = Report::default();
        for s in &self.scenarios {
            if filter.scenario.as_ref().is_some_and(|n| n != &s.name) {
                continue;
            }
            report.scenarios.push(self.explore(s, &filter).await);
        }
        report.elapsed = started.elapsed();
        let names: Vec<&str> = self.scenarios.iter().map(|s| s.name.as_str()).collect();
        if let Some(why) = filter.selected_nothing(&names, report.cases()) {
            panic!("{why}");
        }
        eprintln!("{report}");
        // The test harness captures `eprintln!` of passing tests; the totals (how many random
        // cases ran) belong in every CI log, so they go to stderr directly.
        let _ = writeln!(
            std::io::stderr(),
            "explorer: {}",
            report.to_string().lines().last().unwrap_or_default()
        );
        report
    }

    fn failure(
        &self,
        s: &Scenario<K>,
        variant: &str,
        case: &str,
        phase: usize,
        problem: String,
    ) -> Failure {
        let phase = match s.actions.get(phase) {
            Some(a) => format!("phase {phase} ({})", a.describe()),
            None => format!("after phase {}", phase.saturating_sub(1)),
        };
        let reproduce = match variant {
            "random" => format!(
                "STAIRCASE_EXPLORER_SCENARIO='{}' {}={case} {} -- --nocapture",
                s.name, SEED_VAR, self.reproduce
            ),
            _ => format!(
                "STAIRCASE_EXPLORER_SCENARIO='{}' STAIRCASE_EXPLORER_CASE='{variant}/{case}' {} -- --nocapture",
                s.name, self.reproduce
            ),
        };
        Failure {
            scenario: s.name.clone(),
            variant: variant.to_string(),
            case: case.to_string(),
            phase,
            problem,
            reproduce,
        }
    }

    /// Runs one case within its bound (see [`Explorer::phase_timeout`]).
    async fn run_case(&self, s: &Scenario<K>, plan: &CasePlan) -> anyhow::Result<CaseOutcome> {
        let bound = self.setup.guard * (s.actions.len() as u32 + 2);
        match tokio::time::timeout(bound, driver::run_case(&self.setup, s, plan)).await {
            Ok(r) => r,
            Err(_) => Err(Hung(bound).into()),
        }
    }

    /// How a case that could not run is reported.
    fn could_not_run(e: &anyhow::Error) -> String {
        match e.downcast_ref::<Hung>() {
            Some(h) => h.to_string(),
            None => format!("could not run: {e:#}"),
        }
    }

    async fn explore(&self, s: &Scenario<K>, filter: &Filter) -> ScenarioReport {
        let mut out = ScenarioReport {
            scenario: s.name.clone(),
            ..Default::default()
        };
        let mut base = CasePlan::stepwise(2_000);
        base.record_requests = true;
        base.idle_runs = if self.variants.contains(&Variant::Idle) {
            self.idle_runs
        } else {
            0
        };
        let t = Instant::now();
        let reference = match self.run_case(s, &base).await {
            Ok(r) => r,
            Err(e) => {
                out.failures
                    .push(self.failure(s, "reference", "0", 0, Self::could_not_run(&e)));
                return out;
            }
        };
        out.reference_runs = reference.runs;
        out.reference_writes = reference.writes.len() as u64;
        let ok = reference.converged() && reference.problems.is_empty();
        for p in &reference.problems {
            out.failures
                .push(self.failure(s, "reference", "0", p.phase, p.text.clone()));
        }
        out.variants.push(VariantStats {
            variant: "reference".into(),
            cases: 1,
            converged: u64::from(ok),
            runs: reference.runs,
            max_settle_runs: reference.settle_runs,
            failed: u64::from(!ok),
            elapsed: t.elapsed(),
            ..Default::default()
        });
        if !reference.converged() {
            return out;
        }
        let base = CasePlan {
            idle_runs: 0,
            max_runs: reference.runs * 3 + 50,
            record_requests: false,
            ..base
        };
        let writes = reference.writes.len() as u64;
        let primary = {
            let ar = ApiResource::erase::<K>(&());
            match ar.group.as_str() {
                "" => ar.plural,
                g => format!("{}.{g}", ar.plural),
            }
        };
        let objects = s
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Create(_)))
            .count() as u64;
        for v in &self.variants {
            let t = Instant::now();
            let mut stats = VariantStats {
                variant: v.name().into(),
                ..Default::default()
            };
            if let Some(why) = self.setup.backend.skips(*v) {
                stats.note = why.into();
                out.variants.push(stats);
                continue;
            }
            if *v == Variant::Idle {
                if !filter.wants(*v, "0") {
                    continue;
                }
                stats.cases = 1;
                stats.runs = reference.runs;
                let fine = reference.idle_writes == 0 && reference.idle_effects == 0;
                stats.converged = u64::from(fine);
                stats.note = format!(
                    "{} runs per object: {} writes, {} external effects",
                    self.idle_runs, reference.idle_writes, reference.idle_effects
                );
                if !fine {
                    stats.failed = 1;
                    out.failures.push(self.failure(
                        s,
                        "idle",
                        "0",
                        s.actions.len(),
                        format!(
                            "a converged object was written: {} writes, {} external effects in {} idle runs per object",
                            reference.idle_writes, reference.idle_effects, self.idle_runs
                        ),
                    ));
                }
                stats.elapsed = t.elapsed();
                out.variants.push(stats);
                continue;
            }
            let cases: Vec<(String, CasePlan, Judge, String)> = match v {
                Variant::Crash | Variant::LostResponse => (1..=writes)
                    .map(|i| {
                        let mut p = base.clone();
                        if *v == Variant::Crash {
                            p.crash_at.insert(i);
                        } else {
                            p.lose_at.insert(i);
                        }
                        let w = &reference.writes[i as usize - 1];
                        let j = Judge {
                            max_extra_runs: Some(self.max_extra_runs),
                            max_runs: None,
                        };
                        (
                            i.to_string(),
                            p,
                            j,
                            format!("after write {i}: {} {}", w.method, w.path),
                        )
                    })
                    .collect(),
                Variant::StaleView | Variant::ChildStaleView => {
                    let children = *v == Variant::ChildStaleView;
                    let whose = if children {
                        "child watches lag"
                    } else {
                        "watch lags"
                    };
                    self.stale_lags
                        .iter()
                        .map(|lag| {
                            let j = Judge {
                                max_extra_runs: None,
                                max_runs: None,
                            };
                            (
                                lag.to_string(),
                                variants::loop_plan(*lag, None, children),
                                j,
                                format!("{whose} {lag} {}", self.setup.backend.lag_unit()),
                            )
                        })
                        .collect()
                }
                Variant::LostEvents | Variant::ChildLostEvents => {
                    let children = *v == Variant::ChildLostEvents;
                    let whose = if children {
                        "child watches drop"
                    } else {
                        "drop"
                    };
                    self.drop_ps
                        .iter()
                        .flat_map(|p| (1..=self.drop_seeds).map(move |seed| (*p, seed)))
                        .map(|(p, seed)| {
                            let j = Judge {
                                max_extra_runs: None,
                                max_runs: None,
                            };
                            (
                                format!("{p}-{seed}"),
                                variants::loop_plan(0, Some((p, seed)), children),
                                j,
                                format!("{whose} p={p} seed {seed}"),
                            )
                        })
                        .collect()
                }
                Variant::Random => (1..=self.seeds)
                    .chain(filter.seed)
                    .filter(|seed| filter.seed.is_none_or(|s| s == *seed))
                    .take(if filter.seed.is_some() { 1 } else { usize::MAX })
                    .map(|seed| {
                        let (p, n, what) = variants::random_plan(seed, &reference, &base);
                        // Per fault: the failed run, a retry and a crashed run, plus one more
                        // round over every object (a failed run's status write is a change).
                        let j = Judge {
                            max_extra_runs: None,
                            max_runs: Some(reference.runs + n as u64 * (3 + objects)),
                        };
                        (seed.to_string(), p, j, what)
                    })
                    .collect(),
                Variant::RandomLoop => (1..=self.loop_seeds)
                    // A reproduction names its seed, which may lie beyond the configured count.
                    .chain(filter.case.as_ref().and_then(|(v, c)| {
                        (v == Variant::RandomLoop.name())
                            .then(|| c.parse::<u64>().ok())
                            .flatten()
                            .filter(|seed| *seed > self.loop_seeds)
                    }))
                    .map(|seed| {
                        let (p, what) = variants::random_loop_plan(seed, &reference, &primary);
                        let j = Judge {
                            max_extra_runs: None,
                            max_runs: None,
                        };
                        (seed.to_string(), p, j, what)
                    })
                    .collect(),
                Variant::ShardHandoff => {
                    let n = self.handoff_crashes;
                    (0..s.actions.len())
                        .flat_map(|phase| {
                            [Who::Leader, Who::Joiner].into_iter().flat_map(move |who| {
                                (1..=n).flat_map(move |after| {
                                    [true, false].map(|same_identity| Handoff {
                                        phase,
                                        who,
                                        after,
                                        same_identity,
                                    })
                                })
                            })
                        })
                        .map(|h| {
                            let j = Judge {
                                max_extra_runs: None,
                                max_runs: None,
                            };
                            (h.id(), variants::handoff_plan(h), j, h.describe())
                        })
                        .collect()
                }
                Variant::Idle => unreachable!("handled above"),
            };
            let cases: Vec<_> = cases
                .into_iter()
                .filter(|(id, ..)| filter.wants(*v, id))
                .collect();
            if cases.is_empty() {
                continue;
            }
            let results: Vec<(String, String, Judge, anyhow::Result<CaseOutcome>)> =
                futures::stream::iter(cases.into_iter().map(
                    |(id, plan, judge, what)| async move {
                        let r = self.run_case(s, &plan).await;
                        (id, what, judge, r)
                    },
                ))
                .buffered(self.parallelism)
                .collect()
                .await;
            let (mut nudges, mut resets, mut fired, mut crashes) = (0, 0, 0, 0);
            for (id, what, judge, r) in results {
                stats.cases += 1;
                let case = match r {
                    Ok(c) => c,
                    Err(e) => {
                        stats.failed += 1;
                        out.failures.push(self.failure(
                            s,
                            v.name(),
                            &id,
                            0,
                            format!("{what}: {}", Self::could_not_run(&e)),
                        ));
                        continue;
                    }
                };
                stats.runs += case.runs;
                crashes += case.notes.len();
                stats.max_settle_runs = stats.max_settle_runs.max(case.settle_runs);
                nudges += case.nudges;
                resets += case.resets_fired;
                fired += case.faults_fired;
                let verdict = variants::judge(&reference, &case, &judge);
                stats.duplicate_effects += verdict.duplicates;
                stats.max_extra_runs = stats.max_extra_runs.max(verdict.extra_runs);
                if verdict.converged {
                    stats.converged += 1;
                } else {
                    stats.failed += 1;
                    let phase = verdict.problems.first().map_or(0, |p| p.0);
                    let text = verdict
                        .problems
                        .iter()
                        .map(|(_, t)| t.as_str())
                        .collect::<Vec<_>>()
                        .join("\n");
                    let notes: String = case.notes.iter().map(|n| format!("\n{n}")).collect();
                    out.failures.push(self.failure(
                        s,
                        v.name(),
                        &id,
                        phase,
                        format!("{what}{notes}\n{text}"),
                    ));
                }
            }
            if matches!(
                v,
                Variant::StaleView
                    | Variant::LostEvents
                    | Variant::ChildStaleView
                    | Variant::ChildLostEvents
            ) {
                stats.note = format!("{nudges} stalls nudged (watch caught up / relist)");
            }
            if *v == Variant::RandomLoop {
                stats.note = format!("{resets} watch resets, {fired} request faults fired");
            }
            if *v == Variant::ShardHandoff {
                stats.note = format!("{crashes} replicas crashed in a handoff");
            }
            if *v == Variant::Random {
                stats.note = format!("{fired} faults fired");
            }
            stats.elapsed = t.elapsed();
            out.variants.push(stats);
        }
        out
    }
}

/// The command that reruns the running test: `cargo test -p <package> --test <binary> <test>`,
/// from what cargo and the test harness tell the process (`cargo test` outside a test).
fn running_test() -> String {
    let mut cmd = String::from("cargo test");
    if let Ok(package) = std::env::var("CARGO_PKG_NAME") {
        cmd += &format!(" -p {package}");
        let binary = std::env::current_exe().ok().and_then(|p| {
            let stem = p.file_stem()?.to_str()?.to_string();
            // Test binaries are named `<target>-<hash>`.
            Some(
                stem.rsplit_once('-')
                    .map_or(stem.clone(), |(b, _)| b.to_string()),
            )
        });
        match binary {
            Some(b) if b == package.replace('-', "_") => cmd += " --lib",
            Some(b) => cmd += &format!(" --test {b}"),
            None => {}
        }
    }
    if let Some(test) = std::thread::current().name().filter(|n| *n != "main") {
        cmd += &format!(" {test}");
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(scenario: Option<&str>, case: Option<(&str, &str)>) -> Filter {
        Filter {
            scenario: scenario.map(Into::into),
            case: case.map(|(v, c)| (v.into(), c.into())),
            seed: None,
        }
    }

    #[test]
    fn a_filter_that_selects_nothing_is_reported() {
        let names = ["create", "spec change"];
        assert_eq!(filter(None, None).selected_nothing(&names, 0), None);
        assert_eq!(
            filter(Some("create"), None).selected_nothing(&names, 12),
            None
        );
        let why = filter(Some("creat"), None)
            .selected_nothing(&names, 0)
            .unwrap();
        assert!(why.contains("\"creat\" names no scenario") && why.contains("spec change"));
        assert!(
            filter(Some("create"), Some(("crash", "99")))
                .selected_nothing(&names, 0)
                .is_some()
        );
        assert_eq!(
            filter(Some("create"), Some(("crash", "3"))).selected_nothing(&names, 1),
            None
        );
    }

    #[test]
    fn the_reproduce_command_names_this_test() {
        let cmd = running_test();
        assert!(
            cmd.starts_with("cargo test -p staircase-testkit --lib"),
            "{cmd}"
        );
        assert!(
            cmd.ends_with("the_reproduce_command_names_this_test"),
            "{cmd}"
        );
    }
}
