"""The staff member's second factor: its rules in the domain, and which TOTP codes match."""

from __future__ import annotations

import time

import pyotp
import pytest

from services.identity.app.second_factor import matching_step, recovery_code
from services.identity.domain.events import (
    LocalizedName,
    SecondFactorDisabled,
    SecondFactorEnabled,
    SecondFactorEnrolled,
)
from services.identity.domain.staff import Staff
from shared.domain import Conflict


def member() -> Staff:
    return Staff().applied(
        Staff.add("s-1", "member", LocalizedName(en="Member"), None, None, [], set())
    )


def test_it_is_on_only_once_confirmed_and_stays_until_turned_off() -> None:
    staff = member()
    with pytest.raises(Conflict) as early:
        staff.enable_second_factor(10)
    assert early.value.code == "second_factor_not_enrolled"

    enrolled = staff.enroll_second_factor("SECRET")
    assert [type(e) for e in enrolled] == [SecondFactorEnrolled]
    staff.applied(enrolled)
    assert staff.second_factor_enrolled and not staff.second_factor

    staff.applied(staff.enable_second_factor(10))
    assert staff.second_factor
    assert staff.enable_second_factor(10) == []  # on already: nothing new
    with pytest.raises(Conflict) as again:
        staff.enroll_second_factor("OTHER")  # a stolen session cannot swap the secret
    assert again.value.code == "second_factor_on"

    off = staff.disable_second_factor(by="s-1")
    assert [type(e) for e in off] == [SecondFactorDisabled]
    staff.applied(off)
    assert not staff.second_factor and not staff.second_factor_enrolled
    assert staff.disable_second_factor(by="s-1") == []


def test_the_secret_is_a_personal_field_sealed_with_the_members_key() -> None:
    assert SecondFactorEnrolled.personal_fields == ("secret",)
    assert SecondFactorEnrolled.subject_field == "staff_id"
    assert "secret" not in SecondFactorEnabled.model_fields


def test_codes_of_now_and_one_step_either_side_match_and_no_others() -> None:
    secret = pyotp.random_base32()
    totp = pyotp.TOTP(secret)
    step = int(time.time()) // 30
    if int(time.time()) % 30 > 27:  # too near the next step for the steps named below
        time.sleep(3)
        step = int(time.time()) // 30
    for off in (-1, 0, 1):
        assert matching_step(secret, totp.at((step + off) * 30)) == step + off
    stale = totp.at((step - 3) * 30)
    if stale not in {totp.at((step + off) * 30) for off in (-1, 0, 1)}:
        assert matching_step(secret, stale) is None
    assert matching_step(secret, "12345") is None
    assert matching_step(secret, "abcdef") is None


def test_recovery_codes_are_random_and_readable() -> None:
    codes = {recovery_code() for _ in range(50)}
    assert len(codes) == 50
    assert all(len(c) == 11 and c[5] == "-" for c in codes)
