"""Offer/answer for an anchored call (RFC 3264), driving the media engine's commands.

Each leg sees only our address and ports. The offer we send on is the offerer's
G.711 codecs in its order, plus the ones we can transcode to; the answer we give
back picks the answerer's codec when the offerer has it and the offerer's first
codec otherwise (the engine then transcodes). Non-audio streams are refused with
port 0 (§6). Directions follow §6.1, so a hold offer is never answered sendrecv.

SDES-SRTP (RFC 4568) is per leg, as the leg's trunk says (``srtp``): an RTP/SAVP offer is taken
with the offerer's first usable ``a=crypto`` line and answered with the same tag and suite and a
key of ours; an offer we make to a "require" leg is RTP/SAVP with one line per suite. Each leg's
keys go to the engine with its other settings, so one leg may be SRTP and the other plain RTP.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any

from media.api import Engine, SrtpKeys

from ..sip import sdes
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
    #: the offerer's crypto line (RTP/SAVP), answered with the same tag and suite and our key
    crypto: sdes.Crypto | None = None


_session_ids = itertools.count(int.from_bytes(os.urandom(3), "big"))


class MediaSession:
    """The signalling side of one call's media."""

    def __init__(self, engine: Engine, session_id: str, symmetric: bool | dict[str, bool] = True,
                 prefer: dict[str, list[str]] | None = None, srtp: dict[str, str] | None = None):
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
        #: legs whose key presses are for us (staff keys): kept from the other side (RFC 4733), and looked for
        #: in their audio when they have no telephone-event; other legs' in-band tones are not looked for
        #: (nobody uses them, and the search costs every frame of the call)
        self.quiet_keys: set[str] = set()
        #: SDES-SRTP mode per leg (Route.srtp_a/_b): off, accept, require, needs_tls
        self.srtp = srtp or {}
        #: each leg's SRTP keys as the engine has them (absent: plain RTP)
        self.keys: dict[str, SrtpKeys] = {}
        #: our master keys per (leg, suite): kept for the session, so a re-offer does not re-key
        self._mine: dict[tuple[str, str], bytes] = {}
        #: legs we offered RTP/SAVP (their answer must be RTP/SAVP with one of our tags)
        self._offered_srtp: set[str] = set()

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
        crypto = self._offered_crypto(from_leg, audio)
        to_leg = self.other(from_leg)
        self._port(from_leg)
        host, port = self._port(to_leg)
        send, recv = _flags(audio.direction)
        self._set_keys(from_leg, crypto)
        self._update(from_leg, remote=_remote(sdp, audio), send=send, recv=recv, codec=self.codec.get(from_leg))
        self._pending = _Offer(from_leg, sdp, index, codecs, dtmf.pt if dtmf else None, audio.direction, crypto)
        self._answers.clear()
        self._last_origin[from_leg] = _origin(sdp)
        names = [c.key for c in codecs] + [k for k in SUPPORTED if k not in {c.key for c in codecs}]
        wanted = self.prefer.get(to_leg)
        if wanted:  # the receiving trunk's codec preference: its order, only its codecs
            names = [n for n in wanted if n in SUPPORTED] or names
        out_codecs = [Codec(SUPPORTED[n], n.upper(), 8000) for n in names]
        te_pt = dtmf.pt if dtmf else 101
        ours = None
        if self.srtp.get(to_leg) == "require":
            ours = [sdes.Crypto(tag, suite, self._key(to_leg, suite)) for tag, suite in enumerate(sdes.SUITES, 1)]
            self._offered_srtp.add(to_leg)
        else:
            self._offered_srtp.discard(to_leg)
        out = self._build(to_leg, host, port, out_codecs, te_pt, audio.direction, ptime=20, crypto=ours).serialize()
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
        fits, crypto = self._answered_crypto(from_leg, audio)
        if not fits:
            chosen = None  # RTP/AVP to our RTP/SAVP offer (or the reverse), or none of our crypto lines
        offerer = pending.from_leg
        if self._local is not None:
            # the offerer already has our own answer: only the answerer's side is set up now
            # (the engine transcodes if the two codecs differ); the offerer gets the same SDP again
            if chosen is not None:
                self._set_answerer(from_leg, sdp, audio, chosen, crypto)
            self._answers[body] = self._local
            self._last_origin[from_leg] = _origin(sdp)
            return self._local
        host, port = self._port(offerer)
        if chosen is None:
            # the answerer refused audio: refuse it to the offerer too
            out = self._rejecting_answer(offerer, pending)
            self._answers[body] = out
            return out
        self._set_answerer(from_leg, sdp, audio, chosen, crypto)
        same = next((c for c in pending.codecs if c.key == chosen.key), None)
        offerer_codec = same or pending.codecs[0]
        direction = answer_direction(pending.direction, audio.direction)
        o_send, o_recv = _flags(_reverse(direction))
        self.codec[offerer] = SUPPORTED[offerer_codec.key]
        self._update(offerer, codec=SUPPORTED[offerer_codec.key], dtmf_pt=pending.dtmf_pt, send=o_send, recv=o_recv)
        codecs = [offerer_codec]
        answer = self._build(offerer, host, port, codecs, pending.dtmf_pt, direction,
                             template=pending, ptime=pending.sdp.media[pending.audio_index].ptime or 20,
                             crypto=self._answer_crypto(pending))
        out = answer.serialize()
        self._answers[body] = out
        self._last_origin[from_leg] = _origin(sdp)
        self.last_sent[offerer] = out
        return out

    def _set_answerer(self, leg: str, sdp: SessionDescription, audio: Media, chosen: Codec,
                      crypto: sdes.Crypto | None) -> None:
        """Tell the engine what the answering leg chose: its address, codec, keys and direction."""
        dtmf = _telephone_event(audio)
        send, recv = _flags(audio.direction)
        self.codec[leg] = SUPPORTED[chosen.key]
        self._set_keys(leg, crypto)
        self._update(leg, remote=_remote(sdp, audio), codec=SUPPORTED[chosen.key], dtmf_pt=dtmf.pt if dtmf else None,
                     send=send, recv=recv)

    def _update(self, leg: str, **negotiated: Any) -> None:
        """Tell the engine what ``leg``'s SDP negotiated, with what this session holds for the leg whatever
        the SDP says: whether to latch, its SRTP keys, and whether its keys are for us (staff keys: not
        relayed, and looked for in its audio)."""
        ours = leg in self.quiet_keys
        self.engine.update(self.id, leg, symmetric=self.symmetric.get(leg, True), srtp=self.keys.get(leg),
                           relay_dtmf=not ours, inband_keys=ours, **negotiated)

    # -- SDES-SRTP (RFC 4568) ------------------------------------------------------------
    def _offered_crypto(self, leg: str, audio: Media) -> sdes.Crypto | None:
        """The crypto line to take from ``leg``'s offer (None: plain RTP), or NotAcceptable (488) as its mode says."""
        mode = self.srtp.get(leg, "off")
        if not _secure(audio):
            if mode == "require":
                raise NotAcceptable("this trunk requires SRTP (RTP/SAVP)")
            return None
        if mode == "off":
            raise NotAcceptable("SRTP (RTP/SAVP) is not enabled for this trunk")
        if mode == "needs_tls":
            raise NotAcceptable("SDES keys are taken only over TLS (RFC 4568 section 8.3)")
        usable = sdes.offered(audio.lines)
        if not usable:
            raise NotAcceptable("no usable a=crypto line (AES_CM_128_HMAC_SHA1_80/_32, one inline key)")
        return usable[0]

    def _answered_crypto(self, leg: str, audio: Media) -> tuple[bool, sdes.Crypto | None]:
        """Whether ``leg``'s answer fits our offer (not when its profile differs from the offer's, or none
        of its crypto lines has a tag and suite we offered), and its crypto line (None: plain RTP)."""
        if not audio.port:
            return True, None
        if _secure(audio) != (leg in self._offered_srtp):
            return False, None
        if not _secure(audio):
            return True, None
        crypto = next((c for c in sdes.offered(audio.lines) if sdes.matches_offer(c)), None)
        return crypto is not None, crypto

    def _key(self, leg: str, suite: str) -> bytes:
        key = self._mine.get((leg, suite))
        if key is None:
            key = self._mine[leg, suite] = sdes.new_key()
        return key

    def _set_keys(self, leg: str, crypto: sdes.Crypto | None) -> None:
        if crypto is None:
            self.keys.pop(leg, None)
        else:
            self.keys[leg] = SrtpKeys(crypto.suite, recv_key=crypto.key, send_key=self._key(leg, crypto.suite))

    def _answer_crypto(self, pending: _Offer) -> list[sdes.Crypto] | None:
        """Our answer's crypto line to an RTP/SAVP offer: its tag and suite, our key (RFC 4568 §5.1.2)."""
        c = pending.crypto
        return None if c is None else [sdes.Crypto(c.tag, c.suite, self._key(pending.from_leg, c.suite))]

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
        self._update(offerer, codec=SUPPORTED[codec.key], dtmf_pt=pending.dtmf_pt, send=send, recv=recv)
        out = self._build(offerer, host, port, [codec], pending.dtmf_pt, direction, template=pending,
                          ptime=pending.sdp.media[pending.audio_index].ptime or 20,
                          crypto=self._answer_crypto(pending)).serialize()
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
        sdp.media[pending.audio_index].proto = pending.sdp.media[pending.audio_index].proto  # (RFC 3264 §6)
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
               *, template: _Offer | None = None, ptime: int | None = None,
               crypto: list[sdes.Crypto] | None = None) -> SessionDescription:
        self._version[leg] += 1
        ip = "IP6" if ":" in host else "IP4"
        sdp = SessionDescription(origin=["-", self._session_id[leg], str(self._version[leg]), "IN", ip, host], name="-",
                                 connection=host, session_lines=[("t", "0 0")])
        audio = Media("audio", port, "RTP/SAVP" if crypto else "RTP/AVP", [str(c.pt) for c in codecs])
        for line in crypto or ():
            audio.lines.append(("a", line.attribute()))
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
        if m.kind == "audio" and (m.proto.upper().startswith("RTP/AVP") or _secure(m)) and (m.port or allow_rejected):
            return i, m
    raise NotAcceptable("no audio stream")


def _secure(m: Media) -> bool:
    """RTP/SAVP: SRTP keyed in the SDP (SDES). DTLS-SRTP (UDP/TLS/RTP/SAVP) is another profile: not audio to us."""
    return m.proto.upper() == "RTP/SAVP"


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
