"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966) and name-addr values (§20.10)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import ParseError
from .grammar import format_params, parse_params, quote, read_quoted, unescape

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*\Z")
_PORT_RE = re.compile(r"[0-9]{1,5}\Z")
_DISPLAY_TOKENS = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`'~]+)*\Z")
_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)\Z")


@dataclass(slots=True)
class SipUri:
    """A parsed URI. ``sip``/``sips`` are fully parsed; ``tel`` keeps the number in ``user``.

    Other schemes (RFC 4475 §3.3.2) keep their text in ``opaque``.
    """

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None
    opaque: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse ``text``; raises :class:`ParseError` for malformed sip/sips URIs."""
        scheme, colon, rest = text.partition(":")
        if not colon or not _SCHEME_RE.match(scheme):
            raise ParseError(f"bad URI {text[:60]!r}")
        scheme = scheme.lower()
        if any(c in text for c in " \t\r\n"):
            raise ParseError(f"whitespace inside URI {text[:60]!r}")
        if scheme == "tel":
            number, _, params = rest.partition(";")
            if not number:
                raise ParseError("empty tel URI")
            return cls("tel", user=number, params=parse_params(";" + params) if params else {})
        if scheme not in ("sip", "sips"):
            return cls(scheme, opaque=rest)
        user = password = None
        at = rest.rfind("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            user, pc, pw = userinfo.partition(":")
            if pc:
                password = pw
            if not user:
                raise ParseError("empty user part in URI")
        rest, q, headers = rest.partition("?")
        hostport, sc, params = rest.partition(";")
        if hostport.startswith("["):
            end = hostport.find("]")
            if end < 0:
                raise ParseError("unterminated IPv6 reference")
            host, portpart = hostport[: end + 1], hostport[end + 1 :]
            if portpart and not portpart.startswith(":"):
                raise ParseError("bad host:port")
            port_text = portpart[1:] if portpart else ""
            has_port = bool(portpart)
        else:
            host, has_port_sep, port_text = hostport.partition(":")
            has_port = bool(has_port_sep)
        if not host or not _HOST_RE.match(host):
            raise ParseError(f"bad host in URI {text[:60]!r}")
        port = None
        if has_port:
            if not _PORT_RE.match(port_text) or int(port_text) > 65535:
                raise ParseError(f"bad port in URI {text[:60]!r}")
            port = int(port_text)
        return cls(
            scheme,
            user=user,
            password=password,
            host=host.lower(),
            port=port,
            params=parse_params(";" + params) if sc else {},
            headers=headers if q else None,
        )

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        if self.scheme == "tel":
            return f"tel:{self.user}{format_params(self.params)}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(format_params(self.params))
        if self.headers is not None:
            out.append("?" + self.headers)
        return "".join(out)

    @property
    def transport(self) -> str:
        """The ``transport`` parameter, lower-cased; ``udp`` (``tls`` for sips) by default."""
        t = self.params.get("transport")
        if t:
            return t.lower()
        return "tls" if self.scheme == "sips" else "udp"

    def equivalent(self, other: SipUri) -> bool:
        """URI comparison per §19.1.4 (escapes decoded, host case-insensitive)."""
        if self.scheme != other.scheme:
            return False
        if self.opaque is not None or other.opaque is not None:
            return self.opaque == other.opaque
        if unescape(self.user or "") != unescape(other.user or ""):
            return False
        if (self.password is None) != (other.password is None) or \
                unescape(self.password or "") != unescape(other.password or ""):
            return False
        if self.host != other.host or self.port != other.port:
            return False
        mine, theirs = _unescaped_params(self.params), _unescaped_params(other.params)
        for name in ("user", "ttl", "method", "maddr", "transport"):
            a, b = mine.get(name), theirs.get(name)
            if (a is None) != (b is None) or (a and b and a.lower() != b.lower()):
                return False
        for name in set(mine) & set(theirs):
            a, b = mine[name], theirs[name]
            if (a.lower() if a else a) != (b.lower() if b else b):
                return False
        return _header_set(self.headers) == _header_set(other.headers)


def _unescaped_params(params: dict[str, str | None]) -> dict[str, str | None]:
    """Parameter names and values with %-escapes decoded, for comparison (§19.1.4)."""
    return {unescape(k).lower(): (unescape(v) if v is not None else None) for k, v in params.items()}


def _header_set(headers: str | None) -> set[tuple[str, str]]:
    """URI header components compare as an unordered set, never ignored (§19.1.4)."""
    if not headers:
        return set()
    out = set()
    for part in headers.split("&"):
        name, _, value = part.partition("=")
        out.add((unescape(name).lower(), unescape(value)))
    return out


@dataclass(slots=True)
class Address:
    """A ``name-addr`` or ``addr-spec`` with header parameters (From, To, Contact, ...)."""

    uri: str
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> Address:
        """Parse a From/To/Contact/Route style value (§20.10, §25.1)."""
        value = value.strip()
        if not value:
            raise ParseError("empty address")
        display: str | None = None
        if value[0] == '"':
            display, i = read_quoted(value, 0)
            rest = value[i:].lstrip()
            if not rest.startswith("<"):
                raise ParseError("quoted display name without <URI>")
            value = rest
        lt = value.find("<")
        if lt >= 0:
            if lt > 0:
                raw = value[:lt].strip()
                if raw and not _DISPLAY_TOKENS.match(raw):
                    raise ParseError(f"display name must be tokens or quoted: {raw[:40]!r}")
                display = raw or None
            gt = value.find(">", lt)
            if gt < 0:
                raise ParseError("unterminated <URI>")
            uri = value[lt + 1 : gt]
            if uri != uri.strip():
                raise ParseError("whitespace inside <URI>")
            if not uri:
                raise ParseError("empty <URI>")
            params = parse_params(value[gt + 1 :])
        else:
            uri, sc, params_text = value.partition(";")
            uri = uri.strip()
            if any(c in uri for c in " \t,?"):
                raise ParseError("addr-spec with reserved characters must be enclosed in <> (§20)")
            params = parse_params(";" + params_text) if sc else {}
        if ":" not in uri:
            raise ParseError(f"not a URI: {uri[:60]!r}")
        return cls(uri=uri, display=display, params=params)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def parsed_uri(self) -> SipUri:
        return SipUri.parse(self.uri)

    def __str__(self) -> str:
        disp = ""
        if self.display is not None:
            disp = quote(self.display) + " "
        return f"{disp}<{self.uri}>{format_params(self.params)}"
