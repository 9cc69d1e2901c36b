# CPack: two Debian packages from the install components (cmake/install.cmake).
#
#   presnap      the tools, their man pages and bash completions; needs only
#                the shared libraries the tools link (found by dpkg-shlibdeps),
#                so `dpkg -i` works on a clean Debian 12 once those are there
#   presnap-dev  libcore's static libraries, headers, CMake package and
#                pkg-config file; needs the -dev packages of fmt, zstd, xxhash
#
# Build them from a configured and built tree:
#   cpack --config build/CPackConfig.cmake -G DEB -B OUTDIR

set(CPACK_PACKAGE_NAME presnap)
set(CPACK_PACKAGE_VENDOR "the presnap authors")
set(CPACK_PACKAGE_CONTACT "presnap maintainers <maintainers@users.noreply.b-seed-2e115233.example>")
# No CPACK_PACKAGE_DESCRIPTION_SUMMARY: CPack would put that one summary on
# both packages; each component's description starts with its own.
set(PRESNAP_DEB_DESCRIPTION
"presnap runs unmodified static x86-64 Linux executables that serve requests
on stdin in a tiny KVM guest with a guest kernel of its own, and makes them
start fast by restoring them from snapshots specialised for the code path each
request is about to take.")
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_GENERATOR DEB)
# Release binaries in the package; the build tree keeps its debug info.
set(CPACK_STRIP_FILES ON)

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL tools dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)

set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME presnap)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SHLIBDEPS ON)
list(JOIN PRESNAP_TOOLS ", " _tools)
set(CPACK_COMPONENT_TOOLS_DESCRIPTION
"fast function start-up from specialised KVM snapshots
${PRESNAP_DEB_DESCRIPTION}
.
This package has the tools (${_tools}), their
manual pages and bash completions. snaprun needs read-write access to /dev/kvm.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME presnap-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "libfmt-dev, libzstd-dev, libxxhash-dev, linux-libc-dev")
set(CPACK_DEBIAN_DEV_PACKAGE_SUGGESTS "pkg-config, cmake")
list(TRANSFORM PRESNAP_INSTALL_LIBRARIES REPLACE "^presnap_" "presnap::" OUTPUT_VARIABLE _targets)
list(JOIN _targets ", " _targets)
set(CPACK_COMPONENT_DEV_DESCRIPTION
"presnap's library (libcore): development files
${PRESNAP_DEB_DESCRIPTION}
.
This package has libcore as static libraries with its C++23 headers, a CMake
package (find_package(presnap): ${_targets}) and a pkg-config file
(presnap.pc).")

include(CPack)
