//! `staircase-bench-reads`: what a staircase's reads of its children cost, cached and live
//! (`staircase_bench::reads`); writes `latest.md` and `latest.json` into `--out`.
//!
//! ```text
//! cargo run --release -p staircase-bench --bin staircase-bench-reads -- \
//!     [--n 1000] [--resync-s 10] [--concurrency 16] [--timeout-s 600] [--out DIR]
//! ```

#[global_allocator]
static GLOBAL: staircase_bench::alloc::Counting = staircase_bench::alloc::Counting;

use std::path::PathBuf;
use std::time::Duration;

use staircase_bench::reads::{self, Options};
use staircase_bench::report::{Machine, loadavg};

const USAGE: &str = "staircase-bench-reads [--n 1000] [--resync-s 10] [--concurrency 16] [--timeout-s 600] [--out DIR]";

fn main() -> anyhow::Result<()> {
    let mut o = Options {
        n: 1000,
        resync: Duration::from_secs(10),
        concurrency: 16,
        timeout: Duration::from_secs(600),
    };
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--n" => o.n = val()?.parse()?,
            "--resync-s" => o.resync = Duration::from_secs(val()?.parse()?),
            "--concurrency" => o.concurrency = val()?.parse()?,
            "--timeout-s" => o.timeout = Duration::from_secs(val()?.parse()?),
            "--out" => out = Some(val()?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    let out = out.unwrap_or_else(|| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results"))
            .join(format!("reads-n{}", o.n))
    });
    let mut machine = Machine::describe();
    let (figures, mem) = reads::run(&o)?;
    machine.loadavg_end = loadavg();
    let about = format!(
        "Machine: {} CPUs ({}), {}, {}, {} build, server and operator threads pinned: {}; \
         load average {} at the start, {} at the end.",
        machine.nproc,
        machine.cpu,
        machine.memory,
        machine.rustc,
        machine.profile,
        machine.pinned,
        machine.loadavg_start,
        machine.loadavg_end
    );
    let md = reads::markdown(&o, &figures, &mem, &about);
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("latest.md"), &md)?;
    let json = serde_json::json!({
        "machine": machine,
        "n": o.n,
        "resync_s": o.resync.as_secs(),
        "concurrency": o.concurrency,
        "variants": figures,
        "store_memory": mem,
    });
    std::fs::write(
        out.join("latest.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    println!("{md}");
    Ok(())
}
