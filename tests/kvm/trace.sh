#!/usr/bin/env bash
# snaprun --trace on the real examples, against the native run and their
# probability maps (made here by pea-analyze from the example's bitcode).
#   trace.sh SNAPRUN SNAPGEN PEA CASE PROGRAM REQUESTS BITCODE...
# Cases:
#   lazy-initialisers  responses equal native and untraced; the first
#                      successful request of every route runs that route's
#                      lazy initialiser (a lazy guard with the route's token);
#                      records are well formed (segments declared, each once)
#   empty              a request that reaches none of the traced segments
#                      still gets its record, with an empty list
#   every              --trace-every 3 records requests 1, 4, 7 ... only,
#                      with the same segments as tracing every request
#   from-snapshot      tracing a restored base snapshot: responses equal
#                      native, the lazy initialisers are seen
#   bad-options        --trace without --map, a map of another executable
#   args-rootfs        a program run with arguments and a file tree
#                      (TRACE_ROOTFS, TRACE_ARGS; e.g. a static-pie, whose
#                      map addresses are moved by its load bias): responses
#                      equal native, every request recorded with segments
#   own-int3           the program's own int3 ends it with SIGTRAP, as
#                      natively, traced or not; its request is recorded as
#                      failed (REQUESTS ends with a "trap" line)
source "$(dirname "$0")/lib.sh"
SNAPRUN=$1 SNAPGEN=$2 PEA=$3 CASE=$4 PROGRAM=$5 REQUESTS=$6
shift 6
require_kvm
command -v python3 >/dev/null || fail "python3 is needed to read the history"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

make_map "$@"
"$PROGRAM" <"$REQUESTS" >"$work/native.out"
[[ -s "$work/native.out" ]] || fail "the native run printed nothing: the test would prove nothing"

# check_history HISTORY MAP RESPONSES [INDEXES]: the history's records are
# well formed, one per response (or per given index), with the response's
# size and failure (the examples answer 'error: ...' to a bad request).
check_history() {
    python3 - "$@" <<'EOF'
import json, sys
hist, pmap, responses = sys.argv[1], sys.argv[2], sys.argv[3]
want_idx = [int(x) for x in sys.argv[4].split(",")] if len(sys.argv) > 4 else None
lines = [json.loads(l) for l in open(hist) if l.strip()]
assert lines[0]["format"] == "presnap-history" and lines[0]["version"] == 1, lines[0]
declared = {l["id"] for l in lines if l.get("type") == "segment"}
reqs = [l for l in lines if l.get("type") == "request"]
resp = open(responses, "rb").read().split(b"\n")
idx = [r["index"] for r in reqs]
if want_idx is None:
    want_idx = list(range(1, len(resp)))
assert idx == want_idx, f"recorded requests {idx}, expected {want_idx}"
for n, r in enumerate(reqs):
    assert r["seq"] == n, r
    assert len(set(r["segments"])) == len(r["segments"]), f"repeats in {r}"
    assert set(r["segments"]) <= declared, f"undeclared segments in {r}"
    out = resp[r["index"] - 1]
    assert r["response_len"] == len(out) + 1, f"response_len {r['response_len']} for {out!r}"
    assert r["failed"] == out.startswith(b"error"), f"failed={r['failed']} for {out!r}"
EOF
}

case $CASE in
lazy-initialisers)
    "$SNAPRUN" --trace "$work/h.jsonl" --map "$work/map.pmap" --cold "$PROGRAM" <"$REQUESTS" \
        >"$work/traced.out" 2>"$work/traced.err" || { cat "$work/traced.err" >&2; fail "traced run failed"; }
    "$SNAPRUN" --cold "$PROGRAM" <"$REQUESTS" >"$work/plain.out" 2>/dev/null || fail "untraced run failed"
    cmp "$work/native.out" "$work/traced.out" || fail "traced responses differ from the native run"
    cmp "$work/plain.out" "$work/traced.out" || fail "traced responses differ from the untraced run"
    check_history "$work/h.jsonl" "$work/map.pmap" "$work/native.out" || fail "bad history"
    echo "ok: $(grep -c '"request"' "$work/h.jsonl") requests traced, responses identical"
    # Each route's first successful request, alone in a fresh guest (where
    # no other route has built shared state yet), runs every lazy
    # initialiser of the route: lazy guards whose route tokens name it.
    python3 - "$work/h.jsonl" "$work/map.pmap" >"$work/routes" <<'EOF' || fail "cannot list routes"
import json, sys
reqs = [r for r in map(json.loads, open(sys.argv[1])) if r.get("type") == "request"]
lazy = {}
for line in open(sys.argv[2]):
    f = line.split(" ")
    if not line.startswith("#") and f[6] == "lazy" and f[10] != "-" and f[9] != "-":
        for t in f[10].split(","):
            lazy.setdefault(t.strip('"'), []).append(f[0] + ":" + f[2])
seen = set()
for r in reqs:
    route = r["bytes"].split(" ")[0]
    if r["failed"] or route in seen or route not in lazy or r["truncated"]:
        continue
    seen.add(route)
    print(r["bytes"] + "\t" + " ".join(lazy[route]))
EOF
    [[ -s "$work/routes" ]] || fail "no route with a lazy initialiser: the test would prove nothing"
    while IFS=$'\t' read -r req segs; do
        printf '%s\n' "$req" >"$work/one"
        "$SNAPRUN" --trace "$work/one.jsonl" --map "$work/map.pmap" --cold "$PROGRAM" <"$work/one" \
            >"$work/one.out" 2>&1 || fail "traced run of '$req' failed"
        for seg in $segs; do
            grep -q "\"${seg%%:*}\"" "$work/one.jsonl" ||
                fail "'$req' did not trace its lazy initialiser ${seg#*:}"
            echo "ok: '$req' ran ${seg#*:}"
        done
    done <"$work/routes"
    ;;
empty)
    # A map of one segment: the lazy initialiser of the route of the last
    # request, traced while only the first request runs.
    route=$(head -1 "$REQUESTS" | cut -d' ' -f1)
    other=$(grep -v "^#" "$work/map.pmap" | awk -v r="\"$route\"" \
        '$7 == "lazy" && $10 != "-" && $11 != "-" && index($11, r) == 0 {print; exit}')
    [[ -n "$other" ]] || fail "no lazy initialiser of another route than '$route' in the map"
    { grep "^#" "$work/map.pmap" | sed 's/^# segments: .*/# segments: 1/'; echo "$other"; } >"$work/one.pmap"
    head -1 "$REQUESTS" >"$work/req"
    "$SNAPRUN" --trace "$work/h.jsonl" --map "$work/one.pmap" --cold "$PROGRAM" <"$work/req" \
        >"$work/traced.out" 2>"$work/traced.err" || { cat "$work/traced.err" >&2; fail "traced run failed"; }
    head -1 "$work/native.out" | cmp - "$work/traced.out" || fail "response differs from native"
    grep '"request"' "$work/h.jsonl" >"$work/rec"
    [[ $(wc -l <"$work/rec") == 1 ]] || fail "expected one request record"
    expect_contains "$work/rec" '"segments":[]'
    # And the same segment is seen when its route runs (the map is live).
    route2=$(echo "$other" | cut -d' ' -f11 | cut -d, -f1 | tr -d '"')
    grep -m1 "^$route2 " "$REQUESTS" >"$work/req2" || fail "no request of route $route2"
    "$SNAPRUN" --trace "$work/h2.jsonl" --map "$work/one.pmap" --cold "$PROGRAM" <"$work/req2" \
        >/dev/null 2>&1 || fail "traced run of route $route2 failed"
    expect_contains "$work/h2.jsonl" "\"segments\":[\"$(echo "$other" | cut -d' ' -f1)\"]"
    echo "ok: '$(cat "$work/req")' recorded with no segment; '$(cat "$work/req2")' with $(echo "$other" | cut -d' ' -f3)"
    ;;
every)
    "$SNAPRUN" --trace "$work/all.jsonl" --map "$work/map.pmap" --cold "$PROGRAM" <"$REQUESTS" \
        >/dev/null 2>&1 || fail "traced run failed"
    "$SNAPRUN" --trace "$work/h.jsonl" --trace-every 3 --map "$work/map.pmap" --cold "$PROGRAM" \
        <"$REQUESTS" >"$work/traced.out" 2>"$work/traced.err" || { cat "$work/traced.err" >&2; fail "sampled run failed"; }
    cmp "$work/native.out" "$work/traced.out" || fail "sampled responses differ from the native run"
    n=$(wc -l <"$work/native.out")
    want=$(seq 1 3 "$n" | paste -sd,)
    check_history "$work/h.jsonl" "$work/map.pmap" "$work/native.out" "$want" || fail "bad history"
    # Tracing does not change what a request runs: each sampled record's
    # segments are those of the same request when every request is traced.
    python3 - "$work/all.jsonl" "$work/h.jsonl" <<'EOF' || fail "sampled segments differ"
import json, sys
recs = lambda p: {r["index"]: r["segments"] for r in map(json.loads, open(p)) if r.get("type") == "request"}
a, s = recs(sys.argv[1]), recs(sys.argv[2])
for i, segs in s.items():
    assert segs == a[i], f"request {i}: {segs} != {a[i]}"
print(f"ok: {len(s)} sampled requests {sorted(s)} equal the full trace")
EOF
    ;;
from-snapshot)
    "$SNAPGEN" -q --base -o "$work/base.snap" "$PROGRAM" || fail "snapgen --base failed"
    "$SNAPRUN" --trace "$work/h.jsonl" --map "$work/map.pmap" "$work/base.snap" <"$REQUESTS" \
        >"$work/traced.out" 2>"$work/traced.err" || { cat "$work/traced.err" >&2; fail "traced restore failed"; }
    cmp "$work/native.out" "$work/traced.out" || fail "traced responses differ from the native run"
    check_history "$work/h.jsonl" "$work/map.pmap" "$work/native.out" || fail "bad history"
    expect_contains "$work/h.jsonl" "\"snapshot\":\"$work/base.snap\""
    echo "ok: $(grep -c '"request"' "$work/h.jsonl") requests traced from a restored snapshot"
    ;;
bad-options)
    "$SNAPRUN" --trace "$work/h.jsonl" --cold "$PROGRAM" </dev/null 2>"$work/err" && fail "--trace without --map accepted"
    expect_contains "$work/err" "snaprun: error: --trace needs the probability map (--map PMAP)"
    "$SNAPRUN" --trace - --map "$work/map.pmap" --cold "$PROGRAM" </dev/null 2>"$work/err" && fail "--trace - accepted"
    expect_contains "$work/err" "snaprun: error: --trace cannot write to standard output"
    # A map whose addresses lie outside this executable's code.
    grep "^#" "$work/map.pmap" | sed 's/^# segments: .*/# segments: 1/' >"$work/far.pmap"
    echo "0123456789abcdef fn fn:nowhere 1.000000 1 warm - W found 7f0000000000-7f0000000010 - static 0123456789abcdef 0123456789abcdef" >>"$work/far.pmap"
    "$SNAPRUN" --trace "$work/h.jsonl" --map "$work/far.pmap" --cold "$PROGRAM" </dev/null 2>"$work/err" && fail "foreign map accepted"
    expect_contains "$work/err" "segment fn:nowhere (0123456789abcdef) starts at 0x7f0000000000, outside the executable's code"
    echo "ok: bad options refused"
    ;;
args-rootfs)
    read -ra args <<<"${TRACE_ARGS:-}"
    (cd "$TRACE_ROOTFS" && "$PROGRAM" "${args[@]}" <"$REQUESTS" >"$work/native.out")
    "$SNAPRUN" --rootfs "$TRACE_ROOTFS" --trace "$work/h.jsonl" --map "$work/map.pmap" \
        --cold "$PROGRAM" "${args[@]}" <"$REQUESTS" >"$work/traced.out" 2>"$work/traced.err" ||
        { cat "$work/traced.err" >&2; fail "traced run failed"; }
    cmp "$work/native.out" "$work/traced.out" || fail "traced responses differ from the native run"
    n=$(grep -c '"request"' "$work/h.jsonl")
    [[ $n == $(grep -c '' "$REQUESTS") ]] || fail "$n records for $(grep -c '' "$REQUESTS") requests"
    ! grep '"request"' "$work/h.jsonl" | grep -q '"segments":\[\]' ||
        fail "a request of the main loop recorded no segment: the points are not where the code is"
    echo "ok: $n requests traced, each with segments; responses identical to native"
    ;;
own-int3)
    "$PROGRAM" <"$REQUESTS" >"$work/native.out"
    native_rc=$?
    [[ $native_rc == 133 ]] || fail "native exit status $native_rc (expected 133, SIGTRAP)"
    "$SNAPRUN" --cold "$PROGRAM" <"$REQUESTS" >"$work/plain.out" 2>"$work/plain.err"
    plain_rc=$?
    "$SNAPRUN" --trace "$work/h.jsonl" --trace-all --map "$work/map.pmap" --cold "$PROGRAM" \
        <"$REQUESTS" >"$work/traced.out" 2>"$work/traced.err"
    traced_rc=$?
    for m in plain traced; do
        cmp "$work/native.out" "$work/$m.out" || fail "$m responses differ from the native run"
        expect_contains "$work/$m.err" "guest breakpoint"
    done
    [[ $plain_rc == 133 && $traced_rc == 133 ]] ||
        fail "exit status $plain_rc untraced, $traced_rc traced (expected 133 as natively)"
    n=$(grep -c '"request"' "$work/h.jsonl")
    [[ $n == $(wc -l <"$REQUESTS") ]] || fail "$n records for $(wc -l <"$REQUESTS") requests"
    grep '"request"' "$work/h.jsonl" | tail -1 >"$work/last"
    expect_contains "$work/last" '"failed":true'
    expect_contains "$work/last" '"bytes":"trap"'
    # It was traced up to the breakpoint: fn:trap ran.
    trap_id=$(grep ' fn:trap ' "$work/map.pmap" | cut -d' ' -f1)
    [[ -n "$trap_id" ]] || fail "no fn:trap in the map"
    expect_contains "$work/last" "\"$trap_id\"]"
    grep '"request"' "$work/h.jsonl" | head -1 >"$work/first"
    expect_contains "$work/first" '"failed":false'
    echo "ok: own int3 gives SIGTRAP (133) natively, untraced and traced; $n records, the last failed"
    ;;
*) fail "unknown case $CASE" ;;
esac
