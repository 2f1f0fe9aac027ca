//! Explaining an object: what each step finds, and the one modification the next run would make,
//! without changing anything.
//!
//! A staircase makes at most one modification per run, so at any moment there is exactly one next
//! thing the operator will do to an object. [`Operator::explain`](crate::Operator::explain) runs
//! the staircase once for an object with every write sent as a server-side dry run
//! (`dryRun=All`) and returns an [`Explanation`] that prints step by step:
//!
//! ```text
//! Foo default/web (generation 1, resourceVersion 20)
//!   ensure_config   unchanged
//!   ensure_secret   unchanged
//!   ensure_service  modifies: created Service web-svc
//!                     POST /api/v1/namespaces/default/services (dry run: 201)
//! next: ensure_service would make the run's one modification: created Service web-svc
//! nothing was changed: every write was sent with dryRun=All
//! ```
//!
//! # The kubectl plugin: one line in `main`
//! An operator becomes explainable from the command line with one line after it is built:
//!
//! ```no_run
//! # use staircase_runtime as staircase;
//! # use k8s_openapi::api::core::v1::ConfigMap as Foo;
//! use staircase::{Operator, Reconciler};
//!
//! async fn serve(client: kube::Client, stairs: impl Reconciler<Foo, ()>) {
//!     let operator = Operator::new(client, stairs);
//!     staircase::explain::from_args(&operator).await; // `explain ...`: prints and exits
//!     operator.run().await;
//! }
//! ```
//!
//! Invoked as `my-operator explain web -n default` it prints the explanation and exits; with any
//! other arguments it returns and the operator runs. Installed (or linked) on the `PATH` as
//! `kubectl-staircase`, the same binary is a kubectl plugin: `kubectl staircase explain foo/web
//! -n default`. It reads the kubeconfig as the operator does (`KUBECONFIG`, `~/.kube/config`).
//!
//! # Guarantees
//! - Nothing is changed: every write a step or the runtime makes (create, update, patch, delete,
//!   the finalizer) goes to the API server with `dryRun=All`, which validates and answers it
//!   and stores nothing; the status is not written; no Event is published.
//! - External calls made through [`external::call`](crate::external::call) are not made: the
//!   explanation names the call as the step's modification and stops there.
//! - The explanation runs the steps' own code against the cluster as it is, so what it says is
//!   what the next run would do, given the same cluster.
//! - A [paused](crate::pause) object is explained as if resumed, and the pause is reported:
//!   the explanation says what removing the annotation would set off.
//!
//! # Caveats
//! - A step that changes the world other than through the Kubernetes API or
//!   [`external::call`](crate::external::call) (its own HTTP client, a file) is not stopped by
//!   explain: route such effects through `external::call`.
//! - Steps read from the API server directly (an explaining run has no watch caches), so reads are
//!   never older than a live operator's.
//! - A dry-run create of an object with `generateName` returns a name the server never uses.

use std::fmt;

use crate::run::{RunEnd, RunReport};

/// What the next run would do to one object, step by step (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Explanation {
    /// `Kind namespace/name`.
    pub object: String,
    /// The steps of the staircase that would run (the cleanup steps for an object being
    /// deleted), in order.
    pub steps: Vec<&'static str>,
    /// The object's [pause](crate::pause), in words, when it has one. The explaining run does
    /// not stop there: it says what the next run would do once the object is resumed.
    pub paused: Option<String>,
    /// The explaining run's report: each step's outcome and dry-run writes. `None` when there
    /// is nothing to run (an object being deleted that holds no finalizer of this operator).
    pub report: Option<RunReport>,
}

impl Explanation {
    /// Whether the next run would change nothing: every step is unchanged (a new object's
    /// next run adds the finalizer, which is a change, and [`next_modification`] is `None` for
    /// it too: look at the report's [`end`](RunReport::end) to tell them apart).
    ///
    /// [`next_modification`]: Self::next_modification
    pub fn converged(&self) -> bool {
        matches!(
            self.report.as_ref().map(|r| &r.end),
            Some(RunEnd::Converged | RunEnd::Done { .. })
        )
    }

    /// The step whose modification the next run would make, if a step would make one.
    pub fn next_modification(&self) -> Option<&'static str> {
        match &self.report.as_ref()?.end {
            RunEnd::Modified { step, .. } => Some(step),
            RunEnd::Failed {
                step: Some(step),
                error,
            } if is_external_stop(error) => Some(step),
            _ => None,
        }
    }
}

fn is_external_stop(error: &str) -> bool {
    error.contains(crate::external::EXPLAIN_STOP) && error.contains("explain makes no call")
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(r) = &self.report else {
            writeln!(f, "{}", self.object)?;
            return writeln!(
                f,
                "nothing to run: the object is being deleted and holds no finalizer of this operator"
            );
        };
        write!(f, "{}", self.object)?;
        let rv = r.observed_resource_version.as_deref().unwrap_or("?");
        match r.generation {
            Some(g) => writeln!(f, " (generation {g}, resourceVersion {rv})")?,
            None => writeln!(f, " (resourceVersion {rv})")?,
        }
        if r.deleting {
            writeln!(f, "  being deleted: the cleanup steps run")?;
        }
        if let Some(p) = &self.paused {
            writeln!(f, "  paused {p}")?;
            writeln!(
                f,
                "  (below: what the next run does once the pause is removed)"
            )?;
        }
        let width = self.steps.iter().map(|s| s.len()).max().unwrap_or(0);
        for step in &self.steps {
            let Some(rec) = r.steps.iter().find(|s| s.step == *step) else {
                writeln!(f, "  {step:<width$}  not reached")?;
                continue;
            };
            let what = match rec.outcome {
                crate::OutcomeKind::Unchanged => "unchanged".to_string(),
                crate::OutcomeKind::Modified => format!("modifies: {}", rec.detail),
                crate::OutcomeKind::Wait => format!("waits: {}", rec.detail),
                crate::OutcomeKind::Done => format!("done: {}", rec.detail),
                crate::OutcomeKind::Error if is_external_stop(&rec.detail) => {
                    format!("modifies: {}", rec.detail)
                }
                crate::OutcomeKind::Error => format!("fails: {}", rec.detail),
            };
            writeln!(f, "  {step:<width$}  {what}")?;
            for w in rec.writes.iter().filter(|w| !w.is_event()) {
                let pad = width + 4;
                writeln!(
                    f,
                    "  {:pad$}{} {} (dry run: {})",
                    "", w.method, w.path, w.status
                )?;
            }
        }
        let next = match &r.end {
            RunEnd::Converged => "the object is converged: the next run changes nothing".into(),
            RunEnd::Modified { step, description } => {
                format!("{step} would make the run's one modification: {description}")
            }
            RunEnd::Waiting { step, reason } => format!("the next run waits at {step}: {reason}"),
            RunEnd::Done { step, reason } => format!("the next run ends at {step}: {reason}"),
            RunEnd::Failed {
                step: Some(step),
                error,
            } if is_external_stop(error) => {
                format!("{step} would make the run's one modification, outside Kubernetes")
            }
            RunEnd::Failed {
                step: Some(step),
                error,
            } => format!("the next run fails at {step}: {error}"),
            RunEnd::Failed { step: None, error } => format!("the next run fails: {error}"),
            RunEnd::FinalizerAdded => {
                "the next run adds the operator's finalizer (before any step runs)".into()
            }
            RunEnd::FinalizerRemoved => {
                "cleanup is complete: the next run removes the finalizer, and the object goes"
                    .into()
            }
            RunEnd::Paused { step, reason, .. } => format!("paused before {step}: {reason}"),
            RunEnd::SkippedStale | RunEnd::Cancelled { .. } => "the run did not finish".into(),
        };
        writeln!(f, "next: {next}")?;
        writeln!(
            f,
            "nothing was changed: every write was sent with dryRun=All"
        )
    }
}

/// An `explain` command line: the object to explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The object's name.
    pub name: String,
    /// `-n`/`--namespace`; the kubeconfig's namespace when absent.
    pub namespace: Option<String>,
    /// The `kind/` (or `plural.group/`) written before the name, if any: checked against the
    /// operator's resource.
    pub kind: Option<String>,
}

/// How to call `explain`.
pub const USAGE: &str = "usage: explain [KIND/]NAME [-n NAMESPACE]";

impl Command {
    /// Reads `args` (without the program name). `None` when they are not an `explain`
    /// command; `Some(Err(message))` when they are, but malformed.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Option<Result<Command, String>> {
        let mut args = args.into_iter();
        if args.next().as_deref() != Some("explain") {
            return None;
        }
        Some(Self::parse_rest(args))
    }

    fn parse_rest(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
        let (mut object, mut namespace) = (None, None);
        while let Some(a) = args.next() {
            if let Some(ns) = a
                .strip_prefix("--namespace=")
                .or_else(|| a.strip_prefix("-n="))
            {
                namespace = Some(ns.to_string());
            } else if a == "-n" || a == "--namespace" {
                namespace = Some(args.next().ok_or(format!("{a} needs a value; {USAGE}"))?);
            } else if a.starts_with('-') {
                return Err(format!("unknown flag {a:?}; {USAGE}"));
            } else if object.replace(a).is_some() {
                return Err(format!("explain takes one object; {USAGE}"));
            }
        }
        let object = object.ok_or(format!("which object? {USAGE}"))?;
        let (kind, name) = match object.rsplit_once('/') {
            Some((k, n)) => (Some(k.to_string()), n.to_string()),
            None => (None, object),
        };
        if name.is_empty() || namespace.as_deref() == Some("") {
            return Err(format!("an empty name or namespace; {USAGE}"));
        }
        Ok(Command {
            name,
            namespace,
            kind,
        })
    }

    /// Whether `kind` (as written on the command line) names the resource `K`: its kind, plural
    /// or short forms as kubectl accepts them (`foo`, `foos`, `Foo`, `foos.example.com`).
    pub(crate) fn names<K: kube::Resource<DynamicType = ()>>(kind: &str) -> bool {
        let kind = kind.to_ascii_lowercase();
        let group = K::group(&());
        let forms = [
            K::plural(&()).to_string(),
            K::kind(&()).to_ascii_lowercase(),
        ];
        forms
            .iter()
            .any(|n| kind == *n || (!group.is_empty() && kind == format!("{n}.{group}")))
    }
}

/// The one-line hook that makes an operator binary a kubectl plugin: when the process was
/// started as `... explain [KIND/]NAME [-n NAMESPACE]`, explains that object, prints the
/// explanation and exits (0 when explained, 1 when the object could not be read, 2 on a usage
/// error). With any other arguments it returns at once and the caller goes on (to run the
/// operator). See the [module docs](self).
pub async fn from_args<K, S, M, C>(operator: &crate::Operator<K, S, M, C>)
where
    K: crate::Watchable,
    K::Scope: crate::ApiScope,
    S: Send + Sync + 'static,
    M: crate::Stairs<K, S>,
    C: crate::Stairs<K, S>,
{
    let Some(cmd) = Command::parse(std::env::args().skip(1)) else {
        return;
    };
    let code = match cmd {
        Err(usage) => {
            eprintln!("{usage}");
            2
        }
        Ok(cmd) => match operator.explain_named(&cmd).await {
            Ok(e) => {
                print!("{e}");
                0
            }
            Err(e) => {
                eprintln!("{e}");
                1
            }
        },
    };
    exit(code)
}

/// Ends a command-line hook's process with `code`, after what it printed.
pub(crate) fn exit(code: i32) -> ! {
    // `exit` runs no destructors: what was printed must be out first.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Option<Result<Command, String>> {
        Command::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn command_lines() {
        assert_eq!(parse("run"), None);
        assert_eq!(parse(""), None);
        let c = parse("explain foo/web -n prod").unwrap().unwrap();
        assert_eq!(
            c,
            Command {
                name: "web".into(),
                namespace: Some("prod".into()),
                kind: Some("foo".into())
            }
        );
        assert_eq!(
            parse("explain --namespace=x web")
                .unwrap()
                .unwrap()
                .namespace,
            Some("x".into())
        );
        assert!(
            parse("explain")
                .unwrap()
                .unwrap_err()
                .contains("which object")
        );
        assert!(
            parse("explain a b")
                .unwrap()
                .unwrap_err()
                .contains("one object")
        );
        assert!(
            parse("explain a -n")
                .unwrap()
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            parse("explain a --watch")
                .unwrap()
                .unwrap_err()
                .contains("unknown flag")
        );
    }

    #[test]
    fn kinds_as_kubectl_writes_them() {
        use k8s_openapi::api::apps::v1::Deployment;
        use k8s_openapi::api::core::v1::ConfigMap;
        for ok in ["configmap", "configmaps", "ConfigMap"] {
            assert!(Command::names::<ConfigMap>(ok), "{ok}");
        }
        for ok in ["deployments.apps", "deployment.apps", "deployment"] {
            assert!(Command::names::<Deployment>(ok), "{ok}");
        }
        assert!(!Command::names::<ConfigMap>("secret"));
        assert!(!Command::names::<Deployment>("deployments.batch"));
    }
}
