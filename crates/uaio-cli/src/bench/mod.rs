//! `uaio bench`: kernel AIO and uaio side by side on a fixed set of
//! workloads, with IOPS, bandwidth, latency and the ratio to kernel AIO.
//!
//! The command makes its own test file (by default a new file in
//! `/var/tmp`, unlinked at once and reached by the workers through
//! `/proc/PID/fd/N`), then runs each workload on every engine: kernel AIO
//! (raw system calls), uaio on io_uring and uaio on the thread pool (both
//! through [`uaio::raw`]). uaio's backend is chosen once per process, so
//! every run happens in a worker process: this same executable started as
//! `uaio bench --worker JOB` with `UAIO_BACKEND` set, which prints what it
//! measured as one JSON line. The kernel's runs use workers too, so every
//! engine starts equally cold, and the parent prepares the page cache
//! (warms the file, or evicts it) between runs, outside any worker.
//!
//! For each workload the engines take turns (kernel, uaio-uring,
//! uaio-threads, kernel, ...) for `--rounds` rounds; every engine of one
//! round uses the same offsets. The table shows the median over the rounds
//! of IOPS, MB/s, mean and p99 latency, the median of the per-round ratios
//! to kernel AIO (each engine's round against the kernel's run of the same
//! round, taken moments apart), and the spread `(max - min) / median` of
//! IOPS. NOOP runs only on uaio (the kernel rejects `IOCB_CMD_NOOP`).

mod aio;
mod file;
mod load;
mod report;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Arg, ArgAction};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use aio::Aio;
use file::TestFile;
use load::{Cache, Job, Op, Outcome, Workload};
use report::{Cell, Report, Row};

/// An implementation being measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Engine {
    /// Kernel AIO, raw system calls.
    Kernel,
    /// uaio with `UAIO_BACKEND=uring`.
    Uring,
    /// uaio with `UAIO_BACKEND=threads`.
    Threads,
}

impl Engine {
    /// Name in the table, the JSON and `--engines`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Kernel => "kernel",
            Engine::Uring => "uaio-uring",
            Engine::Threads => "uaio-threads",
        }
    }

    fn parse(s: &str) -> Option<Engine> {
        match s.trim() {
            "kernel" | "aio" => Some(Engine::Kernel),
            "uring" | "io_uring" | "uaio-uring" => Some(Engine::Uring),
            "threads" | "uaio-threads" | "pool" => Some(Engine::Threads),
            _ => None,
        }
    }

    /// `UAIO_BACKEND` of its workers and the backend name they must report.
    fn backend(self) -> Option<(&'static str, &'static str)> {
        match self {
            Engine::Kernel => None,
            Engine::Uring => Some(("uring", "io_uring")),
            Engine::Threads => Some(("threads", "threads")),
        }
    }
}

/// What `uaio bench` was asked to do.
#[derive(Debug, Clone)]
struct Options {
    file: Option<PathBuf>,
    dir: PathBuf,
    size: u64,
    bs: usize,
    qd: Vec<usize>,
    depth: usize,
    duration: f64,
    rounds: usize,
    workloads: Vec<String>,
    engines: Vec<Engine>,
    drop_global: bool,
    json: bool,
    svg: Option<PathBuf>,
    list: bool,
}

/// `256M`, `4k`, `1G`, `4096`: bytes (binary multiples).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches("ib").trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| format!("not a size: {s:?} (e.g. 4096, 4k, 256M, 1G)"))?;
    let v = n * mult as f64;
    if !(v.is_finite() && v >= 1.0 && v < u64::MAX as f64) {
        return Err(format!("size out of range: {s:?}"));
    }
    Ok(v as u64)
}

/// The largest queue depth a workload may ask for: kernel AIO's default
/// `fs.aio-max-nr`, which one context cannot exceed anyway.
const MAX_DEPTH: usize = 65536;

/// The longest measured run, in seconds.
const MAX_DURATION: f64 = 3600.0;

/// The most rounds (`--rounds`).
const MAX_ROUNDS: usize = 1000;

/// A queue depth: a positive integer up to [`MAX_DEPTH`].
fn parse_depth(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(v) if v > 0 && v <= MAX_DEPTH => Ok(v),
        Ok(v) if v > MAX_DEPTH => Err(format!("queue depth {v} is above {MAX_DEPTH}")),
        _ => Err(format!("not a positive integer: {s:?}")),
    }
}

/// The options of `uaio bench` (also what `uaio completions` offers).
pub fn command() -> clap::Command {
    let size = |s: &str| parse_size(s);
    let positive = |s: &str| -> Result<f64, String> {
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 && v <= MAX_DURATION => Ok(v),
            Ok(v) if v.is_finite() && v > MAX_DURATION => Err(format!("at most {MAX_DURATION} s: {s:?}")),
            _ => Err(format!("not a positive number: {s:?}")),
        }
    };
    let count = |s: &str| -> Result<usize, String> {
        match s.parse::<usize>() {
            Ok(v) if v > 0 && v <= MAX_ROUNDS => Ok(v),
            Ok(v) if v > MAX_ROUNDS => Err(format!("at most {MAX_ROUNDS}: {s:?}")),
            _ => Err(format!("not a positive integer: {s:?}")),
        }
    };
    clap::Command::new("bench")
        .bin_name("uaio bench")
        .about("Measure kernel AIO and uaio (io_uring and thread-pool backends) side by side")
        .after_help(
            "Each run happens in a worker process (uaio's backend is chosen per process). Engines take \
             turns within each round; the table shows medians over the rounds and the median of the \
             per-round ratios to kernel AIO. Latency is per request, from just before its io_submit to \
             just after the io_getevents that returned it. `--list` shows the workloads.",
        )
        .disable_version_flag(true)
        .arg(Arg::new("file").long("file").value_name("PATH").value_parser(clap::value_parser!(PathBuf)).help(
            "Test file to use (created if missing, filled when shorter than --size; the write workloads \
             overwrite it). Default: a new file in --dir, unlinked at once",
        ))
        .arg(
            Arg::new("dir")
                .long("dir")
                .value_name("DIR")
                .default_value("/var/tmp")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Where the default test file is made (O_DIRECT needs a file system that supports it)"),
        )
        .arg(
            Arg::new("size")
                .long("size")
                .value_name("BYTES")
                .default_value("256M")
                .value_parser(size)
                .help("Size of the test file (k, M, G suffixes)"),
        )
        .arg(
            Arg::new("bs")
                .long("bs")
                .value_name("BYTES")
                .default_value("4k")
                .value_parser(size)
                .help("Block size of the random workloads (the sequential read uses 128k)"),
        )
        .arg(
            Arg::new("qd")
                .long("qd")
                .value_name("LIST")
                .default_value("1,32,128")
                .help("Queue depths of the random-read sweeps (page cache and O_DIRECT)"),
        )
        .arg(
            Arg::new("depth")
                .long("depth")
                .value_name("N")
                .default_value("32")
                .value_parser(parse_depth)
                .help("Queue depth of the other workloads (per thread for the two-thread ones)"),
        )
        .arg(
            Arg::new("duration")
                .long("duration")
                .value_name("SECS")
                .default_value("0.25")
                .value_parser(positive)
                .help("Measured seconds per run, after a warm-up of a quarter of it (at most 0.25 s)"),
        )
        .arg(
            Arg::new("rounds")
                .long("rounds")
                .value_name("N")
                .default_value("3")
                .value_parser(count)
                .help("Rounds of interleaved runs; medians are reported"),
        )
        .arg(
            Arg::new("workloads")
                .long("workloads")
                .visible_alias("filter")
                .value_name("LIST")
                .help("Run only the workloads named, or whose name contains one of these comma-separated words"),
        )
        .arg(
            Arg::new("engines")
                .long("engines")
                .visible_alias("backends")
                .value_name("LIST")
                .default_value("kernel,uring,threads")
                .help("Engines to run: kernel, uring, threads"),
        )
        .arg(
            Arg::new("drop")
                .long("drop")
                .value_name("HOW")
                .default_value("fadvise")
                .value_parser(["fadvise", "global"])
                .help(
                    "How the not-cached workload evicts the file before each run: posix_fadvise(DONTNEED) \
                     of the file, or `echo 1 > /proc/sys/vm/drop_caches` (root; empties every cache)",
                ),
        )
        .arg(Arg::new("json").long("json").action(ArgAction::SetTrue).help("Print the results as JSON on stdout"))
        .arg(
            Arg::new("svg")
                .long("svg")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Also write a bar chart of IOPS and ratios to kernel AIO"),
        )
        .arg(Arg::new("list").long("list").action(ArgAction::SetTrue).help("List the workloads and exit"))
}

fn parse(args: &[String]) -> Result<Options, clap::Error> {
    let cmd = command();
    let m = cmd.clone().try_get_matches_from(std::iter::once("bench".to_string()).chain(args.iter().cloned()))?;
    let bad = |msg: String| cmd.clone().error(clap::error::ErrorKind::ValueValidation, msg);
    let mut qd = Vec::new();
    for part in m.get_one::<String>("qd").expect("default").split(',') {
        match parse_depth(part) {
            // A depth named twice is run once.
            Ok(v) if qd.contains(&v) => {}
            Ok(v) => qd.push(v),
            Err(e) => return Err(bad(format!("--qd: {e}"))),
        }
    }
    let mut engines = Vec::new();
    for part in m.get_one::<String>("engines").expect("default").split(',') {
        let e = Engine::parse(part).ok_or_else(|| bad(format!("--engines: unknown engine {part:?}")))?;
        if !engines.contains(&e) {
            engines.push(e);
        }
    }
    engines.sort();
    let bs = *m.get_one::<u64>("bs").expect("default") as usize;
    if !bs.is_multiple_of(512) {
        return Err(bad(format!("--bs {bs}: must be a multiple of 512 (O_DIRECT)")));
    }
    // Each request in flight has a buffer of its own (two threads keep
    // --depth each): refused here rather than by a worker that cannot
    // allocate them (it aborted, and the row said only that it failed).
    let depth = *m.get_one::<usize>("depth").expect("default");
    let most = qd.iter().copied().chain([2 * depth]).max().unwrap_or(1) as u64;
    if (bs as u64).saturating_mul(most) > MAX_BUFFERS {
        return Err(bad(format!(
            "--bs {bs} with {most} requests in flight needs {} MiB of buffers; at most {} MiB",
            (bs as u64).saturating_mul(most) >> 20,
            MAX_BUFFERS >> 20
        )));
    }
    Ok(Options {
        file: m.get_one::<PathBuf>("file").cloned(),
        dir: m.get_one::<PathBuf>("dir").expect("default").clone(),
        size: *m.get_one::<u64>("size").expect("default"),
        bs,
        qd,
        depth,
        duration: *m.get_one::<f64>("duration").expect("default"),
        rounds: *m.get_one::<usize>("rounds").expect("default"),
        workloads: m
            .get_one::<String>("workloads")
            .map(|s| s.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect())
            .unwrap_or_default(),
        engines,
        drop_global: m.get_one::<String>("drop").map(String::as_str) == Some("global"),
        json: m.get_flag("json"),
        svg: m.get_one::<PathBuf>("svg").cloned(),
        list: m.get_flag("list"),
    })
}

/// Whether a file can be written at `path`: opened for writing (made, and
/// removed again, if it did not exist).
fn writable(path: &std::path::Path) -> std::io::Result<()> {
    let existed = path.exists();
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The most memory the buffers of one run may take (`--bs` times the most
/// requests in flight).
const MAX_BUFFERS: u64 = 1 << 30;

/// Entry point of `uaio bench ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    if args.first().map(String::as_str) == Some("--worker") {
        return worker(args.get(1).map(String::as_str).unwrap_or(""));
    }
    let opts = match parse(args) {
        Ok(o) => o,
        // Help goes to stdout with status 0, errors to stderr with status 2.
        Err(e) => e.exit(),
    };
    let all = load::all(opts.bs, &opts.qd, opts.depth);
    // A word selects the workloads whose name contains it, or only the one
    // it names exactly.
    let selects = |f: &str, w: &Workload| w.name == f || (w.name.contains(f) && !all.iter().any(|o| o.name == f));
    let workloads: Vec<Workload> = all
        .iter()
        .filter(|w| opts.workloads.is_empty() || opts.workloads.iter().any(|f| selects(f, w)))
        .cloned()
        .collect();
    if opts.list {
        if opts.json {
            let list: Vec<_> = all.iter().map(|w| json!({ "name": w.name, "description": w.describe() })).collect();
            println!("{}", json!({ "workloads": list }));
        } else {
            for w in &all {
                println!("{:<44} {}", w.name, w.describe());
            }
        }
        return ExitCode::SUCCESS;
    }
    // Every word must select something: names depend on --bs and --qd, and
    // a word that silently matched nothing left its workload out.
    let unmatched: Vec<&String> = opts.workloads.iter().filter(|f| !all.iter().any(|w| selects(f, w))).collect();
    if !unmatched.is_empty() {
        eprintln!("uaio bench: no workload matches {unmatched:?} (see --list; names follow --bs and --qd)");
        return ExitCode::from(2);
    }
    if workloads.is_empty() {
        eprintln!("uaio bench: no workload matches {:?} (see --list)", opts.workloads);
        return ExitCode::from(2);
    }
    match bench(&opts, &workloads) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uaio bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `uaio bench --worker JOB`: runs one job and prints one JSON line.
fn worker(arg: &str) -> ExitCode {
    // A worker ends with the command that started it, however that ended
    // (a signal to the command alone left workers doing I/O until their
    // run's end). The parent's number, given by `spawn`, tells whether it
    // ended before the request was made.
    // SAFETY: prctl(PR_SET_PDEATHSIG) with a signal number, and getppid(2),
    // which takes nothing; neither touches memory.
    let parent = unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
        libc::getppid()
    };
    if std::env::var(PARENT_VAR).is_ok_and(|p| p.parse::<i32>().ok() != Some(parent)) {
        return ExitCode::FAILURE;
    }
    let out = match Job::from_arg(arg) {
        Err(e) => json!({ "error": e }),
        Ok(job) => match load::run(&job) {
            Ok(o) => {
                let mut v = o.to_json();
                if job.aio == Aio::Uaio {
                    v["backend"] = json!(uaio::backend_name());
                }
                v
            }
            Err(e) => json!({ "error": e }),
        },
    };
    println!("{out}");
    ExitCode::SUCCESS
}

/// Notes printed under the table (and in the JSON).
#[derive(Debug, Default)]
struct Notes(Vec<String>);

impl Notes {
    fn add(&mut self, s: String) {
        if !self.0.contains(&s) {
            self.0.push(s);
        }
    }
}

/// `n` and the noun, in the plural unless `n` is 1.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The environment variable that gives a worker its parent's process id.
const PARENT_VAR: &str = "UAIO_BENCH_PARENT";

/// Runs one job in a worker process.
fn spawn(job: &Job, engine: Engine) -> Result<Outcome, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the uaio executable: {e}"))?;
    let mut c = Command::new(exe);
    c.args(["bench", "--worker", &job.to_arg()]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c.env(PARENT_VAR, std::process::id().to_string());
    match engine.backend() {
        Some((env, _)) => c.env("UAIO_BACKEND", env),
        None => c.env_remove("UAIO_BACKEND"),
    };
    // A fault-injection setting of the caller must not reach the workers.
    c.env_remove("UAIO_FAULTS");
    let mut child = c.spawn().map_err(|e| format!("cannot start a worker: {e}"))?;
    let limit = Instant::now() + job.warmup + job.duration + Duration::from_secs(60);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the worker did not finish within 60 s of its end (killed)".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for the worker: {e}")),
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let line = out.lines().rev().find(|l| l.starts_with('{'));
    let Some(v) = line.and_then(|l| serde_json::from_str::<Value>(l).ok()) else {
        return Err(format!("{WORKER_FAILED} ({status}): {}", err.trim()));
    };
    if let Some(e) = v["error"].as_str() {
        return Err(e.to_string());
    }
    if let Some((_, want)) = engine.backend() {
        let got = v["backend"].as_str().unwrap_or("?");
        if got != want {
            return Err(format!("UAIO_BACKEND asked for {want} but uaio ran on {got}"));
        }
    }
    Outcome::from_json(&v).ok_or_else(|| format!("bad worker output: {line:?}"))
}

/// Why `engine` cannot run at all here, if so.
fn probe_engine(engine: Engine) -> Option<String> {
    match engine {
        Engine::Kernel => match Aio::Kernel.setup(1) {
            Ok(ctx) => {
                Aio::Kernel.destroy(ctx);
                None
            }
            Err(r) => Some(format!("kernel AIO unavailable: io_setup: {}", aio::errno_name(r))),
        },
        Engine::Uring => (!uaio::io_uring_available())
            .then(|| "io_uring is unavailable to this process (io_uring_setup refused)".to_string()),
        Engine::Threads => None,
    }
}

/// Prints to stdout, or to stderr when stdout carries the JSON.
macro_rules! say {
    ($opts:expr, $pb:expr, $($t:tt)*) => {{
        let s = format!($($t)*);
        $pb.suspend(|| if $opts.json { eprintln!("{s}") } else { println!("{s}") });
    }};
}

fn bench(opts: &Options, workloads: &[Workload]) -> Result<(), String> {
    let hidden = ProgressBar::hidden();
    let engine_na: BTreeMap<Engine, String> =
        opts.engines.iter().filter_map(|&e| probe_engine(e).map(|r| (e, r))).collect();
    let warmup = Duration::from_secs_f64((opts.duration / 4.0).min(0.25));
    let duration = Duration::from_secs_f64(opts.duration);

    let t0 = Instant::now();
    if let Some(path) = &opts.svg {
        // Refused now, not after the whole run.
        writable(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let exists = opts.file.as_ref().is_some_and(|p| p.exists());
    if !exists {
        say!(opts, hidden, "uaio bench: writing a test file of {}...", shown_size(opts.size));
    }
    let tf = TestFile::prepare(opts.file.as_deref(), &opts.dir, opts.size).map_err(|e| {
        let where_ = opts.file.clone().unwrap_or_else(|| opts.dir.clone());
        format!("cannot prepare the test file ({}): {e}", where_.display())
    })?;
    let fs = file::fs_name(&tf.file);
    let mut notes = Notes::default();
    let mut crashed = 0usize;
    // O_DIRECT is probed with the smallest block of the direct workloads
    // selected; each one whose own block does not fit in the file is left
    // out alone (below), not every one with it.
    let min_direct_bs = workloads.iter().filter(|w| w.cache == Cache::Direct).map(|w| w.bs).min().unwrap_or(opts.bs);
    let direct_na = if tf.size < min_direct_bs as u64 {
        // (A probe of fewer bytes than a block fails for that reason alone.)
        Some(load::smaller_than_block(tf.size, min_direct_bs as u64))
    } else {
        file::probe_direct(&tf, min_direct_bs)
            .err()
            .map(|e| format!("O_DIRECT does not work on {} ({fs}): {e}", tf.shown))
    };
    if direct_na.is_none() && file::memory_fs(&fs) {
        notes.add(format!(
            "{fs} keeps files in memory: O_DIRECT requests are memory copies, not device I/O (use --dir on a disk)"
        ));
    }

    // Which (workload, engine) pairs run, and why the others do not.
    let mut cells: BTreeMap<(usize, Engine), Cell> = BTreeMap::new();
    let mut runs = 0usize;
    for (wi, w) in workloads.iter().enumerate() {
        for &e in &opts.engines {
            let na = engine_na
                .get(&e)
                .cloned()
                .or_else(|| (e == Engine::Kernel).then(|| w.kernel_reason().map(str::to_string)).flatten())
                .or_else(|| (w.cache == Cache::Direct).then(|| direct_na.clone()).flatten())
                .or_else(|| {
                    (w.op != Op::Noop && tf.size < w.bs as u64).then(|| load::smaller_than_block(tf.size, w.bs as u64))
                })
                .or_else(|| {
                    (tf.read_only && matches!(w.op, Op::Write | Op::WriteFsync))
                        .then(|| format!("{} cannot be written", tf.shown))
                });
            if na.is_none() {
                runs += opts.rounds;
            }
            cells.insert((wi, e), Cell { engine: e, runs: Vec::new(), failure: na });
        }
    }
    let per_run = warmup.as_secs_f64() + duration.as_secs_f64() + 0.03;
    let estimate = runs as f64 * per_run + t0.elapsed().as_secs_f64();
    say!(
        opts,
        hidden,
        "uaio bench: {} x {} x {} = {runs} runs of {:.2} s (+{:.2} s warm-up): about {:.0} s",
        plural(workloads.len(), "workload"),
        plural(opts.engines.len(), "engine"),
        plural(opts.rounds, "round"),
        duration.as_secs_f64(),
        warmup.as_secs_f64(),
        estimate.ceil()
    );
    let backends = opts
        .engines
        .iter()
        .filter(|e| e.backend().is_some())
        .map(|e| match engine_na.get(e) {
            Some(_) => format!("{} (unavailable)", e.name()),
            None => e.name().to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    say!(
        opts,
        hidden,
        "test file {} on {fs}, {}; {} CPUs; uaio backends: {}",
        tf.shown,
        shown_size(tf.size),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        if backends.is_empty() { "none (kernel AIO only)" } else { &backends }
    );

    let pb = ProgressBar::new(runs as u64);
    pb.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} runs, {elapsed} elapsed, about {eta} left  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let drop_how = if opts.drop_global {
        "echo 1 > /proc/sys/vm/drop_caches"
    } else {
        "posix_fadvise(POSIX_FADV_DONTNEED) of the file"
    };
    for (wi, w) in workloads.iter().enumerate() {
        for round in 0..opts.rounds {
            let seed = 0x5151_0000_0000_0001u64 ^ ((wi as u64) << 32) ^ round as u64;
            for &e in &opts.engines {
                let cell = cells.get_mut(&(wi, e)).expect("cell");
                if cell.failure.is_some() {
                    continue;
                }
                pb.set_message(format!("{} on {} (round {})", w.name, e.name(), round + 1));
                // The page cache as the workload wants it, outside the timing.
                let prep = (|| -> Result<(), String> {
                    tf.sync().map_err(|e| format!("fdatasync of the test file: {e}"))?;
                    match w.cache {
                        Cache::Cached => {
                            let r = tf.warm().map_err(|e| format!("reading the test file into the cache: {e}"))?;
                            if r < 0.99 {
                                notes.add(format!(
                                    "{}: only {:.0}% of the file stayed in the page cache (memory pressure?)",
                                    w.name,
                                    r * 100.0
                                ));
                            }
                            Ok(())
                        }
                        Cache::Uncached => {
                            let left = tf.drop_cache(opts.drop_global)?;
                            if left > 0.01 {
                                Err(format!(
                                    "{:.0}% of the file stayed in the page cache after {drop_how}{}",
                                    left * 100.0,
                                    if file::memory_fs(&fs) {
                                        format!(" ({fs} keeps files in memory)")
                                    } else {
                                        String::new()
                                    }
                                ))
                            } else {
                                Ok(())
                            }
                        }
                        _ => Ok(()),
                    }
                })();
                let r = prep.and_then(|()| {
                    let job = Job {
                        w: w.clone(),
                        aio: if e == Engine::Kernel { Aio::Kernel } else { Aio::Uaio },
                        path: tf.path.clone(),
                        size: tf.size,
                        warmup,
                        duration,
                        seed,
                    };
                    spawn(&job, e)
                });
                match r {
                    Ok(o) => {
                        if o.exhausted {
                            notes.add(format!(
                                "{}: some runs ended early, every block having been read once (use a larger --size)",
                                w.name
                            ));
                        }
                        cell.runs.push(o);
                    }
                    Err(why) => {
                        // A failure is not retried: the later rounds are skipped.
                        if why.starts_with(WORKER_FAILED) {
                            crashed += 1;
                        }
                        pb.inc((opts.rounds - round - 1) as u64);
                        cell.failure = Some(why);
                        cell.runs.clear();
                    }
                }
                pb.inc(1);
            }
        }
        if w.cache == Cache::Uncached && opts.engines.iter().any(|&e| !cells[&(wi, e)].runs.is_empty()) {
            notes.add(format!("{}: the file was evicted before each run with {drop_how}", w.name));
        }
    }
    pb.finish_and_clear();
    let _ = tf.sync();

    let rows: Vec<Row> = workloads
        .iter()
        .enumerate()
        .map(|(wi, w)| Row {
            workload: w.clone(),
            cells: opts.engines.iter().map(|&e| cells.remove(&(wi, e)).expect("cell")).collect(),
        })
        .collect();
    let report = Report {
        rows,
        notes: notes.0,
        config: json!({
            "file": tf.shown,
            "fs": fs,
            "size": tf.size,
            "bs": opts.bs,
            "qd": opts.qd,
            "depth": opts.depth,
            "duration_s": duration.as_secs_f64(),
            "warmup_s": warmup.as_secs_f64(),
            "rounds": opts.rounds,
            "drop": drop_how,
            "engines": opts.engines.iter().map(|e| e.name()).collect::<Vec<_>>(),
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "kernel": kernel_release(),
            "elapsed_s": t0.elapsed().as_secs_f64(),
        }),
    };
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json()).map_err(|e| e.to_string())?);
    } else {
        print!("{}", report.table());
    }
    if let Some(path) = &opts.svg {
        report.svg(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        if !opts.json {
            println!("chart written to {}", path.display());
        }
    }
    if crashed > 0 {
        // The table says which; the exit status must not claim success.
        return Err(format!("{} ended abnormally (see the table)", plural(crashed, "run")));
    }
    Ok(())
}

/// How a run whose worker ended without its result is reported.
const WORKER_FAILED: &str = "the worker failed";

/// A size as the messages show it: MiB, or bytes below one.
fn shown_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// `uname -r`.
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("0.5M"), Ok(512 << 10));
        assert!(parse_size("x").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn options() {
        let a = |v: &[&str]| parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let o = a(&[]).unwrap();
        assert_eq!((o.size, o.bs, o.qd.clone(), o.depth, o.rounds), (256 << 20, 4096, vec![1, 32, 128], 32, 3));
        assert_eq!(o.engines, vec![Engine::Kernel, Engine::Uring, Engine::Threads]);
        let o = a(&["--size=8M", "--duration", "0.1", "--engines", "threads,kernel", "--qd=4,8"]).unwrap();
        assert_eq!((o.size, o.duration, o.qd.clone()), (8 << 20, 0.1, vec![4, 8]));
        assert_eq!(o.engines, vec![Engine::Kernel, Engine::Threads]);
        assert!(a(&["--bogus"]).is_err());
        assert!(a(&["--engines", "spdk"]).is_err());
        assert!(a(&["--duration", "-1"]).is_err());
        // Bounds that would have aborted a worker or the command itself.
        assert!(a(&["--duration", "1e300"]).is_err());
        assert!(a(&["--qd", "4294967297"]).is_err());
        assert!(a(&["--depth", "4294967297"]).is_err());
        // Buffers for every request in flight: 3 GiB blocks at depth 128
        // (a worker aborted allocating them), and 16 MiB ones at 128.
        assert!(a(&["--bs", "3G"]).is_err());
        assert!(a(&["--bs", "16M"]).is_err());
        assert!(a(&["--bs", "1M"]).is_ok());
        assert!(a(&["--bs", "16M", "--qd", "1,32", "--depth", "16"]).is_ok());
        assert_eq!(a(&["--qd", "1,1,32"]).unwrap().qd, vec![1, 32]);
        assert_eq!(a(&["--help"]).unwrap_err().kind(), clap::error::ErrorKind::DisplayHelp);
    }
}
