#!/usr/bin/env bash
# fleece-matrix.sh — Shear vs QEMU, copy-before-write fleecing, same sitting, one command. Both sides
# run the shared $BENCH/fleece-anchor.sh (fio random writer, nbdcopy of the fleece, checksum):
#   qemu   its first form: qemu-storage-daemon with copy-before-write + snapshot-access, phases
#          plain and fleece, each on its own fresh copy of IMAGE
#   shear  its second form: `shear serve --control` on a fresh copy with a pull backup begun
#          through the control API (POST /backups), --live = the export, --fleece = the snapshot
#          export the begin call names, --plain = a second `shear serve` on another fresh copy;
#          once phase plain is done, that copy is removed (as the anchor removes QEMU's before its
#          fleece phase, dirty pages and all)
# Reported: writer IOPS and p99 without the filter (plain) and while the fleece is read
# (window during-read), fleece read MiB/s (of data), server CPU seconds of the fleece phase
# (qemu: the daemon's; shear: the backup server's JVM over the whole anchor run), bytes copied
# before write. A fleece that differs from the snapshot point (verify=MISMATCH) stops everything.
#
# Usage: bench/fleece-matrix.sh [-n RUNS] [-s SCRATCH[,SCRATCH...]] [-j LABEL=JVM_OPTS]... [-w] [-k] [IMAGE.qcow2]
#                               [-- ANCHOR_OPTS...]
#   IMAGE      source qcow2, never written (default /tmp/img.qcow2; made with $BENCH/mkimage.sh if missing)
#   -n RUNS    runs per server (default 3); medians are printed
#   -s SCRATCH Shear scratch kinds to measure, one Shear column each: default (the server's own
#              choice: the field is left out), qcow2, spill-lz4, spill-zstd, spill-none (default: default);
#              KIND+LABEL runs KIND's servers with the JVM options of -j LABEL (SHEAR_JAVA_OPTS)
#   -j LABEL=JVM_OPTS  a named set of JVM options for KIND+LABEL columns, e.g.
#              -s default,default+c1 -j c1=-XX:TieredStopAtLevel=1 (the same sitting, alternating)
#   -w         warm servers: each Shear column keeps its two servers for the whole sitting, as a backup
#              server that has been running does; they first serve one unrecorded warm-up measurement, then
#              every run adds fresh copies of IMAGE as new exports (POST /exports) and removes them after.
#              Default: new servers (new JVMs) for every measurement, whose warm-up is then measured too
#   -k         keep the work directories (printed) instead of deleting them
#   ANCHOR_OPTS  passed to every fleece-anchor.sh call, e.g. -- -t 5, -- --rate 2000, -- -d 4
#              (not --live/--fleece/--plain/--phases/--keep: this script sets them)
#   BENCH=DIR  where the shared scripts live (default /work/shared/bench)
# Servers alternate within each run (qemu, then each Shear scratch kind) so that drift on a busy
# machine hits all alike. Each Shear measurement includes its JVMs' warm-up.
# Needs: the fat jar, qemu-storage-daemon, qemu-img, fio (nbd engine), nbdcopy, nbdinfo, curl, python3.
# Output: one "server=... run=..." line per measurement, then a table of medians with shear/qemu ratios.
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
root=$(dirname "$here")
BENCH=${BENCH:-/work/shared/bench}
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&$(( ${1:-0} ? 2 : 1 )); exit "${1:-0}"; }

runs=3 scratches=default keep=0 warm=0 pre=() anchor_opts=()
declare -A jvm_opts=()
while (($#)); do   # options and IMAGE before "--", the anchor's options after it
    [[ $1 == -- ]] && { shift; anchor_opts=("$@"); break; }
    pre+=("$1"); shift
done
set -- "${pre[@]}"
while getopts "n:s:j:wkh" o; do
    case $o in
        n) runs=$OPTARG ;; s) scratches=$OPTARG ;; k) keep=1 ;; w) warm=1 ;;
        j) [[ $OPTARG == ?*=* ]] || { echo "-j $OPTARG: expected LABEL=JVM_OPTS" >&2; exit 2; }
           jvm_opts[${OPTARG%%=*}]=${OPTARG#*=} ;;
        h) usage ;; *) usage 2 ;;
    esac
done
shift $((OPTIND - 1))
image=${1:-/tmp/img.qcow2}
(($# <= 1)) || { echo "unexpected argument: $2" >&2; usage 2; }
for a in "${anchor_opts[@]}"; do
    case $a in
        --live|--fleece|--plain|--phases|--keep)
            echo "anchor option $a: set by this script (expected: writer/read options such as -t, -N, --rate)" >&2
            exit 2 ;;
    esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "-n $runs: expected a positive integer" >&2; exit 2; }
IFS=, read -r -a kinds <<<"$scratches"
((${#kinds[@]})) || { echo "-s: empty (expected: default, qcow2, spill-lz4, spill-zstd or spill-none)" >&2; exit 2; }
for k in "${kinds[@]}"; do
    if [[ $k == *+* ]]; then
        [[ -n ${jvm_opts[${k#*+}]+set} ]] || { echo "-s $k: no -j ${k#*+}=JVM_OPTS given" >&2; exit 2; }
        k=${k%%+*}
    fi
    case $k in
        default|qcow2|spill-lz4|spill-zstd|spill-none) ;;
        *) echo "-s: scratch kind '$k' (expected: default, qcow2, spill-lz4, spill-zstd or spill-none)" >&2; exit 2 ;;
    esac
done

anchor=$BENCH/fleece-anchor.sh
[[ -x $anchor ]] || { echo "$anchor not found (set BENCH=DIR)" >&2; exit 1; }
[[ -f $root/nbd/target/shear.jar ]] || { echo "build first: mvn -o -q -pl nbd -am package -DskipTests" >&2; exit 1; }
for t in qemu-storage-daemon qemu-img fio nbdcopy nbdinfo curl python3; do
    command -v $t >/dev/null || { echo "$t not found" >&2; exit 1; }
done
"$root/shear" --version >/dev/null   # the launcher rebuilds a stale jar now, not in the middle of a run
if [[ ! -f $image ]]; then
    echo "# $image missing: making it with $BENCH/mkimage.sh" >&2
    "$BENCH/mkimage.sh" "$image" >&2
fi
[[ $(qemu-img info --output=json "$image" | python3 -c 'import json, sys; print(json.load(sys.stdin)["format"])') \
    == qcow2 ]] || { echo "$image: not a qcow2" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fleece-matrix.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if ((keep)); then echo "# work directory kept: $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
results=$tmp/results
touch "$results"
anchor_keep=(); ((keep)) && anchor_keep=(--keep)

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR ? a[int((NR + 1) / 2)] : "-") }'; }
fail() { echo "fleece-matrix: $*" >&2; exit 1; }
cpu_of() { awk '{ printf "%.2f", ($14 + $15) / t }' t="$(getconf CLK_TCK)" "/proc/$1/stat" 2>/dev/null || echo 0; }

# ctl DIR METHOD PATH [JSON]: one control API call; prints the answer, fails on an HTTP error
ctl() {
    local args=(-sS --fail-with-body --unix-socket "$1/ctl.sock" -X "$2" "http://localhost$3")
    (($# > 3)) && args+=(-H 'Content-Type: application/json' -d "$4")
    curl "${args[@]}" || fail "control API: $2 $3 failed (server log: $1/server.log)"
}
# json FIELD.PATH < JSON: one field (dotted path), "None" when null
json() { python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[k]
print(v)' "$1"; }

# start_shear NAME [--control]: fresh copy of the image in DIR=$tmp/NAME served as export "live" on DIR/nbd.sock;
# sets pid (the JVM: the launcher execs java) and dir
start_shear() {
    dir=$tmp/$1
    rm -rf "$dir"; mkdir -p "$dir"
    cp --sparse=always "$image" "$dir/disk.qcow2"
    sync "$dir/disk.qcow2"   # as the anchor does for its copies: no dirty pages from the copy
    local args=(serve -k "$dir/nbd.sock" -x live -f qcow2)
    [[ ${2:-} == --control ]] && args+=(--control "$dir/ctl.sock")
    SHEAR_JAVA_OPTS=$java_opts "$root/shear" "${args[@]}" "$dir/disk.qcow2" >"$dir/server.log" 2>&1 &
    pid=$!; pids+=("$pid")
    local i
    for i in $(seq 600); do
        if nbdinfo --can=connect "nbd+unix:///live?socket=$dir/nbd.sock" 2>/dev/null &&
            { [[ ${2:-} != --control ]] || curl -sf --unix-socket "$dir/ctl.sock" http://localhost/exports >/dev/null; }
        then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    fail "shear serve ($1) did not start: $(cat "$dir/server.log")"
}
# stop_shear PID DIR: SIGTERM, at most 60 s for the clean stop (flush, bitmaps stored)
stop_shear() {
    local p=$1 d=$2 i
    kill "$p" 2>/dev/null || true
    for i in $(seq 600); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
        kill -9 "$p" 2>/dev/null || true
        fail "shear serve did not stop within 60 s of SIGTERM ($d/server.log)"
    fi
    wait "$p" || fail "shear serve exited with status $? ($d/server.log: $(tail -3 "$d/server.log"))"
}
server_problems() { # DIR: warn/error lines of a Shear log, on stderr
    grep -E 'level=(warn|error)' "$1/server.log" | sed "s|^|# $(basename "$1") server: |" >&2 || true
}

# image_file DIR EXPORT: the copy behind EXPORT of the server in DIR (start_shear's "live", measure_warm's others)
image_file() { [[ $2 == live ]] && echo "$1/disk.qcow2" || echo "$1/$2.qcow2"; }

# drop_export DIR EXPORT: removes EXPORT from the server in DIR and deletes its copy, dirty pages and all
drop_export() {
    ctl "$1" DELETE "/exports/$2" >/dev/null
    rm -f "$(image_file "$1" "$2")"
}

# drop_plain DIR EXPORT (in the background during an anchor run): once phase plain has printed its
# figures, drop_export on the plain server, as the anchor's own form deletes QEMU's plain copy before
# the fleece phase. Left in place, the copy's gigabytes of random writes would still be written back
# while the fleece is read.
drop_plain() {
    local i
    for ((i = 0; i < 18000; i++)); do   # 15 min, the anchor's own bound for a fleece read
        grep -q '^phase=plain ' "$tmp/anchor.out" && break
        sleep 0.05
    done
    drop_export "$1" "$2"
}

# run_anchor LABEL ARGS...: the anchor into $tmp/anchor.out; fails loudly on a mismatch or an error
run_anchor() {
    local label=$1
    shift
    if ! "$anchor" "${anchor_keep[@]}" "${anchor_opts[@]}" "$@" >"$tmp/anchor.out" 2>"$tmp/anchor.err"; then
        cat "$tmp/anchor.out" "$tmp/anchor.err" >&2
        if grep -q 'verify=MISMATCH' "$tmp/anchor.out"; then
            fail "FLEECE MISMATCH ($label): the fleece read differs from the snapshot point"
        fi
        fail "fleece-anchor.sh failed ($label)"
    fi
    grep -q 'verify=MISMATCH' "$tmp/anchor.out" &&
        fail "FLEECE MISMATCH ($label): $(grep verify= "$tmp/anchor.out")"
    grep '^#' "$tmp/anchor.err" | grep -v '^# writer:' >&2 || true
}
# field PHASE SELECTOR KEY: KEY=value from the anchor line of PHASE matching SELECTOR
field() {
    grep "^phase=$1 $2" "$tmp/anchor.out" | head -1 | tr ' ' '\n' | sed -n "s/^$3=//p" | grep . || echo -
}
# record SERVER RUN CPU COPIED_BYTES [EXTRA]: one result line from $tmp/anchor.out
record() {
    local verify
    verify=$(field fleece verify= verify)
    [[ $verify == - ]] && verify=none
    if [[ $(field fleece 'window=after-read' ios) == 0 ]]; then
        echo "# $1 run $2: the writer ended before the fleece read did (during-read IOPS count idle time:" \
             "raise the anchor's -t)" >&2
    fi
    echo "server=$1 run=$2" \
         "plain_iops=$(field plain 'window=all' iops) plain_p99_us=$(field plain 'window=all' p99_us)" \
         "read_iops=$(field fleece 'window=during-read' iops) read_p99_us=$(field fleece 'window=during-read' p99_us)" \
         "fleece_iops=$(field fleece 'window=all' iops) fleece_p99_us=$(field fleece 'window=all' p99_us)" \
         "fleece_MiBps=$(field fleece fleece_read data_MiBps) read_s=$(field fleece fleece_read seconds)" \
         "cpu_s=$3 copied_MiB=$(awk -v b="$4" 'BEGIN { printf (b == "-" ? "-" : "%.1f"), b / 1048576 }')" \
         "verify=$verify${5:+ $5}" | tee -a "$results"
}

measure_qemu() { # RUN
    run_anchor "qemu run $1" --phases plain,fleece "$image"
    local cpu copied
    cpu=$(grep '^phase=fleece server_cpu_s=' "$tmp/anchor.out" | sed 's/.*=//' | grep . || echo -)
    copied=$(grep '^phase=fleece copied_bytes=' "$tmp/anchor.out" | sed 's/.*=//' | grep . || echo -)
    record qemu "$1" "$cpu" "$copied"
}

# measure_shear KIND[+LABEL] RUN: new servers for this measurement, stopped after it
measure_shear() {
    local java_opts=${SHEAR_JAVA_OPTS:-} ppid pdir fpid fdir
    [[ $1 == *+* ]] && java_opts=${jvm_opts[${1#*+}]}
    start_shear "$1-$2-plain" --control; ppid=$pid pdir=$dir
    start_shear "$1-$2-fleece" --control; fpid=$pid fdir=$dir
    backup_run "$1" "$2" "$ppid" "$pdir" "$fpid" "$fdir" live
    stop_shear "$fpid" "$fdir"; stop_shear "$ppid" "$pdir"
    pids=()
    server_problems "$fdir"; server_problems "$pdir"
    ((keep)) || rm -rf "$fdir" "$pdir"
}

# measure_warm KIND[+LABEL] RUN (-w): the column's two servers live for the whole sitting; the first call
# starts them and runs one unrecorded warm-up measurement on their own export "live"; every run serves a
# fresh copy of the image as export live-RUN on both, added and removed through the control API
declare -A warm_servers=()
measure_warm() {
    local col=$1 run=$2 java_opts=${SHEAR_JAVA_OPTS:-} ppid pdir fpid fdir d f name=live-$2
    [[ $1 == *+* ]] && java_opts=${jvm_opts[${1#*+}]}
    if [[ -z ${warm_servers[$col]:-} ]]; then
        start_shear "$col-warm-plain" --control; ppid=$pid pdir=$dir
        start_shear "$col-warm-fleece" --control; fpid=$pid fdir=$dir
        warm_servers[$col]="$ppid $pdir $fpid $fdir"
        echo "# $col: warm-up measurement (not recorded)" >&2
        backup_run "$col" warm-up "$ppid" "$pdir" "$fpid" "$fdir" live >/dev/null
        drop_export "$fdir" live   # the plain one is gone already
    fi
    read -r ppid pdir fpid fdir <<<"${warm_servers[$col]}"
    for d in "$pdir" "$fdir"; do
        f=$(image_file "$d" "$name")
        cp --sparse=always "$image" "$f"
        sync "$f"
        ctl "$d" POST /exports "{\"name\":\"$name\",\"image\":\"$f\",\"format\":\"qcow2\"}" >/dev/null
    done
    backup_run "$col" "$run" "$ppid" "$pdir" "$fpid" "$fdir" "$name"
    drop_export "$fdir" "$name"   # the plain one is gone already
}

# stop_warm: stops every column's warm servers (a clean stop is part of the measurement)
stop_warm() {
    local col ppid pdir fpid fdir
    for col in "${!warm_servers[@]}"; do
        read -r ppid pdir fpid fdir <<<"${warm_servers[$col]}"
        stop_shear "$fpid" "$fdir"; stop_shear "$ppid" "$pdir"
        server_problems "$fdir"; server_problems "$pdir"
        ((keep)) || rm -rf "$fdir" "$pdir"
    done
    pids=()
}

# backup_run KIND[+LABEL] RUN PLAIN_PID PLAIN_DIR FLEECE_PID FLEECE_DIR EXPORT: a pull backup of EXPORT on
# the fleece server, the anchor against it (--plain: EXPORT on the plain server), one result line
backup_run() {
    local kind=${1%%+*} server=shear/$1 run=$2 ppid=$3 pdir=$4 fpid=$5 fdir=$6 export=$7
    local body begin id live fleece plain cpu0 cpu job state broken d p dropper
    body="{\"export\":\"$export\",\"type\":\"pull\""
    [[ $kind != default ]] && body+=",\"scratch\":\"$kind\""
    begin=$(ctl "$fdir" POST /backups "$body}")
    id=$(json id <<<"$begin")
    fleece=$(json uri <<<"$begin")
    live=$(ctl "$fdir" GET "/exports/$export")
    live=$(json uri <<<"$live")
    [[ $(json snapshotExport <<<"$begin") == "$export-backup" && $fleece == *"$export-backup"* ]] ||
        fail "backup begin answered an unexpected snapshot export: $begin"
    plain="nbd+unix:///$export?socket=$pdir/nbd.sock"
    cpu0=$(cpu_of "$fpid")
    : >"$tmp/anchor.out"
    drop_plain "$pdir" "$export" & dropper=$!
    if ! (run_anchor "$server run $run" --live "$live" --fleece "$fleece" --plain "$plain"); then
        kill "$dropper" 2>/dev/null || true
        for d in "$pdir" "$fdir"; do
            echo "# $(basename "$d") server log, last lines:" >&2; tail -12 "$d/server.log" >&2
        done
        kill -0 "$ppid" 2>/dev/null || echo "# the plain server (pid $ppid) is gone: see its log above" >&2
        kill -0 "$fpid" 2>/dev/null || echo "# the fleece server (pid $fpid) is gone: see its log above" >&2
        echo "# backup job: $(ctl "$fdir" GET "/jobs/$id")" >&2
        exit 1
    fi
    cpu=$(awk -v a="$cpu0" -v b="$(cpu_of "$fpid")" 'BEGIN { printf "%.2f", b - a }')
    wait "$dropper" || fail "$server run $run: removing the plain export after phase plain failed"
    for d in plain fleece; do   # a server gone now was gone for part of the measurement too
        [[ $d == plain ]] && p=$ppid || p=$fpid
        kill -0 "$p" 2>/dev/null ||
            fail "$server run $run: the $d server exited during the run; its log ends:" \
                 "$(tail -3 "$([[ $d == plain ]] && echo "$pdir" || echo "$fdir")/server.log")"
    done
    job=$(ctl "$fdir" GET "/jobs/$id")
    state=$(json state <<<"$job"); broken=$(json snapshot.broken <<<"$job")
    [[ $state == running && $broken == None ]] ||
        fail "$server run $run: backup $id is $state, snapshot broken: $broken ($job)"
    if [[ $run == warm-up ]]; then
        grep -q 'verify=MISMATCH' "$tmp/anchor.out" && fail "FLEECE MISMATCH ($server warm-up)"
    else
        record "$server" "$run" "$cpu" "$(json snapshot.copiedBytes <<<"$job")" \
            "scratch_MiB=$(json snapshot.scratchUsedBytes <<<"$job" | awk '{ printf "%.1f", $1 / 1048576 }')"
    fi
    state=$(ctl "$fdir" DELETE "/backups/$id")
    state=$(json state <<<"$state")
    [[ $state == ended ]] || fail "$server run $run: backup-end left the job $state"
}

servers=(qemu)
for k in "${kinds[@]}"; do servers+=("shear/$k"); done
echo "# image $image; anchor options: ${anchor_opts[*]:-(defaults)}; servers: ${servers[*]}" \
     "($( ((warm)) && echo "warm Shear servers, one per column for the sitting" || echo "new Shear servers per measurement"))" >&2
for run in $(seq "$runs"); do
    for server in "${servers[@]}"; do
        if [[ $server == qemu ]]; then measure_qemu "$run"
        elif ((warm)); then measure_warm "${server#shear/}" "$run"
        else measure_shear "${server#shear/}" "$run"; fi
    done
done
((warm)) && stop_warm

echo
echo "medians of $runs (anchor ${anchor_opts[*]:-defaults}; $( ((warm)) && echo "warm Shear servers" || echo "new Shear servers per run");" \
     "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
get() { # SERVER KEY: the median over the runs, "-" when no run has a value
    tr ' ' '\n' <"$results" | awk -v s="server=$1" -v k="$2=" '$0 == s { on = 1; next } /^server=/ { on = 0 }
        on && index($0, k) == 1 && substr($0, length(k) + 1) != "-" { print substr($0, length(k) + 1) }' | median
}
ratio() { # QEMU SHEAR: SHEAR / QEMU
    awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && a != "-" && b != "-") printf "%.2f", b / a; else print "-" }'
}
cols=(plain_iops plain_p99_us read_iops read_p99_us fleece_MiBps cpu_s copied_MiB)
echo "| server | plain IOPS | plain p99 µs | IOPS during read | p99 µs during read | fleece read MiB/s (data) |" \
     "server CPU s | copied MiB |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for server in "${servers[@]}"; do
    line="| $server |"
    for c in "${cols[@]}"; do line+=" $(get "$server" "$c") |"; done
    echo "$line"
done
for server in "${servers[@]:1}"; do
    line="| $server / qemu |"
    for c in "${cols[@]}"; do line+=" $(ratio "$(get qemu "$c")" "$(get "$server" "$c")") |"; done
    echo "$line"
done
echo "(ratios: IOPS and MiB/s above 1 favour shear; p99, CPU and copied MiB above 1 favour qemu)"
echo "verify: $(grep -c 'verify=OK' "$results") of $(wc -l <"$results") fleece reads matched the snapshot point"
