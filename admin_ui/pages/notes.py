"""Adding a note from any record's page (the notes panel in ``records/detail.html``).

The gateway does the checking: the target must exist and be readable by this user (else
the same 400 as a missing record), and the note takes that record's person as its subject,
so erasing the person takes their notes with them.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.di import NamedDependency, Provide
from litestar.response import Redirect

from admin_ui.forms import values_from_form
from admin_ui.pages.records import page_path_of
from admin_ui.rendering import flash, see_other
from admin_ui.session import Visit, page_access, provide_visit
from server.datamap import NOTE, NOTE_TARGETS
from server.gateway import Forbidden, Gateway, InvalidInput


class NotePanel(Controller):
    path = "/notes/add"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    @post("/")
    async def add_note(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Redirect:
        form = await request.form()
        values, _ = values_from_form(NOTE, form, [f.name for f in NOTE.fields])
        target = values.get("record_type")
        if target not in NOTE_TARGETS:  # nowhere sensible to go back to
            raise InvalidInput(
                "record_type: must be one of: " + ", ".join(NOTE_TARGETS),
                problems={"record_type": "unknown record type"},
            )
        back = f"{page_path_of(str(target))}/{values.get('record_id') or ''}"
        try:
            await gateway.create(visit.actor, NOTE.resource, values)
        except InvalidInput as exc:
            if "record_id" in exc.problems:  # not there, or not theirs: nothing to go back to
                raise
            await flash(request, visit, f"The note was not added: {exc.message}", "error")
            return see_other(back)
        except Forbidden as exc:
            await flash(request, visit, f"The note was not added: {exc.message}", "error")
            return see_other(back)
        await flash(request, visit, "Note added.")
        return see_other(back)
