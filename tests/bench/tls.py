#!/usr/bin/env python3
"""TLS on both hops (issue 16, target 4): client → proxy over HTTPS (HTTP/1.1, and HTTP/2 by
ALPN), proxy → backend over verified HTTPS with pooled connections, wasmgate with the filter
against nginx doing the same (`proxy_ssl_verify on`, keep-alive upstream), side by side in one
run; and the cost of a new TLS connection per request (`Connection: close`, full handshakes:
wrk keeps no session cache).

A throwaway CA and a `localhost` certificate are made with openssl in a temporary directory.
The backend is nginx over TLS, answering 401 unless the injected secret is right. One proxy
worker on CPU 0, load on CPU 1, rounds interleaved, medians.

Usage: tests/bench/tls.py [--binary PATH] [--rounds N] [--duration S]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (helpers shared with the side-by-side bench)


def certificates(d: Path) -> None:
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", d / "ca.key", "-out", d / "ca.pem", "-days", "2", "-subj", "/CN=bench CA")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", d / "server.key", "-out", d / "server.csr", "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", d / "server.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
        "-CAcreateserial", "-out", d / "server.pem", "-days", "2", "-extfile", d / "ext.cnf")


def backend_conf(d: Path, port: int) -> Path:
    conf = d / "backend.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {d}/backend.pid; error_log {d}/backend.err;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {d}/server.pem; ssl_certificate_key {d}/server.key;
    location / {{
      if ($http_authorization != "Bearer {bench.SECRET}") {{ return 401; }}
      return 200 "ok\\n";
    }}
  }}
}}
""")
    return conf


def nginx_conf(d: Path, port: int, backend: int) -> Path:
    conf = d / "nginx-tls.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {d}/nginx-tls.pid; error_log {d}/nginx-tls.err;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 1000000;
  ssl_session_cache shared:SSL:1m;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {d}/server.pem; ssl_certificate_key {d}/server.key;
    location / {{
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer {bench.SECRET}";
      proxy_ssl_verify on; proxy_ssl_trusted_certificate {d}/ca.pem; proxy_ssl_name localhost;
      proxy_ssl_session_reuse on;
      proxy_pass https://backend;
    }}
  }}
}}
""")
    return conf


def wasmgate_conf(d: Path, port: int, admin: int, backend: int) -> Path:
    conf = d / "wasmgate-tls.yaml"
    conf.write_text(f"""
workers: 1
module_cache: {d}/cache
access_log: {{ disabled: true }}
listeners:
  - address: 127.0.0.1:{port}
    tls: {{ cert: {d}/server.pem, key: {d}/server.key }}
admin: {{ address: "127.0.0.1:{admin}" }}
upstreams:
  backend:
    url: https://localhost:{backend}
    tls: {{ ca: {d}/ca.pem }}
routes:
  - name: bench
    match: {{}}
    upstream: backend
    filters:
      - wasm: {bench.WASM}
        config: {{ set: {{ headers: ["Authorization:Bearer {{vault://env/BENCH_TOKEN}}"] }} }}
        env: [BENCH_TOKEN]
""")
    return conf


def load(kind: str, port: int, seconds: int) -> tuple[int, int]:
    """(requests, non-2xx) from one load run: `h1`, `h2` or `h1-new` (a connection per request)."""
    url = f"https://localhost:{port}/"
    pin = ["taskset", "-c", bench.LOAD_CPU]
    if kind == "h2":
        out = subprocess.run(pin + ["h2load", "-t1", "-c32", "-m10", f"-D{seconds}", url],
                             capture_output=True, text=True, timeout=seconds + 30).stdout
        done = re.search(r"requests: \d+ total, \d+ started, (\d+) done", out)
        ok = re.search(r"status codes: (\d+) 2xx", out)
        n = int(done.group(1)) if done else 0
        return n, n - (int(ok.group(1)) if ok else 0)
    extra = ["-H", "Connection: close"] if kind == "h1-new" else []
    out = subprocess.run(pin + ["wrk", "-t1", "-c32" if kind == "h1" else "-c8", f"-d{seconds}s", *extra, url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    reqs = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (int(reqs.group(1)) if reqs else 0), (int(bad.group(1)) if bad else 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", type=Path, default=bench.WASMGATE)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    args = ap.parse_args()
    kinds = ("h1", "h2", "h1-new")
    results: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        certificates(d)
        backend, nginx_port, gw_port, admin = (bench.free_port() for _ in range(4))
        procs = []
        env = {**os.environ, "BENCH_TOKEN": bench.SECRET, "RUST_LOG": "warn"}
        start = lambda cmd, cpu: procs.append(subprocess.Popen(  # noqa: E731
            ["taskset", "-c", cpu, *cmd], env=env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            start(["nginx", "-c", str(backend_conf(d, backend)), "-p", str(d)], bench.LOAD_CPU)
            start(["nginx", "-c", str(nginx_conf(d, nginx_port, backend)), "-p", str(d)], bench.PROXY_CPU)
            start([str(args.binary), "run", "--config", str(wasmgate_conf(d, gw_port, admin, backend))],
                  bench.PROXY_CPU)
            bench.wait_http(f"http://127.0.0.1:{admin}/ready", timeout=60)
            targets = {"wasmgate + wasm": (procs[2].pid, gw_port), "nginx proxy_set_header": (procs[1].pid, nginx_port)}
            for _ in range(args.rounds):
                for kind in kinds:
                    for name, (pid, port) in targets.items():
                        cpu0 = bench.cpu_seconds(pid)
                        n, bad = load(kind, port, args.duration)
                        cpu = bench.cpu_seconds(pid) - cpu0
                        results.setdefault((name, kind), []).append((cpu * 1e6 / max(n, 1), n / args.duration, bad))
        finally:
            for p in procs:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(10)
    print("| target | HTTPS kind | CPU µs per request | requests/s | non-2xx |")
    print("|---|---|---:|---:|---:|")
    for (name, kind), rows in results.items():
        cpu = statistics.median(r[0] for r in rows)
        rps = statistics.median(r[1] for r in rows)
        print(f"| {name} | {kind} | {cpu:.1f} | {rps:.0f} | {sum(r[2] for r in rows)} |")
    for kind in kinds:
        ratios = [a[0] / b[0] for a, b in zip(results[("wasmgate + wasm", kind)],
                                                results[("nginx proxy_set_header", kind)])]
        print(f"CPU wasmgate + wasm / nginx, {kind}: {statistics.median(ratios):.2f} "
              f"({min(ratios):.2f}–{max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
