"""Staff protection: situational ringback, the recording notice, recordings and the staff keys.

Sans-I/O like the B2BUA it plugs into (:class:`~b2bua.call.features.Features`): it is driven by the
call's events, arms timers through the B2BUA's clock and reaches media only through the call's
:class:`~b2bua.call.media.MediaSession` (``play``, ``stop_play``, ``record``, ``stop_record``).

For a citizen's call to a department (staff on leg b):

1. the department's situation (open, lunch, after hours, holiday, moved, ...) is looked up;
2. a *closed* situation plays its prompt as early media (our own 183, RFC 3262 when the caller
   supports 100rel) and then releases the call with the configured status, or sends it on to the
   configured fallback;
3. ``recording: full`` plays the recording notice first and records from that moment, so the
   notice itself is in the file; only then is the staff phone alerted;
4. while the staff phone rings the caller hears the situation's prompt looped with ringback;
   the answer stops it and the staff member's audio follows on the same RTP stream.

During the conversation only the staff leg's keys count (RFC 4733 or SIP INFO; the caller never
hears them): the recording key toggles an on-demand recording with a beep to staff, and the
long-call key, once the department's limit has passed, plays the termination announcement to both
parties and then ends the call with a Reason header (cause ``long_call_terminated``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from ..config import Department
from ..sip.timers import TimerHandle
from .b2bua import B2BUA
from .ending import AnnouncedEndings
from .features import Features
from .media import MediaSession
from .model import Call
from .route import Route
from .state import ENDED, LIVE

log = logging.getLogger("b2bua.protection")

#: keys further apart than this start a new sequence
KEY_GAP_S = 3.0
#: the announcement's BYE goes out at the latest this long after the prompt should have ended
ANNOUNCEMENT_GRACE_S = 2.0
RATE = 8000

LONG_CALL_REASON = 'Q.850;cause=16;text="Long call terminated by staff"'
MAX_DURATION_REASON = 'Q.850;cause=16;text="Maximum call duration"'


class Prompts(Protocol):
    """Prompt audio as 8 kHz int16 arrays (decoded and cached by the wiring layer)."""

    def get(self, name: str) -> Any: ...
    def ringback(self, name: str) -> Any: ...
    def beep(self) -> Any: ...
    def refused(self) -> Any: ...


@dataclass(slots=True)
class RecordingStarted:
    call_id: str
    department: str
    direction: str
    #: "full" or "on_demand"
    reason: str
    path: str
    start: float  # Unix time


class RecordingLog(Protocol):
    """Where recordings go and who indexes them."""

    def path_for(self, call_id: str, segment: int) -> str: ...
    def started(self, rec: RecordingStarted) -> None: ...
    def stopped(self, path: str, when: float) -> None: ...


class Phase(Enum):
    NOTICE = "notice"  # the recording notice plays; the staff phone is not alerted yet
    CLOSED = "closed"  # the closed-situation prompt plays; release or fallback follows
    RINGBACK = "ringback"  # the staff phone rings; the caller hears the situation's prompt
    TALKING = "talking"
    ENDING = "ending"  # the termination announcement plays to both parties


@dataclass(slots=True)
class Protected:
    """A call's protection state (``Call.features``)."""

    department: Department | None  # None: an announcement for a number nobody owns
    staff_leg: str
    inbound: bool
    situation: str = "open"
    phase: Phase = Phase.RINGBACK
    early: bool = False
    playing: bool = False
    keys: str = ""
    key_at: float = -1e9
    recording: str | None = None
    segments: int = 0
    timer: TimerHandle | None = None
    hard_timer: TimerHandle | None = None

    @property
    def dept(self) -> Department:
        """The department whose policy applies (an announcement call has none and never asks)."""
        if self.department is None:
            raise LookupError("an announcement for an unknown number has no department policy")
        return self.department


class StaffProtection(Features):
    """The department policies of ``routing.yaml`` applied to calls."""

    def __init__(self, b2bua: B2BUA, *, departments: Callable[[str], Department | None],
                 situation: Callable[[Department], str], prompts: Prompts, recordings: RecordingLog,
                 fallback: Callable[[str], Route | None], wall: Callable[[], float] = time.time):
        self.b2bua = b2bua
        self.departments = departments
        self.situation = situation
        self.prompts = prompts
        self.recordings = recordings
        self.fallback = fallback
        self.wall = wall
        self.stats: Counter[str] = Counter()
        #: long calls ending after their announcement
        self.endings = AnnouncedEndings(b2bua)
        b2bua.features = self

    # -- call start ------------------------------------------------------------------------
    def on_new_call(self, call: Call) -> bool:
        if call.route.announcement is not None:
            return self._announce_and_release(call)
        name = call.route.department
        dept = self.departments(name) if name else None
        if dept is None:
            return False
        inbound = call.route.direction == "inbound"
        st = Protected(dept, staff_leg="b" if inbound else "a", inbound=inbound)
        call.features = st
        if call.media is not None:
            call.media.quiet_keys.add(st.staff_leg)  # staff keys never reach the citizen
        if not inbound:
            return False
        try:
            st.situation = self.situation(dept)
        except Exception:  # a broken schedule must not lose the call
            log.exception("call %s: situation of %s unknown; treated as open", call.id, dept.name)
        self.stats[f"situation:{st.situation}"] += 1
        closed = dept.policy.closed.get(st.situation)
        if closed is not None:
            st.phase = Phase.CLOSED
            prompt = dept.policy.ringback.get(st.situation)
            if prompt and self._early(call, st) and self._play(call, st, "a", prompt):
                return True
            return self._after_closed(call, st)
        return self._admit(call, st)

    def _announce_and_release(self, call: Call) -> bool:
        """A number nobody owns: its prompt as early media, then the configured status."""
        route = call.route
        st = Protected(None, staff_leg="b", inbound=True, phase=Phase.CLOSED)
        call.features = st
        self.stats["announcements"] += 1
        if not (self._early(call, st) and self._play(call, st, "a", route.announcement or "")):
            self.b2bua.release(call, route.release_status, "unknown_number")
        return True

    def _admit(self, call: Call, st: Protected) -> bool:
        """Notice (and recording) first for ``recording: full``, else straight to ringing."""
        policy = st.dept.policy
        if policy.recording == "full" and self._early(call, st):
            st.phase = Phase.NOTICE
            self._start_recording(call, st, "full")
            if self._play(call, st, "a", policy.recording_notice):
                self.stats["notices"] += 1
                return True
        self._ringback(call, st)
        return False

    def _ringback(self, call: Call, st: Protected) -> None:
        st.phase = Phase.RINGBACK
        prompt = st.dept.policy.ringback_for(st.situation)
        if prompt and self._early(call, st):
            samples = self._samples(call, prompt, ringback=True)
            if samples is None:
                return
            self._media(call).play("a", samples, prompt=prompt, loop=True)
            st.playing = True
            self.stats["ringbacks"] += 1

    def _after_closed(self, call: Call, st: Protected) -> bool:
        """The closed prompt has played (or could not): send the call to the fallback, or release it."""
        if st.department is None:  # an unknown number's announcement
            self.b2bua.release(call, call.route.release_status, "unknown_number")
            return True
        action = st.dept.policy.closed[st.situation]
        route = self.fallback(action.fallback) if action.fallback else None
        if route is not None:
            dept = self.departments(route.department) if route.department else None
            r = call.route
            r.targets, r.name, r.codecs, r.symmetric_b = route.targets, route.name, route.codecs, route.symmetric_b
            r.department, r.credentials, r.failover = route.department, route.credentials, route.failover
            self.stats["fallbacks"] += 1
            log.info("call %s: %s is %s, sent on to %s", call.id, st.dept.name, st.situation, action.fallback)
            if dept is not None:
                st.department, st.situation = dept, "open"
                held = self._admit(call, st)
            else:
                self._ringback(call, st)
                held = False
            if not held:
                self.b2bua.proceed(call)
            return True
        self.stats["closed_releases"] += 1
        self.b2bua.release(call, action.release_status, f"closed_{st.situation}")
        return True

    # -- events --------------------------------------------------------------------------
    def on_play_done(self, call: Call, leg: str, prompt: str) -> None:
        st = call.features
        if not isinstance(st, Protected):
            return
        st.playing = False
        if st.phase in (Phase.NOTICE, Phase.CLOSED) and st.timer is not None:
            st.timer.cancel()
            st.timer = None
        if st.phase is Phase.NOTICE and leg == "a":
            self._ringback(call, st)
            self.b2bua.proceed(call)
        elif st.phase is Phase.CLOSED and leg == "a":
            self._after_closed(call, st)
        elif st.phase is Phase.ENDING:
            self.endings.on_play_done(call, leg, prompt)

    def on_answer(self, call: Call) -> None:
        st = call.features
        if not isinstance(st, Protected):
            return
        if st.playing and call.media is not None:
            self._media(call).stop_play("a")
            st.playing = False
        st.phase = Phase.TALKING
        if st.inbound and st.dept.policy.recording == "full" and st.recording is None:
            self._start_recording(call, st, "full")  # no early media was possible (late offer)
        hard = st.dept.policy.long_call.hard_max_min
        if hard:
            st.hard_timer = self.b2bua.call_at(self.b2bua.clock.now + hard * 60, self._hard_max, call)

    def on_dtmf(self, call: Call, leg: str, digit: str) -> None:
        st = call.features
        if not isinstance(st, Protected) or leg != st.staff_leg:
            return  # the caller's keypad never triggers anything
        now = self.b2bua.clock.now
        if now - st.key_at > KEY_GAP_S:
            st.keys = ""
        st.key_at = now
        st.keys = (st.keys + digit)[-4:]
        if st.phase is not Phase.TALKING or call.state not in LIVE:
            return
        policy = st.dept.policy
        if policy.recording == "on_demand" and st.keys.endswith(policy.recording_key):
            st.keys = ""
            self._toggle_recording(call, st)
        elif st.keys.endswith(policy.long_call.key):
            st.keys = ""
            answered = call.answered if call.answered is not None else now
            if now - answered >= policy.long_call.limit_min * 60:
                self.stats["long_call_terminated"] += 1
                self._announce_end(call, st, "long_call_terminated", LONG_CALL_REASON)
            else:
                self.stats["long_call_key_early"] += 1
                self._tone(call, st.staff_leg, self.prompts.refused(), "refused")

    def is_recording(self, call: Call) -> bool:
        """Whether the call is being recorded now (full recording, or on demand)."""
        st = call.features
        return isinstance(st, Protected) and st.recording is not None

    def on_end(self, call: Call) -> None:
        self.endings.on_end(call)
        st = call.features
        if not isinstance(st, Protected):
            return
        for handle in (st.timer, st.hard_timer):
            if handle is not None:
                handle.cancel()
        if st.recording is not None:
            self.recordings.stopped(st.recording, self.wall())  # the engine closes the file
            st.recording = None
        call.features = None

    # -- the long-call key and the hard maximum ------------------------------------------------
    def _hard_max(self, call: Call) -> None:
        st = call.features
        if isinstance(st, Protected) and st.phase is Phase.TALKING and call.state in LIVE:
            self.stats["max_duration"] += 1
            self._announce_end(call, st, "max_duration", MAX_DURATION_REASON)

    def _announce_end(self, call: Call, st: Protected, cause: str, reason: str) -> None:
        """The announcement mixed into both directions, then BYE on both legs."""
        st.phase = Phase.ENDING
        name = st.dept.policy.long_call.announcement
        log.info("call %s: %s, announcing", call.id, cause)
        self.endings.start(call, self._samples(call, name), name, cause, reason)

    # -- recording ---------------------------------------------------------------------------
    def _toggle_recording(self, call: Call, st: Protected) -> None:
        if st.recording is not None:
            self._media(call).stop_record()
            self.recordings.stopped(st.recording, self.wall())
            log.info("call %s: on-demand recording stopped", call.id)
            st.recording = None
        else:
            self._start_recording(call, st, "on_demand")
        self._tone(call, st.staff_leg, self.prompts.beep(), "beep")

    def _start_recording(self, call: Call, st: Protected, reason: str) -> None:
        if call.media is None or st.recording is not None:
            return
        st.segments += 1
        path = self.recordings.path_for(call.id, st.segments)
        self._media(call).record(path)
        st.recording = path
        self.stats[f"recordings:{reason}"] += 1
        self.recordings.started(RecordingStarted(call.id, st.dept.name,
                                                 "inbound" if st.inbound else "outbound", reason, path, self.wall()))
        log.info("call %s: recording (%s) to %s", call.id, reason, path)

    # -- media helpers -------------------------------------------------------------------------
    @staticmethod
    def _media(call: Call) -> MediaSession:
        assert call.media is not None
        return call.media

    def _early(self, call: Call, st: Protected) -> bool:
        if not st.early:
            st.early = self.b2bua.early_media(call)
        return st.early

    def _play(self, call: Call, st: Protected, leg: str, name: str) -> bool:
        """Play a prompt once to ``leg`` (replacing the other side); False if it cannot play."""
        samples = self._samples(call, name)
        if samples is None:
            return False
        self._media(call).play(leg, samples, prompt=name)
        st.playing = True
        # if the engine cannot play it (no address for the caller yet) the call must not hang here
        phase = st.phase
        if st.timer is not None:
            st.timer.cancel()
        st.timer = self.b2bua.call_at(self.b2bua.clock.now + len(samples) / RATE + ANNOUNCEMENT_GRACE_S,
                                                   self._prompt_overdue, call, st, phase, leg, name)
        return True

    def _samples(self, call: Call, name: str, *, ringback: bool = False) -> Any | None:
        """A prompt's audio (looped with ringback), or None, logged: a call never fails on a prompt."""
        try:
            return self.prompts.ringback(name) if ringback else self.prompts.get(name)
        except Exception as exc:
            log.warning("call %s: prompt %r unavailable: %s", call.id, name, exc)
            return None

    def _prompt_overdue(self, call: Call, st: Protected, phase: Phase, leg: str, name: str) -> None:
        if call.features is st and st.phase is phase and call.state is not ENDED:
            log.warning("call %s: prompt %r did not finish in time; going on", call.id, name)
            self.on_play_done(call, leg, name)

    def _tone(self, call: Call, leg: str, samples: Any, name: str) -> None:
        if call.media is not None:
            self._media(call).play(leg, samples, prompt=name, mix=True)


__all__ = ["Phase", "Prompts", "Protected", "RecordingLog", "RecordingStarted", "StaffProtection"]
