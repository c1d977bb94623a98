# tests.cmake — every test ctest runs. Included from the top CMakeLists.txt.
#
# tests/unit/test_<layer>_*.c  cmocka programs linked against that layer's library
# tests/lua/test_*.lua         run by ddplab itself; a first line "-- ranks: 1 2 4"
#                              runs the file once per rank count (default: 1)
# tests/e2e/test_*.sh          whole-program checks (real terminal via tmux, processes);
#                              helpers they source (tmux_lib.sh, check_lib.sh) are not tests
set(DDP_LAYER_base ddp_base)
set(DDP_LAYER_tensor ddp_tensor)
set(DDP_LAYER_nn ddp_nn)
set(DDP_LAYER_dist ddp_dist)
set(DDP_LAYER_lua ddp_lua)
set(DDP_LAYER_runtime ddp_runtime)

file(GLOB UNIT_TEST_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
foreach(src ${UNIT_TEST_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  string(REGEX MATCH "^test_([a-z]+)" unused ${name})
  set(layer ${DDP_LAYER_${CMAKE_MATCH_1}})
  if(NOT layer)
    message(FATAL_ERROR "${src}: name it test_<layer>_*.c with a layer of src/")
  endif()
  add_executable(${name} ${src})
  target_compile_options(${name} PRIVATE ${DDP_C_WARNINGS} -Wno-missing-prototypes)
  target_compile_definitions(${name} PRIVATE
    DDP_TEST_FIXTURES="${CMAKE_SOURCE_DIR}/tests/fixtures"
    DDP_TEST_BINARY="$<TARGET_FILE:ddplab>")
  target_link_libraries(${name} PRIVATE ${layer} PkgConfig::CMOCKA)
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

file(GLOB E2E_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/e2e/test_*.sh)
foreach(file ${E2E_TESTS})
  get_filename_component(name ${file} NAME_WE)
  add_test(NAME e2e.${name} COMMAND bash ${file})
  set_tests_properties(e2e.${name} PROPERTIES
    LABELS "e2e;san" TIMEOUT 300
    ENVIRONMENT "DDPLAB=$<TARGET_FILE:ddplab>;DDP_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endforeach()
