"""A sans-I/O registrar (RFC 3261 §10.3).

:meth:`Registrar.handle_register` applies steps 5-8 of §10.3 to a REGISTER
that the caller has already authenticated (steps 1-4 are the caller's) and
returns the response to send. Bindings are kept per user name, newest
first, and carry the transport address the REGISTER came from so devices
behind NAT can be reached.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate

from .errors import ParseError
from .events import Peer
from .grammar import unescape
from .message import Request, Response
from .stack import make_response
from .uri import Address, SipUri

_QVALUE_MAX_DIGITS = 3


@dataclass(slots=True)
class Binding:
    """One contact bound to an address-of-record (§10.3 step 7)."""

    aor: str
    #: The Contact URI as registered; escaped headers in it are kept for
    #: retrieval (RFC 4475 §3.3.14) but never applied, see :attr:`target`.
    contact: str
    expires_at: float
    call_id: str
    cseq: int
    source: Peer
    q: float | None = None

    @property
    def target(self) -> str:
        """The contact URI without its ``?headers`` part, for building requests."""
        try:
            uri = SipUri.parse(self.contact)
        except ParseError:
            return self.contact
        if uri.headers is None:
            return self.contact
        uri.headers = None
        return str(uri)

    def remaining(self, now: float) -> int:
        """Seconds left, rounded up, as listed in the 200 (§10.3 step 8)."""
        return max(0, math.ceil(self.expires_at - now))


class Registrar:
    """Location service fed by REGISTER requests (RFC 3261 §10.3).

    ``wall_clock`` gives the time for the Date header (§10.3 step 8); all
    expiry arithmetic uses the ``now`` passed in.
    """

    def __init__(self, *, min_expires: int = 60, max_expires: int = 3600, default_expires: int = 3600,
                 max_bindings_per_aor: int = 10, wall_clock: Callable[[], float] = time.time):
        if not 0 < min_expires <= max_expires or default_expires <= 0 or max_bindings_per_aor < 1:
            raise ValueError("bad registrar limits")
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.max_bindings_per_aor = max_bindings_per_aor
        self.wall_clock = wall_clock
        self._by_user: dict[str, list[Binding]] = {}

    # -- queries -------------------------------------------------------------------------
    def lookup(self, user: str, now: float) -> list[Binding]:
        """Live bindings of every AoR whose user part is ``user``, newest first."""
        return [b for b in self._by_user.get(user, ()) if b.expires_at > now]

    def purge(self, now: float) -> int:
        """Remove expired bindings; return how many were removed."""
        removed = 0
        for user in list(self._by_user):
            live = [b for b in self._by_user[user] if b.expires_at > now]
            removed += len(self._by_user[user]) - len(live)
            if live:
                self._by_user[user] = live
            else:
                del self._by_user[user]
        return removed

    # -- REGISTER ------------------------------------------------------------------------
    def handle_register(self, req: Request, now: float, source: Peer) -> Response:
        """Process an authenticated REGISTER (§10.3 steps 5-8) and build the response."""
        if req.method != "REGISTER":
            raise ValueError("not a REGISTER")
        # Step 5: the address-of-record from To.
        try:
            to_uri = SipUri.parse(req.to.uri)
        except ParseError:
            return self._reply(req, 400, "Bad To URI")
        if to_uri.scheme not in ("sip", "sips") or not to_uri.user:
            return self._reply(req, 404)
        user = unescape(to_uri.user)
        aor = f"{user}@{to_uri.host}"
        call_id, cseq = req.call_id, req.cseq[0]
        header_expires = _delta_seconds(req.get("expires"))
        contacts = req.get_all("contact")
        current = self.lookup(user, now)
        mine = [b for b in current if b.aor == aor]

        # Step 6: "*" removes every binding of the AoR.
        if "*" in contacts:
            if len(contacts) != 1 or header_expires != 0:
                return self._reply(req, 400, "Invalid Contact *")
            for b in mine:
                if b.call_id == call_id and cseq <= b.cseq:
                    return self._reply(req, 500, "Out Of Order CSeq")
            self._commit(user, [], [b for b in current if b.aor != aor])
            return self._ok(req, [], now)

        # Step 7: per contact expiry, then add/refresh/remove tentatively.
        updates: list[tuple[str, int, float | None]] = []
        for value in contacts:
            try:
                addr = Address.parse(value)
                SipUri.parse(addr.uri)
            except ParseError:
                return self._reply(req, 400, "Bad Contact")
            if "expires" in addr.params:
                expires = _delta_seconds(addr.params["expires"])
                if expires is None:
                    expires = self.default_expires  # malformed (§20.10): registrar default
            elif header_expires is not None:
                expires = header_expires
            else:
                expires = self.default_expires
            if 0 < expires < self.min_expires:
                resp = self._reply(req, 423)
                resp.add("min-expires", str(self.min_expires))
                return resp
            q = addr.params.get("q")
            qvalue = None
            if q is not None:
                qvalue = _qvalue(q)
                if qvalue is None:
                    return self._reply(req, 400, "Bad q Value")
            updates.append((addr.uri, min(expires, self.max_expires), qvalue))

        kept = list(mine)
        added: list[Binding] = []
        for contact, expires, qvalue in updates:
            # A contact repeated in this request replaces its earlier copy.
            added = [b for b in added if not _same_contact(b.contact, contact)]
            for i, old in enumerate(kept):
                if _same_contact(old.contact, contact):
                    if old.call_id == call_id and cseq <= old.cseq:
                        return self._reply(req, 500, "Out Of Order CSeq")
                    del kept[i]
                    break
            if expires > 0:
                added.append(Binding(aor, contact, now + expires, call_id, cseq, source, qvalue))
        if len(added) > self.max_bindings_per_aor:
            return self._reply(req, 403, "Too Many Contacts")
        # Over the limit: the least recently registered bindings of the AoR go.
        del kept[max(0, self.max_bindings_per_aor - len(added)):]
        survivors = {id(b) for b in kept}
        others = [b for b in current if b.aor != aor or id(b) in survivors]
        self._commit(user, added, others)
        return self._ok(req, added + kept, now)

    # -- helpers -------------------------------------------------------------------------
    def _commit(self, user: str, added: list[Binding], others: list[Binding]) -> None:
        """Make the update visible all at once (§10.3 step 7, last paragraph)."""
        bindings = added + others
        if bindings:
            self._by_user[user] = bindings
        else:
            self._by_user.pop(user, None)

    def _reply(self, req: Request, status: int, reason: str | None = None) -> Response:
        return make_response(req, status, reason, to_tag=secrets.token_hex(6))

    def _ok(self, req: Request, bindings: list[Binding], now: float) -> Response:
        """The 200 listing all current bindings of the AoR (§10.3 step 8)."""
        resp = self._reply(req, 200)
        for b in bindings:
            q = "" if b.q is None else f";q={_format_q(b.q)}"
            resp.add("contact", f"<{b.contact}>;expires={b.remaining(now)}{q}")
        resp.add("date", formatdate(self.wall_clock(), usegmt=True))
        return resp


def _delta_seconds(value: str | None) -> int | None:
    """A delta-seconds value (§25.1), None when absent or malformed."""
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or not value.isascii():
        return None
    return int(value)


def _qvalue(text: str) -> float | None:
    """Parse a qvalue (§20.10): ``0`` to ``1`` with at most three decimals."""
    whole, dot, frac = text.partition(".")
    if whole not in ("0", "1") or (dot and not frac) or len(frac) > _QVALUE_MAX_DIGITS:
        return None
    if frac and (not frac.isdigit() or not frac.isascii()):
        return None
    value = float(text)
    return value if value <= 1.0 else None


def _format_q(q: float) -> str:
    return f"{q:.3f}".rstrip("0").rstrip(".") or "0"


def _same_contact(a: str, b: str) -> bool:
    """Contact URI comparison (§10.3 step 7 uses the §19.1.4 rules)."""
    if a == b:
        return True
    try:
        ua, ub = SipUri.parse(a), SipUri.parse(b)
    except ParseError:
        return False
    return ua.equivalent(ub)
