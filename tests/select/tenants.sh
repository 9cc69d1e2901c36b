#!/usr/bin/env bash
# The tenants example: state that cannot all be warm at once.
#   tenants.sh SNAPRUN SNAPGEN PEA SNAPSELECT PROGRAM REQUESTS BITCODE...
#
# examples/tenants keeps at most two tenants' price tables in its cache
# (LRU): loading a third frees the least recently used. So a composite that
# replays every tenant's warm-up holds only the last two tenants' tables, and
# warm-all cannot serve every tenant warm. Proved here:
#   1. the library has one snapshot per tenant (each tenant's lazy guard is
#      its own warmable segment, with the tenant's name as route token);
#   2. warm-all is impossible, observably: restoring the base and replaying
#      every tenant's warm-up in manifest order (what a chained warm-all
#      composite is) and then sending a request of the first tenant makes its
#      lazy guard run again (the trace shows it): its table was evicted;
#   3. snapselect, trained on a history with one long run (where a tenant's
#      guard runs twice in one process), answers warm_all false, saying it is
#      impossible, even with no byte budget;
#   4. for a new request of each tenant (a SKU and key order not in the
#      requests), with history and without (route tokens), it selects exactly
#      that tenant's snapshot; a malformed request or an unknown tenant gets
#      the base alone.
source "$(dirname "$0")/../kvm/lib.sh"
SNAPRUN=$1 SNAPGEN=$2 PEA=$3 SNAPSELECT=$4 PROGRAM=$5 REQUESTS=$6
shift 6
require_kvm
command -v python3 >/dev/null || fail "python3 is needed to read the manifest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
make_map "$@"
"$SNAPGEN" -q --map "$work/map.pmap" --requests "$REQUESTS" -o "$work/lib" "$PROGRAM" ||
    fail "snapgen failed"

# id TAB tenant-of-warmup TAB segments (comma-separated), per snapshot.
python3 - "$work/lib/manifest.jsonl" >"$work/snaps" <<'PY'
import json, sys
for l in open(sys.argv[1]).read().splitlines()[1:]:
    r = json.loads(l)
    if r.get("type") == "snapshot":
        print("%s\t%s\t%s" % (r["file"][:-5], r["warmup"].split(" ")[0],
                              ",".join(r["segments"])))
PY
cat "$work/snaps" >&2
tenants="acme globex initech umbrella hooli"
for t in $tenants; do
    [[ $(awk -F'\t' -v t="$t" '$2 == t' "$work/snaps" | wc -l) -eq 1 ]] ||
        fail "expected exactly one snapshot made after a request of tenant $t"
done

# 2. Warm-all is impossible: every warm-up in manifest order, then the first
# tenant again, from the base, traced.
python3 - "$work/lib/manifest.jsonl" >"$work/chain.txt" <<'PY'
import json, sys
snaps = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()[1:]]
snaps = [s for s in snaps if s.get("type") == "snapshot"]
for s in snaps:
    print(s["warmup"])
print(snaps[0]["warmup"].split(" ")[0] + ' {"op":"price","sku":4242}')
PY
"$SNAPRUN" -q --trace "$work/chain.jsonl" --map "$work/lib/map.pmap" "$work/lib/base.snap" \
    <"$work/chain.txt" >/dev/null || fail "replaying the warm-ups failed"
first_segs=$(head -1 "$work/snaps" | cut -f3)
python3 - "$work/chain.jsonl" "$first_segs" "$work/lib/map.pmap" <<'PY' || fail "after every tenant's warm-up, the first tenant's table was still warm: warm-all would be possible"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"type":"request"' in l]
snap = set(sys.argv[2].split(","))
lazy = {l.split()[0] for l in open(sys.argv[3]) if not l.startswith("#") and l.split()[6] == "lazy"}
guard = snap & lazy
first, last = recs[0], recs[-1]
assert guard & set(first["segments"]), "the first warm-up did not run its tenant's lazy guard"
again = guard & set(last["segments"])
print("the first tenant's lazy guard ran again after all warm-ups:", sorted(again))
sys.exit(0 if again else 1)
PY

# 3. Train: each request alone from the base, and the whole file as one run.
i=0
while IFS= read -r r; do
    i=$((i + 1))
    printf '%s\n' "$r" | "$SNAPRUN" -q --trace "$work/h$i.jsonl" --map "$work/lib/map.pmap" \
        "$work/lib/base.snap" >/dev/null
done <"$REQUESTS"
"$SNAPRUN" -q --trace "$work/run.jsonl" --map "$work/lib/map.pmap" "$work/lib/base.snap" \
    <"$REQUESTS" >/dev/null
"$SNAPSELECT" --lib "$work/lib" --train "$work"/h*.jsonl "$work/run.jsonl" || fail "training failed"
"$SNAPSELECT" --lib "$work/lib" --explain --request 'acme {"op":"price","sku":1}' \
    >"$work/explain.txt" || fail "snapselect failed"
cat "$work/explain.txt" >&2
expect_contains "$work/explain.txt" "# warm-all: impossible"
"$SNAPSELECT" --lib "$work/lib" --json --request 'acme {"op":"price","sku":1}' |
    grep -q '"warm_all":false' || fail "warm_all is not false in the JSON form"

# 4. Each tenant's new request selects that tenant's snapshot, alone. The
# map alone cannot know that the cache evicts (only a history shows it), so
# without history the prediction is asked for directly (--no-warm-all).
for mode in history static; do
    extra=()
    [[ $mode == static ]] && extra=(--static --no-warm-all)
    for t in $tenants; do
        want=$(awk -F'\t' -v t="$t" '$2 == t {print $1}' "$work/snaps")
        got=$("$SNAPSELECT" --lib "$work/lib" "${extra[@]}" \
            --request "$t {\"sku\": 90210, \"op\": \"stock\"}" | tail -1)
        [[ "$got" == "select $want" ]] ||
            fail "$mode: a request of $t selected '$got' (expected 'select $want')"
    done
done
# A malformed request or an unknown tenant: the base alone.
for r in 'not json' 'nobody {"op":"price","sku":1}'; do
    got=$("$SNAPSELECT" --lib "$work/lib" --request "$r" | tail -1)
    [[ "$got" == "select" ]] || fail "'$r' selected '$got' (expected the base alone)"
done
echo "ok: one snapshot per tenant; warm-all impossible (evicted) and refused; each tenant's request selects its own snapshot"
