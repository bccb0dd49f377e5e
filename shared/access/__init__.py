"""Access control in every service without calling identity per request (DESIGN §6).

* ``control`` – the published access facts, tokens, the local access copy, the authorizer;
* ``feed`` – every replica follows all of ``identity.events`` for its access copy.
"""

from shared.access.control import (
    PrincipalKind,
    SessionEndReason,
    Network,
    IpPolicy,
    StaffAccessChanged,
    ClientAccessChanged,
    DepartmentRightsChanged,
    SessionEnded,
    Claims,
    TokenError,
    ALGORITHM,
    issue_token,
    verify_token,
    access_metadata,
    principals,
    ended_sessions,
    Access,
    access_from_event,
    AccessCopy,
    Principal,
    Denied,
    Authorizer,
)
from shared.access.feed import (
    feed_metadata,
    offsets,
    AccessFeed,
)

__all__ = [
    "ALGORITHM",
    "Access",
    "AccessCopy",
    "AccessFeed",
    "Authorizer",
    "Claims",
    "ClientAccessChanged",
    "Denied",
    "DepartmentRightsChanged",
    "IpPolicy",
    "Network",
    "Principal",
    "PrincipalKind",
    "SessionEndReason",
    "SessionEnded",
    "StaffAccessChanged",
    "TokenError",
    "access_from_event",
    "access_metadata",
    "ended_sessions",
    "feed_metadata",
    "issue_token",
    "offsets",
    "principals",
    "verify_token",
]
