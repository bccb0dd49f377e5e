"""The gateway's remembered senders: kept for their time, forgotten on clients' facts (and
asked again as of the fact), never kept from a lookup that a fact overtook, nor from a
failed one. The memory under it is the kernel's ``Recent`` (tests/unit/test_recent.py)."""

from __future__ import annotations

import asyncio

import pytest

from services.tickets.app.senders import RememberedSenders


class Directory:
    """The clients service's answer to "who writes from this address", counting calls."""

    def __init__(self, owners: dict[str, str]) -> None:
        self.owners = owners
        self.calls: list[str] = []
        self.positions: list[int] = []  # the min_position of each call
        self.gate: asyncio.Event | None = None  # set: lookups wait for it
        self.failing = False
        self.asked = asyncio.Event()

    async def client_of(self, email: str, min_position: int = 0) -> str | None:
        self.calls.append(email)
        self.positions.append(min_position)
        self.asked.set()
        answer = self.owners.get(email)  # read when asked, as the service answers
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise ConnectionError("clients is down")
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_answer_is_kept_for_its_seconds_then_asked_again() -> None:
    directory, clock = Directory({"a@x.example": "client-a"}), Clock()
    senders = RememberedSenders(directory, seconds=60, clock=clock)
    assert await senders.client_of("a@x.example") == "client-a"
    assert await senders.client_of("nobody@x.example") is None
    clock.now += 59
    assert await senders.client_of("a@x.example") == "client-a"
    assert await senders.client_of("nobody@x.example") is None  # "nobody" is kept too
    assert directory.calls == ["a@x.example", "nobody@x.example"]
    directory.owners["a@x.example"] = "client-b"
    clock.now += 2
    assert await senders.client_of("a@x.example") == "client-b"
    assert directory.calls == ["a@x.example", "nobody@x.example", "a@x.example"]


@pytest.mark.parametrize(
    ("event_type", "data", "forgets"),
    [
        ("ClientChanged", {"client_id": "a", "changed": ["email"]}, True),
        ("ClientChanged", {"client_id": "a", "changed": ["phone", "note"]}, False),
        ("ClientChanged", {"client_id": "a", "changed": None}, True),
        ("ClientRegistered", {"client_id": "n"}, True),
        ("ClientErased", {"client_id": "a"}, True),
        ("ContactAdded", {"contact_id": "c"}, True),
        ("ContactChanged", {"contact_id": "c", "changed": ["name"]}, False),
        ("ContactChanged", {"contact_id": "c", "changed": ["email"]}, True),
        ("CompanyMemberRemoved", {"company_id": "co"}, True),
        ("PenaltyPointsAdded", {"client_id": "a"}, False),
    ],
)
async def test_a_fact_that_can_change_an_address_forgets_every_answer(
    event_type: str, data: dict[str, object], forgets: bool
) -> None:
    directory = Directory({"a@x.example": "client-a"})
    senders = RememberedSenders(directory, seconds=3600)
    await senders.client_of("a@x.example")
    directory.owners["a@x.example"] = "client-b"
    senders.on_clients_fact(event_type, data, 42)
    assert await senders.client_of("a@x.example") == ("client-b" if forgets else "client-a")
    # Asked again as of the fact: the clients service's read model may trail its log.
    assert directory.positions == ([0, 42] if forgets else [0])
    senders.on_clients_fact("ClientErased", {"client_id": "x"}, 7)  # an older position
    await senders.client_of("a@x.example")
    assert directory.positions[-1] == (42 if forgets else 7)


async def test_a_lookup_overtaken_by_a_fact_is_not_kept() -> None:
    directory = Directory({"a@x.example": "client-a"})
    senders = RememberedSenders(directory, seconds=3600)
    directory.gate = asyncio.Event()
    lookup = asyncio.create_task(senders.client_of("a@x.example"))
    await directory.asked.wait()
    # The e-mail moves to another client while the answer from before is on its way.
    directory.owners["a@x.example"] = "client-b"
    senders.on_clients_fact("ClientChanged", {"client_id": "a", "changed": ["email"]}, 9)
    directory.gate.set()
    assert await lookup == "client-a"  # this mail was routed with what the service said
    assert await senders.client_of("a@x.example") == "client-b"  # but it was not kept


async def test_a_failed_lookup_is_not_kept_and_zero_seconds_asks_every_time() -> None:
    directory = Directory({"a@x.example": "client-a"})
    senders = RememberedSenders(directory, seconds=60)
    directory.failing = True
    with pytest.raises(ConnectionError):
        await senders.client_of("a@x.example")
    directory.failing = False
    assert await senders.client_of("a@x.example") == "client-a"
    assert len(directory.calls) == 2

    asking = RememberedSenders(directory, seconds=0)
    await asking.client_of("a@x.example")
    await asking.client_of("a@x.example")
    assert len(directory.calls) == 4


async def test_at_most_size_addresses_are_kept_the_oldest_going_first() -> None:
    directory = Directory({})
    senders = RememberedSenders(directory, seconds=60, size=2)
    for address in ("1@x.example", "2@x.example", "3@x.example"):
        await senders.client_of(address)
    await senders.client_of("3@x.example")
    await senders.client_of("2@x.example")
    assert len(directory.calls) == 3  # 2 and 3 kept
    await senders.client_of("1@x.example")  # asked again: it went first
    assert len(directory.calls) == 4
