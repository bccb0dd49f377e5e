"""Kafka: publishing a service's log and consuming other contexts' topics.

* ``kafka`` – topic creation (retention -1), offsets, partition look-ups;
* ``kafka_clients`` – how every client connects: broker kind, fetch wait, TLS and SASL;
* ``relay`` – the store's global order to ``<context>.events``, at least once;
* ``consumer`` – other contexts' topics, each event handled once (inbox, kept offsets);
* ``copies`` – read models of other contexts' facts, and filling one again;
* ``staff_facts`` – identity's published staff facts, decoded once for every copy.
* ``signatures`` – identity signs its facts, every consumer verifies them (``FactVerifier``).
"""

from shared.messaging.consumer import (
    CONSUMED,
    CONSUMER_LAG,
    INBOX_PRUNED,
    PRUNE_CHUNK,
    PRUNE_EVERY,
    Handler,
    InboxConsumer,
    Route,
    keep_inbox_pruned,
    prune_inbox,
    trusted_offsets,
)
from shared.messaging.copies import (
    BATCH,
    IDLE_POLLS,
    TopicCopy,
    refill,
)
from shared.messaging.kafka import (
    TOPIC_CONFIG,
    ensure_topic,
    message_at,
    messages_at,
    partitions_of,
    topic_exists,
    topic_retention,
)
from shared.messaging.kafka_clients import (
    FETCH_WAIT_MS,
    SASL_PROTOCOLS,
    SSL_PROTOCOLS,
    Broker,
    ClientConfig,
    KafkaClientSettings,
    admin_options,
    config_of,
    consumer_options,
    faust_options,
    producer_options,
)
from shared.messaging.relay import (
    RELAY_POSITION,
    RELAYED,
    Relay,
    message_headers,
)
from shared.messaging.staff_facts import (
    ADDRESS_MAX,
    ID_MAX,
    NAME_MAX,
    STAFF_FACTS,
    StaffFact,
    record_staff_name,
    staff_fact,
    staff_names_table,
)

__all__ = [
    "ADDRESS_MAX",
    "BATCH",
    "CONSUMED",
    "CONSUMER_LAG",
    "FETCH_WAIT_MS",
    "IDLE_POLLS",
    "ID_MAX",
    "INBOX_PRUNED",
    "NAME_MAX",
    "PRUNE_CHUNK",
    "PRUNE_EVERY",
    "RELAYED",
    "RELAY_POSITION",
    "SASL_PROTOCOLS",
    "SSL_PROTOCOLS",
    "STAFF_FACTS",
    "TOPIC_CONFIG",
    "Broker",
    "ClientConfig",
    "Handler",
    "InboxConsumer",
    "KafkaClientSettings",
    "Relay",
    "Route",
    "StaffFact",
    "TopicCopy",
    "admin_options",
    "config_of",
    "consumer_options",
    "ensure_topic",
    "faust_options",
    "keep_inbox_pruned",
    "message_at",
    "message_headers",
    "messages_at",
    "partitions_of",
    "producer_options",
    "prune_inbox",
    "record_staff_name",
    "refill",
    "staff_fact",
    "staff_names_table",
    "topic_exists",
    "topic_retention",
    "trusted_offsets",
]
