"""``POST /api/v1/search``: one name search over every record type the caller may search.

Thin, like every route: parse the body, ask the gateway (policy, scope, decryption and the
audit event all happen there), render. The term travels in the body so that it never
appears in a URL, a proxy log or browser history; it is never logged.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from server.datamap import shown_name
from server.gateway import Actor, Gateway, InvalidInput
from server.gateway.search import MAX_TERM, SEARCH_TYPES
from server.records.routes import record_json
from server.web import provide_actor, provide_identity, purpose_of

MAX_PER_TYPE = 20
_KEYS = {"q", "types", "per_type"}

DESCRIPTION = (
    "Find people, organizations, leads, deals, cases and interactions by name, in one call. "
    'Body: `{"q": "sharon t", "types": ["contact", "deal"], "per_type": 5}` (`types` and '
    f"`per_type` optional; `per_type` 1 to {MAX_PER_TYPE}, default 5; `q` at most "
    f"{MAX_TERM} characters). "
    "Words match whole words or the start of words of a name or title, accents and case "
    "ignored; a word shorter than three letters only narrows what the others found. Deals, "
    "cases and interactions are also found by the name of the person or organization they "
    "are about. Results come grouped by type, best matches first, with only the fields your "
    "role may read; types your role may not search are left out, and records outside your "
    "scope are never counted. Each type searched is audited with the ids returned, never "
    "the term. One type, with paging: `POST /api/v1/<type>/search` with "
    '`{"name": "...", "page": 1, "page_size": 20}`.'
)


def _body(data: dict[str, Any]) -> tuple[str, list[str], int]:
    unknown = sorted(k for k in data if k not in _KEYS)
    if unknown:
        raise InvalidInput(
            "search takes: q, types, per_type",
            problems={shown_name(k): "unknown field" for k in unknown},
        )
    term = data.get("q")
    if not isinstance(term, str):
        raise InvalidInput("q: expected a string", problems={"q": "expected a string"})
    types = data.get("types", list(SEARCH_TYPES))
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise InvalidInput("types: expected a list of record types", problems={"types": "invalid"})
    per_type = data.get("per_type", 5)
    if isinstance(per_type, bool) or not isinstance(per_type, int):
        raise InvalidInput("per_type: expected a whole number", problems={"per_type": "invalid"})
    if not 1 <= per_type <= MAX_PER_TYPE:
        raise InvalidInput(
            f"per_type: between 1 and {MAX_PER_TYPE}", problems={"per_type": "out of range"}
        )
    return term, types, per_type


class SearchRoutes(Controller):
    path = "/api/v1/search"
    tags = ["search"]
    dependencies = {"identity": Provide(provide_identity), "actor": Provide(provide_actor)}

    @post("/", status_code=200, description=DESCRIPTION)
    async def search_everything(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        data: JSONBody[dict[str, Any]],
        *,
        gateway: NamedDependency[Gateway],
    ) -> dict[str, Any]:
        term, types, per_type = _body(data)
        groups = await gateway.search_everything(
            actor, term, purpose=purpose_of(request), types=types, per_type=per_type
        )
        return {
            "groups": [
                {
                    "type": group.resource,
                    "total": group.total,
                    "capped": group.capped,
                    "items": [record_json(r) for r in group.items],
                }
                for group in groups
            ]
        }
