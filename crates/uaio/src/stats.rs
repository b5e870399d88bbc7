//! `UAIO_STATS=FILE`: what a program did with AIO, per context and opcode,
//! for `uaio run --stats`.
//!
//! Each context counts, per opcode, its requests, the bytes they moved,
//! how many completed inside `io_submit`, the cancelled ones and the
//! errors by errno, with a histogram of the latency of those that went to
//! the backend (submission to harvest, powers of two of nanoseconds); and
//! the number of requests in flight after each `io_submit` (powers of two)
//! and the `io_cancel` calls that found their request. The counts live
//! under the context's completion lock, which every hook already holds.
//! When the context is destroyed, or the process exits with it alive, one
//! JSON line goes to the end of FILE (opened `O_APPEND`, so the processes
//! of one run share it).
//!
//! Off unless `UAIO_STATS` is set when the process makes its first
//! context: each hook is then one test of a field that is `None`.

use std::path::PathBuf;
use std::time::Instant;

use uaio_abi::*;

use crate::sys::process::Leaked;

/// Where the records go, read once.
fn path() -> Option<&'static PathBuf> {
    static PATH: Leaked<Option<PathBuf>> = Leaked::new();
    PATH.get_or_init(|| std::env::var_os("UAIO_STATS").filter(|v| !v.is_empty()).map(PathBuf::from)).as_ref()
}

/// Whether contexts count (`UAIO_STATS` is set).
pub(crate) fn on() -> bool {
    path().is_some()
}

/// Nanoseconds on a monotonic clock (since the first call).
pub(crate) fn now_ns() -> u64 {
    static BASE: Leaked<Instant> = Leaked::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Opcodes by their `aio_lio_opcode` value (4 is unused by the kernel).
const OPCODES: [&str; 9] = ["pread", "pwrite", "fsync", "fdsync", "", "poll", "noop", "preadv", "pwritev"];

/// Buckets of a powers-of-two histogram: bucket `i` holds values in
/// `[2^(i-1), 2^i)` (bucket 0 holds 0).
const BUCKETS: usize = 48;

fn bucket(v: u64) -> usize {
    ((u64::BITS - v.leading_zeros()) as usize).min(BUCKETS - 1)
}

/// What one opcode did on one context.
#[derive(Debug, Clone, Default)]
struct OpStats {
    count: u64,
    bytes: u64,
    inline: u64,
    cancelled: u64,
    /// (errno, count), in order of first appearance.
    errors: Vec<(i64, u64)>,
    latency: Vec<u64>,
}

/// One context's counts.
#[derive(Debug)]
pub(crate) struct CtxStats {
    id: u32,
    nr_events: u32,
    backend: &'static str,
    ops: [OpStats; OPCODES.len()],
    depth: [u64; 24],
    cancel_calls: u64,
    written: bool,
}

impl CtxStats {
    /// Counts for the context `id` of `nr_events` on `backend`.
    pub(crate) fn new(id: u32, nr_events: u32, backend: &'static str) -> Box<CtxStats> {
        Box::new(CtxStats {
            id,
            nr_events,
            backend,
            ops: Default::default(),
            depth: [0; 24],
            cancel_calls: 0,
            written: false,
        })
    }

    /// A request of `opcode` completed with `res`: inside `io_submit`
    /// (`inline`), or after `latency` nanoseconds in the backend;
    /// `cancelled` by `io_cancel` or `io_destroy` (a cancelled POLL
    /// completes with 0, other requests with `-ECANCELED`).
    pub(crate) fn completed(&mut self, opcode: u16, res: i64, inline: bool, latency: u64, cancelled: bool) {
        let Some(s) = self.ops.get_mut(opcode as usize) else { return };
        s.count += 1;
        if inline {
            s.inline += 1;
        } else {
            if s.latency.is_empty() {
                s.latency = vec![0; BUCKETS];
            }
            s.latency[bucket(latency)] += 1;
        }
        let rw = matches!(opcode, IOCB_CMD_PREAD | IOCB_CMD_PWRITE | IOCB_CMD_PREADV | IOCB_CMD_PWRITEV);
        if cancelled || res == -(libc::ECANCELED as i64) {
            s.cancelled += 1;
        } else if res > 0 && rw {
            s.bytes += res as u64;
        } else if res < 0 {
            match s.errors.iter_mut().find(|(e, _)| *e == -res) {
                Some((_, n)) => *n += 1,
                None => s.errors.push((-res, 1)),
            }
        }
    }

    /// `io_submit` left `in_flight` requests in the backend.
    pub(crate) fn depth(&mut self, in_flight: u32) {
        self.depth[bucket(in_flight as u64).min(self.depth.len() - 1)] += 1;
    }

    /// An `io_cancel` found its request.
    pub(crate) fn cancel_call(&mut self) {
        self.cancel_calls += 1;
    }

    /// Appends this context's record to the file (once).
    pub(crate) fn write_out(&mut self) {
        let Some(p) = path() else { return };
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        crate::sys::append_to(p, self.json().as_bytes());
    }

    fn json(&self) -> String {
        let list = |v: &[u64]| {
            let end = v.iter().rposition(|&n| n != 0).map_or(0, |i| i + 1);
            v[..end].iter().map(u64::to_string).collect::<Vec<_>>().join(",")
        };
        let mut ops = Vec::new();
        for (name, s) in OPCODES.iter().zip(&self.ops) {
            if s.count == 0 {
                continue;
            }
            let errors: Vec<String> = s.errors.iter().map(|(e, n)| format!("\"{e}\":{n}")).collect();
            ops.push(format!(
                "\"{name}\":{{\"count\":{},\"bytes\":{},\"inline\":{},\"cancelled\":{},\"errors\":{{{}}},\
                 \"latency_log2_ns\":[{}]}}",
                s.count,
                s.bytes,
                s.inline,
                s.cancelled,
                errors.join(","),
                list(&s.latency),
            ));
        }
        format!(
            "{{\"pid\":{},\"ctx\":{},\"nr_events\":{},\"backend\":\"{}\",\"cancel_calls\":{},\
             \"depth_log2\":[{}],\"ops\":{{{}}}}}\n",
            std::process::id(),
            self.id,
            self.nr_events,
            self.backend,
            self.cancel_calls,
            list(&self.depth),
            ops.join(","),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(
            [bucket(0), bucket(1), bucket(2), bucket(3), bucket(4), bucket(1023), bucket(1024)],
            [0, 1, 2, 2, 3, 10, 11]
        );
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn a_record_counts_bytes_inline_errors_and_cancels() {
        let mut s = CtxStats::new(3, 64, "threads");
        s.completed(IOCB_CMD_PREAD, 4096, true, 0, false);
        s.completed(IOCB_CMD_PREAD, 100, false, 1500, false);
        s.completed(IOCB_CMD_PREAD, -(libc::EAGAIN as i64), false, 10, false);
        s.completed(IOCB_CMD_PREAD, -(libc::ECANCELED as i64), false, 10, true);
        s.completed(IOCB_CMD_POLL, 1, false, 5, false);
        s.completed(IOCB_CMD_POLL, 0, false, 5, true);
        s.depth(0);
        s.depth(5);
        s.cancel_call();
        let j = s.json();
        assert!(j.starts_with(&format!("{{\"pid\":{},\"ctx\":3,\"nr_events\":64,", std::process::id())), "{j}");
        assert!(j.contains("\"cancel_calls\":1,\"depth_log2\":[1,0,0,1]"), "{j}");
        assert!(
            j.contains(
                "\"pread\":{\"count\":4,\"bytes\":4196,\"inline\":1,\"cancelled\":1,\"errors\":{\"11\":1},\
                 \"latency_log2_ns\":[0,0,0,0,2,0,0,0,0,0,0,1]}"
            ),
            "{j}"
        );
        assert!(j.contains("\"poll\":{\"count\":2,\"bytes\":0,\"inline\":0,\"cancelled\":1,"), "{j}");
        assert!(j.ends_with("}}\n"), "{j}");
    }
}
