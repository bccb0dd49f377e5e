"""Optional modules that libraries look for on every call, settled once per process.

Rules it keeps:

* httpcore (under httpx: the services' calls to each other, and tests) runs
  ``import sniffio`` in ``current_async_library`` at each pool operation, four
  times a request. When the module is not installed, Python does not remember a
  failed import, so each one searched every folder of ``sys.path`` again (stat
  calls): about 0.25 ms of client CPU per request, a fifth of httpx's own work.
  (The console calls the services through aiohttp, which imports nothing per
  call, so it does not need this.)
* For each name in ``LOOKED_FOR`` that is not installed, ``remember_absent``
  puts ``None`` in ``sys.modules``: the import system's own mark for "no such
  module", so the next ``import`` fails at once with the same
  ``ModuleNotFoundError`` and the library takes the branch it took before.
* A module that is installed is left alone (imported as usual, when asked for).
"""

from __future__ import annotations

import importlib.util
import sys

LOOKED_FOR = ("sniffio",)


def remember_absent(names: tuple[str, ...] = LOOKED_FOR) -> tuple[str, ...]:
    """Mark the names that are not installed as absent; those it marked."""
    marked: list[str] = []
    for name in names:
        if name in sys.modules:
            continue  # imported already, or marked
        if importlib.util.find_spec(name) is None:
            sys.modules[name] = None  # type: ignore[assignment]
            marked.append(name)
    return tuple(marked)
