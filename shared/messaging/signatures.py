"""Identity's facts carry its signature; every consumer checks it before applying one.

Anyone who can reach the broker can produce onto ``identity.events``; without a
signature a forged ``StaffAccessChanged`` would grant rights in every service.
So identity's relay signs each event it publishes (Ed25519 over
``RecordedEvent.canonical_bytes``, base64 in the envelope's ``signature``),
and every place that applies identity's facts asks a ``FactVerifier`` first.

Rules it keeps:

* Only identity's private key signs (``IDENTITY_SIGNING_KEY``, identity alone
  holds it); every service verifies with ``IDENTITY_PUBLIC_KEY``.
* The facts that must verify are ``SIGNED_FACTS`` (access and staff facts),
  wherever they are read: a fact of those types without identity's valid
  signature is never applied, whatever topic it came on.
* A rejected fact is reported, never silently dropped: a log line naming its type,
  id, stream and why (never its data: it may be anyone's forgery or a real
  member's details), the counter ``signed_facts_rejected_total`` and the count in
  ``/ready`` (``problems["signed_facts"]``). It is consumed (its offset passes),
  so a forgery never stalls the facts behind it.
"""

from __future__ import annotations

import base64
import binascii

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from prometheus_client import Counter

from shared.domain.events import RecordedEvent
from shared.messaging.staff_facts import STAFF_FACTS

log = structlog.get_logger(__name__)

# Identity's facts every other context applies: access (shared.access.control) and
# staff (shared.messaging.staff_facts). Named here as strings: this layer sits below
# the access package that defines the first three.
ACCESS_FACTS = frozenset({"StaffAccessChanged", "ClientAccessChanged", "SessionEnded"})
SIGNED_FACTS = ACCESS_FACTS | STAFF_FACTS

REJECTED = Counter(
    "signed_facts_rejected_total",
    "Identity facts ignored because their signature is missing or does not verify",
    ["type", "reason"],
)
PROBLEM = "signed_facts"


def sign(key: Ed25519PrivateKey, event: RecordedEvent) -> RecordedEvent:
    """``event`` with the signature of ``key`` over its canonical bytes."""
    signature = base64.b64encode(key.sign(event.canonical_bytes())).decode()
    return event._replace(signature=signature)


def verifies(key: Ed25519PublicKey, event: RecordedEvent) -> bool:
    """Does ``event`` carry a valid signature by the holder of ``key``?"""
    if not event.signature:
        return False
    try:
        key.verify(base64.b64decode(event.signature, validate=True), event.canonical_bytes())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


class FactVerifier:
    """Admits identity's facts that verify; reports the others (log, metric, ``/ready``)."""

    def __init__(
        self,
        key: Ed25519PublicKey,
        problems: dict[str, str] | None = None,
        consumer: str = "",
    ) -> None:
        self.key = key
        self.problems = problems if problems is not None else {}
        self.consumer = consumer
        self.rejected = 0

    def admit(self, event: RecordedEvent) -> bool:
        """True for an event that is no identity fact, or one identity really signed."""
        if event.type not in SIGNED_FACTS or verifies(self.key, event):
            return True
        reason = "unsigned" if not event.signature else "bad_signature"
        self.rejected += 1
        REJECTED.labels(event.type, reason).inc()
        log.warning(
            "signed_facts.rejected",
            consumer=self.consumer,
            type=event.type,
            event_id=str(event.event_id),
            stream=event.stream[:100],
            reason=reason,
        )
        self.problems[PROBLEM] = (
            f"{self.rejected} identity fact(s) ignored: no valid identity signature "
            f"(last: {event.type} {event.event_id}, {reason})"
        )
        return False
