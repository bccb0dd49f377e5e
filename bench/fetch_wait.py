"""How a broker answers a held fetch: requests a second from a quiet consumer, and how
soon a message reaches it, for several fetch waits (what ``pace_fetches`` rests on).

``python -m bench.fetch_wait [--waits 10,100,500] [--tries 12]`` starts a Tansu broker
(or uses ``KAFKA_BOOTSTRAP_SERVERS``), makes a 3-partition topic, and for each wait:
a consumer at that ``fetch_max_wait_ms`` left alone for 2 s (its fetch requests
counted), then ``--tries`` messages produced at random moments 50–600 ms apart, each
timed from the producer's acknowledgement to the consumer's ``getmany`` returning it.
Prints one line per wait; writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.protocol.fetch import FetchRequest

from devtools import devbroker
from shared.messaging.kafka import ensure_topic


async def one_wait(bootstrap: str, topic: str, wait_ms: int, tries: int) -> str:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        fetch_max_wait_ms=wait_ms,
        auto_offset_reset="latest",
        group_id=None,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        await consumer.getmany(timeout_ms=1500)  # assigned and positioned
        sent = 0
        send = consumer._client.send

        async def counting(node_id: int, request: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal sent
            if isinstance(request, FetchRequest):
                sent += 1
            return await send(node_id, request, *args, **kwargs)

        consumer._client.send = counting
        started = time.perf_counter()
        await asyncio.sleep(2)
        rate = sent / (time.perf_counter() - started)
        arrivals: list[float] = []
        for _ in range(tries):
            await asyncio.sleep(random.uniform(0.05, 0.6))
            await producer.send_and_wait(topic, b"x")
            acknowledged = time.perf_counter()
            got: dict[Any, Any] = {}
            while not got:
                got = await consumer.getmany(timeout_ms=5000)
            arrivals.append((time.perf_counter() - acknowledged) * 1000)
    finally:
        await producer.stop()
        await consumer.stop()
    return (
        f"wait {wait_ms:5d} ms: {rate:6.1f} fetch requests/s while quiet; a message arrives "
        f"{statistics.mean(arrivals):6.1f} ms after its acknowledgement on average, "
        f"{max(arrivals):6.1f} at most ({tries} tries)"
    )


async def measure(bootstrap: str, waits: Sequence[int], tries: int) -> None:
    topic = f"bench-fetch-wait-{os.getpid()}"
    await ensure_topic(bootstrap, topic)
    for wait_ms in waits:
        print(await one_wait(bootstrap, topic, wait_ms, tries), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fetch_wait", description=__doc__)
    parser.add_argument("--waits", default="10,100,500", help="fetch waits to try, ms")
    parser.add_argument("--tries", type=int, default=12, help="messages timed per wait")
    args = parser.parse_args(argv)
    waits = [int(w) for w in args.waits.split(",")]
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or stack.enter_context(
            devbroker.running_tansu()
        )
        asyncio.run(measure(bootstrap, waits, args.tries))


if __name__ == "__main__":
    main()
