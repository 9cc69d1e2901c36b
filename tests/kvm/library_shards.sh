#!/usr/bin/env bash
# Building a snapshot library at scale: deterministic builds, shards and
# --combine, concurrent and killed builds, --history.
#   library_shards.sh SNAPRUN SNAPGEN PEA CHECK CASE PROGRAM REQUESTS BITCODE...
# CHECK is library_check (library::open_library on a directory).
# Cases:
#   shards      a build in 3 shards, combined (shards given out of order),
#               equals a single --deterministic build byte for byte (every
#               file but timings.jsonl, which must still be readable); so do
#               single builds with --jobs 1 and 2; each snapshot answers its
#               held-out request like native; the warm-ups' records (syscalls,
#               memory growth) are plausible and a bad one is refused; combine
#               refuses a missing,
#               repeated, foreign or tampered shard and leaves the previous
#               library as it was
#   concurrent  two builds of one directory started together: one is refused
#               with a clear error, the other writes a valid library; a
#               combine while a build holds the lock is refused too
#   killed      builds and a combine killed with SIGKILL at several moments
#               leave the previous library byte for byte, readable and
#               restorable; the next build clears what they left
#   history     a library built from a history (snaprun --trace) equals one
#               built by tracing the same requests; a history that names
#               segments the map lacks, or whose hashes are wrong, is refused
source "$(dirname "$0")/lib.sh"
SNAPRUN=$1 SNAPGEN=$2 PEA=$3 CHECK=$4 CASE=$5 PROGRAM=$6 REQUESTS=$7
shift 7
SNAPINFO=${SNAPINFO:?the test sets SNAPINFO to snapinfo}
require_kvm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
make_map "$@"
# gen OUT [OPTIONS...]: a deterministic library build of the example (exec:
# in the background, $! is snapgen itself, for kill -9).
gen() {
    local out=$1
    shift
    (exec "$SNAPGEN" -q --deterministic --map "$work/map.pmap" --requests "$REQUESTS" "$@" \
        -o "$out" "$PROGRAM")
}

# explain_difference A B: for a snapshot, which sections and bytes differ
# (a nondeterministic build is otherwise hard to pin down).
explain_difference() {
    [[ $1 == *.snap ]] || return 0
    "$SNAPINFO" --runs "$1" >"$work/info.a" 2>&1
    "$SNAPINFO" --runs "$2" >"$work/info.b" 2>&1
    diff "$work/info.a" "$work/info.b" >&2
    cmp -l "$1" "$2" | head -40 >&2
}

# same_library A B: the same files, byte for byte, timings.jsonl aside
# (host timings: documented as not byte-stable), and both valid.
same_library() {
    (cd "$1" && ls) >"$work/ls.a"
    (cd "$2" && ls) >"$work/ls.b"
    cmp -s "$work/ls.a" "$work/ls.b" || { diff "$work/ls.a" "$work/ls.b" >&2; fail "$1 and $2 hold different files"; }
    local f n=0
    while IFS= read -r f; do
        [[ $f == timings.jsonl ]] && continue
        cmp "$1/$f" "$2/$f" || { explain_difference "$1/$f" "$2/$f"; fail "$1/$f and $2/$f differ"; }
        n=$((n + 1))
    done <"$work/ls.a"
    [[ $n -ge 4 ]] || fail "only $n files compared"
    "$CHECK" "$1" >"$work/check.a" || fail "$1 is not a valid library"
    "$CHECK" "$2" >"$work/check.b" || fail "$2 is not a valid library"
}

# restores_like_native DIR: every snapshot answers its held-out request as
# the native run does.
restores_like_native() {
    "$CHECK" "$1" >"$work/entries" || fail "$1 is not a valid library"
    grep -q '^ok [1-9]' "$work/entries" || fail "$1 has no snapshot"
    while IFS=$'\t' read -r id file benefit saved warmup held; do
        [[ $id == ok* ]] && continue
        [[ $saved -gt 0 ]] || fail "$file saves no warmable segment"
        printf '%s\n' "$held" | "$PROGRAM" >"$work/native"
        printf '%s\n' "$held" | "$SNAPRUN" "$1/base.snap" "$1/$file" >"$work/out" ||
            fail "restoring $1/$file failed"
        cmp "$work/native" "$work/out" || fail "$1/$file answers '$held' unlike native"
    done <"$work/entries"
}

# fingerprint DIR: a checksum line per file; stable_fingerprint leaves out
# timings.jsonl.
fingerprint() { (cd "$1" && sha256sum -- *); }
stable_fingerprint() { fingerprint "$1" | grep -v ' timings.jsonl$'; }

# combine_refused WHY SHARD...: --combine fails (exit 1) saying WHY, and the
# library it was to replace is unchanged.
combine_refused() {
    local why=$1
    shift
    fingerprint "$work/combined" >"$work/before"
    "$SNAPGEN" --combine "$@" -o "$work/combined" 2>"$work/err" && fail "combine of $* was accepted"
    [[ $? == 1 ]] || fail "combine of $* did not exit 1"
    expect_contains "$work/err" "snapgen: error: "
    expect_contains "$work/err" "$why"
    fingerprint "$work/combined" | cmp -s - "$work/before" || fail "a refused combine changed the library"
}

case "$CASE" in
shards)
    gen "$work/one" --jobs 2 || fail "single build failed"
    gen "$work/one-j1" --jobs 1 || fail "single build with --jobs 1 failed"
    same_library "$work/one" "$work/one-j1"
    for i in 1 2 3; do
        gen "$work/shard-$i" --shard $i/3 || fail "shard $i/3 failed"
        [[ -s "$work/shard-$i/shard.jsonl" && ! -e "$work/shard-$i/manifest.jsonl" ]] ||
            fail "shard $i/3 is not a shard directory"
    done
    "$SNAPGEN" -q --combine "$work/shard-3" "$work/shard-1" "$work/shard-2" -o "$work/combined" ||
        fail "combine failed"
    same_library "$work/one" "$work/combined"
    restores_like_native "$work/combined"
    # Records from the guest kernel's counters: every warm-up read its
    # request, wrote its response and grew the heap (each route builds a
    # table), by less than the guest's memory.
    python3 - "$work/one/manifest.jsonl" <<'PY' || fail "the records of the warm-ups are wrong"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
for l in lines[1:]:
    r = json.loads(l)
    sc = r.get("syscalls")
    assert isinstance(sc, dict) and sc, ("no syscalls recorded", r["file"])
    assert sc.get("read", 0) >= 1, (r["file"], sc)
    assert sc.get("write", 0) + sc.get("writev", 0) >= 1, (r["file"], sc)
    grow = r["brk_growth"] + r["mmap_growth"]
    assert r["brk_growth"] >= 0 and r["mmap_growth"] >= 0 and 0 < grow < 256 << 20, (r["file"], grow)
    assert r["segments_saved"] > 0, r["file"]
PY
    cp -r "$work/one" "$work/bad-records"
    sed -i '2s/"syscalls":{"read":1/"syscalls":{"read":-1/' "$work/bad-records/manifest.jsonl"
    "$CHECK" "$work/bad-records" >/dev/null 2>"$work/err" && fail "a negative syscall count was accepted"
    expect_contains "$work/err" "manifest.jsonl:2: \"syscalls\" count of \"read\" is not a count"
    # timings.jsonl is checked as the manifest is.
    cp -r "$work/one" "$work/bad-timings"
    rm "$work/bad-timings/timings.jsonl"
    "$CHECK" "$work/bad-timings" >/dev/null 2>"$work/err" && fail "a library without its timings.jsonl was accepted"
    expect_contains "$work/err" "timings.jsonl"
    { cat "$work/one/timings.jsonl"; sed -n 2p "$work/one/timings.jsonl"; } >"$work/bad-timings/timings.jsonl"
    "$CHECK" "$work/bad-timings" >/dev/null 2>"$work/err" && fail "a timings.jsonl naming a snapshot twice was accepted"
    expect_contains "$work/err" "is listed twice"
    "$CHECK" "$work/shard-1" >/dev/null 2>"$work/err" && fail "a shard directory was opened as a library"
    # Refusals.
    combine_refused "shard 2/3 is missing" "$work/shard-1" "$work/shard-3"
    combine_refused "are both shard 1/3" "$work/shard-1" "$work/shard-1" "$work/shard-2" "$work/shard-3"
    combine_refused "not a library shard" "$work/one"
    gen "$work/other-2" --shard 2/3 --seed 1 || fail "shard with another seed failed"
    combine_refused "base snapshots differ" "$work/shard-1" "$work/other-2" "$work/shard-3"
    cp -r "$work/shard-1" "$work/cut-1"
    head -c -20 "$work/shard-1/shard.jsonl" >"$work/cut-1/shard.jsonl"
    combine_refused "shard.jsonl" "$work/cut-1" "$work/shard-2" "$work/shard-3"
    cp -r "$work/shard-1" "$work/bad-1"
    sed 's/"rank":0,/"rank":1,/' "$work/shard-1/shard.jsonl" >"$work/bad-1/shard.jsonl"
    combine_refused "does not belong to shard 1/3" "$work/bad-1" "$work/shard-2" "$work/shard-3"
    rm -rf "$work/bad-1" && cp -r "$work/shard-1" "$work/bad-1"
    snap=$(ls "$work/bad-1"/route-*.snap | head -1)
    head -c 100000 "$snap" >"$work/cut.snap" && mv "$work/cut.snap" "$snap"
    combine_refused "$snap" "$work/bad-1" "$work/shard-2" "$work/shard-3"
    "$SNAPGEN" --map "$work/map.pmap" --requests "$REQUESTS" --shard 1/2 -o "$work/x" "$PROGRAM" 2>"$work/err"
    [[ $? == 2 ]] || fail "--shard without --deterministic was not a usage error"
    expect_contains "$work/err" "--shard needs --deterministic"
    gen "$work/x" --shard 3/2 2>"$work/err"
    [[ $? == 2 ]] || fail "--shard 3/2 was not a usage error"
    [[ ! -e "$work/x" ]] || fail "a refused build wrote its directory"
    echo "ok: 3 shards combined equal a single build (and --jobs 1 equals --jobs 2); bad shards refused" ;;
concurrent)
    gen "$work/lib" 2>"$work/a.err" &
    a=$!
    gen "$work/lib" 2>"$work/b.err" &
    b=$!
    wait $a
    ra=$?
    wait $b
    rb=$?
    [[ $((ra + rb)) == 1 ]] || { cat "$work/a.err" "$work/b.err" >&2; fail "two concurrent builds ended $ra and $rb (expected one refused)"; }
    if [[ $ra == 1 ]]; then loser=$work/a.err; else loser=$work/b.err; fi
    expect_contains "$loser" "another snapgen is writing this library"
    restores_like_native "$work/lib"
    stable_fingerprint "$work/lib" >"$work/before"
    gen "$work/shard-1" --shard 1/1 || fail "shard 1/1 failed"
    gen "$work/lib" --jobs 2 2>"$work/c.err" &
    c=$!
    sleep 1
    "$SNAPGEN" -q --combine "$work/shard-1" -o "$work/lib" 2>"$work/d.err" && fail "a combine while a build runs was accepted"
    expect_contains "$work/d.err" "another snapgen is writing this library"
    wait $c || { cat "$work/c.err" >&2; fail "the build the combine raced failed"; }
    stable_fingerprint "$work/lib" | cmp -s - "$work/before" || fail "a deterministic rebuild changed the library"
    echo "ok: of two concurrent writers one is refused clearly; the library is valid" ;;
killed)
    gen "$work/lib" --jobs 2 || fail "first build failed"
    fingerprint "$work/lib" >"$work/before"
    kills=0
    for delay in 0.2 1 2.5 4 6 9; do
        # Another build (another seed: other bytes), killed after $delay s.
        "$SNAPGEN" -q --deterministic --seed 5 --jobs 2 --map "$work/map.pmap" \
            --requests "$REQUESTS" -o "$work/lib" "$PROGRAM" 2>"$work/killed.err" &
        pid=$!
        sleep $delay
        if ! kill -0 $pid 2>/dev/null; then
            wait $pid || { cat "$work/killed.err" >&2; fail "a build to kill failed"; }
            fingerprint "$work/lib" >"$work/before" # it finished: its library is the one now
            continue
        fi
        kill -9 $pid
        wait $pid 2>/dev/null
        kills=$((kills + 1))
        fingerprint "$work/lib" | cmp -s - "$work/before" || fail "a build killed after $delay s changed the library"
        "$CHECK" "$work/lib" >/dev/null || fail "the library is not readable after a build killed after $delay s"
    done
    [[ $kills -ge 3 ]] || fail "only $kills builds were killed before they ended"
    restores_like_native "$work/lib"
    # A combine killed early.
    for i in 1 2; do gen "$work/shard-$i" --shard $i/2 --seed 9 || fail "shard $i/2 failed"; done
    for delay in 0.01 0.05 0.1; do
        "$SNAPGEN" -q --combine "$work/shard-1" "$work/shard-2" -o "$work/lib" &
        pid=$!
        sleep $delay
        kill -9 $pid 2>/dev/null
        wait $pid 2>/dev/null
        "$CHECK" "$work/lib" >/dev/null || fail "the library is not readable after a combine killed after $delay s"
        fingerprint "$work/lib" >"$work/now"
        cmp -s "$work/now" "$work/before" || {
            # The combine finished: the library is the combined one, whole.
            "$SNAPGEN" -q --combine "$work/shard-1" "$work/shard-2" -o "$work/ref" || fail "combine failed"
            same_library "$work/lib" "$work/ref"
            cp "$work/now" "$work/before"
        }
    done
    restores_like_native "$work/lib"
    ls -d "$work"/lib.tmp-* >/dev/null 2>&1 || fail "no killed build left a temporary directory (was any killed mid-way?)"
    gen "$work/lib" || fail "a build after the kills failed"
    ! ls -d "$work"/lib.tmp-* >/dev/null 2>&1 || fail "the next build left the killed builds' temporary directories"
    echo "ok: $kills killed builds and killed combines left the library whole" ;;
history)
    gen "$work/traced" || fail "traced build failed"
    "$SNAPRUN" --trace "$work/history.jsonl" --map "$work/map.pmap" "$work/traced/base.snap" \
        <"$REQUESTS" >/dev/null 2>"$work/run.err"
    [[ -s "$work/history.jsonl" ]] || { cat "$work/run.err" >&2; fail "snaprun --trace wrote no history"; }
    (exec "$SNAPGEN" -q --deterministic --map "$work/map.pmap" --history "$work/history.jsonl" \
        -o "$work/from-history" "$PROGRAM") || fail "build from the history failed"
    same_library "$work/traced" "$work/from-history"
    restores_like_native "$work/from-history"
    # Histories that do not fit the map, or lie about their bytes.
    head -1 "$work/history.jsonl" >"$work/foreign.jsonl"
    printf '%s\n' '{"type":"request","seq":0,"hash":"8bbd5d17c86bfdd4","len":10,"bytes":"isprime 97","truncated":false,"segments":["0123456789abcdef"],"latency_us":1,"snapshot":"","failed":false}' >>"$work/foreign.jsonl"
    "$SNAPGEN" --map "$work/map.pmap" --history "$work/foreign.jsonl" -o "$work/x" "$PROGRAM" 2>"$work/err"
    [[ $? == 1 ]] || fail "a history naming a segment the map lacks was accepted"
    expect_contains "$work/err" "which the map does not have"
    awk '!done && /"type":"request"/ { sub(/"hash":"[0-9a-f]*"/, "\"hash\":\"0000000000000000\""); done = 1 } 1' \
        "$work/history.jsonl" >"$work/lying.jsonl"
    cmp -s "$work/history.jsonl" "$work/lying.jsonl" && fail "the lying history is not changed"
    "$SNAPGEN" --map "$work/map.pmap" --history "$work/lying.jsonl" -o "$work/x" "$PROGRAM" 2>"$work/err"
    [[ $? == 1 ]] || fail "a history with a wrong request hash was accepted"
    expect_contains "$work/err" "lying.jsonl:"
    [[ ! -e "$work/x" ]] || fail "a refused history build wrote its directory"
    "$SNAPGEN" --map "$work/map.pmap" --history "$work/history.jsonl" --requests "$REQUESTS" \
        -o "$work/x" "$PROGRAM" 2>/dev/null
    [[ $? == 2 ]] || fail "--history with --requests was not a usage error"
    echo "ok: a library from a history equals one from tracing; bad histories refused" ;;
*)
    fail "unknown case $CASE" ;;
esac
