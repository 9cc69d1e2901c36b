#!/usr/bin/env bash
# Measures pea-analyze on a large whole-program input: SQLite's amalgamation
# (deps/sqlite3/sqlite3.c in the better-sqlite3 npm package) linked with
# sqlite_app.c, analysed as one module; and, with --elf, resolved in the
# static executable. Not a ctest: it needs the npm registry. Nothing it
# downloads is kept in the repository.
#
#   tests/analysis/tools/measure_sqlite.sh PEA_ANALYZE [WORKDIR]
#
# Prints the input sizes, then per mode (bitcode only, and with --elf) the
# median of three runs from /usr/bin/time: elapsed seconds, CPU seconds
# (user + system: what the machine's other load does not change) and peak
# RSS.
set -euo pipefail
pea=$(realpath "$1")
work=${2:-$(mktemp -d /tmp/presnap-sqlite.XXXXXX)}
here=$(dirname "$(realpath "$0")")
mkdir -p "$work"
cd "$work"
if [ ! -f package/deps/sqlite3/sqlite3.c ]; then
  npm pack --silent better-sqlite3@12 > pack.txt
  tar xzf "$(tail -n 1 pack.txt)"
fi
src=package/deps/sqlite3
flags=(-O1 -Xclang -disable-llvm-passes -g -emit-llvm -c -I"$src")
[ -f sqlite3.bc ] || clang-14 "${flags[@]}" "$src/sqlite3.c" -o sqlite3.bc
clang-14 "${flags[@]}" "$here/sqlite_app.c" -o app.bc
[ -f app ] || gcc -O2 -g -static -I"$src" "$here/sqlite_app.c" "$src/sqlite3.c" -o app \
  -lpthread -lm -ldl 2>/dev/null
echo "sqlite3.c: $(wc -l < "$src/sqlite3.c") lines; sqlite3.bc: $(stat -c %s sqlite3.bc) bytes;" \
  "app: $(stat -c %s app) bytes"
"$pea" app.bc sqlite3.bc -o sqlite.pmap -v 2>&1 | grep -F functions || true
median() { sort -n | sed -n 2p; }
for mode in bitcode elf; do
  extra=()
  [ "$mode" = elf ] && extra=(--elf app)
  for i in 1 2 3; do
    /usr/bin/time -f "%e %U %S %M" "$pea" app.bc sqlite3.bc "${extra[@]}" -o /dev/null 2>&1 |
      tail -n 1
  done > "times-$mode.txt"
  secs=$(cut -d' ' -f1 "times-$mode.txt" | median)
  cpu=$(awk '{ printf "%.2f\n", $2 + $3 }' "times-$mode.txt" | median)
  kib=$(cut -d' ' -f4 "times-$mode.txt" | median)
  echo "$mode: elapsed $secs s, cpu $cpu s, peak $kib KiB"
done
# The route table's lazy prepare: warm, with the route tokens.
grep -E ' br:prepare:| fn:prepare | fn:sqlite3_prepare_v2 ' sqlite.pmap | cut -d' ' -f3,6,7,11
