#!/usr/bin/env bash
# Hostile guests that forge hypercalls, and limits a guest must not get
# past. Each case fails on a monitor without the fix it names.
#   forged.sh SNAPRUN SNAPGEN RUN_LIMITED FORGER CASE
source "$(dirname "$0")/lib.sh"
SNAPRUN=$1 SNAPGEN=$2 LIMIT=$3 FORGER=$4 CASE=$5
require_kvm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# run MAX_RSS_MB TIMEOUT_S EXPECTED_RC INPUT SNAPRUN_ARGS...
run() {
    local rss=$1 limit=$2 want=$3 input=$4
    shift 4
    printf '%s' "$input" | "$LIMIT" "$rss" "$limit" "$SNAPRUN" "$@" >"$work/out" 2>"$work/err"
    local rc=$?
    head -c 3000 "$work/err" >&2
    [[ $rc == 201 ]] && fail "host memory bound of $rss MB broken"
    [[ $rc == 202 ]] && fail "still running after $limit s"
    [[ $rc == "$want" ]] || fail "exit status $rc, expected $want"
}

case "$CASE" in
timeout-after-eof)
    # INPUT hypercalls after the end of input must not re-arm the deadline.
    run 100 10 124 'a
' --timeout 1 --cold "$FORGER" input-after-eof
    expect_contains "$work/out" "eof reached"
    expect_contains "$work/err" "snaprun: error: after the end of input: timed out after 1 s" ;;
notice-flood)
    # Notices for syscall numbers that cannot exist are a guest error, so
    # the set of numbers reported once stays bounded (bound: measured peak
    # about 10 MB, plus margin).
    run 40 20 123 '' -q --cold "$FORGER" notices
    expect_contains "$work/err" "notice for syscall number 1000, which does not exist" ;;
exit-signal)
    run 40 20 123 '' --cold "$FORGER" exit-signal
    expect_contains "$work/err" "exit hypercall with signal 4294967295" ;;
panic-text)
    # Guest text is quoted on one line: it cannot forge snaprun's own lines.
    run 40 20 123 '' --cold "$FORGER" panic-text
    expect_contains "$work/err" 'guest kernel panic: "forged?snaprun: note: this line was forged'
    ! grep -q '^snaprun: note: this line was forged' "$work/err" || fail "guest forged a snaprun line" ;;
max-response)
    # The refused chunk never goes out: at most --max-response bytes do.
    run 40 20 123 'bigout
' --max-response 100 --cold "$FORGER"
    expect_contains "$work/err" "response is longer than the limit of 100 bytes (--max-response)"
    size=$(stat -c %s "$work/out")
    ((size <= 100)) || fail "$size bytes of output passed a limit of 100" ;;
stderr-unwritable)
    # A diagnostic that cannot be written is lost, not a crash (SIGABRT).
    printf 'x\n' | "$SNAPRUN" --timeout 1 --cold "$FORGER" input-after-eof >/dev/null 2>/dev/full
    rc=$?
    [[ $rc == 124 ]] || fail "exit status $rc with stderr on /dev/full, expected 124" ;;
scattered-snapshot)
    # A snapshot of ~24,600 separate page runs: restore must not need one
    # mapping per run (vm.max_map_count is 65,530, and each mapped run also
    # splits the anonymous mapping around it).
    printf 'scatter\n' >"$work/warm"
    "$SNAPGEN" -q --mem 256M --base --warmup "$work/warm" -o "$work/base.snap" "$FORGER" ||
        fail "snapgen failed"
    printf 'echo\n' | "$SNAPRUN" "$work/base.snap" >"$work/out" 2>"$work/err" ||
        { cat "$work/err" >&2; fail "restore of a scattered snapshot failed"; }
    printf 'echo\n' | "$FORGER" >"$work/native"
    cmp "$work/out" "$work/native" || fail "restored responses differ from native" ;;
truncated-snapshot)
    # The snapshot file is truncated while a restored guest runs from it:
    # a clear error and snaprun's own exit status, never a crash (SIGBUS).
    printf 'scatter\n' >"$work/warm"
    "$SNAPGEN" -q --mem 256M --base --warmup "$work/warm" -o "$work/base.snap" "$FORGER" ||
        fail "snapgen failed"
    mkfifo "$work/in"
    "$LIMIT" 400 30 "$SNAPRUN" --no-verify-data "$work/base.snap" <"$work/in" >"$work/out" 2>"$work/err" &
    pid=$!
    exec 3>"$work/in"
    echo echo >&3
    for _ in $(seq 100); do grep -q "ok echo" "$work/out" && break; sleep 0.1; done
    grep -q "ok echo" "$work/out" || fail "the restored guest did not answer"
    truncate -s 0 "$work/base.snap"
    echo touch >&3
    exec 3>&-
    wait $pid
    rc=$?
    cat "$work/err" >&2
    [[ $rc == 125 ]] || fail "exit status $rc after the snapshot was truncated, expected 125"
    expect_contains "$work/err" "snaprun: error:"
    expect_contains "$work/err" "truncated" ;;
million-requests)
    # Host memory must not grow with requests served: 1,000,000 requests
    # in one run, bounded by the measured peak of a short run plus 8 MB.
    yes echo | head -n 1000 >"$work/short"
    "$LIMIT" 1000 60 "$SNAPRUN" --cold "$FORGER" <"$work/short" >/dev/null 2>"$work/err" || fail "short run failed"
    yes echo | head -n 1000000 >"$work/long"
    short_kb=$(/usr/bin/time -f %M "$SNAPRUN" --cold "$FORGER" <"$work/short" 2>&1 >/dev/null | tail -1)
    long_kb=$(/usr/bin/time -f %M "$SNAPRUN" --cold "$FORGER" <"$work/long" 2>&1 >"$work/out" | tail -1)
    echo "peak RSS: 1,000 requests ${short_kb} KB, 1,000,000 requests ${long_kb} KB" >&2
    [[ $(wc -l <"$work/out") == 1000000 ]] || fail "not every request was answered"
    ((long_kb <= short_kb + 8192)) || fail "host RSS grew from $short_kb KB to $long_kb KB over 1M requests" ;;
*)
    fail "unknown case $CASE" ;;
esac
echo "ok: $CASE"
