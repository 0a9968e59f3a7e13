"""Small raw-SIP helpers for the transaction tests.

They build and inspect wire bytes with plain string handling, independent of
the stack's own builders (``make_response``, ``_send_ack``, ``send_cancel``),
so the tests can check what the stack writes against RFC 3261 rather than
against itself.
"""

from __future__ import annotations

CRLF = "\r\n"

UAC_HOST = "192.0.2.10"
UAC_PORT = 5070
URI = "sip:bob@127.0.0.1:5060"
FROM = "<sip:alice@example.com>"
TO = "<sip:bob@example.com>"


def _join(lines: list[str], body: bytes = b"") -> bytes:
    lines = lines + [f"Content-Length: {len(body)}"]
    return (CRLF.join(lines) + CRLF + CRLF).encode() + body


def via(branch: str | None, *, transport: str = "UDP", host: str = UAC_HOST, port: int = UAC_PORT) -> str:
    """A Via value; ``branch=None`` leaves the parameter out (RFC 2543 peer)."""
    value = f"SIP/2.0/{transport} {host}:{port}"
    if branch is not None:
        value += f";branch={branch}"
    return value


def request(method: str, *, branch: str | None = "z9hG4bKuac1", transport: str = "UDP",
            uri: str = URI, call_id: str = "call-1@192.0.2.10", from_tag: str = "uac-tag",
            to_tag: str | None = None, cseq: int = 1, cseq_method: str | None = None,
            routes: tuple[str, ...] = (), extra: tuple[str, ...] = (), body: bytes = b"",
            with_via: bool = True, via_value: str | None = None) -> bytes:
    """Raw request bytes as a UAC would put them on the wire."""
    lines = [f"{method} {uri} SIP/2.0"]
    if with_via:
        lines.append(f"Via: {via_value or via(branch, transport=transport)}")
    to = TO + (f";tag={to_tag}" if to_tag else "")
    lines += [
        "Max-Forwards: 70",
        f"From: {FROM};tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
    ]
    lines += [f"Route: {r}" for r in routes]
    lines += list(extra)
    return _join(lines, body)


# -- inspection -----------------------------------------------------------------------------
def start_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].decode()


def method_of(data: bytes) -> str | None:
    """The method of a request, None for a response."""
    line = start_line(data)
    return None if line.startswith("SIP/") else line.split(" ", 1)[0]


def status_of(data: bytes) -> int | None:
    """The status code of a response, None for a request."""
    line = start_line(data)
    return int(line.split(" ")[1]) if line.startswith("SIP/") else None


def request_uri(data: bytes) -> str:
    return start_line(data).split(" ")[1]


def header_lines(data: bytes) -> list[tuple[str, str]]:
    """(lower-case name, value) for every header line, in order."""
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    out = []
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        out.append((name.strip().lower(), value.strip()))
    return out


def headers(data: bytes, name: str) -> list[str]:
    name = name.lower()
    return [v for n, v in header_lines(data) if n == name]


def header(data: bytes, name: str) -> str | None:
    values = headers(data, name)
    return values[0] if values else None


def param(value: str, name: str) -> str | None:
    """A ``;name=value`` parameter of a header value (after any ``<...>``)."""
    tail = value.rsplit(">", 1)[-1]
    for part in tail.split(";")[1:]:
        key, _, val = part.partition("=")
        if key.strip().lower() == name:
            return val.strip()
    return None


def top_via(data: bytes) -> str:
    return headers(data, "via")[0].split(",")[0].strip()


def branch_of(data: bytes) -> str | None:
    return param(top_via(data), "branch")


def to_tag(data: bytes) -> str | None:
    return param(header(data, "to") or "", "tag")


# -- building answers to what the stack sent ---------------------------------------------------
def response(req: bytes, status: int, reason: str | None = None, *, to_tag: str | None = None,
             extra: tuple[str, ...] = ()) -> bytes:
    """A response to raw request ``req``: Via (all), From, To, Call-ID, CSeq copied (§8.2.6.2)."""
    lines = [f"SIP/2.0 {status} {reason or _REASONS.get(status, 'Whatever')}"]
    for name, value in header_lines(req):
        if name in ("via", "from", "call-id", "cseq"):
            lines.append(f"{name.title()}: {value}")
        elif name == "to":
            if to_tag and param(value, "tag") is None:
                value = f"{value};tag={to_tag}"
            lines.append(f"To: {value}")
    lines += list(extra)
    return _join(lines)


def ack_for_non2xx(invite: bytes, resp: bytes) -> bytes:
    """The ACK a UAC's client transaction sends for a 3xx-6xx (§17.1.1.3)."""
    cseq = header(invite, "cseq").split()[0]
    lines = [f"ACK {request_uri(invite)} SIP/2.0", f"Via: {top_via(invite)}", "Max-Forwards: 70",
             f"From: {header(invite, 'from')}", f"To: {header(resp, 'to')}",
             f"Call-ID: {header(invite, 'call-id')}", f"CSeq: {cseq} ACK"]
    return _join(lines)


def ack_for_2xx(invite: bytes, resp: bytes, *, branch: str = "z9hG4bKuac-ack2xx") -> bytes:
    """The ACK a UAC core sends for a 2xx: a new transaction, new branch (§13.2.2.4)."""
    cseq = header(invite, "cseq").split()[0]
    transport = top_via(invite).split()[0].rsplit("/", 1)[-1]
    lines = [f"ACK {request_uri(invite)} SIP/2.0", f"Via: {via(branch, transport=transport)}",
             "Max-Forwards: 70", f"From: {header(invite, 'from')}", f"To: {header(resp, 'to')}",
             f"Call-ID: {header(invite, 'call-id')}", f"CSeq: {cseq} ACK"]
    return _join(lines)


def cancel_for(invite: bytes) -> bytes:
    """The CANCEL a UAC sends for ``invite`` (§9.1): same URI, top Via, From, To, Call-ID, CSeq number."""
    cseq = header(invite, "cseq").split()[0]
    lines = [f"CANCEL {request_uri(invite)} SIP/2.0", f"Via: {top_via(invite)}", "Max-Forwards: 70",
             f"From: {header(invite, 'from')}", f"To: {header(invite, 'to')}",
             f"Call-ID: {header(invite, 'call-id')}", f"CSeq: {cseq} CANCEL"]
    return _join(lines)


_REASONS = {100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 302: "Moved Temporarily",
            404: "Not Found", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
            486: "Busy Here", 487: "Request Terminated", 503: "Service Unavailable", 603: "Decline"}
