"""Call routing: which trunk a request came from, where the call goes, and per-trunk limits.

- A request's source address selects its trunk (CIDR allow-lists); an unknown source is refused
  with 403 unless it is an authenticated staff device.
- From a carrier, the dialled number (DID) selects a department, whose phones sit behind a PBX
  trunk; an unknown number gets the configured answer.
- From the PBX, the lab or a staff device, the dialled number in national form selects an outbound
  route by longest prefix; its trunks' gateways are tried in order (or weighted), numbers written
  the way each trunk wants them.
- Each source trunk has a concurrent-call limit and a calls-per-second limit (503 + Retry-After).
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ..call.identity import Notice, NumberPlan, effective_caller_id, inbound, outbound
from ..call.route import Route
from ..config import Config, Department, Device, RouteConfig, Trunk
from ..sip.errors import SipError
from ..sip.events import Peer
from ..sip.message import Request, Response
from ..sip.registrar import Registrar
from ..sip.stack import make_response
from ..sip.uri import Address
from .numbers import to_e164, to_national


@dataclass
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def dialled(uri: str) -> str:
    """The user part of a sip:/sips: Request-URI, or a tel: URI's number."""
    scheme, _, rest = uri.partition(":")
    if scheme.lower() == "tel":
        return rest.split(";", 1)[0]
    user, at, _ = rest.partition("@")
    return user.split(";", 1)[0] if at else ""


def _national(number: str) -> str:
    try:
        return to_national(number)
    except ValueError:
        return number  # "service", an extension with letters: routed by its text


def _for_trunk(number: str, trunk: Trunk) -> str:
    try:
        return to_e164(number) if trunk.number_format == "e164" else to_national(number)
    except ValueError:
        return number


@dataclass
class Router:
    config: Config
    registrar: Registrar
    #: calls in progress per source trunk, maintained by :meth:`release`
    active: Counter[str] = field(default_factory=Counter)
    #: new calls accepted per source trunk
    attempts: Counter[str] = field(default_factory=Counter)
    #: gateway URIs that stopped answering OPTIONS (see :class:`GatewayMonitor`)
    down: set[str] = field(default_factory=set)
    rejected: Counter[str] = field(default_factory=Counter)
    #: called once per outbound call that presents a department (the messenger hook)
    on_notice: Callable[[Notice], None] | None = None

    def __post_init__(self) -> None:
        r = self.config.routing
        self.trunks = {t.name: t for t in r.trunks}
        # the most specific range decides: a carrier on 127.0.0.2/32 is not the lab's 127.0.0.0/8
        self._nets = sorted(((ipaddress.ip_network(a, strict=False), t) for t in r.trunks for a in t.addresses),
                            key=lambda nt: nt[0].prefixlen, reverse=True)
        self.routes = sorted(r.routes, key=lambda x: len(x.prefix), reverse=True)
        self.departments: dict[str, Department] = {}
        for d in r.departments:
            for n in d.numbers:
                self.departments[to_e164(n)] = d
        self.devices = {d.username for d in r.devices}
        self.buckets = {t.name: TokenBucket(t.max_cps, max(1.0, t.max_cps)) for t in r.trunks}
        self._by_host: dict[str, Trunk | None] = {}
        self.plan = NumberPlan.build(r.departments)
        self.by_name = {d.name: d for d in r.departments}
        self.device_config = {d.username: d for d in r.devices}
        self._gateway_trunk = {_hostport(g.uri): t for t in r.trunks for g in t.gateways}

    def inherit(self, old: Router) -> None:
        """Keep counts of calls in progress across a reload."""
        self.active = old.active
        self.attempts = old.attempts
        self.rejected = old.rejected
        self.down = old.down
        self.on_notice = self.on_notice or old.on_notice
        for name, bucket in old.buckets.items():
            if name in self.buckets:
                self.buckets[name].tokens, self.buckets[name].stamp = bucket.tokens, bucket.stamp

    def source_trunk(self, host: str) -> Trunk | None:
        if host in self._by_host:
            return self._by_host[host]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return None
        found = next((trunk for net, trunk in self._nets if ip in net), None)
        if len(self._by_host) < 65536:  # a flood of strangers must not grow it without bound
            self._by_host[host] = found
        return found

    def release(self, route: Route) -> None:
        if route.source and self.active[route.source] > 0:
            self.active[route.source] -= 1

    # -- the decision --------------------------------------------------------------------
    def __call__(self, req: Request, peer: Peer, now: float) -> Route | Response:
        trunk = self.source_trunk(peer.host)
        number = dialled(req.uri)
        if trunk is None:
            from_user = dialled(req.from_.uri)
            if from_user not in self.devices:  # authenticated by the INVITE challenge already
                self.rejected["unknown_source"] += 1
                return make_response(req, 403, "Forbidden (unknown source)")
            return self._present(req, self._outbound(req, number, now), None)
        if self.active[trunk.name] >= trunk.max_calls or not self.buckets[trunk.name].take(now):
            self.rejected[f"limit:{trunk.name}"] += 1
            resp = make_response(req, 503, "Service Unavailable (trunk limit)")
            resp.add("retry-after", "2")
            return resp
        if trunk.kind == "carrier":
            route = self._inbound(req, number, trunk)
        else:
            route = self._outbound(req, number, now)
        if isinstance(route, Route):
            self._present(req, route, trunk)
            route.source = trunk.name
            route.symmetric_a = trunk.symmetric_rtp
            route.srtp_a = srtp_mode(trunk, peer.transport)
            self.active[trunk.name] += 1
            self.attempts[trunk.name] += 1
        return route

    # -- caller ID (b2bua/call/identity.py) -----------------------------------------------
    def _present(self, req: Request, route: Route | Response, source: Trunk | None) -> Route | Response:
        """Attach what each target sees as the caller: the department on carrier trunks."""
        if not isinstance(route, Route):
            return route
        if route.department is not None:  # a citizen's call to staff
            route.presentation = (inbound(req),) * len(route.targets)
            return route
        if route.peer is not None:  # a registered staff device: inside the city's phone system
            return route
        # fail closed: every target but the PBX's own gateways is outside (a carrier, or a route's target of
        # unknown kind), and sees the department or nobody, never the staff member
        trunks = [self._gateway_trunk.get(_hostport(t)) for t in route.targets]
        inside = [t is not None and t.kind == "pbx" for t in trunks]
        if all(inside):
            return route
        device, dept = self.caller(req, source)
        caller_id = None
        if dept is not None:
            caller_id = dept.policy.caller_id.model_copy(update={
                "public_number": dept.policy.caller_id.public_number or dept.numbers[0],
                "display_name": dept.policy.caller_id.display_name or dept.display_name})
        caller_id = effective_caller_id(caller_id, device)
        called = _national(dialled(req.uri))
        route.presentation = tuple(
            None if pbx else outbound(caller_id, t or OUTSIDE, req, department=dept.name if dept else None,
                                      called=called) for t, pbx in zip(trunks, inside, strict=True))
        notice = next((p.notice for p in route.presentation if p is not None and p.notice), None)
        if notice is not None and self.on_notice is not None:
            self.on_notice(notice)
        return route

    def caller(self, req: Request, source: Trunk | None) -> tuple[Device | None, Department | None]:
        """The staff device and department behind an outbound call: a device by its (authenticated)
        From user, a desk phone by its extension in the PBX number plan (From, then PAI, PPI)."""
        device = self.device_config.get(dialled(req.from_.uri))
        if device is not None:
            return device, self.by_name.get(device.department or "")
        if source is None or source.kind != "pbx":
            return None, None
        for key in ("from", "p-asserted-identity", "p-preferred-identity"):
            for value in req.get_all(key)[:1]:
                try:
                    name = self.plan.lookup(dialled(Address.parse(value).uri))
                except SipError:
                    continue
                if name is not None:
                    return None, self.by_name[name]
        return None, None

    def _inbound(self, req: Request, number: str, trunk: Trunk) -> Route | Response:
        try:
            dept = self.departments.get(to_e164(number))
        except ValueError:
            dept = None
        if dept is None:
            unknown = self.config.routing.unknown_number
            if unknown.prompt:  # an announcement first (staff protection plays it), then the status
                return Route([], name="unknown_number", direction="inbound", announcement=unknown.prompt,
                             release_status=unknown.status)
            return make_response(req, unknown.status)
        return self._department(dept)

    def fallback(self, target: str) -> Route | None:
        """Where a closed department's calls go instead: another department (by name) or a number."""
        dept = next((d for d in self.config.routing.departments if d.name == target), None)
        if dept is not None:
            return self._department(dept)
        national = _national(target)
        rc = next((rc for rc in self.routes if national.startswith(rc.prefix)), None)
        return self._route(rc, target) if rc is not None else None

    def _department(self, dept: Department) -> Route:
        pbx = self.trunks[dept.trunk]
        targets = [_with_user(g.uri, dept.extension) for g in _ordered(pbx.gateways, "ordered")]
        return Route(targets, name=f"dept:{dept.name}", department=dept.name, codecs=tuple(pbx.codecs),
                     symmetric_b=pbx.symmetric_rtp, srtp_b=srtp_mode(pbx, pbx.transport), direction="inbound")

    def _outbound(self, req: Request, number: str, now: float) -> Route | Response:
        bindings = self.registrar.lookup(number, now) if number else []  # expired bindings skipped
        if bindings:  # a registered staff device
            b = bindings[0]
            return Route([b.target], name=f"device:{number}", peer=b.source)
        national = _national(number)
        for rc in self.routes:
            if national.startswith(rc.prefix):
                return self._route(rc, number)
        return make_response(req, 404)

    def _route(self, rc: RouteConfig, number: str) -> Route:
        up: list[str] = []
        down: list[str] = []
        creds = (rc.credentials.username, rc.credentials.password) if rc.credentials else None
        for name in rc.trunks:
            t = self.trunks[name]
            creds = creds or ((t.credentials.username, t.credentials.password) if t.credentials else None)
            for g in _ordered(t.gateways, rc.strategy):
                uri = _with_user(g.uri, _for_trunk(number, t))
                if t.transport != "udp" and ";transport=" not in uri:
                    uri += f";transport={t.transport}"
                (down if g.uri in self.down else up).append(uri)
        # gateways that OPTIONS pings found down go last, not away (better late than no route)
        targets = up + down + list(rc.targets)
        first = self.trunks[rc.trunks[0]] if rc.trunks else None
        return Route(targets, name=rc.name, credentials=creds, failover=tuple(rc.failover_codes),
                     no_answer_timeout=rc.no_answer_timeout_s,
                     codecs=tuple(first.codecs) if first else (),
                     symmetric_b=first.symmetric_rtp if first else None,
                     srtp_b=srtp_mode(first, first.transport) if first else "off")


def srtp_mode(trunk: Trunk, transport: str) -> str:
    """A trunk's leg's SDES-SRTP mode for signalling over ``transport``: keys only over TLS unless the trunk
    says otherwise (RFC 4568 §8.3: the SDP carries them in the clear)."""
    if trunk.srtp != "off" and transport.lower() != "tls" and not trunk.sdes_over_cleartext:
        return "needs_tls"
    return trunk.srtp


#: how a target that is no trunk's gateway is treated: outside, like a carrier that gets P-Asserted-Identity
#: only (no branding it may not understand, no caller headers forwarded)
OUTSIDE = Trunk(name="(outside)", kind="carrier", addresses=["0.0.0.0/32"], call_info=False)


def _hostport(uri: str) -> tuple[str, int]:
    from ..sip.uri import SipUri

    try:
        u = SipUri.parse(uri)
    except SipError:
        return ("", 0)
    return u.host.lower(), u.port or (5061 if u.scheme == "sips" else 5060)


def _ordered(gateways: list, strategy: str) -> list:
    if strategy != "weighted" or len(gateways) < 2:
        return list(gateways)
    pool, out = list(gateways), []
    while pool:  # by weight; gateways of weight 0 only after all the others, in their order
        weights = [max(g.weight, 0) for g in pool]
        g = random.choices(pool, weights=weights)[0] if any(weights) else pool[0]
        out.append(g)
        pool.remove(g)
    return out


def _with_user(uri: str, user: str) -> str:
    """``sip:203.0.113.10:5060`` + ``0101234`` -> ``sip:0101234@203.0.113.10:5060``."""
    from ..sip.uri import SipUri

    u = SipUri.parse(uri)
    if user and not u.user:
        u.user = user
    return str(u)
