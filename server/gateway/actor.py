"""Who is acting. Every gateway call names an actor; there is no anonymous path to data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    id: str  # stable audit id: "user:12", "system:demo-seed"
    role: str
    user_id: int | None = None
    team: str = ""
    request_id: str = ""

    @classmethod
    def staff(cls, user_id: int, role: str, team: str, request_id: str = "") -> Actor:
        return cls(f"user:{user_id}", role, user_id, team, request_id)

    @classmethod
    def system(cls, job: str, team: str = "") -> Actor:
        return cls(f"system:{job}", "system", None, team)
