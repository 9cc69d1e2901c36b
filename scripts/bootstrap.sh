#!/usr/bin/env bash
# Set up a fresh Debian 12 machine for presnap and build it, then run one job:
#   scripts/bootstrap.sh demo   build, then serve an example from a cold boot
#                               and compare its responses with the native run
#   scripts/bootstrap.sh test   build, then run the whole test suite (ctest)
# Installs only missing Debian packages (apt-get); needs root for that.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
job=${1:-demo}
build=${PRESNAP_BUILD_DIR:-$here/build}

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

cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)"

case "$job" in
  demo)
    exec "$here/scripts/demo.sh" "$build" ;;
  test)
    cd "$build"
    exec ctest --output-on-failure -j"$(nproc)" --timeout 600 ;;
  *)
    echo "bootstrap: error: unknown job '$job' (expected demo or test)" >&2; exit 2 ;;
esac
