"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760).

Supports MD5 and SHA-256 (and their ``-sess`` variants) with ``qop=auth``.
The UAS side (:class:`DigestChallenger`) issues self-validating nonces (a
timestamp and a random part, signed with HMAC-SHA-256) so challenging keeps
no state; only the highest nonce-count seen per nonce is remembered, for
replay protection (RFC 7616 §3.3). The UAC side is :func:`answer_challenge`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ParseError
from .grammar import TOKEN_RE, quote, read_quoted
from .message import Request, Response
from .uri import SipUri

#: Canonical spelling of each supported algorithm (RFC 7616 §3.2, RFC 8760 §2).
_ALGORITHMS = {
    "MD5": hashlib.md5,
    "MD5-SESS": hashlib.md5,
    "SHA-256": hashlib.sha256,
    "SHA-256-SESS": hashlib.sha256,
}
_CANONICAL = {"MD5": "MD5", "MD5-SESS": "MD5-sess", "SHA-256": "SHA-256", "SHA-256-SESS": "SHA-256-sess"}
#: Preference order, strongest first (RFC 8760 §2.4).
_STRENGTH = ("SHA-256", "SHA-256-sess", "MD5", "MD5-sess")

_NONCE_BYTES = 8 + 8 + 16  # timestamp (ms), random, truncated HMAC
_HEX = frozenset("0123456789abcdefABCDEF")


def canonical_algorithm(name: str | None) -> str | None:
    """The canonical name of a supported algorithm; absent means MD5 (RFC 7616 §3.3)."""
    if name is None:
        return "MD5"
    return _CANONICAL.get(name.upper())


def digest_hash(algorithm: str, data: str) -> str:
    """``H(data)`` as lower-case hex for ``algorithm`` (RFC 7616 §3.4.1)."""
    return _ALGORITHMS[algorithm.upper()](data.encode("utf-8")).hexdigest()


def digest_response(algorithm: str, username: str, realm: str, password: str, method: str, uri: str,
                    nonce: str, *, qop: str | None = None, nc: str | None = None,
                    cnonce: str | None = None) -> str:
    """The ``response`` value (RFC 7616 §3.4.1-§3.4.3; RFC 2069 form when ``qop`` is None).

    ``nc`` is the 8-hex-digit nonce count as sent on the wire.
    """
    alg = algorithm.upper()
    ha1 = digest_hash(alg, f"{username}:{realm}:{password}")
    if alg.endswith("-SESS"):
        if cnonce is None:
            raise ValueError("-sess algorithms need a cnonce")
        ha1 = digest_hash(alg, f"{ha1}:{nonce}:{cnonce}")
    ha2 = digest_hash(alg, f"{method}:{uri}")
    if qop is None:
        return digest_hash(alg, f"{ha1}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise ValueError("qop needs nc and cnonce")
    return digest_hash(alg, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def parse_auth_header(value: str) -> list[tuple[str, dict[str, str]]]:
    """Parse challenges or credentials into ``(scheme, params)`` pairs (RFC 3261 §25.1).

    Parameter names are lower-cased, quoted values unquoted (commas inside
    quotes do not split). Several challenges in one value are split at each
    new scheme token. Raises :class:`ParseError` on bad syntax or a repeated
    parameter (RFC 7616 §3.3).
    """
    out: list[tuple[str, dict[str, str]]] = []
    params: dict[str, str] | None = None
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in " \t,":
            i += 1
        if i >= n:
            break
        m = TOKEN_RE.match(value, i)
        if m is None:
            raise ParseError(f"bad authentication parameter at {value[i:i + 20]!r}")
        name = m.group()
        j = m.end()
        while j < n and value[j] in " \t":
            j += 1
        if j < n and value[j] == "=":
            if params is None:
                raise ParseError("authentication parameter before the scheme")
            j += 1
            while j < n and value[j] in " \t":
                j += 1
            if j < n and value[j] == '"':
                val, j = read_quoted(value, j)
            else:
                vm = TOKEN_RE.match(value, j)
                if vm is None:
                    raise ParseError(f"bad value for {name!r}")
                val, j = vm.group(), vm.end()
            key = name.lower()
            if key in params:
                raise ParseError(f"repeated parameter {name!r}")
            params[key] = val
            while j < n and value[j] in " \t":
                j += 1
            if j < n and value[j] != ",":
                raise ParseError(f"expected a comma after {name!r}")
        else:
            params = {}
            out.append((name, params))
        i = j
    return out


#: the reason of a request that carried no credentials (the first one, before the challenge)
NO_CREDENTIALS = "no Digest credentials"


@dataclass(slots=True)
class AuthResult:
    """The outcome of :meth:`DigestChallenger.verify`.

    ``username`` is the claimed name whenever credentials were parsed; trust
    it only when ``ok``. ``stale`` asks for a new challenge with ``stale=true``.
    """

    ok: bool
    username: str | None
    stale: bool
    reason: str


class DigestChallenger:
    """UAS/proxy side of Digest (RFC 3261 §22.2, §22.3; RFC 7616 §3.3, §3.4).

    ``lookup`` returns the password of a user or None. Credentials without
    ``qop`` (RFC 2069 style, RFC 3261 §22.4) are refused unless
    ``allow_rfc2069`` is set, because they cannot be protected against replay.
    """

    #: Bound on the nonce-count table; when full, the oldest nonces become stale.
    max_nonces = 10000

    def __init__(self, realm: str, lookup: Callable[[str], str | None], *, nonce_ttl: float = 300.0,
                 algorithms: tuple[str, ...] = ("SHA-256", "MD5"), secret: bytes | None = None,
                 allow_rfc2069: bool = False):
        algs = []
        for a in algorithms:
            c = canonical_algorithm(a)
            if c is None:
                raise ValueError(f"unsupported digest algorithm {a!r}")
            algs.append(c)
        if not algs:
            raise ValueError("no digest algorithm")
        self.realm = realm
        self.lookup = lookup
        self.nonce_ttl = nonce_ttl
        self.algorithms = tuple(sorted(dict.fromkeys(algs), key=_STRENGTH.index))
        accepted = set(self.algorithms)
        accepted.update(a + "-sess" for a in self.algorithms if not a.endswith("-sess"))
        self._accepted = frozenset(accepted)
        self.allow_rfc2069 = allow_rfc2069
        self._secret = secret if secret is not None else os.urandom(32)
        self._nc: dict[str, tuple[int, int]] = {}  # nonce -> (highest nc, issue time in ms)
        self._floor_ms = -1  # nonces issued at or before this are stale (table overflow)
        #: nonce counts forgotten because the table was full (``b2bua_limit_hits_total{limit="nonces"}``)
        self.evictions = 0
        self._next_purge = 0.0

    # -- nonces ------------------------------------------------------------------------
    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body + self.realm.encode("utf-8"), hashlib.sha256).digest()[:16]

    def make_nonce(self, now: float) -> str:
        """A nonce carrying its issue time, signed with our secret (RFC 7616 §3.3)."""
        body = max(0, int(now * 1000)).to_bytes(8, "big") + os.urandom(8)
        return (body + self._mac(body)).hex()

    def _nonce_time(self, nonce: str) -> int | None:
        """The issue time (ms) of a nonce we made, or None if it is not ours."""
        if len(nonce) != 2 * _NONCE_BYTES:
            return None
        try:
            raw = bytes.fromhex(nonce)
        except ValueError:
            return None
        body, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        return int.from_bytes(body[:8], "big")

    def _is_stale(self, issued_ms: int, now: float) -> bool:
        age = now - issued_ms / 1000.0
        return age > self.nonce_ttl or age < -1.0 or issued_ms <= self._floor_ms

    def purge(self, now: float) -> None:
        """Forget nonce counts of expired nonces."""
        self._nc = {k: v for k, v in self._nc.items() if not self._is_stale(v[1], now)}
        self._next_purge = now + self.nonce_ttl / 4

    def _record_nc(self, nonce: str, nc: int, issued_ms: int, now: float) -> bool:
        """Remember ``nc`` for ``nonce``; False if it is not above the last one seen."""
        prev = self._nc.get(nonce)
        if prev is not None:
            if nc <= prev[0]:
                return False
            self._nc[nonce] = (nc, issued_ms)
            return True
        if now >= self._next_purge or len(self._nc) >= self.max_nonces:
            self.purge(now)
        if len(self._nc) >= self.max_nonces:
            # Evict the oldest nonce and make everything issued up to it stale,
            # so forgetting its count cannot open a replay window.
            oldest = min(self._nc, key=lambda k: self._nc[k][1])
            self._floor_ms = max(self._floor_ms, self._nc.pop(oldest)[1])
            self.evictions += 1
            if issued_ms <= self._floor_ms:
                return False
        self._nc[nonce] = (nc, issued_ms)
        return True

    # -- challenge and verification ---------------------------------------------------
    def challenge(self, now: float, *, stale: bool = False) -> list[str]:
        """WWW-Authenticate / Proxy-Authenticate values, strongest first (RFC 8760 §2.4)."""
        nonce = self.make_nonce(now)
        extra = ", stale=true" if stale else ""
        return [f'Digest realm={quote(self.realm)}, nonce="{nonce}", algorithm={alg}, qop="auth"{extra}'
                for alg in self.algorithms]

    def verify(self, request: Request, now: float, *, header: str = "authorization") -> AuthResult:
        """Check the request's credentials for our realm (RFC 3261 §22.4, RFC 7616 §3.4)."""
        creds: list[dict[str, str]] = []
        for value in request.get_all(header):
            try:
                creds.extend(p for s, p in parse_auth_header(value) if s.lower() == "digest")
            except ParseError:
                continue
        if not creds:
            return AuthResult(False, None, False, NO_CREDENTIALS)
        params = next((p for p in creds if p.get("realm") == self.realm), None)
        if params is None:
            return AuthResult(False, creds[0].get("username"), False, "wrong realm")
        username = params.get("username")
        for name in ("username", "nonce", "uri", "response"):
            if name not in params:
                return AuthResult(False, username, False, f"missing {name}")
        assert username is not None

        def fail(reason: str, stale: bool = False) -> AuthResult:
            return AuthResult(False, username, stale, reason)

        alg = canonical_algorithm(params.get("algorithm"))
        if alg is None or alg not in self._accepted:
            return fail("unsupported algorithm")
        qop = params.get("qop")
        nc_text = params.get("nc")
        cnonce = params.get("cnonce")
        nc = 0
        if qop is not None:
            if qop.lower() != "auth":
                return fail("unsupported qop")
            if cnonce is None or nc_text is None or len(nc_text) != 8 or not _HEX.issuperset(nc_text):
                return fail("bad nc or cnonce")
            nc = int(nc_text, 16)
        elif not self.allow_rfc2069:
            return fail("qop=auth required")
        elif alg.endswith("-sess"):
            return fail("-sess needs qop")
        if not _uri_matches(params["uri"], request.uri):
            return fail("uri does not match the Request-URI")
        password = self.lookup(username)
        if password is None:
            return fail("unknown user")
        expected = digest_response(alg, username, self.realm, password, request.method, params["uri"],
                                   params["nonce"], qop=qop, nc=nc_text, cnonce=cnonce)
        given = params["response"].lower().encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(expected.encode("ascii"), given):
            return fail("wrong response")
        # A right digest over a nonce that is not (or no longer) valid is "stale"
        # (RFC 7616 §3.3): the client knows the password and may retry silently.
        issued = self._nonce_time(params["nonce"])
        if issued is None:
            return fail("unknown nonce", stale=True)
        if self._is_stale(issued, now):
            return fail("stale nonce", stale=True)
        if qop is not None and not self._record_nc(params["nonce"], nc, issued, now):
            if issued <= self._floor_ms:
                return fail("stale nonce", stale=True)
            return fail("replayed nonce count")
        return AuthResult(True, username, False, "ok")


def _uri_matches(digest_uri: str, request_uri: str) -> bool:
    """The ``uri`` parameter names the Request-URI (RFC 3261 §22.4 item 8, RFC 7616 §3.4.6)."""
    if digest_uri == request_uri:
        return True
    try:
        a, b = SipUri.parse(digest_uri), SipUri.parse(request_uri)
    except ParseError:
        return False
    return a.equivalent(b) and a.headers == b.headers


def answer_challenge(request: Request, challenge_response: Response, username: str, password: str, *,
                     nc: int = 1, cnonce: str | None = None) -> tuple[str, str] | None:
    """Credentials for a 401 or 407 (RFC 3261 §22.2, §22.3).

    Picks the strongest supported algorithm offered (RFC 8760 §2.4), answers
    with ``qop=auth`` when offered and in RFC 2069 form when no qop was
    offered. Returns ``(header key, value)`` or None if nothing is usable.
    """
    if challenge_response.status == 401:
        key_in, key_out = "www-authenticate", "authorization"
    elif challenge_response.status == 407:
        key_in, key_out = "proxy-authenticate", "proxy-authorization"
    else:
        return None
    best: tuple[int, str, dict[str, str], str | None] | None = None
    for value in challenge_response.get_all(key_in):
        try:
            challenges = parse_auth_header(value)
        except ParseError:
            continue
        for scheme, params in challenges:
            if scheme.lower() != "digest" or "realm" not in params or "nonce" not in params:
                continue
            alg = canonical_algorithm(params.get("algorithm"))
            if alg is None:
                continue
            qop: str | None = None
            if "qop" in params:
                options = [o.strip().lower() for o in params["qop"].split(",")]
                if "auth" not in options:
                    continue  # only auth-int offered
                qop = "auth"
            elif alg.endswith("-sess"):
                continue
            rank = _STRENGTH.index(alg)
            if best is None or rank < best[0]:
                best = (rank, alg, params, qop)
    if best is None:
        return None
    _, alg, params, qop = best
    realm, nonce = params["realm"], params["nonce"]
    nc_text = f"{nc:08x}"
    if cnonce is None and (qop is not None or alg.endswith("-sess")):
        cnonce = secrets.token_hex(8)
    response = digest_response(alg, username, realm, password, request.method, request.uri, nonce,
                               qop=qop, nc=nc_text if qop else None, cnonce=cnonce)
    parts = [
        f"username={quote(username)}", f"realm={quote(realm)}", f"nonce={quote(nonce)}",
        f"uri={quote(request.uri)}", f'response="{response}"', f"algorithm={alg}",
    ]
    if qop is not None:
        parts += [f"cnonce={quote(cnonce or '')}", f"qop={qop}", f"nc={nc_text}"]
    if "opaque" in params:
        parts.append(f"opaque={quote(params['opaque'])}")
    return key_out, "Digest " + ", ".join(parts)
