#!/usr/bin/env python3
"""Soak test (issue 16, `make soak`): wasmgate under mixed HTTP/1.1 and HTTP/2 traffic for
SOAK_SECONDS (default 600) through a route without filters, a route running the filter and,
for 1 % of requests, a route whose filter traps; the configuration is reloaded every 10 s and
the backend restarted every minute (down for about a second).

Reported: requests, errors by cause (from the gateway's own counters: the trapping route's
503s, 502s while the backend is down, anything else is unexpected), RSS and open file
descriptors sampled every 10 s, and whether they stay flat after warm-up (RSS over the last
minute within 5 % of the second minute's, or of the second sample on runs shorter than three
minutes). At the end the gateway gets SIGTERM, and the access log must hold exactly one line
per request served (nothing lost on a clean stop).

Load is rate-limited (h2load --rps), not saturating: a soak looks for leaks and stuck state,
not throughput, and the machine is shared. Exit status 0 when every check passes.

Usage: SOAK_SECONDS=60 tests/bench/soak.py [--rate N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

# A filter that traps in every request's headers callback.
TRAP_WAT = """
(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $size)))
    (local.get $ptr))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) unreachable)
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1)))
"""


def config(workdir: Path, port: int, admin: int, backend: int, generation: int) -> str:
    # Each reload changes something real: the filter's extra header carries the generation.
    return f"""
# generation {generation}
workers: 2
listeners:
  - address: 127.0.0.1:{port}
admin:
  address: 127.0.0.1:{admin}
upstreams:
  backend:
    url: http://127.0.0.1:{backend}
    timeout: 5s
    connect_timeout: 1s
routes:
  - name: trap
    match: {{ path_prefix: /trap }}
    upstream: backend
    filters:
      - wasm: {workdir / 'trap.wat'}
  - name: filter
    match: {{ path_prefix: /filter }}
    upstream: backend
    filters:
      - wasm: {bench.WASM}
        config: {{ set: {{ headers: ["Authorization:Bearer {{vault://env/BENCH_TOKEN}}", "x-soak-generation:{generation}"] }} }}
        env: [BENCH_TOKEN]
  - name: plain
    match: {{ path_prefix: / }}
    upstream: backend
"""


def metrics(admin: int) -> dict[tuple[str, str], float]:
    """(family with labels, ) -> value of every sample on /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


def route_counts(m: dict) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for key, v in m.items():
        g = re.match(r'wasmgate_route_requests_total\{route="([^"]+)",status="([^"]+)"\}', key)
        if g:
            out.setdefault(g.group(1), {})[g.group(2)] = int(v)
    return out


def proc_sample(pid: int) -> tuple[int, int]:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", "600")))
    ap.add_argument("--rate", type=int, default=int(os.environ.get("SOAK_RATE", "40")),
                    help="requests/s per load-generator client (8 HTTP/1.1 + 4 HTTP/2 clients)")
    ap.add_argument("--out", type=Path, default=bench.ROOT / "target/bench/soak.json")
    args = ap.parse_args()
    for path in (bench.WASM, bench.WASMGATE):
        if not path.exists():
            sys.exit(f"soak: {path} is missing (make soak builds it)")

    workdir = Path(tempfile.mkdtemp(prefix="wasmgate-soak-"))
    (workdir / "trap.wat").write_text(TRAP_WAT)
    backend_port, backend_h2 = bench.free_port(), bench.free_port()
    backend_conf = bench.nginx_backend_conf(workdir, backend_port, backend_h2)

    def start_backend() -> subprocess.Popen:
        p = subprocess.Popen(["nginx", "-c", str(backend_conf)], start_new_session=True,
                             stderr=subprocess.DEVNULL)
        bench.wait_http(f"http://127.0.0.1:{backend_port}/")
        return p

    backend = start_backend()
    port, admin = bench.free_port(), bench.free_port()
    conf = workdir / "soak.yaml"
    conf.write_text(config(workdir, port, admin, backend_port, 0))
    log_path = workdir / "gateway.log"
    gateway = subprocess.Popen([str(bench.WASMGATE), "run", "--config", str(conf)],
                               stdout=subprocess.DEVNULL, stderr=open(log_path, "wb"),
                               env={**os.environ, "BENCH_TOKEN": bench.SECRET, "RUST_LOG": "info"},
                               start_new_session=True)
    bench.wait_http(f"http://127.0.0.1:{admin}/ready")

    # 100 URIs per client, used in turn: 1 trapping, then the filter's and the plain route's
    # alternately (49 and 50). Interleaved: the clients walk the list in step, and a list in
    # two halves put every backend restart in the same half (the plain route saw none).
    uris = workdir / "uris.txt"
    base = f"http://127.0.0.1:{port}"
    mixed = [u for i in range(50) for u in (f"{base}/filter/{i}", f"{base}/plain/{i}")][:-2]
    uris.write_text("\n".join([f"{base}/trap/x", *mixed, f"{base}/plain/49"]) + "\n")
    load = []
    for proto, clients, extra in (("http1", 8, ["--h1"]), ("h2", 4, ["-m", "4"])):
        load.append((proto, subprocess.Popen(
            # The plain route's backend wants the secret too: clients send it everywhere (the
            # filter replaces it on its routes).
            ["h2load", *extra, "-c", str(clients), "--rps", str(args.rate), "-D", str(args.seconds),
             "-H", f"Authorization: Bearer {bench.SECRET}", "-i", str(uris)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))

    samples: list[dict] = []
    events: list[str] = []
    reloads = {"ok": 0, "failed": 0}
    stop = threading.Event()

    def chaos() -> None:
        generation = 0
        t0 = time.monotonic()
        next_reload, next_restart = 10.0, 60.0
        nonlocal backend
        while not stop.is_set():
            now = time.monotonic() - t0
            if now >= next_reload:
                generation += 1
                conf.write_text(config(workdir, port, admin, backend_port, generation))
                try:
                    req = urllib.request.Request(f"http://127.0.0.1:{admin}/reload", method="POST")
                    urllib.request.urlopen(req, timeout=30).read()
                    reloads["ok"] += 1
                except Exception as e:  # noqa: BLE001
                    reloads["failed"] += 1
                    events.append(f"{now:.0f}s reload failed: {e}")
                next_reload += 10
            if now >= next_restart:
                os.killpg(backend.pid, signal.SIGTERM)
                backend.wait(10)
                time.sleep(1.0)
                backend = start_backend()
                events.append(f"{now:.0f}s backend restarted")
                next_restart += 60
            stop.wait(0.2)

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    chaos_thread.start()
    t0 = time.monotonic()
    try:
        while True:
            elapsed = time.monotonic() - t0
            rss, fds = proc_sample(gateway.pid)
            samples.append({"t": round(elapsed), "rss_kib": rss, "fds": fds})
            print(f"{elapsed:5.0f}s  RSS {rss / 1024:6.1f} MiB  fds {fds}", flush=True)
            if elapsed >= args.seconds:
                break
            time.sleep(max(0.0, 10 * len(samples) - (time.monotonic() - t0)))
        outputs = {proto: p.communicate(timeout=120)[0] for proto, p in load}
    finally:
        stop.set()
        chaos_thread.join(30)
        for _, p in load:
            if p.poll() is None:
                p.kill()
    m = metrics(admin)
    routes = route_counts(m)
    gateway.send_signal(signal.SIGTERM)
    gateway.wait(60)
    os.killpg(backend.pid, signal.SIGTERM)
    backend.wait(10)

    # Requests and errors, as the clients saw them and as the gateway counted them.
    clients = {}
    for proto, out in outputs.items():
        st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        done = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                         r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
        clients[proto] = {
            "done": int(done.group(3)) if done else 0,
            "2xx": int(st.group(1)) if st else 0,
            "4xx": int(st.group(3)) if st else 0,
            "5xx": int(st.group(4)) if st else 0,
            "failed": int(done.group(5)) if done else 0,
            "errored": int(done.group(6)) if done else 0,
            "timeout": int(done.group(7)) if done else 0,
        }
    served = sum(sum(c.values()) for c in routes.values())
    trap_5xx = routes.get("trap", {}).get("5xx", 0)
    trap_other = sum(v for k, v in routes.get("trap", {}).items() if k != "5xx")
    other_5xx = sum(r.get("5xx", 0) for name, r in routes.items() if name != "trap")
    other_4xx = sum(r.get("4xx", 0) for r in routes.values())
    upstream = {k.split("{")[0].removeprefix("wasmgate_upstream_").removesuffix("_total"): int(v)
                for k, v in m.items() if k.startswith("wasmgate_upstream_") and 'upstream="backend"' in k}
    log_text = log_path.read_text(errors="replace")
    access_lines = sum(1 for line in log_text.splitlines() if " access: request " in line)
    dropped = int(m.get("wasmgate_access_log_dropped_lines_total", 0))
    panics = [line for line in log_text.splitlines() if "panicked" in line]

    # Flatness: the last minute against the warm-up reference.
    def window(lo: float, hi: float) -> list[dict]:
        return [s for s in samples if lo <= s["t"] <= hi]
    end = samples[-1]["t"]
    ref = window(60, 120) if end >= 180 else samples[1:2]
    last = window(end - 60, end)
    ref_rss = sum(s["rss_kib"] for s in ref) / len(ref)
    rss_dev = max(abs(s["rss_kib"] - ref_rss) / ref_rss for s in last)
    ref_fds = max(s["fds"] for s in ref)
    fds_growth = max(s["fds"] for s in last) - ref_fds
    client_errors = sum(c["errored"] + c["timeout"] for c in clients.values())
    checks = {
        "gateway answered every request (client-side errors and timeouts: none beyond "
        "connections cut by the final stop)": client_errors == 0,
        "trapping route: only 503s": trap_other == 0 and trap_5xx > 0,
        "no 4xx (every request carried or was given the secret)": other_4xx == 0,
        f"RSS flat: last minute within 5 % of the reference ({rss_dev:.1%})": rss_dev <= 0.05,
        f"open fds flat (last minute's max {fds_growth:+d} over the reference's)": fds_growth <= 8,
        "reloads all applied": reloads["failed"] == 0 and reloads["ok"] > 0,
        f"access log: one line per request ({access_lines} lines, {served} requests, "
        f"{dropped} dropped)": access_lines == served and dropped == 0,
        "no panic in the gateway's log": not panics,
    }
    report = {
        "seconds": args.seconds, "requests_served": served, "by_route": routes, "clients": clients,
        "errors_by_cause": {
            "trapping filter (503, deliberate)": trap_5xx,
            "5xx on other routes (502/504 while the backend was down or restarting)": other_5xx,
            "upstream connect failures": upstream.get("connect_failures", 0),
            "upstream exchanges broken": upstream.get("failures", 0),
        },
        "upstream": upstream, "reloads": reloads, "events": events, "samples": samples,
        "access_log_lines": access_lines, "access_log_dropped": dropped, "checks": checks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("requests_served", "by_route", "clients", "errors_by_cause",
                                             "reloads", "access_log_lines")}, indent=2))
    ok = True
    for name, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {name}")
        ok &= passed
    if ok:
        subprocess.run(["rm", "-rf", str(workdir)])
    else:
        print(f"workdir kept: {workdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
