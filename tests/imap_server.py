"""A real IMAP server for the mailbox capture tests: Dovecot from Debian's packages, run
in the foreground from a temporary directory with its own configuration.

No SSL (loopback only), a passwd-file with one plain-text password, Maildir under the
temporary directory, and a free high port. Messages are delivered the way a local
delivery agent does it: written into the Maildir's ``new/`` folder, where Dovecot gives
them their UIDs. ``dovecot`` missing skips the tests unless
``CONSENTRY_TEST_REQUIRE_MAIL=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_MAIL = os.environ.get("CONSENTRY_TEST_REQUIRE_MAIL") == "1"
DOVECOT_CANDIDATES = ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")
USER = "rep@mail.example"
PASSWORD = "app-password-for-tests"


def dovecot_binary() -> str | None:
    found = shutil.which("dovecot")
    if found:
        return found
    return next((c for c in DOVECOT_CANDIDATES if Path(c).exists()), None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mail_account() -> tuple[int, int, str]:
    """A non-root system account for the mail files (Dovecot refuses uid 0 for mail)."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name
    for name in ("dovecot", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid, name
    raise RuntimeError("no unprivileged account for the mail files")


CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%n
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = 0
default_login_user = {login_user}
default_internal_user = {login_user}
default_internal_group = {login_group}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%n
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


@dataclass
class ImapServer:
    root: Path
    port: int
    uid: int
    gid: int
    user: str = USER
    password: str = PASSWORD

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / self.user.split("@", 1)[0]

    def deliver(self, raw: bytes) -> None:
        """Put a message into the INBOX as a delivery agent would (Maildir ``new/``)."""
        for folder in (self.maildir, *(self.maildir / sub for sub in ("tmp", "new", "cur"))):
            folder.mkdir(parents=True, exist_ok=True)
            os.chown(folder, self.uid, self.gid)
        name = f"{time.time():.6f}.{uuid.uuid4().hex}.consentry-test"
        temporary = self.maildir / "tmp" / name
        temporary.write_bytes(raw)
        os.chown(temporary, self.uid, self.gid)
        temporary.rename(self.maildir / "new" / name)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def run_dovecot(root: Path) -> Iterator[ImapServer]:
    binary = dovecot_binary()
    if binary is None:
        if REQUIRE_MAIL:
            pytest.fail("dovecot is required (apt-get install dovecot-imapd) but was not found")
        pytest.skip("dovecot not installed (apt-get install dovecot-imapd)")
    uid, gid, name = _mail_account()
    login_group = name
    port = free_port()
    for sub in ("run", "state", "mail", "home"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("mail", "home"):
        os.chown(root / sub, uid, gid)
    os.chmod(root, 0o755)  # noqa: S103 - Dovecot's unprivileged processes must enter it
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    config = root / "dovecot.conf"
    config.write_text(
        CONFIG.format(
            root=root, uid=uid, gid=gid, port=port, login_user=name, login_group=login_group
        )
    )
    process = subprocess.Popen(  # noqa: S603 - our own fixed arguments
        [binary, "-F", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        if not _wait_for_port(port, process):
            stderr = b""
            if process.poll() is not None and process.stderr is not None:
                stderr = process.stderr.read()
            log = ImapServer(root, port, uid, gid).log()
            pytest.fail(f"dovecot did not start: {stderr.decode(errors='replace')}\n{log}")
        yield ImapServer(root, port, uid, gid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
