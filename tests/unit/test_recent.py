"""The kernel's memory of other services' answers (``shared.application.recent``): kept for
its seconds from the moment asked, bounded, forgotten per key or all at once, and never
keeping an answer asked for before a forget (the console's ``/me`` and the mail
gateway's senders both rest on it)."""

from __future__ import annotations

import asyncio

import pytest

from shared.application.recent import Recent


class Clock:
    """A clock the test moves (the seconds without waiting for them)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_lasts_its_seconds_from_when_it_was_asked_for() -> None:
    clock = Clock()
    recent: Recent[str, dict[str, int]] = Recent(5, clock=clock)
    asked = recent.asked()
    clock.now += 1  # the answer took a second to come
    recent.put("a", {"n": 1}, asked)
    clock.now += 3.9
    assert recent.get("a") == {"n": 1}
    clock.now += 0.1  # five seconds after it was asked for, not after it was kept
    assert recent.get("a") is None


def test_a_key_forgotten_while_its_answer_was_on_its_way_keeps_no_older_answer() -> None:
    clock = Clock()
    recent: Recent[str, int] = Recent(5, clock=clock)
    recent.put("a", 1, recent.asked())
    before, other = recent.asked(), recent.asked()
    recent.forget("a")  # a write, while answers asked before it are on their way
    assert recent.get("a") is None
    recent.put("a", 2, before)
    assert recent.get("a") is None
    recent.put("b", 20, other)  # another key is not concerned
    assert recent.get("b") == 20
    recent.put("a", 3, recent.asked())  # asked for after the forget: kept
    assert recent.get("a") == 3


def test_forget_all_drops_every_answer_and_every_answer_on_its_way() -> None:
    recent: Recent[str, int | None] = Recent(60)
    recent.put("a", 1, recent.asked())
    recent.put("b", None, recent.asked())
    on_its_way = recent.asked()
    recent.forget_all()
    assert (recent.get("a"), recent.keys()) == (None, [])
    recent.put("c", 3, on_its_way)
    assert recent.get("c") is None
    recent.put("c", 4, recent.asked())
    assert recent.get("c") == 4


def test_at_most_size_keys_the_oldest_first_and_a_dropped_forget_still_holds() -> None:
    recent: Recent[str, int] = Recent(60, size=2)
    recent.put("a", 1, recent.asked())
    recent.put("b", 2, recent.asked())
    recent.put("c", 3, recent.asked())
    assert (recent.get("a"), recent.get("b"), recent.get("c")) == (None, 2, 3)
    # A forget mark pushed out by newer keys: an answer asked for before it is still refused.
    on_its_way = recent.asked()
    recent.forget("x")
    recent.put("y", 25, recent.asked())
    recent.put("z", 26, recent.asked())
    assert recent.keys() == ["y", "z"]  # the mark for "x" went first
    recent.put("x", 24, on_its_way)
    assert recent.get("x") is None
    recent.put("x", 27, recent.asked())
    assert recent.get("x") == 27


async def test_answer_asks_once_keeps_none_and_keeps_nothing_from_a_failure() -> None:
    asked: list[str] = []

    async def nobody() -> int | None:
        asked.append("nobody")
        return None

    async def failing() -> int | None:
        asked.append("failing")
        raise ConnectionError("down")

    recent: Recent[str, int | None] = Recent(60)
    assert await recent.answer("n", nobody) is None
    assert await recent.answer("n", nobody) is None  # "nobody" is an answer, kept
    with pytest.raises(ConnectionError):
        await recent.answer("f", failing)
    with pytest.raises(ConnectionError):
        await recent.answer("f", failing)
    assert asked == ["nobody", "failing", "failing"]

    never: Recent[str, int | None] = Recent(0)  # zero seconds: every call asks
    await never.answer("n", nobody)
    await never.answer("n", nobody)
    assert (asked[-2:], never.keys()) == (["nobody", "nobody"], [])


async def test_an_answer_overtaken_by_a_forget_is_returned_but_not_kept() -> None:
    gate, started = asyncio.Event(), asyncio.Event()
    answers = iter([1, 2])

    async def slow() -> int:
        started.set()
        await gate.wait()
        return next(answers)

    recent: Recent[str, int] = Recent(60)
    lookup = asyncio.create_task(recent.answer("a", slow))
    await started.wait()
    recent.forget("a")
    gate.set()
    assert await lookup == 1  # the caller gets what was answered
    assert await recent.answer("a", slow) == 2  # but it was not kept
