#!/usr/bin/env bash
# What `cmake --install` gives a user, and two programs built against it.
#   install_test.sh install BUILD PREFIX CMAKE   fixture: a fresh install into PREFIX
#   install_test.sh layout PREFIX SOURCE TOOLS LIBS
#       every tool in bin/, every page of SOURCE/man/ where man finds it, every
#       public header, the libraries, the CMake package, presnap.pc, completions
#   install_test.sh cmake PREFIX CONSUMER WORK CMAKE
#       consumer/ configured with find_package(presnap), built and run
#   install_test.sh pkgconfig PREFIX CONSUMER WORK CXX
#       consumer/main.cpp built with `pkg-config --cflags --libs presnap`, run
# TOOLS and LIBS are ;-separated lists (CMake's).
set -uo pipefail

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

mode=$1
shift
case "$mode" in
install)
    build=$1 prefix=$2 cmake=$3
    rm -rf "$prefix"
    "$cmake" --install "$build" --prefix "$prefix" >/dev/null || fail "cmake --install $build --prefix $prefix"
    ;;

layout)
    prefix=$1 source=$2
    IFS=';' read -ra tools <<<"$3"
    IFS=';' read -ra libs <<<"$4"
    ((${#tools[@]} && ${#libs[@]})) || fail "no tools or no libraries given: the test would prove nothing"
    for tool in "${tools[@]}"; do
        [[ -x $prefix/bin/$tool ]] || fail "bin/$tool is not installed"
        [[ -f $prefix/share/bash-completion/completions/$tool ]] || fail "no bash completion for $tool"
    done
    "$prefix/bin/snaprun" --version || fail "the installed snaprun does not run"
    # A completion offers the tool's own options (read from its --help).
    offered=$(PATH="$prefix/bin:$PATH" bash -c '
        source "$1/share/bash-completion/completions/snaprun"
        COMP_WORDS=(snaprun --stat); COMP_CWORD=1; _presnap_tool; echo "${COMPREPLY[*]}"' - "$prefix")
    [[ $offered == --stats ]] || fail "completing 'snaprun --stat' offered '$offered', expected --stats"
    # man finds pages through PATH (PREFIX/bin -> PREFIX/share/man).
    for page in "$source"/man/*.[157]; do
        name=$(basename "$page")
        section=${name##*.}
        [[ -f $prefix/share/man/man$section/$name ]] || fail "share/man/man$section/$name is not installed"
        found=$(env -u MANPATH PATH="$prefix/bin:$PATH" man -w "$section" "${name%.*}" 2>&1) ||
            fail "man -w $section ${name%.*} with $prefix/bin in PATH: $found"
        [[ $found == "$prefix/share/man/man$section/$name"* ]] ||
            fail "man -w $section ${name%.*} found $found, not the installed page"
    done
    (cd "$source/libcore/include" && find presnap -name '*.h') | while read -r header; do
        cmp -s "$source/libcore/include/$header" "$prefix/include/$header" || fail "include/$header is not installed"
    done || exit 1
    [[ -f $prefix/include/presnap/guest_abi.h ]] || fail "include/presnap/guest_abi.h is not installed"
    for lib in "${libs[@]}"; do
        [[ -f $prefix/lib/lib$lib.a ]] || fail "lib/lib$lib.a is not installed"
    done
    for f in lib/cmake/presnap/presnapConfig.cmake lib/cmake/presnap/presnapConfigVersion.cmake \
        lib/cmake/presnap/presnapTargets.cmake lib/pkgconfig/presnap.pc share/doc/presnap/LICENSE; do
        [[ -f $prefix/$f ]] || fail "$f is not installed"
    done
    # Nothing in the tree may point back at the build or source tree.
    if grep -rlF -e "$source" "$prefix/lib/cmake" "$prefix/lib/pkgconfig"; then
        fail "the CMake package or presnap.pc names the source tree"
    fi
    echo "installed: ${#tools[@]} tools, $(find "$prefix/share/man" -type f | wc -l) man pages," \
        "$(find "$prefix/include" -name '*.h' | wc -l) headers, ${#libs[@]} libraries"
    ;;

cmake)
    prefix=$1 consumer=$2 work=$3 cmake=$4
    rm -rf "$work" && mkdir -p "$work"
    "$cmake" -S "$consumer" -B "$work" -DCMAKE_PREFIX_PATH="$prefix" >"$work/configure.log" 2>&1 ||
        { cat "$work/configure.log" >&2; fail "find_package(presnap) with CMAKE_PREFIX_PATH=$prefix"; }
    "$cmake" --build "$work" >"$work/build.log" 2>&1 ||
        { cat "$work/build.log" >&2; fail "building the find_package consumer"; }
    "$work/consumer" || fail "the find_package consumer exited $?"
    ;;

pkgconfig)
    prefix=$1 consumer=$2 work=$3 cxx=$4
    command -v pkg-config >/dev/null || { echo "SKIP: pkg-config is missing (Debian: pkg-config)" >&2; exit 77; }
    rm -rf "$work" && mkdir -p "$work"
    flags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs presnap) ||
        fail "pkg-config --cflags --libs presnap with PKG_CONFIG_PATH=$prefix/lib/pkgconfig"
    echo "pkg-config: $flags"
    # shellcheck disable=SC2086 # flags are words
    "$cxx" -std=c++23 -o "$work/consumer" "$consumer/main.cpp" $flags || fail "building the pkg-config consumer"
    "$work/consumer" || fail "the pkg-config consumer exited $?"
    ;;

*)
    fail "unknown mode '$mode'"
    ;;
esac
