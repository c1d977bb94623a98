# bench.cmake — benchmark programs (bench/README.md). Included from the top CMakeLists.txt.
# Every target here is EXCLUDE_FROM_ALL: `make build` and ctest never build or run them;
# the bench/*.sh scripts build what they need, e.g.
#   cmake --build build --target gloo_raw bench_roundtrip

# Raw Gloo, no ddplab: the reference of bench/collectives.sh.
add_executable(gloo_raw EXCLUDE_FROM_ALL ${CMAKE_SOURCE_DIR}/bench/gloo_raw.cc)
target_compile_options(gloo_raw PRIVATE -Wall -Wextra -Wshadow
                       $<$<BOOL:${DDP_WERROR}>:-Werror>)
target_link_libraries(gloo_raw PRIVATE gloo Threads::Threads)

# The driver's round trip of an empty chunk through real ranks (bench/interaction.sh).
add_executable(bench_roundtrip EXCLUDE_FROM_ALL ${CMAKE_SOURCE_DIR}/bench/roundtrip.c)
target_compile_options(bench_roundtrip PRIVATE ${DDP_C_WARNINGS})
target_link_libraries(bench_roundtrip PRIVATE ddp_runtime)

# ddplab's Lua API against raw Gloo on the same connections, window by window
# (bench/overhead.sh): reaches into src/dist's private header for the communicator.
add_executable(bench_overhead EXCLUDE_FROM_ALL ${CMAKE_SOURCE_DIR}/bench/overhead.c)
target_compile_options(bench_overhead PRIVATE ${DDP_C_WARNINGS})
target_include_directories(bench_overhead PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(bench_overhead PRIVATE ddp_runtime)

# NCCL called straight from C, one rank (bench/gpu/run.sh): only in a build with NCCL.
if(DDP_HAVE_NCCL)
  add_executable(bench_nccl_raw EXCLUDE_FROM_ALL ${CMAKE_SOURCE_DIR}/bench/gpu/nccl_raw.c)
  target_compile_options(bench_nccl_raw PRIVATE ${DDP_C_WARNINGS})
  target_include_directories(bench_nccl_raw PRIVATE ${NCCL_INCLUDE_DIR})
  target_link_libraries(bench_nccl_raw PRIVATE ${NCCL_LIBRARY} CUDA::cudart_static)
endif()
