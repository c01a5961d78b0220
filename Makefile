# The two set-up commands of README.md go through here:
#   ./deploy/install-deps.sh && make run     build, then start spate on its embedded default config
#   ./deploy/install-deps.sh && make test    build, then run the whole test suite (ctest)
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
COV_BUILD  ?= build-cov
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZERS    := server_session address reply_parser client_session records dns_wire dsn suppression_csv \
              bounce_rules bounce_class record_json shaping
JOBS       ?= 2
ARGS       ?=

.PHONY: all build run test asan-test tsan-test coverage fuzz fuzz-build micro-bench format clean bench bench-smoke

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

# The same suite under ThreadSanitizer. Every process's reports, the spate binaries the
# integration tests start included, go to $(TSAN_BUILD)/tsan/report.<pid>; any report fails
# the target, after the whole suite ran. tests/tsan.supp: false positives in uninstrumented
# libraries only. setarch -R (no ASLR for the suite): GCC 12's TSan runtime fails with
# "unexpected memory mapping" where vm.mmap_rnd_bits is 32 (google/sanitizers issue 1716).
TSAN_OPTIONS_ALL = suppressions=$(CURDIR)/tests/tsan.supp log_path=$(abspath $(TSAN_BUILD))/tsan/report \
  halt_on_error=0 second_deadlock_stack=1
tsan-test:
	cmake --preset tsan -B $(TSAN_BUILD) >/dev/null
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	rm -rf $(TSAN_BUILD)/tsan && mkdir -p $(TSAN_BUILD)/tsan
	@status=0; TSAN_OPTIONS="$(TSAN_OPTIONS_ALL)" setarch -R \
	  ctest --test-dir $(TSAN_BUILD) --output-on-failure -j $(JOBS) || status=$$?; \
	  if grep -qs ThreadSanitizer $(TSAN_BUILD)/tsan/report.*; then \
	    echo "tsan-test: ThreadSanitizer reports in $(TSAN_BUILD)/tsan/ (count, summary):"; \
	    grep -hs '^SUMMARY: ThreadSanitizer\|^FATAL: ThreadSanitizer' $(TSAN_BUILD)/tsan/report.* \
	      | sort | uniq -c | sort -rn; \
	    status=1; \
	  fi; exit $$status

# Line coverage (README.md, "Coverage"): the suite in its own gcov build, then per-module text
# and HTML reports in $(COV_BUILD)/coverage/ (tests/coverage-report.sh). Counts start from zero
# each run. A failing test still gets its report, and then fails the target.
coverage:
	cmake --preset coverage -B $(COV_BUILD) >/dev/null
	cmake --build $(COV_BUILD) -j $(JOBS)
	find $(COV_BUILD) -name '*.gcda' -delete
	@status=0; ctest --test-dir $(COV_BUILD) --output-on-failure -j $(JOBS) || status=$$?; \
	  ./tests/coverage-report.sh $(COV_BUILD) && exit $$status

# The end-to-end benchmark (bench/README.md): spate, Postfix and Haraka between spate-blast and
# spate-sink; JSON summary on stdout, JSON and PNG plots in bench/results/.
BENCH_ARGS ?= --suite full
BENCH_TARGETS = spate spate-blast spate-sink
bench:
	cmake --preset release -B $(BUILD) >/dev/null
	cmake --build $(BUILD) -j $(JOBS) --target $(BENCH_TARGETS)
	./bench/run-e2e.sh --build $(BUILD) $(BENCH_ARGS)

# The benchmark tools' smoke test alone (it is part of `make test` too).
bench-smoke:
	cmake --preset release -B $(BUILD) >/dev/null
	cmake --build $(BUILD) -j $(JOBS) --target $(BENCH_TARGETS)
	ctest --test-dir $(BUILD) --output-on-failure -R integration_bench_smoke

# libFuzzer targets (clang-14; tests/fuzz/README.md). `make fuzz` runs each for FUZZ_SECONDS
# (make fuzz FUZZ_SECONDS=600). The committed corpus is read, never written: new inputs go to
# $(FUZZ_BUILD)/corpus/<target>, crashes to $(FUZZ_BUILD)/artifacts/<target>/ and stop the run.
fuzz-build:
	cmake --preset fuzz -B $(FUZZ_BUILD) >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers

fuzz: fuzz-build
	@set -e; for t in $(FUZZERS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/artifacts/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  ./$(FUZZ_BUILD)/tests/fuzz/$${t}_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    -dict=tests/fuzz/smtp.dict -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t/ \
	    $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t; \
	done

# Google Benchmark micro-benchmarks of the hot paths (bench/micro; not part of the tests).
micro-bench: build
	./$(BUILD)/bench/micro/micro_bench
	./$(BUILD)/bench/micro/journal_bench

format:
	git ls-files '*.h' '*.cc' '*.c' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD) $(COV_BUILD)
