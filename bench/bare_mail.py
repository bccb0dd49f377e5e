"""The limit beside ``notifier.mails_per_s``: a bare aiosmtplib loop.

``python -m bench.bare_mail --port P --count N`` connects once to the SMTP
server on 127.0.0.1:P and sends N messages built as the notifier's mailer
builds them (``services.notifier.adapters.mail``: the same headers, a body of
the same size), one after the other on that connection, each awaited to the
server's 250 (each message built inside the loop, as the mailer does). It
prints ``{"seconds": ...}``: first message to last 250.

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
    mail["X-Notice-Id"] = notice_id
    mail.set_content(BODY.format(n=n))
    return mail


async def send_all(port: int, count: int) -> float:
    """Seconds to send ``count`` messages over one connection."""
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60)
    await smtp.connect()
    try:
        started = time.perf_counter()
        for n in range(count):
            await smtp.send_message(message(n))
        return time.perf_counter() - started
    finally:
        await smtp.quit()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_mail", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    print(json.dumps({"seconds": asyncio.run(send_all(args.port, args.count))}))


if __name__ == "__main__":
    main()
