#!/usr/bin/env bash
# Proves that the tools behave like the Unix tools their users know (issue
# 12, "What was seen"), one check per point, each against the real binaries:
# one voice, one exit-code scheme, one --version format, -q/-v, unknown
# options first, snaprun's PROGRAM argument handling, quiet exit on a closed
# pipe, write errors, '-' for stdin/stdout, pipes as snapshot inputs, JSON
# forms of --stats and snapgen's summary.
# Usage: unix_tools_test.sh SOURCE_DIR BUILD_DIR
# Checks that need /dev/kvm are skipped without it.
set -u
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
snaprun=$build/tools/snaprun/snaprun
snapgen=$build/tools/snapgen/snapgen
snapinfo=$build/tools/snapinfo/snapinfo
pea=$build/tools/pea-analyze/pea-analyze
numtheory=$build/examples/numtheory/numtheory
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1

# run EXPECTED_STATUS CMD...: stdout in out, stderr in err.
run() {
  local want=$1
  shift
  "$@" >out 2>err </dev/null
  local rc=$?
  [ "$rc" -eq "$want" ] || fail "$* exited $rc (expected $want): $(cat err)"
}

tools=("$snaprun" "$snapgen" "$snapinfo" "$build/tools/snapselect/snapselect"
  "$build/tools/snapmerge/snapmerge")
[ -x "$pea" ] && tools+=("$pea")

# --- One voice, one --version, unknown options first ---------------------
for t in "${tools[@]}"; do
  n=$(basename "$t")
  run 0 "$t" --version
  [ "$(sed -n 1p out)" = "$n (presnap) $(sed -n 1p out | awk '{print $3}')" ] &&
    sed -n 1p out | grep -Eq "^$n \(presnap\) [0-9]+\.[0-9]+\.[0-9]+$" ||
    fail "$n --version first line: $(cat out)"
  [ "$(wc -l <out)" -eq 2 ] || fail "$n --version: expected the formats it reads on line 2: $(cat out)"
  usage=2
  [ "$n" = snaprun ] && usage=125
  run $usage "$t" --bogus
  [ "$(cat err)" = "$n: error: the following argument was not expected: --bogus
$n: note: see '$n --help'" ] || fail "$n --bogus is not reported as an unknown option first: $(cat err)"
  # -q and -v mean quiet and verbose; together they are a usage error.
  "$t" --help >help
  grep -Eq '^ +-q, *--quiet' help || fail "$n: -q is not --quiet"
  grep -Eq '^ +-v, *--verbose' help || fail "$n: -v is not --verbose"
  # Write errors are errors: --help to /dev/full.
  "$t" --help >/dev/full 2>err && fail "$n --help >/dev/full exited 0"
  grep -q "^$n: error: -: cannot write: no space left on device$" err || fail "$n >/dev/full: $(cat err)"
  "$t" --version >/dev/full 2>err && fail "$n --version >/dev/full exited 0"
  [ "$(cat err)" = "$n: error: -: cannot write: no space left on device" ] ||
    fail "$n --version >/dev/full: $(cat err)"
done
run 2 "$snapinfo" -q -v x.snap
grep -q '^snapinfo: error: give at most one of -q and -v$' err || fail "snapinfo -q -v: $(cat err)"

if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
  echo "SKIP: the checks that run guests need read-write /dev/kvm"
  [ "$failures" -eq 0 ] || exit 1
  exit 77
fi
[ -x "$numtheory" ] || { echo "FAIL: $numtheory is not built" >&2; exit 1; }
cp "$numtheory" numtheory

# --- '-' is stdin/stdout ---------------------------------------------------
# snapgen -o - writes the snapshot to stdout, not to a file named '-'.
"$snapgen" -q --base -o - ./numtheory >base.snap 2>err || fail "snapgen -o -: $(cat err)"
[ ! -e ./- ] || fail "snapgen -o - wrote a file named '-'"
run 0 "$snapinfo" -q base.snap
# --after - reads requests from stdin, even with a file named '-' present.
echo 'not a request' >./-
echo 'isprime 97' | "$snapgen" --after - --from base.snap -o isprime.snap --responses resp.txt 2>err ||
  fail "snapgen --after -: $(cat err)"
[ "$(cat resp.txt)" = "isprime 97: prime" ] || fail "snapgen --after - ran: $(cat resp.txt)"
# --responses - writes to stdout.
echo 'isprime 97' | "$snapgen" -q --after - --from base.snap -o x.snap --responses - >out 2>err
[ "$(cat out)" = "isprime 97: prime" ] || fail "snapgen --responses -: $(cat out) $(cat err)"
# A file literally named '-' is ./-.
run 0 "$snapgen" -q --base --warmup ./- --responses dash.out -o y.snap ./numtheory
[ -s dash.out ] || fail "snapgen --warmup ./- did not read the file named '-'"
rm -f ./-
# stdin can be read once, stdout written once.
run 2 "$snapgen" --after - --from - -o z.snap
run 2 "$snapgen" --base -o - --responses - ./numtheory
# snapinfo -, and a pipe given by name.
"$snapinfo" - <base.snap >out 2>err || fail "snapinfo - <file: $(cat err)"
cat base.snap | "$snapinfo" - >out 2>err || fail "snapinfo - from a pipe: $(cat err)"
grep -q '^snapshot: *-$' out || fail "snapinfo - names its input: $(head -1 out)"
"$snapinfo" --parent <(cat base.snap) <(cat isprime.snap) >out 2>err ||
  fail "snapinfo <(cat x.snap): $(cat err)"
# snaprun restores from a pipe given by name, and refuses '-' (stdin is the requests).
echo 'isprime 97' | "$snaprun" <(cat base.snap) <(cat isprime.snap) >out 2>err ||
  fail "snaprun <(cat x.snap): $(cat err)"
[ "$(cat out)" = "isprime 97: prime" ] || fail "snaprun from pipes served: $(cat out)"
run 125 "$snaprun" - isprime.snap
grep -q "^snaprun: error: a SNAPSHOT cannot be - (standard input carries the requests)$" err ||
  fail "snaprun -: $(cat err)"
# pea-analyze --history - (and its errors name '-').
if [ -x "$pea" ] && command -v clang-14 >/dev/null; then
  clang-14 -O1 -Xclang -disable-llvm-passes -g -emit-llvm -c "$src/examples/numtheory/numtheory.c" -o nt.bc
  "$pea" nt.bc --history - -o nt.pmap <"$src/tests/analysis/fixtures/future.jsonl" 2>err
  [ $? -eq 1 ] && grep -q '^pea-analyze: error: -:1: unsupported history version' err ||
    fail "pea-analyze --history - <future.jsonl: $(cat err)"
  echo '{"format":"presnap-history","version":1}' | "$pea" nt.bc --history - -o nt.pmap 2>err ||
    fail "pea-analyze --history -: $(cat err)"
  run 2 "$pea" - --history -
else
  echo "SKIP: pea-analyze --history - (needs clang-14 and pea-analyze)"
fi

# --- snaprun --cold PROGRAM: options around PROGRAM ---------------------
mkdir -p root
echo 'isprime 97' | "$snaprun" --cold --rootfs root ./numtheory >out 2>err ||
  fail "snaprun --cold --rootfs DIR PROGRAM: $(cat err)"
[ "$(cat out)" = "isprime 97: prime" ] || fail "--cold --rootfs DIR PROGRAM served: $(cat out)"
echo 'isprime 97' | "$snaprun" --cold ./numtheory --mem 64M >out 2>err
grep -q "^snaprun: note: '--mem' comes after PROGRAM, so it is passed to the program" err ||
  fail "no hint for --mem after PROGRAM: $(cat err)"
echo 'isprime 97' | "$snaprun" -q --cold ./numtheory --mem 64M >out 2>err
[ ! -s err ] || fail "snaprun -q still hints: $(cat err)"
# A flag before --cold takes no value: PROGRAM is still PROGRAM.
echo 'isprime 97' | "$snaprun" -v --cold ./numtheory --mem 64M >out 2>err
grep -q "^snaprun: note: '--mem' comes after PROGRAM" err && [ "$(cat out)" = "isprime 97: prime" ] ||
  fail "snaprun -v --cold PROGRAM --mem 64M: $(cat err)"
echo 'isprime 97' | "$snaprun" --cold ./numtheory -- --mem >out 2>err
! grep -q note err || fail "a hint for an argument after --: $(cat err)"

# --- Closed pipes and full disks ------------------------------------------
yes 'isprime 97' | head -n 3000 >many.txt
"$snaprun" base.snap <many.txt 2>err | head -n 1 >/dev/null
[ ! -s err ] || fail "snaprun | head -1 said: $(cat err)"
(trap '' PIPE && "$snaprun" base.snap <many.txt 2>err | head -n 1 >/dev/null)
[ ! -s err ] || fail "snaprun | head -1 with SIGPIPE ignored said: $(cat err)"
(trap '' PIPE && "$snapinfo" --runs --json base.snap 2>err | head -c 1 >/dev/null)
[ ! -s err ] || fail "snapinfo | head with SIGPIPE ignored said: $(cat err)"
"$snapinfo" base.snap >/dev/full 2>err
[ $? -eq 4 ] || fail "snapinfo >/dev/full is not an I/O error"
grep -q '^snapinfo: error: -: cannot write: no space left on device$' err || fail "snapinfo >/dev/full: $(cat err)"

# --- JSON forms ------------------------------------------------------------
printf 'isprime 97\npi 100\n' | "$snaprun" --stats --json base.snap >out 2>err || fail "--stats --json: $(cat err)"
[ "$(wc -l <err)" -eq 3 ] || fail "--stats --json: expected 2 request lines and a summary: $(cat err)"
python3 - err 2>/dev/null <<'EOF' || fail "--stats --json is not JSON Lines: $(cat err)"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert [l["request"] for l in lines[:2]] == [1, 2]
assert lines[2]["summary"] is True and lines[2]["requests"] == 2
EOF
printf 'isprime 97\n' | "$snaprun" --stats base.snap >out 2>err
grep -q '^snaprun: stats: setup_us=' err || fail "--stats text form changed: $(cat err)"
run 125 "$snaprun" --json base.snap
echo 'isprime 97' | "$snapgen" --json --after - --from base.snap -o j.snap >out 2>err || fail "snapgen --json: $(cat err)"
python3 -c 'import json,sys; j=json.load(open("err")); assert j["output"]=="j.snap" and j["requests"]==1, j' 2>/dev/null ||
  fail "snapgen --json summary: $(cat err)"
# A file name that is not UTF-8 is still a file name: the JSON summary shows
# it with replacement characters (it aborted with exit 134).
bad_name=$(printf 'b\377.snap')
echo 'isprime 97' | "$snapgen" --json --after - --from base.snap -o "$bad_name" >out 2>err ||
  fail "snapgen --json -o a non-UTF-8 name exited $?: $(cat err)"
python3 -c 'import json,sys; j=json.load(open("err")); assert j["output"]=="b\ufffd.snap", j' 2>/dev/null ||
  fail "snapgen --json summary of a non-UTF-8 name: $(cat err)"
[ -s "$bad_name" ] || fail "snapgen -o a non-UTF-8 name wrote no file"

# --- -v says more, on stderr ----------------------------------------------
run 0 "$snapinfo" -v --parent base.snap isprime.snap
grep -q '^snapinfo: note: isprime.snap: a diff made on top of base.snap$' err || fail "snapinfo -v: $(cat err)"

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "unix tools: all checks passed"
