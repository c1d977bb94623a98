# The two commands the README promises: `make run` and `make test`.
# Everything else is CMake (build/), with a second sanitizer build (build-san/) for tests.
BUILD ?= build
SAN_BUILD ?= build-san
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build run test test-fast sanitize bench format clean

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

test-fast: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

sanitize: deps
	cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DDDP_SANITIZE=ON -DDDP_CUDA=OFF >/dev/null
	cmake --build $(SAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1 ctest --test-dir $(SAN_BUILD) -L san --output-on-failure -j $(JOBS)

bench: build
	sh bench/run.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cc')

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
