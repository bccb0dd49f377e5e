"""Oversized facts on the topics never make a copy's insert fail (real PostgreSQL).

PostgreSQL refuses a value longer than its column; a copy that passed one on
would fail its consumer's transaction on every try and stall the partition. The
sources refuse such input now (422), but the topics keep facts published before:
each copy reads them through ``shared.messaging.limits``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from services.clients import copies as clients_copies
from services.notifier.copies import directory
from services.tickets.copies import support
from shared.domain.events import Actor, RecordedEvent
from shared.messaging.limits import ID_MAX, INT_MAX, NAME_MAX
from shared.readmodel.database import ReadModelDB

LONG = "Я" * 400


def fact(kind: str, stream: str, **data: Any) -> RecordedEvent:
    return RecordedEvent(
        position=1, stream=stream, stream_version=1, event_id=uuid.uuid4(), type=kind,
        schema_version=1, occurred_at=datetime.now(UTC), correlation_id=None,
        causation_id=None, actor=Actor("admin", "staff"), data=data,
    )  # fmt: skip


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[ReadModelDB]:
    opened = await ReadModelDB.open(postgres_url)
    for metadata in (support.metadata, directory.metadata, clients_copies.staff_metadata):
        await opened.create_tables(metadata)
    yield opened
    await opened.close()


async def test_names_are_clipped_and_ids_that_do_not_fit_skip_the_fact(db: ReadModelDB) -> None:
    department = fact(
        "DepartmentCreated", "department-d1", department_id="d1", name={"en": LONG, "ru": LONG},
        schedule_id=None, support={"enabled": True, "providers": [], "description": LONG,
                                   "sort": 2**40, "charge_requests": False,
                                   "inbound_email": "a" * 300 + "@example.com"},
    )  # fmt: skip
    fine = fact(
        "DepartmentCreated", "department-d2", department_id="d2", name={"en": LONG},
        schedule_id=None,
        support={"enabled": True, "providers": [], "description": "", "sort": 1,
                 "charge_requests": False, "inbound_email": "a" * 300 + "@example.com"},
    )  # fmt: skip
    too_long_id = fact("DepartmentCreated", "department-x", department_id="x" * (ID_MAX + 1),
                       name={"en": "X"})  # fmt: skip
    staff = fact(
        "StaffAdded", "staff-s1", staff_id="s1", login="s1", full_name={"en": LONG, "ru": LONG},
        email="b" * 400 + "@example.com", phone="1" * 100, departments=["d2", "y" * 65],
    )  # fmt: skip
    client = fact("ClientRegistered", "client-c1", client_id="c1", project_id="p" * 65)
    ticket = fact("TicketOpened", "ticket-t", ticket_id="t" * 65, client_id="c1")

    async with db.transaction() as conn:
        for event in (department, fine, too_long_id):
            await support.on_departments_event(conn, event)
            await directory.apply(conn, event)
        await support.on_identity_event(conn, staff)
        await clients_copies.record_staff_name(conn, staff)
        await directory.apply(conn, staff)
        await support.on_clients_fact(conn, client)
        await directory.apply(conn, ticket)

    async with db.engine.connect() as conn:
        known = {r.department_id: r for r in await conn.execute(select(support.known_departments))}
        assert set(known) == {"d1", "d2"}  # not x…x: its id does not fit
        assert known["d1"].sort == INT_MAX and known["d1"].description == LONG  # a Text
        assert known["d2"].name_en == "Я" * NAME_MAX and known["d2"].inbound_email is None
        notified = {r.department_id: r for r in await conn.execute(select(directory.departments))}
        assert set(notified) == {"d1", "d2"}
        assert notified["d1"].name_en == notified["d1"].name_ru == "Я" * NAME_MAX
        for table in (support.staff_names, clients_copies.staff_names):
            (row,) = (await conn.execute(select(table))).all()
            assert row.name_en == row.name_ru == "Я" * NAME_MAX
        (card,) = (await conn.execute(select(directory.staff_cards))).all()
        # A clipped address would reach someone else: left out instead.
        assert (card.email, card.phone, card.name_en) == (None, None, "Я" * NAME_MAX)
        members = (await conn.execute(select(directory.staff_departments))).all()
        assert [m.department_id for m in members] == ["d2"]
        (known_client,) = (await conn.execute(select(support.known_clients))).all()
        assert (known_client.client_id, known_client.project_id) == ("c1", None)
        assert (await conn.execute(select(directory.tickets))).all() == []
