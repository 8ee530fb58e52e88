#!/usr/bin/env bash
# Builds bench/target/benchmarks.jar and runs the qcow2 read-engine benchmarks
# (Qcow2ReadBenchmark, CompressedReadBenchmark, BlockStatusBenchmark) with the settings of
# style.md §7 (the class annotations: 5 x 1 s warmup, 5 x 1 s measurement, 2 forks), writing JMH's
# JSON to RESULT.json, then prints a summary: MB/s per cell and the qcow2/raw ratio.
#
# Usage: bench/run-read-benchmarks.sh RESULT.json [JMH options...]
#   e.g. bench/run-read-benchmarks.sh /tmp/read.json                     # the proper run (~20 min)
#        bench/run-read-benchmarks.sh /tmp/read.json -f 1 -wi 3 -i 5     # a quicker sitting (~6 min)
#        bench/run-read-benchmarks.sh /tmp/read.json -p clusterBits=16   # a subset
# Environment: SKIP_BUILD=1 reuses the jar; MVN_FLAGS (default -o) go to mvn; JAVA (default java).
# Needs qemu-img and qemu-io (Debian qemu-utils) and python3 for the summary.
set -euo pipefail

if [[ $# -lt 1 || $1 == -* ]]; then
    echo "usage: $0 RESULT.json [JMH options...]" >&2
    exit 2
fi
out=$(realpath -m "$1")
shift
root=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
jar=$root/bench/target/benchmarks.jar

for tool in qemu-img qemu-io python3; do
    command -v "$tool" >/dev/null || { echo "$0: $tool not found (qemu-utils / python3 needed)" >&2; exit 1; }
done

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    # shellcheck disable=SC2086
    (cd "$root" && mvn ${MVN_FLAGS--o} -q -pl bench -am package -DskipTests)
fi

# The machine is shared: the load average before and after says how far to trust the error bars.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
"${JAVA:-java}" -jar "$jar" 'dev\.shear\.bench\.(Qcow2Read|CompressedRead|BlockStatus)Benchmark\.' \
    -t 1 -rf json -rff "$out" "$@"
echo "load average: before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"

python3 - "$out" <<'EOF'
import json, sys

MB = 1e6
runs = json.load(open(sys.argv[1]))

def num(v):
    # JMH writes "NaN" (a string) for the error of fewer than 2 measurements.
    try:
        v = float(v)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if v != v else v

def metric(r):
    m = r["primaryMetric"]
    return num(m["score"]), num(m["scoreError"])

reads, compressed, status = {}, [], []
for r in runs:
    cls, method = r["benchmark"].split(".")[-2:]
    p = r.get("params", {})
    score, err = metric(r)
    if cls == "Qcow2ReadBenchmark":
        key = (int(p["clusterBits"]), int(p["requestSize"]), p["pattern"])
        reads.setdefault(key, {})[method] = (score * key[1] / MB, err * key[1] / MB)
    elif cls == "CompressedReadBenchmark":
        compressed.append((p["codec"], score * 65536 / MB, err * 65536 / MB))
    elif cls == "BlockStatusBenchmark":
        status.append((method, int(p["clusterBits"]), score, err, r["primaryMetric"]["scoreUnit"]))

def fmt(v):
    return "%9.1f ± %-7.1f" % v if v else "%19s" % "-"

if reads:
    print("\nqcow2 data reads vs the raw twin (MB/s = ops/s x requestSize / 1e6)")
    print("%-11s %-11s %-10s %19s %19s %7s" % ("clusterBits", "requestSize", "pattern", "qcow2 MB/s", "raw MB/s",
                                              "ratio"))
    for key in sorted(reads, key=lambda k: (k[0], k[1], k[2] != "sequential")):
        q, r = reads[key].get("qcow2Read"), reads[key].get("rawRead")
        ratio = "%6.2fx" % (q[0] / r[0]) if q and r else "-"
        flag = "  < 0.9x" if q and r and q[0] / r[0] < 0.9 else ""
        print("%-11d %-11d %-10s %s %s %7s%s" % (key[0], key[1], key[2], fmt(q), fmt(r), ratio, flag))
if compressed:
    print("\nwhole 64 KiB cluster reads (MB/s of guest data)")
    for codec, mbs, err in sorted(compressed):
        print("  %-13s %9.1f ± %.1f MB/s" % (codec, mbs, err))
if status:
    print("\nwhole-disk block status")
    for method, bits, score, err, unit in sorted(status):
        print("  %-11s clusterBits=%-3d %10.1f ± %.1f %s" % (method, bits, score, err, unit))
print("\nJSON: " + sys.argv[1])
EOF
