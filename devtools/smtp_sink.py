"""A local SMTP server for development: accepts every message and keeps it as an .eml file.

``python -m devtools.smtp_sink --port 1025 --dir var/mail`` listens on
127.0.0.1, accepts any sender, any recipient and any credentials, writes each
message to ``<dir>/<UTC time>-<n>.eml`` (the envelope added as
``X-Envelope-From`` / ``X-Envelope-To`` headers, since Bcc recipients appear
nowhere else) and logs one line per message. SIGINT or SIGTERM stops it with
exit code 0. Nothing is ever relayed anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

log = logging.getLogger("smtp_sink")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1025


class MailDirHandler:
    """aiosmtpd handler: every message accepted goes to one file under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._counter = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = _as_bytes(envelope.original_content or envelope.content)
        sender = envelope.mail_from or ""
        recipients = list(envelope.rcpt_tos)
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S.%f}-{os.getpid()}-{next(self._counter)}.eml"
        path = self.directory / name
        # A thread, so a slow disk never stalls the other connections.
        data = _with_envelope(content, sender, recipients)
        await asyncio.to_thread(_write_atomically, path, data)
        log.info(
            "mail from=%s to=%s subject=%r file=%s",
            sender or "<>",
            ",".join(recipients),
            _subject(content),
            path,
        )
        return "250 Message accepted for delivery"


def _as_bytes(content: bytes | str | None) -> bytes:
    if content is None:
        return b""
    return content if isinstance(content, bytes) else content.encode("utf-8", "surrogateescape")


def _with_envelope(content: bytes, sender: str, recipients: Sequence[str]) -> bytes:
    """The message with the SMTP envelope prepended as headers, in the message's own line ends."""
    eol = b"\r\n" if b"\r\n" in content else b"\n"
    headers = [
        f"X-Envelope-From: <{sender}>".encode(),
        f"X-Envelope-To: {', '.join(f'<{r}>' for r in recipients)}".encode(),
    ]
    return eol.join(headers) + eol + content


def _subject(content: bytes) -> str:
    headers = BytesHeaderParser(policy=policy.default).parsebytes(content)
    return str(headers.get("subject", ""))


def _write_atomically(path: Path, data: bytes) -> None:
    # Write then rename: whoever watches the directory never reads half a message.
    partial = path.with_name(f".{path.name}.part")
    partial.write_bytes(data)
    partial.replace(path)


def _authenticator(*_: Any) -> AuthResult:
    """Any user name and password will do: a client configured with credentials still works."""
    return AuthResult(success=True)


async def start(
    directory: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> asyncio.Server:
    """Start the sink on the running loop; returns the listening server."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    handler = MailDirHandler(directory)
    loop = asyncio.get_running_loop()

    def protocol() -> SMTP:
        return SMTP(
            handler,
            # A fixed name: the default asks DNS for the FQDN, which can take seconds.
            hostname="smtp-sink.localhost",
            enable_SMTPUTF8=True,
            authenticator=_authenticator,
            # No TLS here, so AUTH must be allowed in clear text (it is local only).
            auth_require_tls=False,
            loop=loop,
        )

    return await loop.create_server(protocol, host, port)


async def serve(directory: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Run the sink until SIGINT or SIGTERM."""
    server = await start(directory, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("smtp sink listening on %s:%d, writing to %s", host, port, directory)
    try:
        await stop.wait()
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
    log.info("smtp sink stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m devtools.smtp_sink``."""
    parser = argparse.ArgumentParser(prog="python -m devtools.smtp_sink", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=int(os.environ.get("SMTP_PORT", DEFAULT_PORT)))
    parser.add_argument("--dir", type=Path, default=Path("var/mail"), dest="directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    # aiosmtpd logs every connection and command at INFO; one line per message is enough.
    mail_log = logging.getLogger("mail.log")
    mail_log.setLevel(logging.WARNING)
    # ... and it warns about its own deprecated attribute whenever a client logs in.
    mail_log.addFilter(lambda record: "login_data is deprecated" not in record.getMessage())
    try:
        asyncio.run(serve(args.directory, args.host, args.port))
    except OSError as exc:
        log.error("smtp sink cannot listen on %s:%d: %s", args.host, args.port, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
