"""The test run's keys: one set, generated once per run, as ``make run`` does.

``tests/conftest.py`` points ``KEYS_DIR`` here before any service is made, so every
service a test starts finds identity's public key and its own key in the same set
(``shared.runtime.settings``), and tests sign what a real service would:

* ``identity_key()`` – what identity signs user tokens and facts with;
* ``service_key(name)`` – a service's own key (its service tokens, rating links);
* ``user_token(...)`` – a staff or client token as identity issues it.
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.access.control import PrincipalKind, issue_token
from shared.access.keys import ensure_keys, identity_key_path, load_private_key, service_key_path

SERVICES = ("identity", "departments", "tickets", "clients", "notifier")


def keys_dir() -> Path:
    """The run's keys directory, made (with its keys) on first use."""
    configured = os.environ.get("KEYS_DIR")
    if configured:
        directory = Path(configured)
    else:
        directory = Path(tempfile.mkdtemp(prefix="test-keys-"))
        os.environ["KEYS_DIR"] = str(directory)
    ensure_keys(directory, SERVICES)
    return directory


def identity_key() -> Ed25519PrivateKey:
    return load_private_key(str(identity_key_path(keys_dir())), "test identity key")


def service_key(name: str) -> Ed25519PrivateKey:
    ensure_keys(keys_dir(), [name])
    return load_private_key(str(service_key_path(keys_dir(), name)), f"test key of {name}")


def user_token(
    principal_id: str,
    kind: PrincipalKind = "staff",
    session_id: str = "sess-1",
    lifetime: timedelta = timedelta(minutes=5),
    **claims: str | None,
) -> str:
    """A token identity would issue for this session."""
    return issue_token(
        identity_key(),
        principal_id=principal_id,
        kind=kind,
        session_id=session_id,
        lifetime=lifetime,
        impersonator_id=claims.get("impersonator_id"),
        bound_ip=claims.get("bound_ip"),
    )
