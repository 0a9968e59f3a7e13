"""Lexical helpers shared by the SIP parsers (RFC 3261 §25.1).

These functions work on already unfolded header values: quoted strings with
escapes, comma-separated lists that respect quotes and angle brackets, and
``;name=value`` parameter lists with optional whitespace around the
separators.
"""

from __future__ import annotations

import re

from .errors import ParseError

#: RFC 3261 ``token`` characters.
TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_TOKEN_FULL = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")


def is_token(text: str) -> bool:
    """True when ``text`` is a non-empty RFC 3261 token."""
    return _TOKEN_FULL.match(text) is not None


def unescape(text: str) -> str:
    """Decode ``%HH`` escapes (§19.1.4); a ``%`` not followed by two hex digits stays."""
    if "%" not in text:
        return text
    return _PCT.sub(lambda m: chr(int(m.group(1), 16)), text)


def _split_top_level(text: str, sep: str, angles: bool) -> list[str]:
    """Split at ``sep`` outside quoted strings (and outside ``<...>`` when ``angles``)."""
    parts: list[str] = []
    start = 0
    in_quote = in_angle = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if in_quote:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif angles and c == "<":
            in_angle = True
        elif angles and c == ">":
            in_angle = False
        elif c == sep and not in_angle:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def split_commas(value: str) -> list[str]:
    """Split a multi-value header at top-level commas (§7.3.1).

    Commas inside quoted strings and ``<...>`` do not split. Elements are
    stripped; empty elements are kept so callers can reject them.
    """
    if "," not in value:
        return [value.strip()]
    return [p.strip() for p in _split_top_level(value, ",", angles=True)]


def read_quoted(value: str, start: int) -> tuple[str, int]:
    """Read a quoted string beginning at ``value[start] == '"'``.

    Returns the unescaped content and the index just past the closing quote.
    Raises :class:`ParseError` for an unterminated string (RFC 4475 §3.1.2.6).
    """
    out: list[str] = []
    i = start + 1
    n = len(value)
    while i < n:
        c = value[i]
        if c == "\\":
            if i + 1 >= n:
                break
            out.append(value[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise ParseError("unterminated quoted string")


def quote(text: str) -> str:
    """Quote ``text`` as a quoted-string, escaping ``"`` and ``\\``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


#: parameter names already found to be tokens -> their lower-case form: the same few
#: (branch, tag, rport, transport, lr, ...) arrive in every message; bounded, as outsiders choose them too
_PARAM_NAMES: dict[str, str] = {}
_PARAM_NAMES_MAX = 512


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``;a=b;c;d="q"`` into an ordered dict with lower-cased names.

    Whitespace around ``;`` and ``=`` is allowed (RFC 4475 §3.1.1.1). An empty
    parameter (``;;``) is a syntax error (RFC 4475 §3.1.2.1).
    """
    params: dict[str, str | None] = {}
    text = text.strip()
    if not text:
        return params
    if text[0] != ";":
        raise ParseError(f"unexpected text before parameters: {text[:20]!r}")
    names = _PARAM_NAMES
    for raw in _split_semicolons(text[1:]):
        name, eq, val = raw.partition("=")
        key = names.get(name)
        if key is None:
            name = name.strip()
            if not name or not is_token(name):
                raise ParseError(f"bad parameter {raw.strip()!r}")
            key = name.lower()
            if len(names) < _PARAM_NAMES_MAX:
                names[name] = key
        if eq:
            val = val.strip()
            if val.startswith('"'):
                end = read_quoted(val, 0)[1]
                if val[end:].strip():
                    raise ParseError(f"text after the quoted value of {name.strip()!r}")
                params[key] = val[:end]  # kept quoted, escapes intact
            else:
                if not val:
                    raise ParseError(f"parameter {name.strip()!r} has an empty value")
                params[key] = val
        else:
            params[key] = None
    return params


def _split_semicolons(text: str) -> list[str]:
    if '"' not in text:
        return text.split(";")
    return _split_top_level(text, ";", angles=False)


def format_params(params: dict[str, str | None]) -> str:
    """Serialize a parameter dict back to ``;a=b;c`` form."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())
