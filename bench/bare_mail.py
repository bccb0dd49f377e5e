"""The limit beside ``notifier.mails_per_s``: a bare aiosmtplib loop.

``python -m bench.bare_mail --port P --count N --connections C`` opens C
connections to the SMTP server on 127.0.0.1:P (the notifier's pool size,
``SMTP_POOL_SIZE``: the same concurrency budget) and sends N messages built as
the notifier's mailer builds them (``services.notifier.adapters.mail``: the same
headers, a plain-text part and the same HTML alternative of a body of the same
size), each connection one message after the other, each awaited to the server's
250 (each message built inside the loop, as the mailer does). It prints
``{"seconds": ...}``: first message to last 250.

``bench.notifier`` runs it as its own process (as the notifier is), against
the same aiosmtpd server in the same run (``notifier.mails_vs_bare``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib

from services.notifier.adapters.mail import as_html
from shared.domain.events import utcnow

BODY = (
    "Client bench (c@bench.example.com) replied to ticket #{n}:\n\n"
    "Thank you, the site answers again. Could you also look at the mailbox quota?\n\n"
    "Open the ticket: http://127.0.0.1/tickets/{n}\n"
)


def message(n: int) -> EmailMessage:
    notice_id = str(uuid.uuid4())
    mail = EmailMessage()
    mail["From"] = "notifier@backoffice.localhost"
    mail["To"] = "agent@bench.example.com"
    mail["Subject"] = f"New reply from the client, ticket #bare-{n}"
    mail["Date"] = format_datetime(utcnow())
    mail["Message-ID"] = make_msgid(idstring=notice_id, domain="notifier.backoffice")
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-Notice-Id"] = notice_id
    body = BODY.format(n=n)
    mail.set_content(body)
    mail.add_alternative(as_html(body), subtype="html")
    return mail


async def send_all(port: int, count: int, connections: int = 1) -> float:
    """Seconds to send ``count`` messages over ``connections`` connections at once."""
    clients = [
        aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60) for _ in range(connections)
    ]
    for smtp in clients:
        await smtp.connect()
    numbers = iter(range(count))

    async def one_connection(smtp: aiosmtplib.SMTP) -> None:
        for n in numbers:  # shared: each connection takes the next message
            await smtp.send_message(message(n))

    try:
        started = time.perf_counter()
        await asyncio.gather(*(one_connection(smtp) for smtp in clients))
        return time.perf_counter() - started
    finally:
        for smtp in clients:
            await smtp.quit()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_mail", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--connections", type=int, default=1)
    args = parser.parse_args()
    seconds = asyncio.run(send_all(args.port, args.count, args.connections))
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main()
