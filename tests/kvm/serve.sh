#!/usr/bin/env bash
# snaprun --serve (the serving mode) against the native oracle.
#   serve.sh SNAPRUN SNAPGEN PEA CLIENT CASE PROGRAM REQUESTS BITCODE...
# CLIENT is serve_client.py. Cases:
#   oracle     the example's mixed request file, served with every policy this
#              build has (base, all, oracle, predicted), answers byte for byte
#              like the native program run on the same file
#   isolation  a request never sees what an earlier one wrote (static memory,
#              heap, a counter), and every restore has its own random bytes
#   soak       20,000 requests with faulting, looping, oversized requests and
#              responses mixed in: good ones answered right, bad ones with an
#              error line, the server's RSS bounded (serve_client.py soak)
#   clients    concurrent clients of --socket get their own responses
#   reload     a library replaced whole (rename) while requests flow: none is
#              dropped and the new version serves the ones after it
#   history    --trace --trace-every 2 writes requests 1, 3, 5 ... as history
#              that pea-analyze reads
#   refused    bad --serve uses are refused clearly, before any request
#   fallback   a fresh server serves its first requests from one snapshot while
#              their merged composite is built, then from the composite
#              (PROGRAM and REQUESTS are an example's)
source "$(dirname "$0")/lib.sh"
SNAPRUN=$1 SNAPGEN=$2 PEA=$3 CLIENT=$4 CASE=$5 PROGRAM=$6 REQUESTS=$7
shift 7
require_kvm
command -v python3 >/dev/null || fail "python3 is needed"
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

# library DIR [REQUESTS]: a library of PROGRAM made the way users make one.
library() {
    local reqs=${2:-$REQUESTS}
    "$PEA" "${BITCODE[@]}" --elf "$PROGRAM" -o "$work/map.pmap" 2>"$work/pea.err" ||
        { cat "$work/pea.err" >&2; fail "pea-analyze failed"; }
    "$SNAPGEN" --jobs 2 --map "$work/map.pmap" --requests "$reqs" -o "$1" "$PROGRAM" \
        2>"$work/gen.err" || { cat "$work/gen.err" >&2; fail "snapgen failed"; }
}
BITCODE=("$@")

case "$CASE" in
oracle)
    library "$work/lib"
    "$PROGRAM" <"$REQUESTS" >"$work/native" || fail "the native program failed on $REQUESTS"
    # snapselect and snapmerge are part of libcore: predicted is always there.
    policies="base all oracle predicted"
    first=$(python3 -c "
import json, sys
for l in open(sys.argv[1]).read().splitlines()[1:]:
    r = json.loads(l)
    if r.get('type') == 'snapshot':
        print(r['file'][:-5]); break" "$work/lib/manifest.jsonl")
    [[ -n "$first" ]] && policies+=" fixed:$first"
    for p in $policies; do
        for mode in lazy inline ahead; do
            "$SNAPRUN" --serve "$work/lib" --policy "$p" --restore "$mode" --pool 2 \
                <"$REQUESTS" >"$work/out" 2>"$work/err" ||
                { cat "$work/err" >&2; fail "--policy $p --restore $mode failed"; }
            cmp "$work/native" "$work/out" ||
                { diff "$work/native" "$work/out" | head >&2; fail "--policy $p --restore $mode answers unlike native"; }
        done
    done
    echo "ok: $(wc -l <"$REQUESTS") requests byte-identical to native with: $policies (lazy, inline, ahead)" ;;
isolation)
    library "$work/lib"
    # Twice each, so that a leak from one request to the next would show.
    printf 'put secret-one\nget\nput secret-two\nget\ncount\ncount\nrand\nrand\nrand\nget\n' >"$work/req"
    for p in base all oracle; do
        "$SNAPRUN" --serve "$work/lib" --policy "$p" --pool 1 <"$work/req" >"$work/out" 2>"$work/err" ||
            { cat "$work/err" >&2; fail "--policy $p failed"; }
        python3 - "$work/out" "$p" <<'PY' || fail "isolation broken with --policy $p"
import sys
out = open(sys.argv[1]).read().splitlines()
p = sys.argv[2]
assert len(out) == 10, out
assert out[0] == out[2] == "ok", out
for i in (1, 3, 9):
    assert "secret" not in out[i], f"{p}: request {i+1} sees an earlier put: {out[i]}"
assert out[4] == out[5], f"{p}: the counter carried over: {out[4]} then {out[5]}"
r = out[6:9]
assert all(len(x) == 32 for x in r), r
assert len(set(r)) == 3, f"{p}: restores share random bytes: {r}"
PY
    done
    # The native program, for contrast: one process keeps state.
    "$PROGRAM" <"$work/req" >"$work/native"
    grep -q "stored=secret-one" "$work/native" || fail "the test program does not reveal earlier writes natively"
    echo "ok: no request saw another's writes; every restore had its own random bytes" ;;
soak)
    library "$work/lib"
    python3 "$CLIENT" soak "$SNAPRUN" "$work/lib" "$PROGRAM" || fail "soak failed" ;;
clients)
    library "$work/lib"
    python3 "$CLIENT" clients "$SNAPRUN" "$work/lib" "$PROGRAM" || fail "concurrent clients failed" ;;
fallback)
    library "$work/lib"
    python3 "$CLIENT" fallback "$SNAPRUN" "$work/lib" "$PROGRAM" "$REQUESTS" || fail "fallback failed" ;;
reload)
    library "$work/lib"
    python3 "$CLIENT" reload "$SNAPRUN" "$work/lib" "$PROGRAM" "$SNAPGEN" "$work/map.pmap" "$REQUESTS" ||
        fail "reload failed" ;;
history)
    library "$work/lib"
    printf 'sum 10\necho a\ncount\nsum 1000\necho b\nfault\nget\n' >"$work/req"
    "$SNAPRUN" --serve "$work/lib" --policy oracle --trace "$work/h.jsonl" --trace-every 2 \
        <"$work/req" >"$work/out" 2>"$work/err" || { cat "$work/err" >&2; fail "traced serving failed"; }
    python3 - "$work/h.jsonl" <<'PY' || fail "the history is not what --trace-every 2 should write"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert lines[0]["format"] == "presnap-history" and lines[0]["version"] == 1, lines[0]
declared = {l["id"] for l in lines if l.get("type") == "segment"}
reqs = [l for l in lines if l.get("type") == "request"]
assert [r["seq"] for r in reqs] == [0, 2, 4, 6], [r["seq"] for r in reqs]
assert [r["bytes"] for r in reqs] == ["sum 10", "count", "echo b", "get"], reqs
assert reqs[0]["segments"] and set(reqs[0]["segments"]) <= declared, reqs[0]
assert all(r["failed"] is False for r in reqs), reqs
PY
    # The history is one pea-analyze reads.
    "$PEA" "${BITCODE[@]}" --elf "$PROGRAM" --history "$work/h.jsonl" -o "$work/m2.pmap" 2>"$work/pea2.err" ||
        { cat "$work/pea2.err" >&2; fail "pea-analyze refused the serving history"; }
    echo "ok: requests 1, 3, 5, 7 traced into a history pea-analyze reads" ;;
refused)
    library "$work/lib"
    refuse() { # refuse WHAT ARGS...: exit 125, the message, and no output
        local what=$1
        shift
        "$SNAPRUN" "$@" </dev/null >"$work/out" 2>"$work/err"
        local rc=$?
        [[ $rc -eq 125 ]] || { cat "$work/err" >&2; fail "$*: exit $rc, expected 125"; }
        expect_contains "$work/err" "$what"
        [[ ! -s "$work/out" ]] || fail "$*: wrote output"
    }
    refuse "manifest.jsonl" --serve "$work"
    refuse "unknown policy 'nope'" --serve "$work/lib" --policy nope
    refuse "no snapshot 's999'" --serve "$work/lib" --policy fixed:s999
    refuse "bad --restore 'soon'" --serve "$work/lib" --restore soon
    refuse "--pool goes with --serve" --pool 2 "$work/lib/base.snap"
    refuse "--serve takes no --cold" --serve "$work/lib" --cold "$PROGRAM"
    refuse "--rootfs has no effect with --serve" --serve "$work/lib" --rootfs /
    printf 'not a socket' >"$work/file"
    refuse "exists and is not a socket" --serve "$work/lib" --policy base --socket "$work/file"
    echo "ok: bad uses refused" ;;
*) fail "unknown case $CASE" ;;
esac
