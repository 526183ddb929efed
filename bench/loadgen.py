"""Driving a server with ``wrk``, and reading server-side latencies from its access log.

``wrk`` is a C load generator: it costs a fraction of a core at the rates seen here, so on
a small machine it disturbs the server far less than a Python load generator would. It
measures client-side latency (loopback included); both servers also log each request's
duration, which gives the server-side figures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.results_model import percentile

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk" / "scenarios.lua"
INSTALL_HINT = "apt-get update && apt-get install -y wrk"
WRK_TIMEOUT = "30s"  # slow requests must count as latency, not vanish as timeouts


@dataclass(frozen=True)
class Scenario:
    key: str  # name in the results
    script: str  # the Lua script's request shape: read | list | search | create | update
    label: str
    datafile_key: str  # which sample file feeds it: contacts | emails | organizations
    connections: int | None = None  # None: the run's --connections
    duration_share: float = 1.0  # of the run's --duration


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("read", "read", "read contact by id", "contacts"),
    Scenario("list", "list", "list page (25, with total)", "contacts"),
    Scenario("search", "search", "search by e-mail", "emails"),
    Scenario("create", "create", "create contact", "organizations"),
    Scenario("update", "update", "update contact", "contacts"),
    # With several connections on one worker, a request's server-side duration includes
    # the time it waits for the others' turns on the event loop. One connection gives
    # the service time itself, which is what the search latency target is about.
    Scenario(
        "search_1c",
        "search",
        "search by e-mail, 1 connection",
        "emails",
        connections=1,
        duration_share=0.5,
    ),
)


class WrkMissing(SystemExit):
    """wrk is not installed; the message says how to install it."""


def ensure_wrk(*, install: bool) -> str:
    """Path of ``wrk``; installs the Debian package when allowed, else says how to."""
    found = shutil.which("wrk")
    if found:
        return found
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"wrk not found: running `{INSTALL_HINT}`")
        for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "wrk"]):
            subprocess.run(argv, check=False, capture_output=True)  # noqa: S603
        found = shutil.which("wrk")
        if found:
            return found
    raise WrkMissing(
        f"the benchmark needs the `wrk` load generator; install it with: {INSTALL_HINT}"
    )


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)  # noqa: S603
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].split(" Copyright")[0] if text else "unknown"


def run_wrk(
    wrk: str,
    *,
    port: int,
    cookie: str,
    scenario: str,
    datafile: Path,
    duration: float,
    connections: int,
    pages: int = 1,
    runtag: str = "0",
    tick: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """One bounded wrk run against 127.0.0.1; returns the JSON printed by ``done()``."""
    argv = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={WRK_TIMEOUT}",
        "-s",
        str(LUA_SCRIPT),
        "-H",
        f"Cookie: {cookie}",
        f"http://127.0.0.1:{port}",
        "--",
        scenario,
        str(datafile),
        str(pages),
        runtag,
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # noqa: S603
    started = time.monotonic()
    try:
        while proc.poll() is None:
            time.sleep(0.2)
            if tick:
                tick(time.monotonic() - started)
        stdout, stderr = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            return result
    raise RuntimeError(f"wrk printed no result (exit {proc.returncode}): {stderr.strip()[-500:]}")


def server_side(log_path: Path, start: int, end: int) -> dict[str, Any]:
    """Durations the server logged for requests between two byte offsets of its log."""
    with log_path.open("rb") as handle:
        handle.seek(start)
        chunk = handle.read(max(0, end - start))
    durations: list[float] = []
    non2xx = 0
    for raw in chunk.splitlines():
        if not raw.startswith(b"{"):
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if line.get("event") != "request" or "duration_ms" not in line:
            continue
        durations.append(float(line["duration_ms"]))
        if not 200 <= int(line.get("status", 0)) <= 299:
            non2xx += 1
    return {
        "requests": len(durations),
        "p50_ms": round(percentile(durations, 50), 3),
        "p99_ms": round(percentile(durations, 99), 3),
        "non2xx": non2xx,
    }
