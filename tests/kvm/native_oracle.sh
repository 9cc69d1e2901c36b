#!/usr/bin/env bash
# The native run is the oracle: PROGRAM's responses and exit status from
# `snaprun --cold` must equal those of the same binary run natively.
#   native_oracle.sh SNAPRUN PROGRAM REQUESTS [ROOTFS|-] [ARGS...]
# With ROOTFS, the native run's working directory is ROOTFS (requests use
# relative paths) and snaprun gets --rootfs ROOTFS.
source "$(dirname "$0")/lib.sh"
SNAPRUN=$1 PROGRAM=$2 REQUESTS=$3 ROOTFS=${4:--}
shift 4 2>/dev/null || shift $#
require_kvm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ "$ROOTFS" != "-" ]]; then
    (cd "$ROOTFS" && "$PROGRAM" "$@" <"$REQUESTS" >"$work/native.out")
    native_rc=$?
    "$SNAPRUN" --rootfs "$ROOTFS" --cold "$PROGRAM" "$@" <"$REQUESTS" >"$work/vm.out" 2>"$work/vm.err"
    vm_rc=$?
else
    "$PROGRAM" "$@" <"$REQUESTS" >"$work/native.out"
    native_rc=$?
    "$SNAPRUN" --cold "$PROGRAM" "$@" <"$REQUESTS" >"$work/vm.out" 2>"$work/vm.err"
    vm_rc=$?
fi
cat "$work/vm.err" >&2
[[ -s "$work/native.out" ]] || fail "the native run printed nothing: the test would prove nothing"
if ! cmp "$work/native.out" "$work/vm.out"; then
    diff "$work/native.out" "$work/vm.out" | head -20 >&2
    fail "responses differ from the native run"
fi
[[ $native_rc == "$vm_rc" ]] || fail "exit status $vm_rc differs from the native $native_rc"
echo "ok: $(wc -l <"$work/native.out") response lines identical to native, exit status $vm_rc"
