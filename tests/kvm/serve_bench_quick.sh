#!/usr/bin/env bash
# bench/run --quick writes its report with a row for every contender, a CDF
# plot, and no response unlike the native program's.
#   serve_bench_quick.sh BENCH_RUN BUILD_DIR
source "$(dirname "$0")/lib.sh"
BENCH=$1 BUILD=$2
require_kvm
command -v python3 >/dev/null || fail "python3 is needed"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$BENCH" --quick "$BUILD" "$out" 2>"$out/bench.err"
rc=$?
[[ $rc -eq 77 ]] && exit 77
[[ $rc -eq 0 ]] || { cat "$out/bench.err" >&2; fail "bench/run --quick exited $rc"; }
[[ -s "$out/report.md" ]] || fail "no report.md written"
[[ -s "$out/results.json" ]] || fail "no results.json written"
grep -q "^- machine: " "$out/report.md" || fail "the report does not state the machine"
grep -q "^- command: \`bench/run --quick" "$out/report.md" || fail "the report does not state the command"
for c in native-fresh native-warm snaprun-cold base base+prefetch warm-all presnap oracle; do
    grep -q "^| $c | " "$out/report.md" || fail "no row for $c in the report"
done
grep -q "presnap/base\|oracle/base" "$out/report.md" || fail "no ratios in the report"
svg=$(ls "$out"/*-cdf.svg 2>/dev/null | head -1)
[[ -n "$svg" ]] && grep -q "<polyline" "$svg" || fail "no CDF plot"
# Every timed response equals the native program's.
python3 - "$out/results.json" <<'PY' || fail "a contender answered unlike native"
import json, sys
r = json.load(open(sys.argv[1]))
bad = [(ex, c, v["wrong"]) for ex, e in r["examples"].items()
       for c, v in e["contenders"].items() if v["wrong"]]
bad += [(ex, "new server " + c, v["wrong"]) for ex, e in r["examples"].items()
        for c, v in e["new_server"].items() if v["wrong"]]
assert not bad, bad
PY
for c in base presnap "presnap --no-fallback"; do
    grep -q "^| $c | " <(sed -n "/new server's first request/,\$p" "$out/report.md") ||
        fail "no new-server row for $c in the report"
done
echo "ok: report with every contender row, ratios, the new-server rows and a CDF plot"
