"""Bounds on what an outsider can make the transport hold: stream connections and pending DNS lookups.

Plain bookkeeping with the time passed in (no asyncio, no sockets): the driver (:mod:`.server`) asks
:meth:`ConnectionTable.admit` before it keeps an accepted connection, tells :meth:`~ConnectionTable.heard`
what each connection sent, and closes what :meth:`~ConnectionTable.expired` names once a second.
Every bound that is hit is counted in :attr:`ConnectionTable.hits` (``b2bua_limit_hits_total``).

The idea is Kamailio's ``tcp_max_connections``, ``tcp_connection_lifetime`` and ``tcp_conn_wq_max``,
with a slow-sender bound (Slowloris: a message started and never finished holds a buffer) and a bound on
connections per source address, so that one address cannot take them all.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

__all__ = ["HITS", "ConnectionTable", "StreamLimits"]

#: the bounds :attr:`ConnectionTable.hits` counts: connections refused (in total, per address, a mutual-TLS
#: trunk's address without its certificate), closed (idle, slow sender, unread output), sends failed (DNS)
HITS = ("connections_total", "connections_per_source", "tls_client_cert", "idle", "slow_sender", "write_buffer",
        "dns_pending", "dns_waiting")


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """The bounds (``sip.connections`` in b2bua.yaml)."""

    #: inbound TCP/TLS connections at once, from everyone together (our own to carriers are not counted)
    max_total: int = 4096
    #: inbound connections at once from one address
    max_per_source: int = 64
    #: a connection with no bytes either way for this long is closed. RFC 5626 §4.4.1 has clients ping
    #: streams every 840 s at most, so a well-behaved phone's idle registration flow stays open
    idle_s: float = 900.0
    #: a message begun must be whole within this long, and a new inbound connection must bring its first
    #: whole message (or keep-alive) within it (the TLS handshake has its own bound of the same length)
    message_s: float = 10.0
    #: bytes queued to a peer that does not read; over it the connection is dropped
    max_write_buffer: int = 1 << 20
    #: host names being looked up at once (messages to a name already being looked up wait with it)
    max_pending_dns: int = 64
    #: messages waiting for one name's lookup
    max_waiting_per_name: int = 32


@dataclass(slots=True)
class _Conn:
    host: str
    inbound: bool
    last: float  # the last byte either way
    waiting_since: float | None  # when the unfinished message (or, inbound, the silent connection) began
    closing: bool = False  # named by expired(), not yet closed


class ConnectionTable:
    """The stream connections the driver holds, by its connection id."""

    def __init__(self, limits: StreamLimits | None = None):
        self.limits = limits or StreamLimits()
        self._conns: dict[int, _Conn] = {}
        self._per_source: Counter[str] = Counter()
        self._inbound = 0
        #: bounds hit, by name (:data:`HITS`)
        self.hits: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._conns)

    @property
    def inbound(self) -> int:
        return self._inbound

    def admit(self, conn_id: int, host: str, now: float) -> str | None:
        """An accepted connection from ``host``: None when it may stay (it is then tracked), else the bound
        it would break (counted)."""
        limits = self.limits
        if self._inbound >= limits.max_total:
            reason = "connections_total"
        elif self._per_source[host] >= limits.max_per_source:
            reason = "connections_per_source"
        else:
            self._conns[conn_id] = _Conn(host, True, now, now)
            self._per_source[host] += 1
            self._inbound += 1
            return None
        self.hits[reason] += 1
        return reason

    def opened(self, conn_id: int, host: str, now: float) -> None:
        """A connection we opened ourselves (to a carrier or a phone): only the idle bound applies."""
        self._conns[conn_id] = _Conn(host, False, now, None)

    def heard(self, conn_id: int, now: float, *, unfinished: bool) -> None:
        """Bytes came in; ``unfinished`` when part of a message is still buffered after them."""
        conn = self._conns.get(conn_id)
        if conn is None:
            return
        conn.last = now
        if not unfinished:
            conn.waiting_since = None
        elif conn.waiting_since is None:
            conn.waiting_since = now

    def sent(self, conn_id: int, now: float, queued: int) -> bool:
        """Bytes went out and ``queued`` wait in the kernel's and the transport's buffers: False (counted)
        when the peer has stopped reading and the connection must go."""
        conn = self._conns.get(conn_id)
        if conn is not None:
            conn.last = now
        if queued > self.limits.max_write_buffer:
            self.hits["write_buffer"] += 1
            return False
        return True

    def closed(self, conn_id: int) -> None:
        conn = self._conns.pop(conn_id, None)
        if conn is not None and conn.inbound:
            self._inbound -= 1
            self._per_source[conn.host] -= 1
            if self._per_source[conn.host] <= 0:
                del self._per_source[conn.host]

    def expired(self, now: float) -> list[tuple[int, str]]:
        """The connections to close now, with why (counted; they stay tracked until :meth:`closed`)."""
        limits = self.limits
        out: list[tuple[int, str]] = []
        for conn_id, conn in self._conns.items():
            if conn.closing:
                continue
            if conn.waiting_since is not None and now - conn.waiting_since >= limits.message_s:
                out.append((conn_id, "slow_sender"))
            elif now - conn.last >= limits.idle_s:
                out.append((conn_id, "idle"))
        for conn_id, reason in out:
            self._conns[conn_id].closing = True
            self.hits[reason] += 1
        return out
