"""The asyncio driver: moves bytes between sockets and the sans-I/O stack, arms one timer.

UDP, TCP and TLS listeners over IPv4 and IPv6 (RFC 3261 §18). Stream
connections are reused in both directions and answer RFC 5626 §4.4.1
double-CRLF keep-alives with a single CRLF. What outsiders can make it hold is bounded
(:mod:`.limits`): connections in total and per address, idle and slow ones, unread output, DNS lookups.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import socket
import ssl
from collections.abc import Callable

from ..clock import Clock
from ..sip.errors import SipError
from ..sip.events import Peer
from ..sip.message import StreamFramer
from ..sip.stack import SipStack
from .limits import ConnectionTable, StreamLimits
from .listener import Listener  # re-exported: the listen address lives in a leaf module

log = logging.getLogger("b2bua.transport")

#: Largest UDP datagram we read (asyncio's default buffer is larger; this bounds parse work).
MAX_DATAGRAM = 65535


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: SipServer):
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if len(data) > MAX_DATAGRAM:
            return
        self.server.receive(data, Peer("udp", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class _Stream(asyncio.Protocol):
    """One TCP or TLS connection."""

    def __init__(self, server: SipServer, transport_name: str, conn_id: int, *, inbound: bool):
        self.server = server
        self.name = transport_name
        self.conn_id = conn_id
        self.inbound = inbound
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.pending: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer(self.name, host, port, self.conn_id)
        if not self.server._register_conn(self):
            self.closed = True
            assert self.transport is not None
            self.transport.abort()
            return
        for data in self.pending:
            self.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            messages = self.framer.feed(data)
        except SipError as err:
            log.info("closing %s: %s", self.peer, err)
            assert self.transport is not None
            self.transport.close()
            return
        self.server.connections.heard(self.conn_id, self.server.tick(), unfinished=self.framer.buffered > 0)
        if self.framer.pings:
            self.framer.pings = 0
            assert self.transport is not None
            self.transport.write(b"\r\n")  # RFC 5626 §4.4.1 pong
        assert self.peer is not None
        for msg in messages:
            self.server.receive(msg, self.peer)

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self.pending.append(data)
        elif not self.closed:
            self.transport.write(data)
            # the clock, not a new tick: every write follows an input or a timer that already moved it
            if not self.server.connections.sent(self.conn_id, self.server.clock.now,
                                                self.transport.get_write_buffer_size()):
                log.warning("dropping %s: it does not read what we send", self.peer)
                self.server.dropped(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server._unregister_conn(self)


#: the loop's wake-up for the stack's timers is set on a grid of this many seconds, rounded up: the
#: deadlines of many transactions (Timers E, K, J, L, M ... of RFC 3261 §17 and RFC 6026; each call leaves
#: five or six behind) that fall in one slot are served by one wake-up, not one each, and a message that
#: adds a deadline in the slot already armed does not re-arm the loop's timer. 10 ms late is nothing to a
#: timer of 500 ms or more (T1), and the stack still runs each timer at or after its own deadline.
TIMER_GRID = 0.01


def on_grid(when: float) -> float:
    """``when`` rounded up to the next point of :data:`TIMER_GRID` (never earlier than ``when``).

    A grid point is ``k * TIMER_GRID`` for an integer ``k``, computed the same way every time, so a grid point
    maps to itself: ``when / TIMER_GRID`` of a point may come out a hair above ``k`` (0.01 has no exact binary
    form), so the point below the ceiling is tried first."""
    k = math.ceil(when / TIMER_GRID)
    for slot in ((k - 1) * TIMER_GRID, k * TIMER_GRID):
        if slot >= when:
            return slot
    return (k + 1) * TIMER_GRID


class SipServer:
    """Runs a :class:`SipStack` and a pump callback on the asyncio loop."""

    def __init__(self, stack: SipStack, pump: Callable[[], None], *, clock: Clock,
                 tls_server: ssl.SSLContext | None = None, tls_client: ssl.SSLContext | None = None,
                 overload_lag: float = 0.25, on_overload: Callable[[bool], None] | None = None,
                 limits: StreamLimits | None = None,
                 tls_admit: Callable[[str, dict | None], str | None] | None = None):
        self.stack = stack
        #: call control's event handler, run after every input
        self.pump = pump
        #: the process's one clock; this driver is the only one that moves it (:meth:`tick`)
        self.clock = clock
        self.tls_server = tls_server
        self.tls_client = tls_client
        self.overload_lag = overload_lag
        self.on_overload = on_overload
        self.loop = asyncio.get_event_loop()
        self._udp: dict[int, _Udp] = {}  # by address family
        self._servers: list[asyncio.base_events.Server] = []
        self._conns: dict[int, _Stream] = {}
        #: connections we dropped on purpose (newest last, bounded): what was meant for them is not sent on a
        #: new connection (RFC 3261 §18.2.2 would reconnect for responses, and so undo the drop)
        self._dropped: dict[int, None] = {}
        #: the bounds on stream connections and DNS lookups, and what hit them (replace ``.limits`` to change)
        self.connections = ConnectionTable(limits)
        #: asked of every inbound TLS connection once its handshake is done, with the peer's address and verified
        #: certificate (None: it showed none): None to keep it, else why not (mutual TLS per trunk)
        self.tls_admit = tls_admit
        self._resolving: dict[str, list[tuple[bytes, Peer]]] = {}  # host name -> messages waiting for it
        self._sweep_task: asyncio.Task | None = None
        self._by_addr: dict[tuple[str, str, int], int] = {}
        self._next_conn = 1
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None
        self._resolved: dict[str, str] = {}
        self._ips: set[str] = set()
        self.lag = 0.0
        self._excused = 0.0  # of the lateness being measured, seconds the process stopped the loop on purpose
        self._lag_task: asyncio.Task | None = None
        #: sees every SIP message in (True) and out (False) as it crosses the wire (HEP export)
        self.capture: Callable[[bytes, Peer, bool], None] | None = None

    async def start(self, listeners: list[Listener]) -> None:
        for lst in listeners:
            if lst.transport == "udp":
                family = socket.AF_INET6 if ":" in lst.host else socket.AF_INET
                transport, proto = await self.loop.create_datagram_endpoint(
                    lambda: _Udp(self), local_addr=(lst.host, lst.port), family=family)
                sock = transport.get_extra_info("socket")
                for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, opt, 4 * 1024 * 1024)
                    except OSError:
                        pass
                self._udp.setdefault(family, proto)
            else:
                ctx = self.tls_server if lst.transport == "tls" else None
                if lst.transport == "tls" and ctx is None:
                    raise ValueError("a tls listener needs sip.tls.cert and sip.tls.key")
                name = lst.transport
                server = await self.loop.create_server(
                    lambda name=name: _Stream(self, name, self._new_conn_id(), inbound=True), lst.host, lst.port,
                    ssl=ctx, reuse_address=True,
                    ssl_handshake_timeout=self.connections.limits.message_s if ctx else None)
                self._servers.append(server)
            log.info("listening on %s", lst)
        self._lag_task = self.loop.create_task(self._watch_lag())
        self._sweep_task = self.loop.create_task(self._sweep())

    async def close(self) -> None:
        for task in (self._lag_task, self._sweep_task):
            if task:
                task.cancel()
        for s in self._servers:
            s.close()
        for c in list(self._conns.values()):
            if c.transport:
                c.transport.close()
        for u in self._udp.values():
            if u.transport:
                u.transport.close()
        if self._timer:
            self._timer.cancel()

    # -- the pump -----------------------------------------------------------------------
    def tick(self) -> float:
        """Move the process's clock to the event loop's time; return it. Called before every input."""
        return self.clock.advance(self.loop.time())

    def receive(self, data: bytes, peer: Peer) -> None:
        now = self.tick()
        if self.capture is not None:
            self.capture(data, peer, True)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("recv %s:%s:%d %d bytes\n%s", peer.transport, peer.host, peer.port, len(data),
                      data[:4096].decode("utf-8", "replace"))
        self.stack.receive(data, peer, now)
        self._run()

    def kick(self) -> None:
        """Something outside the stack (the media engine) produced work: pump and flush."""
        self.tick()
        self._run()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = None
        self.stack.handle_timer(self.tick())
        self._run()

    def _run(self) -> None:
        try:
            self.pump()
        except Exception:  # never let one call's bug stop the server
            log.exception("call control failed")
        for data, peer in self.stack.datagrams_to_send():
            self.send(data, peer)
        when = self.stack.get_timer()
        if when is not None:
            when = on_grid(when)
        if when != self._timer_when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(when, self._on_timer) if when is not None else None
            self._timer_when = when

    def send(self, data: bytes, peer: Peer) -> None:
        if self.capture is not None:
            self.capture(data, peer, False)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("send %s:%s:%d %d bytes\n%s", peer.transport, peer.host, peer.port, len(data),
                      data[:4096].decode("utf-8", "replace"))
        if peer.transport == "udp":
            host = peer.host
            if host not in self._ips:
                if _is_ip(host):
                    self._ips.add(host)
            if host not in self._ips:
                ip = self._resolved.get(host)
                if ip is None:
                    self._resolve_then_send(data, peer)
                    return
                host = ip
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            udp = self._udp.get(family)
            if udp is None or udp.transport is None:
                self._fail(peer)
                return
            udp.transport.sendto(data, (host, peer.port))
            return
        if peer.conn in self._dropped:
            self._fail(peer)
            return
        conn = self._conns.get(peer.conn) if peer.conn else None
        if conn is None or conn.closed:
            cid = self._by_addr.get((peer.transport, peer.host, peer.port))
            conn = self._conns.get(cid) if cid else None
        if conn is None or conn.closed:
            conn = self._connect(peer)
        conn.write(data)

    def _fail(self, peer: Peer) -> None:
        self.stack.transport_error(peer, self.tick())
        self.loop.call_soon(self._run)

    def _resolve_then_send(self, data: bytes, peer: Peer) -> None:
        """Look ``peer.host`` up once, however many messages wait for it; bounded (a failed send beyond)."""
        limits, hits = self.connections.limits, self.connections.hits
        waiting = self._resolving.get(peer.host)
        if waiting is None and len(self._resolving) >= limits.max_pending_dns:
            hits["dns_pending"] += 1
            self._fail(peer)
        elif waiting is not None and len(waiting) >= limits.max_waiting_per_name:
            hits["dns_waiting"] += 1
            self._fail(peer)
        elif waiting is not None:
            waiting.append((data, peer))
        else:
            self._resolving[peer.host] = [(data, peer)]
            self.loop.create_task(self._resolve(peer.host, peer.port))

    async def _resolve(self, host: str, port: int) -> None:
        try:
            infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            self._resolved[host] = str(infos[0][4][0])
        except OSError:
            for _, peer in self._resolving.pop(host, []):
                self._fail(peer)
            return
        for data, peer in self._resolving.pop(host, []):
            self.send(data, peer)

    @property
    def pending_dns(self) -> int:
        """Host names being looked up now."""
        return len(self._resolving)

    def _connect(self, peer: Peer) -> _Stream:
        conn = _Stream(self, peer.transport, self._new_conn_id(), inbound=False)
        self._by_addr[(peer.transport, peer.host, peer.port)] = conn.conn_id
        ctx = self.tls_client if peer.transport == "tls" else None
        if peer.transport == "tls" and ctx is None:
            ctx = ssl.create_default_context()

        async def run() -> None:
            try:
                await self.loop.create_connection(lambda: conn, peer.host, peer.port, ssl=ctx,
                                                  server_hostname=peer.host if ctx else None)
            except (OSError, ssl.SSLError) as exc:
                log.info("connect to %s failed: %s", peer, exc)
                conn.closed = True
                self._by_addr.pop((peer.transport, peer.host, peer.port), None)
                self._fail(peer)

        self.loop.create_task(run())
        return conn

    def _new_conn_id(self) -> int:
        cid = self._next_conn
        self._next_conn += 1
        return cid

    def _register_conn(self, conn: _Stream) -> bool:
        """A connection is up: False when an inbound one breaks a bound and must be dropped."""
        assert conn.peer is not None
        if conn.inbound:
            if conn.name == "tls" and self.tls_admit is not None and conn.transport is not None:
                why = self.tls_admit(conn.peer.host, conn.transport.get_extra_info("peercert"))
                if why is not None:
                    self.connections.hits["tls_client_cert"] += 1
                    log.warning("refusing a tls connection from %s: %s", conn.peer.host, why)
                    return False
            refused = self.connections.admit(conn.conn_id, conn.peer.host, self.tick())
            if refused is not None:
                log.info("refusing a %s connection from %s: %s", conn.name, conn.peer.host, refused)
                return False
        else:
            self.connections.opened(conn.conn_id, conn.peer.host, self.tick())
        self._conns[conn.conn_id] = conn
        self._by_addr.setdefault((conn.name, conn.peer.host, conn.peer.port), conn.conn_id)
        return True

    def _unregister_conn(self, conn: _Stream) -> None:
        self.connections.closed(conn.conn_id)
        self._conns.pop(conn.conn_id, None)
        if conn.peer is not None:
            key = (conn.name, conn.peer.host, conn.peer.port)
            if self._by_addr.get(key) == conn.conn_id:
                del self._by_addr[key]

    @property
    def stream_connections(self) -> dict[str, int]:
        """Open stream connections by transport (tcp, tls)."""
        out = {"tcp": 0, "tls": 0}
        for conn in self._conns.values():
            out[conn.name] = out.get(conn.name, 0) + 1
        return out

    async def _sweep(self, interval: float = 1.0) -> None:
        """Once a second: close idle connections and those that started a message and never finished it."""
        while True:
            await asyncio.sleep(interval)
            for conn_id, reason in self.connections.expired(self.tick()):
                conn = self._conns.get(conn_id)
                if conn is None or conn.transport is None:
                    continue
                log.info("closing %s: %s", conn.peer, reason.replace("_", " "))
                if reason == "idle":
                    conn.closed = True
                    conn.transport.close()
                else:
                    self.dropped(conn)

    def dropped(self, conn: _Stream) -> None:
        """Drop ``conn`` now (a reset, nothing more sent) and send nothing more to it on a new connection."""
        conn.closed = True
        if conn.transport is not None:
            conn.transport.abort()
        self._dropped[conn.conn_id] = None
        if len(self._dropped) > 4096:
            del self._dropped[next(iter(self._dropped))]

    def excuse(self, seconds: float) -> None:
        """The process held the loop for ``seconds`` on purpose (a full GC pass): lateness, not overload.

        What arrived meanwhile waits in the socket buffers and is served right after; refusing the calls of
        the next moment with 503 would not help them.
        """
        self._excused += seconds

    async def _watch_lag(self, interval: float = 0.1) -> None:
        """Measure event-loop lateness; tell call control when we are overloaded."""
        overloaded = False
        while True:
            start = self.loop.time()
            self._excused = 0.0
            await asyncio.sleep(interval)
            self.lag = max(0.0, self.loop.time() - start - interval - self._excused)
            now_over = self.lag > self.overload_lag
            if now_over != overloaded and self.on_overload is not None:
                overloaded = now_over
                self.on_overload(overloaded)
                log.warning("event loop lag %.0f ms: overload %s", self.lag * 1000, "on" if overloaded else "off")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
