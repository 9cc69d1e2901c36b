#!/usr/bin/env bash
# Snapshot costs on this machine, side by side in one run (medians of RUNS):
# for each example and route, the route's first request from a cold boot, from
# the base snapshot, from base + the route's diff (with and without working-set
# prefetch), and natively; restore times, page faults, snapshot sizes.
#   bench/snapshot_costs.sh BUILD_DIR [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
runs=${2:-7}
snaprun=$build/tools/snaprun/snaprun
snapgen=$build/tools/snapgen/snapgen
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
field() { grep -o "$1=[0-9.]*" | head -1 | cut -d= -f2; }
stats() { # stats FIELD SNAPRUN_ARGS... < requests: median of RUNS
    local f=$1
    shift
    for i in $(seq "$runs"); do "$snaprun" --stats "$@" <"$work/req" 2>&1 >/dev/null | grep 'stats: setup' | field "$f"; done | median
}

echo "## Snapshots ($(date -u +%F), medians of $runs runs)"
echo
echo "Command: \`bench/snapshot_costs.sh $1 $runs\`. Each row serves one request of the route"
echo "(its first line in requests.txt). cold = \`snaprun --cold\`; base = restored base snapshot;"
echo "diff = base + the route's diff made by \`snapgen --after\`; +prefetch = with \`--prefetch\`."
echo "Times are the request's latency inside the monitor (delivery to wait point), µs;"
echo "restore = monitor start to ready; faults = host minor faults during the request."
echo
echo "| example | route | cold | base | diff | diff+prefetch | restore (diff) | restore (+prefetch) | faults diff / +prefetch | native first (ms) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
sizes=""
for ex in numtheory spellcheck logparse; do
    prog=$build/examples/$ex/$ex
    reqs=$here/examples/$ex/requests.txt
    "$snapgen" -q --base -o "$work/$ex.base.snap" "$prog"
    "$snapgen" -q --base --compress -o "$work/$ex.base.zst.snap" "$prog"
    for route in $(awk '{print $1}' "$reqs" | awk 'NF && !seen[$0]++'); do
        grep -m1 "^$route\b" "$reqs" >"$work/req"
        "$snapgen" -q --after "$work/req" --from "$work/$ex.base.snap" -o "$work/d.snap"
        "$snapgen" -q --compress --after "$work/req" --from "$work/$ex.base.snap" -o "$work/dz.snap"
        cold=$(stats first_request_us --cold "$prog")
        base=$(stats first_request_us "$work/$ex.base.snap")
        diff=$(stats first_request_us "$work/$ex.base.snap" "$work/d.snap")
        pref=$(stats first_request_us --prefetch "$work/$ex.base.snap" "$work/d.snap")
        rd=$(stats restore_us "$work/$ex.base.snap" "$work/d.snap")
        rp=$(stats restore_us --prefetch "$work/$ex.base.snap" "$work/d.snap")
        fd=$(stats first_request_faults "$work/$ex.base.snap" "$work/d.snap")
        fp=$(stats first_request_faults --prefetch "$work/$ex.base.snap" "$work/d.snap")
        nat=$(python3 "$here/examples/latency.py" "$prog" "$work/req" 1 2>/dev/null | awk -v r="$route" '$1==r {print $2}')
        echo "| $ex | $route | $cold | $base | $diff | $pref | $rd | $rp | $fd / $fp | ${nat:-?} |"
        sizes+="| $ex | $route | $(stat -c %s "$work/d.snap") | $(stat -c %s "$work/dz.snap") |"$'\n'
    done
    sizes+="| $ex | (base) | $(stat -c %s "$work/$ex.base.snap") | $(stat -c %s "$work/$ex.base.zst.snap") |"$'\n'
done
echo
echo "Snapshot sizes (bytes): raw (page data mmap-able) and zstd-compressed (level 3)."
echo
echo "| example | snapshot | raw | zstd |"
echo "|---|---|---|---|"
printf '%s' "$sizes"
echo
echo "### Restore start-up (numtheory base snapshot, no request work)"
echo
printf 'x\n' >"$work/req"
echo "| measure | µs |"
echo "|---|---|"
echo "| restore_us: monitor start to ready (files open, memory mapped, vCPU set) | $(stats restore_us "$work/numtheory.base.snap") |"
echo "| of which VM + vCPU creation (vm_create_us; a VM made in advance saves it) | $(stats vm_create_us "$work/numtheory.base.snap") |"
echo "| cold boot setup_us: monitor start to first KVM_RUN | $(stats setup_us --cold "$build/examples/numtheory/numtheory") |"
t=$(for i in $(seq "$runs"); do s=$(date +%s%N); "$snaprun" "$work/numtheory.base.snap" <"$work/req" >/dev/null; e=$(date +%s%N); echo $(((e - s) / 1000)); done | median)
c=$(for i in $(seq "$runs"); do s=$(date +%s%N); "$snaprun" --cold "$build/examples/numtheory/numtheory" <"$work/req" >/dev/null; e=$(date +%s%N); echo $(((e - s) / 1000)); done | median)
echo "| whole \`snaprun BASE\` process, one trivial request | $t |"
echo "| whole \`snaprun --cold\` process, one trivial request | $c |"
