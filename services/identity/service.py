"""How the identity service plugs into the kernel: routers, projections, consumers."""

from datetime import timedelta

from pydantic_settings import BaseSettings

import services.identity as package
from services.identity.api import router
from services.identity.api.internal import router as internal_router
from services.identity.app.clients import ClientPrincipals
from services.identity.app.credentials import CredentialStore
from services.identity.app.handlers import Identity
from services.identity.projections import (
    copy_department,
    departments_metadata,
    departments_seen,
    projections,
)
from shared.copies import TopicCopy
from shared.service import ConsumerSpec, ServiceRuntime, ServiceSpec


class IdentitySettings(BaseSettings):
    """Identity's own options (environment variables of the same name)."""

    # User groups (staff, admin, client) that may not log in, e.g. '["client"]'
    # while client accounts are being migrated.
    login_denied_groups: list[str] = []
    # Failed logins in a row that lock a login, and for how long.
    login_max_failures: int = 5
    login_lock_seconds: int = 15 * 60


async def start(runtime: ServiceRuntime) -> None:
    """Build the application services, learn departments from their topic, create admin."""
    assert runtime.store is not None and runtime.db is not None
    await runtime.db.create_tables(departments_metadata)
    options = IdentitySettings()
    identity = Identity(
        store=runtime.store,
        db=runtime.db,
        credentials=CredentialStore(runtime.db),
        access=runtime.access,
        settings=runtime.settings,
        denied_groups=frozenset(options.login_denied_groups),
        max_failures=options.login_max_failures,
        lock_for=timedelta(seconds=options.login_lock_seconds),
        wait_for_position=runtime.wait_for_position,
    )
    await identity.start()
    runtime.extensions["identity"] = identity
    runtime.extensions["client_principals"] = ClientPrincipals(identity)
    runtime.add_consumer(ConsumerSpec("departments", ["departments"], identity.on_department_event))


SPEC = ServiceSpec(
    name="identity",
    title="Identity service",
    description=package.__doc__ or "",
    routers=[router, internal_router],
    projections=projections,
    on_start=start,
    copies=(TopicCopy("departments_seen", ("departments",), (departments_seen,), copy_department),),
)
