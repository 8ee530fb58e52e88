#!/usr/bin/env bash
# nbd-read-matrix.sh — Shear vs qemu-nbd, same sitting, one command: full-read throughput
# (nbdcopy URI null:) over a unix socket and TCP, qcow2 and raw; handshake-to-first-byte over TCP;
# whole-disk block status (nbdinfo --map) of a 16 TiB sparse raw and qcow2.
#
# Usage: bench/nbd-read-matrix.sh [-n RUNS] [IMAGE.qcow2 [IMAGE.raw]]
#   default images /tmp/img.qcow2 and /tmp/img.raw (make them with /work/shared/bench/mkimage.sh)
#   -n RUNS   runs per configuration (default 3); medians are printed
#   BENCH=DIR where the shared scripts live (default /work/shared/bench)
#   CONFIGS="..." throughput configs (default "qcow2-unix qcow2-tcp raw-unix"; "" skips them)
# Both servers get the same options: -t -e 8 (persistent, multi-conn for nbdcopy), -r, -f FMT.
# Servers alternate per configuration (qemu-nbd, then shear) so that drift hits both alike.
# Output: one "server=... config=..." line per measurement, then a summary table.
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
root=$(dirname "$here")
BENCH=${BENCH:-/work/shared/bench}
runs=3
[[ ${1:-} == -n ]] && { runs=$2; shift 2; }
qcow2=${1:-/tmp/img.qcow2}
raw=${2:-/tmp/img.raw}
[[ -f $qcow2 && -f $raw ]] || { echo "missing $qcow2 / $raw: run $BENCH/mkimage.sh $qcow2" >&2; exit 1; }
shear="$root/bin/qemu-nbd"
[[ -f $root/nbd/target/shear.jar ]] || { echo "build first: mvn -o -q -pl nbd -am package -DskipTests" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nbd-read-matrix.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
results=$tmp/results

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

for config in ${CONFIGS-qcow2-unix qcow2-tcp raw-unix}; do
    for server in qemu-nbd shear; do
        cmd=qemu-nbd; [[ $server == shear ]] && cmd=$shear
        line=$("$BENCH/server-matrix.sh" --server "$cmd" --server-args "-t -e 8" --configs "$config" -n "$runs" \
               "$qcow2" "$raw" 2>/dev/null | grep "^config=")
        echo "server=$server $line" | tee -a "$results"
    done
done

# Handshake to first byte over TCP: connect, negotiate (structured replies, base:allocation, GO), 512-byte read.
py=$(for p in "${PYTHON:-}" python3 /usr/bin/python3; do [[ -n $p ]] && (cd "$tmp" && "$p" -c 'import nbd; nbd.NBD') 2>/dev/null && { echo "$p"; break; }; done)
start_tcp() { # server fmt img -> sets port, pid
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$1" -t -e 8 -r -f "$2" -b 127.0.0.1 -p "$port" "$3" >"$tmp/server.log" 2>&1 &
    pid=$!; pids+=("$pid")
    for _ in $(seq 300); do nbdinfo --can=connect "nbd://127.0.0.1:$port/" 2>/dev/null && return 0; sleep 0.05; done
    echo "server did not start: $(cat "$tmp/server.log")" >&2; exit 1
}
for server in qemu-nbd shear; do
    cmd=qemu-nbd; [[ $server == shear ]] && cmd=$shear
    start_tcp "$cmd" qcow2 "$qcow2"
    ms=$(cd "$tmp" && "$py" - "nbd://127.0.0.1:$port/" <<'PY'
import sys, time, nbd
t = []
for i in range(21):
    t0 = time.perf_counter()
    h = nbd.NBD(); h.add_meta_context("base:allocation"); h.connect_uri(sys.argv[1]); h.pread(512, 0)
    t.append((time.perf_counter() - t0) * 1000)
    h.shutdown(); del h
t.sort(); print("%.2f" % t[len(t) // 2])
PY
)
    echo "server=$server handshake_first_byte_tcp_ms=$ms" | tee -a "$results"
    kill "$pid"; wait "$pid" 2>/dev/null || true
done

# Whole-disk block status of 16 TiB sparse images (nbdinfo --map: one request per <= 4 GiB).
truncate -s $(( (16 << 40) - (1 << 20) )) "$tmp/big.raw"   # ext4: a file stays below 16 TiB
qemu-img create -q -f qcow2 "$tmp/big.qcow2" 16T
qemu-io -f qcow2 -c 'write -q 0 1M' -c 'write -q 8T 1M' "$tmp/big.qcow2"
for fmt in raw qcow2; do
    for server in qemu-nbd shear; do
        cmd=qemu-nbd; [[ $server == shear ]] && cmd=$shear
        sock=$tmp/big.sock; rm -f "$sock"
        "$cmd" -t -e 8 -r -f "$fmt" -k "$sock" "$tmp/big.$fmt" >"$tmp/server.log" 2>&1 &
        pid=$!; pids+=("$pid")
        for _ in $(seq 300); do nbdinfo --can=connect "nbd+unix:///?socket=$sock" 2>/dev/null && break; sleep 0.05; done
        ms=$(for i in $(seq "$runs"); do
                 t0=$(date +%s%N); nbdinfo --map "nbd+unix:///?socket=$sock" >"$tmp/map.txt"; t1=$(date +%s%N)
                 echo $(((t1 - t0) / 1000000))
             done | median)
        echo "server=$server blockstatus_16T_$fmt ms=$ms extents=$(wc -l <"$tmp/map.txt")" | tee -a "$results"
        kill "$pid"; wait "$pid" 2>/dev/null || true
    done
done

echo
echo "| config | qemu-nbd MiB/s (data) | shear MiB/s (data) | shear/qemu |"
echo "| --- | --- | --- | --- |"
for config in ${CONFIGS-qcow2-unix qcow2-tcp raw-unix}; do
    q=$(grep "server=qemu-nbd config=$config " "$results" | sed 's/.*median_data_MiBps=\([0-9.]*\).*/\1/')
    qs=$(grep "server=qemu-nbd config=$config " "$results" | sed 's/.*median_seconds=\([0-9.]*\).*/\1/')
    s=$(grep "server=shear config=$config " "$results" | sed 's/.*median_data_MiBps=\([0-9.]*\).*/\1/')
    ss=$(grep "server=shear config=$config " "$results" | sed 's/.*median_seconds=\([0-9.]*\).*/\1/')
    echo "| $config | $q ($qs s) | $s ($ss s) | $(awk -v a="$qs" -v b="$ss" 'BEGIN { printf "%.2f", a / b }') (by time) |"
done
