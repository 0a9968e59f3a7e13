"""Offer/answer for an anchored call (RFC 3264), driving the media engine's commands.

Each leg sees only our address and ports. The offer we send on is the offerer's
G.711 codecs in its order, plus the ones we can transcode to; the answer we give
back picks the answerer's codec when the offerer has it and the offerer's first
codec otherwise (the engine then transcodes). Non-audio streams are refused with
port 0 (§6). Directions follow §6.1, so a hold offer is never answered sendrecv.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any

from media.api import Engine

from ..sip.sdp import Codec, Media, SdpError, SessionDescription

#: Codecs the engine can relay and transcode between.
SUPPORTED = {"pcmu": 0, "pcma": 8}
TELEPHONE_EVENT = "telephone-event"

_ANSWER_DIRECTION = {  # offer direction -> allowed answer directions, first is the default
    "sendrecv": ("sendrecv", "sendonly", "recvonly", "inactive"),
    "sendonly": ("recvonly", "inactive"),
    "recvonly": ("sendonly", "inactive"),
    "inactive": ("inactive",),
}


class NotAcceptable(SdpError):
    """No usable audio stream: 488 (RFC 3261 §21.4.26)."""

    status = 488
    reason = "Not Acceptable Here"


def answer_direction(offer: str, answer: str) -> str:
    """The direction to give an offerer whose offer said ``offer`` when the far answer said ``answer``."""
    allowed = _ANSWER_DIRECTION.get(offer, _ANSWER_DIRECTION["sendrecv"])
    return answer if answer in allowed else allowed[0] if offer != "sendrecv" else answer


def _flags(direction: str) -> tuple[bool, bool]:
    """(we may send to the endpoint, the endpoint sends to us) for its own SDP direction."""
    return direction in ("sendrecv", "recvonly"), direction in ("sendrecv", "sendonly")


@dataclass(slots=True)
class _Offer:
    from_leg: str
    sdp: SessionDescription
    audio_index: int
    codecs: list[Codec]
    dtmf_pt: int | None
    direction: str


_session_ids = itertools.count(int.from_bytes(os.urandom(3), "big"))


class MediaSession:
    """The signalling side of one call's media."""

    def __init__(self, engine: Engine, session_id: str, symmetric: bool | dict[str, bool] = True,
                 prefer: dict[str, list[str]] | None = None):
        self.engine = engine
        self.id = session_id
        #: latch to the real RTP source, per leg (a trunk's symmetric_rtp setting)
        self.symmetric = symmetric if isinstance(symmetric, dict) else {"a": symmetric, "b": symmetric}
        #: codec preference per leg (a trunk's codecs), e.g. {"b": ["PCMA", "PCMU"]}
        self.prefer = {leg: [c.lower() for c in names] for leg, names in (prefer or {}).items()}
        self.ports: dict[str, tuple[str, int]] = {}
        self.codec: dict[str, int] = {}
        #: our o= session id per leg, and the version we last sent (RFC 8866 §5.2, RFC 3264 §8)
        self._session_id = {leg: str(next(_session_ids)) for leg in ("a", "b")}
        self._version = {"a": 0, "b": 0}
        self._pending: _Offer | None = None
        self._answers: dict[bytes, bytes] = {}  # answerer SDP -> the answer we gave (for repeated 18x/2xx)
        self.closed = False
        #: the SDP we last sent to each leg (a session refresh repeats it unchanged)
        self.last_sent: dict[str, bytes] = {}
        #: o= (session id, version) we last got from each leg: equal means "no change" (RFC 3264 §8)
        self._last_origin: dict[str, tuple[str, str]] = {}
        #: the answer we gave the offerer ourselves (early media of our own, see answer_locally)
        self._local: bytes | None = None
        #: legs whose RFC 4733 key presses are kept from the other side (staff keys)
        self.quiet_keys: set[str] = set()

    @staticmethod
    def other(leg: str) -> str:
        return "b" if leg == "a" else "a"

    def _port(self, leg: str) -> tuple[str, int]:
        if leg not in self.ports:
            self.ports[leg] = self.engine.allocate(self.id, leg)
        return self.ports[leg]

    def allocate(self) -> None:
        """Reserve both legs' ports up front (PortsExhausted -> 503 before anything is sent)."""
        self._port("a")
        self._port("b")

    @property
    def offer_pending(self) -> bool:
        return self._pending is not None

    # -- offer ---------------------------------------------------------------------------
    def offer(self, from_leg: str, body: bytes) -> bytes:
        """An offer arrived from ``from_leg``; return the offer to send to the other leg."""
        sdp = SessionDescription.parse(body)
        index, audio = _first_audio(sdp)
        codecs = [c for c in audio.codecs() if c.key in SUPPORTED and c.clock == 8000]
        if not codecs:
            raise NotAcceptable("no G.711 codec offered")
        dtmf = _telephone_event(audio)
        to_leg = self.other(from_leg)
        self._port(from_leg)
        host, port = self._port(to_leg)
        send, recv = _flags(audio.direction)
        self.engine.update(self.id, from_leg, remote=_remote(sdp, audio), send=send, recv=recv,
                           symmetric=self.symmetric.get(from_leg, True), codec=self.codec.get(from_leg),
                           relay_dtmf=from_leg not in self.quiet_keys)
        self._pending = _Offer(from_leg, sdp, index, codecs, dtmf.pt if dtmf else None, audio.direction)
        self._answers.clear()
        self._last_origin[from_leg] = _origin(sdp)
        names = [c.key for c in codecs] + [k for k in SUPPORTED if k not in {c.key for c in codecs}]
        wanted = self.prefer.get(to_leg)
        if wanted:  # the receiving trunk's codec preference: its order, only its codecs
            names = [n for n in wanted if n in SUPPORTED] or names
        out_codecs = [Codec(SUPPORTED[n], n.upper(), 8000) for n in names]
        te_pt = dtmf.pt if dtmf else 101
        out = self._build(to_leg, host, port, out_codecs, te_pt, audio.direction, ptime=20).serialize()
        self.last_sent[to_leg] = out
        return out

    def unchanged(self, leg: str, body: bytes) -> bool:
        """True when ``body`` repeats the last SDP from ``leg`` (same o= session id and version)."""
        try:
            return self._last_origin.get(leg) == _origin(SessionDescription.parse(body))
        except SdpError:
            return False

    # -- answer --------------------------------------------------------------------------
    def answer(self, from_leg: str, body: bytes) -> bytes:
        """The answer to our pending offer arrived from ``from_leg``; return the answer for the offerer."""
        cached = self._answers.get(body)
        if cached is not None:
            return cached
        pending = self._pending
        if pending is None or pending.from_leg == from_leg:
            raise SdpError("answer without an offer")
        sdp = SessionDescription.parse(body)
        _, audio = _first_audio(sdp, allow_rejected=True)
        chosen = next((c for c in audio.codecs() if c.key in SUPPORTED), None) if audio.port else None
        offerer = pending.from_leg
        if self._local is not None:
            # the offerer already has our own answer: only the answerer's side is set up now
            # (the engine transcodes if the two codecs differ); the offerer gets the same SDP again
            if chosen is not None:
                self._set_answerer(from_leg, sdp, audio, chosen)
            self._answers[body] = self._local
            self._last_origin[from_leg] = _origin(sdp)
            return self._local
        host, port = self._port(offerer)
        if chosen is None:
            # the answerer refused audio: refuse it to the offerer too
            out = self._rejecting_answer(offerer, pending)
            self._answers[body] = out
            return out
        self._set_answerer(from_leg, sdp, audio, chosen)
        same = next((c for c in pending.codecs if c.key == chosen.key), None)
        offerer_codec = same or pending.codecs[0]
        direction = answer_direction(pending.direction, audio.direction)
        o_send, o_recv = _flags(_reverse(direction))
        self.codec[offerer] = SUPPORTED[offerer_codec.key]
        self.engine.update(self.id, offerer, codec=SUPPORTED[offerer_codec.key], dtmf_pt=pending.dtmf_pt,
                           send=o_send, recv=o_recv, symmetric=self.symmetric.get(offerer, True),
                           relay_dtmf=offerer not in self.quiet_keys)
        codecs = [offerer_codec]
        answer = self._build(offerer, host, port, codecs, pending.dtmf_pt, direction,
                             template=pending, ptime=pending.sdp.media[pending.audio_index].ptime or 20)
        out = answer.serialize()
        self._answers[body] = out
        self._last_origin[from_leg] = _origin(sdp)
        self.last_sent[offerer] = out
        return out

    def _set_answerer(self, leg: str, sdp: SessionDescription, audio: Media, chosen: Codec) -> None:
        """Tell the engine what the answering leg chose: its address, codec, keys and direction."""
        dtmf = _telephone_event(audio)
        send, recv = _flags(audio.direction)
        self.codec[leg] = SUPPORTED[chosen.key]
        self.engine.update(self.id, leg, remote=_remote(sdp, audio), codec=SUPPORTED[chosen.key],
                           dtmf_pt=dtmf.pt if dtmf else None, send=send, recv=recv,
                           symmetric=self.symmetric.get(leg, True), relay_dtmf=leg not in self.quiet_keys)

    def answer_locally(self) -> bytes:
        """Answer the pending offer ourselves, before the other leg has (RFC 3264 §6).

        For early media of our own (ringback prompts, notices): the offerer gets its first codec
        and our port now; the other leg's answer later only sets up that leg, and the offerer is
        sent this same SDP again in the final response (RFC 3261 §13.2.1).
        """
        if self._local is not None:
            return self._local
        pending = self._pending
        if pending is None:
            raise SdpError("no offer to answer")
        offerer = pending.from_leg
        host, port = self._port(offerer)
        codec = pending.codecs[0]
        wanted = self.prefer.get(offerer)
        if wanted:
            codec = next((c for n in wanted for c in pending.codecs if c.key == n), codec)
        direction = answer_direction(pending.direction, "sendrecv")
        send, recv = _flags(_reverse(direction))
        self.codec[offerer] = SUPPORTED[codec.key]
        self.engine.update(self.id, offerer, codec=SUPPORTED[codec.key], dtmf_pt=pending.dtmf_pt, send=send,
                           recv=recv, symmetric=self.symmetric.get(offerer, True),
                           relay_dtmf=offerer not in self.quiet_keys)
        out = self._build(offerer, host, port, [codec], pending.dtmf_pt, direction, template=pending,
                          ptime=pending.sdp.media[pending.audio_index].ptime or 20).serialize()
        self._local = out
        self.last_sent[offerer] = out
        return out

    @property
    def answered_locally(self) -> bool:
        return self._local is not None

    def complete(self) -> None:
        """The final answer went out: the next SDP from either side is a new offer."""
        self._pending = None
        self._local = None

    def abandon(self) -> None:
        """The offer was refused (non-2xx): the session stays as it was (RFC 3264 §8)."""
        self._pending = None
        self._local = None
        self._answers.clear()

    def _rejecting_answer(self, offerer: str, pending: _Offer) -> bytes:
        host, port = self._port(offerer)
        sdp = self._build(offerer, host, 0, pending.codecs[:1], None, "inactive", template=pending)
        return sdp.serialize()

    # -- prompts and recording (what call features do with the media) ---------------------------
    def play(self, leg: str, samples: Any, *, prompt: str = "", loop: bool = False, mix: bool = False) -> None:
        """Play 8 kHz audio to ``leg``, replacing what it hears (``mix``: over it); ``PlayDone`` follows."""
        self.engine.play(self.id, leg, samples, prompt=prompt, loop=loop, mix=mix)

    def stop_play(self, leg: str) -> None:
        self.engine.stop_play(self.id, leg)

    def record(self, path: str) -> None:
        """Record both legs to ``path`` (stereo: caller left, staff right) until :meth:`stop_record`."""
        self.engine.record(self.id, path)

    def stop_record(self) -> None:
        self.engine.stop_record(self.id)

    def tap(self, leg: str, on: bool = True) -> None:
        """Hand what ``leg`` sends (decoded) to abuse detection through the engine's audio tap, or stop."""
        self.engine.tap(self.id, leg, on)

    def close(self) -> dict[str, dict[str, float]]:
        if self.closed:
            return {}
        self.closed = True
        return self.engine.delete(self.id)

    # -- SDP building --------------------------------------------------------------------
    def _build(self, leg: str, host: str, port: int, codecs: list[Codec], te_pt: int | None, direction: str,
               *, template: _Offer | None = None, ptime: int | None = None) -> SessionDescription:
        self._version[leg] += 1
        ip = "IP6" if ":" in host else "IP4"
        sdp = SessionDescription(origin=["-", self._session_id[leg], str(self._version[leg]), "IN", ip, host], name="-",
                                 connection=host, session_lines=[("t", "0 0")])
        audio = Media("audio", port, "RTP/AVP", [str(c.pt) for c in codecs])
        for c in codecs:
            audio.lines.append(("a", f"rtpmap:{c.pt} {c.name}/{c.clock}"))
        if te_pt is not None and port:
            audio.formats.append(str(te_pt))
            audio.lines.append(("a", f"rtpmap:{te_pt} telephone-event/8000"))
            audio.lines.append(("a", f"fmtp:{te_pt} 0-16"))
        if ptime:
            audio.lines.append(("a", f"ptime:{ptime}"))
        audio.lines.append(("a", direction))
        if template is None:
            sdp.media = [audio]
            return sdp
        # an answer has as many m= lines as the offer, in the same order (RFC 3264 §6)
        for i, m in enumerate(template.sdp.media):
            if i == template.audio_index:
                sdp.media.append(audio)
            else:
                sdp.media.append(Media(m.kind, 0, m.proto, m.formats[:1] or ["0"]))
        return sdp


def _origin(sdp: SessionDescription) -> tuple[str, str]:
    o = sdp.origin
    return (o[1], o[2]) if len(o) >= 3 else ("", "")


def _first_audio(sdp: SessionDescription, allow_rejected: bool = False) -> tuple[int, Media]:
    for i, m in enumerate(sdp.media):
        if m.kind == "audio" and m.proto.upper().startswith("RTP/AVP") and (m.port or allow_rejected):
            return i, m
    raise NotAcceptable("no audio stream")


def _telephone_event(m: Media) -> Codec | None:
    return next((c for c in m.codecs() if c.key == TELEPHONE_EVENT and c.clock == 8000), None)


def _remote(sdp: SessionDescription, m: Media) -> tuple[str, int] | None:
    addr = sdp.address(m)
    if not addr or addr in ("0.0.0.0", "::") or not m.port:
        return None  # RFC 2543 hold: no address
    return addr, m.port


def _reverse(direction: str) -> str:
    """The offerer's own direction given the direction we answered it with."""
    return {"sendonly": "recvonly", "recvonly": "sendonly"}.get(direction, direction)
