"""Mail that arrives for the support center, read without I/O: is it a request, and whose?

Rules kept here:

* a mail that a machine wrote never opens or continues a ticket, so two
  auto-responders cannot talk to each other through us: ``Auto-Submitted``
  other than ``no``, ``Precedence`` bulk / list / junk / auto_reply, list mail
  (``List-Id``, ``List-Unsubscribe``), delivery reports and bounces (an empty
  return path, ``multipart/report``, ``MAILER-DAEMON``), and the usual
  vacation markers (``X-Autoreply``, ``X-Autorespond``);
* a mail without a sender address, or whose MIME structure is broken, is refused;
* a reply names its ticket by ``In-Reply-To`` / ``References`` (our mails
  carry ``<ticket-<id>@…>``) or by the short number in the subject (``[#1042]``);
* its text is the plain-text part (else the HTML part as text), without the
  quoted conversation below it; its files are the parts with a file name;
* a mail is read as ``email.policy.default`` reads it, each header value parsed
  once per mail (``_OncePolicy``): the package parses a header again at every
  look (``Content-Type`` several times a mail) and builds a new class each time,
  which was half of a parse's time. Nothing parsed outlives the mail;
* a header whose raw text is plain ASCII without encoded words is read as that
  text, unfolded (``_text``), and a ``From`` in a plain form (``Name <a@b>``,
  ``"Name" <a@b>``, ``<a@b>``, ``a@b``) by a pattern (``_from``): the package's
  parser gives the same for those (``tests/unit/test_inbound_parse.py``) at many
  times the cost; any other form still goes to it. The envelope's addresses,
  already plain from the SMTP server, are taken as they are.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from email import errors as _errors
from email import message_from_bytes
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import getaddresses, parseaddr
from typing import TYPE_CHECKING, Any

from shared.domain import DomainError

_TICKET_REF = re.compile(r"<ticket-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})@")
_NUMBER = re.compile(r"\[#(\d{1,9})\]")
_MACHINE_PRECEDENCE = {"bulk", "list", "junk", "auto_reply", "auto-reply"}
_QUOTE_HEADER = re.compile(r"^(On .+ wrote:|.+ пишет:|-----Original Message-----)\s*$")
_TAGS = re.compile(r"<[^>]+>")
MAX_SUBJECT = 200


@dataclass(frozen=True)
class InboundFile:
    filename: str
    data: bytes


@dataclass(frozen=True)
class InboundMail:
    message_id: str
    sender: str  # the From address, lower case
    recipients: tuple[str, ...]  # the envelope's, lower case
    subject: str
    text: str
    files: tuple[InboundFile, ...] = ()
    references: tuple[str, ...] = ()  # ticket ids named by the threading headers
    number: int | None = None  # the short number in the subject
    machine: str | None = None  # why a machine wrote it (None: a person did)
    sender_name: str | None = None  # the From display name, if any
    return_path: str = ""  # the envelope sender (where an answer about the mail goes)


class _Headers(HeaderRegistry):
    """The package's header registry, each header class made once: its own makes a new
    class (``type(...)``) at every header it parses."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[type[Any], type[BaseHeader]] = {}  # as many as the registry's classes

    def __getitem__(self, name: str) -> type[BaseHeader]:
        kind = self.registry.get(name.lower(), self.default_class)
        made = self._made.get(kind)
        if made is None:
            made = self._made[kind] = super().__getitem__(name)
        return made


_HEADERS = _Headers()


if TYPE_CHECKING:
    _EmailPolicy = EmailPolicy[EmailMessage]
else:  # not subscriptable at run time
    _EmailPolicy = EmailPolicy


class _OncePolicy(_EmailPolicy):
    """``email.policy.default``, each (name, value) parsed once for the mail it reads."""

    parsed: dict[tuple[str, str], Any] | None = None

    def __init__(self, parsed: dict[tuple[str, str], Any]) -> None:
        super().__init__(header_factory=_HEADERS)
        object.__setattr__(self, "parsed", parsed)  # policies refuse setattr: set as theirs are

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if self.parsed is None or hasattr(value, "name"):
            return super().header_fetch_parse(name, value)
        key = (name, value)
        found = self.parsed.get(key)
        if found is None:
            found = self.parsed[key] = super().header_fetch_parse(name, value)
        return found


def _policy() -> _OncePolicy:
    """A policy for one mail: what it parsed goes with it."""
    return _OncePolicy(parsed={})


def parse(raw: bytes, mail_from: str, recipients: list[str]) -> InboundMail:
    """The mail as the gateway routes it; ``DomainError`` on ``mail`` when it is unusable."""
    try:
        message = message_from_bytes(raw, policy=_policy())
        assert isinstance(message, EmailMessage)
        headers = _raw(message)
        display, sender = _from(message, headers)
        sender = sender.strip().lower()
        display = " ".join(display.split())[:MAX_SUBJECT]
        subject = " ".join(_text(message, headers, "Subject").split())
    except Exception as error:  # the parser's errors name no single class
        raise DomainError("mail", f"broken message: {type(error).__name__}") from None
    broken = [d for part in message.walk() for d in part.defects if not isinstance(d, _HARMLESS)]
    if broken:
        raise DomainError("mail", f"broken MIME: {type(broken[0]).__name__}")
    if "@" not in sender:
        raise DomainError("mail", "no sender address in From")
    given_id = _text(message, headers, "Message-ID").strip()
    # Without a Message-ID the bytes name it: the same mail again is still the same mail.
    message_id = given_id or f"<sha256-{hashlib.sha256(raw).hexdigest()}@inbound>"
    references = _TICKET_REF.findall(
        " ".join(_text(message, headers, h) for h in ("In-Reply-To", "References"))
    )
    number = _NUMBER.search(subject)
    text, files = _content(message)
    return InboundMail(
        message_id=message_id[:250],
        sender=sender,
        recipients=tuple(_address(r).lower() for r in recipients),
        subject=subject[:MAX_SUBJECT] or "(no subject)",
        text=text,
        files=tuple(files),
        references=tuple(dict.fromkeys(references)),
        number=int(number.group(1)) if number else None,
        machine=_machine(message, headers, mail_from, sender),
        sender_name=display or None,
        return_path=_address(mail_from).strip(),
    )


_LINE_BREAK = re.compile(r"\r|\n")  # what the package removes to unfold a header
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR_SPEC = rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_PLAIN_ADDRESS = re.compile(_ADDR_SPEC)
_MESSAGE_ID = re.compile(rf"<{_ADDR_SPEC}>")
# A display name of atoms and blanks, or quoted without quotes or backslashes in it.
_PLAIN_FROM = re.compile(
    rf'[ \t]*(?:([A-Za-z0-9!#$%&\'*+/=?^_`{{|}}~ \t-]*)|"([^"\\]*)")[ \t]*<({_ADDR_SPEC})>[ \t]*'
    rf"|[ \t]*({_ADDR_SPEC})[ \t]*"
)


def _raw(message: EmailMessage) -> dict[str, str]:
    """The raw text of each header's first occurrence (what ``message.get`` reads), by
    its lower-case name."""
    headers: dict[str, str] = {}
    for name, value in message.raw_items():
        headers.setdefault(name.lower(), value)
    return headers


def _plain(value: str) -> str | None:
    """The header's text unfolded, if the package would read it as it is written."""
    if value.isascii() and "=?" not in value:
        return _LINE_BREAK.sub("", value)
    return None


def _text(message: EmailMessage, headers: dict[str, str], name: str) -> str:
    """A header's text, as ``str(message.get(name, ""))`` gives it."""
    value = headers.get(name.lower())
    if value is None:
        return ""
    plain = _plain(value)
    if plain is None:
        return str(message.get(name, ""))
    # A structured header (``Message-ID`` among those read here) renders what it parsed:
    # as written only in its plain form.
    if issubclass(_HEADERS[name], UnstructuredHeader) or _MESSAGE_ID.fullmatch(plain):
        return plain
    return str(message.get(name, ""))


def _from(message: EmailMessage, headers: dict[str, str]) -> tuple[str, str]:
    """The ``From`` header's display name and address, as ``parseaddr`` reads the
    package's rendering of it."""
    value = headers.get("from")
    plain = _plain(value) if value is not None else None
    found = _PLAIN_FROM.fullmatch(plain) if plain is not None else None
    if found is None:
        return parseaddr(str(message.get("From", "")))
    atoms, quoted, bracketed, bare = found.groups()
    if bare is not None:
        return "", bare
    return " ".join((quoted if quoted is not None else atoms).split()), bracketed


def _address(envelope: str) -> str:
    """An envelope address: as given when plain, else as ``parseaddr`` reads it."""
    return envelope if _PLAIN_ADDRESS.fullmatch(envelope) else parseaddr(envelope)[1]


def machine_written(message: EmailMessage, mail_from: str, sender: str) -> str | None:
    """Why a machine wrote this mail (a reason code), or None."""
    return _machine(message, _raw(message), mail_from, sender)


def _machine(
    message: EmailMessage, headers: dict[str, str], mail_from: str, sender: str
) -> str | None:
    def text(name: str) -> str:
        return _text(message, headers, name)

    auto = text("Auto-Submitted").strip().lower()
    if auto and auto != "no":
        return "auto_submitted"
    if text("Precedence").strip().lower() in _MACHINE_PRECEDENCE:
        return "bulk_precedence"
    if text("List-Id") or text("List-Unsubscribe"):
        return "list_mail"
    if mail_from.strip() in ("", "<>"):
        return "bounce"
    if message.get_content_type() == "multipart/report" or sender.startswith("mailer-daemon@"):
        return "bounce"
    if text("X-Autoreply") or text("X-Autorespond"):
        return "auto_submitted"
    return None


def addresses(values: list[str]) -> list[str]:
    return [a.lower() for _, a in getaddresses(values) if a]


def _content(message: EmailMessage) -> tuple[str, list[InboundFile]]:
    files: list[InboundFile] = []
    for part in message.iter_attachments() if message.is_multipart() else ():
        name = part.get_filename()
        payload = part.get_payload(decode=True)
        if name and isinstance(payload, bytes):
            files.append(InboundFile(name, payload))
    body = message.get_body(("plain", "html"))
    text = ""
    if body is not None:
        try:
            content = body.get_content()
        except (LookupError, ValueError) as error:  # an unknown charset, a broken encoding
            raise DomainError("mail", f"unreadable text: {type(error).__name__}") from None
        text = str(content)
        if body.get_content_type() == "text/html":
            text = html.unescape(_TAGS.sub("", text.replace("<br>", "\n")))
    return without_quote(text), files


def without_quote(text: str) -> str:
    """The new text of a reply: what is above the quoted conversation."""
    lines = text.replace("\r\n", "\n").split("\n")
    for i, line in enumerate(lines):
        if _QUOTE_HEADER.match(line.strip()):
            lines = lines[:i]
            break
    while lines and (not lines[-1].strip() or lines[-1].startswith(">")):
        lines.pop()
    return "\n".join(lines).strip()


# Defects the parser notes on everyday mail that it reads fine all the same.
_HARMLESS = (
    _errors.InvalidHeaderDefect,
    _errors.HeaderMissingRequiredValue,
    _errors.ObsoleteHeaderDefect,
    _errors.NonASCIILocalPartDefect,
    _errors.InvalidBase64PaddingDefect,
    _errors.InvalidBase64CharactersDefect,
)
