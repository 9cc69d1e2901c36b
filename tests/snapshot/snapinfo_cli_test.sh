#!/bin/sh
# CLI tests for snapinfo: the real binary against the fixtures. Every corrupt
# fixture gives exactly "snapinfo: error: FILE: MESSAGE" with the message from
# expected-errors.txt and the documented exit status; golden files describe
# themselves; --help and the man page list the same options.
#   snapinfo_cli_test.sh SNAPINFO FIXTURES_DIR MAN_PAGE
set -u
snapinfo=$1 dir=$2 man=$3
failures=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# run EXPECTED_STATUS ARGS...: runs snapinfo, keeps stdout/stderr in $tmp.
run() {
  want=$1; shift
  "$snapinfo" "$@" >"$tmp/out" 2>"$tmp/err"
  got=$?
  [ "$got" -eq "$want" ] || fail "snapinfo $*: exit status $got, expected $want ($(cat "$tmp/err"))"
}

# Every corrupt fixture: its own message, exit 1 (3 for a host check).
grep -v '^#' "$dir/expected-errors.txt" | grep -v '^$' | while IFS= read -r line; do
  spec=${line%% | *}
  message=${line#* | }
  set -- $spec
  name=$1; shift
  args="" status=1
  for opt in "$@"; do
    case $opt in
      --parent=*) args="$args --parent $dir/${opt#--parent=}" ;;
      --check-host) args="$args --check-host"; status=3 ;;
    esac
  done
  run $status $args "$dir/$name"
  expected="snapinfo: error: $dir/$name: $message"
  actual=$(cat "$tmp/err")
  case $message in
    *\*) case $actual in "${expected%\*}"*) ;; *) fail "$name: got '$actual'" ;; esac ;;
    *) [ "$actual" = "$expected" ] || fail "$name: got '$actual', expected '$expected'" ;;
  esac
  [ -s "$tmp/out" ] && fail "$name: printed to stdout on error"
  # -q: same status, no output.
  run $status -q $args "$dir/$name"
  [ -s "$tmp/err" ] || [ -s "$tmp/out" ] && fail "$name: -q printed something"
  echo "$failures" >"$tmp/failures"
done
[ -f "$tmp/failures" ] && failures=$(cat "$tmp/failures")

# Golden files: valid, described in text and JSON.
for f in full-raw full-zstd diff-raw diff-zstd; do
  run 0 "$dir/$f.snap"
  grep -q "^format: *presnap snapshot 1.0$" "$tmp/out" || fail "$f: no format line"
  run 0 --json --runs "$dir/$f.snap"
  grep -q '"format_version":"1.0"' "$tmp/out" || fail "$f: --json has no format_version"
  grep -q '"page_runs":\[' "$tmp/out" || fail "$f: --json --runs has no page_runs"
done
run 0 "$dir/full-zstd.snap"
grep -q '^memory: *3 runs (0 raw, 3 zstd, 0 zero): 4 pages stored, 0 zero pages$' "$tmp/out" ||
  fail "full-zstd: page counts: $(grep '^memory' "$tmp/out")"
run 0 --parent "$dir/full-raw.snap" "$dir/diff-raw.snap"
run 0 --parent "$dir/full-zstd.snap" --check-host "$dir/diff-zstd.snap"
run 1 --parent "$dir/full-raw.snap" "$dir/diff-zstd.snap"
grep -q "^snapinfo: error: $dir/diff-zstd.snap: parent mismatch (expected " "$tmp/err" ||
  fail "diff-zstd over full-raw: $(cat "$tmp/err")"

# I/O and usage errors.
run 4 "$dir/no-such-file.snap"
[ "$(cat "$tmp/err")" = "snapinfo: error: $dir/no-such-file.snap: open: No such file or directory" ] ||
  fail "missing file: $(cat "$tmp/err")"
run 2
[ "$(head -n1 "$tmp/err")" = "snapinfo: error: FILE is required" ] || fail "no FILE: $(cat "$tmp/err")"
run 2 --no-such-option "$dir/full-raw.snap"
grep -q '^snapinfo: error: ' "$tmp/err" || fail "bad option: $(cat "$tmp/err")"
run 0 --version
sed -n 1p "$tmp/out" | grep -q '^snapinfo (presnap) [0-9][0-9.]*$' &&
  [ "$(sed -n 2p "$tmp/out")" = "reads snapshot format 1.1" ] ||
  fail "--version: $(cat "$tmp/out")"

# --help and the man page name the same options.
run 0 --help
help_opts=$(grep -o -- '--[a-z][a-z-]*' "$tmp/out" | sort -u)
if command -v mandoc >/dev/null; then
  mandoc -T lint -W warning "$man" >"$tmp/lint" 2>&1 || fail "mandoc lint: $(cat "$tmp/lint")"
  man_opts=$(mandoc -T ascii "$man" | col -b | sed -n '/^OPTIONS/,/^EXIT STATUS/p' |
    grep -o -- '--[a-z][a-z-]*' | sort -u)
  [ "$help_opts" = "$man_opts" ] || fail "--help options ($help_opts) differ from the man page's ($man_opts)"
else
  fail "mandoc not installed (scripts/debian-packages.txt lists it)"
fi

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "snapinfo CLI: all checks passed"
