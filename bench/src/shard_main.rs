//! `staircase-bench-shard`: sharding's throughput with replicas, rebalance and loss
//! (`staircase_bench::shard`); writes `latest.md` and `latest.json` into `--out`.
//!
//! ```text
//! cargo run --release -p staircase-bench --bin staircase-bench-shard -- \
//!     [--n 1000] [--concurrency 4] [--rtt-ms 5] [--replicas 1,2,4] [--timeout-s 300] [--out DIR]
//! ```

use std::path::PathBuf;
use std::time::Duration;

use staircase_bench::report::{Machine, loadavg};
use staircase_bench::shard::{self, Options};

const USAGE: &str = "staircase-bench-shard [--n 1000] [--concurrency 4] [--rtt-ms 5] [--replicas 1,2,4] [--timeout-s 300] [--out DIR]";

fn main() -> anyhow::Result<()> {
    let mut o = Options {
        n: 1000,
        concurrency: 4,
        rtt: Duration::from_millis(5),
        replicas: vec![1, 2, 4],
        lease: (
            Duration::from_secs(3),
            Duration::from_secs(2),
            Duration::from_millis(400),
        ),
        timeout: Duration::from_secs(300),
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
            "--concurrency" => o.concurrency = val()?.parse()?,
            "--rtt-ms" => o.rtt = Duration::from_millis(val()?.parse()?),
            "--replicas" => {
                o.replicas = val()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
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
            .join(format!("shard-n{}", o.n))
    });
    let mut machine = Machine::describe();
    staircase_bench::cpu::pin_this_thread(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (rows, rebalance) = rt.block_on(shard::run(&o))?;
    machine.loadavg_end = loadavg();
    let about = format!(
        "Machine: {} CPUs ({}), {}, {}, {} build, threads pinned: {}; load average {} at the \
         start, {} at the end.",
        machine.nproc,
        machine.cpu,
        machine.memory,
        machine.rustc,
        machine.profile,
        machine.pinned,
        machine.loadavg_start,
        machine.loadavg_end
    );
    let md = shard::markdown(&o, &rows, &rebalance, &about);
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("latest.md"), &md)?;
    let json = serde_json::json!({
        "machine": machine,
        "options": o,
        "throughput": rows,
        "rebalance": rebalance,
    });
    std::fs::write(
        out.join("latest.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    print!("{md}");
    Ok(())
}
