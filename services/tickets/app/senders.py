"""Who writes from an address, remembered for a short while (the mail gateway's sender lookup).

The clients service answers who writes from an address (``Senders``: its
internal API over HTTP). Asked for every mail, that call and the clients
service's own work were most of a mail's cost, so ``RememberedSenders``
keeps the answers (a client's id, or "nobody") in this process.

Rules it keeps:

* an answer is kept at most ``seconds`` (``INBOUND_SENDER_CACHE_SECONDS``,
  60 by default; 0 asks the clients service for every mail): the bound on how
  long a changed address can still route to its former owner when nothing
  else tells this process of the change;
* every clients' fact that can change who writes from an address
  (``CHANGES_SENDERS``: a client registered, erased, or whose e-mail changed;
  a company contact added, changed or removed; company membership) forgets
  everything at once, as this process's consumer of ``clients.events`` takes
  it. The facts carry the address sealed, so they say *that* an address
  changed, not which one: all is forgotten, which is cheap (such facts are
  rare beside mails). With several replicas, the consumer group gives each
  replica only some partitions of the topic: the others keep their answers
  until ``seconds`` pass, which is why the bound above exists;
* an answer fetched while a fact came in is not kept: the clients service may
  have answered from before the change (the kernel's ``Recent`` keeps this,
  and the time limit and the bound below, once for every such memory);
* after a fact, every lookup asks the clients service for an answer as of that
  fact at least (``min_position``, its position in the clients' log): its read
  model may still be behind its own fact when this process already has it, and
  an answer from before the change would otherwise be kept again;
* "nobody" is kept too (an unknown sender's next mail needs no call), and
  forgotten the same way: a client registering with the address ends it;
* a failed lookup is not kept (the mail is tried again: 451);
* at most ``size`` addresses are kept; the oldest go first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from shared.application.recent import Recent

# The clients' facts after which an address may belong to someone else (docs/events).
CHANGES_SENDERS = frozenset(
    {
        "ClientRegistered",
        "ClientErased",
        "ContactAdded",
        "ContactRemoved",
        "CompanyMemberAdded",
        "CompanyMemberRemoved",
        "CompanyDeleted",
    }
)
# Changed facts that change an address only when ``changed`` names it.
CHANGES_SENDERS_IF_EMAIL = frozenset({"ClientChanged", "ContactChanged"})


class Senders(Protocol):
    async def client_of(self, email: str) -> str | None:
        """The client who writes from ``email`` (None: nobody known)."""
        ...


class SenderDirectory(Protocol):
    async def client_of(self, email: str, min_position: int = 0) -> str | None:
        """``Senders.client_of`` as of the clients' log position ``min_position`` at least."""
        ...


class RememberedSenders:
    """``Senders`` whose answers are kept for ``seconds`` and forgotten on clients' facts."""

    def __init__(
        self,
        senders: SenderDirectory,
        seconds: float = 60.0,
        size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.senders = senders
        self.seconds = seconds
        self._known: Recent[str, str | None] = Recent(seconds, size, clock)
        self._after = 0  # the clients' log position of the last fact that forgot all

    def __repr__(self) -> str:
        return f"RememberedSenders({self.senders!r}, {self.seconds}s)"

    async def client_of(self, email: str) -> str | None:
        # ``_after`` is read when the lookup starts: a fact coming in meanwhile
        # makes ``Recent`` drop the answer, and the next lookup asks as of it.
        return await self._known.answer(email, lambda: self.senders.client_of(email, self._after))

    def forget(self, position: int = 0) -> None:
        """Every answer kept, and any lookup under way, is not to be believed any more;
        answers from now on are as of ``position`` of the clients' log at least."""
        self._known.forget_all()
        self._after = max(self._after, position)

    def on_clients_fact(self, event_type: str, data: dict[str, Any], position: int) -> None:
        """A fact of ``clients.events`` (at ``position`` of the clients' log): forget all
        if it can change who writes from an address."""
        changed = data.get("changed")  # None: every field given
        if event_type in CHANGES_SENDERS or (
            event_type in CHANGES_SENDERS_IF_EMAIL and (changed is None or "email" in changed)
        ):
            self.forget(position)
