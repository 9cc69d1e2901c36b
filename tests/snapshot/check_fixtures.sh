#!/bin/sh
# Regenerates the snapshot fixtures into a scratch directory and compares them
# byte for byte with the checked-in ones: the generator is deterministic, and
# the files in the tree are the ones it makes.
#   check_fixtures.sh GENERATOR FIXTURES_DIR SCRATCH_DIR
set -eu
gen=$1 fixtures=$2 scratch=$3
rm -rf "$scratch"
mkdir -p "$scratch"
"$gen" "$scratch"
status=0
for f in "$scratch"/*.snap "$scratch"/*.store; do
  name=$(basename "$f")
  if ! cmp -s "$f" "$fixtures/$name"; then
    echo "stale or missing fixture: $name (run: cmake --build BUILD --target regenerate_snapshot_fixtures)" >&2
    status=1
  fi
done
for f in "$fixtures"/*.snap "$fixtures"/*.store; do
  name=$(basename "$f")
  [ -e "$scratch/$name" ] || { echo "fixture not made by the generator: $name" >&2; status=1; }
done
exit $status
