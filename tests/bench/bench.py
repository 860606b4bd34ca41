#!/usr/bin/env python3
"""Side-by-side proxy benchmark: wasmgate against Envoy and nginx, same machine, same run.

Every target proxies to the same nginx backend, which answers 401 unless the
injected `Authorization` header is right, so every counted 2xx proves the secret
arrived. The proxy under test is pinned to CPU 0; the load generator and the
backend share CPU 1. Targets are interleaved (each round visits every target
once, in a seeded random order) for several rounds, all HTTP/1.1 rounds
before the HTTP/2 ones, and each figure is the median over rounds.

Figures per target and protocol: requests/s, p50 and p99 latency, CPU
microseconds per request (the proxy's utime+stime from /proc divided by the
requests it served), peak RSS, non-2xx count, CPU ratios against Envoy +
wasm from the same run, and how busy each core was (from /proc/stat: when
both are near 100 % the loop queues, which is what the p99 shows), and the
comparisons the targets are judged by taken pairwise within each round (the
host's speed drifts over minutes; seconds apart, the drift mostly cancels). Also wasmgate's start-up time to ready with a cold and
a warm module cache, and RSS with 1,000 idle keep-alive connections.

Usage: tests/bench/bench.py [--rounds N] [--duration S] [--out FILE]
(`make bench` runs it and rewrites the results table in BENCHMARKS.md.)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECRET = "bench-secret-3f9a"  # a throwaway value for the benchmark only
PROXY_CPU = "0"
LOAD_CPU = "1"
WASM = ROOT / "target/wasm32-wasip1/release/secret_header.wasm"
WASMGATE = ROOT / "target/release/wasmgate"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0, headers: dict | None = None) -> float:
    """Polls url until it answers (any status); returns seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            urllib.request.urlopen(req, timeout=1).read()
            return time.monotonic() - start
        except urllib.error.HTTPError:
            return time.monotonic() - start
        except Exception:
            time.sleep(0.005)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def proc_tree(pid: int) -> list[int]:
    """pid and all its descendants (nginx master + workers)."""
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for c in children:
        out.extend(proc_tree(int(c)))
    return out


def cpu_seconds(pid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in proc_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def core_times() -> dict[str, tuple[int, int]]:
    """(busy, total) jiffies per CPU from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f and f[0].startswith("cpu") and f[0] != "cpu":
            v = [int(x) for x in f[1:]]
            idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
            out[f[0][3:]] = (sum(v) - idle, sum(v))
    return out


def busy_fraction(before: dict, after: dict, cpu: str) -> float:
    """Share of `cpu`'s time spent busy between two core_times() samples."""
    if cpu not in before or cpu not in after:
        return 0.0
    busy = after[cpu][0] - before[cpu][0]
    total = after[cpu][1] - before[cpu][1]
    return busy / total if total else 0.0


def rss_kib(pid: int, key: str = "VmHWM") -> int:
    total = 0
    for p in proc_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


@dataclass
class Target:
    name: str
    port: int
    cmd: list[str]
    env: dict = field(default_factory=dict)
    ready_url: str | None = None
    client_headers: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    # nginx 1.22 serves h2c (prior knowledge) only on a listener of its own.
    h2_port: int | None = None

    def start(self, workdir: Path) -> None:
        log = open(workdir / f"{self.name}.log", "wb")
        self.proc = subprocess.Popen(
            ["taskset", "-c", PROXY_CPU, *self.cmd],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        wait_http(self.ready_url or f"http://127.0.0.1:{self.port}/", headers=self.client_headers)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def keep_evidence(tg: Target, workdir: Path, why: str) -> None:
    """A target that stopped answering: its threads' states (from /proc, at once) and its log so
    far go to target/bench/failed-<name>.txt, which outlives the run's temporary directory."""
    dest = ROOT / "target/bench" / f"failed-{re.sub(r'[^a-z0-9]+', '-', tg.name)}.txt"
    dest.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{tg.name}: {why}"]
    pid = tg.proc.pid if tg.proc else None
    if pid and tg.proc.poll() is None:
        for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
            try:
                stat = (task / "stat").read_text().split(") ", 1)[1].split()
                wchan = (task / "wchan").read_text()
                name = (task / "comm").read_text().strip()
                lines.append(f"thread {task.name} {name}: state {stat[0]}, wchan {wchan}, "
                             f"utime {stat[11]} stime {stat[12]}")
            except OSError:
                pass
    elif tg.proc:
        lines.append(f"exited with {tg.proc.returncode}")
    log = workdir / f"{tg.name}.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    dest.write_text("\n".join(lines) + "\n--- log (last 200 lines) ---\n" + "\n".join(text.splitlines()[-200:]) + "\n")
    print(f"{tg.name}: {why}; evidence kept in {dest}", flush=True)


# ---- configurations ---------------------------------------------------------

def nginx_backend_conf(workdir: Path, port: int, h2_port: int) -> Path:
    conf = workdir / "backend.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {workdir}/backend.pid; error_log {workdir}/backend.err;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} reuseport;
    listen 127.0.0.1:{h2_port} http2;
    location / {{
      if ($http_authorization != "Bearer {SECRET}") {{ return 401; }}
      return 200 "ok\\n";
    }}
  }}
}}
""")
    return conf


def nginx_proxy_conf(workdir: Path, port: int, h2_port: int, backend: int, log: bool = False) -> Path:
    name = "nginx-proxy-log" if log else "nginx-proxy"
    # nginx's default `combined` format to a file, buffered as production configurations do.
    access = f"access_log {workdir}/{name}.access combined buffer=64k flush=1s" if log else "access_log off"
    conf = workdir / f"{name}.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {workdir}/{name}.pid; error_log {workdir}/{name}.err;
events {{ worker_connections 4096; }}
http {{
  {access}; keepalive_requests 1000000;
  # 512 idle upstream connections kept: HTTP/2 runs put 320 requests in flight (32 connections x 10
  # streams), each on its own upstream connection; with 64 kept nginx kept opening new ones.
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 512; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port};
    listen 127.0.0.1:{h2_port} http2;
    location / {{
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer {SECRET}";
      proxy_pass http://backend;
    }}
  }}
}}
""")
    return conf


@dataclass
class EnvoyTls:
    """HTTPS on both of Envoy's hops: the listener presents cert/key (ALPN h2 and http/1.1), the
    backend is reached over TLS verified against ca for the name sni."""
    cert: Path
    key: Path
    ca: Path
    sni: str = "localhost"


def envoy_conf(workdir: Path, name: str, port: int, admin: int, backend: int, wasm: bool,
               tls: EnvoyTls | None = None) -> Path:
    if wasm:
        http_filters = f"""
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: secret_header
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{{"set":{{"headers":["Authorization:Bearer {{vault://env/BENCH_TOKEN}}"]}}}}'
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{WASM}" }} }}
                  environment_variables: {{ host_env_keys: ["BENCH_TOKEN"] }}"""
        route_extra = ""
    else:
        http_filters = ""
        route_extra = f"""
                request_headers_to_add:
                  - header: {{ key: authorization, value: "Bearer {SECRET}" }}
                    append_action: OVERWRITE_IF_EXISTS_OR_ADD"""
    downstream_tls = upstream_tls = ""
    if tls:
        downstream_tls = f"""
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            tls_certificates:
            - certificate_chain: {{ filename: "{tls.cert}" }}
              private_key: {{ filename: "{tls.key}" }}"""
        upstream_tls = f"""
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: {tls.sni}
        common_tls_context:
          validation_context:
            trusted_ca: {{ filename: "{tls.ca}" }}
            match_typed_subject_alt_names: [{{ san_type: DNS, matcher: {{ exact: {tls.sni} }} }}]"""
    conf = workdir / f"{name}.yaml"
    conf.write_text(f"""
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: backend }}{route_extra}
          http_filters:{http_filters}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router{downstream_tls}
  clusters:
  - name: backend
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {backend} }} }} }}{upstream_tls}
""")
    return conf


def envoy_cmd(conf: Path, base_id: int) -> list[str]:
    """Envoy on one worker thread; base_id keeps several Envoys' shared memory apart."""
    return ["envoy", "-c", str(conf), "--concurrency", "1", "-l", "error", "--base-id", str(base_id)]


def wasmgate_conf(workdir: Path, name: str, port: int, admin: int, backend: int, wasm: bool, cache: Path,
                  log: bool = False) -> Path:
    filters = ""
    if wasm:
        filters = f"""
    filters:
      - wasm: {WASM}
        config: {{ set: {{ headers: ["Authorization:Bearer {{vault://env/BENCH_TOKEN}}"] }} }}
        env: [BENCH_TOKEN]"""
    else:
        filters = ""
    conf = workdir / f"{name}.yaml"
    conf.write_text(f"""
workers: 1
module_cache: {cache}
access_log: {{ disabled: {"false" if log else "true"} }}   # off as the nginx and Envoy targets, unless a `+ log` target
listeners:
  - address: 127.0.0.1:{port}
admin:
  address: 127.0.0.1:{admin}
upstreams:
  backend:
    url: http://127.0.0.1:{backend}
routes:
  - name: bench
    match: {{ path_prefix: / }}
    upstream: backend{filters}
""")
    return conf


# ---- load generators --------------------------------------------------------

def run_wrk(port: int, conns: int, duration: int, headers: dict) -> dict:
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=duration + 30).stdout
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    return {
        "requests": reqs,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "errors": sum(int(x) for x in errors.groups()) if errors else 0,
        "p50_us": to_us(lat.get("50", "0us")),
        "p99_us": to_us(lat.get("99", "0us")),
    }


def run_h2load(port: int, conns: int, duration: int, headers: dict, workdir: Path) -> dict:
    log = workdir / "h2load.log"
    cmd = ["taskset", "-c", LOAD_CPU, "h2load", "-t1", f"-c{conns}", "-m10", f"-D{duration}", "--log-file", str(log)]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=duration + 30).stdout
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    ok = int(m.group(1)) if m else 0
    lat = []
    try:
        for line in log.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 3:
                lat.append(int(parts[2]))
    except OSError:
        pass
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0  # noqa: E731
    return {
        "requests": int(done.group(1)) if done else 0,
        "non2xx": sum(int(m.group(i)) for i in (2, 3, 4)) if m else 0,
        "errors": int(done.group(3)) + int(done.group(4)) if done else 0,
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
    }


def to_us(s: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    if not m:
        return 0.0
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 1, "ms": 1e3, "s": 1e6}[unit]


# ---- extra figures ----------------------------------------------------------

def startup_times(workdir: Path, backend: int) -> dict:
    """wasmgate with the filter: time to /ready, cold module cache then warm."""
    cache = workdir / "startup-cache"
    shutil.rmtree(cache, ignore_errors=True)
    out = {}
    for label in ("cold", "warm"):
        port, admin = free_port(), free_port()
        conf = wasmgate_conf(workdir, "startup", port, admin, backend, True, cache)
        t0 = time.monotonic()
        proc = subprocess.Popen([str(WASMGATE), "run", "--config", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={**os.environ, "BENCH_TOKEN": SECRET})
        try:
            wait_http(f"http://127.0.0.1:{admin}/ready")
            out[label] = (time.monotonic() - t0) * 1e3
        finally:
            proc.terminate()
            proc.wait(10)
    return out


def idle_connection_rss(target: Target, n: int = 1000) -> int:
    """RSS (KiB) of the target after n idle keep-alive connections each served one request."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    socks = []
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n"
    for k, v in target.client_headers.items():
        req += f"{k}: {v}\r\n".encode()
    req += b"\r\n"
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", target.port), timeout=5)
            s.sendall(req)
            s.recv(4096)
            socks.append(s)
        time.sleep(0.5)
        return rss_kib(target.proc.pid, "VmRSS")
    finally:
        for s in socks:
            s.close()


# ---- main -------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=6, help="seed of the per-round target order")
    ap.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--out", type=Path, default=ROOT / "target/bench/results.json")
    ap.add_argument("--readme", action="store_true", help="rewrite the results table in BENCHMARKS.md")
    ap.add_argument("--only", default=None,
                    help="a regular expression: run only the targets whose name matches it")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory figures (memory.py)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another wasmgate binary (an earlier build) to run side by side, "
                         "with and without the filter, as `baseline ...` targets")
    args = ap.parse_args()

    for tool in ("nginx", "envoy", "wrk", "h2load", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"bench: `{tool}` is not installed (make bench installs it)")
    for path in (WASM, WASMGATE):
        if not path.exists():
            sys.exit(f"bench: {path} is missing (make bench builds it)")

    workdir = Path(tempfile.mkdtemp(prefix="wasmgate-bench-"))
    cache = workdir / "cache"
    backend_port, backend_h2 = free_port(), free_port()
    backend = subprocess.Popen(["taskset", "-c", LOAD_CPU, "nginx", "-c", str(nginx_backend_conf(workdir, backend_port, backend_h2))],
                               start_new_session=True)
    auth = {"Authorization": f"Bearer {SECRET}"}
    wait_http(f"http://127.0.0.1:{backend_port}/", headers=auth)

    def t(name, cmd, port, env=None, ready=None, headers=None):
        return Target(name, port, cmd, env or {}, ready, headers or {})

    targets = []
    p = backend_port
    targets.append(Target("backend (direct)", p, [], client_headers=auth, h2_port=backend_h2))
    builds = [("", WASMGATE)] + ([("baseline ", args.baseline)] if args.baseline else [])
    for prefix, binary in builds:
        for name, wasm, log in (("wasmgate (no filter)", False, False), ("wasmgate + wasm", True, False),
                                ("wasmgate + wasm + log", True, True)):
            name = prefix + name
            port, admin = free_port(), free_port()
            conf = wasmgate_conf(workdir, re.sub(r"[^a-z0-9]+", "-", name), port, admin, backend_port, wasm,
                                 cache, log)
            # The access log is an `info` event: `+ log` targets run at `info`, the others
            # at `warn` (whose access log is off anyway). Logs go to a file in the workdir.
            targets.append(t(name, [str(binary), "run", "--config", str(conf)], port,
                             {"BENCH_TOKEN": SECRET, "RUST_LOG": "info" if log else "warn"},
                             f"http://127.0.0.1:{admin}/ready", None if wasm else auth))
    for name, wasm in (("envoy + wasm (V8)", True), ("envoy native", False)):
        port, admin = free_port(), free_port()
        conf = envoy_conf(workdir, "envoy-wasm" if wasm else "envoy-native", port, admin, backend_port, wasm)
        targets.append(t(name, envoy_cmd(conf, port), port, {"BENCH_TOKEN": SECRET}))
    for name, log in (("nginx proxy_set_header", False), ("nginx proxy_set_header + log", True)):
        port, h2 = free_port(), free_port()
        nginx = t(name, ["nginx", "-c", str(nginx_proxy_conf(workdir, port, h2, backend_port, log))], port)
        nginx.h2_port = h2
        targets.append(nginx)
    if args.only:
        targets = [tg for tg in targets if re.search(args.only, tg.name)]

    results: dict[str, dict[str, list[dict]]] = {tg.name: {"http1": [], "h2": []} for tg in targets}
    try:
        for tg in targets:
            if tg.cmd:
                tg.start(workdir)
        # All HTTP/1.1 rounds first: an HTTP/2 round leaves hundreds of
        # extra upstream connections and sockets behind, which would tint the
        # HTTP/1.1 rounds after it (targets are still interleaved per round).
        # Each round visits the targets in a new (seeded) order: with a fixed
        # order, a neighbour's periodic load on this shared host can line up
        # with the round length and hit the same target every round.
        order = random.Random(args.seed)
        for proto in ("http1", "h2"):
            for rnd in range(args.rounds):
                for tg in order.sample(targets, len(targets)):
                    pid = tg.proc.pid if tg.proc else backend.pid
                    cpu0, cores0 = cpu_seconds(pid), core_times()
                    if proto == "http1":
                        r = run_wrk(tg.port, args.connections, args.duration, tg.client_headers)
                    else:
                        r = run_h2load(tg.h2_port or tg.port, args.connections, args.duration, tg.client_headers, workdir)
                    cores1 = core_times()
                    r["cpu_us"] = (cpu_seconds(pid) - cpu0) * 1e6 / max(r["requests"], 1)
                    r["rps"] = r["requests"] / args.duration
                    # How saturated each side was: a closed loop whose two
                    # cores are both near 100 % queues, and its p99 shows it.
                    r["proxy_core_busy"] = busy_fraction(cores0, cores1, PROXY_CPU)
                    r["load_core_busy"] = busy_fraction(cores0, cores1, LOAD_CPU)
                    results[tg.name][proto].append(r)
                    if r["requests"] == 0:
                        keep_evidence(tg, workdir, f"round {rnd + 1} {proto}: no request answered")
                    print(f"round {rnd + 1} {proto:5} {tg.name:24} {r['rps']:9.0f} req/s  "
                          f"cpu {r['cpu_us']:6.1f} us/req  p50 {r['p50_us']:7.0f} us  p99 {r['p99_us']:7.0f} us  "
                          f"busy {r['proxy_core_busy']:4.0%}/{r['load_core_busy']:4.0%}  "
                          f"non2xx {r['non2xx']}", flush=True)
        peak = {tg.name: rss_kib(tg.proc.pid if tg.proc else backend.pid) for tg in targets}
        idle = {}
        for tg in targets:
            if tg.proc and not tg.name.startswith("backend"):
                try:
                    idle[tg.name] = idle_connection_rss(tg)
                except OSError as e:
                    idle[tg.name] = f"failed: {e}"
                    keep_evidence(tg, workdir, f"1,000 idle connections: {e}")
        for tg in targets:
            tg.stop()
        # Where wasmgate's memory goes (tests/bench/memory.py), against the same backend.
        memory_figures = {}
        if not args.no_memory:
            import memory  # noqa: PLC0415  (same directory; it imports this module)
            memory_figures = memory.measure(WASMGATE, backend_port, workdir)
    finally:
        for tg in targets:
            tg.stop()
        os.killpg(backend.pid, signal.SIGTERM)
        backend.wait(10)

    startup = startup_times(workdir, backend_port)

    summary = summarize(results, peak, idle, args)
    summary["startup_ms"] = startup
    summary["memory"] = memory_figures
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"raw": results, "summary": summary}, indent=2))
    table = render(summary)
    print(table)
    if args.readme:
        rewrite_readme(table)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def summarize(results, peak, idle, args) -> dict:
    med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
    out = {"targets": {}, "meta": {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu_model()}",
        "envoy": version(["envoy", "--version"], r"version: \S+?/(\d+\.\d+\.\d+)/"),
        "nginx": version(["nginx", "-v"], r"nginx/([\d.]+)"),
        "rounds": args.rounds, "duration_s": args.duration, "connections": args.connections,
    }}
    for name, protos in results.items():
        out["targets"][name] = {}
        for proto, rows in protos.items():
            out["targets"][name][proto] = {
                "rps": med(rows, "rps"), "p50_us": med(rows, "p50_us"), "p99_us": med(rows, "p99_us"),
                "cpu_us": med(rows, "cpu_us"), "non2xx": sum(r["non2xx"] + r["errors"] for r in rows),
                "proxy_core_busy": med(rows, "proxy_core_busy"), "load_core_busy": med(rows, "load_core_busy"),
            }
        out["targets"][name]["peak_rss_kib"] = peak.get(name)
        out["targets"][name]["idle_1000_rss_kib"] = idle.get(name)
    out["paired"] = paired(results)
    return out


PAIRS = {
    # label: (target, against, figure, how)
    "filter cost, CPU µs/req (wasmgate + wasm − wasmgate)": ("wasmgate + wasm", "wasmgate (no filter)", "cpu_us", "minus"),
    "CPU, wasmgate + wasm / nginx": ("wasmgate + wasm", "nginx proxy_set_header", "cpu_us", "over"),
    "CPU, wasmgate + wasm / Envoy + wasm": ("wasmgate + wasm", "envoy + wasm (V8)", "cpu_us", "over"),
    "p99, wasmgate + wasm / nginx": ("wasmgate + wasm", "nginx proxy_set_header", "p99_us", "over"),
    "p99, wasmgate + wasm / Envoy + wasm": ("wasmgate + wasm", "envoy + wasm (V8)", "p99_us", "over"),
    "access log cost, CPU µs/req (wasmgate + wasm + log − wasmgate + wasm)": ("wasmgate + wasm + log", "wasmgate + wasm", "cpu_us", "minus"),
    "access log cost, CPU µs/req (nginx + log − nginx)": ("nginx proxy_set_header + log", "nginx proxy_set_header", "cpu_us", "minus"),
    "CPU, wasmgate + wasm + log / nginx + log": ("wasmgate + wasm + log", "nginx proxy_set_header + log", "cpu_us", "over"),
    # With --baseline: this build against the earlier one.
    "CPU µs/req, wasmgate + wasm − baseline": ("wasmgate + wasm", "baseline wasmgate + wasm", "cpu_us", "minus"),
    "CPU µs/req, wasmgate − baseline (no filter)": ("wasmgate (no filter)", "baseline wasmgate (no filter)", "cpu_us", "minus"),
}


def paired(results) -> dict:
    """Target-against-target figures taken within each round, then the median
    over rounds: the machine's speed drifts over minutes (shared host), and a
    comparison inside one round, seconds apart, cancels most of that drift."""
    out = {}
    for proto in ("http1", "h2"):
        out[proto] = {}
        for label, (a, b, key, how) in PAIRS.items():
            rows = zip(results.get(a, {}).get(proto, []), results.get(b, {}).get(proto, []))
            vals = [ra[key] - rb[key] if how == "minus" else ra[key] / rb[key]
                    for ra, rb in rows if how == "minus" or rb[key]]
            if vals:
                out[proto][label] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
    return out


def render(s: dict) -> str:
    m = s["meta"]
    lines = [f"Measured {m['date']} on {m['machine']}; Envoy {m['envoy']}, nginx {m['nginx']}; "
             f"{m['connections']} connections, {m['rounds']} rounds of {m['duration_s']} s, medians; "
             "proxy pinned to CPU 0, load and backend on CPU 1.", ""]
    ref = s["targets"].get("envoy + wasm (V8)", {})
    for proto, label in (("http1", "HTTP/1.1 keep-alive (wrk)"), ("h2", "HTTP/2 (h2load, 10 streams/conn)")):
        lines += [f"**{label}**", "",
                  "| target | req/s | p50 µs | p99 µs | CPU µs/req | CPU vs Envoy+wasm | non-2xx "
                  "| CPU 0 / CPU 1 busy |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        base = ref.get(proto, {}).get("cpu_us") or 0
        for name, t in s["targets"].items():
            r = t[proto]
            ratio = f"{r['cpu_us'] / base:.2f}" if base else "-"
            lines.append(f"| {name} | {r['rps']:.0f} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | "
                         f"{r['cpu_us']:.1f} | {ratio} | {r['non2xx']} | "
                         f"{r['proxy_core_busy']:.0%} / {r['load_core_busy']:.0%} |")
        lines.append("")
    pairs = s.get("paired") or {}
    if pairs:
        lines += ["Paired within each round (median over rounds, and the range):", "",
                  "| figure | HTTP/1.1 | HTTP/2 |", "|---|---:|---:|"]
        for label in PAIRS:
            cells = []
            for proto in ("http1", "h2"):
                v = pairs.get(proto, {}).get(label)
                fmt = "{:.1f}" if "µs" in label or "−" in label else "{:.2f}"
                cells.append(f"{fmt.format(v['median'])} ({fmt.format(v['min'])}–{fmt.format(v['max'])})"
                             if v else "-")
            if cells != ["-", "-"]:
                lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
        lines.append("")
    lines += ["| target | peak RSS MiB | RSS with 1,000 idle keep-alive conns MiB |", "|---|---:|---:|"]
    for name, t in s["targets"].items():
        idle = t.get("idle_1000_rss_kib")
        idle_s = f"{idle / 1024:.1f}" if isinstance(idle, int) else (idle or "-")
        lines.append(f"| {name} | {(t['peak_rss_kib'] or 0) / 1024:.1f} | {idle_s} |")
    if s.get("memory"):
        import memory  # noqa: PLC0415
        lines += ["", "**Memory** (`tests/bench/memory.py`: RSS from `/proc`, THP = `AnonHugePages`)", "",
                  memory.render(s["memory"])]
    st = s.get("startup_ms") or {}
    if st:
        lines += ["", f"wasmgate start-up to ready with the filter: cold module cache {st.get('cold', 0):.0f} ms, "
                      f"warm {st.get('warm', 0):.0f} ms."]
    return "\n".join(lines)


def rewrite_readme(table: str) -> None:
    readme = ROOT / "BENCHMARKS.md"
    text = readme.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        readme.write_text(f"{head}{start}\n{table}\n{end}{tail}")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def version(cmd: list[str], pattern: str) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        m = re.search(pattern, p.stdout + p.stderr)
        return m.group(1) if m else "?"
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
