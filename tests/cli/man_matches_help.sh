#!/usr/bin/env bash
# Proves that a tool's man page is well formed and that it and `TOOL --help`
# name the same long options with the same defaults (and, when given, the
# same exit statuses). One script for every tool.
# Usage: man_matches_help.sh TOOL_BINARY MAN_PAGE EXIT_STATUSES [PAGE...]
#   EXIT_STATUSES: the .It tags EXIT STATUS must list, e.g. "0 1 2", or "-"
#   PAGE...: more pages that must pass lint (e.g. a section 7 page)
set -u
tool=$1
page=$2
exit_statuses=$3
shift 3
name=$(basename "$page")
bin=$(basename "$tool")
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

# The pages pass mandoc's lint at warning level.
for p in "$page" "$@"; do
  if [ ! -f "$p" ]; then
    fail "$p is missing"
    continue
  fi
  mandoc -T lint -W warning "$p" >"$tmp/lint" 2>&1 || fail "mandoc lint $(basename "$p"): $(cat "$tmp/lint")"
done

"$tool" --help >"$tmp/help" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] || fail "$bin --help exited $rc: $(cat "$tmp/err")"

# Long options: the first word of each option line of --help (`-o,--output`
# gives --output); in the man page, the `.It Fl` tags of the OPTIONS list
# (mdoc's Fl adds one dash, so `Fl \-name` is --name).
help_opts=$(grep -E '^ +-' "$tmp/help" | awk '{print $1}' | grep -o -- '--[a-z][a-zA-Z0-9-]*' | sort -u)
[ -n "$help_opts" ] || fail "no options found in $bin --help"
man_opts=$(sed -n '/^\.Sh OPTIONS/,/^\.Sh /p' "$page" | grep '^\.It Fl' |
  sed 's/\\-/-/g' | grep -o -- 'Fl -[a-z][a-zA-Z0-9-]*' | sed 's/^Fl -/--/' | sort -u)
[ -n "$man_opts" ] || fail "no options found in the OPTIONS section of $name"
only_help=$(comm -23 <(echo "$help_opts") <(echo "$man_opts"))
only_man=$(comm -13 <(echo "$help_opts") <(echo "$man_opts"))
[ -z "$only_help" ] || fail "in $bin --help but not in $name: $(echo $only_help)"
[ -z "$only_man" ] || fail "in $name but not in $bin --help: $(echo $only_man)"

# Defaults: every "(default X)" of --help is stated in the man page.
mandoc -T ascii "$page" | col -b | tr -s ' \t\n' ' ' >"$tmp/man-text"
grep -o '(default [^)]*)' "$tmp/help" | sort -u | while read -r d; do
  v=${d#(default }
  v=${v%)}
  grep -q "default $v)" "$tmp/man-text" || echo "$d"
done >"$tmp/missing-defaults"
[ ! -s "$tmp/missing-defaults" ] ||
  fail "defaults in $bin --help but not in $name: $(tr '\n' ' ' <"$tmp/missing-defaults")"

# The page names the exit statuses the tool uses.
if [ "$exit_statuses" != "-" ]; then
  exit_tags=$(sed -n '/^\.Sh EXIT STATUS/,/^\.Sh /p' "$page" | grep '^\.It [0-9]' | awk '{print $2}' | tr '\n' ' ')
  [ "$exit_tags" = "$exit_statuses " ] || fail "EXIT STATUS of $name lists '$exit_tags' (expected '$exit_statuses ')"
fi

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "$name: lint clean, options and defaults match $bin --help"
