"""The sidebar menu: pages grouped by the work they serve, only those the role may use.

Each entry names the policy right its page asks for (``policy.allows(role, resource,
action)``), so the menu and the page guards cannot drift into offering a page that then
answers 404 or 403. A page guarded by a right (``page_access(right=...)``,
admin_ui/rights.py) has its entry ask the same right.

Which entry is current comes from the request path (the longest matching prefix), so a
record page, its edit form and its 360 view all light up their list's entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from admin_ui.rights import (
    ALERT_RIGHT,
    CONSENT_RIGHT,
    CONSOLE_RIGHT,
    DSR_RIGHT,
    IMPORT_RIGHT,
    PIPELINE_RIGHT,
    PROCESSING_RECORD_RIGHT,
    STAFF_RIGHT,
)
from policy.enforcer import PolicyEngine
from server.datamap import (
    CASE,
    CONTACT,
    DEAL,
    INTERACTION,
    LEAD,
    MAIL,
    ORGANIZATION,
    TASK,
    RecordType,
)


@dataclass(frozen=True)
class MenuEntry:
    label: str
    href: str
    right: tuple[str, str] | None  # (resource, action) the policy must allow; None: anyone


def _list_of(rt: RecordType) -> MenuEntry:
    """A record type's list page, named and found as the data map declares it."""
    if rt.page_path is None:
        raise ValueError(f"{rt.resource} records have no pages of their own")
    return MenuEntry(rt.plural, rt.page_path, (rt.resource, "list"))


@dataclass(frozen=True)
class MenuLink:
    label: str
    href: str
    current: bool


@dataclass(frozen=True)
class MenuGroup:
    label: str  # "" for the first, unlabelled group (dashboard, my day, tasks)
    links: tuple[MenuLink, ...]


MENU: tuple[tuple[str, tuple[MenuEntry, ...]], ...] = (
    (
        "",
        (
            MenuEntry("Dashboard", "/", None),
            MenuEntry("My day", "/my-day", ("task", "create")),  # roles that do tasks
            _list_of(TASK),
            _list_of(CONTACT),
            _list_of(ORGANIZATION),
        ),
    ),
    (
        "Sales",
        (
            _list_of(LEAD),
            _list_of(DEAL),
            # The board groups by stage: it needs the stage, not just the list right.
            MenuEntry("Pipeline", "/pipeline", ("deal.stage", "read")),
            MenuEntry("Reports", "/reports", ("report", "view")),
            MenuEntry("Forecast", "/forecast", ("forecast", "view")),
            MenuEntry("Duplicates", "/contacts/duplicates", ("contact", "merge")),
        ),
    ),
    (
        "Service",
        (
            _list_of(CASE),
            MenuEntry("Service desk", "/desk", ("service_desk", "work")),
            _list_of(INTERACTION),
            _list_of(MAIL),
            MenuEntry("My mailboxes", "/mailboxes", ("mailbox", "manage")),
            MenuEntry("Knowledge base", "/knowledge", ("knowledge_article", "read")),
            MenuEntry("Import meetings", "/calendar/import", ("calendar", "import")),
            MenuEntry("Feedback", "/feedback", ("feedback_report", "view")),
        ),
    ),
    (
        "Marketing",
        (
            MenuEntry("Campaigns", "/campaigns", ("campaign", "manage")),
            MenuEntry("Campaign funnel", "/campaigns/funnel", ("campaign", "manage")),
        ),
    ),
    (
        "Compliance",
        (
            MenuEntry("Compliance console", "/compliance", CONSOLE_RIGHT),
            MenuEntry("Requests", "/compliance/requests", DSR_RIGHT),
            MenuEntry("Alerts", "/compliance/alerts", ALERT_RIGHT),
            MenuEntry("Consent", "/compliance/consent", CONSENT_RIGHT),
            MenuEntry("Legal holds", "/compliance/holds", DSR_RIGHT),
            MenuEntry("Request flags", "/desk/flags", ("service_desk", "dsr_flags")),
            MenuEntry(
                "Record of processing", "/compliance/record-of-processing", PROCESSING_RECORD_RIGHT
            ),
        ),
    ),
    (
        "Settings",
        (
            MenuEntry("Users", "/admin/users", STAFF_RIGHT),
            MenuEntry("Pipelines", "/admin/pipelines", PIPELINE_RIGHT),
            MenuEntry("Service accounts", "/admin/service-accounts", ("service_account", "manage")),
            MenuEntry("Import", "/import", IMPORT_RIGHT),
            MenuEntry("Webhooks", "/admin/webhooks", ("webhook", "manage")),
            MenuEntry("Recipients", "/admin/recipients", ("recipient", "manage")),
        ),
    ),
)


def _matches(href: str, path: str) -> int:
    """How well ``href`` matches ``path``: the length of the matched prefix, or -1."""
    if href == "/":
        return 1 if path == "/" else -1
    if path == href or path.startswith(href + "/"):
        return len(href)
    return -1


def main_menu(policy: PolicyEngine, role: str, path: str) -> tuple[MenuGroup, ...]:
    """The groups and links this role may use, with the entry for ``path`` marked."""
    allowed = [
        (label, [e for e in entries if _may_use(policy, role, e)]) for label, entries in MENU
    ]
    best = max((_matches(e.href, path) for _, entries in allowed for e in entries), default=-1)
    return tuple(
        MenuGroup(
            label,
            tuple(
                MenuLink(e.label, e.href, best > 0 and _matches(e.href, path) == best)
                for e in entries
            ),
        )
        for label, entries in allowed
        if entries
    )


def _may_use(policy: PolicyEngine, role: str, entry: MenuEntry) -> bool:
    if entry.right is None:
        return True
    return policy.allows(role, *entry.right)
