#!/usr/bin/env bash
# The drop-in library and unmodified programs on it:
# - the library `cargo build` makes (target/release/libaio.so) and the one
#   the uaio binary carries and installs: soname libaio.so.1, libaio's
#   symbols and version nodes, nothing else exported; no Rust artifact but
#   the library defines syscall(), _exit() or _Exit();
# - fio (libaio engine, with crc32c verification) and qemu-img bench -i
#   native, through `uaio run` on both backends, through LD_LIBRARY_PATH
#   and LD_PRELOAD alone, and through a copy of the uaio binary alone in an
#   empty directory (as `cargo install` leaves it);
# - a C program linked against libaio.so.1t64 (the name on Debian 13 and
#   Ubuntu 24.04), through `uaio run` and through the library directory.
# Every run must prove uaio served it (see run_probed; a run on the kernel's
# libaio shows that the probe does see kernel AIO). fio, qemu-img, gcc and
# libaio.h are required: they are installed with apt-get when missing, and
# the test fails when they cannot be.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
finish() {
    echo "drop-in: $passed passed, $failed failed"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

missing() {
    local m=()
    command -v fio >/dev/null || m+=(fio)
    command -v qemu-img >/dev/null || m+=(qemu-utils)
    command -v gcc >/dev/null || m+=(gcc)
    [ -e /usr/include/libaio.h ] || m+=(libaio-dev)
    echo "${m[*]}"
}
if [ -n "$(missing)" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio qemu-utils gcc libaio-dev) >/dev/null 2>&1
fi
if [ -n "$(missing)" ]; then
    fail "required programs missing and not installable here: $(missing) (apt-get install -y fio qemu-utils gcc libaio-dev)"
    finish
fi

cargo build --release -q -p uaio-capi -p uaio-cli || { fail "cargo build --release"; finish; }
uaio="$root/target/release/uaio"
libdir=$(env -u UAIO_LIBAIO "$uaio" lib) || { fail "uaio lib"; finish; }
lib="$libdir/libaio.so.1"
work=$(mktemp -d /var/tmp/uaio-dropin.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The exported symbols of libaio (Debian's libaio1 and libaio1t64 export
# these, with these versions; GNU ld also writes each version node's name
# as an absolute symbol), and uaio's syscall(), _exit(), _Exit() and the
# exec functions (each waits for the file I/O in flight first), and
# sigaction() and the signal() family (handlers held back inside uaio's
# calls), and close(), close_range(), closefrom(), dup2() and dup3() (which
# leave uaio's own descriptors alone), and fclose() (whose descriptor's
# kept duplicates go first, as in close()), and freopen() (the same for
# the number it reopens), and fcntl() (whose F_SETFL
# uaio must see, as it keeps a descriptor's status flags between calls),
# and pthread_exit() (the main thread's runs no thread-local destructor,
# which is where uaio learns that a thread is gone).
expected_exports="FUNC _Exit@@GLIBC_2.2.5
FUNC __close@@GLIBC_2.2.5
FUNC __dup2@@GLIBC_2.2.5
FUNC __fcntl@@GLIBC_2.2.5
FUNC __sigaction@@GLIBC_2.2.5
FUNC __sysv_signal@@GLIBC_2.2.5
FUNC _exit@@GLIBC_2.2.5
FUNC bsd_signal@@GLIBC_2.2.5
FUNC close@@GLIBC_2.2.5
FUNC close_range@@GLIBC_2.34
FUNC closefrom@@GLIBC_2.34
FUNC dup2@@GLIBC_2.2.5
FUNC dup3@@GLIBC_2.9
FUNC execl@@GLIBC_2.2.5
FUNC execle@@GLIBC_2.2.5
FUNC execlp@@GLIBC_2.2.5
FUNC execv@@GLIBC_2.2.5
FUNC execve@@GLIBC_2.2.5
FUNC execveat@@GLIBC_2.34
FUNC execvp@@GLIBC_2.2.5
FUNC execvpe@@GLIBC_2.11
FUNC fclose@@GLIBC_2.2.5
FUNC fcntl64@@GLIBC_2.28
FUNC fcntl@@GLIBC_2.2.5
FUNC fexecve@@GLIBC_2.2.5
FUNC freopen64@@GLIBC_2.2.5
FUNC freopen@@GLIBC_2.2.5
FUNC io_cancel@@LIBAIO_0.4
FUNC io_cancel@LIBAIO_0.1
FUNC io_destroy@@LIBAIO_0.4
FUNC io_getevents@@LIBAIO_0.4
FUNC io_getevents@LIBAIO_0.1
FUNC io_pgetevents@@LIBAIO_0.5
FUNC io_queue_init@@LIBAIO_0.1
FUNC io_queue_release@@LIBAIO_0.1
FUNC io_queue_run@@LIBAIO_0.1
FUNC io_queue_wait@@LIBAIO_0.4
FUNC io_queue_wait@LIBAIO_0.1
FUNC io_setup@@LIBAIO_0.4
FUNC io_submit@@LIBAIO_0.1
FUNC pthread_exit@@GLIBC_2.34
FUNC pthread_exit@GLIBC_2.2.5
FUNC sigaction@@GLIBC_2.2.5
FUNC signal@@GLIBC_2.2.5
FUNC sigset@@GLIBC_2.2.5
FUNC ssignal@@GLIBC_2.2.5
FUNC syscall@@GLIBC_2.2.5
FUNC sysv_signal@@GLIBC_2.2.5
OBJECT GLIBC_2.11
OBJECT GLIBC_2.2.5
OBJECT GLIBC_2.28
OBJECT GLIBC_2.34
OBJECT GLIBC_2.9
OBJECT LIBAIO_0.1
OBJECT LIBAIO_0.4
OBJECT LIBAIO_0.5"
# exports FILE: the defined global dynamic symbols, "TYPE name@version"
# (readelf prints a node's own symbol as "NODE@@NODE" when the linker
# does not share the string; both mean the same).
exports() {
    readelf -W --dyn-syms "$1" | awk '$7 != "UND" && $5 == "GLOBAL" { print $4, $8 }' |
        sed -E 's/^(OBJECT) ([A-Z0-9_.]+)@@\2$/\1 \2/' | LC_ALL=C sort
}
check_library() { # LABEL FILE
    local got
    got=$(exports "$2")
    if [ "$got" = "$expected_exports" ]; then ok "$1: libaio's symbols and versions, and syscall, _exit, _Exit, exec*, sigaction, signal*, close*, dup2, dup3, fclose, freopen, fcntl, pthread_exit"; else
        fail "$1: exported symbols differ from libaio's"
        diff <(echo "$expected_exports") <(echo "$got")
    fi
    if readelf -d "$2" | grep -q 'Library soname: \[libaio.so.1\]'; then ok "$1: soname libaio.so.1"; else fail "$1: soname is not libaio.so.1"; fi
    local nodes
    nodes=$(readelf -W -V "$2" | sed -n '/Version definition/,/Version needs/p' | grep -o 'Name: [^ ]*' | cut -d' ' -f2 | tr '\n' ' ')
    if [ "$nodes" = "libaio.so.1 LIBAIO_0.1 LIBAIO_0.4 LIBAIO_0.5 GLIBC_2.2.5 GLIBC_2.9 GLIBC_2.11 GLIBC_2.28 GLIBC_2.34 " ]; then ok "$1: version nodes $nodes"; else fail "$1: version nodes are '$nodes'"; fi
}
check_library "cargo build's target/release/libaio.so" target/release/libaio.so
check_library "the library uaio carries ($lib)" "$lib"
if [ "$(readlink "$libdir/libaio.so.1t64")" = libaio.so.1 ]; then ok "libaio.so.1t64 is the same file"; else fail "no libaio.so.1t64 link in $libdir"; fi
# Only the cdylib may carry the syscall() and _exit() interposers: uaio-capi builds
# nothing else (no rlib or staticlib a Rust program could link), and the
# uaio binary, which links the engine, does not define it.
kinds=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(" ".join(sorted({k for p in json.load(sys.stdin)["packages"] if p["name"] == "uaio-capi" for t in p["targets"] if "lib" in t["kind"] or "cdylib" in t["kind"] for k in t["crate_types"]})))')
if [ "$kinds" = cdylib ]; then ok "uaio-capi builds a cdylib only"; else fail "uaio-capi builds: $kinds"; fi
if nm --defined-only target/release/uaio | grep -qE ' [TtWw] (syscall|_exit|_Exit|exec[lv][a-z]*|fexecve|(__)?sigaction|(bsd_|sysv_|__sysv_)?signal|sigset)$'; then fail "the uaio binary defines syscall(), _exit(), _Exit(), an exec or a signal function"; else
    ok "the uaio binary does not define syscall(), _exit(), _Exit(), an exec or a signal function"
fi

# run_probed LABEL EXPECT(uaio|kernel) CMD...: runs CMD (tagged through its
# environment, which its children inherit) and watches every process of it:
# a kernel AIO ring shows in /proc/PID/maps as "[aio]"; uaio shows as its
# "uaio-progress" thread, started by the first io_setup. The thread pool's
# direct lane is one such ring, beside a "uaio-reaper" thread, and is not
# counted (a process seen once with a reaper may show two rings: CI once
# saw two in fio's job groups on the thread pool, where lanes leave idle
# between groups; taken to be one lane going while the next is made, not
# confirmed). "uaio" demands the
# second and never the first; "kernel" demands the first (probe check).
# With MAPS_UNDER=DIR set, some process must also map a library under DIR.
run_probed() {
    local label=$1 expect=$2
    shift 2
    local tag="uaio-probe-$$-$RANDOM$RANDOM"
    (export UAIO_PROBE_TAG="$tag"; exec "$@") >"$work/out" 2>&1 &
    local pid=$!
    local kernel=0 seen=0 mapped=0 p rings
    # Per process: the most rings seen at once, and whether a reaper was
    # ever seen (judged at the end: the lane's ring is made before its
    # reaper thread names itself, and a look in between sees a ring alone).
    local -A lane=() most=()
    while kill -0 "$pid" 2>/dev/null; do
        for p in $(grep -ls "UAIO_PROBE_TAG=$tag" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); do
            rings=$(grep -cs '\[aio\]' "/proc/$p/maps" || true)
            cat /proc/"$p"/task/*/comm 2>/dev/null | grep -qx uaio-reaper && lane[$p]=2
            [ "${rings:-0}" -gt "${most[$p]:-0}" ] && most[$p]=$rings
            cat /proc/"$p"/task/*/comm 2>/dev/null | grep -qx uaio-progress && seen=1
            [ -n "${MAPS_UNDER:-}" ] && grep -qsF " ${MAPS_UNDER}/" "/proc/$p/maps" && mapped=1
        done
        sleep 0.01
    done
    for p in "${!most[@]}"; do
        [ "${most[$p]}" -gt "${lane[$p]:-0}" ] && kernel=1
    done
    wait "$pid"
    local rc=$?
    if [ "$expect" = kernel ] && [ -n "${RETRY_KILLED:-}" ] && [ $rc -ge 128 ]; then
        # The program itself died on the system's libaio and kernel AIO
        # (uaio is not loaded in this run): see the qemu-img line below.
        echo "note $label: died with signal $((rc - 128)) on the kernel's AIO, without uaio; run once more"
        RETRY_KILLED= run_probed "$label" "$expect" "$@"
        return
    fi
    local good=1
    [ $rc -eq 0 ] || good=0
    if [ "$expect" = uaio ] && { [ $kernel = 1 ] || [ $seen = 0 ]; }; then good=0; fi
    if [ "$expect" = kernel ] && [ $kernel = 0 ]; then good=0; fi
    [ -n "${MAPS_UNDER:-}" ] && [ $mapped = 0 ] && good=0
    local what="exit $rc; kernel AIO ring seen: $kernel, uaio seen: $seen${MAPS_UNDER:+, library under $MAPS_UNDER mapped: $mapped}"
    if [ $good = 1 ]; then
        ok "$label ($what)"
    else
        fail "$label ($what; expected $expect)"
        tail -20 "$work/out"
    fi
}

export UAIO_FIO_DIR="$work"
cp tests/fio/*.fio "$work/"
cd "$work"
run_probed "fio on the kernel's libaio (probe check)" kernel fio --section=randrw-qd32 "$work/jobs.fio"
for backend in uring threads; do
    run_probed "fio all jobs, uaio run --backend $backend" uaio "$uaio" run --backend "$backend" -- fio "$work/jobs.fio"
done
run_probed "fio randrw-qd32, LD_LIBRARY_PATH only" uaio env LD_LIBRARY_PATH="$libdir" fio --section=randrw-qd32 "$work/jobs.fio"
run_probed "fio userspace-reap, LD_PRELOAD only" uaio env LD_PRELOAD="$lib" fio --section=userspace-reap "$work/jobs.fio"
# The uaio binary alone, in a directory of its own, with no XDG_RUNTIME_DIR:
# it must install its library under TMPDIR and fio must map it from there.
mkdir -p "$work/alone/bin" "$work/alone/tmp"
cp "$uaio" "$work/alone/bin/uaio"
MAPS_UNDER="$work/alone/tmp" run_probed "fio randrw-qd32, a copy of the uaio binary alone (cargo install's layout)" uaio \
    env -u XDG_RUNTIME_DIR -u UAIO_LIBAIO TMPDIR="$work/alone/tmp" "$work/alone/bin/uaio" run -- fio --section=randrw-qd32 "$work/jobs.fio"

img="$work/disk.img"
qemu-img create -q -f raw "$img" 64M
# Ten times the requests of the runs below: the probe scans /proc every
# few tens of milliseconds, and 20000 requests on kernel AIO can be done
# before its first look (seen once in CI).
# qemu-img bench (qemu 10.0 here) itself crashes now and then on kernel AIO (SIGSEGV,
# 1 run in 30 with two processors busy, no uaio anywhere: the system's
# libaio): such a crash of this probe check is run once more.
RETRY_KILLED=1 run_probed "qemu-img bench -i native on the kernel (probe check)" kernel qemu-img bench -q -f raw -t none -i native -c 200000 -d 32 "$img"
for backend in uring threads; do
    run_probed "qemu-img bench -i native read, backend $backend" uaio "$uaio" run --backend "$backend" -- qemu-img bench -q -f raw -t none -i native -c 200000 -d 32 "$img"
    run_probed "qemu-img bench -i native write, backend $backend" uaio "$uaio" run --backend "$backend" -- qemu-img bench -q -f raw -t none -i native -w -c 200000 -d 32 "$img"
done
qcow="$work/disk.qcow2"
qemu-img create -q -f qcow2 "$qcow" 64M
run_probed "qemu-img bench -i native qcow2 write" uaio "$uaio" run -- qemu-img bench -q -f qcow2 -t none -i native -w -c 100000 -d 16 "$qcow"
run_probed "qemu-img bench -i native qcow2 read" uaio "$uaio" run -- qemu-img bench -q -f qcow2 -t none -i native -c 100000 -d 16 "$qcow"

# libaio.so.1t64: tests/c/t64/client.c linked against a stand-in with that
# soname, so that its DT_NEEDED names libaio.so.1t64 and nothing else.
t64="$work/t64"
mkdir -p "$t64/stub" "$t64/kernel"
if gcc -shared -fPIC -o "$t64/stub/libaio.so.1t64" "$root/tests/c/t64/stub.c" \
    -Wl,-soname,libaio.so.1t64 -Wl,--version-script="$root/tests/c/t64/stub.map" &&
    gcc -O2 -Wall -Wextra -o "$t64/client" "$root/tests/c/t64/client.c" -L"$t64/stub" -l:libaio.so.1t64 -ldl; then
    needed=$(readelf -d "$t64/client" | grep -o 'Shared library: \[libaio[^]]*\]')
    if [ "$needed" = "Shared library: [libaio.so.1t64]" ]; then ok "t64 client needs libaio.so.1t64 only"; else fail "t64 client needs: $needed"; fi
    # The system's libaio under the 1t64 name (Debian 13 has it already):
    # the kernel run that shows the client can tell the two apart.
    syslib=$(ldconfig -p | awk '/libaio\.so\.1t64 .*x86-64/ { print $NF; exit }')
    [ -n "$syslib" ] || syslib=$(ldconfig -p | awk '/libaio\.so\.1 .*x86-64/ { print $NF; exit }')
    cp -L "$syslib" "$t64/kernel/libaio.so.1t64"
    # t64_run LABEL EXPECTED-LINES CMD...: the client's output must be
    # exactly EXPECTED-LINES and its status 0.
    t64_run() {
        local label=$1 want=$2 got rc
        shift 2
        got=$("$@" 2>&1)
        rc=$?
        if [ $rc -eq 0 ] && [ "$got" = "$want" ]; then ok "$label"; else
            fail "$label (exit $rc)"
            diff <(echo "$want") <(echo "$got")
        fi
    }
    t64_run "t64 client on the system's libaio (probe check: ring in the kernel)" \
        "$(printf 'data: intact\nring: kernel\nio_setup from: %s\ndlopen: same' "$t64/kernel/libaio.so.1t64")" \
        env LD_LIBRARY_PATH="$t64/kernel" "$t64/client"
    for backend in uring threads; do
        t64_run "t64 client, uaio run --backend $backend" \
            "$(printf 'data: intact\nring: user\nio_setup from: %s\ndlopen: same' "$lib")" \
            "$uaio" run --backend "$backend" -- "$t64/client"
    done
    t64_run "t64 client, LD_LIBRARY_PATH=\$(uaio lib) only (served as libaio.so.1t64)" \
        "$(printf 'data: intact\nring: user\nio_setup from: %s\ndlopen: same' "$libdir/libaio.so.1t64")" \
        env LD_LIBRARY_PATH="$libdir" "$t64/client"
else
    fail "building the libaio.so.1t64 stand-in and tests/c/t64/client.c"
fi

finish
