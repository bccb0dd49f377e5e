"""``inbound.parse``, the gateway's reading of a mail: the sender and its name, the
subject, the Message-ID (or the digest of the bytes), the ticket a reply names, the
machine markers, the text without the quote, the files, and the refusals. The plain
headers are read from their raw text and the rest by the ``email`` package; for every
form here the two ways give the same (``_text``, ``_from`` against the package)."""

from __future__ import annotations

import hashlib
from email import message_from_bytes
from email.utils import parseaddr

import pytest

from services.tickets.domain import inbound
from shared.domain import DomainError

TICKET = "0b9c6f3e-2a51-4c3e-9d41-7f0e5b2a1c88"


def _mail(headers: str, body: str = "Hello,\n\nthe site is down.\n") -> bytes:
    return (headers.strip("\n") + "\n\n" + body).replace("\n", "\r\n").encode()


BASIC = """
From: Bench client <Client1@Bench-Client.example.com>
To: support@desk.example.com
Subject: Site down #7
Message-ID: <m1@bench-client.example.com>
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: 7bit
MIME-Version: 1.0
"""


def _parse(raw: bytes, mail_from: str = "client1@bench-client.example.com") -> inbound.InboundMail:
    return inbound.parse(raw, mail_from, ["Support@Desk.example.com"])


def test_a_plain_mail() -> None:
    mail = _parse(_mail(BASIC))
    assert mail.sender == "client1@bench-client.example.com"
    assert mail.sender_name == "Bench client"
    assert mail.recipients == ("support@desk.example.com",)
    assert mail.subject == "Site down #7"
    assert mail.message_id == "<m1@bench-client.example.com>"
    assert mail.text == "Hello,\n\nthe site is down."
    assert (mail.files, mail.references, mail.number, mail.machine) == ((), (), None, None)
    assert mail.return_path == "client1@bench-client.example.com"


@pytest.mark.parametrize(
    ("header", "name", "sender"),
    [
        ("a@example.com", None, "a@example.com"),
        ("<a@example.com>", None, "a@example.com"),
        ('"Doe, John" <John.Doe@example.com>', "Doe, John", "john.doe@example.com"),
        ("John   Doe  <j@example.com>", "John Doe", "j@example.com"),
        ("=?utf-8?q?Jos=C3=A9_Garc=C3=ADa?= <jose@example.com>", "José García", "jose@example.com"),
        ("j@example.com (John Doe)", None, "j@example.com"),
        ("John Q. Public <jqp@example.com>", "John Q. Public", "jqp@example.com"),
    ],
)
def test_the_sender_and_its_name(header: str, name: str | None, sender: str) -> None:
    mail = _parse(_mail(BASIC.replace("Bench client <Client1@Bench-Client.example.com>", header)))
    assert (mail.sender_name, mail.sender) == (name, sender)


def test_an_encoded_and_folded_subject() -> None:
    raw = _mail(BASIC.replace("Site down #7", "=?utf-8?q?Caf=C3=A9?= is\n  down [#1042]"))
    mail = _parse(raw)
    assert mail.subject == "Café is down [#1042]"
    assert mail.number == 1042


def test_no_subject() -> None:
    assert _parse(_mail(BASIC.replace("Subject: Site down #7\n", ""))).subject == "(no subject)"


def test_without_a_message_id_the_bytes_name_it() -> None:
    raw = _mail(BASIC.replace("Message-ID: <m1@bench-client.example.com>\n", ""))
    assert _parse(raw).message_id == f"<sha256-{hashlib.sha256(raw).hexdigest()}@inbound>"


def test_a_reply_names_its_ticket() -> None:
    headers = BASIC + f"In-Reply-To: <ticket-{TICKET}@desk.example.com>\n"
    headers += f"References: <x@y>\n <ticket-{TICKET}@desk.example.com>\n"
    assert _parse(_mail(headers)).references == (TICKET,)


@pytest.mark.parametrize(
    ("extra", "mail_from", "why"),
    [
        ("Auto-Submitted: auto-replied", "a@b.example", "auto_submitted"),
        ("Auto-Submitted: No", "a@b.example", None),
        ("Precedence: Bulk", "a@b.example", "bulk_precedence"),
        ("List-Id: <list.example.com>", "a@b.example", "list_mail"),
        ("List-Unsubscribe: <mailto:u@example.com>", "a@b.example", "list_mail"),
        ("X-Autoreply: yes", "a@b.example", "auto_submitted"),
        ("X-Mailer: ours", "", "bounce"),
        ("X-Mailer: ours", "<>", "bounce"),
    ],
)
def test_machine_written(extra: str, mail_from: str, why: str | None) -> None:
    assert _parse(_mail(BASIC + extra + "\n"), mail_from).machine == why


def test_a_bounce_from_the_mailer_daemon() -> None:
    raw = _mail(BASIC.replace("Client1@Bench-Client", "MAILER-DAEMON@mx"))
    assert _parse(raw).machine == "bounce"


def test_no_sender_address_is_refused() -> None:
    for header in ("", "Bench client", "undisclosed-recipients:;"):
        raw = _mail(BASIC.replace("Bench client <Client1@Bench-Client.example.com>", header))
        with pytest.raises(DomainError, match="no sender address"):
            _parse(raw)


def test_html_quote_and_files() -> None:
    headers = """
From: a@example.com
Subject: files
Message-ID: <m2@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b"
"""
    body = """--b
Content-Type: text/html; charset="utf-8"

<p>New text<br>second line</p>
On Mon, 1 Dec 2026, Support wrote:
&gt; old text
--b
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="log.txt"
Content-Transfer-Encoding: base64

aGVsbG8=
--b--
"""
    mail = _parse(_mail(headers, body))
    assert mail.text == "New text\nsecond line"
    assert mail.files == (inbound.InboundFile("log.txt", b"hello"),)


RAW_VALUES = [
    "Site down #7",
    "  spaced   out  ",
    "folded\r\n  over two lines",
    "=?utf-8?q?Caf=C3=A9?=",
    "<m1@example.com>",
    "<3f1e-a.b@mx-1.example.com>  ",
    " <a@b>",
    "<a@b> <c@d>",
    "not an id",
    "a (comment) b",
    'quoted "string" \\ and backslash',
    "",
]


@pytest.mark.parametrize("name", ["Subject", "Message-ID", "References", "Auto-Submitted"])
@pytest.mark.parametrize("value", RAW_VALUES)
def test_a_header_read_raw_reads_as_the_package_reads_it(name: str, value: str) -> None:
    raw = _mail(f"From: a@example.com\n{name}: {value}")
    message = message_from_bytes(raw, policy=inbound._policy())
    assert inbound._text(message, inbound._raw(message), name) == str(message.get(name, ""))


FROM_VALUES = [
    "a@example.com",
    "<a@example.com>",
    "  A  B   <a.b+c@example.com>  ",
    '"Doe, John" <j@example.com>',
    '"Q \\" x" <j@example.com>',
    "j@example.com (John)",
    "=?utf-8?q?Jos=C3=A9?= <jose@example.com>",
    "John Q. Public <jqp@example.com>",
    "a@example.com, b@example.com",
    "Group: a@example.com;",
    "<a@[192.0.2.1]>",
    "no address",
    "",
]


@pytest.mark.parametrize("value", FROM_VALUES)
def test_the_sender_read_raw_is_the_packages(value: str) -> None:
    raw = _mail(f"From: {value}")
    message = message_from_bytes(raw, policy=inbound._policy())
    assert inbound._from(message, inbound._raw(message)) == parseaddr(str(message.get("From", "")))
