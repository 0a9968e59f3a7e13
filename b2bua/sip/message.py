"""SIP message parsing and serialization (RFC 3261 §7, §18.3, §20).

Parsing is lazy: the start line and the header list are split once, typed
views (Via, CSeq, From/To) are parsed when first asked for. Unknown headers
keep their name and (unfolded) value exactly as received.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import ParseError, SipError, TooLarge, VersionNotSupported
from .grammar import format_params, is_token, parse_params, split_commas
from .uri import Address, SipUri

#: One header field: ``(key, name, value)``, ``key`` the lower-case long form used for lookups, ``name`` the
#: spelling to write. A tuple, not a list: immutable (copies share it) and, holding only strings, untracked by
#: the cyclic GC after its first young pass, so long-lived transactions' messages cost a full pass nothing.
Header = tuple[str, str, str]

#: Compact forms (§7.3.3 and the IANA registry).
COMPACT = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
    "v": "via", "o": "event", "r": "refer-to", "b": "referred-by", "u": "allow-events",
    "a": "accept-contact", "j": "reject-contact", "d": "request-disposition",
    "x": "session-expires", "y": "identity",
}

#: The spelling we use when we write a header ourselves.
CANONICAL = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
    "rseq": "RSeq", "rack": "RAck",  # RFC 3262 §7.1, §7.2
    "mime-version": "MIME-Version",
    "p-asserted-identity": "P-Asserted-Identity", "p-preferred-identity": "P-Preferred-Identity",
    "min-se": "Min-SE", "sip-etag": "SIP-ETag", "sip-if-match": "SIP-If-Match",
}

#: Headers that may appear once only (§20; RFC 4475 §3.3.8, §3.3.9).
SINGLE = frozenset({
    "call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type",
    "expires", "min-expires",
})

#: Headers whose values may be comma-joined lists (§7.3.1) and that we split.
LIST_HEADERS = frozenset({
    "via", "route", "record-route", "contact", "allow", "supported", "require",
    "proxy-require", "unsupported", "accept", "allow-events",
})

MAX_HEADERS = 256
MAX_LINE = 8192
MAX_BODY = 65536
MAX_MESSAGE = MAX_BODY + MAX_HEADERS * 256

# SIP-Version is case-insensitive (§7.1); DIGIT is ASCII only (§25.1), hence re.A.
_REQUEST_LINE = re.compile(r"([A-Za-z0-9\-.!%*_+`'~]+) ([^ \t<>]+) SIP/(\d+\.\d+)\Z", re.A | re.I)
_STATUS_LINE = re.compile(r"SIP/(\d+\.\d+) (\d{3})(?:\Z| (.*)\Z)", re.S | re.A | re.I)
_DIGITS = re.compile(r"[0-9]+\Z")
_HEADER_NAME = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_CSEQ = re.compile(r"(\d{1,10})\s+([A-Za-z0-9\-.!%*_+`'~]+)\Z", re.A)
_VIA = re.compile(
    r"SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)"
    r"(?:\s*:\s*(\d{1,5}))?\s*(;.*)?\Z",
    re.S | re.A | re.I,
)
_FOLD = re.compile(r"\r?\n[ \t]+")

MAGIC_COOKIE = "z9hG4bK"


def canonical_name(key: str) -> str:
    """The display spelling for a lower-case header key (memoized in CANONICAL)."""
    name = CANONICAL.get(key)
    if name is None:
        name = "-".join(p.capitalize() for p in key.split("-"))
        if len(CANONICAL) < 4096:
            CANONICAL[key] = name
    return name


@dataclass(slots=True)
class Via:
    """One Via value (§20.42) with RFC 3581 ``rport``/``received``."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> Via:
        m = _VIA.match(value.strip())
        if m is None:
            raise ParseError(f"bad Via {value[:60]!r}")
        port = int(m.group(3)) if m.group(3) else None
        if port is not None and port > 65535:
            raise ParseError("bad Via port")
        return cls(m.group(1).upper(), m.group(2).lower(), port, parse_params(m.group(4) or ""))

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"


class Message:
    """Common part of requests and responses: an ordered header list and a body.

    ``headers`` holds :data:`Header` triples ``(key, name, value)``.
    """

    __slots__ = ("headers", "body", "_via", "_cseq", "_from", "_to", "_contact")

    def __init__(self, headers: list[Header] | None = None, body: bytes = b""):
        self.headers: list[Header] = headers if headers is not None else []
        self.body = body
        self._via: list[Via] | None = None
        self._cseq: tuple[int, str] | None = None
        self._from: Address | None = None
        self._to: Address | None = None
        self._contact: Address | None = None

    # -- generic header access -------------------------------------------------
    def get(self, key: str, default: str | None = None) -> str | None:
        for h in self.headers:
            if h[0] == key:
                return h[2]
        return default

    def get_all(self, key: str) -> list[str]:
        """All values of ``key``, list headers split at commas."""
        out: list[str] = []
        for h in self.headers:
            if h[0] == key:
                if key in LIST_HEADERS:
                    out.extend(split_commas(h[2]))
                else:
                    out.append(h[2])
        return out

    def has(self, key: str) -> bool:
        return any(h[0] == key for h in self.headers)

    def add(self, key: str, value: str, name: str | None = None) -> None:
        self.headers.append((key, name or canonical_name(key), value))
        self._invalidate(key)

    def insert(self, key: str, value: str) -> None:
        """Add ``key`` above every other header (used for Via)."""
        self.headers.insert(0, (key, canonical_name(key), value))
        self._invalidate(key)

    def set(self, key: str, value: str) -> None:
        """Replace all ``key`` headers with one, keeping the first one's position."""
        for i, h in enumerate(self.headers):
            if h[0] == key:
                self.headers[i] = (key, h[1], value)
                self.headers[i + 1 :] = [x for x in self.headers[i + 1 :] if x[0] != key]
                self._invalidate(key)
                return
        self.add(key, value)

    def remove(self, key: str) -> None:
        self.headers = [h for h in self.headers if h[0] != key]
        self._invalidate(key)

    def pop_first_value(self, key: str) -> str | None:
        """Remove the first (comma-separated) value of a list header; return it."""
        for i, h in enumerate(self.headers):
            if h[0] == key:
                parts = split_commas(h[2])
                first = parts[0]
                if len(parts) > 1:
                    self.headers[i] = (key, h[1], ", ".join(parts[1:]))
                else:
                    del self.headers[i]
                self._invalidate(key)
                return first
        return None

    def _invalidate(self, key: str) -> None:
        if key == "via":
            self._via = None
        elif key == "cseq":
            self._cseq = None
        elif key == "from":
            self._from = None
        elif key == "to":
            self._to = None
        elif key == "contact":
            self._contact = None

    # -- typed views --------------------------------------------------------------
    @property
    def vias(self) -> list[Via]:
        if self._via is None:
            values = self.get_all("via")
            if not values:
                raise ParseError("missing Via")
            self._via = [Via.parse(v) for v in values]
        return self._via

    @property
    def top_via(self) -> Via:
        return self.vias[0]

    @property
    def cseq(self) -> tuple[int, str]:
        if self._cseq is None:
            value = self.get("cseq")
            if value is None:
                raise ParseError("missing CSeq")
            m = _CSEQ.match(value.strip())
            if m is None or int(m.group(1)) >= 2**31:
                raise ParseError(f"bad CSeq {value[:40]!r}")
            self._cseq = (int(m.group(1)), m.group(2))
        return self._cseq

    @property
    def call_id(self) -> str:
        value = self.get("call-id")
        if not value:
            raise ParseError("missing Call-ID")
        return value

    @property
    def from_(self) -> Address:
        if self._from is None:
            value = self.get("from")
            if value is None:
                raise ParseError("missing From")
            self._from = Address.parse(value)
        return self._from

    @property
    def to(self) -> Address:
        if self._to is None:
            value = self.get("to")
            if value is None:
                raise ParseError("missing To")
            self._to = Address.parse(value)
        return self._to

    @property
    def contact(self) -> Address | None:
        """The first Contact address (§8.1.1.8; a REGISTER's others: ``get_all``), None without one or for
        ``*``."""
        if self._contact is None:
            values = self.get_all("contact")
            if not values or values[0] == "*":
                return None
            self._contact = Address.parse(values[0])
        return self._contact

    @property
    def from_tag(self) -> str | None:
        return self.from_.params.get("tag")

    @property
    def to_tag(self) -> str | None:
        return self.to.params.get("tag")

    @property
    def content_type(self) -> str | None:
        value = self.get("content-type")
        return value.split(";", 1)[0].strip().lower() if value else None

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        self.body = body
        if content_type is not None:
            self.set("content-type", content_type)
        elif not body:
            self.remove("content-type")

    # -- serialization ------------------------------------------------------------
    def _start_line(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        """Encode with a correct Content-Length (§20.14)."""
        lines = [self._start_line()]
        for key, name, value in self.headers:
            if key != "content-length":
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.serialize()


class Request(Message):
    """A SIP request (§7.1)."""

    __slots__ = ("method", "uri")

    def __init__(self, method: str, uri: str, headers: list[Header] | None = None, body: bytes = b""):
        super().__init__(headers, body)
        self.method = method
        self.uri = uri

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    """A SIP response (§7.2)."""

    __slots__ = ("status", "reason")

    def __init__(self, status: int, reason: str, headers: list[Header] | None = None, body: bytes = b""):
        super().__init__(headers, body)
        self.status = status
        self.reason = reason

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


class PartialRequest(ParseError):
    """A request whose start line or headers are broken but whose headers were split.

    ``headers`` lets the endpoint still answer with an error response built
    from the received Via/From/To/Call-ID/CSeq (§8.2.6.2).
    """

    def __init__(self, err: SipError, headers: list[Header], is_request: bool):
        super().__init__(err.detail, err.status, err.reason)
        self.headers = headers
        self.is_request = is_request


#: header name as written -> (key, name): the validated, lower-cased, compact-expanded key. Hand-made
#: memo because the checks per line were a tenth of the signalling CPU at 300 calls/s (py-spy); bounded,
#: so names an outsider makes up cost only the slow path, never memory.
_NAMES: dict[str, tuple[str, str]] = {}
_NAMES_MAX = 512


def _header_key(raw: str, line: str) -> tuple[str, str]:
    name = raw.rstrip(" \t")
    if not _HEADER_NAME.match(name):
        raise ParseError(f"bad header line {line[:40]!r}")
    key = name.lower()
    found = (COMPACT.get(key, key), name)
    if len(_NAMES) < _NAMES_MAX:
        _NAMES[raw] = found
    return found


def _split_head(head: str) -> tuple[str, list[Header]]:
    """Split the start line and header lines, unfolding continuation lines (§7.3.1)."""
    if "\n " in head or "\n\t" in head:
        head = _FOLD.sub(" ", head)
    lines = head.split("\r\n") if "\r\n" in head else head.split("\n")
    if len(lines) - 1 > MAX_HEADERS:
        raise TooLarge("too many header fields")
    headers: list[Header] = []
    too_long = False
    check_length = len(head) > MAX_LINE  # no line can be too long otherwise
    names = _NAMES
    for line in lines[1:]:
        if check_length and len(line) > MAX_LINE:
            too_long = True  # answered with 513 from the other headers (§21.5.14)
            continue
        raw, colon, value = line.partition(":")
        if not colon:
            raise ParseError(f"bad header line {line[:40]!r}")
        known = names.get(raw)
        key, name = known if known is not None else _header_key(raw, line)
        headers.append((key, name, value.strip()))
    if too_long:
        raise PartialRequest(TooLarge("header line too long"), headers, lines[0][:4].upper() != "SIP/")
    return lines[0], headers


def _check_singletons(headers: list[Header]) -> int | None:
    """Reject repeated single-value headers; return the Content-Length if present."""
    seen: set[str] = set()
    length: int | None = None
    for key, _, value in headers:
        if key in SINGLE:
            if key in seen:
                raise ParseError(f"more than one {canonical_name(key)} header")
            seen.add(key)
            if key == "content-length":
                if not _DIGITS.match(value) or len(value) > 9:
                    raise ParseError(f"bad Content-Length {value[:20]!r}")
                length = int(value)
    return length


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Parse one complete message.

    For datagrams (``stream=False``) bytes past Content-Length are ignored
    (§18.3, RFC 4475 §3.1.1.8) and a missing Content-Length means "to the end".
    Raises :class:`PartialRequest` (a :class:`ParseError`) when the headers were
    split but the message is invalid, so the caller can still answer 400.
    """
    if len(data) > MAX_MESSAGE:
        raise TooLarge("message too large")
    end = data.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end = data.find(b"\n\n")
        sep = 2
        if end < 0:
            if stream or not data.endswith(b"\r\n"):
                raise ParseError("no end of headers")
            end, sep = len(data) - 2, 2  # datagram whose last header ends the packet
    head = data[:end].decode("utf-8", "surrogateescape")
    start, headers = _split_head(head)
    is_request = start[:4].upper() != "SIP/"
    try:
        length = _check_singletons(headers)
        body = data[end + sep :]
        if length is not None:
            if length > len(body):
                raise ParseError("Content-Length larger than the message body")
            body = body[:length]
        elif stream:
            raise ParseError("Content-Length is mandatory on stream transports")
        if len(body) > MAX_BODY:
            raise TooLarge("body too large")
        if is_request:
            m = _REQUEST_LINE.match(start)
            if m is None:
                raise ParseError(f"bad request line {start[:60]!r}")
            if m.group(3) != "2.0":
                raise VersionNotSupported(f"SIP/{m.group(3)}")
            return Request(m.group(1), m.group(2), headers, body)
        m = _STATUS_LINE.match(start)
        if m is None or m.group(1) != "2.0":
            raise ParseError(f"bad status line {start[:60]!r}")
        status = int(m.group(2))
        if status < 100:
            raise ParseError("bad status code")
        return Response(status, m.group(3) or "", headers, body)
    except SipError as err:
        raise PartialRequest(err, headers, is_request) from None


class StreamFramer:
    """Frames messages on a TCP/TLS byte stream (§18.3, RFC 5626 §4.4.1 keep-alives).

    ``feed`` returns parsed messages and counts double-CRLF pings so the
    transport can answer them with a single CRLF pong.
    """

    def __init__(self, max_message: int = MAX_MESSAGE):
        self._buf = bytearray()
        self.max_message = max_message
        self.pings = 0

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished message (or half a keep-alive) held until the rest comes."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the raw complete messages now available."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while True:
            # Leading CRLFs between messages are keep-alives (RFC 5626 §3.5.1).
            i = 0
            while True:
                if buf[i : i + 4] == b"\r\n\r\n":
                    self.pings += 1
                    i += 4
                elif buf[i : i + 2] == b"\r\n" and len(buf) > i + 2 and buf[i + 2] != 13:
                    i += 2  # a stray CRLF before a message; a lone one may be half a ping
                else:
                    break
            if i:
                del buf[:i]
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self.max_message:
                    raise TooLarge("header section too large")
                return out
            head = bytes(buf[:end]).decode("utf-8", "surrogateescape")
            length = None
            for line in _FOLD.sub(" ", head).split("\r\n")[1:]:
                name, _, value = line.partition(":")
                key = name.strip().lower()
                if key in ("content-length", "l"):
                    value = value.strip()
                    if not _DIGITS.match(value) or len(value) > 9:
                        raise ParseError("bad Content-Length")
                    length = int(value)
            if length is None:
                raise ParseError("Content-Length is mandatory on stream transports")
            total = end + 4 + length
            if total > self.max_message:
                raise TooLarge("message too large")
            if len(buf) < total:
                return out
            out.append(bytes(buf[:total]))
            del buf[:total]


def validate_request(req: Request) -> None:
    """Check the mandatory headers of a request (§8.1.1, §8.2.2).

    Raises :class:`ParseError` naming the problem; the caller answers 400.
    """
    if req.uri[:4].lower() in ("sip:", "sips"):
        if SipUri.parse(req.uri).headers is not None:
            raise ParseError("headers are not allowed in a Request-URI (§19.1.1)")
    for v in req.vias:  # parses every Via value (§20.42); raises if one is missing or malformed
        if not v.params.get("branch") and "branch" in v.params:
            raise ParseError("empty branch")
    num, method = req.cseq
    if method != req.method:
        raise ParseError("CSeq method does not match the request method")
    _parsed(req.call_id, req.from_, req.to)
    mf = req.get("max-forwards")
    if mf is not None:
        mf = mf.strip()
        if not _DIGITS.match(mf) or int(mf) > 255:
            raise ParseError("bad Max-Forwards")
    _parsed(req.contact)  # the first Contact, parsed once and kept for the dialog (§12.1.1)
    others = [v for v in req.get_all("contact")[1:] if v != "*"]
    for value in others + req.get_all("route") + req.get_all("record-route"):
        Address.parse(value)


def validate_response(resp: Response) -> None:
    """Check what a client transaction needs to match a response (§17.1.3)."""
    if resp.status > 699:
        raise ParseError("status code out of range")
    _parsed(resp.top_via, resp.cseq, resp.call_id, resp.from_, resp.to)


def _parsed(*views: object) -> None:
    """Take typed views such as ``msg.to`` only to have them evaluated, in order.

    Reading a view parses its header and raises :class:`ParseError` if it is
    missing or malformed; the validators need that check, not the value.
    """


def token_list(msg: Message, key: str) -> list[str]:
    """A list header of tokens (Require, Supported, Allow) as lower-case tokens."""
    return [v.lower() for v in msg.get_all(key) if v and is_token(v)]
