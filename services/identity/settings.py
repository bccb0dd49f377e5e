"""The identity service's own options: environment variables of the same name.

The kernel's options (store, read models, broker, tokens) are
``shared.runtime.settings.ServiceSettings``; these are the ones only identity reads.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings


class IdentitySettings(BaseSettings):
    """Identity's own options (environment variables of the same name)."""

    # User groups (staff, admin, client) that may not log in, e.g. '["client"]'
    # while client accounts are being migrated.
    login_denied_groups: list[str] = []
    # Failed logins in a row that lock a login, and for how long.
    login_max_failures: int = 5
    login_lock_seconds: int = 15 * 60
