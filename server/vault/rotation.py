"""KEK rotation and pruning: how erasure reaches backups.

A backup holds data keys wrapped under the KEK versions of its day. Rotation makes a new
KEK version active and re-wraps every live data key under it (data is never re-encrypted);
the old version is then *retired*: nothing live needs it, only backups do. Pruning destroys
retired versions once the backup-retention period has passed since they were retired, so
every backup from before the rotation - erased and living people alike - becomes
unreadable exactly when the backups themselves should have been deleted.

Rotation is resumable and online:

- the new KEK is written to the key file (atomic replace) *before* any data key is
  re-wrapped, and the old one stays in the file until pruned, so a crash anywhere leaves
  every data key readable under the old or the new version;
- ``rotate`` run again finds the unfinished rotation (a non-active version that is not
  retired yet) and carries on instead of starting another;
- running workers pick the new version up from the file by themselves
  (:class:`server.vault.keys.FileKeyProvider` re-reads a changed file); a data key a
  worker still wraps under the old version meanwhile is re-wrapped by the next pass, and
  pruning re-wraps any such straggler before it destroys a version.

Every key-file change is made under a lock file, so two operators cannot interleave.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from policy.enforcer import SYSTEM_ROLE
from server import db
from server.vault.keys import (
    FileKeyProvider,
    MasterKeyMissing,
    key_file_lock,
    new_kek,
    read_key_document,
    write_key_document,
)
from server.vault.vault import Vault

ACTOR = "system:keys"
_KEK_NUMBER = re.compile(r"k(\d+)")

Progress = Callable[[int, int], None]  # (re-wrapped so far, total to do)
BatchHook = Callable[[int], Awaitable[None]]


class RotationError(Exception):
    """Rotation or pruning cannot go on; the message is one line and names no key."""


@dataclass(frozen=True)
class KekVersion:
    kek_id: str
    active: bool
    created_at: str
    retired_at: str | None  # None: active, or a rotation away from it is unfinished
    data_keys: int  # live data keys wrapped under it


@dataclass(frozen=True)
class RotationReport:
    kek_id: str  # the active version afterwards
    resumed: bool  # an unfinished rotation was carried on
    rewrapped: int
    retired: tuple[str, ...]


@dataclass(frozen=True)
class PruneReport:
    destroyed: tuple[str, ...]
    kept: tuple[tuple[str, str], ...]  # (version, date it may be destroyed)
    rewrapped: int  # stragglers re-wrapped before destroying their version


def _text(now: dt.datetime) -> str:
    return now.isoformat(timespec="seconds")


def _meta(doc: dict[str, object], kek_id: str) -> dict[str, str | None]:
    metas = doc.setdefault("kek_meta", {})
    assert isinstance(metas, dict)
    meta = metas.setdefault(kek_id, {"created_at": doc.get("created_at"), "retired_at": None})
    assert isinstance(meta, dict)
    return meta


class KeyRotation:
    """Rotates and prunes the KEK versions of one key file; built per process."""

    def __init__(
        self,
        vault: Vault,
        keys: FileKeyProvider,
        audit: AuditLog,
        *,
        batch_size: int = 500,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._vault = vault
        self._keys = keys
        self._audit = audit
        self.batch_size = batch_size
        self.clock = clock
        # Called after each committed batch with the running total; tests inject a crash.
        self.after_batch: BatchHook | None = None

    @property
    def path(self) -> str:
        return str(self._keys.path)

    async def versions(self) -> list[KekVersion]:
        doc = read_key_document(self._keys.path)
        usage = await self._vault.kek_usage()
        found = []
        for kek_id in doc.get("keks", {}):
            meta = _meta(doc, kek_id)
            found.append(
                KekVersion(
                    kek_id,
                    kek_id == doc.get("active_kek"),
                    str(meta.get("created_at") or ""),
                    meta.get("retired_at"),
                    usage.get(kek_id, 0),
                )
            )
        return found

    def destroyed(self) -> dict[str, str]:
        """Versions destroyed by pruning, with when (ISO date-time)."""
        doc = read_key_document(self._keys.path)
        return {str(k): str(v) for k, v in dict(doc.get("destroyed", {})).items()}

    async def pending(self) -> int:
        """Data keys not yet wrapped under the active version."""
        active, _ = self._keys.active_kek()
        return sum(n for kek_id, n in (await self._vault.kek_usage()).items() if kek_id != active)

    # -- rotating --------------------------------------------------------------------------

    def _begin(self, now: dt.datetime) -> tuple[str, bool]:
        """Make a new version active, or find the unfinished rotation: (active, resumed)."""
        path = self._keys.path
        with key_file_lock(path):
            doc = read_key_document(path)
            keks = doc["keks"]
            active = str(doc["active_kek"])
            unfinished = [
                k for k in keks if k != active and _meta(doc, k).get("retired_at") is None
            ]
            if unfinished:
                return active, True
            numbers = [
                int(m[1])
                for k in (*keks, *dict(doc.get("destroyed", {})))
                if (m := _KEK_NUMBER.fullmatch(str(k)))
            ]
            new_id = f"k{max(numbers, default=0) + 1}"
            keks[new_id] = new_kek()
            _meta(doc, new_id).update({"created_at": _text(now), "retired_at": None})
            _meta(doc, active)["superseded_at"] = _text(now)
            doc["active_kek"] = new_id
            write_key_document(path, doc, replace=True)
        self._keys.refresh()
        return new_id, False

    def _retire(self, now: dt.datetime) -> tuple[str, ...]:
        path = self._keys.path
        with key_file_lock(path):
            doc = read_key_document(path)
            active = str(doc["active_kek"])
            retired = tuple(
                k for k in doc["keks"] if k != active and _meta(doc, k).get("retired_at") is None
            )
            for kek_id in retired:
                _meta(doc, kek_id)["retired_at"] = _text(now)
            if retired:
                write_key_document(path, doc, replace=True)
        self._keys.refresh()
        return retired

    async def _rewrap_all(self, progress: Progress | None) -> int:
        total = await self.pending()
        done = 0
        if progress:
            progress(0, total)
        while True:
            try:
                n = await self._vault.rewrap_batch(self.batch_size)
            except MasterKeyMissing as exc:
                raise RotationError(f"cannot re-wrap: {exc}") from None
            if not n:
                return done
            done += n
            total = max(total, done)
            if progress:
                progress(done, total)
            if self.after_batch is not None:
                await self.after_batch(done)

    async def rotate(self, progress: Progress | None = None) -> RotationReport:
        """Start a rotation (or carry on with an unfinished one) and finish it."""
        now = self.clock()
        kek_id, resumed = self._begin(now)
        await self._event("keys.rotate_start", {"kek": kek_id, "resumed": int(resumed)})
        rewrapped = await self._rewrap_all(progress)
        retired = self._retire(self.clock())
        await self._event(
            "keys.rotate", {"kek": kek_id, "rewrapped": rewrapped, "retired": ",".join(retired)}
        )
        return RotationReport(kek_id, resumed, rewrapped, retired)

    async def rotate_if_due(self, every: dt.timedelta, *, now: dt.datetime | None = None) -> bool:
        """Rotate when the active version is at least ``every`` old, or finish a rotation
        left unfinished; True if a rotation ran (the daily housekeeping)."""
        now = now or self.clock()
        doc = read_key_document(self._keys.path)
        active = str(doc["active_kek"])
        unfinished = any(
            k != active and _meta(doc, k).get("retired_at") is None for k in doc["keks"]
        )
        created = _meta(doc, active).get("created_at")
        due = created is None or dt.datetime.fromisoformat(created) + every <= now
        if not (due or unfinished):
            return False
        await self.rotate()
        return True

    # -- pruning ---------------------------------------------------------------------------

    async def prune(
        self, retention: dt.timedelta, *, now: dt.datetime | None = None, dry_run: bool = False
    ) -> PruneReport:
        """Destroy every version retired at least ``retention`` ago."""
        now = now or self.clock()
        doc = read_key_document(self._keys.path)
        due: list[str] = []
        kept: list[tuple[str, str]] = []
        for kek_id in doc.get("keks", {}):
            retired_at = _meta(doc, kek_id).get("retired_at")
            if kek_id == doc.get("active_kek") or not retired_at:
                continue
            until = dt.datetime.fromisoformat(retired_at) + retention
            if until <= now:
                due.append(kek_id)
            else:
                kept.append((kek_id, f"{until:%Y-%m-%d}"))
        if dry_run or not due:
            return PruneReport(tuple(due), tuple(kept), 0)
        # A worker that had not seen the rotation yet may have wrapped a new key under a
        # retired version: re-wrap it now, or destroying the version would lose a person.
        rewrapped = await self._rewrap_all(None)
        path = self._keys.path
        with key_file_lock(path):
            doc = read_key_document(path)
            destroyed = doc.setdefault("destroyed", {})
            for kek_id in due:
                doc["keks"].pop(kek_id, None)
                destroyed[kek_id] = _text(now)
            write_key_document(path, doc, replace=True)
        self._keys.refresh()
        await self._event("keys.prune", {"destroyed": ",".join(due), "rewrapped": rewrapped})
        return PruneReport(tuple(due), tuple(kept), rewrapped)

    async def _event(self, action: str, detail: dict[str, int | str]) -> None:
        async with db.write_transaction():
            await self._audit.append(
                audit_event(
                    actor_id=ACTOR,
                    actor_role=SYSTEM_ROLE,
                    action=action,
                    resource_type="master_key",
                    outcome=Outcome.ALLOWED,
                    detail=detail,
                )
            )
