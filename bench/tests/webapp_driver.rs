//! The webapp benchmark end to end at N = 3: the real driver binary runs all three operators
//! (staircase, kube-runtime and the Go controller-runtime one) as processes against a
//! `staircase-apiserver` process, and its results hold every phase of every variant with every
//! WebApp converged and cleaned up. Timings are not checked: this keeps the code paths alive.
//!
//! Two binaries are not built by cargo for this test:
//! - `staircase-apiserver`: `cargo build -p staircase-apiserver --features cli --bin
//!   staircase-apiserver`, looked up beside this crate's binaries (or `STAIRCASE_APISERVER_BIN`);
//! - `webapp-go`: `bash bench/webapp-go/build.sh`, in the Kubernetes cache
//!   (`STAIRCASE_K8S_CACHE`, default `~/.cache/staircase/k8s-v1.37.2`; or `WEBAPP_GO_BIN`).
//!
//! When one is missing the test is skipped with a message, and fails under `CI=true` (as the
//! real kube-apiserver tests do).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

const N: u64 = 3;
const VARIANTS: [&str; 3] = ["staircase", "kube-runtime", "controller-runtime"];
const PHASES: [&str; 5] = ["create", "edit", "idle", "restart", "delete"];

fn binaries(driver: &Path) -> (PathBuf, PathBuf) {
    let server = std::env::var_os("STAIRCASE_APISERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| driver.with_file_name("staircase-apiserver"));
    let go = std::env::var_os("WEBAPP_GO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var("STAIRCASE_K8S_CACHE").unwrap_or_else(|_| {
                let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
                format!("{home}/.cache/staircase/k8s-v1.37.2")
            });
            PathBuf::from(cache).join("bin/webapp-go")
        });
    (server, go)
}

#[test]
fn the_driver_runs_every_variant_through_every_phase() {
    let driver = Path::new(env!("CARGO_BIN_EXE_staircase-bench-webapp"));
    let (server, go) = binaries(driver);
    let missing: Vec<String> = [
        (
            &server,
            "cargo build -p staircase-apiserver --features cli --bin staircase-apiserver",
        ),
        (&go, "bash bench/webapp-go/build.sh"),
    ]
    .iter()
    .filter(|(path, _)| !path.exists())
    .map(|(path, how)| format!("{} (build it with `{how}`)", path.display()))
    .collect();
    if !missing.is_empty() {
        let e = format!("missing {}", missing.join(", "));
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{e}\n(CI=true: a missing binary is a failure, not a skip)");
        }
        // To the stderr handle, not `eprintln!`, so libtest's capture does not hide the skip.
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED the_driver_runs_every_variant_through_every_phase: {e}"
        );
        return;
    }

    let out = std::env::temp_dir().join(format!("webapp-driver-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let started = Instant::now();
    let run = Command::new(driver)
        .args([
            "--n",
            &N.to_string(),
            "--resync-s",
            "2",
            "--timeout-s",
            "60",
        ])
        .arg("--server-bin")
        .arg(&server)
        .arg("--go-bin")
        .arg(&go)
        .arg("--out")
        .arg(&out)
        // The test shares the machine with whatever else runs: no CPU pinning.
        .env("STAIRCASE_BENCH_NO_PIN", "1")
        .output()
        .expect("the driver starts");
    // Its progress (stderr) only when it failed; its report (stdout) is in latest.md.
    assert!(
        run.status.success(),
        "the driver failed ({}):\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let _ = writeln!(
        std::io::stderr().lock(),
        "the driver ran three variants at N = {N} in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("latest.json")).expect("latest.json written"),
    )
    .expect("latest.json parses");
    assert_eq!(json["n"], N);
    let variants = json["variants"].as_array().expect("variants");
    let names: Vec<String> = variants
        .iter()
        .map(|v| serde_json::from_value::<String>(v["variant"].clone()).unwrap())
        .collect();
    assert_eq!(
        names,
        ["Staircase", "KubeRuntime", "ControllerRuntime"],
        "every variant, in order"
    );
    for (v, name) in variants.iter().zip(VARIANTS) {
        let phases: Vec<&str> = v["phases"]
            .as_array()
            .expect("phases")
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(phases, PHASES, "{name}: every phase");
        let phase = |i: usize| &v["phases"][i];
        // create and edit: the driver's watch saw every WebApp Ready (the phase only ends when
        // all are), and the operator wrote.
        for i in [0, 1] {
            let p = phase(i);
            assert_eq!(
                p["ready_s"].as_array().map(Vec::len),
                Some(N as usize),
                "{name} {}: every WebApp seen Ready",
                PHASES[i]
            );
            assert!(
                p["operator"]["writes"].as_u64().unwrap() > 0,
                "{name} {}: the operator wrote",
                PHASES[i]
            );
        }
        // The deletion ran the finalizer for every WebApp, and the children went with them.
        assert_eq!(v["records_left"], 0, "{name}: external records removed");
        assert_eq!(v["children_left"], 0, "{name}: children removed");
    }
    for file in ["latest.md", "requests.svg", "cpu.svg", "converge.svg"] {
        let text = std::fs::read_to_string(out.join(file)).unwrap_or_default();
        for name in VARIANTS {
            assert!(text.contains(name), "{file} mentions {name}");
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}
