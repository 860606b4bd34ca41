# wasmgate: the two commands of the README, plus helpers.
#   make run    set up, build, and start the gateway on its embedded demo
#   make test   set up, lint (fmt, clippy), then run the whole test suite (what CI runs)
.PHONY: run test setup lint wasm bench soak install

setup:
	@.ci/setup

run: setup
	cargo run --release -p wasmgate

test: setup lint
	cargo test --workspace --all-targets
	# The gateway suite again with the lean HTTP/1.1 paths off (hyper only):
	# both ways must pass.
	WASMGATE_LEAN_HTTP1=off cargo test -p wasmgate-tests --test 'gateway_*'
	cargo test --workspace --doc
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p wasmgate-abi -p wasmgate-harness -p wasmgate -p secret-header

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p secret-header --target wasm32-wasip1 -- -D warnings

# Puts the wasmgate binary on the PATH (~/.cargo/bin).
install: setup
	cargo install --locked --path host/gateway

wasm: setup
	cargo build --release --target wasm32-wasip1 -p secret-header

# Side-by-side benchmark (issue 6): wasmgate vs Envoy vs nginx, and the runtime's
# per-request cost (criterion). Rewrites the results table in BENCHMARKS.md.
bench: setup
	@command -v nginx >/dev/null && command -v wrk >/dev/null && command -v h2load >/dev/null \
	  || (apt-get update -qq && apt-get install -y -qq nginx wrk nghttp2-client)
	cargo build --release -p wasmgate
	cargo build --release --target wasm32-wasip1 -p secret-header
	cargo bench -p wasmgate-abi
	python3 tests/bench/bench.py --readme
	python3 tests/bench/routes.py
	python3 tests/bench/tls.py

# Soak (issue 16; not part of `make test`): SOAK_SECONDS (default 600) of mixed
# HTTP/1.1 and HTTP/2 traffic, 1 % to a trapping filter, a reload every 10 s, the
# backend restarted every minute; reports errors by cause, RSS and open fds.
soak: setup
	@command -v nginx >/dev/null && command -v h2load >/dev/null \
	  || (apt-get update -qq && apt-get install -y -qq nginx nghttp2-client)
	cargo build --release -p wasmgate
	cargo build --release --target wasm32-wasip1 -p secret-header
	python3 tests/bench/soak.py
