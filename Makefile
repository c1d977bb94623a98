# The two commands the README promises: `make run` and `make test`.
# Everything else is CMake (build/), with a second sanitizer build (build-san/) for tests.
BUILD ?= build
SAN_BUILD ?= build-san
FUZZ_BUILD ?= build-fuzz
# seconds each libFuzzer target runs in make test (5 targets); make fuzz-long: an hour each
FUZZ_SECONDS ?= 12
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build run test test-fast test-long sanitize fuzz fuzz-long bench format clean

all: build

deps:
	@sh scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/ddplab $(ARGS)

# The whole suite, then the unit and Lua tests again under ASan + UBSan. The sanitizer
# build is the CPU-only one (-DDDP_CUDA=OFF): it keeps nvcc out of the second build and
# checks that a build without the CUDA toolkit still works.
test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory sanitize
	$(MAKE) --no-print-directory fuzz

# The long forms of the reliability tests (docs/reliability.md): 100+ rank kills, 30
# agent kills, a 10,000-step soak, 32 and 64 ranks, the long fuzz runs, the 2-rank walk
# of the allocation seam. Hours on 2 cores.
test-long: build
	for t in fault_inject agent_faults soak scale; do \
	  DDP_LONG=1 DDPLAB=$(BUILD)/ddplab DDP_SOURCE_DIR=$(CURDIR) bash tests/e2e/test_$$t.sh || exit 1; \
	done
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=600
	DDP_LONG=1 ./$(BUILD)/test_dist_alloc # the 2-rank walk: failed 5 of 12 runs (reliability.md)

test-fast: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

sanitize: deps
	cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DDDP_SANITIZE=ON -DDDP_CUDA=OFF >/dev/null
	cmake --build $(SAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1 ctest --test-dir $(SAN_BUILD) -L san --output-on-failure -j $(JOBS)

# The libFuzzer targets of tests/fuzz/ (clang, ASan + UBSan, build-fuzz/), each run for
# FUZZ_SECONDS from its seed corpus.
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DDDP_FUZZ=ON \
	  -DDDP_CUDA=OFF -DDDP_WERROR=OFF -DDDP_FUZZ_SECONDS=$(FUZZ_SECONDS) >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_all
	ctest --test-dir $(FUZZ_BUILD) -L fuzz --output-on-failure -j $(JOBS)

bench: build
	sh bench/run.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cc')

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(FUZZ_BUILD)
