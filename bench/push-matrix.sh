#!/usr/bin/env bash
# push-matrix.sh — a full push backup, Shear vs QEMU, same sitting, one command: the time to write a
# point-in-time copy of a live qcow2 disk into a new qcow2 file.
#   QEMU:  qemu-storage-daemon with copy-before-write + snapshot-access over the disk (the fleecing
#          set-up of fleece-anchor.sh), and `qemu-img convert -O qcow2` from the snapshot export
#          (the usual way to push with QEMU 7.2; qemu-img skips what block status reports as zeros).
#   Shear: `shear serve --control` on the disk and a push backup begun through the control API
#          (POST /backups {type: push}), timed from the call to the job's end state (the target is
#          fsynced by then; qemu-img convert does not fsync, so its time is given with and without an
#          fdatasync of the target afterwards).
# Every run starts from a fresh copy of the source; nothing writes the disk meanwhile, so each backup
# is compared with the source afterwards (qemu-img compare, outside the timing).
#
# Usage: bench/push-matrix.sh [-n RUNS] [-c zstd|deflate] [SOURCE.qcow2]
#   SOURCE    default /tmp/img.qcow2 (make it with /work/shared/bench/mkimage.sh)
#   -n RUNS   runs per server (default 3); medians are printed
#   -c TYPE   compressed backups (qemu-img convert -c -o compression_type=..., Shear compress=TYPE)
# Needs qemu-storage-daemon, qemu-img, curl, jq.
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
root=$(dirname "$here")
runs=3 compress=
while getopts "n:c:h" o; do
    case $o in
        n) runs=$OPTARG ;; c) compress=$OPTARG ;;
        *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    esac
done
shift $((OPTIND - 1))
source_img=${1:-/tmp/img.qcow2}
[[ -f $source_img ]] || { echo "missing $source_img: run /work/shared/bench/mkimage.sh $source_img" >&2; exit 1; }
[[ -f $root/nbd/target/shear.jar ]] || { echo "build first: mvn -o -q -pl nbd -am package -DskipTests" >&2; exit 1; }
for t in qemu-storage-daemon qemu-img curl jq; do
    command -v "$t" >/dev/null || { echo "$t missing" >&2; exit 1; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/push-matrix.XXXXXX")
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
results=$tmp/results
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
now() { date +%s.%N; }
wait_socket() { # path pid what
    for _ in $(seq 600); do
        [[ -S $1 ]] && return 0
        kill -0 "$2" 2>/dev/null || { echo "$3 exited: $(cat "$tmp/server.log")" >&2; exit 1; }
        sleep 0.05
    done
    echo "$3 did not listen on $1" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
fresh() { # -> $tmp/src.qcow2, no backup yet
    rm -rf "$tmp/run"; mkdir "$tmp/run"
    cp --sparse=always "$source_img" "$tmp/run/src.qcow2"
    sync    # no dirty pages left from the copy or an earlier run to throttle this one
}
vsize=$(qemu-img info --output=json "$source_img" | jq -r '."virtual-size"')
cluster=$(qemu-img info --output=json "$source_img" | jq -r '."cluster-size"')
data=$(qemu-img map --output=json "$source_img" | jq '[.[] | select(.data) | .length] | add')

qemu_run() {
    local d=$tmp/run sock=$tmp/run/q.sock
    qemu-img create -q -f qcow2 -o "cluster_size=$cluster" "$d/cbw-target.qcow2" "$vsize"
    qemu-storage-daemon \
        --blockdev "driver=file,node-name=src-file,filename=$d/src.qcow2" \
        --blockdev "driver=qcow2,node-name=src,file=src-file" \
        --blockdev "driver=file,node-name=tgt-file,filename=$d/cbw-target.qcow2" \
        --blockdev "driver=qcow2,node-name=tgt,file=tgt-file" \
        --blockdev "driver=copy-before-write,node-name=cbw,file=src,target=tgt" \
        --blockdev "driver=snapshot-access,node-name=snap,file=cbw" \
        --nbd-server "addr.type=unix,addr.path=$sock" \
        --export "nbd,id=live,node-name=cbw,name=live,writable=on" \
        --export "nbd,id=fleece,node-name=snap,name=fleece" >"$tmp/server.log" 2>&1 &
    pid=$!
    wait_socket "$sock" "$pid" qemu-storage-daemon
    local opts=(-O qcow2 -o "cluster_size=$cluster")
    [[ -n $compress ]] && opts=(-c -O qcow2 -o "cluster_size=$cluster,compression_type=${compress/deflate/zlib}")
    local t0 t1 t2
    t0=$(now)
    qemu-img convert -q -f raw "${opts[@]}" "nbd+unix:///fleece?socket=$sock" "$d/backup.qcow2"
    t1=$(now)
    sync --data "$d/backup.qcow2"   # qemu-img convert does not fsync its target; Shear's push does
    t2=$(now)
    stop
    awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "%.3f %.3f\n", b - a, c - a }'
}

shear_run() {
    local d=$tmp/run sock=$tmp/run/s.sock ctl=$tmp/run/ctl.sock
    "$root/shear" serve -k "$sock" -x vda --control "$ctl" "$d/src.qcow2" >"$tmp/server.log" 2>&1 &
    pid=$!
    wait_socket "$ctl" "$pid" shear
    wait_socket "$sock" "$pid" shear
    local body
    body=$(jq -cn --arg t "$d/backup.qcow2" --arg c "$compress" \
        '{export: "vda", type: "push", target: $t} + (if $c == "" then {} else {compress: $c} end)')
    local t0 t1 id state
    t0=$(now)
    id=$(curl -sf --unix-socket "$ctl" -H 'Content-Type: application/json' -d "$body" \
        http://localhost/backups | jq -r .id)
    while :; do
        state=$(curl -sf --unix-socket "$ctl" "http://localhost/backups/$id" | jq -r .state)
        case $state in
            completed) break ;;
            failed|aborted|ended) echo "shear push ended $state: $(curl -s --unix-socket "$ctl" \
                "http://localhost/backups/$id")" >&2; exit 1 ;;
        esac
        sleep 0.01
    done
    t1=$(now)
    stop
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f %.3f\n", b - a, b - a }'   # flushed when completed
}

for run in $(seq "$runs"); do
    for server in ${ORDER:-qemu shear}; do
        fresh
        read -r secs synced < <("${server}_run")
        qemu-img compare -q "$tmp/run/src.qcow2" "$tmp/run/backup.qcow2" \
            || { echo "server=$server run=$run: the backup differs from the source" >&2; exit 1; }
        qemu-img check -q "$tmp/run/backup.qcow2" \
            || { echo "server=$server run=$run: qemu-img check failed on the backup" >&2; exit 1; }
        size=$(du -B1 "$tmp/run/backup.qcow2" | cut -f1)
        echo "server=$server run=$run seconds=$secs seconds_durable=$synced data_MiBps=$(awk -v d="$data" \
            -v s="$secs" 'BEGIN { printf "%.0f", d / 1048576 / s }') backup_bytes=$size compress=${compress:-none}" \
            | tee -a "$results"
    done
done

echo
echo "medians of $runs (source $(basename "$source_img"): $((vsize >> 20)) MiB virtual, $((data >> 20)) MiB data;" \
     "compress=${compress:-none}; 2 cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
col() { grep "^server=$1 " "$results" | sed "s/.* $2=\\([^ ]*\\).*/\\1/" | median; }
q=$(col qemu seconds) qs=$(col qemu seconds_durable) s=$(col shear seconds)
rate() { awk -v d="$data" -v s="$1" 'BEGIN { printf "%.0f", d / 1048576 / s }'; }
printf '%-40s %10s %12s\n' what seconds data_MiB/s
printf '%-40s %10s %12s\n' "qemu-img convert from qsd (no fsync)" "$q" "$(rate "$q")"
printf '%-40s %10s %12s\n' "qemu-img convert + fdatasync of target" "$qs" "$(rate "$qs")"
printf '%-40s %10s %12s\n' "shear push (target fsynced)" "$s" "$(rate "$s")"
echo "shear / qemu (by time): $(awk -v q="$q" -v s="$s" 'BEGIN { printf "%.2f", q / s }') against qemu-img alone," \
     "$(awk -v q="$qs" -v s="$s" 'BEGIN { printf "%.2f", q / s }') against qemu-img + fdatasync"
