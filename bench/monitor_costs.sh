#!/usr/bin/env bash
# Measures the monitor's costs on this machine, side by side with native runs
# of the same binaries, and prints a Markdown report (medians of RUNS runs).
#   bench/monitor_costs.sh BUILD_DIR [RUNS]
# Needs the project built (examples included) and /dev/kvm.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
runs=${2:-11}
snaprun=$build/tools/snaprun/snaprun
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -static -O2 -o "$work/guest_costs" "$here/bench/guest_costs.c"
printf 'x\n' >"$work/one.txt"

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
stat_field() { grep -o "$1=[0-9.]*" | head -1 | cut -d= -f2; }
wall_us() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>&1 || true; t1=$(date +%s%N); echo $(((t1 - t0) / 1000)); }

echo "## Monitor costs ($(date -u +%F), $(nproc) cores, $(uname -r), medians of $runs runs)"
echo
echo "Command: \`bench/monitor_costs.sh $1 $runs\`"
echo
echo "| operation | native | presnap guest |"
echo "|---|---|---|"
for key in in_guest_syscall_ns exit_round_trip_ns first_touch_per_page_ns; do
    n=$(for i in $(seq 5); do "$work/guest_costs" 2>/dev/null | stat_field "$key"; done | median)
    g=$(for i in $(seq 5); do "$snaprun" --cold "$work/guest_costs" </dev/null 2>/dev/null | stat_field "$key"; done | median)
    echo "| $key | $n | $g |"
done
echo
echo "### Start-up of \`snaprun --cold\` (trivial program that reads one request)"
echo
echo "| measure | µs |"
echo "|---|---|"
for f in setup_us first_exit_us startup_us; do
    v=$(for i in $(seq "$runs"); do "$snaprun" --stats --cold "$build/tests/kvm/guest_stdio_glibc" <"$work/one.txt" 2>&1 >/dev/null | grep 'stats: setup' | stat_field "$f"; done | median)
    echo "| $f (from the monitor's start) | $v |"
done
v=$(for i in $(seq "$runs"); do wall_us "$snaprun" --cold "$build/tests/kvm/guest_stdio_glibc" <"$work/one.txt"; done | median)
n=$(for i in $(seq "$runs"); do wall_us "$build/tests/kvm/guest_stdio_glibc" <"$work/one.txt"; done | median)
echo "| whole run, 1 request, process start to exit (presnap) | $v |"
echo "| whole run, 1 request, process start to exit (native) | $n |"
echo
echo "### Examples: first request (cold) and steady state"
echo
echo "presnap: \`snaprun --stats\`: startup = monitor start to the first wait point; first = the"
echo "first request, delivery to wait point; steady = median over the rest of requests.txt."
echo "native: \`examples/latency.py\` (first request of each route in a fresh process; warm ="
echo "pipelined requests, wall time / count)."
echo
echo "| example | presnap startup µs | presnap first request µs | presnap steady µs/request | exits/request | native whole file ms | presnap whole file ms |"
echo "|---|---|---|---|---|---|---|"
for ex in numtheory spellcheck logparse; do
    prog=$build/examples/$ex/$ex
    req=$here/examples/$ex/requests.txt
    for i in $(seq "$runs"); do "$snaprun" --stats --cold "$prog" <"$req" 2>&1 >/dev/null | grep 'stats: setup'; done >"$work/$ex.stats"
    s=$(grep -o 'startup_us=[0-9.]*' "$work/$ex.stats" | cut -d= -f2 | median)
    f=$(grep -o 'first_request_us=[0-9.]*' "$work/$ex.stats" | cut -d= -f2 | median)
    m=$(grep -o 'median_request_us=[0-9.]*' "$work/$ex.stats" | cut -d= -f2 | median)
    x=$(grep -o 'max_exits_per_request=[0-9]*' "$work/$ex.stats" | cut -d= -f2 | sort -n | tail -1)
    nw=$(for i in $(seq "$runs"); do wall_us "$prog" <"$req"; done | median)
    vw=$(for i in $(seq "$runs"); do wall_us "$snaprun" --cold "$prog" <"$req"; done | median)
    echo "| $ex | $s | $f | $m | $x | $((nw / 1000)) | $((vw / 1000)) |"
done
echo
echo "Native per-route latency (examples/latency.py, first = cold route in a fresh process):"
echo
for ex in numtheory spellcheck logparse; do
    echo '```'
    python3 "$here/examples/latency.py" "$build/examples/$ex/$ex" "$here/examples/$ex/requests.txt" 2>&1 | head -20
    echo '```'
done
