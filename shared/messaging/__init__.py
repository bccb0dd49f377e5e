"""Kafka: publishing a service's log and consuming other contexts' topics.

* ``kafka`` – topic names, creation (retention -1), offsets, partition look-ups;
* ``relay`` – the store's global order to ``<context>.events``, at least once;
* ``consumer`` – other contexts' topics, each event handled once (inbox, kept offsets);
* ``copies`` – read models of other contexts' facts, and filling one again.
"""

from shared.messaging.consumer import (
    Handler,
    CONSUMED,
    INBOX_PRUNED,
    PRUNE_CHUNK,
    PRUNE_EVERY,
    CONSUMER_LAG,
    Route,
    InboxConsumer,
    prune_inbox,
    keep_inbox_pruned,
    trusted_offsets,
)
from shared.messaging.copies import (
    BATCH,
    IDLE_POLLS,
    TopicCopy,
    refill_lease,
    inbound_group,
    refill,
)
from shared.messaging.kafka import (
    topic_of,
    TOPIC_CONFIG,
    ensure_topic,
    topic_retention,
    topic_exists,
    partitions_of,
    message_at,
    messages_at,
)
from shared.messaging.relay import (
    RELAYED,
    RELAY_POSITION,
    message_headers,
    Relay,
)

__all__ = [
    "BATCH",
    "CONSUMED",
    "CONSUMER_LAG",
    "Handler",
    "IDLE_POLLS",
    "INBOX_PRUNED",
    "InboxConsumer",
    "PRUNE_CHUNK",
    "PRUNE_EVERY",
    "RELAYED",
    "RELAY_POSITION",
    "Relay",
    "Route",
    "TOPIC_CONFIG",
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
