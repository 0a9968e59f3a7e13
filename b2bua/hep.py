"""HEP v3 export of SIP messages: every message the B2BUA receives or sends, as one UDP datagram to a Homer
collector (heplify-server, Homer 7), the capture format Kamailio (``siptrace``), FreeSWITCH and rtpengine
speak, so one collector sees a call across all of them.

HEP v3 (``HEP3``, the header then type-length-value chunks of the generic vendor 0) is small and fixed,
and no maintained Python library writes it: this module does, from the HEP3 specification's chunk table
(protocol family, IP protocol, addresses, ports, time in seconds and microseconds, protocol type 1 = SIP,
capture agent id, authentication key, payload, and the Call-ID as correlation id).

The export never slows signalling: one non-blocking ``sendto`` per message, a datagram the kernel refuses
is dropped and counted, and nothing is sent when no collector is configured.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import struct

log = logging.getLogger("b2bua.hep")

# generic chunk types of HEP3 (vendor 0)
FAMILY, PROTOCOL, SRC_IP4, DST_IP4, SRC_IP6, DST_IP6, SRC_PORT, DST_PORT = 1, 2, 3, 4, 5, 6, 7, 8
SECONDS, MICROSECONDS, PROTO_TYPE, CAPTURE_ID, AUTH_KEY, PAYLOAD, CORRELATION = 9, 10, 11, 12, 14, 15, 17
PROTO_SIP = 1
IP_PROTOCOLS = {"udp": 17, "tcp": 6, "tls": 6, "ws": 6, "wss": 6}
_CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]+)", re.I | re.M)


def _chunk(kind: int, value: bytes) -> bytes:
    return struct.pack("!HHH", 0, kind, 6 + len(value)) + value


def encode(payload: bytes, src: tuple[str, int], dst: tuple[str, int], transport: str, when: float, *,
           capture_id: int, password: str | None = None) -> bytes:
    """One HEP3 packet carrying ``payload`` (a SIP message) sent from ``src`` to ``dst`` at ``when``."""
    s, d = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    v6 = s.version == 6 or d.version == 6
    if v6:  # a v4 address beside a v6 one is written mapped
        s6 = s if s.version == 6 else ipaddress.IPv6Address(f"::ffff:{s}")
        d6 = d if d.version == 6 else ipaddress.IPv6Address(f"::ffff:{d}")
        addresses = _chunk(SRC_IP6, s6.packed) + _chunk(DST_IP6, d6.packed)
    else:
        addresses = _chunk(SRC_IP4, s.packed) + _chunk(DST_IP4, d.packed)
    seconds = int(when)
    body = (_chunk(FAMILY, bytes([10 if v6 else 2])) + _chunk(PROTOCOL, bytes([IP_PROTOCOLS.get(transport, 17)]))
            + addresses + _chunk(SRC_PORT, struct.pack("!H", src[1])) + _chunk(DST_PORT, struct.pack("!H", dst[1]))
            + _chunk(SECONDS, struct.pack("!I", seconds))
            + _chunk(MICROSECONDS, struct.pack("!I", int((when - seconds) * 1_000_000)))
            + _chunk(PROTO_TYPE, bytes([PROTO_SIP])) + _chunk(CAPTURE_ID, struct.pack("!I", capture_id)))
    if password:
        body += _chunk(AUTH_KEY, password.encode())
    found = _CALL_ID.search(payload[:4096])
    if found:
        body += _chunk(CORRELATION, found.group(1).strip())
    body += _chunk(PAYLOAD, payload)
    return b"HEP3" + struct.pack("!H", 6 + len(body)) + body


class HepExporter:
    """Sends each SIP message to the collector at ``address`` (``host:port``, UDP)."""

    def __init__(self, address: str, capture_id: int = 2001, password: str | None = None):
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        self.target = (host, int(port))
        self.capture_id = capture_id
        self.password = password
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self.sent = 0
        self.dropped = 0

    def capture(self, data: bytes, src: tuple[str, int], dst: tuple[str, int], transport: str, when: float) -> None:
        try:
            packet = encode(data, src, dst, transport, when, capture_id=self.capture_id, password=self.password)
            self._sock.sendto(packet, self.target)
            self.sent += 1
        except (OSError, ValueError):  # a full buffer, a name where an address belongs: never the call's problem
            self.dropped += 1

    def close(self) -> None:
        self._sock.close()


__all__ = ["HepExporter", "encode"]
