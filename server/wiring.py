"""How ``build_services`` breaks the cycles between services without patching them later.

Every service gets all its collaborators through its constructor. A few pairs need each
other (the gateway asks the pipelines for the deal rule, the pipelines write deals through
the gateway; the alert engine sends through the mail outbox, which tells the engine when a
retried alert was delivered). For those, the one built first is handed a ``Later``: a
holder that ``build_services`` fills exactly once, as soon as the other service exists.
Using it before then is a bug in the wiring, so it raises instead of acting on nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")


class NotBuiltYet(RuntimeError):
    """A service was used before ``build_services`` had built it (a wiring bug)."""


class Later(Generic[T]):
    """A service that will exist once ``build_services`` has built it; set exactly once."""

    __slots__ = ("_name", "_value")

    def __init__(self, name: str) -> None:
        self._name = name
        self._value: T | None = None

    def set(self, value: T) -> None:
        if self._value is not None:
            raise RuntimeError(f"{self._name} was already built: a Later is set once")
        self._value = value

    def get(self) -> T:
        if self._value is None:
            raise NotBuiltYet(f"{self._name} was used before build_services had built it")
        return self._value

    def calls(
        self, pick: Callable[[T], Callable[P, Awaitable[R]]]
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        """A callback for the service built earlier: ``pick`` chooses what to call on the
        later one when the callback runs (by then it exists)."""

        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            return await pick(self.get())(*args, **kwargs)

        return call
