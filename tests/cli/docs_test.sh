#!/usr/bin/env bash
# Proves that the commands the documentation shows work when pasted: every
# ```sh block of README.md, docs/*.md, docs/formats/*.md and
# examples/README.md, and every `$ ` line of each man page's EXAMPLES
# section, run against the build.
#
# Which blocks are commands: a Markdown fence tagged `sh` is run from the
# top of a scratch copy of the source tree (`build/` is the build, the
# example programs are built there); a block shown but not run is tagged
# `shell` (commands that take minutes, install or download) or `text`
# (output). A man page's EXAMPLES run in a directory holding the numtheory
# example as ./numtheory, numtheory.c and requests.txt, as its EXAMPLES
# section says. Each block or page runs in its own directory under
# `bash -e -o pipefail`; a block that needs /dev/kvm (it names snaprun or
# snapgen) is skipped without it, one that needs clang-14 without that.
#
# Usage: docs_test.sh SOURCE_DIR BUILD_DIR [FILE...]  (default: all docs)
set -u
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
shift 2
failures=0
ran=0
skipped=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

export PATH="$build/tools/snapmerge:$build/tools/snaprun:$build/tools/snapgen:$build/tools/snapinfo:$build/tools/pea-analyze:$build/tools/snapselect:$PATH"
have_kvm=0
[ -r /dev/kvm ] && [ -w /dev/kvm ] && have_kvm=1
have_clang=0
command -v clang-14 >/dev/null && [ -x "$build/tools/pea-analyze/pea-analyze" ] && have_clang=1
numtheory=$build/examples/numtheory/numtheory
[ -x "$numtheory" ] || { echo "FAIL: $numtheory is not built (target example_numtheory)" >&2; exit 1; }

# Prints "skip: why" if `script` cannot run here.
why_skip() {
  if [ $have_kvm -eq 0 ] && grep -Eq '(^|[^-a-z])(snaprun|snapgen)([^-a-z]|$)' "$1"; then
    echo "needs read-write /dev/kvm"
  elif [ $have_clang -eq 0 ] && grep -Eq 'clang-14|pea-analyze' "$1"; then
    echo "needs clang-14 and pea-analyze"
  fi
}

# Runs `script` (a file) in directory `dir`, naming it `what` on failure.
run_block() {
  local what=$1 dir=$2 script=$3 why
  why=$(why_skip "$script")
  if [ -n "$why" ]; then
    echo "SKIP: $what: $why"
    skipped=$((skipped + 1))
    return
  fi
  ran=$((ran + 1))
  if ! (cd "$dir" && timeout 120 bash -e -o pipefail "$script" >"$tmp/out" 2>&1 </dev/null); then
    fail "$what:"$'\n'"$(sed 's/^/    /' "$script")"$'\n'"  output:"$'\n'"$(tail -n 20 "$tmp/out" | sed 's/^/    /')"
  else
    echo "ok: $what"
  fi
}

# A scratch copy of the source tree's top level, with `build` the build.
new_tree() {
  local d
  d=$(mktemp -d "$tmp/tree.XXXXXX")
  for f in "$src"/*; do
    ln -s "$f" "$d/$(basename "$f")"
  done
  rm -f "$d/build"
  ln -s "$build" "$d/build"
  echo "$d"
}

# A directory for a man page's EXAMPLES.
new_example_dir() {
  local d
  d=$(mktemp -d "$tmp/man.XXXXXX")
  cp "$numtheory" "$d/numtheory"
  cp "$src/examples/numtheory/numtheory.c" "$src/examples/numtheory/requests.txt" "$d/"
  echo "$d"
}

markdown_blocks() { # FILE -> block files in $tmp/blocks/, one per ```sh block
  rm -rf "$tmp/blocks" && mkdir "$tmp/blocks"
  awk -v dir="$tmp/blocks" '
    /^```sh[ \t]*$/ { n++; inside = 1; start = NR; next }
    /^```/ && inside { inside = 0; next }
    inside { f = sprintf("%s/%03d-line%d", dir, n, start); print >> f; close(f) }
  ' "$1"
}

man_examples() { # PAGE -> the commands of its EXAMPLES section, on stdout
  mandoc -T ascii "$1" | col -b | sed -n '/^EXAMPLES/,/^[A-Z]/p' |
    awk '
      cont { sub(/^[ \t]+/, ""); print; cont = /\\$/; next }
      /^[ \t]+\$ / { sub(/^[ \t]+\$ /, ""); print; cont = /\\$/ }
    '
}

if [ $# -eq 0 ]; then
  set -- "$src"/README.md "$src"/docs/*.md "$src"/docs/formats/*.md "$src"/examples/README.md "$src"/man/*.[157]
fi
for doc in "$@"; do
  name=${doc#"$src"/}
  case "$doc" in
  *.md)
    markdown_blocks "$doc"
    for b in "$tmp"/blocks/*; do
      [ -e "$b" ] || continue
      run_block "$name:${b##*-line}" "$(new_tree)" "$b"
    done
    ;;
  *)
    if ! grep -q '^\.Sh EXAMPLES' "$doc"; then
      continue
    fi
    man_examples "$doc" >"$tmp/man-script"
    if [ ! -s "$tmp/man-script" ]; then
      fail "$name: EXAMPLES has no '\$ ' command lines"
      continue
    fi
    run_block "$name EXAMPLES" "$(new_example_dir)" "$tmp/man-script"
    ;;
  esac
done

echo "docs: $ran blocks ran, $skipped skipped, $failures failed"
[ "$failures" -eq 0 ] || exit 1
[ "$ran" -gt 0 ] || exit 77 # all skipped: ctest reports the test as skipped
