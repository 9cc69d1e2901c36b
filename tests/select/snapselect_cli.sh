#!/usr/bin/env bash
# snapselect's output forms against expected output (tests/select/expected/),
# on a written library (tests/select/fixtures/lib: a manifest and a map; no
# snapshot file is read, so no KVM is needed).
#   snapselect_cli.sh SNAPSELECT SOURCE_DIR [--update]
# Each case runs one command and compares its standard output, standard
# error and exit status with expected/CASE.out (--update rewrites them).
set -u
snapselect=$1
src=$2
here=$src/tests/select
update=${3:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$here/fixtures/lib" "$work/lib"
fx=$here/fixtures
failures=0

# check NAME CMD...: stdin is the fixture requests unless CMD redirects.
check() {
    local name=$1
    shift
    (cd "$work" && "$@" <"$fx/requests.txt") >"$work/out" 2>"$work/err"
    local rc=$?
    {
        cat "$work/out"
        sed "s|$work|WORK|g; s|$src|SRC|g" "$work/err" | sed 's/^/stderr: /'
        echo "exit: $rc"
    } >"$work/got"
    if [[ $update == --update ]]; then
        cp "$work/got" "$here/expected/$name.out"
    elif ! diff -u "$here/expected/$name.out" "$work/got" >"$work/diff"; then
        echo "FAIL: $name" >&2
        cat "$work/diff" >&2
        failures=$((failures + 1))
    else
        echo "ok: $name"
    fi
}

S=$snapselect
# The map alone: warm-all when everything fits; by route tokens otherwise.
check static_warm_all "$S" --lib lib
check static_text "$S" --lib lib --no-warm-all
check static_json "$S" --lib lib --no-warm-all --json
check static_explain "$S" --lib lib --no-warm-all --explain
check static_budget "$S" --lib lib --max-bytes 20M --explain --request 'isprime 5'
check static_budget_too_small "$S" --lib lib --max-bytes 4K --request 'isprime 5'
# History (in memory): acme's state was rebuilt within a run, so no warm-all.
check history_text "$S" --lib lib --history "$fx/history.jsonl"
check history_json "$S" --lib lib --history "$fx/history.jsonl" --json
check history_explain "$S" --lib lib --history "$fx/history.jsonl" --explain
# Train, then the stored model answers like the history did.
check train "$S" --lib lib --train "$fx/history.jsonl"
check trained_text "$S" --lib lib
check trained_static "$S" --lib lib --static --no-warm-all
# Per-user models.
check user_alice "$S" --lib lib --history "$fx/users.jsonl" --no-warm-all --user alice --request 'get x'
check user_bob "$S" --lib lib --history "$fx/users.jsonl" --no-warm-all --user bob --request 'get x'
# Errors: one line in the house voice, documented exit status.
check no_lib "$S"
check bad_max_bytes "$S" --lib lib --max-bytes lots
check bad_page_cost "$S" --lib lib --page-cost -1
check train_with_json "$S" --lib lib --train "$fx/history.jsonl" --json
check static_and_history "$S" --lib lib --static --history "$fx/history.jsonl"
check missing_lib "$S" --lib nowhere
check missing_history "$S" --lib lib --history nowhere.jsonl
printf '%s\n' '{"format":"presnap-model","version":1,"manifest":"0123456789abcdef"}' >"$work/lib/model.jsonl"
check foreign_model "$S" --lib lib
printf '%s\n' '{"format":"presnap-model","version":7}' >"$work/lib/model.jsonl"
check future_model "$S" --lib lib
rm -f "$work/lib/model.jsonl"
# Nothing half-written: no temporary file left in the library.
if ls "$work/lib" | grep -q tmp; then
    echo "FAIL: a temporary file was left in the library: $(ls "$work/lib")" >&2
    failures=$((failures + 1))
fi
[[ $failures -eq 0 ]] || { echo "$failures failure(s)" >&2; exit 1; }
