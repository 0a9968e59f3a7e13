"""What a department's ``policy.abuse`` does with what detection reports: warn, then end the call.

Plugs into call control as a :class:`~b2bua.call.features.Features` (beside staff protection, in a
:class:`~b2bua.call.features.FeatureChain`); sans-I/O like it: driven by the call's events and by
:meth:`AbuseProtection.on_detection`, timers through the B2BUA, media through the call's
:class:`~b2bua.call.media.MediaSession`.

- When a call of a department with detection on is answered, the citizen's leg (the caller of an
  inbound call, the callee of a staff member's outbound call) is tapped.
- An utterance scoring at least ``threshold`` is a detection. The first plays the warning prompt to
  the citizen and, mixed under a short tone, to the staff member; at ``end_after`` detections, or at
  once for a category of ``end_at_once`` (threats), the termination prompt plays to both and the call
  ends with a Reason header and CDR cause ``abuse_terminated``.
- One long outburst is one detection: within ``cooldown_s`` of the last counted one an utterance is
  kept as evidence (action ``recorded``) but not counted again.
- A shouting cue with nothing abusive said is kept (category ``shouting``), never acted on.
- The staff key ``report_key`` reports abuse by hand: an event with the last utterances, and the warning.
- An event is stored at once with the audio heard so far; the utterance's whole clip (2 s after it
  included) replaces it when the segmenter sends it (:meth:`AbuseProtection.on_clip`).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..call.b2bua import B2BUA
from ..call.ending import AnnouncedEndings
from ..call.features import Features
from ..call.model import Call
from ..call.state import LIVE
from ..config import Abuse, Department
from .events import AbuseEvent, Detection, EvidenceClip

log = logging.getLogger("b2bua.abuse")

RATE = 8000
TERMINATED_REASON = 'Q.850;cause=16;text="Call ended: abusive language"'
#: utterances of a call kept for a staff member's report
KEPT_UTTERANCES = 5
#: keys further apart than this start a new sequence
KEY_GAP_S = 3.0
#: whole clips kept for events still to come (a slow recognizer, a staff member's report), and events kept
#: waiting for their clip: the oldest go first (a clip is ~100-250 kB)
KEPT_CLIPS = 128
AWAITING_EVENTS = 1024

Utterance = tuple[str, str, float]  # (session, leg, start): what ties a clip to its detection


class Prompts(Protocol):
    def get(self, name: str) -> Any: ...
    def beep(self) -> Any: ...


class EvidenceStore(Protocol):
    """Where events go (:class:`b2bua.storage.abuse.AbuseEvents`)."""

    def record(self, event: AbuseEvent) -> None: ...

    def replace_clip(self, event_id: str, clip: bytes) -> None: ...


@dataclass(slots=True)
class Monitored:
    """A call whose citizen is being listened to."""

    department: Department
    citizen: str  # the citizen's leg: "a" or "b"
    count: int = 0
    last_counted: float = -1e9
    ending: bool = False
    recent: deque[Detection] = field(default_factory=lambda: deque(maxlen=KEPT_UTTERANCES))
    keys: str = ""
    key_at: float = -1e9

    @property
    def staff(self) -> str:
        return "b" if self.citizen == "a" else "a"

    @property
    def policy(self) -> Abuse:
        return self.department.policy.abuse


class AbuseProtection(Features):
    """``policy.abuse`` of ``routing.yaml`` applied to calls."""

    def __init__(self, b2bua: B2BUA, *, departments: Callable[[str], Department | None], prompts: Prompts,
                 evidence: EvidenceStore):
        self.b2bua = b2bua
        self.departments = departments
        self.prompts = prompts
        self.evidence = evidence
        self.calls: dict[str, Monitored] = {}
        self.endings = AnnouncedEndings(b2bua)
        self.stats: Counter[str] = Counter()
        #: called when a call's leg starts being monitored, and when the call ends (the application starts
        #: detection's processes and tells the segmenter the department's shouting settings)
        self.on_monitor: Callable[[str, str, Abuse], None] | None = None
        self.on_unmonitor: Callable[[str], None] | None = None
        #: events stored with the clip heard so far, waiting for their utterance's whole clip; whole clips
        self._awaiting: OrderedDict[Utterance, list[str]] = OrderedDict()
        self._clips: OrderedDict[Utterance, bytes] = OrderedDict()

    # -- the call's life -----------------------------------------------------------------------
    def on_answer(self, call: Call) -> None:
        name = call.route.department
        dept = self.departments(name) if name else None
        if dept is None or not dept.policy.abuse.enabled or call.media is None:
            return
        mon = Monitored(dept, citizen="a" if call.route.direction == "inbound" else "b")
        self.calls[call.id] = mon
        call.media.tap(mon.citizen)
        if self.on_monitor is not None:
            self.on_monitor(call.id, mon.citizen, dept.policy.abuse)
        self.stats["monitored"] += 1
        call.log.info("abuse detection on leg %s (%s)", mon.citizen, dept.name)

    def on_end(self, call: Call) -> None:
        mon = self.calls.pop(call.id, None)
        self.endings.on_end(call)
        if mon is not None and self.on_unmonitor is not None:
            self.on_unmonitor(call.id)

    def on_dtmf(self, call: Call, leg: str, digit: str) -> None:
        mon = self.calls.get(call.id)
        if mon is None or leg != mon.staff or call.state not in LIVE:
            return  # only the staff member's keys count
        now = self.b2bua.clock.now
        if now - mon.key_at > KEY_GAP_S:
            mon.keys = ""
        mon.key_at = now
        mon.keys = (mon.keys + digit)[-4:]
        if mon.keys.endswith(mon.policy.report_key) and not mon.ending:
            mon.keys = ""
            self.stats["reported"] += 1
            said = " / ".join(d.text for d in mon.recent if d.text)
            clip = mon.recent[-1] if mon.recent else None
            self._count(call, mon, "reported", 1.0, said, clip, reported_by="staff")

    # -- what detection says --------------------------------------------------------------------
    def on_detection(self, det: Detection) -> None:
        """An utterance of a monitored leg, transcribed and classified (from a detection worker)."""
        call = self.b2bua.calls.get(det.session)
        mon = self.calls.get(det.session)
        if call is None or mon is None or det.leg != mon.citizen or call.state not in LIVE:
            return  # the call ended meanwhile, or it is not the citizen speaking
        mon.recent.append(det)
        self.stats["utterances"] += 1
        policy = mon.policy
        if det.abusive and det.category is not None and det.score >= policy.threshold:
            if mon.ending or self.b2bua.clock.now - mon.last_counted < policy.cooldown_s:
                self._keep(call, mon, det, det.category, "recorded")  # the same outburst, or already ending
                return
            self._count(call, mon, det.category, det.score, det.text, det)
        elif det.shout_excess_db is not None:
            self.stats["shouting"] += 1
            self._keep(call, mon, det, "shouting", "recorded")  # a cue alone never acts

    def on_clip(self, clip: EvidenceClip) -> None:
        """An utterance's whole clip: it replaces the shorter one of the events made from it, and is kept for
        events still to come (its detection is still being recognized, or staff report it later)."""
        key = (clip.session, clip.leg, clip.start)
        _bounded(self._clips, key, clip.clip, KEPT_CLIPS)
        for event_id in self._awaiting.pop(key, []):
            try:
                self.evidence.replace_clip(event_id, clip.clip)
            except Exception:
                log.exception("abuse event %s: whole clip not stored", event_id)

    def _count(self, call: Call, mon: Monitored, category: str, score: float, text: str, det: Detection | None,
               reported_by: str = "detector") -> None:
        mon.count += 1
        mon.last_counted = self.b2bua.clock.now
        policy = mon.policy
        if mon.count >= policy.end_after or category in policy.end_at_once:
            action = "terminated"
            self._terminate(call, mon)
        else:
            action = "warned"
            self._warn(call, mon)
        self._keep(call, mon, det, category, action, score=score, text=text, reported_by=reported_by)

    def _keep(self, call: Call, mon: Monitored, det: Detection | None, category: str, action: str, *,
              score: float | None = None, text: str | None = None, reported_by: str = "detector") -> None:
        answered = call.answered if call.answered is not None else self.b2bua.clock.now
        event_id = uuid.uuid4().hex
        clip = det.clip if det else b""
        if det is not None:
            key = (det.session, det.leg, det.start)
            if key in self._clips:
                clip = self._clips[key]
            else:
                _bounded(self._awaiting, key, [*self._awaiting.get(key, []), event_id], AWAITING_EVENTS)
        event = AbuseEvent(
            event_id=event_id, call_id=call.id, sip_call_id=call.a_invite.request.call_id,
            department=mon.department.name, offset=round(self.b2bua.clock.now - answered, 3), category=category,
            score=round(score if score is not None else det.score if det else 0.0, 4),
            transcript=text if text is not None else det.text if det else "",
            asr_engine=det.asr_engine if det else "", model_version=det.model_version if det else "",
            action=action, shout_excess_db=det.shout_excess_db if det else None, clip=clip,
            reported_by=reported_by)
        self.stats[f"events:{action}"] += 1
        call.log.info("abuse event %s: %s (%.2f) -> %s", event.event_id, category, event.score, action)
        try:
            self.evidence.record(event)
        except Exception:  # evidence must never take the call down with it
            log.exception("call %s: abuse event %s not stored", call.id, event.event_id)

    # -- what the parties hear --------------------------------------------------------------------
    def _prompt(self, call: Call, name: str) -> Any | None:
        try:
            return self.prompts.get(name)
        except Exception as exc:
            call.log.warning("prompt %r unavailable: %s", name, exc)
            return None

    def _warn(self, call: Call, mon: Monitored) -> None:
        """The warning to the citizen; a tone and the warning, over the conversation, to the staff member."""
        self.stats["warned"] += 1
        samples = self._prompt(call, mon.policy.warn_prompt)
        if samples is None or call.media is None:
            return
        call.media.play(mon.citizen, samples, prompt=mon.policy.warn_prompt, mix=True)
        staff = np.concatenate([np.asarray(self.prompts.beep(), dtype=np.int16), np.asarray(samples, np.int16)])
        call.media.play(mon.staff, staff, prompt=mon.policy.warn_prompt, mix=True)

    def _terminate(self, call: Call, mon: Monitored) -> None:
        """The termination prompt to both, then BYE on both legs (Reason, CDR cause ``abuse_terminated``)."""
        mon.ending = True
        self.stats["terminated"] += 1
        self.endings.start(call, self._prompt(call, mon.policy.end_prompt), mon.policy.end_prompt,
                           "abuse_terminated", TERMINATED_REASON)

    def on_play_done(self, call: Call, leg: str, prompt: str) -> None:
        self.endings.on_play_done(call, leg, prompt)


def _bounded(kept: OrderedDict[Utterance, Any], key: Utterance, value: Any, most: int) -> None:
    """Keep ``value`` under ``key``, the oldest entries going once there are more than ``most``."""
    kept[key] = value
    kept.move_to_end(key)
    while len(kept) > most:
        kept.popitem(last=False)


__all__ = ["AbuseProtection", "EvidenceStore", "Monitored", "TERMINATED_REASON"]
