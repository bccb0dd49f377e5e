"""The tickets service's own options: environment variables of the same name.

The kernel's options (store, read models, broker, tokens) are
``shared.runtime.settings.ServiceSettings``; these are the ones only tickets reads.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings


class TicketsSettings(BaseSettings):
    """The tickets service's own options (environment variables of the same name)."""

    # Business hours within which a department promises a response (its expected
    # response time: counted by the department's schedule, round the clock without one).
    support_response_hours: float = 4.0
    # The clients service: %client_person% of response templates is read there.
    clients_url: str = "http://127.0.0.1:8004"
