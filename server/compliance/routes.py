"""``/api/v1/compliance``: the record of processing (Art. 30) as machine-readable JSON.

Roles the policy does not grant ``processing_record read`` get 404, as for any resource
they may not see. The record holds no customer data: it describes categories, purposes,
recipients and safeguards, generated from the data map, the policy and the settings.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException

from policy.enforcer import PolicyEngine
from server.auth.service import StaffIdentity
from server.processing_record import build_record
from server.settings import Settings
from server.web import provide_identity


class ComplianceRoutes(Controller):
    path = "/api/v1/compliance"
    tags = ["compliance"]
    dependencies = {"identity": Provide(provide_identity)}

    @get(
        "/record-of-processing",
        description=(
            "The record of processing activities (GDPR Art. 30(1)) for this installation: "
            "controller, purposes with legal bases, categories of data subjects and personal "
            "data, recipients, third-country transfers, retention and security measures. "
            "Generated from the data map, the access policy and the settings. Format tag: "
            "`consentry-record-of-processing/1`."
        ),
    )
    async def record_of_processing(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        *,
        policy: NamedDependency[PolicyEngine],
        settings: NamedDependency[Settings],
    ) -> dict[str, Any]:
        if not policy.allows(identity.role, "processing_record", "read"):
            raise NotFoundException()
        return build_record(settings, policy).to_json()
