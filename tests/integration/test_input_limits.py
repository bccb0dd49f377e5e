"""Input limits and what a client sees of itself, over real HTTP (issue 17).

Identity and clients as in ``test_clients`` (its module-scoped stack), on
PostgreSQL and the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from tests.http_util import eventually
from tests.integration.test_clients import Stack, client_body, login, register, stack

__all__ = ["stack"]  # the services of test_clients, run again for this module

TWO_MB = 2 * 1024 * 1024


async def test_a_two_megabyte_body_is_refused_with_413_on_every_service(stack: Stack) -> None:
    huge = b'{"login": "' + b"x" * TWO_MB + b'", "password": "p"}'
    for client, path, headers in (
        (stack.identity, "/auth/login", {}),
        (stack.identity, "/staff", stack.admin),
        (stack.clients, "/clients", stack.admin),
    ):
        refused = await client.post(
            path, content=huge, headers={**headers, "content-type": "application/json"}
        )
        assert refused.status_code == 413, (path, refused.text[:200])
        assert refused.json()["error"]["code"] == "body_too_large"


async def test_a_body_without_a_length_is_counted_as_it_streams(stack: Stack) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"login": "'
        for _ in range(40):
            yield b"x" * 65536  # 2.5 MB in all, never announced
        yield b'", "password": "p"}'

    refused = await stack.identity.post(
        "/auth/login", content=chunks(), headers={"content-type": "application/json"}
    )
    assert refused.status_code == 413, refused.text[:200]


async def test_an_upload_over_its_cap_is_refused_before_its_body_is_read(stack: Stack) -> None:
    # A raw connection that announces 11 MB and sends none of it: the answer
    # comes anyway, so the server read nothing of the body.
    url = httpx.URL(str(stack.clients.base_url))
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        head = (
            "POST /clients/attachments HTTP/1.1\r\n"
            f"Host: {url.host}\r\n"
            f"Authorization: {stack.admin['Authorization']}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {11 * 1024 * 1024}\r\n\r\n"
        )
        writer.write(head.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    assert status_line.split()[1] == b"413", status_line
    under = await stack.clients.post(
        "/clients/attachments", files={"file": ("small.txt", b"hello")}, headers=stack.admin
    )
    assert under.status_code == 201, under.text


STAFF_ONLY = {"note", "characteristic", "referral_source", "partner_program"}


async def test_a_client_reading_its_own_card_gets_no_staff_only_fields(stack: Stack) -> None:
    target = await register(stack, client_body("ownview1"))
    noted = await stack.clients.patch(
        f"/clients/{target['id']}",
        json={"note": "pays late", "characteristic": "conflict", "referral_source": "forum"},
        headers=stack.admin,
    )
    assert noted.status_code == 200, noted.text
    as_client = await login(stack.identity, "ownview1", "Passw0rd-for-ownview1", kind="client")
    own = await eventually(
        lambda: stack.clients.get(
            f"/clients/{target['id']}",
            params={"min_position": noted.json()["position"]},
            headers=as_client,
        ),
        lambda r: r.status_code == 200,
    )
    assert STAFF_ONLY.isdisjoint(own.json()), own.json()
    assert "pays late" not in own.text and own.json()["id"] == target["id"]
    staff_view = await stack.clients.get(f"/clients/{target['id']}", headers=stack.admin)
    assert (
        staff_view.json()["note"] == "pays late"
        and staff_view.json()["characteristic"] == "conflict"
    )


async def test_a_client_changes_its_own_password_and_its_other_sessions_end(
    stack: Stack,
) -> None:
    await register(stack, client_body("ownpass1"))
    here = await login(stack.identity, "ownpass1", "Passw0rd-for-ownpass1", kind="client")
    elsewhere = await login(stack.identity, "ownpass1", "Passw0rd-for-ownpass1", kind="client")
    changed = await stack.identity.post(
        "/me/password",
        json={"current_password": "Passw0rd-for-ownpass1", "new_password": "N3w-passw0rd-1"},
        headers=here,
    )
    assert changed.status_code == 204, changed.text
    assert (await stack.identity.get("/me", headers=elsewhere)).status_code == 401
    assert (await stack.identity.get("/me", headers=here)).status_code == 200
    await login(stack.identity, "ownpass1", "N3w-passw0rd-1", kind="client")
