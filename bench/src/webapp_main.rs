//! `staircase-bench-webapp`: the webapp benchmark (`staircase_bench::webapp::driver`); writes
//! `latest.md`, `latest.json` and the figures (`requests.svg`, `cpu.svg`, `converge.svg`) into
//! `--out` (default `bench/results/webapp-n<N>/`). `--plot PATH/latest.json` only redraws the
//! figures of an earlier run, beside it.
//!
//! ```text
//! cargo build --release -p staircase-apiserver --features cli --bin staircase-apiserver
//! cargo build --release -p staircase-bench --bins
//! bench/webapp-go/build.sh
//! target/release/staircase-bench-webapp [--n 1000] [--resync-s 10] [--concurrency 16]
//!     [--variants staircase,kube-runtime,controller-runtime] [--timeout-s 600]
//!     [--tail-s S] [--server-bin PATH] [--go-bin PATH] [--out DIR]
//! target/release/staircase-bench-webapp --plot bench/results/webapp-n1000/latest.json
//! ```

use std::path::PathBuf;
use std::time::Duration;

use staircase_bench::report::{Machine, loadavg};
use staircase_bench::webapp::driver::{self, Options, Variant};
use staircase_bench::webapp::plot;

const USAGE: &str = "staircase-bench-webapp [--n 1000] [--resync-s 10] [--concurrency 16] \
[--variants staircase,kube-runtime,controller-runtime] [--timeout-s 600] [--tail-s S] [--server-bin PATH] [--go-bin PATH] [--out DIR]
staircase-bench-webapp --plot PATH/latest.json   (redraws the figures beside it)";

fn main() -> anyhow::Result<()> {
    let here = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let mut o = Options {
        n: 1000,
        resync: Duration::from_secs(10),
        concurrency: 16,
        timeout: Duration::from_secs(600),
        variants: Variant::ALL.to_vec(),
        server_bin: here.join("staircase-apiserver"),
        bin_dir: here.clone(),
        go_bin: PathBuf::from(
            std::env::var("STAIRCASE_K8S_CACHE")
                .unwrap_or_else(|_| format!("{home}/.cache/staircase/k8s-v1.37.2")),
        )
        .join("bin/webapp-go"),
        pin: staircase_bench::cpu::pinning(),
        tail: None,
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
            "--tail-s" => o.tail = Some(Duration::from_secs(val()?.parse()?)),
            "--server-bin" => o.server_bin = val()?.into(),
            "--go-bin" => o.go_bin = val()?.into(),
            "--out" => out = Some(val()?.into()),
            "--plot" => {
                let json = PathBuf::from(val()?);
                for svg in plot::draw_from(&json)? {
                    println!("{}", svg.display());
                }
                return Ok(());
            }
            "--variants" => {
                o.variants = val()?
                    .split(',')
                    .map(|name| {
                        Variant::ALL
                            .into_iter()
                            .find(|v| v.name() == name)
                            .ok_or_else(|| anyhow::anyhow!("unknown variant {name}"))
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    for (what, path) in [
        ("staircase-apiserver", &o.server_bin),
        ("webapp-staircase", &o.bin_dir.join("webapp-staircase")),
        ("webapp-kube", &o.bin_dir.join("webapp-kube")),
        ("webapp-go (bench/webapp-go/build.sh)", &o.go_bin),
    ] {
        anyhow::ensure!(path.exists(), "{what} not found at {}", path.display());
    }
    let out = out.unwrap_or_else(|| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results"))
            .join(format!("webapp-n{}", o.n))
    });
    let mut machine = Machine::describe();
    machine.pinned = o.pin;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut figures = Vec::new();
    for v in &o.variants {
        eprintln!("{}: N = {}", v.name(), o.n);
        figures.push(rt.block_on(driver::run_variant(&o, *v))?);
    }
    machine.loadavg_end = loadavg();
    let go_version = std::process::Command::new("go")
        .arg("version")
        .output()
        .map(|x| String::from_utf8_lossy(&x.stdout).trim().to_string())
        .unwrap_or_default();
    let about = format!(
        "Machine: {} CPUs ({}), {}, {}, {} build; {} for the controller-runtime variant \
         (controller-runtime v0.25.3, k8s.io/* v0.37.2). Load average {} at the start, {} at the end \
         (other engineers' builds share the machine).",
        machine.nproc,
        machine.cpu,
        machine.memory,
        machine.rustc,
        machine.profile,
        go_version,
        machine.loadavg_start,
        machine.loadavg_end
    );
    let md = driver::markdown(&o, &figures, &about);
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("latest.md"), &md)?;
    let json = serde_json::json!({
        "machine": machine,
        "go": go_version,
        "n": o.n,
        "resync_s": o.resync.as_secs(),
        "concurrency": o.concurrency,
        "variants": figures,
    });
    std::fs::write(
        out.join("latest.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    let svgs = plot::draw(&serde_json::from_value(json)?, &out)?;
    println!("{md}");
    // Last, so a script can show where the results went.
    eprintln!("results in {}:", out.display());
    for path in [out.join("latest.md"), out.join("latest.json")]
        .iter()
        .chain(&svgs)
    {
        eprintln!("  {}", path.display());
    }
    Ok(())
}
