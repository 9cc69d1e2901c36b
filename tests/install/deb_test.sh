#!/usr/bin/env bash
# The Debian packages: CPack builds them from the build tree, their control
# data and contents are what a user installs, and the tools run from the
# unpacked package: `snaprun --version` and one cold run whose responses must
# equal the native run's (the oracle).
# A program is also built against the unpacked presnap-dev, with pkg-config
# and with find_package.
#   deb_test.sh CPACK BUILD WORK VERSION PROGRAM REQUESTS CONSUMER CXX CMAKE
# Skips (77) without dpkg-deb or dpkg-shlibdeps; checks the packages and then
# skips the cold run without read-write /dev/kvm.
set -uo pipefail
cpack=$1 build=$2 work=$3 version=$4 program=$5 requests=$6 consumer=$7 cxx=$8 cmake=$9

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
for tool in dpkg-deb dpkg-shlibdeps; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool is missing (Debian: dpkg-dev)" >&2; exit 77; }
done

rm -rf "$work" && mkdir -p "$work"
"$cpack" --config "$build/CPackConfig.cmake" -G DEB -B "$work/out" >"$work/cpack.log" 2>&1 ||
    { cat "$work/cpack.log" >&2; fail "cpack -G DEB"; }
arch=$(dpkg --print-architecture)
tools_deb=$work/out/presnap_${version}_$arch.deb
dev_deb=$work/out/presnap-dev_${version}_$arch.deb
[[ -f $tools_deb && -f $dev_deb ]] || { ls -l "$work/out" >&2; fail "expected presnap and presnap-dev .debs"; }

# field DEB NAME: one control field's value.
field() { dpkg-deb --field "$1" "$2"; }
expect_field() {
    local value
    value=$(field "$1" "$2")
    # shellcheck disable=SC2053 # $3 is a glob pattern
    [[ $value == $3 ]] || fail "$(basename "$1"): $2 is '$value', expected $3"
}
for deb in "$tools_deb" "$dev_deb"; do
    dpkg-deb --info "$deb" >/dev/null || fail "dpkg-deb --info $deb"
    expect_field "$deb" Version "$version"
    expect_field "$deb" Architecture "$arch"
    expect_field "$deb" Maintainer "*<*@*>"
    expect_field "$deb" Description "?*"
done
expect_field "$tools_deb" Package presnap
expect_field "$dev_deb" Package presnap-dev
# dpkg-shlibdeps' list: the shared libraries the tools link.
for dep in libc6 libstdc++6 libfmt9 libzstd1 libxxhash0; do
    expect_field "$tools_deb" Depends "*$dep*"
done
for dep in libfmt-dev libzstd-dev libxxhash-dev; do
    expect_field "$dev_deb" Depends "*$dep*"
done

dpkg-deb --contents "$tools_deb" >"$work/tools.contents" || fail "dpkg-deb --contents $tools_deb"
dpkg-deb --contents "$dev_deb" >"$work/dev.contents" || fail "dpkg-deb --contents $dev_deb"
expect_path() {
    grep -qE " \./usr/$2\$" "$1" || { cat "$1" >&2; fail "$(basename "$1" .contents) package lacks /usr/$2"; }
}
for tool in snaprun snapgen snapinfo snapselect snapmerge pea-analyze; do
    expect_path "$work/tools.contents" "bin/$tool"
    expect_path "$work/tools.contents" "share/bash-completion/completions/$tool"
done
for page in man1/snaprun.1 man1/snapgen.1 man1/snapinfo.1 man1/snapselect.1 man1/snapmerge.1 \
    man1/pea-analyze.1 man5/presnap-snapshot.5 man5/presnap-library.5 man5/presnap-selection.5 \
    man7/presnap-guest.7; do
    expect_path "$work/tools.contents" "share/man/$page"
done
expect_path "$work/tools.contents" share/doc/presnap/copyright
for f in share/doc/presnap-dev/copyright include/presnap/guest_abi.h lib/libpresnap_core.a lib/cmake/presnap/presnapConfig.cmake \
    lib/pkgconfig/presnap.pc; do
    expect_path "$work/dev.contents" "$f"
done
if grep -E '\./usr/(include|lib)/' "$work/tools.contents"; then
    fail "the presnap package carries development files"
fi

root=$work/root
dpkg-deb -x "$tools_deb" "$root" || fail "dpkg-deb -x $tools_deb"
for deb in "$tools_deb" "$dev_deb"; do
    echo "$(basename "$deb"): $(stat -c %s "$deb") bytes, Depends: $(field "$deb" Depends)"
done
"$root/usr/bin/snaprun" --version || fail "the packaged snaprun --version exited $?"
dpkg-deb -x "$dev_deb" "$work/dev" || fail "dpkg-deb -x $dev_deb"
bash "$(dirname "$0")/install_test.sh" pkgconfig "$work/dev/usr" "$consumer" "$work/consumer" "$cxx" ||
    fail "a program built with pkg-config against the unpacked presnap-dev"
bash "$(dirname "$0")/install_test.sh" cmake "$work/dev/usr" "$consumer" "$work/consumer_cmake" "$cmake" ||
    fail "a program built with find_package against the unpacked presnap-dev"
# The packaged binaries are stripped.
file "$root/usr/bin/snaprun" | grep -q ', stripped' || fail "the packaged snaprun is not stripped"

if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "SKIP: packages checked, but the cold run needs read-write /dev/kvm" >&2
    exit 77
fi
"$program" <"$requests" >"$work/native.out" || fail "the native run of $program exited $?"
"$root/usr/bin/snaprun" --cold "$program" <"$requests" >"$work/vm.out" || fail "the packaged snaprun --cold exited $?"
cmp "$work/native.out" "$work/vm.out" || fail "the packaged snaprun's responses differ from the native run"
echo "packaged snaprun --cold: $(wc -l <"$work/vm.out") responses identical to the native run"
