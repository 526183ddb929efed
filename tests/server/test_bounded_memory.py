"""Every in-process cache has a bound, and background jobs say how long they take.

A server runs for months: anything a worker keeps per request, per person or per event
must stop growing somewhere. These tests fill each cache far past its bound and check it
stayed there.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from audit.events import AuditEvent, Outcome
from policy.enforcer import MODEL_PATH, PolicyEngine
from server import background, db, memory
from server.background import BackgroundJobs, JobClock
from server.services import Services
from server.vault import blind_index as blind_index_module
from server.vault.register import ErasureRegister


def test_policy_decision_caches_are_bounded(tmp_path: Path) -> None:
    """Filled past their bounds (with a one-rule policy, so that it is quick)."""
    policy = tmp_path / "policy.csv"
    policy.write_text("p, sales, contact, read, allow\n")
    engine = PolicyEngine(MODEL_PATH, policy)
    for i in range(17_000):
        engine.allows("sales", f"contact.field_{i}", "read")
    for i in range(4_200):
        engine.decide("sales", f"kind_{i}", "read", "customer_relationship", (), frozenset())
    allows, decide = engine._allows.cache_info(), engine._decide.cache_info()
    assert allows.maxsize is not None
    assert decide.maxsize is not None
    assert allows.currsize <= allows.maxsize < 17_000
    assert decide.currsize <= decide.maxsize < 4_200


def test_blind_index_field_keys_are_bounded() -> None:
    for i in range(1000):
        blind_index_module.blind_index(bytes(32), "contact", f"column_{i}", "x", 16)
    info = blind_index_module._field_key.cache_info()
    assert info.maxsize is not None
    assert info.currsize <= info.maxsize == 64


def test_the_erasure_register_keeps_nothing_in_memory(tmp_path: Path) -> None:
    """It grows with every erasure for years; a worker must not hold it, nor read it back
    on every erasure. A person shredded twice is listed once."""
    register = ErasureRegister(tmp_path / "erasure-register.jsonl")
    people = [str(uuid.uuid4()) for _ in range(300)]
    for person in people:
        register.record(person)
    register.record(people[0])
    assert vars(register) == {"path": register.path}  # no set of everyone erased
    assert [e.subject_id for e in register.entries()] == people


def test_background_job_durations_are_logged_without_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines: list[tuple[str, dict[str, object]]] = []

    class Recorder:
        def info(self, event: str, **values: object) -> None:
            lines.append((event, values))

    monkeypatch.setattr(background, "log", Recorder())
    each = JobClock("alerts")
    with each.run():
        time.sleep(0.001)  # a run of a millisecond
    summed = JobClock("sealer", summary_seconds=0.0001)
    for _ in range(3):
        time.sleep(0.001)  # past the (tiny) summary interval
        summed.record(0.002)
    assert lines[0][0] == "background job ran"
    assert lines[0][1]["job"] == "alerts"
    assert isinstance(lines[0][1]["duration_ms"], float)
    summaries = [values for event, values in lines if event == "background job runs"]
    assert summaries
    assert {v["job"] for v in summaries} == {"sealer"}
    allowed = {"job", "duration_ms", "runs", "total_ms", "slowest_ms"}
    assert all(set(values) <= allowed for _, values in lines)  # durations, never data


async def test_stopping_the_jobs_signs_what_was_written_while_they_wound_down(
    services: Services,
) -> None:
    jobs = BackgroundJobs(services)
    jobs.start()
    await asyncio.sleep(0.05)  # the sealer's first round is done; the next is 250 ms away
    async with db.write_transaction():
        seq = await services.audit.append(
            AuditEvent(
                actor_id="system:test", actor_role="system", action="alert.update",
                resource_type="alert", outcome=Outcome.ALLOWED,
            )
        )  # fmt: skip
    await jobs.stop()
    head = await services.audit_trail.latest_head()
    assert head is not None
    assert head.tree_size >= seq


def test_a_torn_register_write_does_not_swallow_the_next_erasure(tmp_path: Path) -> None:
    """A crash between an entry's bytes and its newline must not cost the next entry, nor
    make the register unreadable for a restore."""
    path = tmp_path / "erasure-register.jsonl"
    register = ErasureRegister(path)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    register.record(first)
    path.write_text(path.read_text() + '{"subject_id": "1234')  # the torn write
    register.record(second)
    assert [e.subject_id for e in register.entries()] == [first, second]


@pytest.mark.skipif(not memory.can_trim(), reason="needs glibc's malloc_trim")
def test_freed_heap_in_the_middle_goes_back_to_the_system() -> None:
    """What the soak found: chunks freed between live ones stay resident until trimmed.

    200 MB of 4 KB buffers (below malloc's mmap threshold, so on its heap), with every
    twentieth kept alive so that the freed ones sit between live ones, not at the top."""
    buffers = [bytearray(4000) for _ in range(50_000)]
    kept = buffers[::20]
    del buffers
    trimmed = memory.release_free_heap()
    assert trimmed is not None
    assert trimmed.released > 100 * 2**20, trimmed
    assert len(kept) == 2_500


async def test_each_worker_trims_its_heap_and_logs_its_memory(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not memory.can_trim():
        pytest.skip("needs glibc's malloc_trim")
    lines: list[tuple[str, dict[str, object]]] = []

    class Recorder:
        def info(self, event: str, **values: object) -> None:
            lines.append((event, values))

        def warning(self, event: str, **values: object) -> None:
            lines.append((event, values))

    monkeypatch.setattr(background, "log", Recorder())
    monkeypatch.setattr(background, "HEAP_TRIM_SECONDS", 0.01)
    jobs = BackgroundJobs(services)
    jobs.start()
    try:
        assert "heap-trim" in {task.get_name() for task in jobs._tasks}
        await asyncio.sleep(0.3)
    finally:
        await jobs.stop()
    reports = [values for event, values in lines if event == "worker memory"]
    assert reports
    assert all(set(r) == {"rss_mib", "released_mib"} for r in reports)
    assert all(isinstance(r["rss_mib"], float) and r["rss_mib"] > 0 for r in reports)


def test_a_server_worker_does_not_load_the_analytics_libraries_until_it_uses_them() -> None:
    """scikit-learn, numpy and OpenDP add about 115 MiB to a process; a worker that never
    scores anyone or releases a noisy report must not carry them (seen in the soak: RSS
    per worker went from 123 to 237 MiB when they were imported at start-up)."""
    import subprocess
    import sys

    heavy = ("sklearn", "numpy", "opendp", "scipy")
    probe = (
        "import sys, server.app, admin_ui.plugin, server.cli; "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    loaded = subprocess.run(  # noqa: S603 - this interpreter and a fixed script
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "", f"loaded at start-up: {loaded}"
