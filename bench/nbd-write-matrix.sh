#!/usr/bin/env bash
# nbd-write-matrix.sh — Shear vs qemu-nbd writing into a qcow2 export, same sitting, one command:
#   (a) nbdcopy of a raw file of random data INTO a fresh qcow2 export (restore path): MiB/s
#   (b) random 64 KiB writes at QD1 for a bounded time (fio, nbd engine) into a fresh qcow2 export:
#       IOPS, completion latency p50 / p99 / max, and the number of writes slower than 50 ms.
# Every measurement gets a fresh 4 GiB qcow2 (qemu-img create, 64 KiB clusters) in $TMPDIR.
#
# Usage: bench/nbd-write-matrix.sh [-n RUNS] [-s COPY_MIB] [-t SECONDS]
#   -n RUNS     runs per server and test (default 3); medians are printed
#   -s COPY_MIB size of the raw file nbdcopy writes (default 1024)
#   -t SECONDS  fio run time per measurement (default 15)
# Both servers get the same options: -t -e 8 -f qcow2 --discard=unmap, unix socket, default cache.
# Servers alternate within each run (qemu-nbd, then shear) so that drift on a busy machine hits
# both alike. Needs qemu-img, qemu-nbd, nbdcopy, nbdinfo, fio (with the nbd engine), jq or python3.
# Output: one "server=... test=... run=..." line per measurement, then a table of medians.
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
root=$(dirname "$here")
runs=3 copy_mib=1024 secs=15
while getopts "n:s:t:h" o; do
    case $o in
        n) runs=$OPTARG ;; s) copy_mib=$OPTARG ;; t) secs=$OPTARG ;;
        *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    esac
done
shear="$root/bin/qemu-nbd"
[[ -f $root/nbd/target/shear.jar ]] || { echo "build first: mvn -o -q -pl nbd -am package -DskipTests" >&2; exit 1; }
command -v fio >/dev/null || { echo "fio missing (apt-get install -y fio)" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nbd-write-matrix.XXXXXX")
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
results=$tmp/results
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

head -c $((copy_mib << 20)) /dev/urandom >"$tmp/src.raw"
cat "$tmp/src.raw" >/dev/null   # page cache warm

start() { # server -> pid, uri (fresh 4 GiB image)
    rm -f "$tmp/img.qcow2" "$tmp/s.sock"
    qemu-img create -q -f qcow2 "$tmp/img.qcow2" 4G
    local cmd=qemu-nbd; [[ $1 == shear ]] && cmd=$shear
    "$cmd" -t -e 8 -f qcow2 --discard=unmap -k "$tmp/s.sock" "$tmp/img.qcow2" >"$tmp/server.log" 2>&1 &
    pid=$!
    uri="nbd+unix:///?socket=$tmp/s.sock"
    for _ in $(seq 600); do nbdinfo --can=connect "$uri" 2>/dev/null && return 0; sleep 0.05; done
    echo "$1 did not start: $(cat "$tmp/server.log")" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

for run in $(seq "$runs"); do
    for server in qemu-nbd shear; do
        start "$server"
        t0=$(date +%s.%N)
        nbdcopy --flush "$tmp/src.raw" "$uri"
        t1=$(date +%s.%N)
        stop
        mibs=$(awk -v m="$copy_mib" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", m / (b - a) }')
        echo "server=$server test=nbdcopy-write run=$run mib_s=$mibs" | tee -a "$results"

        start "$server"
        rm -f "$tmp"/lat_*.log
        fio --name=w --ioengine=nbd --uri="$uri" --rw=randwrite --bs=64k --iodepth=1 --size=4g \
            --time_based --runtime="$secs" --output-format=json --output="$tmp/fio.json" \
            --write_lat_log="$tmp/lat" --log_avg_msec=0 >/dev/null
        stop
        read -r iops p50 p99 max < <(python3 - "$tmp/fio.json" <<'PY'
import json, sys
w = json.load(open(sys.argv[1]))["jobs"][0]["write"]
c = w["clat_ns"]; p = c["percentile"]
print("%.0f %.3f %.3f %.1f" % (w["iops"], p["50.000000"] / 1e6, p["99.000000"] / 1e6, c["max"] / 1e6))
PY
)
        slow=$(cat "$tmp"/lat_clat.*.log | awk -F, '$2 + 0 > 50000000 { n++ } END { print n + 0 }')
        echo "server=$server test=randwrite64k-qd1 run=$run iops=$iops p50_ms=$p50 p99_ms=$p99 max_ms=$max" \
             "writes_over_50ms=$slow" | tee -a "$results"
    done
done

echo
echo "medians of $runs (nbdcopy ${copy_mib} MiB; fio ${secs} s; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
printf "%-9s %14s %10s %8s %8s %9s %9s\n" server nbdcopy_MiB/s iops p50_ms p99_ms max_ms over50ms
for server in qemu-nbd shear; do
    get() { grep "^server=$server test=$1 " "$results" | sed -n "s/.* $2=\([^ ]*\).*/\1/p" | median; }
    printf "%-9s %14s %10s %8s %8s %9s %9s\n" "$server" "$(get nbdcopy-write mib_s)" \
        "$(get randwrite64k-qd1 iops)" "$(get randwrite64k-qd1 p50_ms)" "$(get randwrite64k-qd1 p99_ms)" \
        "$(get randwrite64k-qd1 max_ms)" "$(get randwrite64k-qd1 writes_over_50ms)"
done
