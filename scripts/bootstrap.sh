#!/usr/bin/env bash
# Set up a fresh Debian 12 machine for presnap and build it, then run one job:
#   scripts/bootstrap.sh demo   build the tools and one example (not the test
#                               suite), then run the pipeline on it: a cold
#                               boot, the library, the model, held-out requests
#                               through select | merge | run and --serve
#                               against the native run, and a first-request
#                               table (scripts/demo.sh)
#   scripts/bootstrap.sh test   build everything, then run the whole test
#                               suite (ctest)
# Installs only missing Debian packages (apt-get); needs root for that.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
job=${1:-demo}
build=${PRESNAP_BUILD_DIR:-$here/build}
case "$job" in
  demo | test) ;;
  *) echo "bootstrap: error: unknown job '$job' (expected demo or test)" >&2; exit 2 ;;
esac

missing=()
while read -r pkg; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done <"$here/scripts/debian-packages.txt"
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi

case "$job" in
  demo)
    # Only what the demo runs: the test suite and fuzzers build with `test`.
    cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$build" -j"$(nproc)" --target snaprun snapgen snapselect snapmerge pea-analyze \
      presnap_restore_pool example_numtheory
    exec "$here/scripts/demo.sh" "$build" ;;
  test)
    cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPRESNAP_BUILD_TESTS=ON >/dev/null
    cmake --build "$build" -j"$(nproc)"
    cd "$build"
    exec ctest --output-on-failure -j"$(nproc)" --timeout 600 ;;
esac
