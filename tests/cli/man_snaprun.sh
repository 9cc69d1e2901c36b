#!/usr/bin/env bash
# Proves that snaprun's man pages are well formed and that snaprun(1) and
# `snaprun --help` name the same long options with the same defaults.
# Usage: man_snaprun.sh SNAPRUN MANDIR
set -u
snaprun=$1
mandir=$2
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

if ! command -v mandoc >/dev/null; then
  echo "FAIL: mandoc not installed (scripts/debian-packages.txt lists it)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Both pages pass mandoc's lint at warning level.
for page in snaprun.1 presnap-guest.7; do
  if [ ! -f "$mandir/$page" ]; then
    fail "$mandir/$page is missing"
    continue
  fi
  mandoc -T lint -W warning "$mandir/$page" >"$tmp/lint" 2>&1 ||
    fail "mandoc lint $page: $(cat "$tmp/lint")"
done

"$snaprun" --help >"$tmp/help" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] || fail "snaprun --help exited $rc: $(cat "$tmp/err")"

# Long options: the first word of each option line of --help; in the man
# page, the `.It Fl \-name` tags of the OPTIONS list (mdoc's Fl adds one dash).
help_opts=$(grep -E '^ +-' "$tmp/help" | awk '{print $1}' | grep -o -- '--[a-z][a-z-]*' | sort -u)
[ -n "$help_opts" ] || fail "no options found in snaprun --help"
man_opts=$(sed -n '/^\.Sh OPTIONS/,/^\.Sh /p' "$mandir/snaprun.1" | grep '^\.It Fl' |
  sed 's/\\-/-/g' | grep -o -- 'Fl -[a-z][a-z-]*' | sed 's/^Fl -/--/' | sort -u)
[ -n "$man_opts" ] || fail "no options found in the OPTIONS section of snaprun.1"
only_help=$(comm -23 <(echo "$help_opts") <(echo "$man_opts"))
only_man=$(comm -13 <(echo "$help_opts") <(echo "$man_opts"))
[ -z "$only_help" ] || fail "in snaprun --help but not in snaprun.1: $(echo $only_help)"
[ -z "$only_man" ] || fail "in snaprun.1 but not in snaprun --help: $(echo $only_man)"

# Defaults: every "(default X)" of --help is stated in the man page's OPTIONS.
mandoc -T ascii "$mandir/snaprun.1" | col -b | tr -s ' \t\n' ' ' >"$tmp/man-text"
grep -o '(default [^)]*)' "$tmp/help" | sort -u | while read -r d; do
  v=${d#(default }
  v=${v%)}
  grep -q "default $v)" "$tmp/man-text" || echo "$d"
done >"$tmp/missing-defaults"
[ ! -s "$tmp/missing-defaults" ] ||
  fail "defaults in snaprun --help but not in snaprun.1: $(tr '\n' ' ' <"$tmp/missing-defaults")"

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "snaprun man pages: lint clean, options and defaults match --help"
