"""Kafka credentials: SASL/SCRAM and ACLs on a real Apache Kafka broker.

The broker speaks only SASL/SCRAM-SHA-256 and authorizes every request
(``devtools.apache_kafka`` with users; no ACL, no access). Each service has its
own principal; every principal may read the contexts' topics and use its own
consumer groups, and only a context's own service may write its topic
(``identity.events``: identity alone). What the tests show:

* a client without credentials, or with a wrong password, is refused, and the
  error names neither the password nor the user's secret;
* identity, running as a service with its credentials (relay, access feed,
  consumer), gets ready and publishes; another principal reads it;
* another principal (tickets) cannot produce to ``identity.events``;
* the notifier's faust app reads with its credentials too;
* a service started without credentials reports the refusal in ``/ready``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from pydantic import SecretStr

from devtools.apache_kafka import ApacheKafka
from services.identity.service import SPEC as IDENTITY
from services.notifier.app.stream import NotifierStream
from shared.domain.events import SYSTEM, RecordedEvent
from shared.messaging.kafka import ensure_topic
from shared.messaging.kafka_clients import Broker, ClientConfig, producer_options
from shared.runtime.service import create_app
from shared.runtime.settings import ServiceSettings
from tests.http_util import eventually, serving
from tests.kafka_util import read_topic

pytestmark = [pytest.mark.bus, pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = f"sec{uuid.uuid4().hex[:6]}"
# Two deployments' prefixes on one broker: the service test's topics hold only what
# its service wrote, the others' hold the tests' raw messages.
PREFIX, SERVICE_PREFIX = f"{ROOT}a.", f"{ROOT}b."
PASSWORDS = {name: f"{name}-{uuid.uuid4().hex}" for name in ("identity", "tickets", "notifier")}


@pytest.fixture(scope="module")
def broker() -> Iterator[ApacheKafka]:
    with ApacheKafka(users=PASSWORDS) as secured:
        everyone = [arg for name in PASSWORDS for arg in ("--allow-principal", f"User:{name}")]
        # Every service reads (and may create) the contexts' topics and uses its groups...
        secured.acl("--add", *everyone,
                    "--operation", "Read", "--operation", "Describe", "--operation", "Create",
                    "--operation", "DescribeConfigs",
                    "--topic", ROOT, "--resource-pattern-type", "prefixed")  # fmt: skip
        secured.acl("--add", *everyone, "--operation", "Read", "--operation", "Describe",
                    "--group", ROOT, "--resource-pattern-type", "prefixed")  # fmt: skip
        # ...and writes only its own context's topic.
        for name in ("identity", "tickets"):
            secured.acl("--add", "--allow-principal", f"User:{name}", "--operation", "Write",
                        "--topic", f"{PREFIX}{name}.events",
                        "--topic", f"{SERVICE_PREFIX}{name}.events")  # fmt: skip
        yield secured


def as_user(broker: ApacheKafka, user: str | None, password: str | None = None) -> Broker:
    if user is None:
        return Broker(broker.bootstrap, ClientConfig())
    return Broker(
        broker.bootstrap,
        ClientConfig(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-256",
            sasl_username=user,
            sasl_password=password or PASSWORDS[user],
        ),
    )


def identity_settings(
    broker: ApacheKafka, postgres_url: str, tmp_path: Path, **kafka: object
) -> ServiceSettings:
    return ServiceSettings(
        event_store_url=postgres_url,
        read_model_url=postgres_url,
        kafka_bootstrap_servers=broker.bootstrap,
        topic_prefix=SERVICE_PREFIX,
        var_dir=str(tmp_path / "var"),
        **kafka,  # type: ignore[arg-type]
    )


async def test_a_client_without_credentials_or_with_a_wrong_password_is_refused(
    broker: ApacheKafka,
) -> None:
    wrong = "not-" + PASSWORDS["identity"]
    for who in (as_user(broker, None), as_user(broker, "identity", wrong)):
        with pytest.raises(KafkaError) as refused:
            await asyncio.wait_for(ensure_topic(who, f"{PREFIX}identity.events"), 60)
        assert wrong not in str(refused.value) and PASSWORDS["identity"] not in repr(who.config)
    # The same call with the right password goes through.
    await ensure_topic(as_user(broker, "identity"), f"{PREFIX}identity.events")


async def test_only_identity_may_produce_to_identity_events(broker: ApacheKafka) -> None:
    topic = f"{PREFIX}identity.events"
    await ensure_topic(as_user(broker, "identity"), topic)
    intruder = AIOKafkaProducer(**producer_options(as_user(broker, "tickets")), acks="all")
    await intruder.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(intruder.send_and_wait(topic, b"forged", key=b"staff-1"), 60)
    finally:
        await intruder.stop()
    owner = AIOKafkaProducer(**producer_options(as_user(broker, "identity")), acks="all")
    await owner.start()
    try:
        sent = await owner.send_and_wait(topic, b"from identity", key=b"staff-1")
    finally:
        await owner.stop()
    # Only identity's message is on the topic (read as another service).
    messages = await read_topic(as_user(broker, "tickets"), topic, expect=1)
    values = [m.value for m in messages]
    assert b"from identity" in values and b"forged" not in values
    assert any(m.offset == sent.offset for m in messages)


async def test_identity_with_its_credentials_runs_and_without_them_is_refused(
    broker: ApacheKafka, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADMIN_PASSWORD", "Admin-password-2026")
    with_credentials = identity_settings(
        broker, postgres_url, tmp_path,
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="identity", kafka_sasl_password=SecretStr(PASSWORDS["identity"]),
    )  # fmt: skip
    async with (
        serving(create_app(IDENTITY, with_credentials)) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        ready = await eventually(lambda: http.get("/ready"), lambda r: r.status_code == 200, 90)
        assert "problems" not in ready.json()
        # Its relay published the first admin's facts; another service reads them.
        topic = f"{SERVICE_PREFIX}identity.events"
        messages = await read_topic(as_user(broker, "tickets"), topic, 1)
        types = {RecordedEvent.from_json(m.value).type for m in messages}
        assert "StaffAccessChanged" in types
        assert PASSWORDS["identity"].encode() not in b"".join(m.value or b"" for m in messages)

    without = identity_settings(broker, postgres_url, tmp_path)
    async with (
        serving(create_app(IDENTITY, without)) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        refused = await eventually(
            lambda: http.get("/ready"),
            lambda r: r.status_code == 503 and "consumer:access" in r.json().get("problems", {}),
            90,
        )
        problems = refused.json()["problems"]
        assert "KafkaConnectionError" in problems["consumer:access"]


async def test_the_notifier_stream_reads_with_its_credentials(broker: ApacheKafka) -> None:
    topic = f"{PREFIX}tickets.events"
    await ensure_topic(as_user(broker, "tickets"), topic)
    producer = AIOKafkaProducer(**producer_options(as_user(broker, "tickets")), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, _event_json(), key=b"ticket-1")
    finally:
        await producer.stop()
    seen: list[RecordedEvent] = []

    async def handle(event: RecordedEvent) -> None:
        seen.append(event)

    stream = NotifierStream(
        as_user(broker, "notifier"), [topic], f"{PREFIX}notifier.stream", handle
    )
    task = asyncio.create_task(stream.run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while not seen:
            assert not task.done() or task.result() is None
            assert loop.time() < deadline, "the notifier's stream never got the event"
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert seen[0].type == "TicketOpened"


def _event_json() -> bytes:
    event = RecordedEvent(
        position=1, stream="ticket-1", stream_version=1, event_id=uuid.uuid4(),
        type="TicketOpened", schema_version=1, occurred_at=datetime.now(UTC),
        correlation_id=None, causation_id=None, actor=SYSTEM, data={"n": 1},
    )  # fmt: skip
    return event.to_json()
