#!/usr/bin/env bash
# The whole presnap pipeline on one example, as a user would run it:
#
#   pea-analyze      the program's bitcode + binary   -> WORK/app.pmap
#   snapgen          + examples/NAME/requests.txt     -> WORK/lib/ (base + route snapshots)
#   snaprun --serve --policy base --trace  each sample request from the base
#                                                      -> WORK/history.jsonl
#   snapselect --train                                 -> WORK/lib/model.jsonl
#
# then, for every request of examples/NAME/heldout.txt (requests the library
# never saw), the per-request path:
#
#   snapselect --request R | snapmerge -o WORK/c.snap | snaprun WORK/lib/base.snap WORK/c.snap
#
# and the same requests through one serving process (snaprun --serve). Every
# response is compared with the native program's, byte for byte.
#
#   examples/pipeline/pipeline.sh BUILD_DIR [EXAMPLE] [WORK_DIR]
#
# EXAMPLE is numtheory (default), spellcheck, logparse or tenants. WORK_DIR
# (default: a temporary directory, removed at the end) keeps the map, the
# library and the histories. Exit status 0 when every response matched, 1
# when one did not or a step failed, 77 without a usable /dev/kvm.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
ex=${2:-numtheory}
if [[ -n ${3:-} ]]; then
    work=$3
    mkdir -p "$work"
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi
t=$build/tools
prog=$build/examples/$ex/$ex
for f in "$prog" "$t/pea-analyze/pea-analyze" "$t/snapgen/snapgen" "$t/snapselect/snapselect" \
    "$t/snapmerge/snapmerge" "$t/snaprun/snaprun"; do
    [[ -x $f ]] || { echo "pipeline: error: $f is not built (cmake --build $build)" >&2; exit 1; }
done
say() { printf 'pipeline: %s\n' "$*" >&2; }
[[ -r /dev/kvm && -w /dev/kvm ]] || { say "skipped: needs read-write /dev/kvm"; exit 77; }

# 1. The map: bitcode from the sources with the analysis recipe (docs/analysis.md).
bcs=()
for src in "$root/examples/$ex"/*.c "$root/examples/$ex"/*.cpp; do
    [[ -e $src ]] || continue
    cc=clang-14
    [[ $src == *.cpp ]] && cc=clang++-14
    bc=$work/$(basename "${src%.*}").bc
    "$cc" -O1 -Xclang -disable-llvm-passes -g -emit-llvm -c "$src" -o "$bc"
    bcs+=("$bc")
done
"$t/pea-analyze/pea-analyze" -q "${bcs[@]}" --elf "$prog" -o "$work/app.pmap"
say "map: $(sed -n 's/^# segments: //p' "$work/app.pmap") segments"

# 2. The library.
"$t/snapgen/snapgen" -q --jobs 2 --map "$work/app.pmap" --requests "$root/examples/$ex/requests.txt" \
    -o "$work/lib" "$prog"
say "library: $(ls "$work/lib"/s*.snap | wc -l) route snapshots over base.snap"

# 3. The model: each sample request served from a fresh restore of the base
#    (what it runs from a fresh state) and traced, then trained.
"$t/snaprun/snaprun" -q --serve "$work/lib" --policy base --trace "$work/history.jsonl" \
    <"$root/examples/$ex/requests.txt" >/dev/null ||
    { say "error: tracing the sample requests failed"; exit 1; }
"$t/snapselect/snapselect" -q --lib "$work/lib" --train "$work/history.jsonl"
say "model: trained on $(grep -c '"type":"request"' "$work/history.jsonl") requests"

# 4. Per request: select, merge, restore; the native run is the oracle.
n=0 bad=0
while IFS= read -r r || [[ -n $r ]]; do
    n=$((n + 1))
    "$t/snapselect/snapselect" --lib "$work/lib" --request "$r" >"$work/selection"
    "$t/snapmerge/snapmerge" -q --lib "$work/lib" -o "$work/c.snap" <"$work/selection"
    vm_rc=0 native_rc=0
    printf '%s\n' "$r" | "$t/snaprun/snaprun" "$work/lib/base.snap" "$work/c.snap" >"$work/vm.out" || vm_rc=$?
    printf '%s\n' "$r" | "$prog" >"$work/native.out" || native_rc=$?
    if [[ $vm_rc -ne $native_rc ]] || ! cmp -s "$work/native.out" "$work/vm.out"; then
        bad=$((bad + 1))
        say "DIFFERS: '$r' ($(sed 1d "$work/selection" | tr '\n' ' '))"
    fi
done <"$root/examples/$ex/heldout.txt"
say "select | merge | run: $((n - bad)) of $n held-out requests answered like native"

# 5. The same requests through one serving process: a fresh predicted
#    composite restored from a pool for every request.
"$t/snaprun/snaprun" --serve "$work/lib" <"$root/examples/$ex/heldout.txt" >"$work/serve.out"
"$prog" <"$root/examples/$ex/heldout.txt" >"$work/native-all.out" ||
    { say "error: the native program failed on heldout.txt"; exit 1; }
if cmp -s "$work/native-all.out" "$work/serve.out"; then
    say "snaprun --serve: $n held-out requests answered like native"
else
    bad=$((bad + 1))
    say "DIFFERS: snaprun --serve's responses are not the native program's"
fi
exit $((bad > 0))
