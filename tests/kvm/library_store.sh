#!/usr/bin/env bash
# The library's page store (docs/formats/library.md, "Page store") on a real
# example.
#   library_store.sh SNAPRUN SNAPGEN PEA SNAPINFO SNAPMERGE CASE PROGRAM REQUESTS BITCODE...
# Cases:
#   dedup       the library's diffs are thin files whose pages are in
#               pages.store; the store holds fewer page bytes than the
#               snapshots' standalone page bytes (pages shared by several
#               snapshots are stored once); the manifest's sizes are the
#               files'; every thin file validates in full and, restored,
#               answers its held-out request like native; snapmerge -o
#               writes one out self-contained, which restores alone
#   hostile     a library whose store is missing, truncated, extended, of
#               another library, or moved away from its snapshots is
#               refused by snaprun and snapinfo with an error naming the
#               page store, never a crash
#   truncated   the store truncated in place while a guest runs from it:
#               snaprun stops with exit status 125 and says so (as for a
#               truncated snapshot file)
source "$(dirname "$0")/lib.sh"
SNAPRUN=$1 SNAPGEN=$2 PEA=$3 SNAPINFO=$4 SNAPMERGE=$5 CASE=$6 PROGRAM=$7 REQUESTS=$8
shift 8
require_kvm
command -v python3 >/dev/null || fail "python3 is needed to read the manifest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
make_map "$@"
# gen OUT [OPTIONS...]: a deterministic library of the example.
gen() {
    local out=$1
    shift
    "$SNAPGEN" --deterministic --map "$work/map.pmap" --requests "$REQUESTS" "$@" -o "$out" \
        "$PROGRAM" 2>"$work/gen.err" || { cat "$work/gen.err" >&2; fail "snapgen failed"; }
}

# manifest LIB FIELD...: one tab-separated line per snapshot.
manifest() {
    local lib=$1
    shift
    python3 - "$lib/manifest.jsonl" "$@" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
for l in lines[1:]:
    r = json.loads(l)
    if r.get("type") == "snapshot":
        print("\t".join(str(r[f]) for f in sys.argv[2:]))
PY
}

# refused WHAT TEXT CMD...: CMD fails with a one-line error holding TEXT.
refused() {
    local what=$1 text=$2
    shift 2
    "$@" </dev/null >"$work/out" 2>"$work/err"
    local rc=$?
    [[ $rc -ne 0 ]] || fail "$what: accepted"
    ((rc < 128)) || { cat "$work/err" >&2; fail "$what: killed by a signal (exit $rc)"; }
    expect_contains "$work/err" "error:"
    expect_contains "$work/err" "$text"
}

case "$CASE" in
dedup)
    gen "$work/lib" --json
    lib=$work/lib
    [[ -s $lib/pages.store ]] || fail "no page store written"
    manifest "$lib" file >"$work/files"
    [[ -s "$work/files" ]] || fail "no snapshot in the library"
    # Sizes: the manifest's against the files, the store against the
    # standalone page bytes, the library against the standalone files.
    python3 - "$lib" "$work/gen.err" <<'PY' || fail "sizes do not add up"
import json, os, sys
lib = sys.argv[1]
lines = open(os.path.join(lib, "manifest.jsonl")).read().splitlines()
head = json.loads(lines[0])
snaps = [json.loads(l) for l in lines[1:]]
size = lambda f: os.path.getsize(os.path.join(lib, f))
assert head["store"] == "pages.store", head
assert head["store_bytes"] == size("pages.store"), head
assert head["store_bytes"] == 4096 * (1 + head["store_pages"]), head
total = size("base.snap") + size("pages.store") + sum(size(s["file"]) for s in snaps)
assert head["library_bytes"] == total, (head["library_bytes"], total)
assert head["standalone_bytes"] == head["base_bytes"] + sum(s["bytes"] for s in snaps), head
for s in snaps:
    assert s["file_bytes"] == size(s["file"]), s["file"]
    assert s["file_bytes"] < s["bytes"], s["file"]
assert sum(s["store_added_bytes"] for s in snaps) == head["store_bytes"] - 4096
page_bytes = sum(s["pages"] for s in snaps) * 4096
store_page_bytes = head["store_bytes"] - 4096
print(f"{len(snaps)} snapshots: {sum(s['pages'] for s in snaps)} pages, "
      f"{page_bytes} page bytes standalone, {store_page_bytes} in the store "
      f"({100 * (1 - store_page_bytes / page_bytes):.1f}% shared); library "
      f"{head['library_bytes']} bytes, standalone {head['standalone_bytes']}", file=sys.stderr)
if len(snaps) > 1:
    assert store_page_bytes < page_bytes, "no page is shared between the snapshots"
summary = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
assert summary["bytes"] == head["library_bytes"], summary
assert summary["standalone_bytes"] == head["standalone_bytes"], summary
assert summary["store_bytes"] == head["store_bytes"], summary
PY
    manifest "$lib" file held_out >"$work/snaps"
    while IFS=$'\t' read -r file held; do
        "$SNAPINFO" --json "$lib/$file" >"$work/info" 2>"$work/err" ||
            { cat "$work/err" >&2; fail "$file does not validate"; }
        python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["page_store"]["name"]=="pages.store" and j["memory"]["stored_bytes"]==0 and j["memory"]["store_pages"]==j["memory"]["pages_stored"]>0, j["memory"]' "$work/info" ||
            fail "$file is not a thin file of the store"
        printf '%s\n' "$held" | "$PROGRAM" >"$work/native"
        printf '%s\n' "$held" | "$SNAPRUN" "$lib/base.snap" "$lib/$file" >"$work/out" 2>"$work/err" ||
            { cat "$work/err" >&2; fail "restoring $file failed"; }
        cmp "$work/native" "$work/out" || fail "$file answers '$held' unlike the native run"
    done <"$work/snaps"
    # One snapshot written out of the library: self-contained, and the same
    # guest.
    IFS=$'\t' read -r file held <"$work/snaps"
    mkdir "$work/away"
    "$SNAPMERGE" -q --lib "$lib" "${file%.snap}" -o "$work/away/one.snap" 2>"$work/err" ||
        { cat "$work/err" >&2; fail "snapmerge -o of one snapshot failed"; }
    cp "$lib/base.snap" "$work/away/"
    "$SNAPINFO" --json "$work/away/one.snap" >"$work/info" || fail "the written-out snapshot does not validate"
    ! grep -q '"page_store"' "$work/info" || fail "the written-out snapshot still names a page store"
    printf '%s\n' "$held" | "$PROGRAM" >"$work/native"
    printf '%s\n' "$held" | "$SNAPRUN" "$work/away/base.snap" "$work/away/one.snap" >"$work/out" ||
        fail "the written-out snapshot does not restore"
    cmp "$work/native" "$work/out" || fail "the written-out snapshot answers unlike native"
    echo "ok: $(wc -l <"$work/snaps") thin snapshots over one page store, restored like native" ;;
hostile)
    gen "$work/lib"
    lib=$work/lib
    file=$(manifest "$lib" file | head -1)
    held=$(manifest "$lib" held_out | head -1)
    # Another library of the same program (another seed): another store.
    gen "$work/other" --seed 7
    cmp -s "$lib/pages.store" "$work/other/pages.store" && fail "two seeds gave one store"
    variant() { rm -rf "$work/v" && cp -r "$lib" "$work/v"; }
    for tool in snaprun snapinfo; do
        check() { # check WHAT TEXT
            if [[ $tool == snaprun ]]; then
                refused "$1" "$2" "$SNAPRUN" "$work/v/base.snap" "$work/v/$file"
            else
                refused "$1" "$2" "$SNAPINFO" "$work/v/$file"
            fi
        }
        variant && rm "$work/v/pages.store"
        check "a missing store" "cannot open page store $work/v/pages.store (named by PAGE_STORE)"
        variant && truncate -s -4096 "$work/v/pages.store"
        check "a truncated store" "page store $work/v/pages.store size mismatch (expected"
        variant && truncate -s 0 "$work/v/pages.store"
        check "an emptied store" "size mismatch (expected"
        variant && truncate -s +4096 "$work/v/pages.store"
        check "an extended store" "size mismatch (expected"
        variant && cp "$work/other/pages.store" "$work/v/pages.store"
        # Another library's store: by its size, or, if the sizes agree, by
        # its identity.
        check "another library's store" "page store $work/v/pages.store"
        if [[ $(stat -c %s "$work/other/pages.store") == $(stat -c %s "$lib/pages.store") ]]; then
            expect_contains "$work/err" "identity mismatch"
        fi
        # Another library's store, cut or padded to this one's size (its
        # header then says so).
        variant && cp "$work/other/pages.store" "$work/v/pages.store" &&
            truncate -s "$(stat -c %s "$lib/pages.store")" "$work/v/pages.store"
        check "another library's store, resized" "page store $work/v/pages.store"
        # The snapshot moved away from its store.
        variant && mkdir "$work/v/sub" && mv "$work/v/$file" "$work/v/sub/"
        if [[ $tool == snaprun ]]; then
            refused "a snapshot without its store" "cannot open page store $work/v/sub/pages.store" \
                "$SNAPRUN" "$work/v/base.snap" "$work/v/sub/$file"
        else
            refused "a snapshot without its store" "cannot open page store" "$SNAPINFO" "$work/v/sub/$file"
        fi
    done
    # A store page changed in place (header intact): the run checksums, on
    # by default, refuse it; --no-verify-data is documented to trust it.
    variant
    python3 - "$work/v/pages.store" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(4096 + 17)
    b = f.read(1)
    f.seek(4096 + 17)
    f.write(bytes([b[0] ^ 0xff]))
PY
    refused "a changed store page" "checksum mismatch in page store" \
        "$SNAPRUN" "$work/v/base.snap" "$work/v/$file"
    # Untouched, the library still restores.
    printf '%s\n' "$held" | "$PROGRAM" >"$work/native"
    printf '%s\n' "$held" | "$SNAPRUN" "$lib/base.snap" "$lib/$file" >"$work/out" || fail "the intact library does not restore"
    cmp "$work/native" "$work/out" || fail "the intact library answers unlike native"
    echo "ok: missing, cut, extended, foreign and moved stores refused" ;;
truncated)
    gen "$work/lib"
    lib=$work/lib
    file=$(manifest "$lib" file | head -1)
    held=$(manifest "$lib" held_out | head -1)
    mkfifo "$work/in"
    "$SNAPRUN" --no-verify-data "$lib/base.snap" "$lib/$file" <"$work/in" >"$work/out" 2>"$work/err" &
    pid=$!
    exec 3>"$work/in"
    printf '%s\n' "$held" >&3
    for _ in $(seq 100); do [[ -s "$work/out" ]] && break; sleep 0.1; done
    [[ -s "$work/out" ]] || fail "the restored guest did not answer"
    # The guest's pages are mapped from the store (private, writable:
    # copy-on-write), not copied; the reader's own mapping is read-only.
    grep -E " rw-p .*$lib/pages.store\$" "/proc/$pid/maps" >"$work/maps" ||
        fail "no copy-on-write mapping of pages.store in snaprun"
    echo "$(wc -l <"$work/maps") copy-on-write mappings of pages.store" >&2
    truncate -s 0 "$lib/pages.store"
    printf '%s\n' "$held" >&3
    exec 3>&-
    wait $pid
    rc=$?
    cat "$work/err" >&2
    [[ $rc == 125 ]] || fail "exit status $rc after the page store was truncated, expected 125"
    expect_contains "$work/err" "snaprun: error:"
    expect_contains "$work/err" "truncated"
    echo "ok: a store truncated under a running guest stops it with exit status 125" ;;
*)
    fail "unknown case $CASE" ;;
esac
