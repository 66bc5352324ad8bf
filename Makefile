# The two commands a newcomer needs. Everything else is in scripts/.
.PHONY: run test build release lint

## Build and serve Tenki in sandbox mode on http://127.0.0.1:3000 (installs what is missing).
run:
	bash scripts/run.sh

## Run every test: Rust (nextest) and browser (Playwright), with their own PostgreSQL and TigerBeetle.
test:
	bash scripts/test.sh

## Build the debug site and server.
build:
	bash scripts/build.sh debug

## Build the release site (optimised WASM) and server.
release:
	bash scripts/build.sh release

## Formatting and lints, as CI would want them.
lint:
	bash scripts/lint.sh
