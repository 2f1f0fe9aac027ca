//! A cheap smoke run of the benchmark harness (tiny N, one repetition), so it cannot rot.
//! No timing assertions: both variants converge and the report carries every figure.

use staircase_bench::harness::{self, Options};
use staircase_bench::report::{self, Machine, Report};

#[test]
fn harness_smoke_run_converges_both_variants_and_reports_every_figure() {
    let o = Options {
        n: 20,
        reps: 1,
        settle_ms: 100,
        timeout_s: 20,
        ..Options::default()
    };
    let samples = harness::run_all(&o, |l| eprintln!("{l}")).expect("harness runs");
    assert_eq!(samples.len(), 2 * harness::scenarios(&o).len());
    for s in &samples {
        assert!(
            s.run.converged,
            "{:?} did not converge: {:?}",
            s.variant, s.run
        );
        assert_eq!(
            s.run.patches,
            20 * 5,
            "{:?}: one patch per required change",
            s.variant
        );
    }
    let report = Report {
        machine: Machine::describe(),
        rows: report::rows(&o, &samples),
        options: o,
        compile: None,
        notes: report::notes(),
        samples,
    };
    for fig in 1..=4 {
        assert!(
            report.rows.iter().any(|r| r.figure == fig),
            "figure {fig} missing"
        );
    }
    for r in report.rows.iter().filter(|r| r.figure == 1) {
        assert!(
            r.staircase.median.is_finite() && r.hand.median.is_finite(),
            "{r:?}"
        );
    }
    let md = report.markdown();
    assert!(
        md.contains("Figure 5"),
        "figure 5 is reported (as not measured here)"
    );
    serde_json::to_string(&report).expect("JSON");
}
