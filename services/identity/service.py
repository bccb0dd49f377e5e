"""How the identity service plugs into the kernel: routers, projections, consumers."""

from datetime import timedelta

import services.identity as package
from services.identity.api import router
from services.identity.api.internal import router as internal_router
from services.identity.app.application import IdentityApplication
from services.identity.app.clients import ClientPrincipals
from services.identity.app.credentials import CredentialStore
from services.identity.app.handlers import Identity
from services.identity.app.second_factor import SecondFactors
from services.identity.app.self_service import PasswordResets
from services.identity.copies.departments import (
    copy_department,
    departments_metadata,
    departments_seen,
)
from services.identity.domain import events
from services.identity.projections import projections
from services.identity.settings import IdentitySettings
from shared.messaging.copies import TopicCopy
from shared.privacy.shredding import KeyRing
from shared.runtime.service import ConsumerSpec, ServiceRuntime, ServiceSpec


async def compose(runtime: ServiceRuntime) -> IdentityApplication:
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
    runtime.add_consumer(ConsumerSpec("departments", ["departments"], identity.on_department_event))
    principals = ClientPrincipals(identity)
    resets = PasswordResets(
        identity,
        principals,
        url=options.password_reset_url,
        lifetime=timedelta(seconds=options.password_reset_seconds),
    )
    await resets.create_tables()
    second_factors = SecondFactors(identity, KeyRing(runtime.db))
    await second_factors.create_tables()
    identity.second_factor = second_factors.accept
    identity.otp_required_for_full_access = options.otp_required_for_full_access
    return IdentityApplication(
        identity=identity,
        client_principals=principals,
        password_resets=resets,
        second_factors=second_factors,
    )


SPEC = ServiceSpec(
    name="identity",
    port=8001,
    events=events.registry,
    title="Identity service",
    description=package.__doc__ or "",
    routers=[router, internal_router],
    projections=projections,
    compose=compose,
    copies=(TopicCopy("departments_seen", ("departments",), (departments_seen,), copy_department),),
    # Identity alone holds IDENTITY_SIGNING_KEY: user tokens, and its relay signs its facts.
    signs_identity_facts=True,
)
