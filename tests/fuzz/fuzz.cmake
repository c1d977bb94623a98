# fuzz.cmake — the libFuzzer targets of tests/fuzz/, built only in a clang build
# configured with -DDDP_FUZZ=ON (make fuzz does it in build-fuzz/); the normal build never
# sees them. Each target runs for DDP_FUZZ_SECONDS (ctest label fuzz) from its seed corpus
# tests/fuzz/corpus/<target>/, which holds the inputs of every crash found so far, so a
# regression fails at once. New inputs go to build-fuzz/corpus/<target>/, crashes to
# build-fuzz/fuzz-artifacts/ (named in the test's output).
set(DDP_FUZZ_SECONDS 12 CACHE STRING "seconds each fuzz target runs under ctest")

# The code under test, by target: only the sources each decoder needs, so the fuzz build
# stays small (no Gloo, no Lua).
file(GLOB FUZZ_BASE_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/base/*.c)
set(FUZZ_protocol_SOURCES ${CMAKE_SOURCE_DIR}/src/runtime/protocol.c ${FUZZ_BASE_SOURCES})
set(FUZZ_protocol_LIBS PkgConfig::SODIUM)
set(FUZZ_store_SOURCES ${CMAKE_SOURCE_DIR}/src/dist/store_server.c
                       ${CMAKE_SOURCE_DIR}/src/dist/store.c ${FUZZ_BASE_SOURCES})
set(FUZZ_store_LIBS PkgConfig::SODIUM Threads::Threads)
set(FUZZ_cli_SOURCES ${CMAKE_SOURCE_DIR}/src/runtime/cli.c ${CMAKE_SOURCE_DIR}/src/dist/comm.c
                     ${FUZZ_BASE_SOURCES})
set(FUZZ_cli_LIBS)
set(FUZZ_safetensors_SOURCES)
set(FUZZ_safetensors_LIBS ddp_tensor)
set(FUZZ_npy_SOURCES)
set(FUZZ_npy_LIBS ddp_tensor)

# ctest ends a test at its TIMEOUT: leave each run its time plus two minutes to start
# (under ASan) and to write its final figures
math(EXPR DDP_FUZZ_TIMEOUT "${DDP_FUZZ_SECONDS} + 120")

add_custom_target(fuzz_all)
foreach(target protocol store cli safetensors npy)
  set(name fuzz_${target})
  add_executable(${name} ${CMAKE_SOURCE_DIR}/tests/fuzz/${name}.c ${FUZZ_${target}_SOURCES})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/src ${CMAKE_BINARY_DIR}/generated)
  target_link_libraries(${name} PRIVATE ${FUZZ_${target}_LIBS} m)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  add_dependencies(fuzz_all ${name})
  file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/corpus/${name} ${CMAKE_BINARY_DIR}/fuzz-artifacts)
  add_test(NAME fuzz.${target}
           COMMAND ${name} -max_total_time=${DDP_FUZZ_SECONDS} -max_len=8192 -timeout=10
                   -rss_limit_mb=2048 -print_final_stats=1
                   -artifact_prefix=${CMAKE_BINARY_DIR}/fuzz-artifacts/${name}-
                   ${CMAKE_BINARY_DIR}/corpus/${name}
                   ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${name})
  set_tests_properties(fuzz.${target} PROPERTIES LABELS fuzz
                       TIMEOUT ${DDP_FUZZ_TIMEOUT} ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1")
endforeach()
