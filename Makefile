# The README's two commands: `make demo` and `make test`.
.PHONY: demo test lint
CARGO ?= cargo

## Run the gateway with its built-in demo (sample EHR, dev CA, default rules).
demo:
	./.ci/setup demo
	$(CARGO) run --release --locked -- demo

## The whole test suite: formatting, lints, unit and integration tests, the rule pack's own tests.
test:
	./.ci/setup test
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) test --locked
	$(CARGO) run --locked --quiet -- rules test rules
