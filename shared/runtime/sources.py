"""Where each service's event store and read-model (keys) database are.

Rules it keeps: an explicit URL wins, then ``<SERVICE>_EVENT_STORE_URL`` /
``<SERVICE>_READ_MODEL_URL``, then what the service itself would use
(``ServiceSettings``: ``EVENT_STORE_URL``/``READ_MODEL_URL`` or the SQLite files
under ``VAR_DIR``). Used by the operator commands and the analysts' tools alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.runtime.settings import ServiceSettings


@dataclass(frozen=True)
class Source:
    """One context's event store and keys database."""

    context: str
    store_url: str
    keys_url: str


def resolve(
    contexts: Sequence[str],
    store_urls: Mapping[str, str] | None = None,
    keys_urls: Mapping[str, str] | None = None,
) -> list[Source]:
    """Where each context's store and keys are (see the module docstring for the order)."""
    sources = []
    for context in contexts:
        settings = ServiceSettings().resolved(context)
        prefix = context.upper()
        store = (store_urls or {}).get(context) or os.environ.get(f"{prefix}_EVENT_STORE_URL")
        keys = (keys_urls or {}).get(context) or os.environ.get(f"{prefix}_READ_MODEL_URL")
        sources.append(
            Source(
                context=context,
                store_url=store or settings.event_store_url,
                keys_url=keys or settings.read_model_url,
            )
        )
    return sources
