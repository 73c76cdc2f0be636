# engram — the two commands of the README, and a few more.
#   make run    install missing Debian packages, build, start engram serve on ./data/engram.db
#   make test   install missing packages, build with -Werror, ASan and UBSan, run every test
#               (the storage tests also on a throwaway PostgreSQL server that ctest
#               starts and stops; ENGRAM_TEST_PG=off skips those, saying so)
#   make bench  build optimized, run the benchmarks (results: docs/benchmarks.md)

BUILD      ?= build
TEST_BUILD ?= build-test
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
DB         ?= ./data/engram.db
LISTEN     ?= 127.0.0.1:8420

.PHONY: all deps build run test bench clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DENGRAM_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@./$(BUILD)/engram serve --db $(DB) --listen $(LISTEN)

test: deps
	@cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DENGRAM_WERROR=ON -DENGRAM_SANITIZE=ON >/dev/null
	@cmake --build $(TEST_BUILD) -j $(JOBS)
	@if [ "$$ENGRAM_TEST_PG" = off ]; then echo "PostgreSQL tests skipped: ENGRAM_TEST_PG=off"; fi
	@cd $(TEST_BUILD) && ctest --output-on-failure -j $(JOBS)

bench: build
	@bash scripts/bench.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(TEST_BUILD)
