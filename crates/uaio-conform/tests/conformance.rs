//! Runs every conformance case against the kernel and uaio and compares.
//! Set `UAIO_CONFORM_FILTER` to run only cases whose name contains it.

fn main() {
    let filter = std::env::var("UAIO_CONFORM_FILTER").unwrap_or_default();
    let cases: Vec<_> = uaio_conform::all_cases().into_iter().filter(|c| c.name.contains(&filter)).collect();
    let (mut passed, mut failed, mut ext) = (0, 0, 0);
    for c in &cases {
        let o = uaio_conform::run_case(c);
        match &o.failure {
            None => {
                passed += 1;
                if o.extension {
                    ext += 1;
                }
                println!("ok   {}", o.name);
            }
            Some(why) => {
                failed += 1;
                println!("FAIL {}\n{why}", o.name);
            }
        }
    }
    println!(
        "conformance: {} cases run on kernel and on uaio; {} agree ({} as documented extensions), {} disagree",
        cases.len(),
        passed,
        ext,
        failed
    );
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
