"""The client principal aggregate: registration, access changes, erasure."""

from __future__ import annotations

import pytest

from services.identity.domain.client_principal import ClientPrincipal
from services.identity.domain.events import ClientPrincipalRegistered, ClientPrincipalRemoved
from shared.access.control import ClientAccessChanged
from shared.domain.aggregate import Conflict, DomainError, NotFound


def registered() -> ClientPrincipal:
    principal = ClientPrincipal()
    return principal.applied(principal.register("c-1", "client.one@example.com"))


def test_registration_publishes_access_without_the_login() -> None:
    events = ClientPrincipal().register("c-1", "client.one@example.com")
    assert [type(e) for e in events] == [ClientPrincipalRegistered, ClientAccessChanged]
    assert "client.one" not in str([e.model_dump() for e in events])
    principal = registered()
    assert principal.may_log_in and principal.version == 2
    with pytest.raises(Conflict) as again:
        principal.register("c-1", "other")
    assert again.value.code == "duplicate_principal"
    with pytest.raises(DomainError) as spaced:
        ClientPrincipal().register("c-2", "two words")
    assert spaced.value.field == "login"


def test_a_change_is_a_new_access_fact_only_when_something_differs() -> None:
    principal = registered()
    assert principal.change(disabled=False) == []
    [fact] = principal.change(company_id="co-1", company_manager=True)
    assert isinstance(fact, ClientAccessChanged)
    principal.applied([fact])
    assert (principal.company_id, principal.company_manager, principal.disabled) == (
        "co-1",
        True,
        False,
    )
    [fact] = principal.change(disabled=True)  # the company stays as it was
    principal.applied([fact])
    assert principal.disabled and principal.company_id == "co-1" and not principal.may_log_in
    with pytest.raises(Conflict):
        principal.check_impersonable()
    [fact] = principal.change(company_id=None)
    assert isinstance(fact, ClientAccessChanged) and fact.company_id is None


def test_erasure_disables_for_good_and_repeats_harmlessly() -> None:
    principal = registered()
    events = principal.remove()
    assert [type(e) for e in events] == [ClientPrincipalRemoved, ClientAccessChanged]
    principal.applied(events)
    assert principal.removed and not principal.may_log_in
    assert principal.remove() == []
    with pytest.raises(NotFound):
        principal.change(disabled=False)
    with pytest.raises(NotFound):
        ClientPrincipal().remove()
