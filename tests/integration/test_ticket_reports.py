"""Support reports over real HTTP: tickets driven through the tickets API (with the real
identity, departments and clients services, PostgreSQL and the broker), the figures
of ``/reports/...`` checked against the tickets' own timelines, and a rebuild of the
read model from the events alone compared row by row with the live one."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select

from services.tickets.projections.reports import TicketReports, month_of
from shared.projections.runner import ProjectionRunner
from shared.readmodel.database import ReadModelDB
from tests.conftest import fresh_database
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

PAUSE = 0.05  # between steps, so that every figure is a distinct, measurable time


async def post(stack: Stack, path: str, headers: Headers, **body: Any) -> dict[str, Any]:
    answer = await stack.tickets.post(path, json=body, headers=headers)
    assert answer.status_code in (200, 201), answer.text
    await asyncio.sleep(PAUSE)
    result: dict[str, Any] = answer.json()
    return result


async def report(
    stack: Stack, name: str, headers: Headers, position: int, **params: Any
) -> httpx.Response:
    return await stack.tickets.get(
        f"/reports/{name}", params={"min_position": position, **params}, headers=headers
    )


async def figures(stack: Stack, name: str, headers: Headers, position: int, **params: Any) -> Any:
    answer = await report(stack, name, headers, position, **params)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def timeline(stack: Stack, ticket_id: str) -> list[dict[str, Any]]:
    answer = await stack.tickets.get(f"/tickets/{ticket_id}", headers=stack.admin)
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()["entries"]
    return entries


def seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def close_to(reported: float | None, expected: list[float]) -> bool:
    """Reports keep milliseconds: within 2 ms of the mean of the timeline's times."""
    return reported is not None and abs(reported - mean(expected)) < 0.002


async def test_reports_follow_the_tickets_and_rebuild_to_the_same_rows(stack: Stack) -> None:
    main = await project(stack)
    desk_a = await department(stack, "ReportsA", providers=[main])
    desk_b = await department(stack, "ReportsB", providers=[main])
    alice, alice_h = await staff(
        stack, "alice",
        ["tickets.view", "tickets.reply", "tickets.internal_note", "tickets.transfer"],
        [desk_a],
    )  # fmt: skip
    bob, bob_h = await staff(stack, "bob", ["tickets.view", "tickets.reply"], [desk_b])
    _, reporter = await staff(stack, "reporter", ["reports.tickets"])
    _, client_h = await client(stack, "reported", main)

    # T1: a note (no response), two replies, a transfer, a rated reply and a rated ticket.
    t1 = (await open_ticket(stack, client_h, desk_a))["id"]
    await asyncio.sleep(PAUSE)
    await post(stack, f"/tickets/{t1}/messages", alice_h, body="Looking", internal=True)
    a1 = (await post(stack, f"/tickets/{t1}/messages", alice_h, body="Restarted"))["message_id"]
    await post(stack, f"/tickets/{t1}/messages", client_h, body="Still down")
    await post(stack, f"/tickets/{t1}/messages", client_h, body="Really")
    await post(stack, f"/tickets/{t1}/messages", alice_h, body="Now?")
    await post(stack, f"/tickets/{t1}/rate", client_h, score=4, message_id=a1)
    await post(stack, f"/tickets/{t1}/rate", client_h, score=5, message_id=a1)  # replaces the 4
    await post(stack, f"/tickets/{t1}/transfer", alice_h, department_id=desk_b)
    await post(stack, f"/tickets/{t1}/messages", client_h, body="And the mail?")
    await post(stack, f"/tickets/{t1}/messages", bob_h, body="Mail works")
    await post(stack, f"/tickets/{t1}/rate", client_h, score=3)  # the ticket: desk B, bob
    await post(stack, f"/tickets/{t1}/close", client_h)
    # T2: one reply, rated 2.
    t2 = (await open_ticket(stack, client_h, desk_a))["id"]
    await asyncio.sleep(PAUSE)
    a3 = (await post(stack, f"/tickets/{t2}/messages", alice_h, body="Done"))["message_id"]
    await post(stack, f"/tickets/{t2}/rate", client_h, score=2, message_id=a3)
    # T3: nobody answered; rated 1 (desk B only). T4: closed before any reply.
    t3 = (await open_ticket(stack, client_h, desk_b))["id"]
    await post(stack, f"/tickets/{t3}/rate", client_h, score=1)
    t4 = (await open_ticket(stack, client_h, desk_a))["id"]
    position = (await post(stack, f"/tickets/{t4}/close", client_h))["position"]

    # What the timelines say.
    first: dict[str, list[float]] = defaultdict(list)  # by staff and by department
    response: dict[str, list[float]] = defaultdict(list)
    months: set[str] = set()
    answered: dict[str, dict[str, Any]] = defaultdict(lambda: {"tickets": set(), "replies": 0})
    for ticket_id in (t1, t2, t3, t4):
        entries = await timeline(stack, ticket_id)
        opened = datetime.fromisoformat(entries[0]["at"])
        waiting = [opened]
        desk = entries[0]["details"]["department_id"]
        replied = False
        for entry in entries[1:]:
            at = datetime.fromisoformat(entry["at"])
            months.add(month_of(at))
            if entry["type"] == "transfer":
                desk = entry["details"]["to_department_id"]
            elif entry["type"] == "closed":
                waiting, replied = [], True
            elif entry["type"] == "message" and entry["author_kind"] == "client":
                waiting.append(at)
            elif entry["type"] == "message":
                who = entry["author_id"]
                if not replied:
                    first[who].append(seconds(at, opened))
                    first[desk].append(seconds(at, opened))
                    replied = True
                for since in waiting:
                    response[who].append(seconds(at, since))
                    response[desk].append(seconds(at, since))
                waiting = []
                for key in ("total", desk, who):
                    answered[f"{month_of(at)}/{key}"]["tickets"].add(ticket_id)
                    answered[f"{month_of(at)}/{key}"]["replies"] += 1
    assert len(first[alice]) == 2 and len(response[alice]) == 4 and len(response[bob]) == 1
    assert not first[bob] and not first[desk_b] and len(response[desk_a]) == 4
    span = {"from": min(months), "to": max(months)}

    # Response times.
    times = await figures(stack, "response-times", reporter, position, **span)
    by_staff = {s["staff_id"]: s for s in times["staff"]}
    by_desk = {d["department_id"]: d for d in times["departments"]}
    assert set(by_staff) == {alice, bob} and set(by_desk) == {desk_a, desk_b}
    for key, row in ((alice, by_staff[alice]), (bob, by_staff[bob]),
                     (desk_a, by_desk[desk_a]), (desk_b, by_desk[desk_b])):  # fmt: skip
        assert row["first_response"]["count"] == len(first[key]), key
        assert row["response"]["count"] == len(response[key]), key
        if first[key]:
            assert close_to(row["first_response"]["average_seconds"], first[key]), (key, row)
        else:
            assert row["first_response"]["average_seconds"] is None
        assert close_to(row["response"]["average_seconds"], response[key]), (key, row)
    assert times["total"]["first_response"]["count"] == 2
    assert close_to(times["total"]["response"]["average_seconds"], response[alice] + response[bob])
    only_b = await figures(stack, "response-times", reporter, position, department_id=desk_b)
    assert [d["department_id"] for d in only_b["departments"]] == [desk_b]
    assert [s["staff_id"] for s in only_b["staff"]] == [bob]
    only_alice = await figures(stack, "response-times", reporter, position, staff_id=alice)
    assert only_alice["total"] == {k: by_staff[alice][k] for k in ("first_response", "response")}

    # Tickets answered, month by month.
    done = await figures(stack, "answered", reporter, position, **span)
    for month in done["months"]:
        m = month["month"]
        assert month["tickets"] == len(answered[f"{m}/total"]["tickets"])
        assert month["replies"] == answered[f"{m}/total"]["replies"]
        for row in month["departments"]:
            expected = answered[f"{m}/{row['department_id']}"]
            assert (row["tickets"], row["replies"]) == (
                len(expected["tickets"]),
                expected["replies"],
            )
        for row in month["staff"]:
            expected = answered[f"{m}/{row['staff_id']}"]
            assert (row["tickets"], row["replies"]) == (
                len(expected["tickets"]),
                expected["replies"],
            )
    assert sum(m["replies"] for m in done["months"]) == 4  # a1, a2, a3 by alice; bob's one
    if len(months) == 1:  # (not across the turn of a month)
        [month] = done["months"]
        assert (month["tickets"], month["replies"]) == (2, 4)
        desks = {d["department_id"]: (d["tickets"], d["replies"]) for d in month["departments"]}
        assert desks == {desk_a: (2, 3), desk_b: (1, 1)}
        people = {s["staff_id"]: (s["tickets"], s["replies"]) for s in month["staff"]}
        assert people == {alice: (2, 3), bob: (1, 1)}
    later = f"{int(max(months)[:4]) + 1}-01"
    assert (await figures(stack, "answered", reporter, position, **{"from": later})) == {
        "months": []
    }

    # Ratings.
    rated = await figures(stack, "ratings", reporter, position, **span)
    assert rated["total"]["all"] == {
        "count": 4, "average": 2.75, "scores": {"1": 1, "2": 1, "3": 1, "4": 0, "5": 1},
    }  # fmt: skip
    desks = {d["department_id"]: d for d in rated["departments"]}
    assert desks[desk_a]["message"]["count"] == 2 and desks[desk_a]["message"]["average"] == 3.5
    assert desks[desk_a]["ticket"]["count"] == 0
    assert desks[desk_b]["ticket"]["count"] == 2 and desks[desk_b]["ticket"]["average"] == 2.0
    people = {s["staff_id"]: s for s in rated["staff"]}
    assert set(people) == {alice, bob}
    assert people[alice]["message"]["scores"] == {"1": 0, "2": 1, "3": 0, "4": 0, "5": 1}
    assert people[bob]["ticket"] == {
        "count": 1, "average": 3.0, "scores": {"1": 0, "2": 0, "3": 1, "4": 0, "5": 0},
    }  # fmt: skip
    assert people[bob]["message"]["count"] == 0

    # A rebuild from the events alone: drop, replay, the same rows (twice: into a new
    # database, then dropping what that replay made, by another batch size).
    runtime = stack.tickets_app.state.runtime
    head = await runtime.store.head_position()
    await figures(stack, "ratings", reporter, head)  # the live read model is at the head
    projection = TicketReports()

    async def rows(db: ReadModelDB) -> dict[str, list[tuple[Any, ...]]]:
        async with db.engine.connect() as conn:
            return {
                table.name: sorted(tuple(r) for r in await conn.execute(select(table)))
                for table in projection.tables
            }

    live = await rows(stack.db)
    assert all(live.values()), live
    async with fresh_database() as url:
        db = await ReadModelDB.open(url)
        try:
            # One event at a time, then in batches of 500 (tracks and sums kept in memory).
            for batch_size in (1, 500):
                runner = ProjectionRunner(runtime.store, db, TicketReports(), batch_size)
                assert await runner.rebuild() > 0
                assert await rows(db) == live
        finally:
            await db.close()


async def test_reports_need_the_right_and_valid_months(stack: Stack) -> None:
    _, viewer = await staff(stack, "noreports", ["tickets.view", "tickets.reply"])
    _, reporter = await staff(stack, "reports", ["reports.tickets"])
    _, client_h = await client(stack, "curious")
    for name in ("response-times", "answered", "ratings"):
        for headers in (viewer, client_h):
            denied = await report(stack, name, headers, 0)
            assert denied.status_code == 403, denied.text
            assert denied.json()["error"]["code"] == "forbidden"
        anonymous = await stack.tickets.get(f"/reports/{name}")
        assert anonymous.status_code == 401, anonymous.text
        for params, field in (
            ({"from": "2026-13"}, "from"),
            ({"to": "26-01"}, "to"),
            ({"from": "2026-05", "to": "2026-04"}, "from"),
            ({"department_id": ""}, "department_id"),
            ({"staff_id": "x" * 65}, "staff_id"),
            ({"min_position": -1}, "min_position"),
        ):
            bad = await report(stack, name, reporter, 0, **params)
            assert bad.status_code == 422, (name, params, bad.text)
            assert bad.json()["error"]["field"] == field, bad.text
        fine = await report(stack, name, reporter, 0, **{"from": "2026-01", "to": "2026-01"})
        assert fine.status_code == 200, fine.text
