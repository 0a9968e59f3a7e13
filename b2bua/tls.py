"""The TLS every listener and client of the process uses (SIP over TLS both ways, the admin listener)."""

from __future__ import annotations

import ssl

#: TLS 1.2's suites: forward secrecy and AEAD only (TLS 1.3's own suites are all of that kind)
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def hardened(purpose: ssl.Purpose) -> ssl.SSLContext:
    """A default context for ``purpose``: TLS 1.2 at least, and of TLS 1.2 only ECDHE with AES-GCM or
    ChaCha20-Poly1305."""
    ctx = ssl.create_default_context(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    return ctx


__all__ = ["TLS12_CIPHERS", "hardened"]
