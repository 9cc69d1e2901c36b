#!/usr/bin/env bash
# Tracing overhead at steady state, side by side in one run: each example's
# requests.txt repeated ROUNDS times in one snaprun --cold process (the first
# round builds the lazy state and is left out), served untraced, with
# --trace (every request) and with --trace-every 10, the three modes
# interleaved REPS times. Per-request times are the monitor's (delivery to
# wait point, `snaprun --stats`); "paired" is the median over requests of
# (traced - untraced) for the same request at the same position.
#   bench/trace_overhead.sh BUILD_DIR [ROUNDS] [REPS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
rounds=${2:-10}
reps=${3:-3}
snaprun=$build/tools/snaprun/snaprun
pea=$build/tools/pea-analyze/pea-analyze
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "## Tracing overhead ($(date -u +%F), steady state)"
echo
echo "Command: \`bench/trace_overhead.sh $1 $rounds $reps\`. Each example's requests.txt repeated"
echo "$rounds times in one \`snaprun --cold\` process, rounds 2..$rounds kept; modes interleaved $reps"
echo "times. µs per request. Medians: untraced, --trace, paired = median over requests of"
echo "(traced - untraced) for the same request, hits = trace points a traced request reached"
echo "(one exit each), µs/hit = paired / hits. Sampling is judged by means (one request in ten"
echo "pays the whole cost): amortized = (mean with --trace-every 10 - mean untraced) / mean untraced."
echo
echo "| example | segments | untraced | --trace | paired | overhead | hits | µs/hit | mean untraced | mean every 10 | amortized |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for ex in numtheory spellcheck logparse; do
    prog=$build/examples/$ex/$ex
    "$pea" "$build"/tests/analysis/bc/example_$ex/*.bc --elf "$prog" -o "$work/$ex.pmap" 2>/dev/null
    : >"$work/req"
    for i in $(seq "$rounds"); do cat "$here/examples/$ex/requests.txt" >>"$work/req"; done
    per_round=$(wc -l <"$here/examples/$ex/requests.txt")
    for rep in $(seq "$reps"); do
        "$snaprun" --stats --cold "$prog" <"$work/req" 2>"$work/off.$rep" >/dev/null
        "$snaprun" --stats --trace "$work/all.$rep.jsonl" --map "$work/$ex.pmap" --cold "$prog" \
            <"$work/req" 2>"$work/all.$rep" >/dev/null
        "$snaprun" --stats --trace "$work/ten.$rep.jsonl" --trace-every 10 --map "$work/$ex.pmap" \
            --cold "$prog" <"$work/req" 2>"$work/ten.$rep" >/dev/null
    done
    points=$(grep -c '"type":"segment"' "$work/all.1.jsonl")
    python3 - "$work" "$reps" "$per_round" "$ex" "$points" <<'EOF'
import json, re, statistics as st, sys
work, reps, per_round, ex, points = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
def times(path):
    t = {}
    for line in open(path):
        m = re.search(r"stats: request (\d+) us=([0-9.]+)", line)
        if m and int(m.group(1)) > per_round:
            t[int(m.group(1))] = float(m.group(2))
    return t
def mode(name):
    vals, diffs = [], []
    for rep in range(1, reps + 1):
        off, on = times(f"{work}/off.{rep}"), times(f"{work}/{name}.{rep}")
        vals += on.values()
        diffs += [on[i] - off[i] for i in on if i in off]
    return st.median(vals), st.median(diffs)
offs = [v for rep in range(1, reps + 1) for v in times(f"{work}/off.{rep}").values()]
off, off_mean = st.median(offs), st.mean(offs)
all_med, all_diff = mode("all")
ten_mean = st.mean(v for rep in range(1, reps + 1) for v in times(f"{work}/ten.{rep}").values())
hits = st.median(len(r["segments"]) for rep in range(1, reps + 1)
                 for r in map(json.loads, open(f"{work}/all.{rep}.jsonl"))
                 if r.get("type") == "request" and r["index"] > per_round)
print(f"| {ex} | {points} | {off:.1f} | {all_med:.1f} | {all_diff:+.1f} | {100 * all_diff / off:+.0f}% "
      f"| {hits:g} | {all_diff / hits:.0f} | {off_mean:.1f} | {ten_mean:.1f} "
      f"| {100 * (ten_mean - off_mean) / off_mean:+.0f}% |")
EOF
done
