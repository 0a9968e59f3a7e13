"""Who the far end sees as the caller: the presentation written on an outbound INVITE.

Sans-I/O. The router computes a :class:`Presentation` per target; call control applies it to
the INVITE it builds from scratch (``B2BUA._send_b_invite``).

- Calls to a carrier present the department, never the staff member: From with the department's
  display name and public number, P-Asserted-Identity (RFC 3325 §9.1) and the trunk's other
  identity headers (P-Preferred-Identity, Remote-Party-ID), Privacy (RFC 3323 §4.2), and the
  branding of RFC 9796 (Call-Info ``purpose=icon`` / ``purpose=jcard`` with ``call-reason``).
  To carries only the dialled number, Contact and SDP ``o=`` are ours. Headers from the caller
  are forwarded only from the trunk's allow-list, and not even then when they mention the caller.
- Without a known department the call is anonymous (RFC 3323 §4.1.1.3): From
  ``"Anonymous" <sip:anonymous@anonymous.invalid>``, ``Privacy: id``, no asserted identity.
- Citizens' calls to staff keep the citizen's number, in national form (From and PAI).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote

from ..routing.extensions import extension_matches, extensions_overlap, is_prefix, parse_extension_range
from ..routing.forwarding import NEVER_FORWARDED
from ..routing.numbers import to_e164, to_national
from ..sip.errors import SipError
from ..sip.message import Request
from ..sip.uri import Address, SipUri

if TYPE_CHECKING:
    from ..config import CallerId, Department, Device, Trunk

ANONYMOUS = Address("sip:anonymous@anonymous.invalid", "Anonymous")

#: SDP lines that describe the session's owner rather than the media (RFC 8866 §5.4-5.7).
_SDP_PERSONAL = ("i=", "u=", "e=", "p=")


# -- the PBX number plan --------------------------------------------------------------------
@dataclass
class NumberPlan:
    """Extension -> department for calls from the PBX: the most specific entry wins
    (exact number, then the narrowest range, then the longest prefix)."""

    entries: list[tuple[tuple[str, str], str]] = field(default_factory=list)

    @classmethod
    def build(cls, departments: Iterable[Department]) -> NumberPlan:
        plan = cls()
        for d in departments:
            plan.entries.append(((d.extension, d.extension), d.name))
            plan.entries.extend((parse_extension_range(x), d.name) for x in d.extensions)
        return plan

    def lookup(self, extension: str | None) -> str | None:
        if not extension:
            return None
        best: tuple[tuple[int, int], str] | None = None
        for rng, dept in self.entries:
            if not extension_matches(rng, extension):
                continue
            if is_prefix(rng):
                rank = (2, -len(rng[0]))
            elif rng[0] == rng[1]:
                rank = (0, 0)
            else:
                rank = (1, int(rng[1]) - int(rng[0]))
            if best is None or rank < best[0]:
                best = (rank, dept)
        return best[1] if best else None


# -- what the carrier sees ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Notice:
    """An outbound call a messaging gateway may tell the citizen about (the messenger hook)."""

    department: str
    display_name: str
    public_number: str  # E.164
    called: str  # national form
    purpose: str | None = None


_HEADER_NAMES = {"remote-party-id": "Remote-Party-ID"}


@dataclass(frozen=True, slots=True)
class Presentation:
    """The identity one outbound INVITE carries; ``{host}`` in values is our address on that leg."""

    #: From: None = anonymous; else (display name or None, user part)
    from_id: tuple[str | None, str] | None
    #: To carries only the Request-URI's number (no display name, no parameters)
    to_number_only: bool = True
    #: (header key, value) identity headers: P-Asserted-Identity, P-Preferred-Identity, ...
    identities: tuple[tuple[str, str], ...] = ()
    privacy: str | None = None
    #: Call-Info values (RFC 9796)
    call_info: tuple[str, ...] = ()
    #: (header name, value) copied from the caller's INVITE by the trunk's allow-list
    forwarded: tuple[tuple[str, str], ...] = ()
    #: the SDP passes through (media not anchored): clear its owner fields
    scrub_sdp: bool = True
    #: protect this leg: in-dialog requests towards it carry none of the caller's extra headers
    protected: bool = True
    #: for the messenger hook
    notice: Notice | None = None

    def apply(self, req: Request, host: str) -> None:
        """Rewrite the From/To of an INVITE built by call control and add our identity headers."""
        tag = req.from_.tag
        if self.from_id is None:
            addr = Address(ANONYMOUS.uri, ANONYMOUS.display, {"tag": tag})
        else:
            addr = Address(_number_uri(self.from_id[1], host), self.from_id[0], {"tag": tag})
        req.set("from", str(addr))
        if self.to_number_only:
            try:
                ruri = SipUri.parse(req.uri)
                hostport = ruri.host + (f":{ruri.port}" if ruri.port else "")
                req.set("to", str(Address(f"{ruri.scheme}:{ruri.user}@{hostport}" if ruri.user
                                          else f"{ruri.scheme}:{hostport}")))
            except SipError:
                pass
        for key, value in self.identities:
            req.add(key, value.replace("{host}", host), _HEADER_NAMES.get(key))
        if self.privacy:
            req.add("privacy", self.privacy)
        if self.call_info:
            req.add("call-info", ", ".join(self.call_info))
        for name, value in self.forwarded:
            req.add(name.lower(), value, name)
        if self.scrub_sdp and req.body and (req.content_type or "").lower() == "application/sdp":
            req.body = scrub_sdp(req.body, host)


def _number_uri(number: str, host: str) -> str:
    return f"sip:{number}@{host}" + (";user=phone" if number.startswith("+") else "")


def scrub_sdp(body: bytes, host: str | None = None) -> bytes:
    """``o=`` username -> ``-`` (and its address -> ``host``), ``s=`` -> ``-``, no ``i= u= e= p=``
    lines (RFC 8866 §5.2-5.7). For SDP passed through: ``c=`` stays, the media goes there."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body
    out = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith("o="):
            parts = line[2:].split()
            if host and len(parts) == 6:
                host = host.strip("[]")
                parts[4:] = ["IP6" if ":" in host else "IP4", host]
            line = "o=" + " ".join(["-", *parts[1:]]) if parts else line
        elif line.startswith("s="):
            line = "s=-"
        elif line.startswith(_SDP_PERSONAL):
            continue
        out.append(line)
    return "\r\n".join(out).encode()


def _trunk_number(number: str, trunk: Trunk) -> str:
    return to_e164(number) if trunk.number_format == "e164" else to_national(number)


def effective_caller_id(department: CallerId | None, device: Device | None) -> CallerId | None:
    """The department's caller ID with the device's own keys laid over it."""
    override = device.caller_id if device is not None else None
    if override is None:
        return department
    if department is None:  # a device's own caller ID without a department
        return override.model_copy(update={"privacy": override.privacy or "none"})
    changes = {k: getattr(override, k) for k in override.model_fields_set if getattr(override, k) is not None}
    return department.model_copy(update=changes)


def outbound(caller_id: CallerId | None, trunk: Trunk, a_req: Request, *, department: str | None = None,
             called: str = "") -> Presentation:
    """The presentation towards carrier ``trunk`` for a staff member's call ``a_req``."""
    forwarded = tuple(_allowed(a_req, trunk))
    if caller_id is None or not caller_id.public_number:
        return Presentation(None, identities=(), privacy="id", forwarded=forwarded)
    number = _trunk_number(caller_id.public_number, trunk)
    display = caller_id.display_name
    uri = _number_uri(number, "{host}")
    identities = []
    for kind in trunk.identity_headers:
        if kind == "pai":
            identities.append(("p-asserted-identity", str(Address(uri, display))))
        elif kind == "ppi":
            identities.append(("p-preferred-identity", str(Address(uri, display))))
        elif kind == "rpid":  # draft-ietf-sip-privacy-04, still what some carriers want
            privacy = "off" if caller_id.privacy == "none" else "full"
            rpid = f"{Address(uri, display)};party=calling;screen=yes;privacy={privacy}"
            identities.append(("remote-party-id", rpid))
    info: list[str] = []
    if trunk.call_info:
        reason = f';call-reason={_quote(caller_id.call_reason)}' if caller_id.call_reason else ""
        if caller_id.logo_url:
            info.append(f"<{caller_id.logo_url}>;purpose=icon" + ("" if caller_id.jcard_url else reason))
        if caller_id.jcard_url:
            info.append(f"<{caller_id.jcard_url}>;purpose=jcard" + reason)
    from_id = None if caller_id.privacy != "none" else (display, number)
    notice = Notice(department, display or department, to_e164(caller_id.public_number), called,
                    caller_id.call_reason) if department else None
    return Presentation(from_id, identities=tuple(identities), privacy=caller_id.privacy,
                        call_info=tuple(info), forwarded=forwarded, notice=notice)


def inbound(a_req: Request) -> Presentation:
    """A citizen's call to staff: the citizen's number in national form in From and PAI; a citizen
    who asked for privacy (RFC 3323 ``id``/``user``) is not identified to staff either."""
    privacy = {p.strip().lower() for v in a_req.get_all("privacy") for p in v.split(";")}
    hidden = bool(privacy & {"id", "user", "header"})
    frm = a_req.from_
    user = _user(frm.uri)
    from_id: tuple[str | None, str] | None = None  # anonymous
    if not hidden and user is not None and user.lower() != "anonymous":
        from_id = (frm.display, _national_or_none(user) or user)
    identities: list[tuple[str, str]] = []
    if not hidden:
        for value in a_req.get_all("p-asserted-identity")[:1]:
            try:
                pai = Address.parse(value)
            except SipError:
                continue
            number = _national_or_none(_user(pai.uri))
            if number:
                identities.append(("p-asserted-identity", str(Address(f"sip:{number}@{{host}}", pai.display))))
    return Presentation(from_id, to_number_only=False, identities=tuple(identities), scrub_sdp=False,
                        protected=False)


def _user(uri: str) -> str | None:
    try:
        u = SipUri.parse(uri)
    except SipError:
        return None
    return unquote(u.user).split(";", 1)[0] if u.user else None


def _national_or_none(user: str | None) -> str | None:
    if not user:
        return None
    try:
        return to_national(user)
    except ValueError:
        return None


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- the allow-list and the leak guard ------------------------------------------------------
def caller_marks(a_req: Request) -> tuple[set[str], set[str]]:
    """What identifies the caller in its INVITE: (digit strings of its numbers, words)."""
    numbers: set[str] = set()
    words: set[str] = set()
    values = [a_req.get("from") or ""]
    for key in ("p-asserted-identity", "p-preferred-identity", "remote-party-id", "contact"):
        values.extend(a_req.get_all(key))
    for value in values:
        try:
            addr = Address.parse(value)
        except SipError:
            continue
        if addr.display and len(addr.display.strip()) >= 3:
            words.add(addr.display.strip().lower())
        user = _user(addr.uri)
        if not user:
            continue
        digits = re.sub(r"\D", "", user)
        national = _national_or_none(user)
        if national and len(national) >= 4:
            numbers.add(national.lstrip("0"))
        elif len(digits) >= 3:
            numbers.add(digits)
        if len(user) >= 3 and not user.isdigit():
            words.add(user.lower())
    return numbers, words


def mentions_caller(value: str, marks: tuple[set[str], set[str]]) -> bool:
    """True when a header value carries one of the caller's numbers (any spelling) or names."""
    text = unquote(value).lower()
    digits = re.sub(r"\D", "", text)
    return any(n in digits for n in marks[0]) or any(w in text for w in marks[1])


def _allowed(a_req: Request, trunk: Trunk) -> Iterable[tuple[str, str]]:
    allow = set(trunk.forward_headers) - NEVER_FORWARDED
    if not allow:
        return
    marks = caller_marks(a_req)
    for key, name, value in a_req.headers:
        if key in allow and not mentions_caller(value, marks):
            yield name, value


#: ``extensions_overlap`` and ``parse_extension_range`` live in :mod:`b2bua.routing.extensions`; they are
#: re-exported here for the tests that import them from this module.
__all__ = ["Notice", "NumberPlan", "Presentation", "effective_caller_id", "extensions_overlap", "inbound", "outbound",
           "parse_extension_range", "scrub_sdp"]
