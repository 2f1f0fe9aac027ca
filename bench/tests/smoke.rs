//! A cheap smoke run of the benchmark harness (tiny N, one repetition, every scenario including
//! watch lag > 0 and request latency), so it cannot rot. No timing assertions: both variants
//! converge, and the report carries every figure. Figure 5 needs real `cargo` builds (minutes
//! on first use), so here only its parsing and rendering run, on recorded compiler output.

#[global_allocator]
static GLOBAL: staircase_bench::alloc::Counting = staircase_bench::alloc::Counting;

use staircase_bench::compile::{self, Compile, Fixture};
use staircase_bench::harness::{self, Options};
use staircase_bench::report::{self, Machine, Report, Stat};

#[test]
fn harness_smoke_run_converges_both_variants_and_reports_every_figure() {
    let o = Options {
        n: 20,
        reps: 1,
        settle_ms: 100,
        timeout_s: 20,
        ..Options::default()
    };
    let mut reps_reported = 0;
    let samples =
        harness::run_all(&o, |l| eprintln!("{l}"), |_| reps_reported += 1).expect("harness runs");
    assert_eq!(
        reps_reported, 1,
        "partial results are offered after each repetition"
    );
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
        complete: true,
        reps_done: 1,
        machine: Machine::describe(),
        rows: report::rows(&o, &samples),
        options: o,
        compile: None,
        compile_error: None,
        notes: report::notes(),
        samples,
    };
    for fig in 1..=4 {
        assert!(
            report.rows.iter().any(|r| r.figure == fig),
            "figure {fig} missing"
        );
    }
    assert!(
        harness::scenarios(&report.options)
            .iter()
            .any(|s| s.delay_ms > 0),
        "a lagging watch is exercised"
    );
    for r in report
        .rows
        .iter()
        .filter(|r| r.figure == 1 || r.figure == 4)
    {
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

/// Figure 5's code path after the builds: parsing rustc's `-Ztime-passes` and `-Zmacro-stats`
/// output (as recorded from rustc 1.95) and rendering the section.
#[test]
fn compile_figure_parses_compiler_output_and_renders() {
    let passes = "time:   0.036; rss:   40MB ->   52MB (  +12MB)\texpand_crate\n";
    let stats = compile::macro_stats(
        "macro-stats #[step]                              20      1_480       74.0     66_045    3_302.2\n\
         macro-stats staircase!                            1          6        6.0        264      264.0\n",
    );
    let fixture = |expand: f64, stats: Vec<compile::MacroStat>| Fixture {
        name: "f".into(),
        clean_s: Stat::of(vec![1.0, 1.1]),
        incremental_s: Stat::of(vec![0.5]),
        clean_cpu_s: Stat::of(vec![0.9]),
        incremental_cpu_s: Stat::of(vec![0.4]),
        expanded_lines: Some(100),
        source_lines: 50,
        expand_s: Some(Stat::of(vec![expand])),
        dsl_macros: compile::dsl_macro_lines(&stats),
        macro_lines: Some(stats.iter().map(|m| m.lines).sum()),
        macro_stats: stats,
    };
    let c = Compile {
        dsl: fixture(compile::expand_time(passes).expect("parsed"), stats),
        hand: fixture(0.015, Vec::new()),
    };
    assert_eq!(c.dsl.dsl_macros, Some((21, 1486)));
    // (36 ms − 15 ms) ÷ 21 invocations.
    let per = c.expansion_ms_per_invocation().expect("measured");
    assert!((per - 1.0).abs() < 1e-9, "{per}");
    let md = c.markdown();
    assert!(md.contains("Figure 5") && md.contains("21 / 1486"), "{md}");
    assert!(md.contains("CPU time of the incremental rebuild"), "{md}");
}
