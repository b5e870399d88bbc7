//! The `uaio` command. `uaio check` runs the conformance suite: every case
//! against kernel AIO and against uaio, and reports where they differ.

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: uaio check [FILTER]    run the conformance cases on the kernel and on uaio");
    eprintln!("       uaio info              show the backend and limits");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("check") | None => check(args.get(1).map(String::as_str).unwrap_or("")),
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
