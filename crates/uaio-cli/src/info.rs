//! `uaio info`: the kernel, the backend and why, the limits, the ring
//! geometry for a given `nr`, and the drop-in library.

use std::process::ExitCode;

use serde_json::{json, Value};

/// `uaio info` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
    /// The `io_setup` count to show the ring geometry for.
    #[arg(long, default_value_t = 128, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    nr: u32,
}

/// Reads a number from a `/proc` file.
fn proc_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `errno` of the last failed call, as a number and a name.
fn last_errno() -> (i32, String) {
    let e = std::io::Error::last_os_error();
    (e.raw_os_error().unwrap_or(0), e.to_string())
}

/// The seccomp mode of this process (`/proc/self/status`): 0 none, 1
/// strict, 2 filter.
fn seccomp_mode() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find_map(|l| l.strip_prefix("Seccomp:")).and_then(|v| v.trim().parse().ok())
}

/// Whether kernel AIO can be used by this process: `io_setup(1)` and
/// `io_destroy` on the kernel, or a plain reason why not.
pub fn kernel_aio_works() -> Result<(), String> {
    let mut ctx: libc::c_ulong = 0;
    // SAFETY: io_setup writes the handle into `ctx`, which outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_io_setup, 1 as libc::c_long, &mut ctx as *mut libc::c_ulong) };
    if r == 0 {
        // SAFETY: destroys the context just created; no request is in flight.
        unsafe { libc::syscall(libc::SYS_io_destroy, ctx) };
        return Ok(());
    }
    let (errno, text) = last_errno();
    let seccomp = if seccomp_mode() == Some(2) { " (this process runs under a seccomp filter)" } else { "" };
    Err(match errno {
        libc::ENOSYS => format!("io_setup fails with ENOSYS: the kernel is built without AIO (CONFIG_AIO) or a seccomp filter refuses it{seccomp}"),
        libc::EPERM | libc::EACCES => format!("io_setup is refused ({text}), probably by a seccomp filter{seccomp}"),
        libc::EAGAIN => format!(
            "io_setup fails with EAGAIN: the host's AIO budget is used up (fs.aio-nr {} of fs.aio-max-nr {})",
            proc_number("/proc/sys/fs/aio-nr").map_or("?".into(), |n| n.to_string()),
            proc_number("/proc/sys/fs/aio-max-nr").map_or("?".into(), |n| n.to_string()),
        ),
        _ => format!("io_setup(1) fails: {text}{seccomp}"),
    })
}

/// `io_uring_setup(8)` on the kernel: `Ok` or the errno and its text.
fn io_uring_probe() -> Result<(), (i32, String)> {
    // struct io_uring_params: 120 bytes, all zero asks for the defaults.
    let mut params = [0u64; 15];
    // SAFETY: the kernel reads and writes `params` (120 bytes, as large as
    // struct io_uring_params) during the call.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 8 as libc::c_long, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: closes the descriptor the call just returned, owned here.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

/// Runs `uaio info`.
pub fn main(a: &Args) -> ExitCode {
    // SAFETY: uname fills the zeroed struct it is given.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `u` is valid for writing.
    unsafe { libc::uname(&mut u) };
    let field = |f: &[libc::c_char]| {
        // SAFETY: uname NUL-terminates every field within its array.
        unsafe { std::ffi::CStr::from_ptr(f.as_ptr()) }.to_string_lossy().into_owned()
    };
    let kernel = json!({
        "sysname": field(&u.sysname), "release": field(&u.release), "version": field(&u.version), "machine": field(&u.machine),
    });

    let uring = io_uring_probe();
    let disabled = proc_number("/proc/sys/kernel/io_uring_disabled");
    let backend = json!({
        "name": uaio::backend_name(),
        "reason": uaio::backend_reason(),
        "UAIO_BACKEND": std::env::var("UAIO_BACKEND").ok(),
        "io_uring_setup": match &uring { Ok(()) => json!("ok"), Err((n, t)) => json!({ "errno": n, "error": t }) },
        "kernel.io_uring_disabled": disabled,
        "seccomp": seccomp_mode(),
    });

    let max_nr = proc_number("/proc/sys/fs/aio-max-nr");
    let limits = json!({
        "uaio_budget_per_process": uaio::aio_max_nr(),
        "fs.aio-max-nr": max_nr,
        "fs.aio-nr": proc_number("/proc/sys/fs/aio-nr"),
        "kernel_aio": match kernel_aio_works() { Ok(()) => json!("ok"), Err(why) => json!(why) },
    });

    let ring = match uaio::ring_geometry(a.nr) {
        Ok(g) => json!({
            "nr": a.nr, "cpus": g.cpus, "page_size": g.page_size, "nr_events": g.nr, "ring_bytes": g.bytes,
            "pending_max": g.capacity, "exceeds_aio_max_nr": u64::from(a.nr) > uaio::aio_max_nr(),
        }),
        Err(e) => json!({ "nr": a.nr, "error": e.to_string() }),
    };

    let (size, hash) = crate::dropin::built_in();
    let library = json!({
        "built_in": { "bytes": size, "hash": hash },
        "UAIO_LIBAIO": std::env::var("UAIO_LIBAIO").ok(),
        "names": crate::dropin::NAMES,
    });

    let doc = json!({
        "uaio": env!("CARGO_PKG_VERSION"), "kernel": kernel, "backend": backend, "limits": limits, "ring": ring, "library": library,
    });
    if a.json {
        println!("{doc:#}");
    } else {
        print_text(&doc);
    }
    ExitCode::SUCCESS
}

fn print_text(d: &Value) {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    };
    let k = &d["kernel"];
    println!("uaio {}", s(&d["uaio"]));
    println!("kernel:     {} {} {} ({})", s(&k["sysname"]), s(&k["release"]), s(&k["machine"]), s(&k["version"]));
    let b = &d["backend"];
    println!("backend:    {} ({})", s(&b["name"]), s(&b["reason"]));
    let probe = match &b["io_uring_setup"] {
        Value::String(ok) => ok.clone(),
        e => format!("fails: {}", s(&e["error"])),
    };
    println!(
        "  io_uring_setup: {probe}; kernel.io_uring_disabled: {}; seccomp mode: {}",
        s(&b["kernel.io_uring_disabled"]),
        s(&b["seccomp"])
    );
    let l = &d["limits"];
    println!(
        "limits:     uaio: {} requests per process (fs.aio-max-nr, as a per-process budget)",
        s(&l["uaio_budget_per_process"])
    );
    println!(
        "  kernel AIO: {}; host-wide fs.aio-nr {} of fs.aio-max-nr {}",
        s(&l["kernel_aio"]),
        s(&l["fs.aio-nr"]),
        s(&l["fs.aio-max-nr"])
    );
    let r = &d["ring"];
    if r["error"].is_null() {
        println!(
            "ring:       io_setup({}): {} event slots in {} bytes ({} CPUs, {}-byte pages), at most {} requests pending{}",
            s(&r["nr"]),
            s(&r["nr_events"]),
            s(&r["ring_bytes"]),
            s(&r["cpus"]),
            s(&r["page_size"]),
            s(&r["pending_max"]),
            if r["exceeds_aio_max_nr"] == true { "; more than aio-max-nr: io_setup fails with EAGAIN" } else { "" }
        );
    } else {
        println!("ring:       io_setup({}) fails: {}", s(&r["nr"]), s(&r["error"]));
    }
    let lib = &d["library"];
    println!(
        "library:    built in ({} bytes, id {}), installed by `uaio run` as {}{}",
        s(&lib["built_in"]["bytes"]),
        s(&lib["built_in"]["hash"]),
        lib["names"].as_array().map(|n| n.iter().map(s).collect::<Vec<_>>().join(" and ")).unwrap_or_default(),
        match &lib["UAIO_LIBAIO"] {
            Value::String(p) => format!("; UAIO_LIBAIO={p} replaces it"),
            _ => String::new(),
        }
    );
}
