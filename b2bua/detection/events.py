"""What detection reports about a call, and what is kept of it (one row per event, with its audio)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Detection:
    """One utterance of a monitored leg, transcribed and classified by a detection worker.

    ``start``/``end`` are seconds into what the tap delivered for that leg; ``clip`` is the utterance
    with up to two seconds around it (int16 8 kHz, native byte order) from ``clip_start`` on, kept as
    evidence when the utterance becomes an event.
    """

    session: str
    leg: str
    start: float
    end: float
    text: str
    #: the classifier's verdict on the text alone, and the score after the shouting cue raised it
    category: str | None
    score: float
    abusive: bool
    #: dB above the caller's own baseline when the utterance overlapped a shouting cue, else None
    shout_excess_db: float | None = None
    asr_engine: str = ""
    model_version: str = ""
    clip: bytes = b""
    clip_start: float = 0.0


@dataclass(frozen=True, slots=True)
class EvidenceClip:
    """The whole clip of an utterance: from up to 2 s before it to 2 s after it (or to the end of what was
    heard), sent by the segmenter once those seconds have passed; it replaces the shorter clip an event
    made from the :class:`Detection` of ``(session, leg, start)`` was stored with."""

    session: str
    leg: str
    start: float
    clip: bytes  # int16 8 kHz, native byte order
    clip_start: float


@dataclass(frozen=True, slots=True)
class AbuseEvent:
    """What the evidence store keeps of one event (see :mod:`b2bua.storage.abuse`)."""

    event_id: str
    call_id: str
    sip_call_id: str
    department: str
    #: seconds since the call was answered
    offset: float
    category: str  # profanity | insult | threat | sexual_harassment | shouting | reported
    score: float
    transcript: str
    asr_engine: str
    model_version: str
    #: what the policy did: warned | terminated | recorded (a cue or an event inside the cooldown)
    action: str
    shout_excess_db: float | None
    clip: bytes  # int16 8 kHz, native byte order
    reported_by: str = "detector"  # detector | staff


__all__ = ["AbuseEvent", "Detection", "EvidenceClip"]
