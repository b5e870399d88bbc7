#!/usr/bin/env bash
# Unmodified programs on the drop-in libaio.so.1: fio (libaio engine, with
# crc32c verification) and qemu-img bench -i native, each run both through
# LD_LIBRARY_PATH and LD_PRELOAD (via `uaio run`), on both backends. Every
# run must also prove uaio served it (see run_probed); a run on the kernel's
# libaio shows that the probe does see kernel AIO.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
if ! command -v fio >/dev/null || ! command -v qemu-img >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio qemu-utils libaio-dev) >/dev/null 2>&1 || true
fi
lib="$root/$(bash scripts/build-libaio.sh release | tail -1)"
uaio="$root/target/release/uaio"
work=$(mktemp -d /var/tmp/uaio-dropin.XXXXXX)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# run_probed LABEL EXPECT(uaio|kernel) CMD...: runs CMD (tagged through its
# environment, which its children inherit) and watches every process of it:
# a kernel AIO ring shows in /proc/PID/maps as "[aio]"; uaio shows as its
# "uaio-progress" thread, started by the first io_setup. "uaio" demands the
# second and never the first; "kernel" demands the first (probe check).
run_probed() {
    local label=$1 expect=$2
    shift 2
    local tag="uaio-probe-$$-$RANDOM$RANDOM"
    (export UAIO_PROBE_TAG="$tag"; exec "$@") >"$work/out" 2>&1 &
    local pid=$!
    local kernel=0 seen=0 p
    while kill -0 "$pid" 2>/dev/null; do
        for p in $(grep -ls "UAIO_PROBE_TAG=$tag" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); do
            grep -qs '\[aio\]' "/proc/$p/maps" && kernel=1
            cat /proc/"$p"/task/*/comm 2>/dev/null | grep -qx uaio-progress && seen=1
        done
        sleep 0.01
    done
    wait "$pid"
    local rc=$?
    local ok=1
    [ $rc -eq 0 ] || ok=0
    if [ "$expect" = uaio ] && { [ $kernel = 1 ] || [ $seen = 0 ]; }; then ok=0; fi
    if [ "$expect" = kernel ] && [ $kernel = 0 ]; then ok=0; fi
    if [ $ok = 1 ]; then
        passed=$((passed + 1))
        echo "ok   $label (exit $rc; kernel AIO ring seen: $kernel, uaio seen: $seen)"
    else
        failed=$((failed + 1))
        echo "FAIL $label (exit $rc; kernel AIO ring seen: $kernel, uaio seen: $seen; expected $expect)"
        tail -20 "$work/out"
    fi
}

export UAIO_FIO_DIR="$work"
cp tests/fio/*.fio "$work/"
cd "$work"
if command -v fio >/dev/null; then
    run_probed "fio on the kernel's libaio (probe check)" kernel fio --section=randrw-qd32 "$work/jobs.fio"
    for backend in uring threads; do
        run_probed "fio all jobs, uaio run --backend $backend" uaio "$uaio" run --backend "$backend" -- fio "$work/jobs.fio"
    done
    run_probed "fio randrw-qd32, LD_LIBRARY_PATH only" uaio env LD_LIBRARY_PATH="$(dirname "$lib")" fio --section=randrw-qd32 "$work/jobs.fio"
    run_probed "fio userspace-reap, LD_PRELOAD only" uaio env LD_PRELOAD="$lib" fio --section=userspace-reap "$work/jobs.fio"
else
    echo "skip fio: not installed and could not be installed"
fi

if command -v qemu-img >/dev/null; then
    img="$work/disk.img"
    qemu-img create -q -f raw "$img" 64M
    # Ten times the requests of the runs below: the probe scans /proc every
    # few tens of milliseconds, and 20000 requests on kernel AIO can be done
    # before its first look (seen once in CI).
    run_probed "qemu-img bench -i native on the kernel (probe check)" kernel qemu-img bench -q -f raw -t none -i native -c 200000 -d 32 "$img"
    for backend in uring threads; do
        run_probed "qemu-img bench -i native read, backend $backend" uaio "$uaio" run --backend "$backend" -- qemu-img bench -q -f raw -t none -i native -c 200000 -d 32 "$img"
        run_probed "qemu-img bench -i native write, backend $backend" uaio "$uaio" run --backend "$backend" -- qemu-img bench -q -f raw -t none -i native -w -c 200000 -d 32 "$img"
    done
    qcow="$work/disk.qcow2"
    qemu-img create -q -f qcow2 "$qcow" 64M
    run_probed "qemu-img bench -i native qcow2 write" uaio "$uaio" run -- qemu-img bench -q -f qcow2 -t none -i native -w -c 100000 -d 16 "$qcow"
    run_probed "qemu-img bench -i native qcow2 read" uaio "$uaio" run -- qemu-img bench -q -f qcow2 -t none -i native -c 100000 -d 16 "$qcow"
else
    echo "skip qemu-img: not installed and could not be installed"
fi

echo "drop-in: $passed passed, $failed failed"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
