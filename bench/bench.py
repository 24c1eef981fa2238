"""Driver of ``bench/run``: the gateway against the floor (the upstream answered directly).

Standard library only. Started by ``bench/run``, which finds the interpreter and
``llm-proxy``; see bench/README.md for the columns and knobs.

Sequence: start (or reuse) the nginx fake upstream on 127.0.0.1:18080; write a
temporary config (one provider, SQLite in the temp dir); create a client key;
start ``llm-proxy serve``; wait for /health; check each scenario once by hand;
then for every scenario and connection count run wrk against the upstream
directly (floor) and through the gateway; SIGTERM the gateway, wait for it to
exit and count the rows in ``requests`` against the chat requests sent.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "bench"
UPSTREAM_HOST, UPSTREAM_PORT = "127.0.0.1", 18080
UPSTREAM = f"http://{UPSTREAM_HOST}:{UPSTREAM_PORT}/v1"
LUA = HERE / "wrk.lua"
CLK = os.sysconf("SC_CLK_TCK")
MODEL = "gpt-4o"
CHAT_SCENARIOS = ("chat", "stream")  # the ones that write a log row per request

# No proxy for our own checks: everything is on 127.0.0.1.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- knobs -------------------------------------------------------------------------


@dataclass
class Knobs:
    duration: int
    warmup: int
    conns: list[int]
    scenarios: list[str]
    repeat: int
    threads: int
    timeout: str
    floor: bool
    keep: bool
    quick: bool

    @classmethod
    def from_env(cls, quick: bool) -> Knobs:
        env = os.environ
        k = cls(
            duration=int(env.get("DURATION", "2" if quick else "5")),
            warmup=int(env.get("WARMUP", "1" if quick else "2")),
            conns=[int(c) for c in env.get("CONNS", "1 32 128").replace(",", " ").split()],
            scenarios=env.get("SCENARIOS", "chat stream models").replace(",", " ").split(),
            repeat=int(env.get("REPEAT", "1")),
            threads=int(env.get("THREADS", "1")),
            timeout=env.get("TIMEOUT", "10s"),
            floor=env.get("FLOOR", "1") != "0",
            keep=env.get("KEEP", "0") == "1",
            quick=quick,
        )
        bad = [s for s in k.scenarios if s not in ("chat", "stream", "models")]
        if bad:
            sys.exit(f"bench: unknown scenario(s) {bad}; use chat, stream, models")
        if k.duration < 1 or k.warmup < 0 or k.repeat < 1 or not k.conns:
            sys.exit("bench: DURATION >= 1, WARMUP >= 0, REPEAT >= 1 and CONNS non-empty")
        if any(c < k.threads for c in k.conns):
            sys.exit("bench: every CONNS value must be >= THREADS")
        return k


# -- /proc -------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """pid and its descendants (nginx: master + worker)."""
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for c in children:
        out += tree(int(c))
    return out


def cpu_ticks(pid: int | None) -> int:
    """utime + stime of the process tree (all threads), in clock ticks."""
    if pid is None:
        return 0
    total = 0
    for p in tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def status_kb(pid: int | None, key: str) -> int:
    """Sum of a /proc/<pid>/status field (VmRSS, VmHWM) over the tree, in KiB."""
    if pid is None:
        return 0
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def reset_peak(pid: int | None) -> bool:
    """Reset VmHWM (peak RSS) so the next read is this run's peak ("5" > clear_refs)."""
    if pid is None:
        return False
    ok = True
    for p in tree(pid):
        try:
            Path(f"/proc/{p}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def host_ticks() -> tuple[int, int]:
    """(total, idle+iowait) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]


def busy_pct(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Machine CPU use between two host_ticks() samples; 100 = one core."""
    dt, di = b[0] - a[0], b[1] - a[1]
    return 100.0 * os.cpu_count() * (dt - di) / dt if dt > 0 else 0.0  # type: ignore[operator]


# -- HTTP helpers ------------------------------------------------------------------


def http(
    method: str, url: str, key: str | None = None, body: dict[str, Any] | None = None
) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with OPENER.open(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# -- the upstream (nginx) ----------------------------------------------------------


class Upstream:
    def __init__(self, tmp: Path) -> None:
        self.prefix = tmp / "nginx"
        self.pid: int | None = None
        self.how = ""
        self._stop: list[str] | None = None

    def start(self) -> None:
        if port_open(UPSTREAM_HOST, UPSTREAM_PORT):
            # Someone's upstream (e.g. ../shared/bench/upstream.sh start) is up: reuse it.
            for pf in (
                Path(os.environ.get("NGINX_PREFIX", "/nonexistent")) / "nginx.pid",
                Path(os.environ.get("TMPDIR", "/tmp")) / "bench-nginx" / "nginx.pid",
            ):
                if pf.is_file():
                    try:
                        pid = int(pf.read_text())
                        os.kill(pid, 0)
                        self.pid = pid
                        break
                    except (ValueError, OSError):
                        pass
            self.how = f"already running (pid {self.pid or 'unknown'}), reused"
        else:
            self.prefix.mkdir(parents=True)
            (self.prefix / "logs").mkdir()
            script = SHARED / "upstream.sh"
            if script.is_file() and (SHARED / "nginx.conf").is_file():
                env = {**os.environ, "NGINX_PREFIX": str(self.prefix)}
                subprocess.run(
                    ["bash", str(script), "start"], env=env, check=True, stdout=subprocess.DEVNULL
                )
                self._stop = ["bash", str(script), "stop"]
                self.how = "../shared/bench/upstream.sh (nginx.conf)"
            else:
                subprocess.run(
                    [
                        "nginx",
                        "-p",
                        str(self.prefix),
                        "-c",
                        str(HERE / "nginx-upstream.conf"),
                        "-e",
                        str(self.prefix / "logs" / "error.log"),
                    ],
                    check=True,
                )
                self.how = "bench/nginx-upstream.conf"
            pidfile = self.prefix / "nginx.pid"
            for _ in range(50):
                if pidfile.is_file() and pidfile.read_text().strip():
                    break
                time.sleep(0.1)
            self.pid = int(pidfile.read_text())
            for _ in range(50):
                if port_open(UPSTREAM_HOST, UPSTREAM_PORT):
                    break
                time.sleep(0.1)
        status, body = http("GET", f"{UPSTREAM}/models")
        if status != 200:
            raise SystemExit(
                f"bench: fake upstream answered {status} on /v1/models: {body[:200]!r}"
            )

    def stop(self) -> None:
        if self.how.startswith("already"):
            return
        if self._stop:
            env = {**os.environ, "NGINX_PREFIX": str(self.prefix)}
            subprocess.run(self._stop, env=env, stdout=subprocess.DEVNULL, check=False)
        elif self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except OSError:
                pass
            for _ in range(50):
                if not Path(f"/proc/{self.pid}").exists():
                    break
                time.sleep(0.1)


# -- the gateway -------------------------------------------------------------------

CONFIG = """\
# Written by bench/run for one benchmark; deleted afterwards.
[server]
host = "127.0.0.1"
port = {port}
graceful_timeout = 10.0
workers = {workers}

[database]
path = "{db}"

[logging]
level = "{log_level}"

[models_dev]
enabled = false      # no catalogue fetch: the benchmark talks to 127.0.0.1 only

[providers.openai]
enabled = true
base_url = "{upstream}"
default_model = "{model}"

[providers.gemini]
enabled = false

[providers.deepseek]
enabled = false

[providers.grok]
enabled = false

[providers.ollama]
enabled = false
"""


class Gateway:
    def __init__(self, tmp: Path, llm_proxy: str) -> None:
        self.tmp = tmp
        self.exe = llm_proxy
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self.config = tmp / "config.toml"
        self.db = tmp / "data" / "llm_proxy.db"
        self.logfile = tmp / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.key = ""
        self.env = {**os.environ, "OPENAI_API_KEY": "bench"}
        for k in ("GEMINI_API_KEY", "DEEPSEEK_API_KEY", "GROK_API_KEY", "LLM_PROXY_CONFIG"):
            self.env.pop(k, None)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def setup(self) -> None:
        self.config.write_text(
            CONFIG.format(
                port=self.port,
                db=self.db,
                upstream=UPSTREAM,
                model=MODEL,
                log_level=os.environ.get("GATEWAY_LOG_LEVEL", "warning"),
                workers=int(os.environ.get("WORKERS", "1")),
            )
        )
        run = subprocess.run(
            [self.exe, "--config", str(self.config), "keys", "create", "bench"],
            env=self.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if run.returncode != 0 or not run.stdout.strip():
            raise SystemExit(f"bench: `llm-proxy keys create` failed:\n{run.stdout}{run.stderr}")
        self.key = run.stdout.strip().splitlines()[-1].strip()

    def start(self) -> None:
        out = self.logfile.open("wb")
        self.proc = subprocess.Popen(
            [self.exe, "serve", "--config", str(self.config)],
            env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: gateway exited at start:\n{self.log_tail()}")
            try:
                status, _ = http("GET", f"http://127.0.0.1:{self.port}/health")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"bench: gateway not healthy after 60 s:\n{self.log_tail()}")

    def stop(self) -> tuple[int | None, float]:
        """SIGTERM and wait; returns (exit code, seconds it took)."""
        if not self.proc or self.proc.poll() is not None:
            return (self.proc.returncode if self.proc else None), 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode, time.monotonic() - t0

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


# -- checks ------------------------------------------------------------------------

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 64}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}


def preflight(base: str, key: str, scenarios: list[str], label: str) -> tuple[int, list[str]]:
    """One request per scenario by hand. Returns (chat requests sent, notes)."""
    notes: list[str] = []
    chats = 0
    for s in scenarios:
        if s == "chat":
            chats += 1
            status, body = http("POST", f"{base}/chat/completions", key, BODY)
            ok = status == 200 and b'"choices"' in body and b'"usage"' in body
            if not ok:
                raise SystemExit(f"bench: {label} chat check failed: HTTP {status}: {body[:300]!r}")
        elif s == "stream":
            chats += 1
            status, body = http("POST", f"{base}/chat/completions", key, STREAM_BODY)
            events = [ln for ln in body.split(b"\n") if ln.startswith(b"data:")]
            if status != 200 or not events or events[-1].strip() != b"data: [DONE]":
                raise SystemExit(
                    f"bench: {label} stream check failed: HTTP {status}: {body[:300]!r}"
                )
            usage = any(b'"usage":{' in e for e in events)
            notes.append(
                f"{label} stream: {len(events)} SSE data events incl. [DONE]"
                + ("" if usage else " (NO usage chunk)")
            )
        elif s == "models":
            status, body = http("GET", f"{base}/models", key)
            if status != 200 or b'"data"' not in body:
                raise SystemExit(
                    f"bench: {label} models check failed: HTTP {status}: {body[:300]!r}"
                )
    if label == "gateway" and ("chat" in scenarios or "stream" in scenarios):
        chats += 1
        status, _ = http("POST", f"{base}/chat/completions", "wrong-key-for-bench", BODY)
        if status != 401:
            notes.append(f"gateway: a wrong client key got HTTP {status}, expected 401")
    return chats, notes


# -- wrk ---------------------------------------------------------------------------


@dataclass
class Point:
    target: str  # gateway | floor
    scenario: str
    conns: int
    round: int
    rps: float = 0.0
    requests: int = 0
    issued: int = 0
    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    max: float = 0.0
    errors: int = 0
    non2xx: int = 0
    socket_errors: int = 0
    warmup_requests: int = 0
    warmup_issued: int = 0
    warmup_errors: int = 0
    cpu_ms_per_req: float | None = None
    cpu_pct: float | None = None
    peak_rss_mb: float | None = None
    upstream_cpu_pct: float | None = None
    wrk_cpu_pct: float = 0.0
    other_cpu_pct: float = 0.0
    raw: str = field(default="", repr=False)


def wrk(
    k: Knobs, url: str, key: str, scenario: str, conns: int, seconds: int, latency: bool
) -> tuple[dict[str, float], str]:
    env = {
        **os.environ,
        "BENCH_MODEL": MODEL,
        "BENCH_API_KEY": key,
        "BENCH_STREAM": "1" if scenario == "stream" else "0",
        "BENCH_METHOD": "GET" if scenario == "models" else "POST",
    }
    path = "/models" if scenario == "models" else "/chat/completions"
    cmd = ["wrk", f"-t{k.threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", k.timeout]
    if latency:
        cmd.append("--latency")
    cmd += ["-s", str(LUA), url + path]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    out = run.stdout + run.stderr
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_RESULT")), None)
    if line is None:
        raise SystemExit(f"bench: wrk gave no result for {scenario} c={conns} at {url}:\n{out}")
    vals = {a: float(b) for a, b in (kv.split("=", 1) for kv in line.split()[1:])}
    return vals, out


def measure(
    k: Knobs, target: str, url: str, key: str, scenario: str, conns: int, rnd: int,
    pid: int | None, upstream_pid: int | None,
) -> Point:  # fmt: skip
    p = Point(target, scenario, conns, rnd)
    if k.warmup > 0 and target == "gateway":  # nginx needs none; warm-up requests are counted
        w, _ = wrk(k, url, key, scenario, conns, k.warmup, latency=False)
        p.warmup_requests, p.warmup_issued = int(w["requests"]), int(w["issued"])
        p.warmup_errors = int(
            w["non2xx"] + w["connect_err"] + w["read_err"] + w["write_err"] + w["timeouts"]
        )
    peak_ok = reset_peak(pid)
    c0, u0, h0 = cpu_ticks(pid), cpu_ticks(upstream_pid), host_ticks()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    v, p.raw = wrk(k, url, key, scenario, conns, k.duration, latency=True)
    t1 = time.monotonic()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    c1, u1, h1 = cpu_ticks(pid), cpu_ticks(upstream_pid), host_ticks()
    wall = t1 - t0
    p.rps, p.requests, p.issued = v["rps"], int(v["requests"]), int(v["issued"])
    p.p50, p.p90, p.p99, p.max = v["p50_ms"], v["p90_ms"], v["p99_ms"], v["max_ms"]
    p.non2xx = int(v["non2xx"])
    p.socket_errors = int(v["connect_err"] + v["read_err"] + v["write_err"] + v["timeouts"])
    p.errors = p.non2xx + p.socket_errors
    proc_cpu = 0.0
    if pid is not None:
        secs = (c1 - c0) / CLK
        proc_cpu = 100 * secs / wall
        p.cpu_pct = proc_cpu
        p.cpu_ms_per_req = 1000 * secs / p.requests if p.requests else None
        p.peak_rss_mb = status_kb(pid, "VmHWM" if peak_ok else "VmRSS") / 1024
    up_cpu = 0.0
    if upstream_pid is not None and upstream_pid != pid:
        up_cpu = 100 * (u1 - u0) / CLK / wall
        p.upstream_cpu_pct = up_cpu
    p.wrk_cpu_pct = 100 * (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / wall
    p.other_cpu_pct = busy_pct(h0, h1) - proc_cpu - up_cpu - p.wrk_cpu_pct
    return p


# -- reporting ---------------------------------------------------------------------


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> str:
    """'' for one run, else ' ±x%' with x = (max - min) / 2 / median."""
    if len(xs) < 2 or not med(xs):
        return ""
    return f" ±{50 * (max(xs) - min(xs)) / med(xs):.0f}%"


def fmt_rps(x: float) -> str:
    return f"{x:,.0f}"


def fmt_ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 0.1 else f"{x:.2f}"


TARGETS: dict[tuple[str, str], tuple[float | None, float | None, str]] = {
    # (scenario, metric): (goal, stretch, direction)
    ("chat", "cpu"): (2.0, 1.0, "<="),
    ("stream", "cpu"): (4.0, 2.0, "<="),
    ("chat", "rps32"): (None, 800.0, ">="),
    ("chat", "added_p50"): (None, 1.0, "<="),
    ("stream", "added_p50"): (None, 1.0, "<="),
    ("-", "idle_rss"): (100.0, 60.0, "<="),
}


def verdict(key: tuple[str, str], value: float | None) -> str:
    if key not in TARGETS or value is None:
        return ""
    goal, stretch, op = TARGETS[key]

    def ok(limit: float) -> bool:
        return value <= limit if op == "<=" else value >= limit

    parts = []
    if goal is not None:
        parts.append(f"{op} {goal:g}")
    if stretch is not None:
        parts.append(f"stretch {op} {stretch:g}")
    text = ", ".join(parts)
    if stretch is not None and ok(stretch):
        return f"{text}: **stretch met**"
    if goal is not None and ok(goal):
        return f"{text}: met"
    return f"{text}: **missed**"


def summary_table(k: Knobs, points: list[Point], extra: dict[str, Any]) -> str:
    def sel(target: str, s: str, c: int) -> list[Point]:
        return [p for p in points if p.target == target and p.scenario == s and p.conns == c]

    rows: list[tuple[str, str, str, str]] = []
    c_lat = min(k.conns)
    loaded = [c for c in k.conns if c > 1] or k.conns
    for s in k.scenarios:
        for c in loaded:
            g = [p.rps for p in sel("gateway", s, c)]
            f = [p.rps for p in sel("floor", s, c)]
            v = med(g) if g else None
            rows.append((
                f"{s} req/s @{c} conns",
                fmt_rps(med(g)) + spread(g) if g else "-",
                fmt_rps(med(f)) + spread(f) if f else "-",
                verdict((s, f"rps{c}"), v),
            ))  # fmt: skip
        for q in ("p50", "p99"):
            g = [getattr(p, q) for p in sel("gateway", s, c_lat)]
            f = [getattr(p, q) for p in sel("floor", s, c_lat)]
            cell = fmt_ms(med(g)) + spread(g) if g else "-"
            added = med(g) - med(f) if g and f else None
            if added is not None:
                cell += f" (+{added:.2f})"
            rows.append((
                f"{s} {q} ms @{c_lat} conn" + ("s" if c_lat > 1 else ""),
                cell,
                fmt_ms(med(f)) + spread(f) if f else "-",
                verdict((s, f"added_{q}"), added) if q == "p50" else "",
            ))  # fmt: skip
        cpu: dict[str, list[str]] = {"gateway": [], "floor": []}
        main_cpu = None
        for c in k.conns:
            for t in cpu:
                xs = [p.cpu_ms_per_req for p in sel(t, s, c) if p.cpu_ms_per_req is not None]
                cpu[t].append(fmt_ms(med(xs)) + spread(xs) if xs else "-")
                if t == "gateway" and xs and c == (32 if 32 in k.conns else max(k.conns)):
                    main_cpu = med(xs)
        rows.append((
            f"{s} CPU ms/req @{' / @'.join(map(str, k.conns))} conns",
            " / ".join(cpu["gateway"]),
            " / ".join(cpu["floor"]),
            verdict((s, "cpu"), main_cpu) + (" (at 32 conns)" if (s, "cpu") in TARGETS else ""),
        ))  # fmt: skip
    rows.append((
        "idle RSS MB (after start, before any request)",
        f"{extra['idle_rss_mb']:.1f}",
        f"{extra['upstream_rss_mb']:.1f}" if extra["upstream_rss_mb"] else "-",
        verdict(("-", "idle_rss"), extra["idle_rss_mb"]),
    ))  # fmt: skip
    rows.append((
        "peak RSS MB during load (max over runs) / RSS after load",
        f"{extra['peak_rss_mb']:.1f} / {extra['after_rss_mb']:.1f}",
        "-", "",
    ))  # fmt: skip
    lr = extra["log"]
    rows.append((
        "log rows written / chat requests sent (incl. warm-up, checks)",
        f"{lr['rows']} / {lr['sent']}" + (f" (wrk saw {lr['answered']} answered)"),
        "-",
        "== sent: "
        + ("met" if lr["rows"] == lr["sent"] else f"**missed** ({lr['rows'] - lr['sent']:+d})"),
    ))  # fmt: skip
    errs = extra["errors"]
    rows.append((
        "wrk errors (non-2xx + socket), all gateway runs incl. warm-up",
        str(errs["gateway"]),
        str(errs["floor"]),
        "0: " + ("met" if errs["gateway"] == 0 else "**missed**"),
    ))  # fmt: skip
    noise = [
        f"{med(v):.0f} / {max(v):.0f}" if v else "-"
        for v in ([p.other_cpu_pct for p in points if p.target == t] for t in ("gateway", "floor"))
    ]
    rows.append((
        "noise: other processes' CPU % during the runs, median / max (100 = one core)",
        noise[0],
        noise[1],
        "",
    ))  # fmt: skip
    out = ["| metric | gateway | floor (upstream direct) | target |", "|---|---:|---:|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(out)


def detail_table(points: list[Point]) -> str:
    out = [
        "| target | scenario | conns | round | req/s | p50 ms | p90 ms | p99 ms | max ms | errors "
        "| CPU % | CPU ms/req | peak RSS MB | upstream CPU % | wrk CPU % | other CPU % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:

        def f(x: float | None, spec: str = ".0f") -> str:
            return "-" if x is None else format(x, spec)

        out.append(
            f"| {p.target} | {p.scenario} | {p.conns} | {p.round} | {fmt_rps(p.rps)} "
            f"| {fmt_ms(p.p50)} | {fmt_ms(p.p90)} | {fmt_ms(p.p99)} | {fmt_ms(p.max)} "
            f"| {p.errors} | {f(p.cpu_pct)} | {fmt_ms(p.cpu_ms_per_req)} "
            f"| {f(p.peak_rss_mb, '.1f')} | {f(p.upstream_cpu_pct)} | {p.wrk_cpu_pct:.0f} "
            f"| {p.other_cpu_pct:.0f} |"
        )
    return "\n".join(out)


def count_rows(db: Path) -> tuple[int, dict[int, int]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        total = con.execute("SELECT count(*) FROM requests").fetchone()[0]
        by = dict(con.execute("SELECT status, count(*) FROM requests GROUP BY status").fetchall())
    finally:
        con.close()
    return int(total), {int(a): int(b) for a, b in by.items()}


def git_rev() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "gateway"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# -- main --------------------------------------------------------------------------


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    k = Knobs.from_env(quick)
    llm_proxy = os.environ.get("LLM_PROXY") or shutil.which("llm-proxy") or ""
    if not llm_proxy:
        sys.exit("bench: llm-proxy not found (install the project first, see README.md)")
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not found (Debian: apt-get install -y nginx wrk)")

    tmp = Path(tempfile.mkdtemp(prefix="llm-proxy-bench-"))
    tmp.chmod(0o755)  # nginx workers run as nobody
    upstream = Upstream(tmp)
    gw = Gateway(tmp, llm_proxy)
    points: list[Point] = []
    started = time.time()
    rev = git_rev()  # now: the tree the gateway starts from
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        h0 = host_ticks()
        time.sleep(1)
        busy_before = busy_pct(h0, host_ticks())
        if busy_before > 15:
            log(f"WARNING: the machine is already {busy_before:.0f}% busy (100 = one core) "
                "before the benchmark starts; figures will be skewed.")  # fmt: skip
        upstream.start()
        log(f"upstream: {upstream.how}")
        gw.setup()
        gw.start()
        time.sleep(1.0)
        idle_rss = status_kb(gw.pid, "VmRSS") / 1024
        log(f"gateway: pid {gw.pid} on {gw.base}, idle RSS {idle_rss:.1f} MB, log {gw.logfile}")
        sent_checks, notes = preflight(gw.base, gw.key, k.scenarios, "gateway")
        if k.floor:
            notes += preflight(UPSTREAM, "x", k.scenarios, "floor")[1]
        for n in notes:
            log("check: " + n)
        total = len(k.scenarios) * len(k.conns) * k.repeat
        i = 0
        for rnd in range(1, k.repeat + 1):
            for s in k.scenarios:
                for c in k.conns:
                    i += 1
                    targets = [("floor", UPSTREAM, upstream.pid)] if k.floor else []
                    targets.append(("gateway", gw.base, gw.pid))
                    for name, url, pid in targets:
                        if gw.proc and gw.proc.poll() is not None:
                            rc = gw.proc.returncode
                            how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"code {rc}"
                            k.keep = True
                            raise SystemExit(
                                f"bench: the gateway died ({how}); its log:\n{gw.log_tail()}"
                            )
                        p = measure(k, name, url, gw.key, s, c, rnd, pid,
                                    upstream.pid if name == "gateway" else None)  # fmt: skip
                        points.append(p)
                        warm = f" (+{p.warmup_errors} in warm-up)" if p.warmup_errors else ""
                        log(f"[{i}/{total}] {name:7} {s:6} c={c:<3} {fmt_rps(p.rps):>7} req/s "
                            f"p50 {fmt_ms(p.p50)} ms p99 {fmt_ms(p.p99)} ms "
                            f"CPU {fmt_ms(p.cpu_ms_per_req)} ms/req errors {p.errors}{warm}"
                            f" other CPU {p.other_cpu_pct:.0f}%")  # fmt: skip
                        if p.errors and name == "gateway":
                            log(
                                "  wrk said:\n    "
                                + "\n    ".join(p.raw.strip().splitlines()[-12:])
                            )
        after_rss = status_kb(gw.pid, "VmRSS") / 1024
        upstream_rss = status_kb(upstream.pid, "VmRSS") / 1024
        code, took = gw.stop()
        log(f"gateway: SIGTERM -> exit code {code} after {took:.1f} s")
        if code != 0:
            log(gw.log_tail())
        rows, by_status = count_rows(gw.db)
        gp = [p for p in points if p.target == "gateway"]
        chat_gp = [p for p in gp if p.scenario in CHAT_SCENARIOS]
        sent = sent_checks + sum(p.issued + p.warmup_issued for p in chat_gp)
        answered = sum(p.requests + p.warmup_requests for p in chat_gp)
        gateway_errors = sum(p.errors + p.warmup_errors for p in gp)
        extra: dict[str, Any] = {
            "idle_rss_mb": idle_rss,
            "after_rss_mb": after_rss,
            "upstream_rss_mb": upstream_rss,
            "peak_rss_mb": max((p.peak_rss_mb or 0) for p in gp) if gp else 0,
            "log": {"rows": rows, "sent": sent, "answered": answered, "by_status": by_status},
            "errors": {
                "gateway": gateway_errors,
                "floor": sum(p.errors for p in points if p.target == "floor"),
            },
            "exit_code": code,
            "busy_before_pct": busy_before,
        }
        warn_log = [
            ln for ln in gw.logfile.read_text(errors="replace").splitlines()
            if "WARNING" in ln or "ERROR" in ln or "Traceback" in ln
        ]  # fmt: skip
        header = (
            f"llm-proxy {rev}, {platform.node()}, {os.cpu_count()} CPUs, "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {k.duration} s per point"
            f" (+{k.warmup} s warm-up on the gateway), wrk -t{k.threads}, "
            f"conns {' '.join(map(str, k.conns))}, {k.repeat} round(s); "
            f"machine {busy_before:.0f}% busy before start; upstream: {upstream.how}"
        )
        table = summary_table(k, points, extra)
        status_text = ", ".join(f"{s}: {n}" for s, n in sorted(by_status.items()))
        foot = [
            f"Log rows by status: {status_text}. Requests still in flight when wrk stops are "
            "logged as 499 (client closed).",
            "CPU ms/req = gateway process CPU (user+sys, all threads) during the run / requests "
            "answered. Median over rounds; ±x% = half the range over the median.",
        ]
        if warn_log:
            foot.append(f"Gateway log: {len(warn_log)} warning/error line(s), first: "
                        f"`{warn_log[0][:200]}`")  # fmt: skip
        results = HERE / "results"
        results.mkdir(exist_ok=True)
        md = results / f"{stamp}{'-quick' if quick else ''}.md"
        md.write_text(
            f"# bench/run {stamp}\n\n{header}\n\n{table}\n\n" + "\n\n".join(foot)
            + f"\n\n## Every run\n\n{detail_table(points)}\n"
        )  # fmt: skip
        (results / f"{stamp}{'-quick' if quick else ''}.json").write_text(
            json.dumps(
                {
                    "header": header,
                    "knobs": k.__dict__,
                    "extra": extra,
                    "points": [{a: b for a, b in p.__dict__.items() if a != "raw"} for p in points],
                },
                indent=1,
            )
        )
        print(f"\n{header}\n\n{table}\n\n" + "\n\n".join(foot))
        log(f"\nsaved {md.relative_to(ROOT)} (+ .json with every run); "
            f"took {time.time() - started:.0f} s")  # fmt: skip
        bad = rows != sent or gateway_errors or code != 0
        return 1 if bad else 0
    finally:
        gw.stop()
        upstream.stop()
        if k.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
