"""Who is looking at a page: the same database session and cookie as the API.

Every page handler that needs a signed-in user asks for ``visit``. The dependency decides,
from the session state and the handler's ``opt``, whether the page may be shown:

- no (or an expired) session: redirect to ``/login?next=<this page>``;
- password given but second factor pending: only ``/login/code``;
- role requires a second factor that is not enrolled yet: only ``/account/security``
  (and signing out);
- fully signed in: every page the role allows. A page that names a policy right
  (``page_access(right=("staff", "manage"))``) answers 404 to every role the policy
  (policy/policy.csv) does not give that right: pages never name roles themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from litestar import Request
from litestar.exceptions import HTTPException, NotFoundException
from litestar.status_codes import HTTP_303_SEE_OTHER

from policy.enforcer import PolicyEngine
from server.auth.service import SessionInfo, SessionState, StaffIdentity
from server.auth.zones import zone_of
from server.gateway import Actor
from server.web import SESSION_COOKIE, request_id_of, services_of

STATES = "session_states"  # handler opt: the session states that may see the page
RIGHT = "policy_right"  # handler opt: (resource, action) the policy must allow, or 404
ACTIVE_ONLY = frozenset({SessionState.ACTIVE})
ANY_STATE = frozenset(SessionState)
MAX_NEXT_LENGTH = 2000
VISIT_STATE_KEY = "admin_visit"  # the visit, kept on the request for error pages


class PageRedirect(HTTPException):
    """Answer with a redirect (raised from dependencies, where a response cannot be returned).

    An ``HTTPException`` so that it counts as an expected answer, not a server error.
    """

    status_code = HTTP_303_SEE_OTHER

    def __init__(self, location: str) -> None:
        super().__init__(detail="redirect")
        self.location = location


def page_access(
    states: Iterable[SessionState] = ACTIVE_ONLY,
    *,
    right: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Handler ``opt`` naming who may see a page: the session states it opens in and the
    policy right (``(resource, action)`` in policy/policy.csv) the role needs, if any;
    every other role gets a 404. ``None``: any signed-in role."""
    return {STATES: frozenset(states), RIGHT: right}


def safe_next(value: str | None, default: str = "/") -> str:
    """A redirect target from user input: a local path only (no scheme, host or //)."""
    if not value or len(value) > MAX_NEXT_LENGTH:
        return default
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def with_next(path: str, target: str) -> str:
    return f"{path}?next={quote(target, safe='/')}" if target != "/" else path


def here(request: Request[Any, Any, Any]) -> str:
    """This page, for a ``next`` parameter: only GET pages can be returned to."""
    if request.method != "GET":
        return "/"
    query = request.scope.get("query_string", b"").decode("latin-1")
    return safe_next(request.url.path + (f"?{query}" if query else ""))


@dataclass(frozen=True)
class Visit:
    """A page request by a signed-in staff member."""

    token: str
    info: SessionInfo
    request_id: str

    @property
    def identity(self) -> StaffIdentity:
        return self.info.identity

    @property
    def actor(self) -> Actor:
        i = self.info.identity
        return Actor.staff(i.user_id, i.role, i.team, self.request_id)

    @property
    def zone(self) -> ZoneInfo:
        """The user's time zone: pages show times in it (stored times are UTC)."""
        return zone_of(self.info.identity.time_zone)


def role_may_open(opt: Mapping[str, Any], role: str, policy: PolicyEngine) -> bool:
    """Whether a page guarded by ``opt`` (``page_access``) opens for ``role``: the one rule
    the guard below applies, for menus and links that must agree with it. The policy
    answers; a page never names a role."""
    right = opt.get(RIGHT)
    return right is None or policy.allows(role, *right)


def state_home(state: SessionState, target: str) -> str:
    """Where a session in ``state`` is sent when it asks for a page it may not see."""
    if state is SessionState.MFA_REQUIRED:
        return with_next("/login/code", target)
    if state is SessionState.ENROLMENT_REQUIRED:
        return "/account/security"
    return "/"


async def provide_visit(request: Request[Any, Any, Any]) -> Visit:
    token = request.cookies.get(SESSION_COOKIE, "")
    services = services_of(request)
    info = await services.accounts.session_info(token)
    if info is None:
        raise PageRedirect(with_next("/login", here(request)))
    handler_opt = request.route_handler.opt
    if info.state not in handler_opt.get(STATES, ACTIVE_ONLY):
        raise PageRedirect(state_home(info.state, here(request)))
    if not role_may_open(handler_opt, info.identity.role, services.policy):
        raise NotFoundException()  # do not reveal that the page exists
    visit = Visit(token, info, request_id_of(request))
    request.scope.setdefault("state", {})[VISIT_STATE_KEY] = visit
    return visit


def visit_of(request: Request[Any, Any, Any]) -> Visit | None:
    """The visit of this request, once ``provide_visit`` has run (for error pages)."""
    visit = request.scope.get("state", {}).get(VISIT_STATE_KEY)
    return visit if isinstance(visit, Visit) else None


def require_recent_login(visit: Visit, target: str) -> None:
    """Sensitive actions need the password (and code) confirmed within the last minutes."""
    if not visit.info.recently_authenticated:
        raise PageRedirect(with_next("/reauth", target))
