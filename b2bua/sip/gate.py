"""The front gate: what an outsider's request must pass before it gets a transaction, a response or a thought.

Sans-I/O like the stack that consults it (:meth:`~b2bua.sip.stack.SipStack.receive` asks :meth:`Gate.check`
for every new out-of-dialog request, before any state is made), with the same ``now``:

* **scanners**: a ``User-Agent`` naming a known scanner (friendly-scanner, sipvicious, sipcli, ...) from an
  address outside the trusted networks is dropped without an answer: an answer only tells it that a SIP
  server lives here;
* **banned sources**: an address that failed digest authentication ``ban_after`` times within ``window_s`` is
  dropped for ``ban_s`` (the fail2ban pattern); operators list and lift bans (``/api/bans``, ``b2bua bans``);
* **per-source rates** (Kamailio's pike and ratelimit modules' idea): a token bucket per address and method
  class (INVITE, REGISTER, OPTIONS, other), one set of rates for the trusted networks (the trunks) and a far
  lower one for everyone else. Over the rate, an outsider's request is dropped; a trusted one gets a
  stateless 503 with Retry-After (RFC 3261 §21.5.4), so a carrier's proxy backs off instead of retrying;
* **load shedding**: new calls beyond ``max_new_calls_per_s`` (everyone together), or any while the process
  says it is overloaded (:attr:`Gate.shedding`: its event loop runs late), get the same stateless 503. A 503
  from a transaction would cost what overload cannot spare (a transaction, retransmissions until the ACK);
  this one costs a parse, and the calls let in complete. It comes after the per-source rates, so what an
  outsider sends over its rate never counts against the capacity, and outsiders together may take at most
  :data:`OUTSIDERS_SHARE` of it: the rest stays the trunks' (a flood of 1,700 INVITEs a second from two
  addresses once took all 400 a second and refused 42 % of the carrier's calls ``capacity``).

Every table an outsider can grow is bounded (``max_sources`` buckets, ``max_bans`` bans, least recently used
evicted, counted), and every decision is counted in :attr:`Gate.stats`.

Why not in the kernel (nftables ``limit``) or a proxy: those count packets, not SIP methods or failed
logins, and a lab running SIPp must see the same behaviour without root; a front proxy can still do both.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field

from .message import Request

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: User-Agent substrings of SIP scanners and war-dialers (lower case)
SCANNERS = ("friendly-scanner", "sipvicious", "sipcli", "sip-scan", "sipscan", "vaxsipuseragent", "pplsip",
            "iwar", "sundayddr", "siparmyknife", "voip-scan", "smap")

METHOD_CLASSES = ("INVITE", "REGISTER", "OPTIONS", "other")


@dataclass(frozen=True, slots=True)
class Rate:
    """A token bucket: ``per_s`` requests a second on average, ``burst`` at once."""

    per_s: float
    burst: float


@dataclass(frozen=True, slots=True)
class GateConfig:
    trusted: tuple[IPNetwork, ...] = ()
    #: trusted networks believed only over TLS (trunks with mutual TLS): their requests over UDP or TCP get 403
    tls_only: tuple[IPNetwork, ...] = ()
    untrusted_rates: dict[str, Rate] = field(default_factory=lambda: {
        "INVITE": Rate(5, 10), "REGISTER": Rate(5, 10), "OPTIONS": Rate(5, 10), "other": Rate(10, 20)})
    trusted_rates: dict[str, Rate] = field(default_factory=lambda: {
        "INVITE": Rate(1000, 2000), "REGISTER": Rate(500, 1000), "OPTIONS": Rate(500, 1000),
        "other": Rate(2000, 4000)})
    scanners: tuple[str, ...] = SCANNERS
    ban_after: int = 10  # failed digest answers ...
    window_s: float = 60.0  # ... within this long ...
    ban_s: float = 600.0  # ... ban the address this long (0: never ban)
    retry_after_s: int = 5  # in the 503 a trusted source over its rate gets
    max_sources: int = 50_000
    max_bans: int = 10_000
    #: new calls (INVITEs) a second from everyone together; beyond: a stateless 503 (None: no limit)
    max_new_calls_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """What to do instead of admitting a request: ``status`` None drops it silently, else a stateless answer."""

    reason: str
    status: int | None = None
    retry_after: int | None = None


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float

    def take(self, now: float, per_s: float, burst: float) -> bool:
        """Refill for the time since the last request (up to ``burst``), then take a token if there is one."""
        self.tokens = min(burst, self.tokens + (now - self.at) * per_s)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass(frozen=True, slots=True)
class Ban:
    host: str
    until: float  # on the stack's clock
    reason: str


_OUTSIDER, _TRUSTED, _TLS_ONLY = 0, 1, 2
#: of ``max_new_calls_per_s``, what addresses outside the trusted networks may take together
OUTSIDERS_SHARE = 0.1


class Gate:
    def __init__(self, config: GateConfig | None = None):
        self.config = config or GateConfig()
        self.stats: Counter[str] = Counter()
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._bans: OrderedDict[str, Ban] = OrderedDict()
        self._trusted_cache: OrderedDict[str, int] = OrderedDict()  # OUTSIDER, TRUSTED or TLS_ONLY
        #: set while the process is overloaded (the event loop runs late): new calls get a stateless 503
        self.shedding = False
        self._calls = _Bucket(0.0, -1e9)
        self._outsiders_calls = _Bucket(0.0, -1e9)

    def reconfigure(self, config: GateConfig) -> None:
        """A reload: new trusted networks and rates from now on; bans and buckets stay."""
        self.config = config
        self._trusted_cache.clear()

    # -- who is trusted --------------------------------------------------------------------------
    def trusted(self, host: str) -> bool:
        """Whether ``host`` is inside a trusted network (a trunk's addresses)."""
        return self._standing(host) != _OUTSIDER

    def _standing(self, host: str) -> int:
        """Outsider, trusted, or trusted over TLS only. Cached per address."""
        known = self._trusted_cache.get(host)
        if known is None:
            known = _OUTSIDER
            try:
                ip = ipaddress.ip_address(host.strip("[]"))
                if any(ip in net for net in self.config.tls_only):
                    known = _TLS_ONLY
                elif any(ip in net for net in self.config.trusted):
                    known = _TRUSTED
            except ValueError:
                pass
            self._remember(self._trusted_cache, host, known, self.config.max_sources)
        return known

    # -- the check ---------------------------------------------------------------------------------
    def check(self, req: Request, host: str, now: float, transport: str = "udp") -> Refusal | None:
        """None: let the request in; else how to refuse it (counted in :attr:`stats` by reason)."""
        refusal = self._check(req, host, now, transport)
        if refusal is not None:
            self.stats[f"refused:{refusal.reason}"] += 1
        return refusal

    def _check(self, req: Request, host: str, now: float, transport: str) -> Refusal | None:
        standing = self._standing(host)
        if standing == _TLS_ONLY and transport != "tls":
            return Refusal("not_tls", 403)  # a mutual-TLS trunk's address over a transport anyone can forge
        trusted = standing != _OUTSIDER
        if not trusted:
            ban = self._bans.get(host)
            if ban is not None:
                if now < ban.until:
                    return Refusal("banned")
                del self._bans[host]
                self.stats["bans_expired"] += 1
            agent = (req.get("user-agent") or "").lower()
            if agent and any(s in agent for s in self.config.scanners):
                return Refusal("scanner")
        cls = req.method if req.method in METHOD_CLASSES else "other"
        rate = (self.config.trusted_rates if trusted else self.config.untrusted_rates)[cls]
        key = (host, cls)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(rate.burst, now)
            if self._remember(self._buckets, key, bucket, self.config.max_sources):
                self.stats["sources_evicted"] += 1
        else:
            self._buckets.move_to_end(key)
        if not bucket.take(now, rate.per_s, rate.burst):
            if trusted:
                return Refusal(f"rate:{cls}", 503, self.config.retry_after_s)
            return Refusal(f"rate:{cls}")
        if cls == "INVITE":
            return self._overload(now, trusted)
        return None

    def _overload(self, now: float, trusted: bool) -> Refusal | None:
        """Load shedding at the door: a 503 that costs no transaction, so the calls let in still complete."""
        if self.shedding:
            return Refusal("overload", 503, self.config.retry_after_s)
        limit = self.config.max_new_calls_per_s
        if limit is None:
            return None
        if not trusted:  # outsiders' share first, so what it refuses takes nothing from the trunks
            share = limit * OUTSIDERS_SHARE
            if not self._outsiders_calls.take(now, share, max(1.0, share)):
                return Refusal("capacity", 503, self.config.retry_after_s)
        if self._calls.take(now, limit, limit):  # a second's worth of burst
            return None
        return Refusal("capacity", 503, self.config.retry_after_s)

    # -- failed logins and bans ----------------------------------------------------------------------
    def auth_failed(self, host: str, now: float) -> bool:
        """A wrong digest answer from ``host``; True when this one got it banned."""
        self.stats["auth_failures"] += 1
        cfg = self.config
        if cfg.ban_s <= 0 or self.trusted(host):
            return False  # a trunk is never banned: its carrier's calls would all fail
        times = self._failures.get(host)
        if times is None:
            times = deque()
            self._remember(self._failures, host, times, cfg.max_sources)
        times.append(now)
        while times and times[0] < now - cfg.window_s:
            times.popleft()
        if len(times) < cfg.ban_after:
            return False
        del self._failures[host]
        self.ban(host, cfg.ban_s, now, f"{len(times)} failed authentications in {cfg.window_s:g} s")
        return True

    def ban(self, host: str, seconds: float, now: float, reason: str) -> None:
        self._bans.pop(host, None)
        if self._remember(self._bans, host, Ban(host, now + seconds, reason), self.config.max_bans):
            self.stats["bans_evicted"] += 1
        self.stats["bans"] += 1

    def lift(self, host: str) -> bool:
        """An operator lifts a ban; False when ``host`` was not banned."""
        if self._bans.pop(host, None) is None:
            return False
        self.stats["bans_lifted"] += 1
        return True

    def bans(self, now: float) -> list[Ban]:
        """The bans in force (the expired ones are forgotten)."""
        for host in [h for h, b in self._bans.items() if b.until <= now]:
            del self._bans[host]
            self.stats["bans_expired"] += 1
        return list(self._bans.values())

    @property
    def tracked(self) -> int:
        """Addresses (and method classes) with a bucket now."""
        return len(self._buckets)

    @staticmethod
    def _remember(table: OrderedDict, key: object, value: object, limit: int) -> bool:
        """Put ``key`` in ``table`` as its newest entry; evict the oldest over ``limit`` (True if one went)."""
        table[key] = value
        table.move_to_end(key)
        if len(table) > limit:
            table.popitem(last=False)
            return True
        return False


__all__ = ["Ban", "Gate", "GateConfig", "METHOD_CLASSES", "Rate", "Refusal", "SCANNERS"]
