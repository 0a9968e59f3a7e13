"""What an operator does to the calls in progress: list them, end one, drain the process for a restart.

Sans-I/O like the rest of call control (driven by the admin API and the signal handlers, timers through
the B2BUA); plugs in as a :class:`~.features.Features` for the announcement before an operator's hangup.

- :meth:`OperatorControl.calls`: what ``b2bua calls`` and ``GET /api/calls`` show. The citizen's number
  (the caller of an inbound call, the callee of a staff member's outbound call) is masked but for its last
  four digits unless the configuration allows operators to see it (personal data, PIPA); staff
  extensions are shown.
- :meth:`OperatorControl.hangup`: an answered call ends with BYE on both legs (Reason, CDR cause
  ``operator_hangup``), after an announcement to both when one is asked for; a call still ringing is
  refused to the caller (480) and cancelled towards the callee.
- :meth:`OperatorControl.drain`: new calls and OPTIONS get 503 with Retry-After from now on; calls in
  progress may finish for ``seconds``, then :meth:`end_all` ends them (BYE with Reason, CDR cause
  ``shutdown``); :meth:`finish_all` forgets what still waits for an answer to its BYE (CDR written).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ..sip.timers import TimerHandle
from ..sip.uri import SipUri
from .b2bua import B2BUA
from .ending import AnnouncedEndings
from .features import Features
from .model import Call
from .state import LIVE, UNANSWERED

OPERATOR_REASON = 'Q.850;cause=16;text="Call ended by the operator"'
SHUTDOWN_REASON = 'Q.850;cause=41;text="Service restarting"'
CODEC_NAMES = {0: "PCMU", 8: "PCMA"}


class Prompts(Protocol):
    def get(self, name: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class CallInfo:
    """One call in progress as an operator sees it (JSON-ready)."""

    id: str
    a_call_id: str
    b_call_id: str | None
    trunk: str | None
    route: str
    department: str | None
    direction: str
    state: str
    #: seconds since the INVITE came, and since the answer (0 before it)
    age_s: float
    duration_s: float
    codec: dict[str, str]
    recording: bool
    caller: str
    callee: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mask(number: str) -> str:
    """All but the last four digits hidden: ``01012345678`` -> ``*******5678``."""
    digits = re.sub(r"\D", "", number)
    return "*" * max(0, len(digits) - 4) + digits[-4:] if digits else ""


def uri_number(uri: str) -> str:
    """The user part of a sip:/sips: URI, a tel: URI's number, else ''."""
    scheme, _, rest = uri.partition(":")
    if scheme.lower() == "tel":
        return rest.split(";", 1)[0]
    try:
        return SipUri.parse(uri).user or ""
    except ValueError:
        return ""


def parties(from_uri: str, to_uri: str, department: str | None, direction: str | None,
            show: bool) -> tuple[str, str]:
    """A call's caller and callee numbers as operators see them: on a department's call the citizen's
    (the caller inbound, the callee outbound) masked, unless ``show`` (``admin.show_numbers``)."""
    caller, callee = uri_number(from_uri), uri_number(to_uri)
    if not show and department:
        if direction == "inbound":
            caller = mask(caller)
        else:
            callee = mask(callee)
    return caller, callee


class OperatorControl(Features):
    """The operator's hold on calls in progress."""

    def __init__(self, b2bua: B2BUA, *, prompts: Prompts, recording: Callable[[Call], bool] | None = None,
                 show_numbers: bool = False):
        self.b2bua = b2bua
        self.prompts = prompts
        #: whether a call is being recorded (staff protection knows)
        self.recording = recording
        self.show_numbers = show_numbers
        self.endings = AnnouncedEndings(b2bua)
        self._drain_timer: TimerHandle | None = None
        #: what never changes in a call's listing (its parties, masked), by call id: the console lists every
        #: call every second, and parsing two URIs per call each time would cost the event loop
        self._parties: dict[str, tuple[str, str]] = {}

    # -- what is going on ----------------------------------------------------------------------
    def calls(self) -> list[CallInfo]:
        now = self.b2bua.clock.now
        return [self._info(call, now) for call in list(self.b2bua.calls.values())]

    def _info(self, call: Call, now: float) -> CallInfo:
        req = call.a_invite.request
        caller, callee = self._parties.get(call.id) or self._remember(call)
        codec = {leg: CODEC_NAMES.get(pt, str(pt)) for leg, pt in (call.media.codec.items() if call.media else ())}
        b_call_id = call.b.dialog.call_id if call.b.dialog is not None else \
            call.b_invite.request.call_id if call.b_invite is not None else None
        return CallInfo(
            id=call.id, a_call_id=req.call_id, b_call_id=b_call_id, trunk=call.route.source,
            route=call.route.name, department=call.route.department, direction=call.route.direction,
            state=call.state.value, age_s=round(now - call.started, 1),
            duration_s=round(now - call.answered, 1) if call.answered is not None else 0.0, codec=codec,
            recording=bool(self.recording(call)) if self.recording is not None else False,
            caller=caller, callee=callee)

    def _remember(self, call: Call) -> tuple[str, str]:
        req = call.a_invite.request
        shown = parties(req.from_.uri, str(req.uri), call.route.department, call.route.direction, self.show_numbers)
        self._parties[call.id] = shown
        return shown

    def set_show_numbers(self, show: bool) -> None:
        """A reload changed ``admin.show_numbers``: the listing follows at once."""
        self.show_numbers = show
        self._parties.clear()

    # -- ending calls ----------------------------------------------------------------------------
    def hangup(self, call_id: str, announcement: str | None = None) -> bool:
        """End one call (see the module's docstring); False when there is no such call."""
        call = self.b2bua.calls.get(call_id)
        if call is None:
            return False
        call.log.info("operator hangup%s", f" after {announcement!r}" if announcement else "")
        if call.state in LIVE:
            samples = self._prompt(call, announcement) if announcement else None
            self.endings.start(call, samples, announcement or "", "operator_hangup", OPERATOR_REASON)
        elif call.state in UNANSWERED:
            self.b2bua.release(call, 480, "operator_hangup")
        return True

    def _prompt(self, call: Call, name: str) -> Any | None:
        try:
            return self.prompts.get(name)
        except Exception as exc:  # the call still ends, without the announcement
            call.log.warning("announcement %r unavailable: %s", name, exc)
            return None

    def drain(self, seconds: float) -> None:
        """Refuse new calls from now on; end the calls still up after ``seconds``."""
        self.b2bua.draining = True
        if self._drain_timer is None:
            self._drain_timer = self.b2bua.call_at(self.b2bua.clock.now + seconds, self.end_all)

    def end_all(self, cause: str = "shutdown") -> int:
        """End every call now: BYE on both legs of the answered ones, 503 to the callers of the others."""
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        calls = list(self.b2bua.calls.values())
        for call in calls:
            if call.state in LIVE:
                self.b2bua.end_call(call, cause, SHUTDOWN_REASON)
            elif call.state in UNANSWERED:
                self.b2bua.release(call, 503, cause)
        return len(calls)

    def finish_all(self, cause: str = "shutdown") -> int:
        """Forget every call left (their BYE or CANCEL unanswered): each one's CDR is written now."""
        calls = list(self.b2bua.calls.values())
        for call in calls:
            call.cause = call.cause or cause
            call.ended_by = call.ended_by or "b2bua"
            self.b2bua.finish(call)
        return len(calls)

    # -- Features --------------------------------------------------------------------------------
    def on_play_done(self, call: Call, leg: str, prompt: str) -> None:
        self.endings.on_play_done(call, leg, prompt)

    def on_end(self, call: Call) -> None:
        self.endings.on_end(call)
        self._parties.pop(call.id, None)


__all__ = ["CallInfo", "OPERATOR_REASON", "OperatorControl", "SHUTDOWN_REASON", "mask", "parties", "uri_number"]
