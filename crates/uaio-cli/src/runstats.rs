//! `uaio run --stats`: the program runs with `UAIO_STATS` naming a file in a
//! private directory; each of its contexts appends a JSON record there when
//! it is destroyed or the process exits (see the engine's `stats` module).
//! Once the program has exited, the records are printed as a table on
//! stderr (and, with `--stats-json FILE`, written to FILE as one JSON
//! document).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Opcodes in the order the table lists them.
const OPCODES: [&str; 8] = ["pread", "pwrite", "preadv", "pwritev", "fsync", "fdsync", "poll", "noop"];

/// A file for the records of one run, in a directory only this user can
/// write to.
pub fn record_file() -> Result<PathBuf, String> {
    let base = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("uaio-stats-")
        .tempdir_in(&base)
        .map_err(|e| format!("cannot make a directory in {}: {e}", base.display()))?;
    Ok(dir.keep().join("records.jsonl"))
}

/// After the program's exit: prints the table from the records in `file`
/// to stderr, writes them to `json` if asked, and removes the file.
pub fn report(file: &Path, json: Option<&Path>, program: &OsString) -> Result<(), String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let _ = std::fs::remove_file(file);
    if let Some(dir) = file.parent() {
        let _ = std::fs::remove_dir(dir);
    }
    let records: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("a record that is not JSON ({e}): {l}")))
        .collect::<Result<_, _>>()?;
    eprint!("{}", table(&records, program));
    if let Some(out) = json {
        let doc = serde_json::json!({ "program": program.to_string_lossy(), "contexts": records });
        let body = serde_json::to_string_pretty(&doc).expect("JSON values serialise");
        std::fs::write(out, body + "\n").map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    }
    Ok(())
}

fn num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn hist(v: &Value, key: &str) -> Vec<u64> {
    v.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()
}

/// The value below which `q` of the histogram's samples lie, as the upper
/// bound of its bucket (bucket `i` holds `[2^(i-1), 2^i)`).
fn quantile(h: &[u64], q: f64) -> Option<u64> {
    let total: u64 = h.iter().sum();
    if total == 0 {
        return None;
    }
    let want = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &n) in h.iter().enumerate() {
        seen += n;
        if seen >= want {
            return Some(if i == 0 { 0 } else { 1u64 << i });
        }
    }
    None
}

fn duration(ns: Option<u64>) -> String {
    match ns {
        None => "-".into(),
        Some(n) if n < 1_000 => format!("<{n}ns"),
        Some(n) if n < 1_000_000 => format!("<{}us", n / 1_000),
        Some(n) if n < 1_000_000_000 => format!("<{}ms", n / 1_000_000),
        Some(n) => format!("<{}s", n / 1_000_000_000),
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1}GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1}MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1}KiB", n as f64 / 1024.0),
        n => format!("{n}B"),
    }
}

fn errors(v: &Value) -> String {
    let Some(m) = v.get("errors").and_then(Value::as_object) else { return String::new() };
    let mut out: Vec<String> = m
        .iter()
        .map(|(e, n)| {
            let name = e.parse().ok().and_then(uaio_conform::errno_symbol).map_or(format!("errno {e}"), String::from);
            format!("{name} x{}", n.as_u64().unwrap_or(0))
        })
        .collect();
    out.sort();
    out.join(", ")
}

/// The printed report.
fn table(records: &[Value], program: &OsString) -> String {
    let mut out = format!("\nuaio run --stats: {}\n", Path::new(program).display());
    if records.is_empty() {
        out += "  no AIO context was used (or none reached io_destroy or exit: a program killed by a signal, or \
                ended by exec, writes no record)\n";
        return out;
    }
    for r in records {
        out += &format!(
            "\nprocess {}, context {} ({}, nr_events {}): {} io_cancel that found its request\n",
            num(r, "pid"),
            num(r, "ctx"),
            r.get("backend").and_then(Value::as_str).unwrap_or("?"),
            num(r, "nr_events"),
            num(r, "cancel_calls"),
        );
        out += &format!(
            "  {:<8} {:>10} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9}  errors\n",
            "op", "requests", "bytes", "inline", "p50", "p99", "max", "cancelled"
        );
        let ops = r.get("ops").cloned().unwrap_or(Value::Null);
        for name in OPCODES {
            let Some(o) = ops.get(name) else { continue };
            let count = num(o, "count");
            let lat = hist(o, "latency_log2_ns");
            let max = lat.iter().rposition(|&n| n > 0).map(|i| if i == 0 { 0 } else { 1u64 << i });
            out += &format!(
                "  {:<8} {:>10} {:>10} {:>6.1}% {:>9} {:>9} {:>9} {:>9}  {}\n",
                name,
                count,
                bytes(num(o, "bytes")),
                if count > 0 { 100.0 * num(o, "inline") as f64 / count as f64 } else { 0.0 },
                duration(quantile(&lat, 0.5)),
                duration(quantile(&lat, 0.99)),
                duration(max),
                num(o, "cancelled"),
                errors(o),
            );
        }
        let depth = hist(r, "depth_log2");
        if depth.iter().any(|&n| n > 0) {
            let parts: Vec<String> = depth
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(i, n)| match i {
                    0 => format!("0: {n}"),
                    1 => format!("1: {n}"),
                    i => format!("{}-{}: {n}", 1u64 << (i - 1), (1u64 << i) - 1),
                })
                .collect();
            out += &format!("  in flight after io_submit: {}\n", parts.join(", "));
        }
    }
    out += "  (latency: from io_submit to the event's harvest, for requests that went to the backend; each bound \
            is the upper edge of a power-of-two bucket)\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_upper_bounds() {
        // 10 samples in [512, 1024), 1 in [2^20, 2^21).
        let mut h = vec![0u64; 22];
        h[10] = 10;
        h[21] = 1;
        assert_eq!(quantile(&h, 0.5), Some(1024));
        assert_eq!(quantile(&h, 0.99), Some(1 << 21));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn the_table_names_errors_and_shows_each_opcode() {
        let r: Value = serde_json::from_str(
            r#"{"pid":7,"ctx":0,"nr_events":32,"backend":"threads","cancel_calls":2,"depth_log2":[3,0,1],
               "ops":{"pread":{"count":4,"bytes":8192,"inline":1,"cancelled":1,"errors":{"11":2},
               "latency_log2_ns":[0,0,0,0,0,0,0,0,0,0,0,3]}}}"#,
        )
        .unwrap();
        let t = table(&[r], &OsString::from("/bin/prog"));
        assert!(t.contains("process 7, context 0 (threads, nr_events 32): 2 io_cancel"), "{t}");
        assert!(t.contains("pread"), "{t}");
        assert!(t.contains("8.0KiB"), "{t}");
        assert!(t.contains("25.0%"), "{t}");
        assert!(t.contains("EAGAIN x2"), "{t}");
        assert!(t.contains("<2us"), "{t}");
        assert!(t.contains("in flight after io_submit: 0: 3, 2-3: 1"), "{t}");
    }
}
