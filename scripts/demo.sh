#!/usr/bin/env bash
# The main job on an example: serve examples/numtheory's requests from a cold
# boot under KVM and compare the responses with the native run, byte for byte,
# then print a short table: wall time of each run, responses, identical or not.
#   scripts/demo.sh BUILD_DIR
# Needs BUILD_DIR's snaprun and example_numtheory targets (nothing else).
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
