//! `uaio bench` runs end to end with tiny runs: every workload gets a row
//! for every engine, each with positive numbers or a stated reason, and
//! `--json` parses. No time is asserted.

use std::process::{Command, Output};

use serde_json::Value;

fn bench(extra: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_uaio"))
        .args(["bench", "--duration", "0.05", "--rounds", "1", "--size", "8M"])
        .args(extra)
        .output()
        .expect("run uaio bench");
    assert!(
        out.status.success(),
        "uaio bench {extra:?} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The workload names, from `--list`.
fn workloads() -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_uaio")).args(["bench", "--list"]).output().expect("run uaio bench");
    assert!(out.status.success());
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert_eq!(names.len(), 14, "{names:?}");
    names
}

/// Reasons a row may give instead of numbers on some machines.
fn acceptable(workload: &str, engine: &str, reason: &str) -> bool {
    (engine == "kernel" && workload.starts_with("noop") && reason.contains("IOCB_CMD_NOOP"))
        || (workload.starts_with("direct") && reason.contains("O_DIRECT"))
        || (workload.starts_with("uncached") && reason.contains("page cache"))
        || (engine == "kernel" && reason.contains("kernel AIO unavailable"))
        // The host-wide aio-max-nr may be used up by other programs.
        || (engine == "kernel" && reason.contains("io_setup") && reason.contains("EAGAIN"))
        || (engine == "uaio-uring" && reason.contains("io_uring"))
}

#[test]
fn table_has_every_row_and_json_parses() {
    let names = workloads();
    let svg = std::env::temp_dir().join(format!("uaio-bench-test-{}.svg", std::process::id()));
    let out = bench(&["--json", "--svg", svg.to_str().unwrap()]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), names.len() * 3, "one result per workload and engine");
    for name in &names {
        for engine in ["kernel", "uaio-uring", "uaio-threads"] {
            let r = results
                .iter()
                .find(|r| r["workload"] == name.as_str() && r["engine"] == engine)
                .unwrap_or_else(|| panic!("no result for {name} on {engine}"));
            if r["available"].as_bool() == Some(true) {
                assert!(r["iops"].as_f64().unwrap() > 0.0, "{r}");
                assert!(r["lat_mean_us"].as_f64().unwrap() > 0.0, "{r}");
                assert!(r["lat_p99_us"].as_f64().unwrap() > 0.0, "{r}");
                assert_eq!(r["rounds"].as_array().unwrap().len(), 1, "{r}");
                if !name.starts_with("noop") {
                    assert!(r["mb_s"].as_f64().unwrap() > 0.0, "{r}");
                }
                if engine != "kernel"
                    && !name.starts_with("noop")
                    && results
                        .iter()
                        .any(|k| k["workload"] == name.as_str() && k["engine"] == "kernel" && k["available"] == true)
                {
                    assert!(r["ratio_to_kernel"].as_f64().unwrap() > 0.0, "{r}");
                }
            } else {
                let reason = r["reason"].as_str().unwrap_or("");
                assert!(acceptable(name, engine, reason), "{name} on {engine} did not run: {reason}");
            }
        }
    }
    let chart = std::fs::read_to_string(&svg).expect("--svg writes the chart");
    let _ = std::fs::remove_file(&svg);
    assert!(chart.starts_with("<svg") && chart.contains("ratio to kernel AIO"));

    // The table for people: every workload, every engine.
    let out = bench(&["--engines", "kernel,threads"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for name in &names {
        assert!(text.lines().any(|l| l.starts_with(name.as_str())), "no row for {name}:\n{text}");
    }
    assert!(text.contains("uaio-threads") && !text.contains("uaio-uring"), "{text}");
    assert!(text.contains("vs kernel"), "{text}");
}

#[test]
fn options() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_uaio")).arg("bench").args(args).output().unwrap();
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--duration"));
    assert_eq!(run(&["--no-such-flag"]).status.code(), Some(2));
    assert_eq!(run(&["--engines", "spdk"]).status.code(), Some(2));
    assert_eq!(run(&["--workloads", "no-such-workload"]).status.code(), Some(2));
    // A file larger than the file system's free space is refused before
    // a byte is written.
    let dir = tempfile::tempdir().expect("temp dir");
    let big = dir.path().join("big.dat");
    let o = run(&["--file", big.to_str().unwrap(), "--size", "1000T", "--duration", "0.05", "--rounds", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("free"), "{:?}\n{err}", o.status);
    assert_eq!(std::fs::metadata(&big).map(|m| m.len()).unwrap_or(0), 0, "bytes written");
    // Refused before any run (attack 31): more rounds than the limit, a
    // chart that cannot be written (after the whole run, before), a file
    // of /proc (said to need more free space), a directory that takes no
    // new file (said not to exist).
    assert_eq!(run(&["--rounds", "100000000000"]).status.code(), Some(2));
    let refused = |args: &[&str], says: &str| {
        let o = run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.code() == Some(1) && err.contains(says), "{args:?}: {:?}\n{err}", o.status);
        assert!(!String::from_utf8_lossy(&o.stdout).contains("runs of"), "{args:?} ran");
    };
    refused(&["--svg", "/nonexistent/chart.svg"], "cannot write /nonexistent/chart.svg");
    refused(&["--file", "/proc/self/status"], "/proc or /sys");
    refused(&["--dir", "/proc"], "no new file can be made in /proc");
}

/// A direct workload runs whenever the file holds one of its blocks, as
/// when it is selected alone: the 128 KiB block of the sequential one made
/// every direct row say the file was too small (attack 31).
#[test]
fn each_direct_workload_needs_only_its_own_block() {
    let out = Command::new(env!("CARGO_BIN_EXE_uaio"))
        .args(["bench", "--json", "--duration", "0.05", "--rounds", "1", "--size", "64k", "--engines", "kernel"])
        .args(["--workloads", "direct-read-4k-qd1,direct-seqread"])
        .output()
        .expect("run uaio bench");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows = v["results"].as_array().expect("results");
    assert_eq!(rows.len(), 2, "{v}");
    for r in rows {
        let why = r["reason"].as_str().unwrap_or("");
        let name = r["workload"].as_str().unwrap_or("");
        if name.starts_with("direct-seqread") {
            assert!(why.contains("smaller than one block (131072 B)"), "{r}");
        } else {
            // (O_DIRECT or kernel AIO may be unavailable here, for their
            // own reasons.)
            assert!(!why.contains("smaller than one block"), "{r}");
        }
    }
}

/// A `--file` that can only be read (here, on a read-only mount) runs the
/// reading workloads, and says why the writing ones do not run.
#[test]
fn a_read_only_file_runs_the_reads_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mnt = dir.path().to_str().unwrap().to_string();
    let sh = |cmd: &str| Command::new("sh").args(["-c", cmd]).status().is_ok_and(|s| s.success());
    if !sh(&format!("mount -t tmpfs -o size=16m tmpfs {mnt} 2>/dev/null")) {
        println!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    }
    let file = format!("{mnt}/data");
    let made = sh(&format!("head -c 1048576 /dev/zero > {file} && mount -o remount,ro {mnt}"));
    let out = made.then(|| {
        Command::new(env!("CARGO_BIN_EXE_uaio"))
            .args(["bench", "--json", "--duration", "0.05", "--rounds", "1", "--size", "1M", "--file", &file])
            .args(["--workloads", "cached-read-4k-qd1,buffered-write-4k-qd32"])
            .output()
            .expect("run uaio bench")
    });
    sh(&format!("umount {mnt}"));
    let out = out.expect("a read-only file on the mount");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for r in v["results"].as_array().expect("results") {
        let why = r["reason"].as_str().unwrap_or("");
        if r["workload"] == "buffered-write-4k-qd32" {
            assert!(why.contains("cannot be written"), "{r}");
        } else {
            // (Kernel AIO may be unavailable on the machine, for its own
            // reasons.)
            let ran = r["iops"].as_f64().is_some_and(|x| x > 0.0);
            assert!(ran || (r["available"] == false && !why.contains("written")), "{r}");
        }
    }
}
