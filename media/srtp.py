"""SRTP for one leg (RFC 3711), keyed by SDES (RFC 4568): what the engine decrypts and encrypts.

libsrtp through ``pylibsrtp`` does the cryptography (AES counter mode, HMAC-SHA1, the replay window,
the rollover counter): nothing here is hand-written crypto. A leg has one inbound context, keyed
with what the endpoint's ``a=crypto`` gave (it decrypts and authenticates what the endpoint sends
us), and one outbound context keyed with our own key (it encrypts what we send it). The relay,
the tick, DTMF, recording and the tap all see plain RTP: decryption is the first thing done to a
packet, encryption the last.
"""

from __future__ import annotations

import pylibsrtp

from .api import SrtpKeys

#: RFC 4568 §6.2 crypto-suite names -> libsrtp profiles (the two every SDES peer has; the AEAD suites
#: of RFC 7714 are not offered: few SIP peers do them over SDES)
PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}

class SrtpError(Exception):
    """A packet SRTP refuses: not authentic, replayed, cut short, or longer than libsrtp's buffer."""


#: what pylibsrtp raises for such a packet (ValueError: "packet is too long", before libsrtp sees it)
_REFUSED = (pylibsrtp.Error, ValueError)


class LegCrypto:
    """The two SRTP contexts of one leg: ``unprotect*`` for what arrives, ``protect*`` for what leaves.

    Each method raises :data:`SrtpError` for a packet that fails (authentication, replay, a packet
    too short): the engine drops and counts it.
    """

    __slots__ = ("keys", "_in", "_out")

    def __init__(self, keys: SrtpKeys):
        profile = PROFILES[keys.suite]
        self.keys = keys
        self._in = pylibsrtp.Session(pylibsrtp.Policy(key=keys.recv_key, srtp_profile=profile,
                                                      ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
        self._out = pylibsrtp.Session(pylibsrtp.Policy(key=keys.send_key, srtp_profile=profile,
                                                       ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))

    def unprotect(self, packet: bytes) -> bytes:
        try:
            return self._in.unprotect(packet)
        except _REFUSED as exc:
            raise SrtpError(str(exc)) from None

    def protect(self, packet: bytes | bytearray) -> bytes:
        try:
            return self._out.protect(bytes(packet))
        except _REFUSED as exc:
            raise SrtpError(str(exc)) from None

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        try:
            return self._in.unprotect_rtcp(packet)
        except _REFUSED as exc:
            raise SrtpError(str(exc)) from None

    def protect_rtcp(self, packet: bytes) -> bytes:
        try:
            return self._out.protect_rtcp(packet)
        except _REFUSED as exc:
            raise SrtpError(str(exc)) from None


def crypto_for(keys: SrtpKeys | None, current: LegCrypto | None) -> LegCrypto | None:
    """The contexts for ``keys``: ``current`` when the keys did not change (a re-INVITE repeating them must
    not reset the replay window and rollover counter), new ones when they did, None for plain RTP."""
    if keys is None:
        return None
    if current is not None and current.keys == keys:
        return current
    return LegCrypto(keys)


__all__ = ["PROFILES", "SrtpError", "LegCrypto", "crypto_for"]
