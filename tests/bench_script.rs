//! bench/run, the benchmark, in one tiny round against this build, so the
//! script does not rot. Not a benchmark: no figure is checked, only that
//! every run completed with every echo counted and checksummed. websocat,
//! wscat and the raw TCP reference are left out (they need an install and
//! socat); the compressed feed runs with tether and the tests' Python venv.

use std::process::Command;

#[test]
fn the_benchmark_script_completes_one_tiny_round() {
    let python = std::env::var_os("TETHER_PYTHON").unwrap_or_else(|| "python3".into());
    let out = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/run"))
        .args([
            "--no-websocat",
            "--no-raw",
            "--rounds",
            "1",
            "--lines",
            "2000",
        ])
        .args(["--bulk-msgs", "3", "--smoke-reps", "2", "--rss-mib", "4"])
        .args(["--lat-msgs", "200", "--lat-warmup", "20"])
        .args(["--feed-msgs", "2000", "--feed-clients", "tether,python"])
        .arg("--feed-python")
        .arg(crate::support::python::PythonPeer::python())
        .args(["--tether", env!("CARGO_BIN_EXE_tether")])
        .output()
        .expect("running bench/run with python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench/run failed ({})\n{stdout}\n{stderr}",
        out.status
    );
    for row in [
        "Round trip",
        "Bulk",
        "Smoke",
        "Request/response p50",
        "Request/response p99",
        "Peak RSS, 4 MiB binary stream",
        "Compressed feed: 2,000 JSON messages",
        "python-ws",
    ] {
        assert!(stdout.contains(row), "no {row:?} row:\n{stdout}");
    }
    assert!(!stdout.contains("Failures"), "{stdout}");
}
