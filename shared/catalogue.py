"""The installed services, found through one catalogue: the entry points of pyproject.toml.

Rules it keeps:

* The kernel never names a service: every service declares itself under the
  entry-point group ``provider_backoffice.services`` (``name = "module:SPEC"``),
  and the operator commands, replays and developer tools find them here.
* Services are listed in the order of their ports (identity 8001 … notifier 8005),
  the order ``make run`` starts them and the order of every "all" command.
* Operator-command plugins (the analysts' commands) declare themselves under
  ``provider_backoffice.cli`` in the same way; the kernel's CLI calls each with
  itself so it can add its commands.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from shared.domain.events import EventRegistry
    from shared.projections.runner import Projection

SERVICES_GROUP = "provider_backoffice.services"
CLI_GROUP = "provider_backoffice.cli"


class ServiceEntry(Protocol):
    """What the catalogue reads of a service (``shared.runtime.ServiceSpec`` is one).

    A protocol, not the class: the catalogue sits below every layer of the kernel,
    so that replays and commands at any layer can find services through it.
    """

    @property
    def name(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def events(self) -> EventRegistry: ...
    def read_models(self) -> list[Projection]: ...


class UnknownService(LookupError):
    """A service name the catalogue does not hold; says which ones it does."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        super().__init__(f"unknown service {name!r}; one of {', '.join(known)}")
        self.name = name
        self.known = known


@functools.cache
def specs() -> dict[str, ServiceEntry]:
    """Every installed service's spec by name, in the order of their ports."""
    found: list[ServiceEntry] = [entry.load() for entry in entry_points(group=SERVICES_GROUP)]
    return {spec.name: spec for spec in sorted(found, key=lambda s: (s.port, s.name))}


def names() -> tuple[str, ...]:
    return tuple(specs())


def spec(name: str) -> ServiceEntry:
    try:
        return specs()[name]
    except KeyError:
        raise UnknownService(name, names()) from None


def default_ports() -> dict[str, int]:
    return {name: s.port for name, s in specs().items()}


def cli_plugins() -> list[Callable[[Any], None]]:
    """The functions that add commands to the operator CLI (``register(cli)``)."""
    return [entry.load() for entry in entry_points(group=CLI_GROUP)]
