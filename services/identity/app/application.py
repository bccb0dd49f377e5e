"""What the identity service's composition root builds: its application objects, typed.

``service.py`` makes one at start (``ServiceSpec.compose``); routers reach its
parts through ``api/deps.py``. Nothing else holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.identity.app.clients import ClientPrincipals
from services.identity.app.handlers import Identity
from services.identity.app.second_factor import SecondFactors
from services.identity.app.self_service import PasswordResets


@dataclass(frozen=True)
class IdentityApplication:
    identity: Identity
    client_principals: ClientPrincipals
    password_resets: PasswordResets
    second_factors: SecondFactors
