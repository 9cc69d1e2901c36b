#!/usr/bin/env bash
# examples/library-build/Makefile: `make -j2 SHARDS=2 check` builds the
# example's library in two shards, combines them, builds it again in one go
# and compares every file (timings.jsonl aside).
#   library_make.sh SOURCE_DIR BUILD_DIR EXAMPLE
source "$(dirname "$0")/lib.sh"
SRC=$1 BUILD=$2 EXAMPLE=$3
require_kvm
command -v make >/dev/null || fail "make is needed"
command -v clang-14 >/dev/null || { echo "SKIP: clang-14 is missing" >&2; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
make -j2 -C "$SRC/examples/library-build" BUILD="$BUILD" EXAMPLE="$EXAMPLE" SHARDS=2 \
    OUT="$work/out" check >"$work/make.out" 2>&1 || { cat "$work/make.out" >&2; fail "make check failed"; }
expect_contains "$work/make.out" "equals $work/out/single byte for byte"
[[ -d "$work/out/shard-1" && -d "$work/out/shard-2" && -s "$work/out/lib/manifest.jsonl" ]] ||
    fail "the Makefile did not build two shards and a library"
grep -q '"type":"snapshot"' "$work/out/lib/manifest.jsonl" || fail "the library has no snapshot"
echo "ok: make -j2 SHARDS=2 built $EXAMPLE's library in shards, equal to a single build"
