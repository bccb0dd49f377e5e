"""Kafka: publishing a service's log and consuming other contexts' topics.

* ``kafka`` – topic names, creation (retention -1), offsets, partition look-ups;
* ``relay`` – the store's global order to ``<context>.events``, at least once;
* ``consumer`` – other contexts' topics, each event handled once (inbox, kept offsets);
* ``copies`` – read models of other contexts' facts, and filling one again.
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
    inbound_group,
    refill,
    refill_lease,
)
from shared.messaging.kafka import (
    TOPIC_CONFIG,
    ensure_topic,
    message_at,
    messages_at,
    partitions_of,
    topic_exists,
    topic_of,
    topic_retention,
)
from shared.messaging.relay import (
    RELAY_POSITION,
    RELAYED,
    Relay,
    message_headers,
)

__all__ = [
    "BATCH",
    "CONSUMED",
    "CONSUMER_LAG",
    "IDLE_POLLS",
    "INBOX_PRUNED",
    "PRUNE_CHUNK",
    "PRUNE_EVERY",
    "RELAYED",
    "RELAY_POSITION",
    "TOPIC_CONFIG",
    "Handler",
    "InboxConsumer",
    "Relay",
    "Route",
    "TopicCopy",
    "ensure_topic",
    "inbound_group",
    "keep_inbox_pruned",
    "message_at",
    "message_headers",
    "messages_at",
    "partitions_of",
    "prune_inbox",
    "refill",
    "refill_lease",
    "topic_exists",
    "topic_of",
    "topic_retention",
    "trusted_offsets",
]
