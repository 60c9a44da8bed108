# The README's two commands: `make demo` and `make test`; `make bench-load` is BENCHMARKS.md's.
.PHONY: demo test lint bench-load
CARGO ?= cargo

## Run the gateway with its built-in demo (sample EHR, dev CA, default rules, demo token issuer).
demo:
	./.ci/setup demo
	$(CARGO) run --release --locked -- demo

## The whole test suite: formatting, lints, unit and integration tests, the rule pack's own tests
## and the shipped access policy's own tests (deploy/policy).
## `.ci/setup test` fetches the FHIR R4 examples package (npm) into target/fhir-examples; the
## accuracy suite's full-package run finds it there and is required to run.
## The fuzz targets (fuzz/, a workspace of its own) are formatted and linted too, without linking
## libFuzzer and sharing ./target, so they keep compiling at the cost of a few seconds.
test:
	./.ci/setup test
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) clippy --locked --manifest-path fuzz/Cargo.toml --no-default-features --all-targets --target-dir target -- -D warnings
	PHI_GATEWAY_REQUIRE_FHIR_EXAMPLES=1 $(CARGO) test --locked
	$(CARGO) run --locked --quiet -- rules test rules
	$(CARGO) run --locked --quiet -- policy test deploy/policy

## Side-by-side load benchmark against nginx, nginx + ModSecurity + CRS and haproxy (BENCHMARKS.md).
## About 75 minutes with the defaults (13 cases x 8 targets x 3 runs; the script prints its estimate); pass flags with BENCH_ARGS="--duration 2 --runs 1".
bench-load:
	./.ci/setup bench
	CARGO=$(CARGO) benches/load/run $(BENCH_ARGS)
