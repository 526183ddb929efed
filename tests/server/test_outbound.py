"""User-entered addresses cannot make the server probe its own network.

An admin (or an admin's API token) who points a webhook at the database port, a private
address or the cloud metadata service gets a 400 with the reason, and nothing is saved;
an endpoint whose address became private after it was saved is not posted to. The tests'
own settings trust loopback (their receivers listen there), so these tests build the
check without that trust, as a deployment has it by default.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from server.calendar.ics import CalendarError
from server.calendar.service import calendar_import
from server.gateway import Actor
from server.gateway.errors import InvalidInput
from server.mailcapture.service import Mailboxes, MailboxInputError
from server.outbound import DestinationRefused, Destinations, parse_networks
from server.services import Services
from server.settings import ConfigurationError, Settings
from server.webhooks.tables import WebhookEndpoint
from tests.admin_ui.test_admin_ui import csrf_of, text_of, web_login
from tests.conftest import Staff
from tests.server.crm.test_crm_records import sales_contact
from tests.server.webhooks.test_webhooks import Receiver, receiver, subscribe

__all__ = ["receiver"]

ADMIN = Actor.system("test-admin")
PROBES = (
    "http://127.0.0.1:5432/",
    "http://localhost:8000/admin",
    "http://[::1]/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://10.0.0.7/hook",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0:9/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://224.0.0.1/",  # multicast
    "http://no-such-host.invalid/hook",
)


@pytest.mark.parametrize("url", PROBES)
async def test_a_private_or_unresolvable_address_is_refused(url: str) -> None:
    with pytest.raises(DestinationRefused):
        await Destinations().check_url(url)


async def test_a_public_address_passes_and_a_trusted_range_is_allowed() -> None:
    await Destinations().check("93.184.215.14", 443)  # a public literal: no DNS needed
    await Destinations(["10.1.2.0/24"]).check("10.1.2.9", 993)
    with pytest.raises(DestinationRefused):
        await Destinations(["10.1.2.0/24"]).check("10.1.3.9", 993)


def test_a_bad_range_in_the_settings_stops_start_up_with_its_name() -> None:
    with pytest.raises(ConfigurationError, match=r"10\.0\.0\.0/33"):
        parse_networks(["10.0.0.0/33"])
    assert Settings.from_env(
        {"CONSENTRY_OUTBOUND_ALLOW": "10.0.0.0/8, 192.168.5.0/24"}
    ).outbound_allow == ("10.0.0.0/8", "192.168.5.0/24")


async def test_a_webhook_aimed_inside_the_network_is_refused_and_nothing_is_saved(
    services: Services,
) -> None:
    services.webhooks.destinations = Destinations()  # a deployment's default
    for url in ("http://127.0.0.1:5432/", "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(InvalidInput) as refused:
            await services.webhooks.create(ADMIN, "Probe", url, ["record.created"])
        assert "private, loopback or reserved" in str(refused.value)
    assert await WebhookEndpoint.count() == 0


async def test_an_existing_endpoint_cannot_be_moved_inside_the_network(
    services: Services, receiver: Receiver
) -> None:
    endpoint = await subscribe(services, receiver, ["record.created"])
    services.webhooks.destinations = Destinations()
    with pytest.raises(InvalidInput):
        await services.webhooks.update(
            ADMIN,
            endpoint,
            name="Mirror",
            url="http://10.0.0.7/hook",
            event_types=["record.created"],
            active=True,
        )
    assert (await services.webhooks.get(endpoint)).url == receiver.url


async def test_a_delivery_to_an_address_now_private_is_not_sent(
    services: Services, staff: Staff, receiver: Receiver
) -> None:
    """Saved while trusted, checked again at each send: nothing reaches the receiver."""
    endpoint = await subscribe(services, receiver, ["record.created"])
    services.webhooks.sender.destinations = Destinations()  # the trust was withdrawn
    rep = await staff.create("sales")
    await services.gateway.create(staff.actor(rep), "contact", sales_contact())
    await services.webhooks.sender.deliver_due()
    [log] = await services.webhooks.deliveries(endpoint)
    assert (log.attempts, log.last_error) == (1, "destination_refused")
    assert receiver.bodies == []


async def test_the_admin_page_answers_400_with_the_reason(services: Services, staff: Staff) -> None:
    services.webhooks.destinations = Destinations()
    admin = await web_login(staff, await staff.create("admin"))
    page = await admin.get("/admin/webhooks/")
    refused = await admin.post(
        "/admin/webhooks/new",
        data={
            "name": "Metadata",
            "url": "http://169.254.169.254/latest/meta-data/",
            "event_types": ["record.created"],
            "_csrf_token": csrf_of(page),
        },
    )
    assert refused.status_code == 400
    assert "private, loopback or reserved" in text_of(refused)
    assert await services.webhooks.all() == []


async def test_a_mailbox_cannot_point_the_server_inside_the_network(
    services: Services, staff: Staff
) -> None:
    """A staff user's mailbox host is refused like a webhook URL: otherwise "test
    connection" would tell which internal ports answer."""
    mailboxes = Mailboxes(services.gateway, services.audit, Destinations())
    rep = staff.actor(await staff.create("sales"))
    for host in ("10.0.0.7", "169.254.169.254", "localhost"):
        with pytest.raises(MailboxInputError) as refused:
            await mailboxes.connect(
                rep,
                label="Probe",
                host=host,
                port=993,
                security="ssl",
                folder="INBOX",
                address="me@example.org",
                purpose="customer_relationship",
                username="me",
                password="secret",
            )
        assert "private, loopback or reserved" in refused.value.problems["host"]
    assert await mailboxes.mine(rep) == []


@pytest.fixture
def redirector() -> Iterator[str]:
    """A local server that redirects every GET to a private address."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "http://10.0.0.7/calendar.ics")
            self.end_headers()

        def log_message(self, *args: object) -> None:  # keep test output quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cal.ics"
    server.shutdown()
    server.server_close()


async def test_a_calendar_url_inside_the_network_or_redirecting_there_is_refused(
    services: Services, redirector: str
) -> None:
    importer = calendar_import(services)
    importer._destinations = Destinations()  # a deployment's default
    with pytest.raises(CalendarError, match="refused"):
        await importer.fetch("http://169.254.169.254/latest/meta-data/")
    importer._destinations = Destinations(["127.0.0.0/8"])  # the redirector is trusted...
    with pytest.raises(CalendarError, match=r"refused: .*10\.0\.0\.7"):
        await importer.fetch(redirector)  # ...the private address it points at is not
