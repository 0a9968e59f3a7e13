"""Gateway health by OPTIONS pings (RFC 3261 §11): down after ``threshold`` unanswered pings,
up again at the first answer. Sans-I/O: pings go through the stack, timers through its queue,
time is read from the process's one :class:`~b2bua.clock.Clock`."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from ..call.users import Ping
from ..clock import Clock
from ..config import Trunk
from ..sip.dialog import uri_to_peer
from ..sip.message import Request, Response
from ..sip.stack import SipStack

log = logging.getLogger("b2bua.health")


class GatewayMonitor:
    def __init__(self, stack: SipStack, down: set[str], trunks: Callable[[], list[Trunk]], *, clock: Clock):
        self.stack = stack
        self.clock = clock
        self.down = down
        self.trunks = trunks
        self.misses: Counter[str] = Counter()
        self.pings = 0
        self._handles: dict[str, object] = {}

    def start(self) -> None:
        for trunk in self.trunks():
            if trunk.options_ping is None:
                continue
            for gw in trunk.gateways:
                if gw.uri not in self._handles:
                    self._schedule(gw.uri, trunk.options_ping.interval_s, trunk.options_ping.threshold, first=True)

    def _schedule(self, uri: str, interval: float, threshold: int, first: bool = False) -> None:
        delay = 0.0 if first else interval
        self._handles[uri] = self.stack.timers.call_at(self.clock.now + delay, self._ping, uri, interval, threshold)

    def _ping(self, uri: str, interval: float, threshold: int) -> None:
        if not any(g.uri == uri for t in self.trunks() if t.options_ping for g in t.gateways):
            self._handles.pop(uri, None)
            self.down.discard(uri)  # no longer configured
            return
        req = Request("OPTIONS", uri)
        req.add("max-forwards", "70")
        host = self.stack.config.local.get("udp", ("127.0.0.1", 5060))[0]
        req.add("from", f"<sip:ping@{host}>;tag={self.stack.new_id()}")
        req.add("to", f"<{uri}>")
        req.add("call-id", f"{self.stack.new_id()}@ping")
        req.add("cseq", "1 OPTIONS")
        txn = self.stack.send_request(req, uri_to_peer(uri), self.clock.now)
        txn.user = Ping(uri, threshold)
        self.pings += 1
        self._schedule(uri, interval, threshold)

    def result(self, ping: Ping, resp: Response | None) -> None:
        """A ping's final response (any answer means alive), or None for a timeout."""
        uri, threshold = ping.uri, ping.threshold
        if resp is not None:
            self.misses[uri] = 0
            if uri in self.down:
                self.down.discard(uri)
                log.warning("gateway %s is up again", uri)
        else:
            self.misses[uri] += 1
            if self.misses[uri] >= threshold and uri not in self.down:
                self.down.add(uri)
                log.warning("gateway %s is down (%d OPTIONS unanswered)", uri, self.misses[uri])
