//! `staircase-bench`: runs the staircase and the hand-written controller side by side, measures
//! the compile cost of the DSL, and writes `latest.{md,json}` into `--out` (default
//! `bench/results/`). The files are rewritten after every repetition (marked partial until the
//! run ends), so an interrupted run still leaves what it measured.
//!
//! ```text
//! cargo run --release -p staircase-bench -- [--n N] [--reps R] [--concurrency C]
//!     [--delays 0,2,10] [--latency-ms 5] [--settle-ms 300] [--timeout-s 300] [--no-status]
//!     [--no-compile | --only-compile] [--compile-reps 3] [--out DIR]
//! ```

#[global_allocator]
static GLOBAL: staircase_bench::alloc::Counting = staircase_bench::alloc::Counting;

use std::path::{Path, PathBuf};

use staircase_bench::harness::{self, Options, Sample};
use staircase_bench::report::{self, Machine, Report};

const USAGE: &str = "staircase-bench [--n N] [--reps R] [--concurrency C] [--delays 0,2,10] \
                     [--latency-ms 5] [--settle-ms 300] [--timeout-s 300] [--no-status] \
                     [--no-compile | --only-compile] [--compile-reps 3] [--out DIR]";

fn main() -> anyhow::Result<()> {
    let mut o = Options::default();
    let mut compile = true;
    // `--only-compile`: figure 5 alone (figures 1–4 are skipped).
    let mut only_compile = false;
    // Incremental builds take a few tenths of a second: enough samples for a stable median.
    let mut compile_reps = 9;
    let mut out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results"));
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--n" => o.n = val()?.parse()?,
            "--reps" => o.reps = val()?.parse()?,
            "--concurrency" => o.concurrency = val()?.parse()?,
            "--delays" => {
                o.delays_ms = val()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--latency-ms" => o.latency_ms = val()?.parse()?,
            "--settle-ms" => o.settle_ms = val()?.parse()?,
            "--timeout-s" => o.timeout_s = val()?.parse()?,
            "--no-status" => o.status = false,
            // Kept for old command lines: figure 5 is measured by default now.
            "--compile" => compile = true,
            "--no-compile" => compile = false,
            "--only-compile" => only_compile = true,
            "--compile-reps" => compile_reps = val()?.parse()?,
            "--out" => out = val()?.into(),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    anyhow::ensure!(!o.delays_ms.is_empty(), "--delays needs at least one value");
    anyhow::ensure!(
        !only_compile || compile,
        "--only-compile and --no-compile exclude each other"
    );
    std::fs::create_dir_all(&out)?;
    let mut report = Report {
        complete: false,
        reps_done: 0,
        machine: Machine::describe(),
        rows: Vec::new(),
        options: o.clone(),
        compile: None,
        compile_error: None,
        notes: report::notes(),
        samples: Vec::new(),
    };
    eprintln!("{:?}\n{o:?}", report.machine);
    let update = |report: &mut Report, samples: &[Sample]| {
        report.reps_done = samples.iter().map(|s| s.rep + 1).max().unwrap_or(0);
        report.rows = report::rows(&o, samples);
        report.samples = samples.to_vec();
        report.machine.loadavg_end = report::loadavg();
    };
    if !only_compile {
        let samples = harness::run_all(
            &o,
            |l| eprintln!("{l}"),
            |samples| {
                update(&mut report, samples);
                if let Err(e) = write(&out, &report) {
                    eprintln!("could not write partial results: {e}");
                }
            },
        )?;
        update(&mut report, &samples);
    }
    if compile {
        eprintln!("figure 5: building fixtures …");
        match staircase_bench::compile::measure(compile_reps) {
            Ok(c) => report.compile = Some(c),
            Err(e) => {
                eprintln!("figure 5 not measured: {e}");
                report.compile_error = Some(e.to_string());
            }
        }
    }
    report.machine.loadavg_end = report::loadavg();
    report.complete = true;
    let md = write(&out, &report)?;
    println!("{md}");
    eprintln!("wrote {}/latest.{{md,json}}", out.display());
    Ok(())
}

/// Writes `latest.md` and `latest.json` into `out`; returns the markdown.
fn write(out: &Path, report: &Report) -> anyhow::Result<String> {
    let md = report.markdown();
    std::fs::write(out.join("latest.md"), &md)?;
    std::fs::write(
        out.join("latest.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    Ok(md)
}
