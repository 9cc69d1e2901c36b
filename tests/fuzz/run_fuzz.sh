#!/bin/sh
# Runs one libFuzzer target for a bounded time with one worker, seeded with
# the checked-in corpus (which also holds the regression inputs of crashes
# found and fixed: each is run first). libFuzzer exits non-zero on a crash, a
# leak, a timeout or a sanitizer report, and so does this script.
#   run_fuzz.sh FUZZER SEEDS_DIR WORK_DIR SECONDS [MAX_LEN]
# With FUZZER "-": exits 77 (skipped) with the reason in SEEDS_DIR.
set -eu
if [ "$1" = "-" ]; then
    echo "SKIP: $2" >&2
    exit 77
fi
fuzzer=$1 seeds=$2 work=$3 seconds=$4 max_len=${5:-4096}
# The rootfs target makes a tree per input: on tmpfs that is 25 times faster.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    export TMPDIR=/dev/shm
fi
rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len" \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" "$seeds"
