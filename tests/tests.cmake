# tests.cmake — every test ctest runs. Included from the top CMakeLists.txt.
#
# tests/unit/test_<layer>_*.c  cmocka programs linked against that layer's library
# tests/unit/support/support_<layer>_*.c  helpers those programs share, built into one
#                              static library per layer (ddp_test_<layer>) and linked
#                              into the tests of that layer and of every layer after it
#                              in DDP_TEST_LAYERS; included as "support/support_....h"
# tests/lua/test_*.lua         run by ddplab itself; a first line "-- ranks: 1 2 4"
#                              runs the file once per rank count (default: 1)
# tests/gpu/test_*.lua         GPU checks run by ddplab on 1 rank (label gpu); where no
#                              GPU is visible they print why and exit 77, which ctest
#                              reports as skipped (SKIP_RETURN_CODE)
# tests/e2e/test_*.sh          whole-program checks (real terminal via tmux, processes);
#                              helpers they source (tmux_lib.sh, check_lib.sh) are not tests
if(DDP_FUZZ) # a fuzz build (make fuzz) holds the fuzz targets and nothing else
  include(${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz.cmake)
  return()
endif()

set(DDP_LAYER_base ddp_base)
set(DDP_LAYER_tensor ddp_tensor)
set(DDP_LAYER_nn ddp_nn)
set(DDP_LAYER_dist ddp_dist)
set(DDP_LAYER_lua ddp_lua)
set(DDP_LAYER_runtime ddp_runtime)

# Layers in build order: a test may use the support code of its own layer and of the
# layers before it (nn and dist both sit on tensor; the order between them is arbitrary).
set(DDP_TEST_LAYERS base tensor nn dist lua runtime)
file(GLOB UNIT_SUPPORT_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/support/support_*.c)
foreach(src ${UNIT_SUPPORT_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  string(REGEX MATCH "^support_([a-z]+)_" unused ${name})
  if(NOT CMAKE_MATCH_1 OR NOT DDP_LAYER_${CMAKE_MATCH_1})
    message(FATAL_ERROR "${src}: name it support_<layer>_*.c with a layer of src/")
  endif()
endforeach()
set(DDP_TEST_SUPPORT_LIBS)
foreach(support_layer ${DDP_TEST_LAYERS})
  set(support_sources ${UNIT_SUPPORT_SOURCES})
  list(FILTER support_sources INCLUDE REGEX "/support_${support_layer}_[^/]*\\.c$")
  if(support_sources)
    add_library(ddp_test_${support_layer} STATIC ${support_sources})
    target_compile_options(ddp_test_${support_layer} PRIVATE ${DDP_C_WARNINGS})
    target_include_directories(ddp_test_${support_layer} PUBLIC ${CMAKE_SOURCE_DIR}/tests/unit)
    target_link_libraries(ddp_test_${support_layer} PUBLIC ${DDP_LAYER_${support_layer}}
                                                           PkgConfig::CMOCKA)
    list(APPEND DDP_TEST_SUPPORT_LIBS ddp_test_${support_layer})
  endif()
  set(DDP_TEST_SUPPORT_UPTO_${support_layer} ${DDP_TEST_SUPPORT_LIBS})
endforeach()

file(GLOB UNIT_TEST_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
foreach(src ${UNIT_TEST_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  string(REGEX MATCH "^test_([a-z]+)" unused ${name})
  set(test_layer ${CMAKE_MATCH_1})
  set(layer ${DDP_LAYER_${test_layer}})
  if(NOT layer)
    message(FATAL_ERROR "${src}: name it test_<layer>_*.c with a layer of src/")
  endif()
  add_executable(${name} ${src})
  target_compile_options(${name} PRIVATE ${DDP_C_WARNINGS} -Wno-missing-prototypes)
  target_compile_definitions(${name} PRIVATE
    DDP_TEST_FIXTURES="${CMAKE_SOURCE_DIR}/tests/fixtures"
    DDP_TEST_BINARY="$<TARGET_FILE:ddplab>")
  target_link_libraries(${name} PRIVATE ${layer} ${DDP_TEST_SUPPORT_UPTO_${test_layer}}
                                        PkgConfig::CMOCKA)
  add_test(NAME unit.${name} COMMAND ${name})
  set_tests_properties(unit.${name} PROPERTIES LABELS "unit;san" TIMEOUT 300)
endforeach()

file(GLOB LUA_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/lua/test_*.lua)
foreach(file ${LUA_TESTS})
  get_filename_component(name ${file} NAME_WE)
  file(STRINGS ${file} first_line LIMIT_COUNT 1)
  set(rank_counts 1)
  if(first_line MATCHES "^-- ranks: *([0-9 ]+)")
    string(REPLACE " " ";" rank_counts "${CMAKE_MATCH_1}")
    list(FILTER rank_counts EXCLUDE REGEX "^$")
  endif()
  foreach(n ${rank_counts})
    add_test(NAME lua.${name}.n${n} COMMAND ddplab -n ${n} ${file})
    set_tests_properties(lua.${name}.n${n} PROPERTIES
      LABELS "lua;san" TIMEOUT 300
      ENVIRONMENT "LUA_PATH=${CMAKE_SOURCE_DIR}/tests/lua/?.lua;;;DDP_TEST_FIXTURES=${CMAKE_SOURCE_DIR}/tests/fixtures;NO_COLOR=1")
  endforeach()
endforeach()

file(GLOB GPU_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/gpu/test_*.lua)
foreach(file ${GPU_TESTS})
  get_filename_component(name ${file} NAME_WE)
  # a "-- ranks: N" first line asks for N ranks (default 1)
  file(STRINGS ${file} ranks_line LIMIT_COUNT 1 REGEX "^-- ranks: [0-9]+$")
  set(ranks 1)
  if(ranks_line)
    string(REGEX REPLACE "^-- ranks: " "" ranks "${ranks_line}")
  endif()
  add_test(NAME gpu.${name} COMMAND ddplab -n ${ranks} ${file})
  set_tests_properties(gpu.${name} PROPERTIES
    LABELS "gpu" TIMEOUT 300 SKIP_RETURN_CODE 77
    ENVIRONMENT "LUA_PATH=${CMAKE_SOURCE_DIR}/tests/lua/?.lua;;;NO_COLOR=1")
endforeach()

# Two e2e tests measure the processes themselves and mean nothing under ASan, so they are
# left out of the sanitizer pass: the soak (ASan's quarantine grows every process's
# resident memory by design) and the fault injection (ASan catches the injected SIGSEGV
# and exits with status 1, so the rank does not die by the signal the test checks).
set(E2E_NOT_UNDER_SANITIZER test_soak test_fault_inject)
file(GLOB E2E_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/e2e/test_*.sh)
foreach(file ${E2E_TESTS})
  get_filename_component(name ${file} NAME_WE)
  add_test(NAME e2e.${name} COMMAND bash ${file})
  set(labels "e2e;san")
  if(name IN_LIST E2E_NOT_UNDER_SANITIZER)
    set(labels "e2e")
  endif()
  set_tests_properties(e2e.${name} PROPERTIES
    LABELS "${labels}" TIMEOUT 300
    ENVIRONMENT "DDPLAB=$<TARGET_FILE:ddplab>;DDP_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endforeach()

# Every built-in lesson's steps: the check fails from the setup and passes after the
# solution (src/runtime/lesson_verify.c), on 2 and 4 ranks.
foreach(n 2 4)
  add_test(NAME lessons.verify.n${n} COMMAND ddplab -n ${n} --verify-lessons)
  set_tests_properties(lessons.verify.n${n} PROPERTIES
    LABELS "lessons;san" TIMEOUT 600 ENVIRONMENT "NO_COLOR=1;LANG=C.UTF-8")
endforeach()
