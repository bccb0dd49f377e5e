"""The broker a bench runs on: Tansu (today's figures' names) or Apache Kafka (``.apache_kafka.``).

* ``tansu``: ``KAFKA_BOOTSTRAP_SERVERS`` when set (with the ``KAFKA_IMPL`` of the
  environment), else a Tansu broker on a free port (``KAFKA_IMPL=tansu``: the
  services poll it every 10 ms, ``shared.messaging.kafka_clients``);
* ``apache_kafka``: a real Apache Kafka 4.x from ``devtools.apache_kafka``
  (``KAFKA_IMPL=apache``: the services long-poll).

``figure_name`` puts ``apache_kafka`` after a figure's first part, so both brokers'
figures stand side by side in ``bench/results.json`` (``authz.revocation_p99_ms`` and
``authz.apache_kafka.revocation_p99_ms``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from devtools import devbroker

BROKERS = ("tansu", "apache_kafka")


@contextlib.contextmanager
def running_broker(broker: str = "tansu") -> Iterator[tuple[str, str]]:
    """Yields (bootstrap, the ``KAFKA_IMPL`` the services must be given)."""
    if broker == "apache_kafka":
        from devtools.apache_kafka import ApacheKafka

        with ApacheKafka() as kafka:
            yield kafka.bootstrap, "apache"
        return
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured, os.environ.get("KAFKA_IMPL", "apache")
        return
    with devbroker.running_tansu() as bootstrap:
        yield bootstrap, "tansu"


def figure_name(name: str, broker: str) -> str:
    if broker == "tansu":
        return name
    first, _, rest = name.partition(".")
    return f"{first}.{broker}.{rest}"
