#!/usr/bin/env bash
# snapmerge on real libraries against the native oracle.
#   merge.sh SNAPRUN SNAPGEN PEA SNAPMERGE CASE PROGRAM REQUESTS BITCODE...
# Cases:
#   pairs       for every pair of the library's snapshots, the composite
#               (merged or chained) answers the warm-up and held-out requests
#               of both routes byte-identically to native, and the trace of
#               those requests shows none of the routes' lazy initialisers
#               (lazy segments of the map that the warm-ups ran) running
#               again; a second snapmerge of the pair reuses the stored
#               composite
#               With EXPECT_MERGED=1 every pair must merge (no chain) and
#               pass --verify.
#   conflicts   over every pair, --explain --json reports the conflicts a
#               heap-allocating example has in each kind of region, by
#               name: allocator metadata or stdio in the executable's data
#               (elf .data/.bss with a symbol), the brk heap, the mmap area,
#               the stack, the guest kernel's mapping table
#   refusals    hostile id lists (unknown, a path, duplicates) and a snapshot
#               made from another base are refused clearly, writing nothing
#   verify      --verify passes on the library; on a copy whose manifest
#               records another warm-up response it rejects the composite.
#               Also: four snapmerge of one new set at once all succeed and
#               leave one valid stored composite; --all builds each distinct
#               set of a selection stream once
source "$(dirname "$0")/lib.sh"
SNAPRUN=$1 SNAPGEN=$2 PEA=$3 SNAPMERGE=$4 CASE=$5 PROGRAM=$6 REQUESTS=$7
shift 7
require_kvm
command -v python3 >/dev/null || fail "python3 is needed to read the manifest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
make_map "$@"
"$SNAPGEN" --map "$work/map.pmap" --requests "$REQUESTS" -o "$work/lib" "$PROGRAM" 2>"$work/gen.err" ||
    { cat "$work/gen.err" >&2; fail "snapgen library mode failed"; }
L=$work/lib

# field ID NAME: a manifest field of snapshot ID.
field() {
    python3 - "$L/manifest.jsonl" "$1" "$2" <<'PY'
import json, sys
for l in open(sys.argv[1]).read().splitlines()[1:]:
    r = json.loads(l)
    if r.get("type") == "snapshot" and r["file"] == sys.argv[2] + ".snap":
        v = r[sys.argv[3]]
        print(" ".join(v) if isinstance(v, list) else v)
PY
}
ids=$(python3 -c "
import json,sys
for l in open('$L/manifest.jsonl').read().splitlines()[1:]:
    r=json.loads(l)
    if r.get('type')=='snapshot': print(r['file'][:-5])")
[[ $(echo "$ids" | wc -w) -ge 2 ]] || fail "fewer than two snapshots: no pair to merge"
# Lazy segments of the map (column 7 "lazy").
grep -v '^#' "$work/map.pmap" | awk '$7 == "lazy" {print $1}' | sort -u >"$work/lazy"

case $CASE in
pairs)
    n=0 merged=0 traced=0
    for a in $ids; do
        for b in $ids; do
            [[ "$a" < "$b" ]] || continue
            verify=()
            [[ ${EXPECT_MERGED:-0} == 1 ]] && verify=(--verify)
            "$SNAPMERGE" --lib "$L" --json "${verify[@]}" -o "$work/c.snap" "$a" "$b" >"$work/c.json" 2>"$work/c.err" ||
                { cat "$work/c.err" >&2; fail "snapmerge $a $b failed"; }
            how=$(python3 -c "import json;print(json.load(open('$work/c.json'))['how'])")
            [[ $how == merged || $how == chained ]] || fail "$a $b: composite is '$how'"
            [[ $how == merged ]] && merged=$((merged + 1))
            [[ ${EXPECT_MERGED:-0} == 1 && $how != merged ]] &&
                fail "$a $b: chained, expected a merge: $(cat "$work/c.json")"
            : >"$work/reqs"
            for id in $a $b; do
                field "$id" warmup >>"$work/reqs"
                field "$id" held_out >>"$work/reqs"
            done
            "$PROGRAM" <"$work/reqs" >"$work/native"
            "$SNAPRUN" --trace "$work/h.jsonl" --map "$L/map.pmap" "$L/base.snap" "$work/c.snap" \
                <"$work/reqs" >"$work/out" 2>"$work/run.err" ||
                { cat "$work/run.err" >&2; fail "$a $b: restoring the composite failed"; }
            cmp -s "$work/native" "$work/out" || fail "$a $b ($how): responses differ from native"
            # The lazy initialisers the two warm-ups ran do not run again.
            { field "$a" segments; field "$b" segments; } | tr ' ' '\n' | sort -u |
                comm -12 - "$work/lazy" >"$work/warm_lazy"
            # (A route whose warm-up ran no lazy segment of the map is
            # checked by its responses only; at least one pair must be
            # checked through the trace, below.)
            [[ -s "$work/warm_lazy" ]] && traced=$((traced + 1))
            grep '"type":"request"' "$work/h.jsonl" >"$work/h.req"
            [[ $(wc -l <"$work/h.req") == 4 ]] || fail "$a $b: expected 4 request records in the trace"
            while IFS= read -r seg; do
                ! grep -q "\"$seg\"" "$work/h.req" ||
                    fail "$a $b ($how): lazy segment $seg ran again from the composite"
            done <"$work/warm_lazy"
            # Reused the second time.
            "$SNAPMERGE" --lib "$L" --json "$a" "$b" >"$work/c2.json" 2>/dev/null || fail "second snapmerge $a $b failed"
            expect_contains "$work/c2.json" '"from_cache":true'
            n=$((n + 1))
        done
    done
    [[ $traced -gt 0 ]] || fail "no pair's warm-ups ran a lazy segment of the map: the trace check proved nothing"
    echo "ok: $n pairs ($merged merged, $((n - merged)) chained) answer like native; $traced checked through the trace: their lazy initialisers did not run again" ;;
conflicts)
    for a in $ids; do
        for b in $ids; do
            [[ "$a" < "$b" ]] || continue
            "$SNAPMERGE" --lib "$L" --json --explain --no-cache "$a" "$b" >>"$work/all.json" 2>/dev/null ||
                fail "snapmerge $a $b failed"
        done
    done
    python3 - "$work/all.json" <<'PY' || fail "conflict regions missing"
import json, sys
kinds = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    for c in r.get("conflict_list", []):
        key = c["region"] if not c["region"].startswith("elf ") else "elf"
        kinds.setdefault(key, set()).add(c["symbol"].split("+")[0])
for k in sorted(kinds):
    print(f"ok: {k}: {', '.join(sorted(s for s in kinds[k] if s)) or '(no symbol)'}")
want = {"elf", "heap", "mmap", "stack", "guest kernel"}
missing = want - set(kinds)
assert not missing, f"no conflict reported in {missing}: {sorted(kinds)}"
assert any(kinds["elf"]), "no ELF symbol named for a conflict in the executable's data"
assert "maps" in kinds["guest kernel"], f"guest kernel conflicts not in its mapping table: {kinds['guest kernel']}"
PY
    ;;
refusals)
    set -- $ids
    for bad in s999 ../x "$1 $1" /etc/passwd "$1/../$2" ""; do
        rm -f "$work/o.snap"
        # shellcheck disable=SC2086
        "$SNAPMERGE" --lib "$L" -o "$work/o.snap" $bad ${bad:+} 2>"$work/err" </dev/null
        rc=$?
        [[ $rc == 1 ]] || fail "ids '$bad': exit $rc (expected 1)"
        [[ ! -e "$work/o.snap" ]] || fail "ids '$bad': an output was written"
        grep -q '^snapmerge: error: ' "$work/err" || fail "ids '$bad': no error message"
        echo "ok: '$bad' refused: $(head -1 "$work/err")"
    done
    # A snapshot made from another base (same program, another boot).
    "$SNAPGEN" --base -o "$work/other.snap" "$PROGRAM" 2>/dev/null || fail "snapgen --base failed"
    field "$1" warmup >"$work/w"
    "$SNAPGEN" --after "$work/w" --from "$work/other.snap" -o "$work/foreign.snap" 2>/dev/null ||
        fail "snapgen --after failed"
    cp -r "$L" "$work/lib2"
    cp "$work/foreign.snap" "$work/lib2/$2.snap"
    "$SNAPMERGE" --lib "$work/lib2" --no-cache -o "$work/o.snap" "$1" "$2" 2>"$work/err" &&
        fail "a snapshot of another base was merged"
    expect_contains "$work/err" "not a diff of this library's base"
    [[ ! -e "$work/o.snap" ]] || fail "an output was written for a foreign snapshot"
    echo "ok: $(head -1 "$work/err")" ;;
verify)
    set -- $ids
    "$SNAPMERGE" --lib "$L" --verify --json "$1" "$2" >"$work/v.json" 2>"$work/err" ||
        { cat "$work/err" >&2; fail "--verify failed on a sound library"; }
    cp -r "$L" "$work/forged"
    rm -rf "$work/forged/composites"
    python3 - "$work/forged/manifest.jsonl" "$1" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
out = [lines[0]]
for l in lines[1:]:
    r = json.loads(l)
    if r.get("type") == "snapshot" and r["file"] == sys.argv[2] + ".snap":
        r["warmup_response"] = "forged\n"
    out.append(json.dumps(r, separators=(",", ":")))
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
    "$SNAPMERGE" --lib "$work/forged" --verify -o "$work/o.snap" "$1" "$2" 2>"$work/err" &&
        fail "--verify accepted a composite whose warm-up answers unlike the manifest"
    expect_contains "$work/err" "verification"
    expect_contains "$work/err" "answered differently"
    [[ ! -e "$work/o.snap" ]] || fail "a rejected composite was written"
    "$SNAPMERGE" --lib "$work/forged" --verify "$1" 2>"$work/err1" &&
        fail "--verify accepted a single snapshot whose warm-up answers unlike the manifest"
    # Without --verify the forged manifest is not looked at.
    "$SNAPMERGE" --lib "$work/forged" "$1" "$2" 2>/dev/null || fail "snapmerge without --verify failed"
    echo "ok: --verify passes the library and rejects the forged warm-up response: $(head -1 "$work/err")"
    # Concurrent writers of one set.
    set -- $ids
    last=${!#}
    pids=()
    for k in 1 2 3 4; do
        "$SNAPMERGE" --lib "$L" -o "$work/par$k.snap" "$1" "$last" 2>"$work/par$k.err" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || fail "one of four concurrent snapmerge runs failed"; done
    [[ $(ls "$L/composites" | grep -c "$1-$last.snap\$") == 1 ]] || fail "not one stored composite for $1 $last"
    ! ls "$L/composites" | grep -q tmp || fail "a temporary file was left in composites/"
    { field "$1" warmup; field "$last" warmup; } >"$work/reqs"
    "$PROGRAM" <"$work/reqs" >"$work/native"
    for k in 1 2 3 4; do
        "$SNAPRUN" "$L/base.snap" "$work/par$k.snap" <"$work/reqs" | cmp -s - "$work/native" ||
            fail "concurrent run $k wrote a composite that answers unlike native"
    done
    echo "ok: four concurrent snapmerge runs of one set"
    # --all: each distinct set once, in order of first appearance.
    printf 'presnap-selection 1\nselect %s %s\nselect %s\nselect %s %s\nselect\n' "$1" "$2" "$1" "$1" "$2" |
        "$SNAPMERGE" --lib "$L" --all --json >"$work/all.json" || fail "--all failed"
    [[ $(wc -l <"$work/all.json") == 3 ]] || fail "--all built $(wc -l <"$work/all.json") composites (expected 3)"
    python3 -c "
import json, sys
hows = [json.loads(l)['how'] for l in open('$work/all.json')]
assert hows[1:] == ['single', 'base'] and hows[0] in ('merged', 'chained'), hows" || fail "--all: unexpected composites"
    echo "ok: --all built 3 distinct sets from 4 selections" ;;
*)
    fail "unknown case $CASE" ;;
esac
