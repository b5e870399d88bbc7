//! `uaio check`: the conformance cases, each run on kernel AIO and on uaio.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

/// `uaio check` options.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "A case that this machine cannot run (a loop device, a throttled cgroup or a mount it needs cannot be made here) is reported as skipped, with the reason, and counted apart; it does not change the exit status.\n\nExit status: 0 when no case differs, 1 when one differs or kernel AIO does not work here, 2 for a usage error (including a FILTER that matches no case)."
)]
pub struct Args {
    /// Print the names of the cases (those matching FILTER) without running them.
    #[arg(long)]
    list: bool,
    /// Print the results as one JSON document on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Run only the cases whose name contains FILTER (e.g. `submit/`).
    filter: Option<String>,
}

/// Runs `uaio check`.
pub fn main(a: &Args) -> ExitCode {
    let filter = a.filter.as_deref().unwrap_or("");
    let cases: Vec<_> = uaio_conform::all_cases().into_iter().filter(|c| c.name.contains(filter)).collect();
    if cases.is_empty() {
        crate::usage_error("check", format!("no conformance case matches {filter:?} (see `uaio check --list`)"));
    }
    if a.list {
        if a.json {
            let names: Vec<_> = cases.iter().map(|c| c.name).collect();
            println!("{}", json!({ "cases": names }));
        } else {
            for c in &cases {
                println!("{}", c.name);
            }
        }
        return ExitCode::SUCCESS;
    }
    if let Err(why) = crate::info::kernel_aio_works() {
        eprintln!("uaio check: kernel AIO does not work here: {why}.");
        eprintln!("uaio check: every case compares uaio with kernel AIO, so none was run.");
        if a.json {
            let doc = json!({ "error": format!("kernel AIO does not work here: {why}"), "cases": [], "summary": { "run": 0 } });
            println!("{doc:#}");
        }
        return ExitCode::FAILURE;
    }

    let pb = ProgressBar::with_draw_target(
        Some(cases.len() as u64),
        if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
    );
    pb.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {wide_msg}").expect("a valid template"));
    let start = Instant::now();
    let (mut differ, mut extensions, mut skipped) = (0, 0, 0);
    let mut results = Vec::new();
    crate::interrupt::catch();
    let mut done = 0;
    for c in &cases {
        if crate::interrupt::signal().is_some() {
            break;
        }
        done += 1;
        pb.set_message(c.name);
        let o = uaio_conform::run_case(c);
        pb.inc(1);
        extensions += usize::from(o.extension);
        // A case that could not run here checked nothing: counted apart,
        // never as agreeing.
        let result = match (&o.failure, &o.skipped) {
            (Some(_), _) => "differ",
            (None, Some(_)) => "skipped",
            (None, None) => "agree",
        };
        differ += usize::from(result == "differ");
        skipped += usize::from(result == "skipped");
        if a.json {
            results.push(json!({
                "name": o.name,
                "result": result,
                "extension": o.extension,
                "difference": o.failure,
                "skipped": o.skipped,
            }));
        } else {
            pb.suspend(|| match (&o.failure, &o.skipped) {
                (Some(why), _) => println!("FAIL {}\n{why}", o.name),
                (None, Some(why)) => println!("skip {}: {why}", o.name),
                (None, None) => {
                    println!("ok   {}{}", o.name, if o.extension { "  (documented extension)" } else { "" })
                }
            });
        }
    }
    pb.finish_and_clear();
    if let Some(sig) = crate::interrupt::signal() {
        eprintln!("uaio check: interrupted after {done} of {} cases ({differ} differ so far)", cases.len());
        crate::interrupt::die_of(sig);
    }
    let secs = start.elapsed().as_secs_f64();
    let backend = uaio::backend_name();
    if a.json {
        let doc = json!({
            "backend": backend,
            "filter": filter,
            "cases": results,
            "summary": { "run": cases.len(), "agree": cases.len() - differ - skipped, "skipped": skipped, "differ": differ, "extensions": extensions, "seconds": secs },
        });
        println!("{doc:#}");
    } else {
        println!(
            "{} cases run on kernel AIO and on uaio ({backend}) in {secs:.1} s: {} agree ({extensions} of them documented extensions), {skipped} skipped (not runnable here), {differ} differ",
            cases.len(),
            cases.len() - differ - skipped,
        );
    }
    if differ == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
