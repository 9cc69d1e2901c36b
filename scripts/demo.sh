#!/usr/bin/env bash
# The main job on an example, end to end:
#  1. serve examples/numtheory's requests from a cold boot under KVM and
#     compare the responses with the native run, byte for byte;
#  2. the whole pipeline (examples/pipeline/pipeline.sh): the map, the
#     snapshot library, the selection model, then every held-out request
#     through snapselect | snapmerge | snaprun and through snaprun --serve,
#     each response compared with the native program's;
#  3. a short first-request table (bench/run --quick): time to the response
#     of native processes, a cold boot, the base snapshot and presnap's
#     predicted composite, side by side in one run.
#   scripts/demo.sh BUILD_DIR
# Needs BUILD_DIR's snaprun, snapgen, snapselect, snapmerge, pea-analyze,
# presnap_restore_pool and example_numtheory targets.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
prog=$build/examples/numtheory/numtheory
snaprun=$build/tools/snaprun/snaprun
requests=$here/examples/numtheory/requests.txt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ms START END: milliseconds between two $EPOCHREALTIME readings.
ms() {
    local a=${1/./} b=${2/./}
    echo $(((10#$b - 10#$a + 500) / 1000))
}

t0=$EPOCHREALTIME
"$prog" <"$requests" >"$work/native.out"
t1=$EPOCHREALTIME
"$snaprun" --stats --cold "$prog" <"$requests" >"$work/vm.out" 2>"$work/vm.err" || {
    cat "$work/vm.err" >&2
    echo "demo: error: snaprun --cold failed (see above)" >&2
    exit 1
}
t2=$EPOCHREALTIME

native_ms=$(ms "$t0" "$t1")
vm_ms=$(ms "$t1" "$t2")
n_req=$(wc -l <"$requests")
n_native=$(wc -l <"$work/native.out")
n_vm=$(wc -l <"$work/vm.out")
# Guest start-up (monitor start to the program waiting for its first
# request), from --stats when it reports it.
startup=$(grep -o 'startup_us=[0-9.]*' "$work/vm.err" | head -1 | cut -d= -f2 || true)
note=""
[[ -n $startup ]] && note="boot to first read: $(((${startup%.*} + 500) / 1000)) ms"

echo
echo "first responses (examples/numtheory/requests.txt):"
head -n 3 "$work/vm.out" | sed 's/^/  /'
echo
echo "presnap demo: $n_req requests to examples/numtheory"
{
    printf '  %-28s %9s %10s  %s\n' run "wall time" responses ""
    printf '  %-28s %6s ms %10s  %s\n' "native (this machine)" "$native_ms" "$n_native" ""
    printf '  %-28s %6s ms %10s  %s\n' "snaprun --cold (KVM guest)" "$vm_ms" "$n_vm" "$note"
} | sed 's/ *$//'
if cmp -s "$work/native.out" "$work/vm.out"; then
    echo "  same responses as native: yes, byte for byte"
else
    echo "  same responses as native: NO"
    diff "$work/native.out" "$work/vm.out" | head | sed 's/^/    /'
    exit 1
fi

echo
echo "presnap pipeline on examples/numtheory (map, library, model; held-out requests):"
if ! "$here/examples/pipeline/pipeline.sh" "$build" numtheory "$work/pipeline" 2>&1 |
    sed 's/^pipeline: /  /'; then
    echo "demo: error: the pipeline failed (see above)" >&2
    exit 1
fi

echo
echo "first request of each held-out request, side by side (bench/run --quick; ms to the response):"
python3 "$here/bench/run" --quick "$build" "$work/report" 2>"$work/bench.err" || {
    cat "$work/bench.err" >&2
    echo "demo: error: bench/run --quick failed (see above)" >&2
    exit 1
}
# The example's contender table and its ratios, from the report.
awk '/^\| contender/{on=1} on&&/^$/{n++; on=0} on{print "  " $0} /^\| presnap\/base/{r=1} r&&/^\|/{print "  " $0} r&&/^$/{r=0}' \
    "$work/report/report.md" | grep -v -- '|---' | head -16
echo
echo "a new server's first request (spawn snaprun --serve, one request, ms to the response):"
awk '/^\| server \|/{on=1} on&&/^$/{on=0} on{print "  " $0}' "$work/report/report.md" |
    grep -v -- '|---' | head -6

