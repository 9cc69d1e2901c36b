#!/usr/bin/env bash
# The main job on an example: serve examples/numtheory's requests from a cold
# boot under KVM and compare the responses with the native run, byte for byte.
#   scripts/demo.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
prog=$build/examples/numtheory/numtheory
requests=$here/examples/numtheory/requests.txt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== native: $prog < examples/numtheory/requests.txt"
"$prog" <"$requests" >"$work/native.out"
echo "== presnap: snaprun --cold $prog (stats on stderr)"
"$build/tools/snaprun/snaprun" --stats --cold "$prog" <"$requests" >"$work/vm.out" 2>"$work/vm.err" || {
  cat "$work/vm.err" >&2
  exit 1
}
grep -v 'stats: request ' "$work/vm.err" >&2 || true
head -n 5 "$work/vm.out"
echo "..."
if cmp -s "$work/native.out" "$work/vm.out"; then
  echo "== identical: $(wc -l <"$work/vm.out") responses from the KVM guest match the native run"
else
  diff "$work/native.out" "$work/vm.out" | head >&2
  echo "== DIFFERENT: the guest's responses do not match the native run" >&2
  exit 1
fi
