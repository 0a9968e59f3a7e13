"""Errors raised by the SIP protocol core."""

from __future__ import annotations


class SipError(Exception):
    """A problem that maps to a SIP response code (RFC 3261 §21)."""

    status: int = 400
    reason: str = "Bad Request"

    def __init__(self, detail: str = "", status: int | None = None, reason: str | None = None):
        super().__init__(detail or self.reason)
        self.detail = detail
        if status is not None:
            self.status = status
        if reason is not None:
            self.reason = reason


class ParseError(SipError):
    """Malformed message or header: 400 Bad Request (§8.2.6)."""


class TooLarge(SipError):
    """Message exceeds our bounds: 513 Message Too Large (§21.5.14)."""

    status = 513
    reason = "Message Too Large"


class VersionNotSupported(SipError):
    """Unknown SIP version: 505 (§8.2.6 / RFC 4475 §3.1.2.16)."""

    status = 505
    reason = "Version Not Supported"
