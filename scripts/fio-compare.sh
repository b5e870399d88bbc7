#!/usr/bin/env bash
# fio comparison: the same fio jobs (bench/fio/*.fio), on the same file, in
# one run, through four engines:
#   kernel        fio ioengine=libaio with the system libaio (kernel AIO)
#   uaio-uring    fio ioengine=libaio on uaio's drop-in libaio.so.1, io_uring backend
#   uaio-threads  the same on the thread-pool backend
#   io_uring      fio ioengine=io_uring
# For each workload the engines run interleaved (kernel, uaio-uring,
# uaio-threads, io_uring, again) for a number of rounds; the table shows the
# median IOPS of each engine, its ratio to kernel AIO and, for the
# submission-batching row, the mean submission latency (fio's slat).
#
# Every run is checked for what served it, by watching its process while it
# runs: kernel AIO shows its ring in /proc/PID/maps as "[aio]"; uaio shows
# its library mapped and its "uaio-progress" thread, with no "[aio]" but
# the thread pool's direct lane (one ring, beside a "uaio-reaper" thread); the
# io_uring backend (and fio's io_uring engine) an "anon_inode:[io_uring]"
# mapping, which the thread pool never has. fio's stderr must be clean (for
# uaio, only the line of `uaio run --verbose`) and its JSON free of errors.
# Any failure makes the script exit non-zero; nothing is skipped.
#
# Usage: scripts/fio-compare.sh [options]
#   --quick            tiny runs (300ms, no ramp, 1 round, 64 MiB file): checks that everything runs
#   --rounds N         rounds per engine and workload; the median is shown   (FIO_COMPARE_ROUNDS, default 3)
#   --runtime T        measured time per run, fio syntax: 3s, 500ms          (FIO_COMPARE_RUNTIME, default 3s)
#   --ramp T           warm-up before each measured run, fio syntax           (FIO_COMPARE_RAMP, default 500ms)
#   --size S           size of the test file: 1g, 256m, ... (whole MiB)       (FIO_COMPARE_SIZE, default 1g)
#   --dir D            where the test file is made (ext4/xfs: O_DIRECT)       (FIO_COMPARE_DIR, default /var/tmp)
#   --file F           use (or make, and keep) this test file instead         (FIO_COMPARE_FILE)
#   --workloads A,B    only these workloads (names as in --list)             (FIO_COMPARE_WORKLOADS)
#   --engines A,B      only these engines (kernel, uaio-uring, uaio-threads, io_uring) (FIO_COMPARE_ENGINES)
#   --keep D           copy every run's fio JSON and stderr into D
#   --no-build         do not (re)build the drop-in library (it must exist)
#   --list             list the workloads and exit
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
jobs_dir="$root/bench/fio"

all_workloads=(
    dio-randread-qd1 dio-randread-qd32 dio-randread-qd128 dio-randwrite-qd32
    dio-seqread-128k-qd16 dio-randread-qd32-batch8
    buf-randwrite-qd32 buf-randwrite-qd32-fsync32
    cached-randread-qd1 cached-randread-qd32 cached-randread-qd128
    uncached-randread-qd32 dio-randread-qd32-2jobs
)
all_engines=(kernel uaio-uring uaio-threads io_uring)
# The workload whose row also reports fio's mean submission latency.
slat_workload=dio-randread-qd32-batch8

die() {
    echo "fio-compare: $*" >&2
    exit 1
}

usage() {
    sed -n '/^# Usage:/,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-0}"
}

# First comment paragraph of a job file, on one line.
describe() {
    sed -n '/^;/!q; s/^; \{0,1\}//p' "$jobs_dir/$1.fio" | tr '\n' ' ' | sed 's/ *$//'
}

quick=0
build=1
opt_rounds='' opt_runtime='' opt_ramp='' opt_size='' opt_dir='' opt_file='' opt_workloads='' opt_engines='' keep=''
need() {
    if [ $# -lt 2 ] || [ -z "$2" ]; then
        die "$1 needs a value"
    fi
}
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1 ;;
        --rounds) need "$@"; opt_rounds=$2; shift ;;
        --runtime) need "$@"; opt_runtime=$2; shift ;;
        --ramp) need "$@"; opt_ramp=$2; shift ;;
        --size) need "$@"; opt_size=$2; shift ;;
        --dir) need "$@"; opt_dir=$2; shift ;;
        --file) need "$@"; opt_file=$2; shift ;;
        --workloads) need "$@"; opt_workloads=$2; shift ;;
        --engines) need "$@"; opt_engines=$2; shift ;;
        --keep) need "$@"; keep=$2; shift ;;
        --no-build) build=0 ;;
        --list)
            for w in "${all_workloads[@]}"; do
                printf '%-28s %s\n' "$w" "$(describe "$w")"
            done
            exit 0
            ;;
        -h | --help) usage 0 ;;
        *) echo "fio-compare: unknown option $1" >&2; usage 2 ;;
    esac
    shift
done

if [ $quick = 1 ]; then
    d_rounds=1 d_runtime=300ms d_ramp=0 d_size=64m
else
    d_rounds=3 d_runtime=3s d_ramp=500ms d_size=1g
fi
rounds=${opt_rounds:-${FIO_COMPARE_ROUNDS:-$d_rounds}}
runtime=${opt_runtime:-${FIO_COMPARE_RUNTIME:-$d_runtime}}
ramp=${opt_ramp:-${FIO_COMPARE_RAMP:-$d_ramp}}
size=${opt_size:-${FIO_COMPARE_SIZE:-$d_size}}
dir=${opt_dir:-${FIO_COMPARE_DIR:-/var/tmp}}
file=${opt_file:-${FIO_COMPARE_FILE:-}}
IFS=, read -r -a workloads <<<"${opt_workloads:-${FIO_COMPARE_WORKLOADS:-${all_workloads[*]}}}"
IFS=, read -r -a engines <<<"${opt_engines:-${FIO_COMPARE_ENGINES:-${all_engines[*]}}}"
# The defaults above are space-separated lists: split those too.
read -r -a workloads <<<"${workloads[*]}"
read -r -a engines <<<"${engines[*]}"

[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer, got '$rounds'"
for t in "$runtime" "$ramp"; do
    [[ $t =~ ^[0-9]+(us|ms|s|m)?$ ]] || die "bad time '$t' (fio syntax: 3s, 500ms, 0)"
done
[[ $runtime =~ ^0+(us|ms|s|m)?$ ]] && die "--runtime must not be 0"
[[ $size =~ ^([0-9]+)([kKmMgG]?)$ ]] || die "bad size '$size' (examples: 1g, 256m)"
size_bytes=${BASH_REMATCH[1]}
case ${BASH_REMATCH[2]} in
    k | K) size_bytes=$((size_bytes << 10)) ;;
    m | M) size_bytes=$((size_bytes << 20)) ;;
    g | G) size_bytes=$((size_bytes << 30)) ;;
esac
if [ $((size_bytes % (1 << 20))) -ne 0 ] || [ "$size_bytes" -lt $((4 << 20)) ]; then
    die "--size must be whole MiB, at least 4 MiB, got '$size'"
fi
[ ${#workloads[@]} -gt 0 ] || die "no workload chosen"
[ ${#engines[@]} -gt 0 ] || die "no engine chosen"
for w in "${workloads[@]}"; do
    [[ " ${all_workloads[*]} " == *" $w "* ]] || die "unknown workload '$w' (see --list)"
    [ -f "$jobs_dir/$w.fio" ] || die "missing job file $jobs_dir/$w.fio"
done
for e in "${engines[@]}"; do
    [[ " ${all_engines[*]} " == *" $e "* ]] || die "unknown engine '$e' (${all_engines[*]})"
done

# Tools: fio (installed when missing and possible), python3 for the JSON.
if ! command -v fio >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "fio-compare: installing fio" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null; } ||
            die "fio is not installed and 'apt-get install fio' failed"
        command -v fio >/dev/null || die "fio is still not there after 'apt-get install fio'"
    else
        die "fio is not installed and cannot be installed here (needs root and apt-get): install fio"
    fi
fi
command -v python3 >/dev/null || die "python3 is needed to read fio's JSON output"

# The uaio command, which carries the drop-in library (cargo rebuilds only
# what changed), and the library file it installs: what a uaio run maps.
uses_uaio=0
[[ " ${engines[*]} " == *" uaio-"* ]] && uses_uaio=1
uaio="$root/target/release/uaio"
lib=/nonexistent
if [ $uses_uaio = 1 ]; then
    if [ $build = 1 ]; then
        echo "fio-compare: building uaio (cargo build --release -p uaio-cli)" >&2
        cargo build --release -q -p uaio-cli || die "cargo build --release -p uaio-cli failed"
    fi
    [ -x "$uaio" ] || die "target/release/uaio is missing (cargo build --release)"
    lib=$(env -u UAIO_LIBAIO "$uaio" lib --file) || die "uaio lib --file failed"
fi

# Work directory and test file.
mkdir -p "$dir" || die "cannot make $dir"
work=$(mktemp -d "$dir/uaio-fio-compare.XXXXXX") || die "cannot make a directory in $dir"
trap 'rm -rf "$work"' EXIT
res="$work/results"
mkdir -p "$res"
if [ -z "$file" ]; then
    file="$work/data"
fi
if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" != "$size_bytes" ]; then
    echo "fio-compare: writing the $((size_bytes >> 20)) MiB test file $file" >&2
    python3 - "$file" "$size_bytes" <<'EOF' || die "cannot write the test file $file"
import os, sys
path, size = sys.argv[1], int(sys.argv[2])
chunk = os.urandom(1 << 20)
with open(path, "wb") as f:
    for _ in range(size >> 20):
        f.write(chunk)
    f.flush()
    os.fsync(f.fileno())
EOF
fi
fstype=$(stat -f -c %T "$file")
needs_direct=0
for w in "${workloads[@]}"; do
    [[ $w == dio-* ]] && needs_direct=1
done
if [ $needs_direct = 1 ] && ! dd if="$file" of=/dev/null bs=4096 count=1 iflag=direct status=none 2>/dev/null; then
    die "O_DIRECT reads fail on $file (file system $fstype): use --dir on ext4 or xfs, not tmpfs"
fi

# Page cache control for the buffered read workloads.
can_drop=0
if [ -w /proc/sys/vm/drop_caches ]; then
    can_drop=1
fi
drop_note=
if [[ " ${workloads[*]} " == *" uncached-"* ]] && [ $can_drop = 0 ]; then
    drop_note="note: /proc/sys/vm/drop_caches is not writable here: uncached runs rely on fio's invalidate=1 alone"
    echo "fio-compare: $drop_note" >&2
fi

# prepare WORKLOAD: puts the file in the state the workload expects.
prepare() {
    # Write back what earlier runs dirtied, so writeback does not run during this one.
    sync "$file" 2>/dev/null || sync
    case $1 in
        cached-*)
            cat "$file" >/dev/null
            ;;
        uncached-*)
            if [ $can_drop = 1 ]; then
                echo 1 >/proc/sys/vm/drop_caches || die "writing /proc/sys/vm/drop_caches failed"
            fi
            ;;
    esac
}

# probe PID: looks at the process once and records what it shows in the
# saw_* variables. Builtins only (no fork), so watching costs little.
probe() {
    local pid=$1 line c t rings=0
    local -a maps
    mapfile -t maps 2>/dev/null <"/proc/$pid/maps" || return 0
    for line in "${maps[@]}"; do
        case $line in
            *"[aio]"*) rings=$((rings + 1)) ;;
            *"anon_inode:[io_uring]"*) saw_uring=1 ;;
            *" $lib") saw_ours=1 ;;
            */libaio.so*) saw_syslib=1 ;;
        esac
    done
    # Threads after the maps: a lane's ring exists only while its reaper
    # does (or while the process exits, hence "seen once" is enough).
    for t in /proc/"$pid"/task/*/comm; do
        read -r c 2>/dev/null <"$t" || continue
        [ "$c" = uaio-progress ] && saw_progress=1
        [ "$c" = uaio-reaper ] && saw_reaper=1
    done
    [ $rings -gt $saw_reaper ] && saw_aio=1
    return 0
}

# proven ENGINE: whether everything the engine must show has been seen.
proven() {
    case $1 in
        kernel) [ $saw_aio = 1 ] && [ $saw_syslib = 1 ] ;;
        uaio-uring) [ $saw_ours = 1 ] && [ $saw_progress = 1 ] && [ $saw_uring = 1 ] ;;
        uaio-threads) [ $saw_ours = 1 ] && [ $saw_progress = 1 ] ;;
        io_uring) [ $saw_uring = 1 ] ;;
    esac
}

# refuted ENGINE: what the engine must never show, or "" when none of it was seen.
refuted() {
    local found=()
    case $1 in
        kernel | io_uring)
            [ $saw_ours = 1 ] && found+=("uaio's libaio.so.1 mapped")
            [ $saw_progress = 1 ] && found+=("a uaio-progress thread")
            [ "$1" = io_uring ] && [ $saw_aio = 1 ] && found+=("a kernel AIO ring")
            ;;
        uaio-*)
            [ $saw_aio = 1 ] && found+=("a kernel AIO ring ([aio] mapped)")
            [ "$1" = uaio-threads ] && [ $saw_uring = 1 ] && found+=("an io_uring mapped (thread pool expected)")
            ;;
    esac
    local out='' x
    for x in "${found[@]}"; do
        out+="${out:+, }$x"
    done
    echo "$out"
}

failures=0

# run_one WORKLOAD ENGINE ROUND: one fio run, watched; its JSON goes to
# $res/WORKLOAD.ENGINE.ROUND.json and is only kept when the run is proven.
run_one() {
    local w=$1 e=$2 r=$3
    local base="$res/$w.$e.$r"
    local fio_engine=libaio
    local -a cmd=(env -u LD_PRELOAD -u LD_LIBRARY_PATH -u UAIO_BACKEND -u UAIO_LIBAIO)
    case $e in
        uaio-uring) cmd+=("$uaio" run --verbose --backend uring --) ;;
        uaio-threads) cmd+=("$uaio" run --verbose --backend threads --) ;;
        io_uring) fio_engine=io_uring ;;
    esac
    cmd+=(fio --output-format=json --output="$base.out" "$jobs_dir/$w.fio")
    prepare "$w"
    UAIO_BENCH_ENGINE=$fio_engine UAIO_BENCH_FILE=$file UAIO_BENCH_SIZE=$size_bytes \
        UAIO_BENCH_RUNTIME=$runtime UAIO_BENCH_RAMP=$ramp "${cmd[@]}" 2>"$base.stderr" &
    local pid=$!
    saw_aio=0 saw_uring=0 saw_ours=0 saw_syslib=0 saw_progress=0 saw_reaper=0
    # Watch until everything expected was seen, then once more a little
    # later (every job has set up its context before fio starts the I/O),
    # and then leave the run alone.
    local state last=0 stat
    while kill -0 "$pid" 2>/dev/null; do
        read -r stat 2>/dev/null <"/proc/$pid/stat" || break
        state=${stat##*) }
        [ "${state:0:1}" = Z ] && break
        probe "$pid"
        [ $last = 1 ] && break
        if proven "$e"; then
            last=1
            sleep 0.1
        else
            sleep 0.005
        fi
    done
    wait "$pid"
    local rc=$? why=''
    if [ $rc -ne 0 ]; then
        why="fio exited with status $rc"
    elif ! proven "$e"; then
        why="could not prove the engine served the run (seen: [aio]=$saw_aio io_uring=$saw_uring uaio-lib=$saw_ours uaio-progress=$saw_progress system-libaio=$saw_syslib)"
    else
        why=$(refuted "$e")
        [ -n "$why" ] && why="the run showed $why"
    fi
    if [ -z "$why" ]; then
        # stderr: nothing, except `uaio run --verbose`'s line for uaio.
        local extra
        case $e in
            uaio-*)
                local want="uaio run: fio with $lib (backend ${e#uaio-})"
                grep -qxF "$want" "$base.stderr" || why="no '$want' line on stderr"
                extra=$(grep -vxF "$want" "$base.stderr")
                ;;
            *) extra=$(cat "$base.stderr") ;;
        esac
        [ -z "$why" ] && [ -n "$extra" ] && why="fio wrote to stderr"
    fi
    # fio's JSON: no job error, some I/O; prints the run's IOPS, or why not.
    local summary=
    if [ -z "$why" ]; then
        summary=$(python3 - "$base.out" <<'EOF'
import json, sys
try:
    with open(sys.argv[1]) as f:
        jobs = json.load(f)["jobs"]
except Exception as e:
    sys.exit(f"unreadable fio JSON: {e}")
if not jobs:
    sys.exit("no job in fio's JSON")
for j in jobs:
    if j.get("error", 0) != 0:
        sys.exit(f"job {j.get('jobname')} reports error {j['error']}")
    if j["read"]["total_ios"] + j["write"]["total_ios"] == 0:
        sys.exit(f"job {j.get('jobname')} did no I/O")
print(f'{sum(j["read"]["iops"] + j["write"]["iops"] for j in jobs):,.0f}')
EOF
        ) 2>"$base.why" || why=$(cat "$base.why")
    fi
    if [ -n "$why" ]; then
        failures=$((failures + 1))
        echo "FAIL $w, $e, round $r: $why" >&2
        sed 's/^/    /' "$base.stderr" | tail -20 >&2
        mv "$base.out" "$base.failed" 2>/dev/null
    else
        mv "$base.out" "$base.json"
        printf '  %-28s %-13s round %s: %12s IOPS\n' "$w" "$e" "$r" "$summary" >&2
    fi
}

fio_version=$(fio --version)
echo "fio comparison: $fio_version, kernel $(uname -r), $(nproc) CPUs; $((size_bytes >> 20)) MiB file on $fstype ($file)"
echo "${#workloads[@]} workloads x ${#engines[@]} engines x $rounds round(s), engines interleaved; $runtime per run after $ramp of ramp"
echo
for w in "${workloads[@]}"; do
    for ((r = 1; r <= rounds; r++)); do
        for e in "${engines[@]}"; do
            run_one "$w" "$e" "$r"
        done
    done
done

if [ -n "$keep" ]; then
    mkdir -p "$keep" && cp "$res"/* "$keep"/ && echo "fio-compare: fio outputs kept in $keep" >&2
fi

# The table.
python3 - "$res" "$rounds" "$slat_workload" "${workloads[*]}" "${engines[*]}" <<'EOF'
import json, os, statistics, sys

res, rounds, slat_w = sys.argv[1], int(sys.argv[2]), sys.argv[3]
workloads, engines = sys.argv[4].split(), sys.argv[5].split()
title = {"kernel": "kernel libaio", "uaio-uring": "uaio io_uring", "uaio-threads": "uaio threads", "io_uring": "fio io_uring"}

def runs(w, e):
    out = []
    for r in range(1, rounds + 1):
        p = os.path.join(res, f"{w}.{e}.{r}.json")
        if os.path.exists(p):
            with open(p) as f:
                out.append(json.load(f))
    return out

def iops(d):
    return sum(j["read"]["iops"] + j["write"]["iops"] for j in d["jobs"])

def slat_us(d):
    n = sum(j["read"]["slat_ns"]["N"] for j in d["jobs"])
    return sum(j["read"]["slat_ns"]["mean"] * j["read"]["slat_ns"]["N"] for j in d["jobs"]) / n / 1000 if n else None

wcol = max(len(w) for w in workloads + ["workload"]) + 2
ccol = 22
print("workload".ljust(wcol) + "".join(title[e].rjust(ccol) for e in engines))
complete = True
for w in workloads:
    med = {}
    for e in engines:
        rs = runs(w, e)
        med[e] = statistics.median(iops(d) for d in rs) if len(rs) == rounds else None
    base = med.get("kernel")
    cells = []
    for e in engines:
        if med[e] is None:
            cells.append("FAILED")
            complete = False
        elif e != "kernel" and base:
            cells.append(f"{med[e]:,.0f} ({med[e] / base:.2f}x)")
        else:
            cells.append(f"{med[e]:,.0f}")
    print(w.ljust(wcol) + "".join(c.rjust(ccol) for c in cells))
    if w == slat_w:
        cells = []
        for e in engines:
            rs = runs(w, e)
            vals = [v for v in (slat_us(d) for d in rs) if v is not None]
            if len(rs) == rounds and len(vals) == rounds:
                cells.append(f"{statistics.median(vals):.2f}")
            else:
                cells.append("FAILED")
                complete = False
        print("  mean slat (us)".ljust(wcol) + "".join(c.rjust(ccol) for c in cells))
print()
print(f"IOPS: reads + writes per second (fsyncs not counted), summed over a run's jobs; median of {rounds} round(s);")
print("(x): ratio to kernel libaio. slat: fio's submission latency, mean per I/O, median over the rounds.")
if "dio-randread-qd32-2jobs" in workloads:
    print("dio-randread-qd32-2jobs: two fio threads, one AIO context each (a context shared by both threads")
    print("cannot be expressed in fio).")
sys.exit(0 if complete else 1)
EOF
table_rc=$?
[ -n "$drop_note" ] && echo "$drop_note"
if [ $failures -ne 0 ] || [ $table_rc -ne 0 ]; then
    echo "fio-compare: $failures run(s) failed" >&2
    exit 1
fi
