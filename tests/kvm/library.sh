#!/usr/bin/env bash
# snapgen library mode on a real example against the native oracle.
#   library.sh SNAPRUN SNAPGEN PEA CASE PROGRAM REQUESTS BITCODE...
# Cases:
#   build        every route with a successful sample request gets a snapshot
#                made after a request that succeeded natively; restored, it
#                answers its route's held-out request byte-identically to
#                native; its recorded benefit is positive
#   interrupted  a build killed with SIGKILL leaves the previous library
#                intact; a build running while another holds the library
#                fails clearly
source "$(dirname "$0")/lib.sh"
SNAPRUN=$1 SNAPGEN=$2 PEA=$3 CASE=$4 PROGRAM=$5 REQUESTS=$6
shift 6
require_kvm
command -v python3 >/dev/null || fail "python3 is needed to read the manifest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
make_map "$@"
# exec: in the background, $! is then snapgen itself (kill -9 must reach it).
build() { (exec "$SNAPGEN" "$@" --map "$work/map.pmap" --requests "$REQUESTS" -o "$work/lib" "$PROGRAM"); }

# manifest FIELD...: one tab-separated line per snapshot.
manifest() {
    python3 - "$work/lib/manifest.jsonl" "$@" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
head = json.loads(lines[0])
assert head["format"] == "presnap-library" and head["version"] == 1, head
for l in lines[1:]:
    r = json.loads(l)
    if r.get("type") == "snapshot":
        print("\t".join(str(r[f]) for f in sys.argv[2:]))
PY
}

case "$CASE" in
build)
    # Two Sessions at a time (--jobs 2): the parallel path is the one tested.
    build --jobs 2 2>"$work/gen.err" || { cat "$work/gen.err" >&2; fail "snapgen library mode failed"; }
    cat "$work/gen.err" >&2
    [[ -s "$work/lib/base.snap" && -s "$work/lib/manifest.jsonl" ]] || fail "no library written"
    manifest file warmup held_out benefit_us >"$work/snaps"
    [[ -s "$work/snaps" ]] || fail "no snapshot in the library"
    while IFS=$'\t' read -r file warmup held benefit; do
        python3 -c "import sys; sys.exit(0 if float('$benefit') > 0 else 1)" ||
            fail "$file: benefit $benefit is not positive"
        printf '%s\n' "$warmup" | "$PROGRAM" >"$work/warm.native"
        ! grep -q '^error' "$work/warm.native" || fail "$file was made after a failing request: $warmup"
        printf '%s\n' "$held" | "$PROGRAM" >"$work/native"
        printf '%s\n' "$held" | "$SNAPRUN" "$work/lib/base.snap" "$work/lib/$file" >"$work/out" ||
            fail "restoring $file failed"
        cmp "$work/native" "$work/out" || fail "$file answers '$held' unlike the native run"
    done <"$work/snaps"
    # Every route (first word) with a request that succeeded natively has a
    # snapshot made after a request of that route.
    cut -f2 "$work/snaps" | awk '{print $1}' | sort -u >"$work/warmed"
    while IFS= read -r req; do
        [[ -z "$req" ]] && continue
        printf '%s\n' "$req" | "$PROGRAM" | grep -q '^error' && continue
        route=${req%% *}
        grep -qx -- "$route" "$work/warmed" || fail "route '$route' has no snapshot"
    done <"$REQUESTS"
    echo "ok: $(wc -l <"$work/snaps") snapshots, each answering like native with a positive benefit" ;;
interrupted)
    build 2>/dev/null || fail "first build failed"
    cp "$work/lib/manifest.jsonl" "$work/manifest.before"
    # A second build, killed mid-way: the library must be the first one.
    (exec "$SNAPGEN" --map "$work/map.pmap" --requests "$REQUESTS" -o "$work/lib" "$PROGRAM") 2>/dev/null &
    pid=$!
    sleep 3
    kill -0 $pid 2>/dev/null || fail "the build to interrupt ended before it was killed"
    kill -9 $pid
    wait $pid 2>/dev/null
    killed=$pid
    cmp "$work/manifest.before" "$work/lib/manifest.jsonl" || fail "a killed build changed the library"
    file=$(manifest file | head -1)
    held=$(manifest held_out | head -1)
    printf '%s\n' "$held" | "$PROGRAM" >"$work/native"
    printf '%s\n' "$held" | "$SNAPRUN" "$work/lib/base.snap" "$work/lib/$file" >"$work/out" ||
        fail "the library does not restore after a killed build"
    cmp "$work/native" "$work/out" || fail "the library answers unlike native after a killed build"
    # Two builds at once: the second is refused while the first holds the lock.
    (exec "$SNAPGEN" --map "$work/map.pmap" --requests "$REQUESTS" -o "$work/lib" "$PROGRAM") 2>"$work/first.err" &
    pid=$!
    sleep 1
    build 2>"$work/second.err" && fail "a second concurrent build was not refused"
    expect_contains "$work/second.err" "another snapgen is writing this library"
    wait $pid || { cat "$work/first.err" >&2; fail "the first of two concurrent builds failed"; }
    ! ls -d "$work"/lib.tmp-* 2>/dev/null | grep -v "lib.tmp-$killed\$" | grep -q . ||
        fail "a finished build left its temporary directory"
    echo "ok: a killed build left the library intact; a concurrent build was refused" ;;
*)
    fail "unknown case $CASE" ;;
esac
