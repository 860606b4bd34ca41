#!/usr/bin/env python3
"""How wasmgate scales with its number of routes (issue 16, target 5): start-up time to ready,
RSS after start-up, and CPU per request, with 1, 10, 100 and 1,000 routes.

Route i matches host `h<i>.test`; every tenth route (i = 0, 10, 20, ...) runs the filter, all of
them the same `.wasm` (compiled once, shared by content hash). The load goes to the last route
with the filter, so a gateway that tried routes one by one would pay for every route before it;
the route table looks the host up instead. One worker, the proxy on CPU 0 and wrk on CPU 1, as in
`bench.py`; every counted request is a 200 from the nginx backend that checks the injected secret.

Usage: tests/bench/routes.py [--binary PATH] [--duration S] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (helpers shared with the side-by-side bench)
import memory  # noqa: E402

COUNTS = (1, 10, 100, 1000)


def conf(workdir: Path, n: int, port: int, admin: int, backend: int, cache: Path) -> Path:
    routes = []
    for i in range(n):
        filters = ""
        if i % 10 == 0:
            filters = f"""
    filters:
      - wasm: {bench.WASM}
        config: {{ set: {{ headers: ["Authorization:Bearer {{vault://env/BENCH_TOKEN}}"] }} }}
        env: [BENCH_TOKEN]"""
        routes.append(f"""
  - name: r{i}
    match: {{ host: h{i}.test }}
    upstream: backend{filters}""")
    path = workdir / f"routes-{n}.yaml"
    path.write_text(f"""
workers: 1
module_cache: {cache}
access_log: {{ disabled: true }}
listeners: [{{ address: "127.0.0.1:{port}" }}]
admin: {{ address: "127.0.0.1:{admin}" }}
upstreams: {{ backend: {{ url: "http://127.0.0.1:{backend}" }} }}
routes:{''.join(routes)}
""")
    return path


def measure(binary: Path, n: int, backend: int, workdir: Path, cache: Path, duration: int) -> dict:
    port, admin = bench.free_port(), bench.free_port()
    config = conf(workdir, n, port, admin, backend, cache)
    started = time.monotonic()
    proc = subprocess.Popen(["taskset", "-c", bench.PROXY_CPU, str(binary), "run", "--config", str(config)],
                            stdout=open(workdir / f"routes-{n}.log", "wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "BENCH_TOKEN": bench.SECRET, "RUST_LOG": "warn"},
                            start_new_session=True)
    try:
        bench.wait_http(f"http://127.0.0.1:{admin}/ready", timeout=120)
        ready_ms = (time.monotonic() - started) * 1000
        time.sleep(memory.SETTLE_S)
        rss = memory.smaps(proc.pid)["rss"]
        host = f"h{10 * ((n - 1) // 10)}.test"
        bench.run_wrk(port, 8, 1, {"Host": host})  # warm-up
        cpu0 = bench.cpu_seconds(proc.pid)
        result = bench.run_wrk(port, 32, duration, {"Host": host})
        cpu = bench.cpu_seconds(proc.pid) - cpu0
        return {
            "routes": n,
            "ready_ms": round(ready_ms),
            "rss_mib": round(rss / 1024, 1),
            "requests": result["requests"],
            "non2xx": result["non2xx"],
            "cpu_us": round(cpu * 1e6 / max(result["requests"], 1), 1),
        }
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def render(rows: list[dict]) -> str:
    out = ["| routes (every tenth with the filter) | start-up to ready ms | RSS after start-up MiB "
           "| CPU µs per request (last filter route) | non-2xx |",
           "|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['routes']} | {r['ready_ms']} | {r['rss_mib']} | {r['cpu_us']} | {r['non2xx']} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", type=Path, default=bench.WASMGATE)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cache = workdir / "cache"
        backend_port, h2_port = bench.free_port(), bench.free_port()
        backend_conf = bench.nginx_backend_conf(workdir, backend_port, h2_port)
        nginx = subprocess.Popen(["taskset", "-c", bench.LOAD_CPU, "nginx", "-c", str(backend_conf), "-p", str(workdir)],
                                 start_new_session=True)
        try:
            bench.wait_http(f"http://127.0.0.1:{backend_port}/")
            # The first start compiles the module into the cache; measure warm starts.
            measure(args.binary, 1, backend_port, workdir, cache, 1)
            rows = [measure(args.binary, n, backend_port, workdir, cache, args.duration) for n in COUNTS]
        finally:
            os.killpg(nginx.pid, signal.SIGTERM)
            nginx.wait(10)
    table = render(rows)
    print(table)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
