//! The explorer's report: a compact table per scenario and every failure with a reproduction.

use std::fmt;
use std::time::Duration;

/// One failed case.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The scenario.
    pub scenario: String,
    /// The variant (`crash`, `lost-response`, `stale-view`, `lost-events`, `idle`, `random`,
    /// `random-loop`, or `reference`).
    pub variant: String,
    /// Which case: the write index, lag, drop probability or seed.
    pub case: String,
    /// The phase (action index) where it went wrong and the action.
    pub phase: String,
    /// What went wrong, with a diff for end-state mismatches.
    pub problem: String,
    /// A command that runs exactly this case again.
    pub reproduce: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "✗ {} / {} / {} at {}",
            self.scenario, self.variant, self.case, self.phase
        )?;
        for line in self.problem.lines() {
            writeln!(f, "    {line}")?;
        }
        write!(f, "    reproduce: {}", self.reproduce)
    }
}

/// The figures of one variant of one scenario.
#[derive(Debug, Clone, Default)]
pub struct VariantStats {
    /// The variant's name.
    pub variant: String,
    /// Cases run.
    pub cases: u64,
    /// Cases that reached the reference end state after every phase.
    pub converged: u64,
    /// Creates (Kubernetes or external) beyond the reference's, summed over cases.
    pub duplicate_effects: u64,
    /// The most runs a case needed beyond the reference's.
    pub max_extra_runs: i64,
    /// Runs over all cases.
    pub runs: u64,
    /// The most runs one object needed to settle after one phase's action, in any case of the
    /// variant (stepwise variants; 0 for the controller-loop ones, whose runs overlap).
    pub max_settle_runs: u64,
    /// Failed cases.
    pub failed: u64,
    /// Variant-specific remark (e.g. how often a stalled watch had to be nudged).
    pub note: String,
    /// Wall time of the variant.
    pub elapsed: Duration,
}

/// The report of one scenario.
#[derive(Debug, Clone, Default)]
pub struct ScenarioReport {
    /// The scenario's name.
    pub scenario: String,
    /// Runs the reference needed.
    pub reference_runs: u64,
    /// Writes the reference made (the crash points).
    pub reference_writes: u64,
    /// One row per variant.
    pub variants: Vec<VariantStats>,
    /// Every failed case.
    pub failures: Vec<Failure>,
}

/// Everything the explorer found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One entry per scenario, in the order they were added.
    pub scenarios: Vec<ScenarioReport>,
    /// Wall time of the whole exploration.
    pub elapsed: Duration,
}

impl Report {
    /// Every failure of every scenario.
    pub fn failures(&self) -> impl Iterator<Item = &Failure> {
        self.scenarios.iter().flat_map(|s| &s.failures)
    }

    /// Cases run over all scenarios and variants.
    pub fn cases(&self) -> u64 {
        self.scenarios
            .iter()
            .flat_map(|s| &s.variants)
            .map(|v| v.cases)
            .sum()
    }

    /// Cases of `variant` (e.g. `random`) over all scenarios.
    pub fn cases_of(&self, variant: &str) -> u64 {
        self.scenarios
            .iter()
            .flat_map(|s| &s.variants)
            .filter(|v| v.variant == variant)
            .map(|v| v.cases)
            .sum()
    }

    /// Runs over all scenarios and variants.
    pub fn runs(&self) -> u64 {
        self.scenarios
            .iter()
            .flat_map(|s| &s.variants)
            .map(|v| v.runs)
            .sum()
    }

    /// The stats of `variant` in `scenario`.
    pub fn variant(&self, scenario: &str, variant: &str) -> Option<&VariantStats> {
        self.scenarios
            .iter()
            .find(|s| s.scenario == scenario)?
            .variants
            .iter()
            .find(|v| v.variant == variant)
    }

    /// Panics, naming each failing case and the command that reruns it, unless every case of
    /// every variant passed ([`run`](crate::explorer::Explorer::run) printed the full report). Returns the
    /// report, so tests can go on asserting on figures.
    #[track_caller]
    pub fn assert_all_converged(self) -> Self {
        // `run` printed the whole report, each failure's diff included: the panic names the
        // failures only, so a failing test's output shows every diff once.
        let failed: Vec<String> = self
            .failures()
            .map(|f| {
                format!(
                    "  {} / {} / {}: {}",
                    f.scenario, f.variant, f.case, f.reproduce
                )
            })
            .collect();
        if !failed.is_empty() {
            panic!(
                "the explorer found {} failing case(s) (their diffs are in the report above):\n{}",
                failed.len(),
                failed.join("\n")
            );
        }
        self
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.scenarios {
            writeln!(
                f,
                "scenario {:?}: reference {} runs, {} writes",
                s.scenario, s.reference_runs, s.reference_writes
            )?;
            writeln!(
                f,
                "  {:<16} {:>6} {:>9} {:>6} {:>9} {:>6} {:>7} {:>8}  note",
                "variant", "cases", "converged", "dups", "max+runs", "settle", "runs", "time"
            )?;
            for v in &s.variants {
                writeln!(
                    f,
                    "  {:<16} {:>6} {:>9} {:>6} {:>9} {:>6} {:>7} {:>7.2}s  {}",
                    v.variant,
                    v.cases,
                    v.converged,
                    v.duplicate_effects,
                    v.max_extra_runs,
                    v.max_settle_runs,
                    v.runs,
                    v.elapsed.as_secs_f64(),
                    v.note
                )?;
            }
            for fl in &s.failures {
                writeln!(f, "  {}", fl.to_string().replace('\n', "\n  "))?;
            }
        }
        write!(
            f,
            "{} cases ({} seeded random, {} random-loop), {} runs in {:.1}s; {} failures",
            self.cases(),
            self.cases_of("random"),
            self.cases_of("random-loop"),
            self.runs(),
            self.elapsed.as_secs_f64(),
            self.failures().count()
        )
    }
}
