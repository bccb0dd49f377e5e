"""The authorizer: tokens, ended sessions, disabled accounts, IP policy, bound sessions, rights."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.access.control import (
    SETUP_SECOND_FACTOR,
    AccessCopy,
    Authorizer,
    Denied,
    IpPolicy,
    SessionEnded,
    StaffAccessChanged,
    issue_token,
)
from shared.access.keys import public_pem

# Identity's key pair (user tokens); OTHER stands for any key that is not identity's.
KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()


def staff(
    staff_id: str = "s-1",
    rights: list[str] | None = None,
    *,
    full_access: bool = False,
    disabled: bool = False,
    allowed: list[str] | None = None,
    bind: bool = False,
) -> StaffAccessChanged:
    return StaffAccessChanged(
        staff_id=staff_id,
        login=f"login-{staff_id}",
        disabled=disabled,
        full_access=full_access,
        rights=rights or [],
        departments=["d-1"],
        ip_policy=IpPolicy(mode="list", allowed=allowed) if allowed else IpPolicy(),
        bind_session_to_ip=bind,
    )


def authorizer(*events: StaffAccessChanged | SessionEnded) -> Authorizer:
    copy = AccessCopy()
    copy.apply_all(events)
    return Authorizer(KEY.public_key(), copy)


def token(staff_id: str = "s-1", session: str = "sess-1", **kwargs: object) -> str:
    return issue_token(
        KEY,
        principal_id=staff_id,
        kind="staff",
        session_id=session,
        lifetime=timedelta(minutes=15),
        **kwargs,  # type: ignore[arg-type]
    )


def denied(call: object) -> tuple[int, str]:
    with pytest.raises(Denied) as caught:
        assert callable(call)
        call()
    return caught.value.status, caught.value.code


def test_a_right_is_granted_or_refused() -> None:
    auth = authorizer(staff(rights=["tickets.reply"]))
    principal = auth.authorize(token(), "10.0.0.1", "tickets.reply")
    assert (principal.id, principal.kind, principal.session_id) == ("s-1", "staff", "sess-1")
    assert denied(lambda: auth.authorize(token(), "10.0.0.1", "tickets.transfer")) == (
        403,
        "forbidden",
    )


def test_full_access_has_every_right() -> None:
    auth = authorizer(staff(full_access=True))
    assert auth.authorize(token(), None, "finance.invoices").id == "s-1"
    assert auth.allowed("s-1", "anything.at_all")


def test_a_token_accepted_once_is_refused_when_it_expires() -> None:
    """Verified tokens are remembered; expiry is still checked on every use."""
    auth = authorizer(staff(rights=["clients"]))
    short = token(now=datetime.now(UTC) - timedelta(minutes=15) + timedelta(seconds=2))
    assert auth.authorize(short, None, "clients").id == "s-1"
    time.sleep(2.1)
    assert denied(lambda: auth.authorize(short, None, "clients")) == (401, "invalid_token")


def test_missing_forged_expired_and_wrong_kind_tokens_are_401() -> None:
    auth = authorizer(staff(rights=["clients"]))
    assert denied(lambda: auth.authorize(None, None, "clients")) == (401, "unauthorized")
    forged = issue_token(
        OTHER,  # signed with another key than identity's
        principal_id="s-1",
        kind="staff",
        session_id="x",
        lifetime=timedelta(minutes=5),
    )
    assert denied(lambda: auth.authorize(forged, None, "clients")) == (401, "invalid_token")
    expired = token(now=datetime.now(UTC) - timedelta(hours=1))
    assert denied(lambda: auth.authorize(expired, None, "clients")) == (401, "invalid_token")
    odd = jwt.encode({"sub": "s-1", "sid": "x", "exp": 2**40, "knd": "robot"}, KEY, "EdDSA")
    assert denied(lambda: auth.authorize(odd, None, "clients")) == (401, "invalid_token")
    as_client = issue_token(
        KEY, principal_id="s-1", kind="client", session_id="x", lifetime=timedelta(minutes=5)
    )
    assert denied(lambda: auth.authorize(as_client, None, None)) == (401, "unknown_principal")


def test_an_ended_session_and_a_disabled_account_are_401() -> None:
    auth = authorizer(
        staff("s-1", ["clients"]),
        staff("s-2", ["clients"], disabled=True),
        SessionEnded(session_id="gone", principal_id="s-1", reason="logout"),
    )
    assert denied(lambda: auth.authorize(token(session="gone"), None, None)) == (
        401,
        "session_ended",
    )
    assert auth.authorize(token(session="other"), None, None).id == "s-1"
    assert denied(lambda: auth.authorize(token("s-2"), None, None)) == (401, "principal_disabled")
    assert not auth.allowed("s-2", "clients")


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("10.1.2.3", True),  # inside 10.0.0.0/8
        ("192.168.5.77", True),  # the single address
        ("192.168.5.78", False),
        ("2001:db8::1", True),  # inside 2001:db8::/32
        ("2001:db9::1", False),
        ("::1", False),
        ("not-an-ip", False),
        (None, False),
    ],
)
def test_ip_allow_list_with_ipv4_ipv6_and_cidr(address: str | None, ok: bool) -> None:
    auth = authorizer(
        staff(rights=["clients"], allowed=["10.0.0.0/8", "192.168.5.77", "2001:db8::/32"])
    )
    if ok:
        assert auth.authorize(token(), address, "clients").id == "s-1"
    else:
        assert denied(lambda: auth.authorize(token(), address, "clients")) == (
            403,
            "ip_not_allowed",
        )


def test_a_session_bound_to_the_login_address_refuses_another() -> None:
    auth = authorizer(staff(rights=["clients"], bind=True))
    bound = token(bound_ip="203.0.113.9")
    assert auth.authorize(bound, "203.0.113.9", "clients").id == "s-1"
    assert denied(lambda: auth.authorize(bound, "203.0.113.10", "clients")) == (
        401,
        "session_ip_mismatch",
    )


def test_impersonation_is_carried_in_the_token() -> None:
    auth = authorizer(staff(rights=["clients"]))
    assert auth.authorize(token(impersonator_id="s-9"), None, None).impersonator_id == "s-9"


def test_a_later_access_event_replaces_the_earlier_one() -> None:
    copy = AccessCopy()
    copy.apply_all([staff(rights=["clients", "tickets.reply"]), staff(rights=["clients"])])
    auth = Authorizer(KEY.public_key(), copy)
    assert auth.allowed("s-1", "clients") and not auth.allowed("s-1", "tickets.reply")


def test_a_fact_arriving_after_a_newer_one_of_the_same_principal_is_ignored() -> None:
    """Identity applies its own fact at once; the topic brings the older ones back later."""
    copy = AccessCopy()
    copy.apply(staff(rights=["clients", "tickets.reply"]), version=3)
    copy.apply(staff(rights=["clients"]), version=5)  # tickets.reply revoked
    copy.apply(staff(rights=["clients", "tickets.reply"]), version=3)  # late, from the topic
    copy.apply(staff(rights=["clients"]), version=5)  # the same fact again: harmless
    auth = Authorizer(KEY.public_key(), copy)
    assert auth.allowed("s-1", "clients") and not auth.allowed("s-1", "tickets.reply")
    copy.apply(staff("s-2", rights=["clients"]), version=1)  # versions are per principal
    assert auth.allowed("s-2", "clients")


def test_a_session_limited_to_the_second_factor_setup_passes_only_where_it_is_named() -> None:
    auth = authorizer(staff(full_access=True))
    limited = token(scope=SETUP_SECOND_FACTOR)
    assert denied(lambda: auth.authorize(limited, None, None)) == (403, "second_factor_required")
    assert denied(lambda: auth.authorize(limited, None, "clients")) == (
        403,
        "second_factor_required",
    )
    principal = auth.authorize(limited, None, None, SETUP_SECOND_FACTOR)
    assert (principal.id, principal.scope) == ("s-1", SETUP_SECOND_FACTOR)
    # A full session passes a route that also takes the limited one.
    assert auth.authorize(token(session="sess-2"), None, None, SETUP_SECOND_FACTOR).scope is None


def test_tokens_of_the_old_shared_secret_and_of_other_algorithms_are_401() -> None:
    """HS256 with the JWT_SECRET of old, HS256 keyed with identity's public key (the
    algorithm-confusion forgery), and unsigned tokens: all refused."""
    auth = authorizer(staff(full_access=True))
    claims = {"sub": "s-1", "knd": "staff", "sid": "x", "exp": 2**40}
    old_secret = jwt.encode(claims, "the-old-jwt-secret-" * 3, "HS256")
    confused = _hs256(claims, public_pem(KEY.public_key()))  # the public key, known to all
    unsigned = jwt.encode(claims, None, "none")
    for forged in (old_secret, confused, unsigned):
        assert denied(lambda t=forged: auth.authorize(t, None, None)) == (401, "invalid_token")
    assert auth.authorize(token(), None, None).id == "s-1"  # identity's own still passes


def _hs256(claims: dict[str, object], secret: bytes) -> str:
    """An HS256 token by hand: PyJWT itself refuses a PEM key as an HMAC secret."""

    def part(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signed = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + b"."
    signed += part(json.dumps(claims).encode())
    return (signed + b"." + part(hmac.new(secret, signed, hashlib.sha256).digest())).decode()
