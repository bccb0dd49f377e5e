"""Every name the kernel persists or shares with the broker, built in one place.

Topics, consumer groups, checkpoints, leases and markers outlive a release: a
renamed one is a lost offset or a read model replayed from zero. So each is
built here, once, and nowhere else. Imports nothing.
"""

from __future__ import annotations


def topic_of(context: str, prefix: str = "") -> str:
    """``tickets`` → ``tickets.events`` (one topic per context, DESIGN §5)."""
    return f"{prefix}{context}.events"


def relay_checkpoint(topic: str) -> str:
    """Where a relay records the last position the broker acknowledged."""
    return f"relay:{topic}"


def inbound_group(service: str, prefix: str) -> str:
    """The consumer group of a service's subscriptions (``ServiceRuntime.add_consumer``)."""
    return f"{prefix}{service}.inbound"


def refill_lease(service: str) -> str:
    """The lease a refill holds and a starting service's consumer waits for."""
    return f"refill:{service}"


def refill_marks(copy: str) -> str:
    """Where a refill of one copy records the offsets it filled up to."""
    return f"refill:{copy}"


def checkpoint_name(projection_name: str) -> str:
    """The name a projection's checkpoint is stored under."""
    return f"projection:{projection_name}"


def partition_checkpoint_name(projection_name: str, first: int, end: int) -> str:
    """Where the process of a rebuild split by stream that reads the streams of
    buckets [first, end) records its progress."""
    return f"{checkpoint_name(projection_name)}#{first}-{end}"


def unfinished_rebuild_name(projection_name: str) -> str:
    """A row present while a rebuild split by stream is under way (``replay``)."""
    return f"rebuilding:{projection_name}"
