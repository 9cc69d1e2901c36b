# Shared helpers for the KVM-tier tests. Source it; SNAPRUN must be set.
set -uo pipefail

# ctest treats exit 77 as "skipped" (SKIP_RETURN_CODE).
require_kvm() {
    if [[ ! -c /dev/kvm ]]; then
        echo "SKIP: /dev/kvm is missing: KVM tests need a host with KVM" >&2
        exit 77
    fi
    if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
        echo "SKIP: /dev/kvm is not readable and writable by $(id -un)" >&2
        exit 77
    fi
}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# expect_contains FILE TEXT: FILE must contain TEXT (fixed string).
expect_contains() {
    grep -qF -- "$2" "$1" || { echo "--- $1:" >&2; cat "$1" >&2; fail "expected '$2' in $1"; }
}

# make_map BITCODE...: $work/map.pmap, pea-analyze's map of $PROGRAM ($PEA).
make_map() {
    "$PEA" "$@" --elf "$PROGRAM" -o "$work/map.pmap" 2>"$work/pea.err" ||
        { cat "$work/pea.err" >&2; fail "pea-analyze failed"; }
}
