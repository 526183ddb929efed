"""Starting and stopping the two servers as real subprocesses on loopback.

Each server runs in its own process group so that stopping it also stops its uvicorn
worker processes; :meth:`Server.stop` is always called from a ``finally`` block, so a
failed or interrupted run leaves nothing listening.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

READY_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    _log: IO[bytes]

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def stop(self) -> None:
        """SIGTERM the process group (graceful uvicorn shutdown), SIGKILL if it lingers."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._log.close()

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_server(
    name: str, argv: list[str], *, env: dict[str, str], cwd: Path, log_path: Path, port: int
) -> Server:
    """Start ``argv`` and wait until ``GET /health`` answers 200."""
    log = log_path.open("ab")
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and entry points
        argv, env=env, cwd=cwd, stdout=log, stderr=log, start_new_session=True
    )
    server = Server(name, port, log_path, process, log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{name} did not become ready in {READY_TIMEOUT_S:.0f}s:\n{server.tail()}")


def post_json(
    port: int, path: str, body: dict[str, Any]
) -> tuple[int, list[tuple[str, str]], bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
            return resp.status, list(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, list(exc.headers.items()), exc.read()


def login_cookie(
    port: int, email: str, password: str, cookie_name: str, *, totp_code: str | None = None
) -> str:
    """Log in through the real endpoint; returns ``name=value`` for a Cookie header."""
    body: dict[str, Any] = {"email": email, "password": password}
    if totp_code:
        body["totp_code"] = totp_code
    status, headers, answer = post_json(port, "/api/v1/auth/login", body)
    if status != 200:
        raise RuntimeError(f"login failed with {status}: {answer[:200]!r}")
    for key, value in headers:
        if key.lower() == "set-cookie" and value.startswith(f"{cookie_name}="):
            return value.split(";", 1)[0]
    raise RuntimeError("login answered 200 but set no session cookie")


def get_status(port: int, path: str, cookie: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Cookie": cookie})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
