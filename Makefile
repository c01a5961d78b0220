# The two set-up commands of README.md go through here:
#   ./deploy/install-deps.sh && make run     build, then start spate on its embedded default config
#   ./deploy/install-deps.sh && make test    build, then run the whole test suite (ctest)
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= 2
ARGS       ?=

.PHONY: all build run test asan-test format clean

all: build

build:
	cmake --preset release -B $(BUILD) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/core/spate $(ARGS)

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# The same suite under AddressSanitizer and UndefinedBehaviorSanitizer.
asan-test:
	cmake --preset asan -B $(ASAN_BUILD) >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS)

format:
	git ls-files '*.h' '*.cc' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
