"""The identity service's own options: environment variables of the same name.

The kernel's options (store, read models, broker, tokens) are
``shared.runtime.settings.ServiceSettings``; these are the ones only identity reads.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class IdentitySettings(BaseSettings):
    """Identity's own options (environment variables of the same name)."""

    # User groups (staff, admin, client) that may not log in, e.g. '["client"]'
    # while client accounts are being migrated.
    login_denied_groups: list[str] = []
    # Failed logins in a row that lock a login, and for how long.
    login_max_failures: int = 5
    login_lock_seconds: int = 15 * 60
    # Self-service passwords: how long a reset link works, and the page it opens
    # (the console's; it takes ``?token=`` and posts it to ``POST /auth/reset``).
    password_reset_seconds: int = Field(default=30 * 60, ge=1, le=7 * 24 * 3600)
    password_reset_url: str = "http://127.0.0.1:8000/reset"
    # A full-access member without a second factor logs in to a session that can
    # only set one up (403 ``second_factor_required`` elsewhere).
    otp_required_for_full_access: bool = False
