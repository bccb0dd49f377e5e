"""The gateway's SMTP server reads plain ``<local@domain>`` addresses itself: for every
form it gives what aiosmtpd's own parser gives (the plain ones by its fast path, the
rest by aiosmtpd's), including the refusals (``None``) and the parameters after it."""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import SMTP

from services.tickets.adapters.mail_inbound import _PLAIN, _Lmtp, _Smtp

PLAIN = [
    "<client0@bench-client.example.com>",
    "<First.Last+tag@Example.COM> SIZE=1234 BODY=8BITMIME",
    "  <a@b>",
    "<o'neil!#$%&*/=?^_`{|}~-@mx-1.example.org>",
    "<" + "x" * 64 + "@example.com>",
    "<a@example.com>\t SMTPUTF8",
]
OTHER = [
    "",
    "<>",
    "<" + "x" * 65 + "@example.com>",  # over the local part's limit: refused by both
    '<"quoted local"@example.com>',
    "<a..b@example.com>",
    "<.a@example.com>",
    "<a@[192.0.2.1]>",
    "a@example.com",
    "<a@example.com",
    "<@relay.example:a@example.com>",
    "<a@b@c>",
    "<a b@example.com>",
    "<a@example.com> (a comment) SIZE=1",
]


class _Handler:
    pass


@pytest.mark.parametrize("arg", PLAIN + OTHER)
@pytest.mark.parametrize("kind", [_Smtp, _Lmtp])
def test_addresses_read_as_aiosmtpd_reads_them(kind: type[SMTP], arg: str) -> None:
    ours, theirs = kind(_Handler()), SMTP(_Handler())
    assert ours._getaddr(arg) == theirs._getaddr(arg)


def test_the_plain_forms_take_the_fast_path() -> None:
    assert all(_PLAIN.fullmatch(arg.lstrip()) for arg in PLAIN)
    assert not any(_PLAIN.fullmatch(arg.lstrip()) for arg in OTHER[1:2] + OTHER[3:])
