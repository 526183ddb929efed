"""``server.wiring.Later``: how build_services breaks a cycle without patching a service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from server.wiring import Later, NotBuiltYet


async def test_a_later_service_used_too_early_says_which() -> None:
    later: Later[str] = Later("the pipelines")
    callback = later.calls(_echo)
    with pytest.raises(NotBuiltYet, match="the pipelines was used before"):
        await callback("deal")
    later.set("stage")
    assert await callback("deal") == "stage:deal"


def test_a_later_is_set_once() -> None:
    later: Later[int] = Later("the portal")
    later.set(1)
    with pytest.raises(RuntimeError, match="already built"):
        later.set(2)
    assert later.get() == 1


def _echo(prefix: str) -> Callable[[str], Awaitable[str]]:
    """A stand-in for a method of the service built later."""

    async def call(value: str) -> str:
        return f"{prefix}:{value}"

    return call
