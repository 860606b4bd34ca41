#!/usr/bin/env python3
"""Where wasmgate's memory goes (issue 16): RSS of the gateway without filters and with the
filter, at start-up and after a load run, per further (route, worker) instance of the filter,
with many routes sharing one `.wasm`, and per idle keep-alive connection.

Every figure comes from /proc: `VmRSS` from `status`, `AnonHugePages` (transparent huge pages)
from `smaps_rollup`. The gateway runs with 2 workers, as in the issue's figures, unless a
figure needs one (a (route, worker) instance is created on a worker's first request on the
route; with one worker the test controls which instances exist).

Usage: tests/bench/memory.py [--binary PATH] [--out FILE]
(`bench.py` calls `measure()` and prints the same table.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (helpers shared with the side-by-side bench)

SETTLE_S = 2.0  # mimalloc returns freed pages to the OS after about a second


def smaps(pid: int) -> dict[str, int]:
    """RSS and AnonHugePages in KiB."""
    out = {"rss": 0, "thp": 0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key == "Rss":
                out["rss"] = int(rest.split()[0])
            elif key == "AnonHugePages":
                out["thp"] = int(rest.split()[0])
    except OSError:
        pass
    return out


def gateway_conf(workdir: Path, name: str, port: int, admin: int, backend: int, *,
                 filter_routes: int, plain_routes: int = 0, workers: int = 2,
                 access_log: bool = False, cache: Path | None = None) -> Path:
    """A gateway with `filter_routes` routes running the filter (paths /f0, /f1, ...; the
    last one also takes /) and `plain_routes` without (paths /p0, ...)."""
    routes = []
    for i in range(plain_routes):
        routes.append(f"""
  - name: p{i}
    match: {{ path_prefix: /p{i}/ }}
    upstream: backend""")
    for i in range(filter_routes):
        routes.append(f"""
  - name: f{i}
    match: {{ path_prefix: /f{i}/ }}
    upstream: backend
    filters:
      - wasm: {bench.WASM}
        config: {{ set: {{ headers: ["Authorization:Bearer {{vault://env/BENCH_TOKEN}}"] }} }}
        env: [BENCH_TOKEN]""")
    # The catch-all: with the filter if any route has it, else plain.
    if filter_routes:
        routes.append(f"""
  - name: all
    match: {{ path_prefix: / }}
    upstream: backend
    filters:
      - wasm: {bench.WASM}
        config: {{ set: {{ headers: ["Authorization:Bearer {{vault://env/BENCH_TOKEN}}"] }} }}
        env: [BENCH_TOKEN]""")
    else:
        routes.append("""
  - name: all
    match: { path_prefix: / }
    upstream: backend""")
    log = "{ disabled: false }" if access_log else "{ disabled: true }"
    conf = workdir / f"{name}.yaml"
    cache_line = f"module_cache: {cache}" if cache else ""
    conf.write_text(f"""
workers: {workers}
{cache_line}
access_log: {log}
listeners:
  - address: 127.0.0.1:{port}
admin:
  address: 127.0.0.1:{admin}
upstreams:
  backend:
    url: http://127.0.0.1:{backend}
routes:{''.join(routes)}
""")
    return conf


class Gateway:
    def __init__(self, binary: Path, conf: Path, port: int, admin: int, log: Path):
        self.port, self.admin = port, admin
        self.proc = subprocess.Popen([str(binary), "run", "--config", str(conf)],
                                     stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                     env={**os.environ, "BENCH_TOKEN": bench.SECRET, "RUST_LOG": "warn"},
                                     start_new_session=True)
        bench.wait_http(f"http://127.0.0.1:{admin}/ready")

    def mem(self) -> dict[str, int]:
        return smaps(self.proc.pid)

    def get(self, path: str, headers: dict | None = None) -> int:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        req = f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
        for k, v in (headers or {}).items():
            req += f"{k}: {v}\r\n"
        s.sendall((req + "\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        return int(data.split(b" ", 2)[1]) if data else 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def load(port: int, path: str, headers: dict, seconds: int) -> None:
    """HTTP/1.1 then HTTP/2 load on one path."""
    url = f"http://127.0.0.1:{port}{path}"
    h = []
    for k, v in headers.items():
        h += ["-H", f"{k}: {v}"]
    subprocess.run(["wrk", "-t1", "-c32", f"-d{seconds}s", *h, url], capture_output=True,
                   timeout=seconds + 30)
    subprocess.run(["h2load", "-t1", "-c32", "-m10", f"-D{seconds}", *h, url], capture_output=True,
                   timeout=seconds + 30)


def idle_connections(port: int, n: int, headers: dict) -> list[socket.socket]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n"
    for k, v in headers.items():
        req += f"{k}: {v}\r\n".encode()
    req += b"\r\n"
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(req)
        s.recv(4096)
        socks.append(s)
    return socks


def measure(binary: Path, backend: int, workdir: Path, load_seconds: int = 3) -> dict:
    """Every memory figure, in KiB (see the module's docs)."""
    auth = {"Authorization": f"Bearer {bench.SECRET}"}
    out: dict = {}

    cache = workdir / "memory-module-cache"
    shutil.rmtree(cache, ignore_errors=True)

    def start(name: str, **kw) -> Gateway:
        port, admin = bench.free_port(), bench.free_port()
        conf = gateway_conf(workdir, name, port, admin, backend, cache=cache, **kw)
        return Gateway(binary, conf, port, admin, workdir / f"{name}.log")

    # The module cache as the bench (and a restarted production gateway) has it: warm. The
    # first start compiles (cranelift's code and heap come into play): its figure is `cold`.
    g = start("mem-cold", filter_routes=1)
    try:
        time.sleep(SETTLE_S)
        out["filter, cold module cache"] = {"startup": g.mem()}
    finally:
        g.stop()

    # Start-up and after load, with and without the filter, 2 workers.
    for label, routes in (("no filter", 0), ("filter", 1)):
        g = start(f"mem-{routes}", filter_routes=routes)
        try:
            row = {"ready": g.mem()}
            time.sleep(SETTLE_S)
            row["startup"] = g.mem()
            load(g.port, "/", {} if routes else auth, load_seconds)
            time.sleep(SETTLE_S)
            row["after_load"] = g.mem()
            socks = idle_connections(g.port, 1000, {} if routes else auth)
            time.sleep(0.5)
            row["idle_1000"] = g.mem()
            for s in socks:
                s.close()
            out[label] = row
        finally:
            g.stop()

    # Many routes with the same .wasm (compiled and mapped once), 2 workers, at start-up.
    g = start("mem-20", filter_routes=20)
    try:
        time.sleep(SETTLE_S)
        out["20 filter routes"] = {"startup": g.mem()}
    finally:
        g.stop()

    # Each further (route, worker) instance: one worker, every filter instantiated at start
    # (timers start without waiting for a request); 2 against 102 routes with the filter.
    n = 100
    mems = []
    for routes in (1, 1 + n):
        g = start(f"mem-inst-{routes}", filter_routes=routes, workers=1)
        try:
            time.sleep(SETTLE_S)
            if g.get("/f0/x") != 200:
                raise RuntimeError("memory: the filter route did not answer 200")
            mems.append(g.mem())
        finally:
            g.stop()
    out["instances"] = {"one": mems[0], "many": mems[1], "n": n,
                        "per_instance": (mems[1]["rss"] - mems[0]["rss"]) / n}
    return out


def render(m: dict) -> str:
    mib = lambda kib: f"{kib / 1024:.1f}"  # noqa: E731
    lines = ["| wasmgate, 2 workers | RSS at ready MiB | RSS 2 s later MiB (THP) | after load MiB (THP) "
             "| 1,000 idle conns, KiB each |",
             "|---|---:|---:|---:|---:|"]
    for label in ("no filter", "filter"):
        r = m.get(label)
        if not r:
            continue
        per_conn = (r["idle_1000"]["rss"] - r["after_load"]["rss"]) / 1000
        lines.append(f"| {label} | {mib(r['ready']['rss'])} | {mib(r['startup']['rss'])} "
                     f"({mib(r['startup']['thp'])}) | {mib(r['after_load']['rss'])} "
                     f"({mib(r['after_load']['thp'])}) | {per_conn:.1f} |")
    nf, f = m.get("no filter"), m.get("filter")
    lines.append("")
    if nf and f:
        lines.append(f"With one filter route / without: start-up "
                     f"{f['startup']['rss'] / nf['startup']['rss']:.2f} ×, after load "
                     f"{f['after_load']['rss'] / nf['after_load']['rss']:.2f} ×.")
    if "filter, cold module cache" in m:
        lines.append(f"With a cold module cache (compiling at start) the filter's gateway starts at "
                     f"{mib(m['filter, cold module cache']['startup']['rss'])} MiB; the figures above "
                     "are with a warm one, as the bench runs.")
    if "20 filter routes" in m and f:
        r20 = m["20 filter routes"]["startup"]["rss"]
        lines.append(f"21 routes running the same filter, start-up: {mib(r20)} MiB "
                     f"({(r20 - f['startup']['rss']) / 20:.0f} KiB per further route).")
    if "instances" in m:
        lines.append(f"Each further (route, worker) instance of the filter: "
                     f"{m['instances']['per_instance']:.0f} KiB (one worker, {m['instances']['n']} more routes running it; "
                     "route and plugin included).")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", type=Path, default=bench.WASMGATE)
    ap.add_argument("--out", type=Path, default=bench.ROOT / "target/bench/memory.json")
    ap.add_argument("--load-seconds", type=int, default=3)
    args = ap.parse_args()
    for tool in ("nginx", "wrk", "h2load"):
        if not shutil.which(tool):
            sys.exit(f"memory: `{tool}` is not installed (make bench installs it)")
    workdir = Path(tempfile.mkdtemp(prefix="wasmgate-memory-"))
    port, h2 = bench.free_port(), bench.free_port()
    backend = subprocess.Popen(["nginx", "-c", str(bench.nginx_backend_conf(workdir, port, h2))],
                               start_new_session=True)
    try:
        bench.wait_http(f"http://127.0.0.1:{port}/")
        m = measure(args.binary, port, workdir, args.load_seconds)
    finally:
        os.killpg(backend.pid, signal.SIGTERM)
        backend.wait(10)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(m, indent=2))
    print(render(m))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
