"""The limit beside ``mail.inbound_per_s``: a bare aiosmtpd handler, one INSERT per mail.

``python -m bench.bare_inbound --port P --dsn DSN`` serves SMTP on 127.0.0.1:P
(aiosmtpd, as the gateway does) and answers each mail 250 once it is stored in
one row (``INSERT`` of its Message-ID, sender and raw bytes through an asyncpg
pool): no parsing, no client lookup, no event, no read model, no broker. What
one Python process on this machine does at best for a mail that must be durable
before its 250. It prints ``ready`` once it listens and stops on SIGTERM.

``bench.mail`` starts it as its own process (as the tickets service is) and sends it
the same mails over the same number of connections (``mail.inbound_vs_bare``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import asyncpg
from aiosmtpd.smtp import SMTP, Envelope, Session

POOL_SIZE = 10
TABLE = """
CREATE TABLE IF NOT EXISTS bare_inbound (
    position    bigserial PRIMARY KEY,
    message_id  text  NOT NULL,
    mail_from   text  NOT NULL,
    raw         bytea NOT NULL
)
"""
INSERT = "INSERT INTO bare_inbound (message_id, mail_from, raw) VALUES ($1, $2, $3)"


class Handler:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        assert isinstance(raw, bytes)
        # The Message-ID as a header line says it; no MIME parsing (that is the gateway's work).
        start = raw.find(b"Message-ID:")
        message_id = raw[start + 11 : raw.find(b"\r\n", start)].strip() if start >= 0 else b""
        await self.pool.execute(INSERT, message_id.decode(), envelope.mail_from or "", raw)
        return "250 2.0.0 stored"


async def serve(port: int, dsn: str) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=POOL_SIZE)
    assert pool is not None
    await pool.execute(TABLE)
    loop = asyncio.get_running_loop()
    handler = Handler(pool)
    server = await loop.create_server(
        lambda: SMTP(handler, enable_SMTPUTF8=True, loop=loop), "127.0.0.1", port
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_inbound", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.dsn))


if __name__ == "__main__":
    main()
