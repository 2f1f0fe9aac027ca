//! Figure 5: compile cost of the DSL. Builds two fixture crates (examples of this package, built
//! as rlibs, dev profile, dependencies already built): a 20-step staircase and its hand-written
//! equivalent. "Clean" = the fixture crate rebuilt from scratch with `CARGO_INCREMENTAL=0`
//! after its source was touched; "incremental" = rebuilt with the incremental cache after a
//! trivial edit (a comment appended). Wall-clock time of the `cargo` command, median of `reps`.
//! Expanded lines: `cargo rustc -- -Zunpretty=expanded` under `RUSTC_BOOTSTRAP=1` (the
//! stable compiler's escape hatch for unstable flags) — reported as not measured if that fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::Serialize;

use crate::report::Stat;

/// One fixture's compile figures.
#[derive(Debug, Clone, Serialize)]
pub struct Fixture {
    /// Example name.
    pub name: String,
    /// Clean build of the fixture crate, s.
    pub clean_s: Stat,
    /// Incremental rebuild after a trivial edit, s.
    pub incremental_s: Stat,
    /// Lines of `-Zunpretty=expanded` output (None: not measured).
    pub expanded_lines: Option<usize>,
    /// Source lines.
    pub source_lines: usize,
    /// rustc's `expand_crate` pass time from `-Ztime-passes`, s (None: not measured).
    pub expand_s: Option<f64>,
}

/// Figure 5.
#[derive(Debug, Clone, Serialize)]
pub struct Compile {
    /// The 20-step staircase.
    pub dsl: Fixture,
    /// The hand-written equivalent.
    pub hand: Fixture,
}

impl Compile {
    /// Markdown section.
    pub fn markdown(&self) -> String {
        let (a, b) = (&self.dsl, &self.hand);
        let opt = |x: Option<usize>| x.map_or("not measured".to_string(), |v| v.to_string());
        let opts = |x: Option<f64>| x.map_or("not measured".to_string(), |v| format!("{:.3}", v));
        let expand_per = match (a.expand_s, b.expand_s) {
            (Some(x), Some(y)) => format!("{:.2} ms", (x - y) * 1e3 / 21.0),
            _ => "not measured".into(),
        };
        format!(
            "### Figure 5: compile cost (20 steps, dev profile, fixture crate only)\n\n\
             | metric | staircase DSL (A) | hand-written (B) | A/B | target |\n|---|---|---|---|---|\n\
             | clean build of the crate, s | {} | {} | {:.2} | — |\n\
             | incremental rebuild, s | {} | {} | {:.2} | ≤ 1.1× |\n\
             | source lines | {} | {} | {:.2} | — |\n\
             | expanded lines (`-Zunpretty=expanded`) | {} | {} | {} | — |\n\
             | `expand_crate` pass (`-Ztime-passes`), s | {} | {} | — | — |\n\
             | extra expansion time per macro invocation (21: 20 `#[step]` + 1 `staircase!`) | {} | | | ≤ 2 ms |\n",
            a.clean_s.median_str(),
            b.clean_s.median_str(),
            a.clean_s.median / b.clean_s.median,
            a.incremental_s.median_str(),
            b.incremental_s.median_str(),
            a.incremental_s.median / b.incremental_s.median,
            a.source_lines,
            b.source_lines,
            a.source_lines as f64 / b.source_lines as f64,
            opt(a.expanded_lines),
            opt(b.expanded_lines),
            match (a.expanded_lines, b.expanded_lines) {
                (Some(x), Some(y)) => format!("{:.2}", x as f64 / y as f64),
                _ => "—".into(),
            },
            opts(a.expand_s),
            opts(b.expand_s),
            expand_per,
        )
    }
}

impl Stat {
    fn median_str(&self) -> String {
        format!("{:.2} ({:.2}–{:.2})", self.median, self.min, self.max)
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn cargo(args: &[&str], incremental: bool) -> anyhow::Result<(f64, String, String)> {
    let started = Instant::now();
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(workspace())
        .env("CARGO_INCREMENTAL", if incremental { "1" } else { "0" })
        .env("RUSTC_BOOTSTRAP", "1")
        .output()?;
    let s = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    anyhow::ensure!(out.status.success(), "cargo {args:?} failed: {stderr}");
    Ok((s, String::from_utf8_lossy(&out.stdout).to_string(), stderr))
}

fn touch(path: &Path, edit: bool) -> anyhow::Result<()> {
    let mut text = std::fs::read_to_string(path)?;
    if edit {
        // A trivial edit that changes the source but not the program.
        if text.ends_with("// edit\n") {
            text.truncate(text.len() - "// edit\n".len());
        } else {
            text.push_str("// edit\n");
        }
    }
    std::fs::write(path, text)?;
    Ok(())
}

fn fixture(name: &str, file: &str, reps: usize) -> anyhow::Result<Fixture> {
    let path = workspace().join("bench/fixtures").join(file);
    let build = ["build", "-p", "staircase-bench", "--example", name];
    cargo(&build, true)?; // dependencies
    let mut clean = Vec::new();
    for _ in 0..reps {
        touch(&path, false)?;
        clean.push(cargo(&build, false)?.0);
    }
    cargo(&build, true)?; // populate the incremental cache
    let mut incr = Vec::new();
    for _ in 0..reps {
        touch(&path, true)?;
        incr.push(cargo(&build, true)?.0);
    }
    // Leave the file as it was.
    let text = std::fs::read_to_string(&path)?;
    if let Some(t) = text.strip_suffix("// edit\n") {
        std::fs::write(&path, t)?;
    }
    let expanded = cargo(
        &[
            "rustc",
            "-p",
            "staircase-bench",
            "--example",
            name,
            "--",
            "-Zunpretty=expanded",
        ],
        false,
    )
    .ok()
    .map(|(_, out, _)| out.lines().count());
    touch(&path, false)?;
    let expand_s = cargo(
        &[
            "rustc",
            "-p",
            "staircase-bench",
            "--example",
            name,
            "--",
            "-Ztime-passes",
        ],
        false,
    )
    .ok()
    .and_then(|(_, out, err)| {
        (out + &err)
            .lines()
            .find(|l| l.contains("expand_crate"))
            .and_then(|l| {
                l.split(';')
                    .next()?
                    .trim()
                    .strip_prefix("time:")?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
    });
    Ok(Fixture {
        name: name.into(),
        clean_s: Stat::of(clean),
        incremental_s: Stat::of(incr),
        expanded_lines: expanded,
        source_lines: std::fs::read_to_string(&path)?.lines().count(),
        expand_s,
    })
}

/// Measures figure 5 (`reps` builds each).
pub fn measure(reps: usize) -> anyhow::Result<Compile> {
    Ok(Compile {
        dsl: fixture("fixture_dsl20", "dsl20.rs", reps)?,
        hand: fixture("fixture_hand20", "hand20.rs", reps)?,
    })
}
