"""Phone numbers: Korean national format <-> E.164, for SIP user parts and tel: URIs.

Input is any common spelling; :func:`digits` cleans it first. Rules, in the order
:func:`to_e164` applies them:

1. **Service codes**: anything containing ``*`` or ``#`` (``*23#``, ``#31#``) is returned as
   cleaned digits; it is not a number. ``+`` together with ``*``/``#`` is an error.
2. **E.164** (leading ``+``): validated, returned canonical. ``+82`` numbers must fit the Korean
   plan below; the common mistake ``+82 (0)10 ...`` / ``+82 010 ...`` has its trunk ``0`` dropped.
   ``+1`` must be a 10-digit NANP number; others need an assigned country code and 7 to 15
   digits in all (no per-country lengths).
3. **International prefix** (``00700``, ``001``, ``002``, ``005``, ``006``, ``008`` carriers, and
   plain ``00``): every prefix that matches is tried. Readings that are not valid E.164 are dropped;
   a reading in the home country wins (so ``0082 2 ...`` is ``+82 2 ...``, not carrier ``008`` plus
   ``+222``); otherwise the longest prefix wins, so ``0086...`` is carrier ``008`` + ``+6...``:
   foreign numbers should be written with ``+`` or a carrier prefix (``00186...``). A number
   starting with an international prefix is never read as national.
4. **National** (leading ``0``): trunk ``0`` replaced by ``+`` and the country code (``+82``), then
   checked against the plan; ``0`` + 15XX/16XX/18XX is an error.
5. **82 without +**: ``82...`` of 10 digits or more whose rest is a valid Korean number (with or
   without the trunk ``0``) is E.164 without its ``+``. It cannot be anything else: Korean
   national numbers start with ``0`` and numbers without it have at most 8 digits.
6. **Short numbers**: up to 8 digits without ``0``/``+`` are returned as cleaned digits, with no
   country code: special services (112, 119, 120 다산콜센터), extensions (``1234``), nationwide
   numbers (``1588-1234``) and local numbers without their area code (``2133-1234``: the area is
   never guessed). They are not E.164-routable from here.
7. Anything else (9+ digits without ``0``, ``+``, prefix or ``82``) raises :class:`ValueError`.

Korean numbering plan (NSN = national significant number, the national number without trunk 0):

- 02 (Seoul), 031-033, 041-044, 051-055, 061-064: a subscriber number of 7 or 8 digits starting
  with 2-9 (``02-2133-1234``, ``031-234-5678``), or a 1XX/1XXX service reached through the area
  code (``02-120`` 다산콜센터 from a mobile, ``02-1330``);
- 010 + 8 digits; legacy mobiles 011, 016, 017, 018, 019 + 7 or 8 digits;
- 070 + 8 digits (internet phones); 0502-0508 + 7 or 8 digits (personal / safe numbers);
- 080 (free phone) and 060 (premium) + 7 or 8 digits;
- 15XX, 16XX, 18XX + 4 digits, dialled without trunk 0 (``1588-1234``); as E.164 ``+82 1588 1234``.

Not supported (ValueError): 012 M2M, 013x, 030 and other retired or data-only ranges.

``country`` other than ``"82"`` replaces the Korean plan with generic E.164 checks for national
input (trunk ``0`` dropped, 7-15 digits); rule 5 and the 15XX handling are Korean only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

__all__ = [
    "INTERNATIONAL_PREFIXES",
    "MAX_SHORT",
    "digits",
    "format_national",
    "same_number",
    "to_e164",
    "to_national",
    "variants",
]

#: Prefixes dialled before a country code: Korean carriers (SK Telink, KT, LG U+, SK Broadband,
#: 006, Onse) and the ITU default ``00``.
INTERNATIONAL_PREFIXES: tuple[str, ...] = ("00700", "001", "002", "005", "006", "008", "00")

#: Longest cleaned number returned as a short number (15XX-XXXX, local numbers without area code).
MAX_SHORT = 8

_SEPARATORS = str.maketrans("", "", "-. ()")
_ALLOWED = re.compile(r"\+?[0-9*#]+")
_AREA_CODES = frozenset({"31", "32", "33", "41", "42", "43", "44", "51", "52", "53", "54", "55",
                         "61", "62", "63", "64"})
#: ITU-T E.164 assigned country codes (incl. 800/808/870/881-883/979 global services), by zone.
_COUNTRY_CODES = frozenset("""
    1
    20 211 212 213 216 218 220 221 222 223 224 225 226 227 228 229 230 231 232 233 234 235 236 237
    238 239 240 241 242 243 244 245 246 247 248 249 250 251 252 253 254 255 256 257 258 260 261 262
    263 264 265 266 267 268 269 27 290 291 297 298 299
    30 31 32 33 34 350 351 352 353 354 355 356 357 358 359 36 370 371 372 373 374 375 376 377 378
    379 380 381 382 383 385 386 387 389 39
    40 41 420 421 423 43 44 45 46 47 48 49
    500 501 502 503 504 505 506 507 508 509 51 52 53 54 55 56 57 58 590 591 592 593 594 595 596 597
    598 599
    60 61 62 63 64 65 66 670 672 673 674 675 676 677 678 679 680 681 682 683 685 686 687 688 689 690
    691 692
    7
    800 808 81 82 84 850 852 853 855 856 86 870 878 880 881 882 883 886 888
    90 91 92 93 94 95 960 961 962 963 964 965 966 967 968 970 971 972 973 974 975 976 977 979 98 991
    992 993 994 995 996 998
""".split())
_LEGACY_MOBILE = frozenset({"11", "16", "17", "18", "19"})
_NATIONWIDE = frozenset({"15", "16", "18"})


def digits(text: str) -> str:
    """Clean a spelling: drop ``-`` ``.`` spaces ``( )``, decode URL escapes (``%2B`` -> ``+``).

    Keeps a leading ``+``; anything else that is not ``0-9``, ``*`` or ``#`` is a ValueError.
    """
    if not isinstance(text, str):
        raise TypeError(f"phone number must be a str, not {type(text).__name__}")
    cleaned = unquote(text.strip()) if "%" in text else text.strip()
    cleaned = cleaned.translate(_SEPARATORS)
    if not cleaned:
        raise ValueError(f"{text!r} is not a phone number: no digits")
    if _ALLOWED.fullmatch(cleaned):
        return cleaned
    if cleaned == "+":
        raise ValueError(f"{text!r} is not a phone number: no digits after '+'")
    if ";" in cleaned or "@" in cleaned or ":" in cleaned:
        raise ValueError(f"{text!r} is not a phone number: "
                         "pass only the number, without scheme, host or ';' parameters")
    bad = next(c for i, c in enumerate(cleaned) if not (c in "0123456789*#" or (c == "+" and i == 0)))
    if bad == "+":
        raise ValueError(f"{text!r} is not a phone number: '+' is only allowed at the start")
    raise ValueError(f"{text!r} is not a phone number: invalid character {bad!r}")


def _classify(nsn: str) -> tuple[str, int]:
    """Kind of a Korean national significant number and the length of its prefix; ValueError if none."""
    n = len(nsn)
    if nsn[:1] == "2" or nsn[:2] in _AREA_CODES:
        ac = 1 if nsn[0] == "2" else 2
        sub = nsn[ac:]
        if len(sub) in (7, 8) and sub[0] in "23456789":
            return "geographic", ac
        if len(sub) in (3, 4) and sub[0] == "1":
            return "service", ac
        raise ValueError(f"area code 0{nsn[:ac]} takes a 7- or 8-digit subscriber number starting with 2-9 "
                         f"or a 1XX/1XXX service number, not {sub!r}")
    if nsn[:2] == "10":
        if n == 10:
            return "mobile", 2
        raise ValueError(f"010 mobile numbers have 8 digits after 010, not {n - 2}")
    if nsn[:2] in _NATIONWIDE and n == 8:
        return "nationwide", 4
    if nsn[:2] in _LEGACY_MOBILE:
        if n in (9, 10):
            return "mobile", 2
        raise ValueError(f"0{nsn[:2]} mobile numbers have 7 or 8 digits after 0{nsn[:2]}, not {n - 2}"
                         + (" (15XX/16XX/18XX numbers have 8 digits in all)" if nsn[:2] in _NATIONWIDE else ""))
    if nsn[:2] == "70":
        if n == 10:
            return "internet", 2
        raise ValueError(f"070 numbers have 8 digits after 070, not {n - 2}")
    if nsn[:2] == "50" and nsn[2:3] in tuple("2345678"):
        if n in (10, 11):
            return "personal", 3
        raise ValueError(f"0{nsn[:3]} numbers have 7 or 8 digits after 0{nsn[:3]}, not {n - 3}")
    if nsn[:2] in ("80", "60"):
        if n in (9, 10):
            return ("freephone" if nsn[0] == "8" else "premium"), 2
        raise ValueError(f"0{nsn[:2]} numbers have 7 or 8 digits after 0{nsn[:2]}, not {n - 2}")
    if nsn[:1] == "0":
        raise ValueError("more than one trunk prefix 0")
    if nsn[:1] == "1":
        raise ValueError(f"no Korean numbers start with 0{nsn[:2]} "
                         f"(mobiles are 010, 011, 016-019; 15XX/16XX/18XX have 8 digits and no trunk 0)")
    raise ValueError(f"no Korean area or service code 0{nsn[:2]}")


def _korean(nsn: str) -> str:
    """Canonical Korean NSN (a stray trunk 0 dropped) or ValueError."""
    if nsn.startswith("0"):
        nsn = nsn[1:]
    if not nsn:
        raise ValueError("no number after the country code 82")
    _classify(nsn)
    return nsn


def _canonical(body: str) -> str:
    """Validate E.164 digits (no ``+``) and return them canonical; ValueError if implausible."""
    if not body:
        raise ValueError("no digits")
    if not body.isdigit() or not body.isascii():
        raise ValueError("E.164 numbers contain only digits after '+'")
    if body[0] == "0":
        raise ValueError("a country code cannot start with 0")
    if body.startswith("82"):
        return "82" + _korean(body[2:])
    if body[0] == "1":
        if len(body) != 11 or body[1] in "01" or body[4] in "01":
            raise ValueError("+1 (NANP) numbers have 10 digits: area code and exchange start with 2-9")
        return body
    if not any(body[:n] in _COUNTRY_CODES for n in (1, 2, 3)):
        raise ValueError(f"+{body[:3]}... does not start with an assigned country code")
    if not 7 <= len(body) <= 15:
        raise ValueError(f"E.164 numbers have 7 to 15 digits, not {len(body)}")
    return body


def _check_country(country: str) -> None:
    if not (country.isascii() and country.isdigit() and 1 <= len(country) <= 3 and country[0] != "0"):
        raise ValueError(f"country code must be 1-3 digits not starting with 0, not {country!r}")


def _from_international(d: str, number: str, country: str, prefixes: Iterable[str]) -> str | None:
    """E.164 digits for ``d`` dialled with an international prefix; None if no prefix matches."""
    readings: list[str] = []
    reasons: list[str] = []
    for p in sorted(set(prefixes), key=len, reverse=True):
        if p and d.startswith(p):
            rest = d[len(p):]
            try:
                readings.append(_canonical(rest))
            except ValueError as e:
                reasons.append(f"as {p} + {rest or '(nothing)'}: {e}")
    if readings:
        return next((r for r in readings if r.startswith(country)), readings[0])
    if reasons:
        raise ValueError(f"{number!r} is not a valid international number: " + "; ".join(reasons))
    return None


def _national(nsn: str, number: str, country: str) -> str:
    if country == "82":
        if not nsn:
            raise ValueError(f"{number!r} is not a valid Korean number: nothing after the trunk prefix 0")
        try:
            kind, _ = _classify(nsn)
        except ValueError as e:
            raise ValueError(f"{number!r} is not a valid Korean number: {e}") from None
        if kind == "nationwide":
            raise ValueError(f"{number!r}: 15XX/16XX/18XX numbers are dialled without a leading 0")
        return "82" + nsn
    if not nsn or nsn[0] == "0":
        raise ValueError(f"{number!r}: a national number is one trunk prefix 0 and then a digit 1-9")
    try:
        return _canonical(country + nsn)
    except ValueError as e:
        raise ValueError(f"{number!r}: {e}") from None


def to_e164(number: str, country: str = "82", international_prefixes: Iterable[str] = INTERNATIONAL_PREFIXES) -> str:
    """``"010-1234-5678"`` -> ``"+821012345678"``; short numbers and service codes as digits.

    ``country`` is the home country code (the one implied by a trunk ``0``); see the module
    docstring for the rules.
    """
    _check_country(country)
    d = digits(number)
    if "*" in d or "#" in d:
        if d.startswith("+"):
            raise ValueError(f"{number!r}: E.164 numbers cannot contain '*' or '#'")
        return d
    if d.startswith("+"):
        try:
            return "+" + _canonical(d[1:])
        except ValueError as e:
            raise ValueError(f"{number!r} is not a valid E.164 number: {e}") from None
    intl = _from_international(d, number, country, international_prefixes)
    if intl is not None:
        return "+" + intl
    if d.startswith("0"):
        return "+" + _national(d[1:], number, country)
    if country == "82" and d.startswith("82") and len(d) >= 10:
        try:
            return "+82" + _korean(d[2:])
        except ValueError as e:
            raise ValueError(f"{number!r} starts with 82 but is not a Korean E.164 number: {e}") from None
    if len(d) <= MAX_SHORT:
        return d
    raise ValueError(f"{number!r} has {len(d)} digits but no trunk 0, '+' or international prefix: "
                     f"not a national, international or short number")


def to_national(number: str, international_prefix: str = "001", *, country: str = "82") -> str:
    """``"+821012345678"`` -> ``"01012345678"``; foreign numbers get ``international_prefix``.

    15XX/16XX/18XX numbers have no trunk 0 (``"+8215881234"`` -> ``"15881234"``); short numbers and
    service codes come back as digits. ``international_prefix="+"`` keeps foreign numbers in E.164.
    """
    if not (international_prefix == "+" or (international_prefix.isascii() and international_prefix.isdigit())):
        raise ValueError(f"international prefix must be digits or '+', not {international_prefix!r}")
    e = to_e164(number, country)
    if not e.startswith("+"):
        return e
    if e.startswith("+" + country):
        nsn = e[1 + len(country):]
        if country == "82" and _classify(nsn)[0] == "nationwide":
            return nsn
        return "0" + nsn
    return international_prefix + e[1:]


def _groups(nsn: str) -> list[str]:
    """National spelling of a Korean NSN in display groups: ``["010", "1234", "5678"]``."""
    kind, plen = _classify(nsn)
    if kind == "nationwide":
        return [nsn[:4], nsn[4:]]
    rest = nsn[plen:]
    if kind == "service":
        return ["0" + nsn[:plen], rest]
    return ["0" + nsn[:plen], rest[:-4], rest[-4:]]


def _is_nationwide(d: str) -> bool:
    return len(d) == 8 and d[:2] in _NATIONWIDE and d.isdigit()


def _is_local(d: str) -> bool:
    return len(d) in (7, 8) and d[0] in "23456789" and d.isdigit()


def format_national(number: str, international_prefix: str = "001") -> str:
    """Korean display form: ``02-2133-1234``, ``031-234-5678``, ``010-1234-5678``, ``1588-1234``.

    Local numbers without area code get one dash (``2133-1234``); other short numbers and service
    codes are unchanged digits; foreign numbers are :func:`to_national` without grouping.
    """
    e = to_e164(number)
    if e.startswith("+82"):
        return "-".join(_groups(e[3:]))
    if e.startswith("+"):
        return to_national(e, international_prefix)
    if _is_nationwide(e) or _is_local(e):
        return f"{e[:-4]}-{e[-4:]}"
    return e


def same_number(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` are spellings of one number (ValueError if either is not a number)."""
    return to_national(a, "+") == to_national(b, "+")


def variants(number: str) -> set[str]:
    """Common spellings of ``number``, each one :func:`same_number` to it.

    For Korean numbers: national plain / ``-`` / space / ``.`` / ``(0XX) XXXX-XXXX``; E.164 with
    ``+``, without it (``82...``, when unambiguous), ``%2B``/``%2b``; ``+82`` grouped with ``-``,
    space, ``.``, and ``%2B82-``; the trunk-0 forms ``+82 (0)10 ...`` and ``+82-010-...``; every
    international prefix in :data:`INTERNATIONAL_PREFIXES` before ``82...``, and ``0082-10-...`` /
    ``0082 10 ...``. Foreign numbers: ``+``, ``%2B``, ``%2b`` and the carrier prefixes that read back
    the same. Short numbers: themselves, local 7-8 digit numbers also with a dash or space.
    """
    e = to_e164(number)
    if not e.startswith("+"):
        if _is_nationwide(e):
            e = "+82" + e
        elif _is_local(e):
            return {e, f"{e[:-4]}-{e[-4:]}", f"{e[:-4]} {e[-4:]}"}
        else:
            return {e}
    body = e[1:]
    out = {e, body, "%2B" + body, "%2b" + body}
    out.update(p + body for p in INTERNATIONAL_PREFIXES)
    if body.startswith("82"):
        nat = _groups(body[2:])
        trunk = nat[0].startswith("0")
        intl = [nat[0][1:], *nat[1:]] if trunk else nat
        out.update(sep.join(nat) for sep in ("", "-", " ", "."))
        out.update("+82" + sep + sep.join(intl) for sep in ("-", " ", "."))
        out.update({"%2B82-" + "-".join(intl), "0082-" + "-".join(intl), "0082 " + " ".join(intl)})
        if trunk:
            out.update({"+82 (0)" + " ".join(intl), "+82-" + "-".join(nat)})
            if len(nat) == 3:
                out.update({f"({nat[0]}) {nat[1]}-{nat[2]}", f"({nat[0]}){nat[1]}-{nat[2]}"})
    return {v for v in out if _same_or_false(v, number)}


def _same_or_false(a: str, b: str) -> bool:
    try:
        return same_number(a, b)
    except ValueError:
        return False
