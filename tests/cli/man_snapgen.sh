#!/usr/bin/env bash
# Proves that snapgen(1) is well formed and that it and `snapgen --help` name
# the same long options with the same defaults.
# Usage: man_snapgen.sh SNAPGEN MANDIR
set -u
snapgen=$1
mandir=$2
page=$mandir/snapgen.1
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

if ! command -v mandoc >/dev/null; then
  echo "FAIL: mandoc not installed (scripts/debian-packages.txt lists it)" >&2
  exit 1
fi
if [ ! -f "$page" ]; then
  echo "FAIL: $page is missing" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The page passes mandoc's lint at warning level.
mandoc -T lint -W warning "$page" >"$tmp/lint" 2>&1 ||
  fail "mandoc lint snapgen.1: $(cat "$tmp/lint")"

"$snapgen" --help >"$tmp/help" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] || fail "snapgen --help exited $rc: $(cat "$tmp/err")"

# Long options: the first word of each option line of --help (`-o,--output`
# gives --output); in the man page, the `.It Fl` tags of the OPTIONS list
# (mdoc's Fl adds one dash, so `Fl \-name` is --name).
help_opts=$(grep -E '^ +-' "$tmp/help" | awk '{print $1}' | grep -o -- '--[a-z][a-z-]*' | sort -u)
[ -n "$help_opts" ] || fail "no options found in snapgen --help"
man_opts=$(sed -n '/^\.Sh OPTIONS/,/^\.Sh /p' "$page" | grep '^\.It Fl' |
  sed 's/\\-/-/g' | grep -o -- 'Fl -[a-z][a-z-]*' | sed 's/^Fl -/--/' | sort -u)
[ -n "$man_opts" ] || fail "no options found in the OPTIONS section of snapgen.1"
only_help=$(comm -23 <(echo "$help_opts") <(echo "$man_opts"))
only_man=$(comm -13 <(echo "$help_opts") <(echo "$man_opts"))
[ -z "$only_help" ] || fail "in snapgen --help but not in snapgen.1: $(echo $only_help)"
[ -z "$only_man" ] || fail "in snapgen.1 but not in snapgen --help: $(echo $only_man)"

# Defaults: every "(default X)" of --help is stated in the man page.
mandoc -T ascii "$page" | col -b | tr -s ' \t\n' ' ' >"$tmp/man-text"
grep -o '(default [^)]*)' "$tmp/help" | sort -u | while read -r d; do
  v=${d#(default }
  v=${v%)}
  grep -q "default $v)" "$tmp/man-text" || echo "$d"
done >"$tmp/missing-defaults"
[ ! -s "$tmp/missing-defaults" ] ||
  fail "defaults in snapgen --help but not in snapgen.1: $(tr '\n' ' ' <"$tmp/missing-defaults")"

# The page names the exit statuses snapgen uses (0 written, 1 failure, 2 usage).
exit_tags=$(sed -n '/^\.Sh EXIT STATUS/,/^\.Sh /p' "$page" | grep '^\.It [0-9]' | awk '{print $2}' | tr '\n' ' ')
[ "$exit_tags" = "0 1 2 " ] || fail "EXIT STATUS of snapgen.1 lists '$exit_tags' (expected '0 1 2 ')"

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "snapgen man page: lint clean, options and defaults match --help"
