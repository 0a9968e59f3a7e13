"""SDP security descriptions for media streams (SDES, RFC 4568): the ``a=crypto`` attribute.

Only what a SIP trunk needs: the two AES-CM suites of RFC 4568 §6.2 with one inline key each. A crypto
line with anything else (another suite, an MKI, several keys, session parameters such as
UNENCRYPTED_SRTP or a key derivation rate) is skipped, never half-understood: if no line is left, the
stream is refused (fail closed).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass, field

#: the suites we take and offer, in our order of preference (tags 1, 2 in our offers)
SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
#: master key (16 bytes) + master salt (14 bytes) of both suites (RFC 4568 §6.2.1)
KEY_LENGTH = 30

_CRYPTO = re.compile(r"(\d{1,9})\s+([A-Za-z0-9_]+)\s+inline:([A-Za-z0-9+/=]+)(\|[^\s;]*)?\s*$")


@dataclass(frozen=True, slots=True)
class Crypto:
    """One usable ``a=crypto`` line: its tag, suite and master key + salt."""

    tag: int
    suite: str
    key: bytes = field(repr=False)

    def attribute(self) -> str:
        """The attribute's value (after ``a=``)."""
        return f"crypto:{self.tag} {self.suite} inline:{base64.b64encode(self.key).decode()}"


def parse(value: str) -> Crypto | None:
    """An ``a=`` value ``crypto:<tag> <suite> inline:<key>[|lifetime]``; None when unusable (see module)."""
    if not value.startswith("crypto:"):
        return None
    m = _CRYPTO.match(value[7:].strip())
    if m is None:  # several keys (";"), session parameters, another key method
        return None
    tag, suite, b64, rest = m.groups()
    if suite not in SUITES:
        return None
    if rest and ":" in rest:  # |MKI:length: a key per packet index we do not track
        return None
    if rest and not re.fullmatch(r"\|(2\^\d{1,2}|\d{1,20})", rest):
        return None
    try:
        key = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(key) != KEY_LENGTH:
        return None
    return Crypto(int(tag), suite, key)


def offered(lines: list[tuple[str, str]]) -> list[Crypto]:
    """The usable crypto lines of a media description's ``(type, value)`` lines, in their order."""
    found = (parse(v) for k, v in lines if k == "a")
    return [c for c in found if c is not None]


def new_key() -> bytes:
    """A fresh master key and salt from the system's CSPRNG (RFC 4568 §6.1: random, per direction)."""
    return secrets.token_bytes(KEY_LENGTH)


def matches_offer(answer: Crypto) -> bool:
    """Whether an answer's crypto line is one of ours: tag N is SUITES[N - 1] in every offer we make."""
    return 1 <= answer.tag <= len(SUITES) and SUITES[answer.tag - 1] == answer.suite


__all__ = ["SUITES", "KEY_LENGTH", "Crypto", "parse", "offered", "new_key", "matches_offer"]
