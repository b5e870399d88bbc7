//! The `uaio` command line: help, version, usage errors and their exit
//! status, `check --list/--json`, `info --json` (its ring geometry compared
//! with the ring the kernel really makes), `run` (what the program gets)
//! and `completions`.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use serde_json::Value;

#[path = "../../uaio/tests/util/seccomp.rs"]
mod seccomp;

/// Runs `uaio ARGS` with the backend chosen automatically (the tests of
/// `info` check that choice, whatever `UAIO_BACKEND` the suite runs with).
fn uaio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_uaio")).args(args).env_remove("UAIO_BACKEND").output().expect("run uaio")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_and_version_go_to_stdout_and_succeed() {
    for args in [&["--help"][..], &["-h"], &["help"], &["check", "--help"], &["run", "--help"], &["info", "--help"]] {
        let o = uaio(args);
        assert_eq!(o.status.code(), Some(0), "uaio {args:?}: {}", text(&o.stderr));
        assert!(text(&o.stdout).contains("Usage: uaio"), "uaio {args:?}: {}", text(&o.stdout));
        assert!(o.stderr.is_empty(), "uaio {args:?}: {}", text(&o.stderr));
    }
    let o = uaio(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&o.stdout), format!("uaio {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn no_subcommand_prints_the_help_and_exits_2() {
    let o = uaio(&[]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("Usage: uaio") && err.contains("check") && err.contains("run"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["--bogus"][..],
        &["check", "--bogus"],
        &["run", "--bogus", "true"],
        &["run", "--backend=kernel", "true"],
        &["run", "--backend=threads"],
        &["info", "--nr", "0"],
        &["info", "--nr=many"],
        &["completions", "tcsh"],
        &["frobnicate"],
    ] {
        let o = uaio(args);
        assert_eq!(o.status.code(), Some(2), "uaio {args:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).starts_with("error:"), "uaio {args:?}: {}", text(&o.stderr));
    }
}

#[test]
fn a_check_filter_matching_nothing_is_a_usage_error() {
    for args in
        [&["check", "no/such/case"][..], &["check", "--json", "no/such/case"], &["check", "--list", "no/such/case"]]
    {
        let o = uaio(args);
        assert_eq!(o.status.code(), Some(2), "uaio {args:?}");
        assert!(text(&o.stderr).contains("no conformance case matches"), "{}", text(&o.stderr));
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn check_lists_and_runs_with_json() {
    let o = uaio(&["check", "--list"]);
    assert!(o.status.success());
    let all: Vec<String> = text(&o.stdout).lines().map(str::to_string).collect();
    assert!(all.len() > 100, "{} cases", all.len());
    let o = uaio(&["check", "--list", "--json", "setup/"]);
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let some: Vec<&str> = v["cases"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(!some.is_empty() && some.len() < all.len());
    assert!(some.iter().all(|n| n.contains("setup/") && all.iter().any(|a| a == n)));

    let filter = some[0];
    let o = uaio(&["check", "--json", filter]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("only JSON on stdout");
    let n = all.iter().filter(|a| a.contains(filter)).count() as u64;
    assert_eq!(v["summary"]["run"], n);
    assert_eq!(v["summary"]["agree"], n);
    assert_eq!(v["summary"]["differ"], 0);
    assert_eq!(v["cases"].as_array().unwrap().len() as u64, n);
    assert!(v["cases"].as_array().unwrap().iter().all(|c| c["result"] == "agree"));

    let o = uaio(&["check", filter]);
    assert!(o.status.success());
    let out = text(&o.stdout);
    let last = out.lines().last().unwrap();
    assert!(last.starts_with(&format!("{n} cases run on kernel AIO and on uaio")), "{last}");
    assert!(last.contains(&format!("{n} agree")) && last.ends_with("0 differ"), "{last}");
}

#[test]
fn check_reports_cases_it_cannot_run_as_skipped() {
    // An unprivileged user can make no loop device, so the no-wait cases
    // cannot run: they must be named skipped, never counted as agreeing,
    // and stdout must stay one JSON document.
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 || Command::new("setpriv").arg("--help").output().is_err() {
        println!("skipped: needs root and setpriv to run uaio check as an unprivileged user");
        return;
    }
    let filter = "nowait/direct_read_of";
    let run = |json: bool| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups", env!("CARGO_BIN_EXE_uaio"), "check"]);
        if json {
            c.arg("--json");
        }
        c.arg(filter).current_dir("/").env("TMPDIR", "/tmp").env_remove("UAIO_BACKEND").output().expect("setpriv")
    };
    let o = run(true);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("only JSON on stdout");
    let cases = v["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    let n = cases.len() as u64;
    assert!(cases.iter().all(|c| c["result"] == "skipped" && c["skipped"].is_string()), "{v:#}");
    assert_eq!(
        (&v["summary"]["skipped"], &v["summary"]["agree"], &v["summary"]["differ"]),
        (&n.into(), &0.into(), &0.into())
    );
    let o = run(false);
    assert!(o.status.success());
    let out = text(&o.stdout);
    assert!(out.lines().filter(|l| l.starts_with("skip ")).count() as u64 == n, "{out}");
    let last = out.lines().last().unwrap();
    assert!(last.contains("0 agree") && last.contains(&format!("{n} skipped")), "{last}");
}

/// The ring the kernel makes for `io_setup(nr)`: `ring->nr` (the second
/// 32-bit word of the ring header, whose address is the handle).
fn kernel_ring_nr(nr: i64) -> u32 {
    let mut ctx: libc::c_ulong = 0;
    // SAFETY: io_setup writes the handle into `ctx`.
    let r = unsafe { libc::syscall(libc::SYS_io_setup, nr, &mut ctx as *mut libc::c_ulong) };
    assert_eq!(r, 0, "kernel io_setup({nr}): {}", std::io::Error::last_os_error());
    // SAFETY: the handle is the address of the mapped ring; its header is
    // readable for as long as the context lives.
    let ring_nr = unsafe { (ctx as *const u32).add(1).read_volatile() };
    // SAFETY: destroys the context created above.
    unsafe { libc::syscall(libc::SYS_io_destroy, ctx) };
    ring_nr
}

#[test]
fn info_ring_geometry_is_the_kernels() {
    for nr in [1, 64, 128, 1000, 4096] {
        let o = uaio(&["info", "--json", &format!("--nr={nr}")]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
        let ring = &v["ring"];
        assert_eq!(ring["nr"], nr);
        assert_eq!(ring["nr_events"], kernel_ring_nr(nr), "io_setup({nr})");
        let bytes = ring["ring_bytes"].as_u64().unwrap();
        assert_eq!(bytes % ring["page_size"].as_u64().unwrap(), 0);
        assert_eq!((bytes - 32) / 32, ring["nr_events"].as_u64().unwrap());
    }
    let v: Value = serde_json::from_slice(&uaio(&["info", "--json", "--nr", "100000000"]).stdout).unwrap();
    assert!(v["ring"]["error"].as_str().unwrap().contains("os error 22"), "{v}");
}

#[test]
fn info_names_the_kernel_backend_reason_and_limits() {
    let v: Value = serde_json::from_slice(&uaio(&["info", "--json"]).stdout).expect("JSON");
    // SAFETY: uname fills the zeroed struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::uname(&mut u) };
    // SAFETY: uname NUL-terminates the field.
    let release = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy().into_owned();
    assert_eq!(v["kernel"]["release"], release.as_str());
    assert!(v["backend"]["reason"].as_str().unwrap().starts_with("automatic"), "{v}");
    let max: u64 = std::fs::read_to_string("/proc/sys/fs/aio-max-nr").unwrap().trim().parse().unwrap();
    assert_eq!(v["limits"]["fs.aio-max-nr"], max);
    assert_eq!(v["limits"]["uaio_budget_per_process"], max);

    let o = Command::new(env!("CARGO_BIN_EXE_uaio"))
        .args(["info", "--json"])
        .env("UAIO_BACKEND", "threads")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["backend"]["name"], "threads");
    assert_eq!(v["backend"]["reason"], "set by UAIO_BACKEND");

    // A value that names no backend is ignored, and said so on stderr.
    let o = Command::new(env!("CARGO_BIN_EXE_uaio"))
        .args(["info", "--json"])
        .env("UAIO_BACKEND", "urnig")
        .env("UAIO_THREADS", "lots")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["backend"]["reason"].as_str().unwrap().starts_with("automatic"), "{v}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("UAIO_BACKEND=\"urnig\" is neither uring nor threads"), "{err}");
}

#[test]
fn run_hands_the_program_its_arguments_and_the_library_under_both_names() {
    let o = uaio(&[
        "run",
        "--backend=threads",
        "--",
        "sh",
        "-c",
        "echo \"$UAIO_BACKEND\"; echo \"$LD_PRELOAD\"; echo \"${LD_LIBRARY_PATH%%:*}\"; echo \"$1\"",
        "sh",
        "--backend=uring",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(o.stderr.is_empty(), "not --verbose: {}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "threads");
    assert_eq!(lines[3], "--backend=uring", "the program's own arguments are left alone");
    let dir = std::path::Path::new(lines[2]);
    assert_eq!(std::path::Path::new(lines[1]), dir.join("libaio.so.1"));
    let lib = std::fs::read(dir.join("libaio.so.1")).unwrap();
    assert_eq!(&lib[..4], b"\x7fELF");
    assert_eq!(std::fs::read(dir.join("libaio.so.1t64")).unwrap(), lib);
    let o = uaio(&["lib"]);
    assert_eq!(text(&o.stdout).trim_end(), lines[2], "uaio lib names the same directory");

    let o = uaio(&["run", "--verbose", "true"]);
    assert!(o.status.success());
    assert_eq!(text(&o.stderr), format!("uaio run: true with {} (backend auto)\n", lines[1]));

    // A `uaio run` inside another lists the library once, and keeps the
    // other entries in their order.
    let o = Command::new(env!("CARGO_BIN_EXE_uaio"))
        .args(["run", "--", env!("CARGO_BIN_EXE_uaio"), "run", "--", "sh", "-c", "echo \"$LD_PRELOAD\""])
        .env("LD_PRELOAD", "/nonexistent/a.so /nonexistent/b.so")
        .output()
        .unwrap();
    assert_eq!(text(&o.stdout).trim_end(), format!("{}:/nonexistent/a.so:/nonexistent/b.so", lines[1]));

    let o = uaio(&["run", "/nonexistent/program"]);
    assert_eq!(o.status.code(), Some(127));
    let o = uaio(&["run", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7), "the program's status is uaio run's");
}

#[test]
fn completions_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let o = uaio(&["completions", shell]);
        assert!(o.status.success());
        let s = text(&o.stdout);
        for word in ["check", "run", "info", "completions", "backend", "json", "threads"] {
            assert!(s.contains(word), "{shell} completion lacks {word}");
        }
        // The options of the subcommands that parse their own (none before).
        for word in ["watchdog", "shared", "requests", "rounds", "duration", "engines", "svg"] {
            assert!(s.contains(word), "{shell} completion lacks {word}");
        }
    }
    let o = uaio(&["completions", "bash"]);
    let check = Command::new("bash")
        .args(["-n", "/dev/stdin"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&o.stdout)?;
            c.wait()
        })
        .expect("bash -n");
    assert!(check.success(), "the bash completion script parses");
    // A failed write is said in one line, with status 1: it panicked with
    // a backtrace (attack 31).
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let o = Command::new(env!("CARGO_BIN_EXE_uaio")).args(["completions", "bash"]).stdout(full).output().unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write to standard output") && !err.contains("panicked"), "{err}");
}

/// `uaio ARGS` in a child that a seccomp filter refuses (`EPERM`) the
/// system calls `refused`, as a container's profile may.
fn uaio_under_seccomp(args: &[&str], refused: &[libc::c_long]) -> Output {
    uaio_under_seccomp_with(args, refused, None)
}

/// [`uaio_under_seccomp`] with `UAIO_BACKEND` set to `backend`.
fn uaio_under_seccomp_with(args: &[&str], refused: &[libc::c_long], backend: Option<&str>) -> Output {
    let filter = seccomp::Refusal::of(refused);
    let mut c = Command::new(env!("CARGO_BIN_EXE_uaio"));
    c.args(args).env_remove("UAIO_BACKEND");
    if let Some(b) = backend {
        c.env("UAIO_BACKEND", b);
    }
    // SAFETY: the closure runs in the forked child before exec and only
    // makes two prctl calls (async-signal-safe), with no allocation.
    unsafe { std::os::unix::process::CommandExt::pre_exec(&mut c, move || filter.install()) };
    c.output().expect("run uaio under seccomp")
}

#[test]
fn check_says_plainly_when_kernel_aio_is_refused() {
    let o = uaio_under_seccomp(&["check", "setup/"], &[libc::SYS_io_setup]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("kernel AIO does not work here"), "{err}");
    assert!(err.contains("seccomp"), "{err}");
    assert!(err.contains("none was run"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn info_explains_the_fallback_when_io_uring_is_refused() {
    let refused = [libc::SYS_io_uring_setup, libc::SYS_io_uring_enter, libc::SYS_io_uring_register, libc::SYS_io_setup];
    let o = uaio_under_seccomp(&["info", "--json"], &refused);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["backend"]["name"], "threads");
    assert_eq!(v["backend"]["reason"], "automatic: io_uring is not available to this process");
    assert_eq!(v["backend"]["io_uring_setup"]["errno"], libc::EPERM);
    assert_eq!(v["backend"]["seccomp"], 2);
    assert!(v["limits"]["kernel_aio"].as_str().unwrap().contains("seccomp"), "{v}");
}

/// io_uring asked for with `UAIO_BACKEND=uring` but refused: the thread
/// pool runs, and the tools name it (they named io_uring: `uaio stress
/// --backend uring` printed "uaio (io_uring)" over a run on the thread pool).
#[test]
fn a_refused_io_uring_asked_for_is_not_named_as_the_backend() {
    let refused = [libc::SYS_io_uring_setup, libc::SYS_io_uring_enter, libc::SYS_io_uring_register];
    let o = uaio_under_seccomp_with(&["info", "--json"], &refused, Some("uring"));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["backend"]["name"], "threads", "{v}");
    assert!(v["backend"]["reason"].as_str().unwrap().contains("asks for io_uring"), "{v}");
    let o = uaio_under_seccomp_with(&["stress", "--requests", "50", "--threads", "2"], &refused, Some("uring"));
    assert!(o.status.success(), "{}\n{}", text(&o.stdout), text(&o.stderr));
    let out = text(&o.stdout) + &text(&o.stderr);
    assert!(out.contains("uaio (threads)") && !out.contains("uaio (io_uring)"), "{out}");
}

#[test]
fn uaio_libaio_replaces_the_built_in_library_under_both_names() {
    let dir = std::env::temp_dir().join(format!("uaio-cli-override-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A copy of the built-in library, under another name.
    let o = uaio(&["lib", "--file"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let lib = dir.join("my-libaio.so");
    std::fs::copy(text(&o.stdout).trim(), &lib).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_uaio"))
        .args([
            "run",
            "sh",
            "-c",
            "echo \"$LD_PRELOAD\"; d=\"${LD_LIBRARY_PATH%%:*}\"; cmp \"$d/libaio.so.1\" \"$0\" && cmp \"$d/libaio.so.1t64\" \"$0\" && echo same",
        ])
        .arg(&lib)
        .env("UAIO_LIBAIO", &lib)
        .env("LD_PRELOAD", "")
        .output()
        .unwrap();
    let out = text(&o.stdout);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(lib.to_str().unwrap()), "{}", text(&o.stderr));
    assert_eq!(lines.next(), Some("same"), "{}", text(&o.stderr));
    // What is not a library is refused, naming the variable (the loader
    // failed in the program instead, or the program ran without it).
    let bogus = dir.join("not-a-library");
    std::fs::write(&bogus, b"not really a library").unwrap();
    for path in [bogus.as_path(), dir.as_path()] {
        let o =
            Command::new(env!("CARGO_BIN_EXE_uaio")).args(["run", "true"]).env("UAIO_LIBAIO", path).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
        assert!(text(&o.stderr).contains("UAIO_LIBAIO="), "{}", text(&o.stderr));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A program the drop-in library cannot reach (statically linked) runs on
/// the kernel's AIO: `uaio run` says so (it said nothing, and `--verbose`
/// named the library as if it were used).
#[test]
fn run_says_when_the_library_cannot_be_used() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("s.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let prog = dir.path().join("s");
    let built = Command::new("gcc").args(["-static", "-o"]).arg(&prog).arg(&src).output();
    if !built.is_ok_and(|o| o.status.success()) {
        println!("skipped: gcc cannot link a static program here");
        return;
    }
    let o = Command::new(env!("CARGO_BIN_EXE_uaio")).arg("run").arg(&prog).output().unwrap();
    assert!(o.status.success());
    assert!(text(&o.stderr).contains("statically linked"), "{}", text(&o.stderr));
    // A dynamic program gets no such word.
    let o = Command::new(env!("CARGO_BIN_EXE_uaio")).args(["run", "true"]).output().unwrap();
    assert!(o.status.success() && o.stderr.is_empty(), "{}", text(&o.stderr));
}

/// A program that uses AIO through `syscall()` (python's ctypes, so no
/// compiler is needed): sets up a context for 8, submits 3 NOOPs and a
/// 5-byte write, reaps them, cancels nothing, and destroys the context;
/// then a second context it leaves for the exit to report.
const AIO_PROGRAM: &str = r#"
import ctypes, os, struct, tempfile
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def setup(n):
    h = ctypes.c_ulong(0)
    assert libc.syscall(206, ctypes.c_long(n), ctypes.byref(h)) == 0
    return h.value
def iocb(op, fd, buf, n, data):
    return ctypes.create_string_buffer(struct.pack("QII hhI QQq QII", data, 0, 0, op, 0, fd, buf, n, 0, 0, 0, 0), 64)
ctx = setup(8)
f = tempfile.TemporaryFile()
data = ctypes.create_string_buffer(b"hello", 5)
cbs = [iocb(6, 0, 0, 0, i) for i in range(3)] + [iocb(1, f.fileno(), ctypes.addressof(data), 5, 3)]
ptrs = (ctypes.c_void_p * 4)(*[ctypes.addressof(c) for c in cbs])
assert libc.syscall(209, ctypes.c_ulong(ctx), ctypes.c_long(4), ptrs) == 4
events = ctypes.create_string_buffer(32 * 4)
got = 0
while got < 4:
    n = libc.syscall(208, ctypes.c_ulong(ctx), ctypes.c_long(1), ctypes.c_long(4 - got), ctypes.byref(events, 32 * got), None)
    assert n > 0
    got += n
assert libc.syscall(207, ctypes.c_ulong(ctx)) == 0
setup(4)
"#;

/// What a program started with standard input and output closed finds on
/// them (on its stderr, one word each for 0, 1 and 2): run directly, and
/// through `uaio run` with and without `--stats`.
fn standard_descriptors_seen(via_uaio: &[&str]) -> String {
    let report =
        "for f in 0 1 2; do if [ -e /proc/self/fd/$f ]; then w=open; else w=closed; fi; printf '%s ' $w >&2; done";
    let mut c = Command::new("sh");
    c.arg("-c").arg("exec 0<&- 1>&-; exec \"$@\"").arg("sh");
    if !via_uaio.is_empty() {
        c.arg(env!("CARGO_BIN_EXE_uaio")).args(via_uaio).arg("--");
    }
    let o = c.args(["sh", "-c", report]).env_remove("UAIO_BACKEND").output().expect("sh");
    assert!(o.status.success(), "{:?}: {}", via_uaio, text(&o.stderr));
    text(&o.stderr)
}

#[test]
fn run_leaves_closed_standard_descriptors_closed() {
    let direct = standard_descriptors_seen(&[]);
    assert_eq!(direct, "closed closed open ", "the shell closes 0 and 1 for the program");
    // Before, the program found /dev/null on them (opened by the Rust
    // runtime of `uaio` itself).
    assert_eq!(standard_descriptors_seen(&["run"]), direct, "uaio run");
    assert_eq!(
        standard_descriptors_seen(&["run", "--stats"]).split_once('\n').map_or("", |l| l.0),
        direct,
        "uaio run --stats"
    );
}

#[test]
fn run_stats_reports_what_the_program_did() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("stats.json");
    let o = Command::new(env!("CARGO_BIN_EXE_uaio"))
        .args(["run", "--stats-json"])
        .arg(&json)
        .args(["--", "python3", "-c", AIO_PROGRAM])
        .output()
        .expect("run uaio");
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    // The table on stderr: one context destroyed, one left to the exit.
    assert!(err.contains("uaio run --stats: python3"), "{err}");
    assert_eq!(err.matches(", context ").count(), 2, "{err}");
    assert!(err.contains("(io_uring, nr_events 8)") || err.contains("(threads, nr_events 8)"), "{err}");
    let noop = err.lines().find(|l| l.trim_start().starts_with("noop")).expect("a noop row");
    assert_eq!(noop.split_whitespace().take(4).collect::<Vec<_>>(), ["noop", "3", "0B", "100.0%"], "{err}");
    let write = err.lines().find(|l| l.trim_start().starts_with("pwrite")).expect("a pwrite row");
    assert_eq!(write.split_whitespace().take(3).collect::<Vec<_>>(), ["pwrite", "1", "5B"], "{err}");
    // The same in the JSON file.
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("JSON");
    let ctxs = doc["contexts"].as_array().expect("contexts");
    assert_eq!(ctxs.len(), 2, "{doc}");
    let first = ctxs.iter().find(|c| c["nr_events"] == 8).expect("the context of 8");
    assert_eq!(first["ops"]["noop"]["count"], 3, "{doc}");
    assert_eq!(first["ops"]["pwrite"]["bytes"], 5, "{doc}");
    assert_eq!(first["depth_log2"].as_array().map(|d| d.iter().map(|v| v.as_u64().unwrap()).sum::<u64>()), Some(1));
    // The program's exit status is uaio run's.
    let o = Command::new(env!("CARGO_BIN_EXE_uaio"))
        .args(["run", "--stats", "--", "python3", "-c", "import sys; sys.exit(7)"])
        .output()
        .expect("run uaio");
    assert_eq!(o.status.code(), Some(7));
    assert!(text(&o.stderr).contains("no AIO context was used"), "{}", text(&o.stderr));
    // A JSON file that cannot be written is refused before the program
    // runs (which would create `ran`).
    let ran = dir.path().join("ran");
    let o = Command::new(env!("CARGO_BIN_EXE_uaio"))
        .args(["run", "--stats-json"])
        .arg(dir.path().join("missing-dir/stats.json"))
        .args(["--", "touch"])
        .arg(&ran)
        .output()
        .expect("run uaio");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("cannot write"), "{}", text(&o.stderr));
    assert!(!ran.exists(), "the program ran");
}

#[test]
fn stress_and_bench_help_go_to_stdout_and_succeed() {
    for sub in ["stress", "bench"] {
        let o = uaio(&[sub, "--help"]);
        assert!(o.status.success(), "uaio {sub} --help: {:?}\n{}", o.status, text(&o.stderr));
        assert!(text(&o.stdout).to_lowercase().contains("usage"), "uaio {sub} --help: {}", text(&o.stdout));
    }
}

/// A program that `uaio run --stats` runs ends as if run directly: killed
/// by a signal, `uaio` is too (before, it exited with 128 + the signal,
/// which a parent cannot tell from an exit); and it dies with `uaio` (it
/// ran on, orphaned, when `uaio` was killed).
#[test]
fn run_stats_ends_as_its_program_and_takes_it_along() {
    let o = Command::new(env!("CARGO_BIN_EXE_uaio"))
        .args(["run", "--stats", "--", "sh", "-c", "kill -USR1 $$"])
        .output()
        .expect("run uaio");
    assert_eq!(o.status.signal(), Some(libc::SIGUSR1), "{:?}\n{}", o.status, text(&o.stderr));
    let mut child = Command::new(env!("CARGO_BIN_EXE_uaio"))
        .args(["run", "--stats", "--", "sh", "-c", "echo $$; exec sleep 100"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run uaio");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().expect("stdout")), &mut line)
        .expect("the program's pid");
    let pid: libc::pid_t = line.trim().parse().expect("a pid");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = child.wait();
    // The program goes (reaped by whoever adopted it) within 10 s.
    let alive = || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
    let start = std::time::Instant::now();
    while alive() && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!alive(), "the program (pid {pid}) still runs after uaio run --stats was killed");
}

/// `uaio run --stats` waits for its program: SIGTERM and SIGHUP sent to it
/// reach the program, whose status (death by the signal) comes back, and
/// the statistics are still printed and their file removed.
#[test]
fn run_stats_passes_termination_signals_to_the_program() {
    for (sig, name) in [(libc::SIGTERM, "TERM"), (libc::SIGHUP, "HUP")] {
        let runtime = tempfile::tempdir().expect("runtime dir");
        let marker = runtime.path().join("finished");
        let child = Command::new(env!("CARGO_BIN_EXE_uaio"))
            .env("XDG_RUNTIME_DIR", runtime.path())
            .args(["run", "--stats", "--", "sh", "-c"])
            .arg(format!("sleep 3; touch {}", marker.display()))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run uaio");
        // The statistics' directories (the library's own directory stays).
        let stats_dirs = || -> Vec<std::path::PathBuf> {
            let all: Vec<std::path::PathBuf> = std::fs::read_dir(runtime.path())
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            all.into_iter()
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("uaio-stats-")))
                .collect()
        };
        // Until the program runs: its statistics' directory appears.
        let start = std::time::Instant::now();
        while stats_dirs().is_empty() && start.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        let o = child.wait_with_output().expect("wait");
        assert_eq!(o.status.signal(), Some(sig), "SIG{name}: {:?}\n{}", o.status, text(&o.stderr));
        assert!(text(&o.stderr).contains("uaio run --stats: sh"), "SIG{name}: {}", text(&o.stderr));
        std::thread::sleep(std::time::Duration::from_millis(3500));
        assert!(!marker.exists(), "SIG{name}: the program went on after uaio run was signalled");
        assert_eq!(stats_dirs(), Vec::<std::path::PathBuf>::new(), "SIG{name}: statistics left behind");
    }
}
