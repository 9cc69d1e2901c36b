# snaprun --serve (the serving mode): included from tests/kvm/CMakeLists.txt.
# Libraries are made the way users make them (pea-analyze, then snapgen), so
# these tests need pea-analyze and clang-14.
add_executable(guest_serve ${GUEST_DIR}/serve_guest.c)
target_compile_options(guest_serve PRIVATE -O1)
target_link_options(guest_serve PRIVATE -static)

find_program(PRESNAP_SERVE_CLANG14 NAMES clang-14)
if(TARGET pea-analyze AND PRESNAP_SERVE_CLANG14)
  set(SERVE_BC ${CMAKE_CURRENT_BINARY_DIR}/serve_bc/serve_guest.bc)
  add_custom_command(OUTPUT ${SERVE_BC}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/serve_bc
    COMMAND ${PRESNAP_SERVE_CLANG14} -O1 -Xclang -disable-llvm-passes -g -emit-llvm -c
            ${GUEST_DIR}/serve_guest.c -o ${SERVE_BC}
    DEPENDS ${GUEST_DIR}/serve_guest.c VERBATIM)
  add_custom_target(guest_serve_bc ALL DEPENDS ${SERVE_BC})

  set(SERVE bash ${KVM_DIR}/serve.sh $<TARGET_FILE:snaprun> $<TARGET_FILE:snapgen>
      $<TARGET_FILE:pea-analyze> ${KVM_DIR}/serve_client.py)
  set(SERVE_TESTS "")
  get_property(serve_examples GLOBAL PROPERTY PRESNAP_EXAMPLES)
  foreach(ex IN LISTS serve_examples)
    get_property(bin GLOBAL PROPERTY PRESNAP_EXAMPLE_${ex}_BINARY)
    get_property(req GLOBAL PROPERTY PRESNAP_EXAMPLE_${ex}_REQUESTS)
    presnap_example_bitcode(${ex} bcs)
    add_test(NAME kvm/serve/native_oracle_${ex} COMMAND ${SERVE} oracle ${bin} ${req} ${bcs})
    list(APPEND SERVE_TESTS kvm/serve/native_oracle_${ex})
    if(ex STREQUAL "numtheory")
      add_test(NAME kvm/serve/fallback_${ex} COMMAND ${SERVE} fallback ${bin} ${req} ${bcs})
      list(APPEND SERVE_TESTS kvm/serve/fallback_${ex})
    endif()
  endforeach()
  foreach(case isolation soak clients reload history refused)
    add_test(NAME kvm/serve/${case} COMMAND ${SERVE} ${case} $<TARGET_FILE:guest_serve>
             ${GUEST_DIR}/serve.requests ${SERVE_BC})
    list(APPEND SERVE_TESTS kvm/serve/${case})
  endforeach()
  set_tests_properties(${SERVE_TESTS} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)

  # The benchmark's quick mode: every contender row in the report.
  add_test(NAME kvm/serve/bench_quick
           COMMAND bash ${KVM_DIR}/serve_bench_quick.sh ${PROJECT_SOURCE_DIR}/bench/run
                   ${CMAKE_BINARY_DIR})
  set_tests_properties(kvm/serve/bench_quick PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 900)
endif()
