"""What the figures were measured on: without this, numbers cannot be compared."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sqlite3
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("litestar", "piccolo", "uvicorn", "uvloop", "httptools", "cryptography", "pycasbin")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info(*, postgres_version: str | None, wrk_version: str) -> dict[str, Any]:
    load1, load5, _ = os.getloadavg()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version or "not used",
        "wrk": wrk_version,
        "packages": {name: _version(name) for name in PACKAGES},
        "load_average_at_start": [round(load1, 2), round(load5, 2)],
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
