#!/usr/bin/env bash
# Snapshot round trips and restores against the native oracle.
#   snapshot.sh SNAPRUN SNAPGEN CASE PROGRAM REQUESTS [ROOTFS|-]
source "$(dirname "$0")/lib.sh"
SNAPRUN=$1 SNAPGEN=$2 CASE=$3 PROGRAM=$4 REQUESTS=$5 ROOTFS=${6:--}
require_kvm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rootfs_args=()
native() {
    if [[ "$ROOTFS" != "-" ]]; then (cd "$ROOTFS" && "$PROGRAM" "$@"); else "$PROGRAM" "$@"; fi
}
[[ "$ROOTFS" != "-" ]] && rootfs_args=(--rootfs "$ROOTFS")

same() { # same FILE_A FILE_B WHAT
    [[ -s "$1" ]] || fail "$3: $1 is empty: the test would prove nothing"
    cmp "$1" "$2" || { diff "$1" "$2" | head -20 >&2; fail "$3"; }
}

case "$CASE" in
roundtrip)
    # The oracle for a snapshot is a concatenation: what the program printed
    # while the snapshot was made (snapgen --responses) followed by what the
    # restore prints must equal the native run of the same requests.
    native <"$REQUESTS" >"$work/native"
    "$SNAPRUN" "${rootfs_args[@]}" --cold "$PROGRAM" <"$REQUESTS" >"$work/cold" || fail "cold run failed"
    same "$work/native" "$work/cold" "cold run differs from native"
    "$SNAPGEN" -q --base "${rootfs_args[@]}" --responses "$work/r0" -o "$work/base.snap" "$PROGRAM" ||
        fail "snapgen --base failed"
    "$SNAPRUN" "$work/base.snap" <"$REQUESTS" >"$work/base.out" || fail "restore of the base failed"
    cat "$work/r0" "$work/base.out" >"$work/base.all"
    same "$work/native" "$work/base.all" "restore from the base differs from native"
    # A diff after the first request, then all requests again from base+diff.
    grep -m1 . "$REQUESTS" >"$work/warm.txt"
    "$SNAPGEN" -q --after "$work/warm.txt" --from "$work/base.snap" --responses "$work/r1" \
        -o "$work/diff.snap" || fail "snapgen --after failed"
    cat "$work/warm.txt" "$REQUESTS" | native >"$work/native2"
    for opts in "" "--prefetch --verify-data"; do
        "$SNAPRUN" $opts "$work/base.snap" "$work/diff.snap" <"$REQUESTS" >"$work/diff.out" ||
            fail "restore of base+diff ($opts) failed"
        cat "$work/r0" "$work/r1" "$work/diff.out" >"$work/diff.all"
        same "$work/native2" "$work/diff.all" "restore from base+diff ($opts) differs from native"
    done
    echo "ok: cold, base, base+diff and prefetched restores all equal the native run" ;;
compressed)
    native <"$REQUESTS" >"$work/native"
    "$SNAPGEN" -q --base --compress "${rootfs_args[@]}" --responses "$work/r0" -o "$work/base.snap" "$PROGRAM" ||
        fail "snapgen failed"
    grep -m1 . "$REQUESTS" >"$work/warm.txt"
    "$SNAPGEN" -q --compress --after "$work/warm.txt" --from "$work/base.snap" --responses "$work/r1" \
        -o "$work/diff.snap" || fail "snapgen --after failed"
    "$SNAPRUN" "$work/base.snap" "$work/diff.snap" <"$REQUESTS" >"$work/out" || fail "restore failed"
    cat "$work/warm.txt" "$REQUESTS" | native >"$work/native2"
    cat "$work/r0" "$work/r1" "$work/out" >"$work/all"
    same "$work/native2" "$work/all" "restore of zstd snapshots differs from native"
    echo "ok: zstd-compressed base and diff restore to the native responses" ;;
parallel)
    native <"$REQUESTS" >"$work/native"
    "$SNAPGEN" -q --base "${rootfs_args[@]}" --responses "$work/r0" -o "$work/base.snap" "$PROGRAM" ||
        fail "snapgen failed"
    for i in 1 2 3; do "$SNAPRUN" "$work/base.snap" <"$REQUESTS" >"$work/out$i" & done
    wait
    for i in 1 2 3; do
        cat "$work/r0" "$work/out$i" >"$work/all$i"
        same "$work/native" "$work/all$i" "parallel restore $i differs from native"
    done
    echo "ok: three restores of one snapshot in parallel processes all equal native" ;;
deterministic)
    grep -m2 . "$REQUESTS" >"$work/warm.txt"
    for i in 1 2; do
        "$SNAPGEN" -q --base --deterministic --seed 7 "${rootfs_args[@]}" -o "$work/base$i.snap" "$PROGRAM" || fail "snapgen failed"
        "$SNAPGEN" -q --deterministic --seed 7 --after "$work/warm.txt" --from "$work/base$i.snap" -o "$work/diff$i.snap" || fail "snapgen --after failed"
    done
    cmp "$work/base1.snap" "$work/base2.snap" || fail "two deterministic base snapshots differ"
    cmp "$work/diff1.snap" "$work/diff2.snap" || fail "two deterministic diff snapshots differ"
    "$SNAPGEN" -q --base --deterministic --seed 8 "${rootfs_args[@]}" -o "$work/other.snap" "$PROGRAM"
    ! cmp -s "$work/base1.snap" "$work/other.snap" || fail "a different seed gave the same snapshot"
    echo "ok: deterministic base and diff snapshots are byte-identical; another seed differs" ;;
fresh-random)
    "$SNAPGEN" -q --base -o "$work/base.snap" "$PROGRAM" || fail "snapgen failed"
    echo randhex | "$SNAPRUN" "$work/base.snap" >"$work/r1"
    echo randhex | "$SNAPRUN" "$work/base.snap" >"$work/r2"
    grep -q '^randhex [0-9a-f]\{32\}$' "$work/r1" || fail "no random bytes printed"
    ! cmp -s "$work/r1" "$work/r2" || fail "two restores of one snapshot produced the same random bytes"
    printf 'generation\n' >"$work/g.txt"
    # (output to files: `snaprun | grep -q` would race grep's early exit)
    "$SNAPRUN" --cold "$PROGRAM" <"$work/g.txt" >"$work/g0"
    grep -qx 'generation 0' "$work/g0" || fail "a cold boot is not generation 0"
    "$SNAPRUN" "$work/base.snap" <"$work/g.txt" >"$work/g1"
    grep -qx 'generation 1' "$work/g1" || fail "a restore is not generation 1"
    "$SNAPGEN" -q --after "$work/g.txt" --from "$work/base.snap" -o "$work/d.snap" || fail "snapgen --after failed"
    "$SNAPRUN" "$work/base.snap" "$work/d.snap" <"$work/g.txt" >"$work/g2"
    grep -qx 'generation 2' "$work/g2" || fail "a restore of a diff made on a restore is not generation 2"
    echo "ok: two restores of one snapshot get different random bytes; generations count restores" ;;
bad-chain)
    "$SNAPGEN" -q --base --deterministic --seed 1 -o "$work/a.snap" "$PROGRAM" || fail "snapgen failed"
    "$SNAPGEN" -q --base --deterministic --seed 2 -o "$work/b.snap" "$PROGRAM" || fail "snapgen failed"
    grep -m1 . "$REQUESTS" >"$work/warm.txt"
    "$SNAPGEN" -q --after "$work/warm.txt" --from "$work/a.snap" -o "$work/d.snap" || fail "snapgen --after failed"
    "$SNAPRUN" "$work/b.snap" "$work/d.snap" </dev/null 2>"$work/err"
    [[ $? == 125 ]] || fail "a diff over the wrong parent was accepted"
    expect_contains "$work/err" "snaprun: error: $work/d.snap: "
    expect_contains "$work/err" "parent"
    "$SNAPRUN" "$work/d.snap" </dev/null 2>"$work/err"
    [[ $? == 125 ]] || fail "a diff given first was accepted"
    expect_contains "$work/err" "is a diff snapshot (expected a full one first)"
    head -c 1000 "$work/a.snap" >"$work/trunc.snap"
    "$SNAPRUN" "$work/trunc.snap" </dev/null 2>"$work/err"
    [[ $? == 125 ]] || fail "a truncated snapshot was accepted"
    expect_contains "$work/err" "snaprun: error: $work/trunc.snap: "
    [[ ! -e "$work/none.snap" ]]
    printf 'exit 7\n' >"$work/exit.txt"
    "$SNAPGEN" -q --base --warmup "$work/exit.txt" -o "$work/none.snap" "$PROGRAM" 2>"$work/err"
    [[ $? == 1 ]] || fail "snapgen succeeded although the program exited"
    expect_contains "$work/err" "the program exited with status 7 before its next wait point"
    [[ ! -e "$work/none.snap" ]] || fail "snapgen left a snapshot file behind"
    echo "ok: wrong parent, wrong order, truncated file and a program that exits are refused" ;;
replay-working-set)
    # A diff records the pages a request replayed on it touches, not the
    # warm-up's (which built the route's tables).
    SNAPINFO=$(dirname "$SNAPGEN")/../snapinfo/snapinfo
    "$SNAPGEN" -q --base -o "$work/base.snap" "$PROGRAM" || fail "snapgen failed"
    grep -m1 . "$REQUESTS" >"$work/warm.txt"
    "$SNAPGEN" -q --after "$work/warm.txt" --from "$work/base.snap" -o "$work/d.snap" || fail "snapgen --after failed"
    "$SNAPINFO" "$work/d.snap" >"$work/info" || fail "snapinfo failed"
    stored=$(grep -o '[0-9]* pages stored' "$work/info" | cut -d' ' -f1)
    ws=$(grep -o 'working set: *[0-9]* pages' "$work/info" | grep -o '[0-9]*')
    grep -q '"pages_touched":[0-9]' "$work/info" || fail "the diff's metadata does not record pages_touched"
    [[ -n "$stored" && -n "$ws" ]] || { cat "$work/info" >&2; fail "snapinfo did not show pages stored and working set"; }
    ((ws > 0 && ws * 10 < stored)) || fail "working set $ws pages is not the replayed request's (the diff stores $stored)"
    grep -q "\"pages_touched\":$ws[,}]" "$work/info" ||
        fail "the metadata's pages_touched is not the recorded working set of $ws pages"
    "$SNAPRUN" --prefetch "$work/base.snap" "$work/d.snap" <"$REQUESTS" >/dev/null || fail "restore with --prefetch failed"
    echo "ok: the diff stores $stored pages and records a working set of $ws" ;;
special-output)
    # -o naming a FIFO (or /dev/null) is written in place: renaming a
    # temporary over it would replace the node with a regular file.
    mkfifo "$work/fifo"
    cat "$work/fifo" >"$work/got" &
    "$SNAPGEN" -q --base -o "$work/fifo" "$PROGRAM" || fail "snapgen to a FIFO failed"
    wait
    [[ -p "$work/fifo" ]] || fail "the FIFO was replaced by a regular file"
    # the magic, 89 50 53 4e 50 0d 0a 1a ("\x89PSNP\r\n\x1a", docs/formats/snapshot.md)
    [[ $(head -c 8 "$work/got" | od -An -tx1 | tr -d ' \n') == 8950534e500d0a1a ]] ||
        fail "what arrived through the FIFO does not start with the snapshot magic"
    "$SNAPRUN" "$work/got" </dev/null >/dev/null || fail "the snapshot written through a FIFO does not restore"
    echo "ok: a FIFO output is written in place and stays a FIFO" ;;
*)
    fail "unknown case $CASE" ;;
esac
