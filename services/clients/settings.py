"""The clients service's own options: environment variables of the same name.

The kernel's options (store, read models, broker, tokens) are
``shared.runtime.settings.ServiceSettings``; these are the ones only clients reads.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings


class ClientsSettings(BaseSettings):
    """The clients service's own options (environment variables of the same name)."""

    # Identity's base URL: client credentials and impersonation go there.
    identity_url: str = "http://127.0.0.1:8001"
