"""Another service's answers, remembered for a few seconds: one bounded, time-limited memory.

A service that asks another the same question many times a second (the
console asking identity for ``/me``, the mail gateway asking clients who writes
from an address) keeps each answer a short while instead. ``Recent`` is that
memory, written once for every such use.

Rules it keeps:

* An answer is kept ``seconds`` from the moment it was *asked for* (not from
  when it arrived): the bound on how stale an answer can be is the caller's
  setting, whatever the other service's latency. ``seconds`` <= 0 keeps
  nothing (every call asks).
* ``None`` is an answer like any other (``answer`` keeps "nobody" too); a
  failed ask (an exception) keeps nothing.
* Forgetting: ``forget(key)`` drops one key's answer, ``forget_all()`` every
  answer. An answer asked for before a forget and arriving after it is not
  kept: it may predate what made the caller forget (a write, another context's
  fact). Each forget counts a generation, and an ask notes the generation it
  started in; a per-key forget leaves a mark (not a deletion) so that an
  answer already on its way for that key is recognised.
* Bounded: at most ``size`` keys (answers and forget marks), the oldest kept
  first to go. A forget mark that goes first raises the generation below
  which no answer is kept at all, so a bounded memory never lets an answer
  from before a forget back in (at worst it asks again).
* Per process, in memory: lost at a restart, never shared between replicas.
  Keys are whatever the caller chooses; a caller that must not keep a secret
  (a token) keys by its hash.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

SIZE = 10_000


class Asked(NamedTuple):
    """When an answer was asked for: the clock and the forget generation at that moment."""

    at: float
    generation: int


@dataclass(frozen=True, slots=True)
class _Forgotten:
    generation: int


@dataclass(frozen=True, slots=True)
class _Kept(Generic[V]):
    at: float
    answer: V


class Recent(Generic[K, V]):
    """Answers by key, each for ``seconds`` from the moment it was asked for."""

    def __init__(
        self, seconds: float, size: int = SIZE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds, self.size, self.clock = seconds, size, clock
        self._entries: OrderedDict[K, _Kept[V] | _Forgotten] = OrderedDict()
        self._generation = 0  # counts forgets
        self._floor = 0  # answers asked for before this generation are not kept

    def asked(self) -> Asked:
        """Note the moment an answer is asked for (pass it to ``put`` with the answer)."""
        return Asked(self.clock(), self._generation)

    def get(self, key: K) -> V | None:
        """The answer kept for ``key``, or None (never asked, too old, or forgotten).

        Where None is itself an answer, use ``answer``, which tells them apart."""
        kept = self._fresh(key)
        return None if kept is None else kept.answer

    def put(self, key: K, answer: V, asked: Asked) -> None:
        """Keep ``answer``, asked for at ``asked``, unless a forget came since."""
        if self.seconds <= 0 or asked.generation < self._floor:
            return
        found = self._entries.get(key)
        if isinstance(found, _Forgotten) and found.generation > asked.generation:
            return
        self._set(key, _Kept(asked.at, answer))

    async def answer(self, key: K, ask: Callable[[], Awaitable[V]]) -> V:
        """The answer kept for ``key``, else ``await ask()``, kept (see ``put``)."""
        kept = self._fresh(key)
        if kept is not None:
            return kept.answer
        asked = self.asked()
        found = await ask()  # raises: nothing kept
        self.put(key, found, asked)
        return found

    def forget(self, key: K) -> None:
        """Drop ``key``'s answer, and any answer for it asked for before now."""
        self._generation += 1
        # A mark, not a deletion: an answer asked for before now and on its way is not kept.
        self._set(key, _Forgotten(self._generation))

    def forget_all(self) -> None:
        """Drop every answer, and any answer asked for before now."""
        self._generation += 1
        self._floor = self._generation
        self._entries.clear()

    def keys(self) -> list[K]:
        """The keys kept (answers and forget marks), oldest first."""
        return list(self._entries)

    def _fresh(self, key: K) -> _Kept[V] | None:
        found = self._entries.get(key)
        if not isinstance(found, _Kept) or self.clock() - found.at >= self.seconds:
            return None
        return found

    def _set(self, key: K, entry: _Kept[V] | _Forgotten) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            _, dropped = self._entries.popitem(last=False)
            if isinstance(dropped, _Forgotten):
                # Its key may have an answer on its way from before the forget.
                self._floor = max(self._floor, dropped.generation)
