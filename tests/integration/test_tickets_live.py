"""``GET /tickets/live``: the caller's queue as server-sent events, over real HTTP.

The services of ``test_tickets`` (identity, departments, clients, tickets on
PostgreSQL and the broker). Checked: staff of the ticket's department and its
client get the ticket; staff of another department do not (a later ticket of
theirs arrives first, so nothing was held back); staff without ``tickets.view``
are refused before the stream starts; a revoked right ends a running stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from tests.integration import test_tickets
from tests.integration.test_tickets import (
    Headers,
    Stack,
    client,
    department,
    open_ticket,
    project,
    staff,
)

stack = test_tickets.stack  # the same stack fixture (one per module)

pytestmark = pytest.mark.timeout(180)


class Events:
    """The events of one open stream, read in the background."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        self.arrived = asyncio.Condition()

    async def pump(self, response: httpx.Response) -> None:
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                async with self.arrived:
                    self.received.append((event, orjson.loads(line[5:])))
                    self.arrived.notify_all()

    async def wait_for(self, event: str, ticket_id: str | None = None, timeout: float = 30) -> int:
        """The index of the first ``event`` (for ``ticket_id``) received."""

        def found() -> int | None:
            for i, (kind, data) in enumerate(self.received):
                if kind == event and (ticket_id is None or data.get("id") == ticket_id):
                    return i
            return None

        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: found() is not None), timeout)
        index = found()
        assert index is not None
        return index

    def ids(self) -> list[str]:
        return [data["id"] for kind, data in self.received if kind == "ticket"]


@contextlib.asynccontextmanager
async def listening(stack: Stack, headers: Headers) -> AsyncIterator[Events]:
    events = Events()
    async with stack.tickets.stream(
        "GET", "/tickets/live", params={"keep_alive": 0.5}, headers=headers
    ) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        pump = asyncio.create_task(events.pump(response))
        try:
            yield events
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await pump


async def test_the_live_queue_shows_each_caller_what_they_may_see(stack: Stack) -> None:
    provider = await project(stack)
    hosting = await department(stack, "Hosting", providers=[provider])
    network = await department(stack, "Network", providers=[provider])
    hosting_id, hosting_staff = await staff(stack, "hoster", ["tickets.view"], [hosting])
    _, network_staff = await staff(stack, "netter", ["tickets.view"], [network])
    _, customer = await client(stack, "live", provider)

    async with (
        listening(stack, hosting_staff) as hosting_events,
        listening(stack, network_staff) as network_events,
        listening(stack, customer) as customer_events,
    ):
        mine = await open_ticket(stack, customer, hosting)
        index = await hosting_events.wait_for("ticket", mine["id"])
        assert hosting_events.received[index][1]["department_id"] == hosting
        await customer_events.wait_for("ticket", mine["id"])
        # Later in the log than the first one: once it is there, the first was not sent.
        theirs = await open_ticket(stack, customer, network)
        await network_events.wait_for("ticket", theirs["id"])
        assert mine["id"] not in network_events.ids()
        # A change (a reply) is sent again, with the new version.
        reply = await stack.tickets.post(
            f"/tickets/{mine['id']}/messages", json={"body": "On it"}, headers=hosting_staff
        )
        assert reply.status_code == 403  # no tickets.reply: refused, and nothing changes
        closed = await stack.tickets.post(f"/tickets/{mine['id']}/close", headers=customer)
        assert closed.status_code == 200, closed.text
        await until_version(hosting_events, mine["id"], closed.json()["version"])

        # Revoked: the running stream ends, saying why.
        revoked = await stack.identity.delete(
            f"/staff/{hosting_id}/rights/tickets.view", headers=stack.admin
        )
        assert revoked.status_code == 200, revoked.text
        index = await hosting_events.wait_for("end")
        assert hosting_events.received[index][1]["code"] == "forbidden"


async def until_version(events: Events, ticket_id: str, version: int) -> None:
    async with events.arrived:
        await asyncio.wait_for(
            events.arrived.wait_for(
                lambda: any(
                    kind == "ticket" and data["id"] == ticket_id and data["version"] == version
                    for kind, data in events.received
                )
            ),
            30,
        )


async def test_the_live_queue_needs_a_token_and_the_right_to_view(stack: Stack) -> None:
    refused = await stack.tickets.get("/tickets/live")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] in ("unauthorized", "not_authenticated")
    _, nobody = await staff(stack, "viewless", [])
    forbidden = await stack.tickets.get("/tickets/live", headers=nobody)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"
