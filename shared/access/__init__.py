"""Access control in every service without calling identity per request (DESIGN §6).

* ``control`` – the published access facts, tokens, the local access copy, the authorizer;
* ``feed`` – every replica follows all of ``identity.events`` for its access copy
  (only the facts identity signed);
* ``keys`` – the Ed25519 keys: identity's (user tokens, facts), each service's own;
* ``rating_links`` – signed single-use links that rate a ticket without logging in.
"""

from shared.access.control import (
    ALGORITHM,
    Access,
    AccessCopy,
    Authorizer,
    Claims,
    ClientAccessChanged,
    Denied,
    DepartmentRightsChanged,
    IpPolicy,
    Network,
    Principal,
    PrincipalKind,
    SessionEnded,
    SessionEndReason,
    StaffAccessChanged,
    TokenError,
    access_from_event,
    access_metadata,
    ended_sessions,
    issue_token,
    principals,
    verify_token,
)
from shared.access.delegation import (
    SYSTEM,
    Grantor,
)
from shared.access.feed import (
    AccessFeed,
    feed_metadata,
    offsets,
)
from shared.access.keys import (
    KeyConfigError,
    ServiceKeys,
    ensure_keys,
    load_private_key,
    load_public_key,
    write_fresh_keys,
)
from shared.access.rating_links import (
    AUDIENCE,
    LIFETIME,
    PLACEHOLDER,
    RatingLink,
    issue,
    verify,
)

__all__ = [
    "ALGORITHM",
    "AUDIENCE",
    "LIFETIME",
    "PLACEHOLDER",
    "SYSTEM",
    "Access",
    "AccessCopy",
    "AccessFeed",
    "Authorizer",
    "Claims",
    "ClientAccessChanged",
    "Denied",
    "DepartmentRightsChanged",
    "Grantor",
    "IpPolicy",
    "KeyConfigError",
    "Network",
    "Principal",
    "PrincipalKind",
    "RatingLink",
    "ServiceKeys",
    "SessionEndReason",
    "SessionEnded",
    "StaffAccessChanged",
    "TokenError",
    "access_from_event",
    "access_metadata",
    "ended_sessions",
    "ensure_keys",
    "feed_metadata",
    "issue",
    "issue_token",
    "load_private_key",
    "load_public_key",
    "offsets",
    "principals",
    "verify",
    "verify_token",
    "write_fresh_keys",
]
