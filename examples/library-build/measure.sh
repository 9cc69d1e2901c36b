#!/usr/bin/env bash
# Measures library builds of the examples: wall time with --jobs 1 and 2,
# snapshots per second, two shards run side by side plus --combine against
# a single build, and sizes (the library against every snapshot as a
# standalone full snapshot, and the distinct page contents it holds).
#   measure.sh BUILD_DIR [EXAMPLE...]      (default: every example)
# Needs /dev/kvm, clang-14 (for the maps) and the build's
# presnap_library_check (tests/kvm, -DPRESNAP_BUILD_TESTS=ON).
set -euo pipefail
build=$(cd "$1" && pwd)
shift
src=$(cd "$(dirname "$0")/../.." && pwd)
examples=("$@")
[[ ${#examples[@]} -gt 0 ]] || examples=(numtheory spellcheck logparse)
snapgen=$build/tools/snapgen/snapgen
pea=$build/tools/pea-analyze/pea-analyze
check=$build/tests/kvm/presnap_library_check
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }

printf '%-10s %5s %8s %8s %7s %7s %9s %9s %9s %12s %12s %12s\n' example snaps 'j1_s' 'j2_s' 'snap/s1' 'snap/s2' 'shards2_s' 'combine_s' 'single_s' lib_bytes standalone distinct_pg
for ex in "${examples[@]}"; do
    prog=$build/examples/$ex/$ex
    req=$src/examples/$ex/requests.txt
    d=$work/$ex
    mkdir -p "$d"
    for f in "$src/examples/$ex"/*.c "$src/examples/$ex"/*.cpp; do
        [[ -e $f ]] || continue
        case $f in
        *.c) clang-14 -O1 -Xclang -disable-llvm-passes -g -emit-llvm -c "$f" -o "$d/$(basename "${f%.*}").bc" ;;
        *) clang++-14 -std=c++20 -O1 -Xclang -disable-llvm-passes -g -emit-llvm -c "$f" -o "$d/$(basename "${f%.*}").bc" ;;
        esac
    done
    "$pea" "$d"/*.bc --elf "$prog" -o "$d/map.pmap" 2>/dev/null
    gen() { "$snapgen" -q --deterministic --map "$d/map.pmap" --requests "$req" "$@" "$prog"; }
    t0=$(now); gen --jobs 1 -o "$d/j1"; t1=$(now); gen --jobs 2 -o "$d/j2"; t2=$(now)
    gen --shard 1/2 -o "$d/s1" & p1=$!
    gen --shard 2/2 -o "$d/s2" & p2=$!
    wait $p1 $p2
    t3=$(now)
    "$snapgen" -q --combine "$d/s1" "$d/s2" -o "$d/lib"
    t4=$(now)
    for f in $(cd "$d/j1" && ls); do
        [[ $f == timings.jsonl ]] || cmp -s "$d/j1/$f" "$d/lib/$f" || { echo "$ex: $f differs between the single and the sharded build" >&2; exit 1; }
    done
    n=$("$check" "$d/lib" | tail -1 | cut -d' ' -f2)
    # Each snapshot as a standalone file: a full snapshot after its warm-up.
    standalone=0
    while IFS=$'\t' read -r id file benefit saved warmup held; do
        [[ $id == ok* ]] && continue
        printf '%s\n' "$warmup" >"$d/warm.txt"
        "$snapgen" -q --deterministic --base --warmup "$d/warm.txt" -o "$d/full.snap" "$prog"
        standalone=$((standalone + $(stat -c %s "$d/full.snap")))
    done < <("$check" "$d/lib")
    read -r _ lib_bytes stored distinct < <("$check" --pages "$d/lib" | grep '^pages')
    printf '%-10s %5s %8s %8s %7s %7s %9s %9s %9s %12s %12s %12s\n' "$ex" "$n" "$(secs "$t0" "$t1")" \
        "$(secs "$t1" "$t2")" "$(python3 -c "print(f'{$n / ($t1 - $t0):.2f}')")" \
        "$(python3 -c "print(f'{$n / ($t2 - $t1):.2f}')")" "$(secs "$t2" "$t3")" "$(secs "$t3" "$t4")" \
        "$(secs "$t0" "$t1")" "$lib_bytes" "$standalone" "$distinct/$stored"
done
echo "(j1_s/j2_s: a single --deterministic build with --jobs 1/2; shards2_s: two --shard processes side by side;"
echo " lib_bytes: base + snapshots; standalone: each snapshot as a full snapshot after its warm-up, summed;"
echo " distinct_pg: distinct page contents / pages stored in the library's files)"
