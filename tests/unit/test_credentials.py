"""Identity's credential checks (issue 17, part 4): argon2 runs in its bounded pool of
``ARGON2_THREADS`` threads, never on the event loop, and an unknown login is checked
against a decoy hash exactly as a known one is against its own."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, cast

import pytest
from argon2 import PasswordHasher

from services.identity.app.credentials import Credential, CredentialStore
from shared.readmodel.database import ReadModelDB


class RecordingHasher(PasswordHasher):
    """argon2 at its cheapest, noting the thread of every verification and the most at once."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.threads: list[str] = []
        self.verified: list[str] = []
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.append(threading.current_thread().name)
            self.verified.append(str(hash))
        try:
            time.sleep(0.02)  # long enough for the checks started together to overlap
            return super().verify(hash, password)
        finally:
            with self._lock:
                self.running -= 1


async def test_argon2_runs_in_its_bounded_pool_and_an_unknown_login_costs_a_verification(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ARGON2_THREADS", "2")
    hasher = RecordingHasher()
    # The database is not touched by checking a password.
    store = CredentialStore(cast(ReadModelDB, None), hasher)
    try:
        known = Credential("s-1", "staff", hasher.hash("the-right-password"))
        checks: list[Any] = [store.matches(known, "a-wrong-password") for _ in range(4)]
        checks += [store.matches(None, "a-wrong-password") for _ in range(4)]
        checks.append(store.matches(known, "the-right-password"))
        results = await asyncio.gather(*checks)
    finally:
        store.close()
    assert results == [False] * 8 + [True]
    loop_thread = threading.current_thread().name
    assert hasher.threads and all(t.startswith("argon2") for t in hasher.threads), hasher.threads
    assert loop_thread not in hasher.threads
    assert len(set(hasher.threads)) <= 2 and hasher.most <= 2, (hasher.threads, hasher.most)
    # Every check verified once: the unknown logins against the decoy, not skipped.
    assert len(hasher.verified) == 9
    assert sum(h != known.hash for h in hasher.verified) == 4
