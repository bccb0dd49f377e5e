"""The notifier's mailer over its pool of SMTP connections, against a real SMTP server
(aiosmtpd, ``tests.support.mail_and_sms``) that counts the connections it is given.

Shown here: many mails go over fewer connections than mails (at most the pool's
size); a connection the server dropped is replaced and the mail arrives once; a
refused recipient fails its own mail only, and the connection goes on serving the
others; idle connections are closed after their time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.notifier.adapters.mail import SmtpMailer
from services.notifier.app.ports import DeliveryError
from services.notifier.settings import NotifierSettings
from tests.http_util import eventually
from tests.support.mail_and_sms import MailBox, mailbox

POOL = 3


@pytest.fixture
async def box() -> AsyncIterator[MailBox]:
    async with mailbox() as server:
        yield server


def _mailer(box: MailBox, idle_seconds: float = 30.0) -> SmtpMailer:
    settings = NotifierSettings(
        smtp_host="127.0.0.1",
        smtp_port=box.port,
        smtp_pool_size=POOL,
        smtp_pool_idle_seconds=idle_seconds,
        smtp_timeout_seconds=5,
    )
    return SmtpMailer(settings)


async def _send(mailer: SmtpMailer, n: int, to: str = "") -> None:
    await mailer.send(f"notice-{n}", to or f"agent{n}@example.com", f"Mail {n}", f"Body {n}")


async def _arrived(box: MailBox, count: int) -> None:
    async def count_now() -> int:
        return len(box.mails)

    await eventually(count_now, lambda found: found >= count, timeout=10)


async def test_many_mails_go_over_at_most_the_pools_connections(box: MailBox) -> None:
    mailer = _mailer(box)
    try:
        await asyncio.gather(*(_send(mailer, n) for n in range(30)))
        await asyncio.gather(*(_send(mailer, n) for n in range(30, 40)))
    finally:
        await mailer.close()
    assert sorted(m.subject for m in box.mails) == sorted(f"Mail {n}" for n in range(40))
    assert 1 <= box.connections <= POOL  # 40 mails, the second burst on kept connections
    assert mailer.pool.opened == box.connections


async def test_a_connection_the_server_dropped_is_replaced_and_the_mail_arrives_once(
    box: MailBox,
) -> None:
    mailer = _mailer(box)
    try:
        await _send(mailer, 1)
        assert box.connections == 1 and mailer.pool.idle == 1
        # The server drops it; the client has not read the close yet when it sends, so
        # the mail fails on the kept connection and goes again on a fresh one.
        box.drop_connections()
        await _send(mailer, 2)
        await _arrived(box, 2)
        assert [m.subject for m in box.mails].count("Mail 2") == 1
        assert box.connections == 2 and mailer.pool.opened == 2
        # Dropped again, and closed on the server's side before the next mail: whether
        # the client has read the close yet (the connection is skipped) or not (the
        # mail fails on it and goes again), the mail goes once, on a new connection.
        box.drop_connections()

        async def still_open() -> int:
            return box.open_connections

        await eventually(still_open, lambda n: n == 0, timeout=5)
        await _send(mailer, 3)
        assert [m.subject for m in box.mails].count("Mail 3") == 1
        assert box.connections == 3
    finally:
        await mailer.close()


async def test_a_refused_recipient_fails_its_mail_only(box: MailBox) -> None:
    box.refused.add("nobody@example.com")
    mailer = _mailer(box)
    try:
        outcomes = await asyncio.gather(
            *(_send(mailer, n) for n in range(4)),
            _send(mailer, 99, to="nobody@example.com"),
            *(_send(mailer, n) for n in range(4, 8)),
            return_exceptions=True,
        )
        failed = [o for o in outcomes if o is not None]
        assert len(failed) == 1 and isinstance(failed[0], DeliveryError)
        assert "550" in str(failed[0]) and "SMTPRecipientsRefused" in str(failed[0])
        await _send(mailer, 8)  # the connections were kept: no new one for the next mail
    finally:
        await mailer.close()
    assert sorted(m.subject for m in box.mails) == sorted(f"Mail {n}" for n in range(9))
    assert box.to("nobody@example.com") == []
    assert box.connections <= POOL


async def test_idle_connections_are_closed_after_their_time(box: MailBox) -> None:
    mailer = _mailer(box, idle_seconds=0.3)
    try:
        await asyncio.gather(*(_send(mailer, n) for n in range(6)))
        assert mailer.pool.idle >= 1

        async def idle() -> tuple[int, int]:
            return mailer.pool.idle, box.open_connections

        await eventually(idle, lambda found: found == (0, 0), timeout=5)
        await _send(mailer, 6)  # a new connection for the next mail
        assert box.connections == mailer.pool.opened and mailer.pool.idle == 1
    finally:
        await mailer.close()
    assert len(box.mails) == 7
