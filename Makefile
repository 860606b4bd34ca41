# wasmgate: the two commands of the README, plus helpers.
#   make run    set up, build, and start the gateway on its embedded demo
#   make test   set up, then run the whole test suite (what CI runs)
.PHONY: run test setup lint wasm bench

setup:
	@.ci/setup

run: setup
	cargo run --release -p wasmgate

test: setup
	cargo test --workspace --all-targets
	cargo test --workspace --doc

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p secret-header --target wasm32-wasip1 -- -D warnings

wasm: setup
	cargo build --release --target wasm32-wasip1 -p secret-header

bench: setup
	cargo bench -p wasmgate-abi
