//! `staircase-bench`: runs the staircase and the hand-written controller side by side and
//! writes `bench/results/latest.{md,json}`.
//!
//! ```text
//! cargo run --release -p staircase-bench -- [--n N] [--reps R] [--concurrency C]
//!     [--delays 0,2,10] [--latency-ms 5] [--no-status] [--compile] [--out DIR]
//! ```

use std::path::PathBuf;

use staircase_bench::harness::{self, Options};
use staircase_bench::report::{self, Machine, Report};

fn main() -> anyhow::Result<()> {
    let mut o = Options::default();
    let mut compile = false;
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
            "--no-status" => o.status = false,
            "--compile" => compile = true,
            "--out" => out = val()?.into(),
            "-h" | "--help" => {
                println!(
                    "staircase-bench [--n N] [--reps R] [--concurrency C] [--delays 0,2,10] \
                     [--latency-ms 5] [--settle-ms 300] [--no-status] [--compile] [--out DIR]"
                );
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let mut machine = Machine::describe();
    eprintln!("{machine:?}\n{o:?}");
    let samples = harness::run_all(&o, |l| eprintln!("{l}"))?;
    let compile = if compile {
        eprintln!("figure 5: building fixtures …");
        match staircase_bench::compile::measure(3) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("figure 5 not measured: {e}");
                None
            }
        }
    } else {
        None
    };
    machine.loadavg_end = report::loadavg();
    let report = Report {
        machine,
        rows: report::rows(&o, &samples),
        options: o,
        compile,
        notes: report::notes(),
        samples,
    };
    std::fs::create_dir_all(&out)?;
    let md = report.markdown();
    std::fs::write(out.join("latest.md"), &md)?;
    std::fs::write(
        out.join("latest.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("{md}");
    Ok(())
}
