# Install rules and packaging, included from the top-level CMakeLists.txt once
# libcore's and the tools' targets exist.
#
#   cmake --install build --prefix P     the tools, man pages, libcore and its
#                                        headers, CMake package and pkg-config file
#   cpack --config build/CPackConfig.cmake -G DEB
#                                        presnap_VERSION_ARCH.deb (tools, pages)
#                                        presnap-dev_VERSION_ARCH.deb (libcore)
#
# Two install components, one per .deb:
#   tools  bin/ (every executable under tools/), share/man/man{1,5,7},
#          share/bash-completion/completions, share/doc/presnap
#   dev    lib/libpresnap_*.a, include/presnap/**, lib/cmake/presnap,
#          lib/pkgconfig/presnap.pc, share/doc/presnap-dev
#
# Everything installed is relocatable: the CMake package computes its prefix
# from its own location and presnap.pc from ${pcfiledir}, so
# `cmake --install --prefix P` works whatever prefix was configured.

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# libcore's installed libraries, in the order a static link needs them
# (a library before the libraries it uses). THE one list: add a new libcore
# library here and it is installed, exported as presnap::<name without the
# presnap_ prefix>, and listed in presnap.pc. presnap_analysis is left out on
# purpose: it links LLVM and is pea-analyze's engine, not an API.
set(PRESNAP_INSTALL_LIBRARIES
  presnap_serve
  presnap_select
  presnap_merge
  presnap_library
  presnap_persist
  presnap_runtime
  presnap_snapshot
  presnap_pmap
  presnap_core
)

# A libcore library missing from the list would be built but not installed;
# say so at configure time rather than in a user's link error.
function(_presnap_libcore_libraries dir out)
  get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
  set(found "")
  foreach(t IN LISTS targets)
    get_target_property(type ${t} TYPE)
    if(type MATCHES "^(STATIC|SHARED)_LIBRARY$")
      list(APPEND found ${t})
    endif()
  endforeach()
  foreach(sub IN LISTS subdirs)
    _presnap_libcore_libraries(${sub} sub_found)
    list(APPEND found ${sub_found})
  endforeach()
  set(${out} ${found} PARENT_SCOPE)
endfunction()
_presnap_libcore_libraries(${PROJECT_SOURCE_DIR}/libcore _libcore_libraries)
list(REMOVE_ITEM _libcore_libraries presnap_analysis ${PRESNAP_INSTALL_LIBRARIES})
if(_libcore_libraries)
  message(FATAL_ERROR "libcore libraries not installed: ${_libcore_libraries}; "
                      "add them to PRESNAP_INSTALL_LIBRARIES in cmake/install.cmake "
                      "(or remove them from that check if they are private)")
endif()

# libcore's CMakeLists name build-tree paths; the exported targets must not.
# Build-tree include directories become $<BUILD_INTERFACE:...> (the installed
# headers come from INCLUDES DESTINATION below), and xxhash, which Debian ships
# without a CMake package, is linked as the imported target xxHash::xxhash
# that presnapConfig.cmake defines.
foreach(lib IN LISTS PRESNAP_INSTALL_LIBRARIES)
  get_target_property(incs ${lib} INTERFACE_INCLUDE_DIRECTORIES)
  if(incs)
    set(wrapped "")
    foreach(dir IN LISTS incs)
      cmake_path(IS_PREFIX PROJECT_SOURCE_DIR "${dir}" NORMALIZE in_source)
      cmake_path(IS_PREFIX PROJECT_BINARY_DIR "${dir}" NORMALIZE in_binary)
      if(in_source OR in_binary)
        list(APPEND wrapped "$<BUILD_INTERFACE:${dir}>")
      else()
        list(APPEND wrapped "${dir}")
      endif()
    endforeach()
    set_target_properties(${lib} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${wrapped}")
  endif()
  get_target_property(links ${lib} INTERFACE_LINK_LIBRARIES)
  if(links)
    string(REPLACE "${XXHASH_LIBRARY}"
                   "$<BUILD_INTERFACE:${XXHASH_LIBRARY}>$<INSTALL_INTERFACE:xxHash::xxhash>"
                   links "${links}")
    set_target_properties(${lib} PROPERTIES INTERFACE_LINK_LIBRARIES "${links}")
  endif()
  string(REGEX REPLACE "^presnap_" "" export_name ${lib})
  set_target_properties(${lib} PROPERTIES EXPORT_NAME ${export_name})
  # The public headers use <expected> and <span>.
  target_compile_features(${lib} INTERFACE cxx_std_23)
endforeach()

install(TARGETS ${PRESNAP_INSTALL_LIBRARIES}
  EXPORT presnapTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# `cmake --install --strip` (and CPack) strip executables only; strip the
# archives' debug info too, as Debian's dh_strip does (symbols stay).
foreach(lib IN LISTS PRESNAP_INSTALL_LIBRARIES)
  install(CODE "if(CMAKE_INSTALL_DO_STRIP)
  execute_process(COMMAND \"${CMAKE_STRIP}\" --strip-debug
    \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/$<TARGET_LINKER_FILE_NAME:${lib}>\")
endif()" COMPONENT dev)
endforeach()
install(DIRECTORY ${PROJECT_SOURCE_DIR}/libcore/include/presnap
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev
  FILES_MATCHING PATTERN "*.h")
# Generated headers (presnap/version.h).
install(DIRECTORY ${PROJECT_BINARY_DIR}/libcore/public/presnap
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev
  FILES_MATCHING PATTERN "*.h")

set(PRESNAP_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/presnap)
install(EXPORT presnapTargets NAMESPACE presnap:: DESTINATION ${PRESNAP_CMAKE_DIR} COMPONENT dev)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/presnapConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/presnapConfig.cmake
  INSTALL_DESTINATION ${PRESNAP_CMAKE_DIR})
# 0.x: a minor version may break the API.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/cmake/presnapConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/presnapConfig.cmake
              ${PROJECT_BINARY_DIR}/cmake/presnapConfigVersion.cmake
  DESTINATION ${PRESNAP_CMAKE_DIR} COMPONENT dev)

# pkg-config: one presnap.pc for all of libcore (static libraries, so their
# dependencies are in Requires, not Requires.private).
set(PRESNAP_PC_LIBS "")
foreach(lib IN LISTS PRESNAP_INSTALL_LIBRARIES)
  string(APPEND PRESNAP_PC_LIBS " -l${lib}")
endforeach()
# presnap.pc finds the prefix from its own place, lib*/pkgconfig.
file(RELATIVE_PATH PRESNAP_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
string(REGEX REPLACE "/$" "" PRESNAP_PC_TO_PREFIX "${PRESNAP_PC_TO_PREFIX}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/presnap.pc.in ${PROJECT_BINARY_DIR}/cmake/presnap.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/cmake/presnap.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

# Every executable defined under tools/ is a tool.
function(_presnap_tools dir out)
  get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
  set(found "")
  foreach(t IN LISTS targets)
    get_target_property(type ${t} TYPE)
    if(type STREQUAL "EXECUTABLE")
      list(APPEND found ${t})
    endif()
  endforeach()
  foreach(sub IN LISTS subdirs)
    _presnap_tools(${sub} sub_found)
    list(APPEND found ${sub_found})
  endforeach()
  set(${out} ${found} PARENT_SCOPE)
endfunction()
_presnap_tools(${PROJECT_SOURCE_DIR}/tools PRESNAP_TOOLS)
install(TARGETS ${PRESNAP_TOOLS} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tools)

# Man pages by section, where man finds them (PREFIX/share/man/manN).
foreach(section 1 5 7)
  file(GLOB pages CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/man/*.${section})
  install(FILES ${pages} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section} COMPONENT tools)
endforeach()

# Bash completions, one file per tool (bash-completion loads them on demand).
foreach(tool IN LISTS PRESNAP_TOOLS)
  install(FILES ${PROJECT_SOURCE_DIR}/completions/presnap.bash
    DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
    RENAME ${tool} COMPONENT tools)
endforeach()

install(FILES ${PROJECT_SOURCE_DIR}/LICENSE ${PROJECT_SOURCE_DIR}/CHANGELOG.md
  DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT tools)
# Debian wants each package's licence as share/doc/PACKAGE/copyright.
install(FILES ${PROJECT_SOURCE_DIR}/LICENSE RENAME copyright
  DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/presnap COMPONENT tools)
install(FILES ${PROJECT_SOURCE_DIR}/LICENSE RENAME copyright
  DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/presnap-dev COMPONENT dev)

include(${CMAKE_CURRENT_LIST_DIR}/package.cmake)
