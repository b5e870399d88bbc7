//! The `uaio` command.
//!
//! - `uaio check [--list] [--json] [FILTER]` runs the conformance suite:
//!   every case against kernel AIO and against uaio, and reports where they
//!   differ (after checking that kernel AIO works here at all).
//! - `uaio run [--backend uring|threads] [--verbose] [--] CMD ARGS...` runs
//!   a dynamically linked program on uaio's drop-in library, which this
//!   binary carries (see [`dropin`]).
//! - `uaio lib [--file]` installs that library and prints where.
//! - `uaio info [--json] [--nr N]` shows the kernel, the backend and why,
//!   the limits and the ring geometry for `nr`.
//! - `uaio stress [OPTIONS]` runs many threads of submit, reap, cancel and
//!   destroy on uaio (or `--kernel`) and checks every result (see `stress`).
//! - `uaio bench [OPTIONS]` measures kernel AIO and uaio (both backends) side
//!   by side on a fixed set of workloads (see `bench`).
//! - `uaio completions SHELL` prints a completion script.
//!
//! Exit status: 0 on success; 1 when the work itself failed (a case
//! differs, a program cannot be started...); 2 for a usage error (an
//! unknown option, a filter that matches no case, `uaio` with no
//! subcommand, which prints the help to stderr as clap does).

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

mod bench;
mod check;
mod dropin;
mod info;
mod interrupt;
mod runstats;
mod stress;

/// Linux AIO (io_setup, io_submit, io_getevents, io_cancel, io_destroy) in
/// user space: check it against the kernel, run programs on it, measure it.
#[derive(Debug, Parser)]
#[command(name = "uaio", version, arg_required_else_help = true, propagate_version = false)]
#[command(
    after_help = "Environment: UAIO_BACKEND=uring|threads picks the backend; UAIO_LIBAIO=PATH makes `uaio run` and `uaio lib` use that library instead of the one built in."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the conformance cases on kernel AIO and on uaio and compare them.
    Check(check::Args),
    /// Run a program with uaio's libaio.so.1 (and libaio.so.1t64) in place of the kernel's AIO.
    Run(RunArgs),
    /// Install the drop-in library (libaio.so.1 and libaio.so.1t64) and print its directory.
    Lib(LibArgs),
    /// Show the kernel, the backend and why it was chosen, the limits and the ring geometry.
    Info(info::Args),
    /// Submit, reap, cancel and destroy from many threads and check every result (`uaio stress --help`).
    #[command(disable_help_flag = true)]
    Stress(Raw),
    /// Kernel AIO against uaio: IOPS, latency, ratios (`uaio bench --help`).
    #[command(disable_help_flag = true)]
    Bench(Raw),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Arguments handed unparsed to a subcommand with its own parser.
#[derive(Debug, clap::Args)]
struct Raw {
    /// Options of the subcommand (see its --help).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// `uaio run`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The library goes first on LD_LIBRARY_PATH (under both names, libaio.so.1 and libaio.so.1t64) and into LD_PRELOAD (which also serves syscall(SYS_io_*)); children of the program inherit both. Nothing is printed unless --verbose is given."
)]
struct RunArgs {
    /// Backend of the program's uaio (sets UAIO_BACKEND; default: io_uring when available).
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Say which library and backend the program gets (on stderr).
    #[arg(short, long)]
    verbose: bool,
    /// When the program exits, print what it did with AIO (per context and opcode: requests, bytes,
    /// latency percentiles, share completed inside io_submit, cancels, errors, queue depth) on stderr.
    #[arg(long)]
    stats: bool,
    /// Also write those statistics to FILE as JSON (implies --stats).
    #[arg(long, value_name = "FILE")]
    stats_json: Option<PathBuf>,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD", value_hint = clap::ValueHint::CommandWithArguments)]
    command: Vec<OsString>,
}

/// `uaio lib`.
#[derive(Debug, clap::Args)]
struct LibArgs {
    /// Print the library file (for LD_PRELOAD) instead of its directory (for LD_LIBRARY_PATH).
    #[arg(long)]
    file: bool,
}

/// A backend, as `uaio run --backend` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// io_uring.
    #[value(alias = "io_uring")]
    Uring,
    /// The thread pool.
    Threads,
}

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of the
    // output goes away (`uaio check | head`): Rust ignores SIGPIPE and
    // would panic on the failed write instead. Programs `uaio run` starts
    // get the default disposition either way.
    // SAFETY: setting a signal's disposition to its default, before any
    // thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    quiet_output_failures();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Check(a) => check::main(&a),
        Cmd::Run(a) => {
            let stats = (a.stats || a.stats_json.is_some()).then_some(a.stats_json);
            let backend = a.backend.map(|b| if b == Backend::Uring { "uring" } else { "threads" });
            dropin::run(backend, a.verbose, stats, &a.command)
        }
        Cmd::Lib(a) => dropin::print_location(a.file),
        Cmd::Info(a) => info::main(&a),
        Cmd::Stress(r) => stress::main(&r.args),
        Cmd::Bench(r) => bench::main(&r.args),
        Cmd::Completions { shell } => {
            // With the options of the subcommands that parse their own.
            let mut cli = Cli::command()
                .mut_subcommand("stress", |_| stress::command())
                .mut_subcommand("bench", |_| bench::command());
            // Made in memory, then written: the generator panics when
            // its writes fail (a full device).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cli, "uaio", &mut script);
            let mut out = std::io::stdout().lock();
            match out.write_all(&script).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("uaio: cannot write to standard output: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// A failed write to standard output (a full device, a closed descriptor)
/// ends the command with one line on stderr and status 1, as other tools
/// do, instead of the panic and backtrace of Rust's `print!`; any other
/// panic is reported as before.
fn quiet_output_failures() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if let Some(why) = msg.strip_prefix("failed printing to stdout: ") {
            eprintln!("uaio: cannot write to standard output: {why}");
            std::process::exit(1);
        }
        default(info);
    }));
}

/// Ends the process with clap's usage error of the subcommand `sub`
/// (message and that subcommand's usage line on stderr, exit 2).
fn usage_error(sub: &str, msg: impl std::fmt::Display) -> ! {
    let mut root = Cli::command();
    root.build();
    let mut cmd = root.find_subcommand_mut(sub).map(|c| c.clone()).unwrap_or_else(Cli::command);
    cmd.error(clap::error::ErrorKind::InvalidValue, msg).exit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("uaio").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_options_with_equals_and_leaves_the_program_alone() {
        let Cmd::Run(r) = parse(&["run", "--backend=threads", "fio", "--name=x", "-v"]).unwrap().command else {
            panic!()
        };
        assert_eq!(r.backend, Some(Backend::Threads));
        assert!(!r.verbose);
        assert_eq!(r.command, ["fio", "--name=x", "-v"]);
        let Cmd::Run(r) = parse(&["run", "-v", "--backend", "io_uring", "--", "--odd-name"]).unwrap().command else {
            panic!()
        };
        assert_eq!(r.backend, Some(Backend::Uring));
        assert!(r.verbose);
        assert_eq!(r.command, ["--odd-name"]);
    }

    #[test]
    fn run_refuses_an_unknown_option_or_backend_or_no_program() {
        assert_eq!(parse(&["run", "--bogus", "fio"]).unwrap_err().kind(), clap::error::ErrorKind::UnknownArgument);
        assert_eq!(
            parse(&["run", "--backend=kernel", "fio"]).unwrap_err().kind(),
            clap::error::ErrorKind::InvalidValue
        );
        assert_eq!(
            parse(&["run", "--backend=threads"]).unwrap_err().kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn stress_and_bench_get_their_arguments_raw() {
        let Cmd::Bench(r) = parse(&["bench", "--help"]).unwrap().command else { panic!() };
        assert_eq!(r.args, ["--help"]);
        let Cmd::Stress(r) = parse(&["stress", "--threads=4", "--kernel"]).unwrap().command else { panic!() };
        assert_eq!(r.args, ["--threads=4", "--kernel"]);
    }
}
