"""Which of a caller's headers a trunk's allow-list (``trunks[].forward_headers``) may forward.

A leaf module (no project imports): the configuration refuses the names below in an
allow-list, and caller identity (:mod:`b2bua.call.identity`) drops them when forwarding.
"""

from __future__ import annotations

__all__ = ["NEVER_FORWARDED"]

#: Headers a trunk's allow-list can never forward: we write them ourselves, per leg, or they
#: are identities (forwarding the caller's own would defeat the point).
NEVER_FORWARDED = frozenset({
    "via", "from", "to", "call-id", "cseq", "contact", "content-length", "content-type", "max-forwards",
    "route", "record-route", "authorization", "proxy-authorization", "p-asserted-identity",
    "p-preferred-identity", "remote-party-id", "privacy", "call-info", "allow", "supported", "require",
    "session-expires", "min-se", "content-disposition", "content-encoding",
})
