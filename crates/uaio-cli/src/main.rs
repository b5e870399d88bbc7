//! The `uaio` command.
//!
//! - `uaio check [FILTER]` runs the conformance suite: every case against
//!   kernel AIO and against uaio, and reports where they differ.
//! - `uaio run [--backend uring|threads] [--verbose] -- CMD ARGS...` runs a
//!   dynamically linked program on uaio's drop-in `libaio.so.1` (both first on
//!   the library path and preloaded, which also catches `syscall(SYS_io_*)`).
//! - `uaio info` shows the backend and limits.
//! - `uaio stress [OPTIONS]` runs many threads of submit, reap, cancel and
//!   destroy on uaio (or `--kernel`) and checks every result (see `stress`).
//! - `uaio bench [OPTIONS]` measures kernel AIO and uaio (both backends) side
//!   by side on a fixed set of workloads (see `bench`).
#![deny(clippy::undocumented_unsafe_blocks)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

mod bench;
mod stress;

fn usage() -> ExitCode {
    eprintln!("usage: uaio check [FILTER]    run the conformance cases on the kernel and on uaio");
    eprintln!("       uaio run [--backend uring|threads] [--verbose] -- CMD [ARGS...]");
    eprintln!("                              run a program with uaio's libaio.so.1 in place of the kernel's AIO");
    eprintln!("       uaio info              show the backend and limits");
    eprintln!("       uaio stress [OPTIONS]  submit/reap/cancel/destroy from many threads, check every result");
    eprintln!("       uaio bench [OPTIONS]   kernel AIO vs uaio: IOPS, latency, ratios (--help for options)");
    ExitCode::from(2)
}

/// Finds the drop-in library: `UAIO_LIBAIO`, or `libaio.so.1` next to this
/// executable (where `scripts/build-libaio.sh` puts it).
fn find_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("UAIO_LIBAIO") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("libaio.so.1");
    p.exists().then_some(p)
}

fn run(args: &[String]) -> ExitCode {
    let mut backend = None;
    let mut verbose = false;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--backend" => {
                backend = args.get(i + 1).cloned();
                i += 2;
            }
            "--verbose" | "-v" => {
                verbose = true;
                i += 1;
            }
            "--" => {
                i += 1;
                break;
            }
            _ => break,
        }
    }
    let Some(cmd) = args.get(i) else { return usage() };
    let Some(lib) = find_library() else {
        eprintln!("uaio run: libaio.so.1 not found next to the uaio executable; build it with scripts/build-libaio.sh or set UAIO_LIBAIO");
        return ExitCode::from(127);
    };
    let lib = lib.canonicalize().unwrap_or(lib);
    let dir = lib.parent().map(|d| d.to_path_buf()).unwrap_or_default();
    let join = |var: &str, first: &std::path::Path, sep: &str| match std::env::var(var) {
        Ok(old) if !old.is_empty() => format!("{}{sep}{old}", first.display()),
        _ => first.display().to_string(),
    };
    let mut c = std::process::Command::new(cmd);
    c.args(&args[i + 1..]);
    c.env("LD_LIBRARY_PATH", join("LD_LIBRARY_PATH", &dir, ":"));
    c.env("LD_PRELOAD", join("LD_PRELOAD", &lib, ":"));
    if let Some(b) = &backend {
        if !matches!(b.as_str(), "uring" | "io_uring" | "threads") {
            eprintln!("uaio run: unknown backend {b:?} (uring or threads)");
            return ExitCode::from(2);
        }
        c.env("UAIO_BACKEND", b);
    }
    if verbose {
        eprintln!("uaio run: {} with {} (backend {})", cmd, lib.display(), backend.as_deref().unwrap_or("auto"));
    }
    let err = c.exec();
    eprintln!("uaio run: {cmd}: {err}");
    ExitCode::from(127)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("check") | None => check(args.get(1).map(String::as_str).unwrap_or("")),
        Some("run") => run(&args[1..]),
        Some("stress") => stress::main(&args[1..]),
        Some("bench") => bench::main(&args[1..]),
        Some("info") => {
            println!("backend: {}", uaio::backend_name());
            println!("io_uring available: {}", uaio::io_uring_available());
            println!("per-process aio-max-nr budget: {}", uaio::aio_max_nr());
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}

fn check(filter: &str) -> ExitCode {
    let cases: Vec<_> = uaio_conform::all_cases().into_iter().filter(|c| c.name.contains(filter)).collect();
    let mut bad = 0;
    for c in &cases {
        let o = uaio_conform::run_case(c);
        match o.failure {
            None => println!("ok   {}{}", o.name, if o.extension { "  (documented extension)" } else { "" }),
            Some(why) => {
                bad += 1;
                println!("FAIL {}\n{why}", o.name);
            }
        }
    }
    println!(
        "{} cases run on kernel AIO and on uaio ({}): {} agree, {} differ",
        cases.len(),
        uaio::backend_name(),
        cases.len() - bad,
        bad
    );
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
