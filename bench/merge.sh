#!/usr/bin/env bash
# The merge figures of issue 9: for each example, the share of snapshot
# pairs that merge without a chain with the rules added one by one and what
# still conflicts, by region (snapmerge --pairs); merge time and bytes per
# second for 2, 4 and 8 snapshots of the eight-route static guest
# (tests/kvm/guests/merge_routes.c, whose routes merge); chain build time
# for the same sets and for pairs of each example.
#   bench/merge.sh BUILD_DIR [RUNS]   (needs /dev/kvm, clang-14)
set -euo pipefail
build=$(cd "${1:?usage: bench/merge.sh BUILD_DIR [RUNS]}" && pwd)
runs=${2:-5}
src=$(cd "$(dirname "$0")/.." && pwd)
T=$build/tools
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

library() { # NAME PROGRAM REQUESTS BITCODE... -> $work/NAME
    local name=$1 prog=$2 req=$3
    shift 3
    "$T/pea-analyze/pea-analyze" "$@" --elf "$prog" -o "$work/$name.pmap" 2>/dev/null
    "$T/snapgen/snapgen" -q --map "$work/$name.pmap" --requests "$req" -o "$work/$name" "$prog"
}
median_of() { # KEY: the median (and minimum) of KEY over JSON lines on stdin
    python3 -c "
import json, statistics, sys
v = [json.loads(l)['$1'] for l in sys.stdin]
print('%.0f (min %.0f)' % (statistics.median(v), min(v)))"
}

for ex in numtheory spellcheck logparse; do
    library "$ex" "$build/examples/$ex/$ex" "$src/examples/$ex/requests.txt" \
        "$build/tests/analysis/bc/example_$ex/$ex.bc"
    echo "== $ex: $(($(ls "$work/$ex"/s*.snap | wc -l))) snapshots; pairs merging without a chain, rule by rule"
    "$T/snapmerge/snapmerge" --lib "$work/$ex" --pairs
    ids=$(ls "$work/$ex"/s*.snap | head -2 | xargs -n1 basename | sed 's/\.snap$//')
    us=$(for r in $(seq "$runs"); do "$T/snapmerge/snapmerge" --lib "$work/$ex" --no-cache --json $ids; done | median_of us)
    echo "$ex $(echo $ids): $(("$T/snapmerge/snapmerge" --lib "$work/$ex" --no-cache --json $ids) | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["how"], "merge attempt %.0f us, chain %.0f us" % (r["merge_us"], r["chain_us"]))'), whole call median $us us"
done

clang-14 -O1 -Xclang -disable-llvm-passes -g -emit-llvm -c "$src/tests/kvm/guests/merge_routes.c" -o "$work/mr.bc"
cc -O2 -g -static "$src/tests/kvm/guests/merge_routes.c" -o "$work/mr"
library routes "$work/mr" "$src/tests/kvm/guests/merge_routes.requests" "$work/mr.bc"
echo "== merge_routes (eight static routes): $(ls "$work/routes"/s*.snap | wc -l) snapshots"
"$T/snapmerge/snapmerge" --lib "$work/routes" --pairs
for n in 2 4 8; do
    ids=$(seq -f 's%03g' 1 "$n")
    "$T/snapmerge/snapmerge" --lib "$work/routes" --no-cache --json $ids >"$work/one.json"
    how=$(python3 -c "import json; print(json.load(open('$work/one.json'))['how'])")
    for r in $(seq "$runs"); do "$T/snapmerge/snapmerge" --lib "$work/routes" --no-cache --json $ids; done >"$work/m.json"
    m=$(median_of merge_us <"$work/m.json")
    bytes=$(python3 -c "import json; print(json.load(open('$work/one.json'))['input_bytes'])")
    for r in $(seq "$runs"); do "$T/snapmerge/snapmerge" --lib "$work/routes" --no-cache --chain --json $ids; done >"$work/c.json"
    c=$(median_of chain_us <"$work/c.json")
    echo "$n snapshots: $how; merge $m us for $bytes bytes of pages ($(python3 -c "print('%.0f' % ($bytes / float('$m'.split()[0])))") MB/s at the median); chain $c us"
done
