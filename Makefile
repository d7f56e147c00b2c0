# Thin wrapper around CMake. `make demo` and `make test` work on a fresh Debian 12 machine:
# both install what is missing first (tools/install-deps.sh).
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# Tests run at once: twice the cores. Most integration tests wait on simulated Keepa minutes,
# not on the CPU (at one test a core a 2-core machine is a quarter busy); the tests that keep
# cores busy themselves take more than one slot (PROCESSORS in tests/CMakeLists.txt).
TEST_JOBS ?= $(shell echo $$(( $(JOBS) * 2 )))
BUILD ?= build
CMAKE_FLAGS ?=

.PHONY: all deps build test test-fast test-asan test-tsan test-fuzz fuzz-build demo bench fuzz format clean

all: build

deps:
	@sh tools/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

build-asan/CMakeCache.txt:
	cmake -S . -B build-asan -DKD_ASAN=ON -DCMAKE_BUILD_TYPE=Debug

build-tsan/CMakeCache.txt:
	cmake -S . -B build-tsan -DKD_TSAN=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo

# The whole suite three times: a normal build, the whole suite under ASan+UBSan, and the
# concurrency tests (label "tsan") under ThreadSanitizer; then every libFuzzer target for a
# bounded time (`make fuzz` runs them longer).
test: deps
	$(MAKE) test-fast
	$(MAKE) test-asan
	$(MAKE) test-tsan
	$(MAKE) test-fuzz

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(TEST_JOBS)

test-asan: build-asan/CMakeCache.txt
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(TEST_JOBS) -LE nosan

test-tsan: build-tsan/CMakeCache.txt
	cmake --build build-tsan -j $(JOBS) --target tsan_tests
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --output-on-failure -j $(TEST_JOBS) -L tsan

demo: deps build
	sh tools/demo.sh $(BUILD)

bench: deps build
	sh bench/run.sh $(BUILD)

# libFuzzer targets (clang; the list is tests/CMakeLists.txt), each run for FUZZ_SECONDS over its
# seed corpus.
FUZZ_SECONDS ?= 300
FUZZ_TEST_SECONDS ?= 10
build-fuzz/CMakeCache.txt:
	CC=clang cmake -S . -B build-fuzz -DKD_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo

fuzz-build: build-fuzz/CMakeCache.txt
	cmake --build build-fuzz -j $(JOBS) --target fuzz_targets

test-fuzz: fuzz-build
	sh tools/fuzz.sh $(FUZZ_TEST_SECONDS) build-fuzz

fuzz: deps fuzz-build
	sh tools/fuzz.sh $(FUZZ_SECONDS) build-fuzz

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
