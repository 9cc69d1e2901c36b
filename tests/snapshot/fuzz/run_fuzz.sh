#!/bin/sh
# Runs the snapshot reader fuzzer for a bounded time, seeded with the golden
# and corrupt fixtures. libFuzzer exits non-zero on a crash, a leak or a
# sanitizer report, and so does this script.
#   run_fuzz.sh FUZZER FIXTURES_DIR WORK_DIR SECONDS
set -eu
fuzzer=$1 fixtures=$2 work=$3 seconds=$4
rm -rf "$work"
mkdir -p "$work/corpus" "$work/seeds" "$work/artifacts"
cp "$fixtures"/*.snap "$work/seeds/"
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" "$work/seeds"
