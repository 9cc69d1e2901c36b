#!/usr/bin/env bash
# The library's page store on each example: the library's size (base, thin
# snapshots and pages.store) against its snapshots as standalone files, and
# what restoring a library snapshot costs from the thin file and the store
# against the same snapshot standalone (the bytes snapmerge -o writes, which
# the pack checked to be the file before it was packed). Medians of RUNS
# snaprun --stats runs per snapshot, the two forms interleaved.
#   bench/library_store.sh BUILD_DIR [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
runs=${2:-11}
snaprun=$build/tools/snaprun/snaprun
snapgen=$build/tools/snapgen/snapgen
snapmerge=$build/tools/snapmerge/snapmerge
pea=$build/tools/pea-analyze/pea-analyze
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
field() { grep -o "$1=[0-9.]*" | head -1 | cut -d= -f2; }

echo "## Library page store ($(date -u +%F), medians of $runs runs)"
echo
echo "Command: \`bench/library_store.sh $1 $runs\`. Libraries built with"
echo "\`snapgen --deterministic --map MAP --requests examples/EX/requests.txt -o LIB\`."
echo "standalone = base.snap + every sNNN.snap as it was before packing;"
echo "library = base.snap + thin sNNN.snap files + pages.store."
echo
echo "| example | snapshots | pages | standalone bytes | library bytes | saved | store bytes | distinct pages |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
restore_rows=""
for ex in numtheory spellcheck logparse tenants; do
    prog=$build/examples/$ex/$ex
    reqs=$here/examples/$ex/requests.txt
    "$pea" "$build"/tests/analysis/bc/example_$ex/*.bc --elf "$prog" -o "$work/$ex.pmap" 2>/dev/null
    "$snapgen" -q --deterministic --map "$work/$ex.pmap" --requests "$reqs" -o "$work/$ex" "$prog"
    lib=$work/$ex
    python3 - "$lib" "$ex" <<'PY'
import json, os, sys
lib, ex = sys.argv[1], sys.argv[2]
lines = open(os.path.join(lib, "manifest.jsonl")).read().splitlines()
h = json.loads(lines[0])
snaps = [json.loads(l) for l in lines[1:]]
on_disk = sum(os.path.getsize(os.path.join(lib, f)) for f in
              ["base.snap", "pages.store"] + [s["file"] for s in snaps])
assert on_disk == h["library_bytes"]
pages = sum(s["pages"] for s in snaps)
print(f"| {ex} | {len(snaps)} | {pages} | {h['standalone_bytes']} | {h['library_bytes']} | "
      f"{100 * (1 - h['library_bytes'] / h['standalone_bytes']):.1f}% | {h['store_bytes']} | "
      f"{h['store_pages']} |")
PY
    # Restore: each snapshot's held-out request, thin against standalone.
    mkdir "$work/$ex.alone"
    cp "$lib/base.snap" "$work/$ex.alone/"
    python3 -c 'import json,sys
for l in open(sys.argv[1]).read().splitlines()[1:]:
    r = json.loads(l); print(r["file"] + "\t" + r["held_out"])' "$lib/manifest.jsonl" >"$work/$ex.snaps"
    while IFS=$'\t' read -r file held; do
        "$snapmerge" -q --lib "$lib" "${file%.snap}" -o "$work/$ex.alone/$file"
        printf '%s\n' "$held" >"$work/req"
        for form in thin alone; do
            : >"$work/$form.wall" && : >"$work/$form.restore" && : >"$work/$form.first"
        done
        for _ in $(seq "$runs"); do
            for form in thin alone; do
                d=$lib
                [[ $form == alone ]] && d=$work/$ex.alone
                t0=$(date +%s%N)
                s=$("$snaprun" --stats "$d/base.snap" "$d/$file" <"$work/req" 2>&1 >/dev/null | grep 'stats: setup')
                t1=$(date +%s%N)
                echo "$(((t1 - t0) / 1000))" >>"$work/$form.wall"
                echo "$s" | field restore_us >>"$work/$form.restore"
                echo "$s" | field first_request_us >>"$work/$form.first"
            done
        done
        row="| $ex | $file "
        for m in wall restore first; do
            row+="| $(median <"$work/alone.$m") | $(median <"$work/thin.$m") "
        done
        restore_rows+="$row|"$'\n'
    done <"$work/$ex.snaps"
done
echo
echo "Restore of each library snapshot (base + sNNN, its held-out request):"
echo "wall = the whole snaprun process (opening and checking the files, the page store's"
echo "run checksums included, KVM set-up, the request, teardown), µs; restore = restore_us"
echo "(chain checks, VM, mapping the pages); first = the request's latency, µs (pages fault"
echo "in from the standalone file or from pages.store). S = standalone, L = library."
echo
echo "| example | snapshot | wall S | wall L | restore S | restore L | first S | first L |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
printf '%s' "$restore_rows"
