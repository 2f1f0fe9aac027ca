//! Compile tests of `#[step]` and `staircase!`: `ui/pass` must compile, `ui/fail` must fail with
//! exactly the diagnostics in the `.stderr` next to each case.
//!
//! Compiler messages change between Rust versions, so the `.stderr` snapshots are only checked
//! with the compiler they were recorded with (`RUSTC_VERSION`). Re-record with
//! `TRYBUILD=overwrite cargo test -p staircase-ui-tests` and update `RUSTC_VERSION`.

use std::process::Command;

/// The `x.y.z` of the compiler cargo uses for the test cases.
fn rustc_version() -> Option<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let out = Command::new(rustc).arg("--version").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    text.split_whitespace().nth(1).map(str::to_string)
}

#[test]
fn ui() {
    // trybuild builds the cases as a project of its own (under `target/tests/trybuild`) with
    // cargo's default profile. Without debug info, like the workspace's dependencies (see the
    // workspace's Cargo.toml), that build takes a fraction of the disk and links in a fraction
    // of the memory.
    // SAFETY: this is the binary's only test, and nothing else runs while it sets the variable.
    unsafe { std::env::set_var("CARGO_PROFILE_DEV_DEBUG", "false") };
    let recorded = include_str!("RUSTC_VERSION").trim();
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    match rustc_version() {
        Some(running) if running == recorded => t.compile_fail("ui/fail/*.rs"),
        running => {
            let running = running.as_deref().unwrap_or("an unknown version");
            let rule = "*".repeat(76);
            eprintln!(
                "\n{rule}\n\
                 *** SKIPPING the compile-fail UI tests of staircase's macros\n\
                 *** their .stderr snapshots were recorded with rustc {recorded},\n\
                 *** but the compiler here is rustc {running}.\n\
                 *** Run them with rustc {recorded}, or re-record them with\n\
                 ***   TRYBUILD=overwrite cargo test -p staircase-ui-tests\n\
                 *** and put the new version into ui-tests/RUSTC_VERSION.\n\
                 {rule}\n"
            );
        }
    }
}
