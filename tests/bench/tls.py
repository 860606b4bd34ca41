#!/usr/bin/env python3
"""TLS on both hops (issue 16, target 4): client → proxy over HTTPS, proxy → backend over verified
HTTPS with pooled connections; wasmgate with the filter, nginx doing the same (`proxy_set_header`,
`proxy_ssl_verify on`, keep-alive upstream) and Envoy with the same `secret_header.wasm` (V8),
side by side in one run.

Kinds of load:
- `h1`: HTTP/1.1 keep-alive (wrk, 32 connections);
- `h2`: HTTP/2 by ALPN (h2load, 32 connections × 10 streams);
- `full`: a new TLS connection per request, full handshake (no session kept by the client);
- `resumed`: a new TLS connection per request, resuming the previous connection's session
  (TLS 1.3 ticket).

The last two use a small client of our own (Python `ssl`, 4 processes) that checks every
handshake: `full` fails if a session was resumed, `resumed` fails unless every connection but
each client's first was (wrk is no use here: it keeps its connections' sessions, so its
`Connection: close` reconnects are resumptions, not full handshakes). CPU is the proxy process's
(utime + stime from /proc) per request, so the client's speed changes the rate, not the cost.

Every listener speaks TLS 1.2 and 1.3 (nginx 1.22 needs `ssl_protocols` for 1.3: its default
stops at 1.2); what each handshake negotiated is printed. The backend (nginx over TLS) answers 401
unless the injected secret is right, and counts its connections (`stub_status`): the upstream
connections each proxy opened are printed, and a proxy that opens one per client connection
(no pooling) fails the run. A throwaway CA and a `localhost` certificate (P-256) are made with
openssl in a temporary directory. One proxy worker on CPU 0, load and backend on CPU 1, targets
in a seeded random order in each round, medians over rounds; ratios are paired within a round.

With `--baseline PATH`, that build runs beside (same configuration, its own port), and the
paired difference per request is printed.

Usage: tests/bench/tls.py [--binary PATH] [--baseline PATH] [--rounds N] [--duration S]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (helpers shared with the side-by-side bench)

KINDS = {
    "h1": "HTTPS keep-alive, HTTP/1.1 (wrk, 32 connections)",
    "h2": "HTTPS, HTTP/2 by ALPN (h2load, 32 connections × 10 streams)",
    "full": "a new TLS connection per request, full handshake (4 clients)",
    "resumed": "a new TLS connection per request, session resumed (TLS 1.3 ticket; 4 clients)",
}
HANDSHAKE_CLIENTS = 4
WASMGATE, NGINX, ENVOY = "wasmgate + wasm", "nginx proxy_set_header", "envoy + wasm (V8)"
BASELINE = "baseline wasmgate + wasm"


def certificates(d: Path) -> None:
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", d / "ca.key", "-out", d / "ca.pem", "-days", "2", "-subj", "/CN=bench CA")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", d / "server.key", "-out", d / "server.csr", "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", d / "server.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
        "-CAcreateserial", "-out", d / "server.pem", "-days", "2", "-extfile", d / "ext.cnf")


def backend_conf(d: Path, port: int, status: int) -> Path:
    conf = d / "backend.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {d}/backend.pid; error_log {d}/backend.err;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate {d}/server.pem; ssl_certificate_key {d}/server.key;
    location / {{
      if ($http_authorization != "Bearer {bench.SECRET}") {{ return 401; }}
      return 200 "ok\\n";
    }}
  }}
  server {{ listen 127.0.0.1:{status}; location / {{ stub_status; }} }}
}}
""")
    return conf


def nginx_conf(d: Path, port: int, ready: int, backend: int) -> Path:
    conf = d / "nginx-tls.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {d}/nginx-tls.pid; error_log {d}/nginx-tls.err;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 1000000;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:1m;
  # h2load keeps 320 requests in flight: with fewer idle connections kept, nginx closes the
  # surplus after each exchange and opens new TLS connections to the backend all the time.
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 512; keepalive_requests 1000000; }}
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
  server {{ listen 127.0.0.1:{ready}; return 200; }}
}}
""")
    return conf


def wasmgate_conf(d: Path, port: int, admin: int, backend: int, name: str = "wasmgate-tls") -> Path:
    conf = d / f"{name}.yaml"
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


def read_answer(s: ssl.SSLSocket) -> bytes:
    """An HTTP/1.1 answer, up to the end of its Content-Length body (or to the end of the
    connection without one): the client closes as soon as it has the answer, as a browser would,
    instead of waiting for the server's close."""
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
        head, sep, body = answer.partition(b"\r\n\r\n")
        length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE) if sep else None
        if length and len(body) >= int(length.group(1)):
            break
    return answer


def _handshake_client(job: tuple[int, float, bool, str]) -> tuple[int, int, int, set[str]]:
    """One client process: new TLS connections, one request each, until the deadline.
    (connections, non-2xx, resumed, {"TLSv1.3 TLS_AES_256_GCM_SHA384", ...})."""
    port, seconds, resume, cafile = job
    os.sched_setaffinity(0, {int(bench.LOAD_CPU)})
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    session, n, bad, resumed, seen = None, 0, 0, 0, set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with socket.create_connection(("127.0.0.1", port)) as raw:
            # As curl, wrk and h2load do: without it, Nagle holds the request back behind the
            # unacknowledged client Finished until a delayed ACK (40 ms) comes.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
                s.sendall(request)
                answer = read_answer(s)
                n += 1
                resumed += s.session_reused
                bad += not answer.startswith(b"HTTP/1.1 2")
                seen.add(f"{s.version()} {s.cipher()[0]}")
                if resume:
                    # The TLS 1.3 tickets came before the answer: this session can resume.
                    session = s.session
    return n, bad, resumed, seen


def handshakes(port: int, seconds: int, resume: bool, ca: Path) -> tuple[int, int, str]:
    """(requests, non-2xx, what was negotiated) from HANDSHAKE_CLIENTS clients; raises unless
    every handshake was full (resume False) or every one after each client's first resumed."""
    with multiprocessing.get_context("fork").Pool(HANDSHAKE_CLIENTS) as pool:
        runs = pool.map(_handshake_client, [(port, seconds, resume, str(ca))] * HANDSHAKE_CLIENTS)
    n, bad, resumed = (sum(r[i] for r in runs) for i in range(3))
    seen = set().union(*(r[3] for r in runs))
    if resume and resumed < n - HANDSHAKE_CLIENTS:
        raise RuntimeError(f"port {port}: only {resumed} of {n} handshakes resumed a session")
    if not resume and resumed:
        raise RuntimeError(f"port {port}: {resumed} of {n} handshakes resumed, none should have")
    return n, bad, ", ".join(sorted(seen))


def load(kind: str, port: int, seconds: int, ca: Path) -> tuple[int, int, str]:
    """(requests, non-2xx, protocol) from one load run of `kind`."""
    url = f"https://localhost:{port}/"
    pin = ["taskset", "-c", bench.LOAD_CPU]
    if kind == "h2":
        out = subprocess.run(pin + ["h2load", "-t1", "-c32", "-m10", f"-D{seconds}", url],
                             capture_output=True, text=True, timeout=seconds + 30).stdout
        done = re.search(r"requests: \d+ total, \d+ started, (\d+) done", out)
        ok = re.search(r"status codes: (\d+) 2xx", out)
        proto = re.search(r"Application protocol: (\S+)", out)
        cipher = re.search(r"Cipher: (\S+)", out)
        if not proto or proto.group(1) != "h2":
            raise RuntimeError(f"port {port}: h2load did not negotiate h2:\n{out}")
        n = int(done.group(1)) if done else 0
        return n, n - (int(ok.group(1)) if ok else 0), f"h2 {cipher.group(1) if cipher else '?'}"
    if kind in ("full", "resumed"):
        return handshakes(port, seconds, kind == "resumed", ca)
    out = subprocess.run(pin + ["wrk", "-t1", "-c32", f"-d{seconds}s", url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    reqs = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (int(reqs.group(1)) if reqs else 0), (int(bad.group(1)) if bad else 0), "http/1.1"


def backend_connections(status: int) -> int:
    """Connections the backend has accepted so far (each call adds one: its own)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{status}/", timeout=5).read().decode()
    return int(re.search(r"\n\s*(\d+) \d+ \d+", text).group(1))


def ratio_line(results: dict, a: str, b: str, kind: str) -> str:
    ratios = [x["cpu"] / y["cpu"] for x, y in zip(results[(a, kind)], results[(b, kind)])]
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", type=Path, default=bench.WASMGATE)
    ap.add_argument("--baseline", type=Path, help="another wasmgate build to run beside")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--seed", type=int, default=16)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        certificates(d)
        backend, status = bench.free_port(), bench.free_port()
        env = {"BENCH_TOKEN": bench.SECRET, "RUST_LOG": "warn"}
        backend_proc = subprocess.Popen(
            ["taskset", "-c", bench.LOAD_CPU, "nginx", "-c", str(backend_conf(d, backend, status)), "-p", str(d)],
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        gw_port, gw_admin, ng_port, ng_ready, envoy_port, envoy_admin = (bench.free_port() for _ in range(6))
        envoy_tls = bench.EnvoyTls(cert=d / "server.pem", key=d / "server.key", ca=d / "ca.pem")
        targets = [
            bench.Target(WASMGATE, gw_port, [str(args.binary), "run", "--config",
                                             str(wasmgate_conf(d, gw_port, gw_admin, backend))],
                         env, f"http://127.0.0.1:{gw_admin}/ready"),
            bench.Target(NGINX, ng_port, ["nginx", "-c", str(nginx_conf(d, ng_port, ng_ready, backend)), "-p", str(d)],
                         env, f"http://127.0.0.1:{ng_ready}/"),
            bench.Target(ENVOY, envoy_port,
                         bench.envoy_cmd(bench.envoy_conf(d, "envoy-tls", envoy_port, envoy_admin, backend, True,
                                                          envoy_tls), envoy_port),
                         env, f"http://127.0.0.1:{envoy_admin}/ready"),
        ]
        if args.baseline:
            port, admin = bench.free_port(), bench.free_port()
            targets.append(bench.Target(BASELINE, port, [str(args.baseline), "run", "--config",
                                                         str(wasmgate_conf(d, port, admin, backend, "baseline"))],
                                        env, f"http://127.0.0.1:{admin}/ready"))
        try:
            bench.wait_http(f"http://127.0.0.1:{status}/")
            for tg in targets:
                tg.start(d)
            for _ in range(args.rounds):
                for kind in KINDS:
                    order = targets[:]
                    rng.shuffle(order)
                    for tg in order:
                        up0 = backend_connections(status)
                        cpu0 = bench.cpu_seconds(tg.proc.pid)
                        n, bad, negotiated = load(kind, tg.port, args.duration, d / "ca.pem")
                        cpu = bench.cpu_seconds(tg.proc.pid) - cpu0
                        upstream = backend_connections(status) - up0 - 1
                        if tg.name in (WASMGATE, BASELINE) and kind in ("full", "resumed") \
                                and upstream > max(n // 10, 2 * HANDSHAKE_CLIENTS):
                            raise RuntimeError(f"{tg.name}, {kind}: {upstream} upstream connections opened "
                                               f"for {n} requests: the upstream hop is not pooled")
                        results.setdefault((tg.name, kind), []).append(
                            {"cpu": cpu * 1e6 / max(n, 1), "rps": n / args.duration, "bad": bad,
                             "negotiated": negotiated, "upstream": upstream})
        finally:
            for tg in targets:
                tg.stop()
            os.killpg(backend_proc.pid, signal.SIGTERM)
            backend_proc.wait(10)
    print("| kind | target | CPU µs per request | requests/s | non-2xx | negotiated | upstream connections opened |")
    print("|---|---|---:|---:|---:|---|---:|")
    names = [tg.name for tg in targets]
    for kind in KINDS:
        for name in names:
            rows = results[(name, kind)]
            cpu = statistics.median(r["cpu"] for r in rows)
            rps = statistics.median(r["rps"] for r in rows)
            negotiated = ", ".join(sorted({r["negotiated"] for r in rows}))
            print(f"| {kind} | {name} | {cpu:.1f} | {rps:.0f} | {sum(r['bad'] for r in rows)} | {negotiated} "
                  f"| {sum(r['upstream'] for r in rows)} |")
    print()
    print("| kind | CPU wasmgate + wasm / nginx | CPU wasmgate + wasm / Envoy + wasm |")
    print("|---|---:|---:|")
    for kind in KINDS:
        print(f"| {KINDS[kind]} | {ratio_line(results, WASMGATE, NGINX, kind)} "
              f"| {ratio_line(results, WASMGATE, ENVOY, kind)} |")
    if args.baseline:
        print()
        print("| kind | CPU µs per request, wasmgate + wasm − baseline (paired per round: median, range) |")
        print("|---|---:|")
        for kind in KINDS:
            diffs = [a["cpu"] - b["cpu"] for a, b in zip(results[(WASMGATE, kind)], results[(BASELINE, kind)])]
            print(f"| {kind} | {statistics.median(diffs):+.1f} ({min(diffs):+.1f}…{max(diffs):+.1f}) |")
    bad = sum(r["bad"] for rows in results.values() for r in rows)
    if bad:
        print(f"{bad} requests were not answered 2xx", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
