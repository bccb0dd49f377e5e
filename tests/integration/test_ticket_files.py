"""Short ticket numbers and files on ticket messages, over real HTTP with the real identity,
departments, clients and tickets services on PostgreSQL and the broker (the stack of
``test_tickets``): numbers in answers and filters, uploads refused with the reason and
nothing kept, downloads under the ticket's visibility, the files of messages to clients
downloadable by their recipients."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
from sqlalchemy import func, select

from shared.readmodel.attachments import AttachmentPolicy, CommandScanner
from tests.integration.test_tickets import (
    Headers,
    Stack,
    client,
    department,
    open_ticket,
    project,
    read,
    stack,
    staff,
)

__all__ = ["stack"]  # the module's stack fixture, shared with test_tickets' helpers

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"


async def upload(
    stack: Stack, headers: Headers, name: str, data: bytes, content_type: str = "x/declared"
) -> httpx.Response:
    return await stack.tickets.post(
        "/tickets/attachments", files={"file": (name, data, content_type)}, headers=headers
    )


async def uploaded(stack: Stack, headers: Headers, name: str, data: bytes) -> str:
    answer = await upload(stack, headers, name, data)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["size"] == len(data) and body["sha256"] == hashlib.sha256(data).hexdigest()
    attachment_id: str = body["attachment_id"]
    return attachment_id


async def stored_files(stack: Stack) -> int:
    assert stack.app.files is not None
    async with stack.db.engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(stack.app.files.table))).scalar()
            or 0
        )


# ---------------------------------------------------------------- numbers


async def test_tickets_get_short_numbers_in_answers_pages_and_filters(stack: Stack) -> None:
    main = await project(stack)
    desk = await department(stack, "Numbered", providers=[main])
    _, alice = await client(stack, "numbered", main)
    _, bob = await client(stack, "other", main)
    opened = await asyncio.gather(*(open_ticket(stack, alice, desk) for _ in range(8)))
    numbers = sorted(o["number"] for o in opened)
    # Concurrent openings: every number once, none skipped.
    assert numbers == list(range(numbers[0], numbers[0] + 8))
    last = max(opened, key=lambda o: o["position"])
    one = opened[3]
    page = await read(stack, f"/tickets/{one['id']}", alice, last["position"])
    assert page.status_code == 200 and page.json()["number"] == one["number"]
    for spelled in (str(one["number"]), f"#{one['number']}"):
        found = await stack.tickets.get("/tickets", params={"number": spelled}, headers=alice)
        assert found.status_code == 200, found.text
        assert [t["id"] for t in found.json()] == [one["id"]]
        assert found.headers["X-Total-Count"] == "1"
    # Another client does not find it by its number.
    theirs = await stack.tickets.get("/tickets", params={"number": one["number"]}, headers=bob)
    assert theirs.status_code == 200 and theirs.json() == []
    bad = await stack.tickets.get("/tickets", params={"number": "12a"}, headers=alice)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "number"


# ---------------------------------------------------------------- files


async def test_files_of_messages_are_downloaded_under_the_tickets_visibility(
    stack: Stack,
) -> None:
    main = await project(stack)
    first = await department(stack, "Files first", providers=[main])
    second = await department(stack, "Files second", providers=[main])
    _, alice = await client(stack, "alice-files", main)
    _, bob = await client(stack, "bob-files", main)
    rights = ["tickets.view", "tickets.reply", "tickets.internal_note"]
    _, first_staff = await staff(stack, "files-first", rights, [first])
    _, second_staff = await staff(stack, "files-second", rights, [second])
    _, blind = await staff(stack, "files-blind", [], [first])

    screenshot = await uploaded(stack, alice, "screen shot.png", PNG)
    opened = await open_ticket(stack, alice, first, attachments=[screenshot])
    path = f"/tickets/{opened['id']}"
    report = await uploaded(stack, first_staff, "../../report.pdf", PDF)
    reply = await stack.tickets.post(
        f"{path}/messages", json={"body": "See the report", "attachments": [report]},
        headers=first_staff,
    )  # fmt: skip
    assert reply.status_code == 201, reply.text
    log = await uploaded(stack, first_staff, "nginx.log", b"upstream timed out\n")
    note = await stack.tickets.post(
        f"{path}/messages", json={"body": "raw log", "internal": True, "attachments": [log]},
        headers=first_staff,
    )  # fmt: skip
    assert note.status_code == 201, note.text
    position = note.json()["position"]

    # The timeline lists each message's files (names as uploaded, without folders).
    seen = (await read(stack, path, alice, position)).json()
    files = {f["filename"]: f for e in seen["entries"] for f in e["attachments"]}
    assert set(files) == {"screen shot.png", "report.pdf"}  # not the internal note's
    assert files["report.pdf"]["content_type"] == "application/pdf"
    staff_view = (await read(stack, path, first_staff, position)).json()
    assert {f["filename"] for e in staff_view["entries"] for f in e["attachments"]} == {
        "screen shot.png", "report.pdf", "nginx.log",
    }  # fmt: skip

    async def fetch(headers: Headers, attachment_id: str) -> httpx.Response:
        return await stack.tickets.get(f"{path}/attachments/{attachment_id}", headers=headers)

    matrix: dict[str, tuple[Headers, dict[str, int]]] = {
        "alice": (alice, {"screenshot": 200, "report": 200, "log": 404}),
        "bob": (bob, {"screenshot": 404, "report": 404, "log": 404}),
        "first staff": (first_staff, {"screenshot": 200, "report": 200, "log": 200}),
        "second staff": (second_staff, {"screenshot": 404, "report": 404, "log": 404}),
        "no right": (blind, {"screenshot": 403, "report": 403, "log": 403}),
    }
    contents = {"screenshot": (screenshot, PNG), "report": (report, PDF), "log": (log, None)}
    for who, (headers, expected) in matrix.items():
        for what, status in expected.items():
            answer = await fetch(headers, contents[what][0])
            assert answer.status_code == status, (who, what, answer.text)
    got = await fetch(alice, report)
    assert got.content == PDF
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["content-disposition"].startswith('attachment; filename="report.pdf"')
    assert got.headers["x-content-type-options"] == "nosniff"
    unnamed = await fetch(alice, "no-such-file")
    assert unnamed.status_code == 404
    # A file uploaded for another ticket is not downloadable through this one.
    elsewhere = await open_ticket(stack, bob, first)
    wrong = await stack.tickets.get(
        f"/tickets/{elsewhere['id']}/attachments/{screenshot}", headers=first_staff
    )
    assert wrong.status_code == 404
    assert (await stack.tickets.get(f"{path}/attachments/{report}")).status_code == 401


async def test_bad_files_are_refused_with_the_reason_and_nothing_is_kept(stack: Stack) -> None:
    main = await project(stack)
    desk = await department(stack, "Files strict", providers=[main])
    _, carol = await client(stack, "carol-files", main)
    _, dave = await client(stack, "dave-files", main)
    _, reader = await staff(stack, "files-reader", ["tickets.view"], [desk])
    opened = await open_ticket(stack, carol, desk)
    path = f"/tickets/{opened['id']}"
    assert stack.app.files is not None
    limit = stack.app.files.policy.max_bytes
    before = await stored_files(stack)

    refused: list[tuple[str, bytes, str]] = [
        ("big.txt", b"x" * (limit + 1), "larger than"),
        ("empty.txt", b"", "empty"),
        ("setup.exe", b"MZ\x90\x00", "not accepted"),
        ("page.html", b"<script>alert(1)</script>", "not accepted"),
        ("image.svg", b"<svg onload=alert(1)>", "not accepted"),
        ("photo.png", b"<html><script>alert(1)</script>", "not a image/png"),
        ("no-extension", b"hello", "not accepted"),
    ]
    for name, data, reason in refused:
        answer = await upload(stack, carol, name, data, "image/png")
        assert answer.status_code == 422, (name, answer.text)
        error = answer.json()["error"]
        assert error["field"] == "file" and reason in error["message"], (name, error)
    missing = await stack.tickets.post("/tickets/attachments", headers=carol)
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "file"
    no_right = await upload(stack, reader, "notes.txt", b"hello")
    assert no_right.status_code == 403
    assert await stored_files(stack) == before

    # The virus scanner's hook: a command that reads the file and exits non-zero on a find.
    policy = stack.app.files.policy
    stack.app.files.policy = AttachmentPolicy(
        max_bytes=policy.max_bytes,
        types=policy.types,
        scanner=CommandScanner("sh -c '! grep -q EICAR-STANDARD-ANTIVIRUS-TEST-FILE'"),
    )
    try:
        infected = await upload(
            stack, carol, "eicar.txt", b"X5O!P%@AP EICAR-STANDARD-ANTIVIRUS-TEST-FILE!"
        )
        assert infected.status_code == 422, infected.text
        assert "virus scanner" in infected.json()["error"]["message"]
        clean = await upload(stack, carol, "clean.txt", b"all good")
        assert clean.status_code == 201, clean.text
    finally:
        stack.app.files.policy = policy
    assert await stored_files(stack) == before + 1

    # A message naming an unknown file, or another's upload, or too many, writes nothing.
    mine = clean.json()["attachment_id"]
    daves = await uploaded(stack, dave, "dave.txt", b"dave's")
    version = (await read(stack, path, carol)).json()["version"]
    bodies: list[dict[str, Any]] = [
        {"body": "x", "attachments": ["unknown-id"]},
        {"body": "x", "attachments": [daves]},
        {"body": "x", "attachments": [mine, mine]},
        {"body": "x", "attachments": [mine] * 11},
        {"body": "x", "attachments": "not-a-list"},
    ]
    for body in bodies:
        answer = await stack.tickets.post(f"{path}/messages", json=body, headers=carol)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["error"]["field"] == "attachments", (body, answer.text)
    numbering = stack.app.numbering.state.version
    opening = await stack.tickets.post(
        "/tickets",
        json={"department_id": desk, "subject": "s", "body": "b", "attachments": [daves]},
        headers=carol,
    )
    assert opening.status_code == 422 and opening.json()["error"]["field"] == "attachments"
    # Refused before anything was written: not even a ticket number was taken.
    assert stack.app.numbering.state.version == numbering
    after = await stack.tickets.get(path, headers=carol)
    assert after.json()["version"] == version


async def test_files_of_a_message_to_a_client_are_downloaded_by_its_recipient(
    stack: Stack,
) -> None:
    main = await project(stack)
    erin_id, erin = await client(stack, "erin-files", main)
    _, frank = await client(stack, "frank-files", main)
    _, messenger = await staff(stack, "files-messenger", ["clients.message", "clients.view"])
    upload_answer = await stack.clients.post(
        "/clients/attachments",
        files={"file": ("terms.pdf", PDF, "application/pdf")},
        headers=messenger,
    )
    assert upload_answer.status_code == 201, upload_answer.text
    attachment_id = upload_answer.json()["attachment_id"]
    sent = await stack.clients.post(
        "/clients/messages",
        json={"client_ids": [erin_id], "subject": "New terms", "text": "Attached",
              "attachments": [attachment_id]},
        headers=messenger,
    )  # fmt: skip
    assert sent.status_code in (200, 201), sent.text
    message_id = sent.json()["id"]
    path = f"/clients/{erin_id}/messages/{message_id}/attachments/{attachment_id}"
    got = await stack.clients.get(
        path, params={"min_position": sent.json()["position"]}, headers=erin
    )
    assert got.status_code == 200, got.text
    assert got.content == PDF
    assert got.headers["content-disposition"].startswith("attachment;")
    assert got.headers["x-content-type-options"] == "nosniff"
    assert (await stack.clients.get(path, headers=messenger)).status_code == 200
    assert (await stack.clients.get(path, headers=frank)).status_code == 404
    other = f"/clients/{erin_id}/messages/{message_id}/attachments/unknown"
    assert (await stack.clients.get(other, headers=erin)).status_code == 404
