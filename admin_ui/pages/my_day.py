"""My day: the signed-in user's open tasks, due or overdue first, then reminders, then the
week ahead; each marked done with one POST (CSRF-protected, no JavaScript needed).

A task's owner is the person who must do it, so "mine" is the gateway's own record scope
plus an ``owner_id`` filter: the lists are ordinary audited gateway lists, and an admin
(scope all) still sees only their own tasks here. Days run midnight to midnight in the
user's own time zone (My account): "due today" for someone in Berlin ends at midnight in
Berlin, not at 01:00 their time. Stored times stay UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Template

from admin_ui.pages.records import heading_of, page_path_of, shown_value
from admin_ui.rendering import flash, render, see_other
from admin_ui.session import Visit, page_access, provide_visit
from server.datamap import CONTACT, TASK
from server.gateway import Conflict, Forbidden, Gateway, GatewayError, InvalidInput, Record

WEEK = dt.timedelta(days=7)
MAX_TASKS = 100  # per list; more than that in one day is a backlog, not a day
_PRIORITY_ORDER = {"high": 0, "normal": 1, "low": 2}


@dataclass(frozen=True)
class DayTask:
    id: str
    title: str
    due_at: dt.datetime
    remind_at: dt.datetime | None
    priority: str
    overdue: bool
    about: str  # link to the record the task is about ("" for none)
    contact_id: str = ""
    person: str = ""  # the name of the person it is about, where the user may read it
    person_link: str = ""


@dataclass(frozen=True)
class DayPlan:
    due: list[DayTask]  # due by the end of today, overdue ones flagged
    reminders: list[DayTask]  # due later, but their reminder time has passed
    upcoming: list[DayTask]  # due in the seven days after today


def _moment(value: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value).astimezone(dt.UTC) if value else None


def _about(task: Record) -> str:
    for name, resource in (("case_id", "case"), ("deal_id", "deal"), ("contact_id", "contact")):
        if task.values.get(name):
            return f"{page_path_of(resource)}/{task.values[name]}"
    return ""


async def with_people(gateway: Gateway, visit: Visit, plan: DayPlan) -> DayPlan:
    """The plan with each task's person named: one audited read per person on it (the
    name is shown, so it is read like any other), none for a task about nobody."""
    tasks = [*plan.due, *plan.reminders, *plan.upcoming]
    ids = sorted({t.contact_id for t in tasks if t.contact_id})
    names: dict[str, str] = {}
    for contact_id in ids:
        try:
            person = await gateway.read(visit.actor, CONTACT.resource, contact_id)
        except GatewayError:
            continue
        names[contact_id] = heading_of(CONTACT, person, visit.zone)

    def named(task: DayTask) -> DayTask:
        if task.contact_id not in names:
            return task
        link = f"{page_path_of(CONTACT.resource)}/{task.contact_id}"
        return replace(task, person=names[task.contact_id], person_link=link)

    return DayPlan(
        due=[named(t) for t in plan.due],
        reminders=[named(t) for t in plan.reminders],
        upcoming=[named(t) for t in plan.upcoming],
    )


def plan_day(tasks: Iterable[Record], now: dt.datetime, zone: dt.tzinfo = dt.UTC) -> DayPlan:
    """Group open tasks for the day that contains ``now`` in ``zone`` (the user's own
    midnight to midnight).

    Within a group the earliest due comes first, then the higher priority. A task due
    earlier today but before ``now`` is overdue, as is anything from a previous day.
    """
    now = now.astimezone(dt.UTC)
    end_of_today = end_of_local_day(now, zone)
    plan = DayPlan(due=[], reminders=[], upcoming=[])
    seen: set[str] = set()
    for task in tasks:
        due_at = _moment(task.values.get("due_at"))
        if task.id in seen or due_at is None or task.values.get("status") != "open":
            continue
        seen.add(task.id)
        remind_at = _moment(task.values.get("remind_at"))
        item = DayTask(
            id=task.id,
            title=str(task.values.get("title") or "") or "(erased)",
            due_at=due_at,
            remind_at=remind_at,
            priority=str(task.values.get("priority") or "normal"),
            overdue=due_at < now,
            about=_about(task),
            contact_id=str(task.values.get("contact_id") or ""),
        )
        if due_at < end_of_today:
            plan.due.append(item)
        elif remind_at is not None and remind_at <= now:
            plan.reminders.append(item)
        elif due_at < end_of_today + WEEK:
            plan.upcoming.append(item)
    for group in (plan.due, plan.reminders, plan.upcoming):
        group.sort(key=lambda t: (t.due_at, _PRIORITY_ORDER.get(t.priority, 1), t.id))
    return plan


def end_of_local_day(now: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """The next midnight after ``now`` where the user lives, in UTC."""
    local = now.astimezone(zone)
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), zone)
    return midnight.astimezone(dt.UTC)


class MyDayPages(Controller):
    path = "/my-day"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    @get("/")
    async def my_day(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Template:
        now = dt.datetime.now(dt.UTC)
        end_of_week = end_of_local_day(now, visit.zone) + WEEK
        mine = {"owner_id": visit.identity.user_id, "status": "open"}
        # Two lists: what is due by the end of the week, and what has a reminder due
        # (whenever the task itself is due). Both scoped and audited by the gateway.
        found: list[Record] = []
        for bound in ({"due_at_before": end_of_week}, {"remind_at_before": now}):
            page = await gateway.list(
                visit.actor,
                TASK.resource,
                filters={**mine, **{k: v.isoformat() for k, v in bound.items()}},
                page_size=MAX_TASKS,
            )
            found.extend(page.items)
        plan = await with_people(gateway, visit, plan_day(found, now, visit.zone))
        return await render(
            request,
            "my_day/my_day.html",
            visit=visit,
            section="my_day",
            title="My day",
            today=now.astimezone(visit.zone).date().isoformat(),
            groups=[
                ("due", "Due today and overdue", plan.due),
                ("reminders", "Reminders", plan.reminders),
                ("upcoming", "Coming up this week", plan.upcoming),
            ],
            shown=lambda name, value: shown_value(TASK, name, value),
        )

    @post("/tasks/{task_id:str}/done")
    async def mark_done(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        task_id: FromPath[str],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Redirect:
        """Done in one click; a task someone else owns (or that is gone) is a 404."""
        try:
            await gateway.update(visit.actor, TASK.resource, task_id, {"status": "done"})
        except (Conflict, Forbidden, InvalidInput) as exc:
            await flash(request, visit, exc.message, "error")
            return see_other("/my-day")
        await flash(request, visit, "Task marked done.")
        return see_other("/my-day")
