"""The media engine: anchors RTP for both legs of every call.

Call control talks to it only through the commands of :class:`MediaEngine`
(``allocate``/``update``/``delete``/``play``/``record``, the :class:`~media.api.Engine`
protocol), in the spirit of rtpengine's ng protocol, and hears back through
``on_event`` (the events of :mod:`media.api`: :class:`DtmfEvent`, :class:`PlayDone`,
:class:`RecordingDone`, :class:`MediaTimeout`). Nothing here knows about SIP.

Plain relay forwards each packet on arrival with its header rewritten (one
SSRC and continuous numbering per receiver). Streams that need signal
processing (transcoding today; prompts, mixing, recording later) are handled
together every 20 ms by :meth:`MediaEngine.tick` as numpy arrays.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import g711
from .api import DtmfEvent, MediaEvent, MediaTimeout, PlayDone, PortsExhausted, RecordingDone, SrtpKeys
from .dtmf import Digit, InbandDetector
from .legs import Leg, Session
from .recorder import LAW_FORMAT, Finished, RecordingWriter
from .rtp import RtpError, payload_offset, rewrite_rtcp
from .srtp import SrtpError, crypto_for
from .tap import AudioTap, TapChannel
from .timeline import DELAY, RESYNC, RecordingClock, Track

log = logging.getLogger("media.engine")

FRAME = 160  # samples per 20 ms at 8 kHz
#: ticks of recorded frames gathered before the writer gets them: 400 ms, one write (and one header
#: rewrite) per call, so with the 300 ms jitter delay a kill -9 loses under a second
RECORD_BATCH = 20
#: seconds of every recorded call the writer may fall behind (a stalled disk) before frames are dropped;
#: also the most a late event loop is made up for in one tick
RECORD_BACKLOG_S = 10
_SILENCE = {pt: bytes([g711.SILENCE[pt]]) * FRAME for pt in (0, 8)}
_SEQ_TS = struct.Struct("!HI")
_monotonic = time.monotonic
#: a leg's packet read this long after its previous one: drain its socket (up to _DRAIN packets)
_LATE = 0.03
_DRAIN = 16


def bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """UDP sockets bound to ``port`` (RTP) and ``port + 1`` (RTCP); OSError when either is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    rtp = socket.socket(family, socket.SOCK_DGRAM)
    rtcp = socket.socket(family, socket.SOCK_DGRAM)
    try:
        rtp.bind((host, port))
        rtcp.bind((host, port + 1))
    except OSError:
        rtp.close()
        rtcp.close()
        raise
    return rtp, rtcp


@dataclass(slots=True)
class EngineConfig:
    host: str = "127.0.0.1"
    port_min: int = 20000
    port_max: int = 30000
    rtp_timeout: float = 30.0
    #: look for DTMF tones in the audio of legs that did not negotiate telephone-event
    inband_dtmf: bool = True
    #: silence allowed from a leg that put the call on hold (it may send nothing)
    hold_timeout: float = 3600.0


class MediaEngine:
    """In-process media engine on the running asyncio loop."""

    def __init__(self, config: EngineConfig | None = None, on_event: Callable[[MediaEvent], None] | None = None,
                 tap: TapChannel | None = None):
        self.config = config or EngineConfig()
        #: tapped legs' audio goes to ``tap`` (bounded, never waited on: see media.tap)
        self._tap = AudioTap(tap)
        self.on_event = on_event
        self.sessions: dict[str, Session] = {}
        lo = self.config.port_min + (self.config.port_min & 1)
        self._free: deque[int] = deque(range(lo, self.config.port_max - 1, 2))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tick_next = 0.0
        self._watch: asyncio.TimerHandle | None = None
        self._processing: dict[int, Leg] = {}  # legs whose media goes through the tick
        self._listening: dict[int, Leg] = {}  # legs whose frames the tick checks for in-band DTMF
        self._playing: dict[int, Leg] = {}  # legs hearing a prompt
        self._recorded: dict[str, Session] = {}
        self._writer: RecordingWriter | None = None
        #: the recorded calls as the tick reads them, rebuilt when they change: (call, its two tracks'
        #: frames, the silence code of the caller's current law)
        self._rec_rows: list[tuple[str, dict, dict, bytes]] = []
        #: rows whose caller changed law since its file began: (row, the 256-code table to the file's law)
        self._rec_convert: list[tuple[int, np.ndarray]] = []
        self._rec_dirty = False
        #: G.711 codes gathered for the writer, (calls, samples, 2), and how many frames it holds
        self._rec_block: np.ndarray | None = None
        self._rec_fill = 0
        self._rec_clock = RecordingClock()
        self._rec_block_start = 0  # the timeline frame the first gathered block begins at
        self._inband: InbandDetector[int] = InbandDetector()  # keyed by id() of the leg
        #: recording_late: packets that came too late for their place in a recording (its jitter buffer)
        self.counters = {"rtp_in": 0, "rtp_out": 0, "rtp_dropped": 0, "rtp_strangers": 0, "rtp_lost": 0, "rtcp": 0,
                         "recording_late": 0, "srtp_failed": 0}

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_event_loop()
        self._watch = self._loop.call_later(1.0, self._watchdog)

    async def ready(self, timeout: float = 30.0) -> None:
        """In process, the engine serves as soon as :meth:`start` returned (``timeout`` is not needed)."""
        if self._loop is None:
            raise RuntimeError("MediaEngine.start() first")

    async def settle(self, timeout: float = 2.0) -> None:
        """In process, a deleted session's figures are returned by :meth:`delete` itself: nothing to wait for."""

    def close(self) -> None:
        for sid in list(self.sessions):
            self.delete(sid)
        if self._writer is not None:
            self._writer.stop()
        if self._tick_handle:
            self._tick_handle.cancel()
        if self._watch:
            self._watch.cancel()

    @property
    def free_ports(self) -> int:
        return len(self._free)

    # -- commands ----------------------------------------------------------------------
    def allocate(self, session: str, leg: str, port: int | None = None,
                 sockets: tuple[socket.socket, socket.socket] | None = None) -> tuple[str, int]:
        """Open the RTP/RTCP socket pair for ``leg`` of ``session``; returns (address, port).

        ``port`` asks for that pair; ``sockets`` is the pair already bound there (the worker-process mode:
        the controller binds and hands them over).
        """
        sess = self.sessions.get(session)
        if sess is None:
            sess = self.sessions[session] = Session(session)
        existing = sess.legs.get(leg)
        if existing is not None:
            for sock in sockets or ():
                sock.close()
            return self.config.host, existing.port
        if port is not None:
            try:
                self._free.remove(port)
            except ValueError:
                pass
            self._free.appendleft(port)
        for _ in range(len(self._free)):
            port = self._free.popleft()
            try:
                rtp, rtcp = self._bind(port, sockets)
                sockets = None  # (used once)
            except OSError as exc:
                if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise
                self._free.append(port)  # in use by someone else: try it again later
                continue
            lg = Leg(sess, leg, port, rtp, rtcp)
            sess.legs[leg] = lg
            for name, other in sess.legs.items():
                if name != leg:
                    lg.other, other.other = other, lg
            lg.last_rx = time.monotonic()
            assert self._loop is not None, "MediaEngine.start() first"
            self._loop.add_reader(rtp.fileno(), self._on_rtp, lg)
            self._loop.add_reader(rtcp.fileno(), self._on_rtcp, lg)
            return self.config.host, port
        if not sess.legs:
            del self.sessions[session]
        raise PortsExhausted(f"no free RTP ports in {self.config.port_min}-{self.config.port_max}")

    def update(self, session: str, leg: str, *, remote: tuple[str, int] | None = None,
               codec: int | None = None, dtmf_pt: int | None = None, send: bool = True, recv: bool = True,
               symmetric: bool = True, relay_dtmf: bool | None = None, srtp: SrtpKeys | None = None,
               inband_keys: bool | None = None) -> None:
        """Set what ``leg``'s endpoint negotiated (its address, codec, telephone-event PT, direction, SRTP keys).

        ``relay_dtmf=False`` keeps this endpoint's key presses (RFC 4733) from the other side; they
        are still reported as :class:`DtmfEvent` (staff keys the caller must not hear).
        ``inband_keys=False``: do not look for key tones in its audio when it has no telephone-event (a new leg
        is looked at, if the engine's ``inband_dtmf`` is on).
        """
        lg = self.sessions[session].legs[leg]
        lg.set_crypto(crypto_for(srtp, lg.crypto))
        if relay_dtmf is not None:
            lg.relay_dtmf = relay_dtmf
        if inband_keys is not None:
            lg.inband_keys = inband_keys
        if remote is not None and remote != lg.signalled:
            lg.remote = lg.signalled = remote
            lg.rtcp_remote = (remote[0], remote[1] + 1)
            lg.latched = False
        old, lg.codec = lg.codec, codec if codec is not None else lg.codec
        sess = lg.session
        if sess.recording:
            self._rec_dirty = True
            if lg.name == "a" and old in _SILENCE and lg.codec in _SILENCE and old != lg.codec:
                table = g711.transcode_table(old, lg.codec)  # what is buffered is in the caller's old law
                for track in (sess.rec_in, sess.rec_out):
                    if track is not None:
                        track.recode(table, g711.SILENCE[lg.codec])
        lg.dtmf_pt = dtmf_pt
        if recv and not lg.recv:
            lg.last_rx = time.monotonic()
        lg.send, lg.recv, lg.symmetric = send, recv, symmetric
        self._reconsider(self.sessions[session])

    def play(self, session: str, leg: str, samples: np.ndarray, *, prompt: str = "", loop: bool = False,
             mix: bool = False) -> None:
        """Play 8 kHz int16 ``samples`` to ``leg``'s endpoint from the next tick on.

        ``mix=False`` replaces what the other side says (ringback, notices); ``mix=True`` adds the
        prompt at -6 dB to it (announcements both parties hear). Numbering stays continuous.
        """
        lg = self.sessions[session].legs[leg]
        lg.prompt = np.ascontiguousarray(samples, dtype=np.int16)
        lg.prompt_pos, lg.prompt_loop, lg.prompt_mix, lg.prompt_id = 0, loop, mix, prompt
        self._playing[id(lg)] = lg
        self._ensure_tick()

    def stop_play(self, session: str, leg: str) -> None:
        lg = self.sessions[session].legs[leg]
        self._stop_prompt(lg)

    def _stop_prompt(self, lg: Leg) -> None:
        lg.prompt = None
        self._playing.pop(id(lg), None)
        if lg.other is not None and not lg.session.transcode:
            lg.other.queue.clear()

    def record(self, session: str, path: str) -> None:
        """Record the call in stereo to ``path`` (WAV): the caller (leg a) left, what it hears right,
        both as the G.711 codes of the caller's law (stored as they are, nothing decoded).

        Written by a separate thread that never blocks the tick; ``RecordingDone`` follows the stop.
        """
        sess = self.sessions[session]
        if self._writer is None:
            self._writer = RecordingWriter(self._recording_finished, max_lag=RECORD_BACKLOG_S)
        if session in self._recorded:
            return
        now = _monotonic()
        clock = self._rec_clock
        clock.start(now)
        a = sess.legs.get("a")
        sess.rec_law = a.codec if a is not None and a.codec in g711.SILENCE else 0
        silence = g711.SILENCE[sess.rec_law]
        sess.rec_in, sess.rec_out = Track(clock, silence), Track(clock, silence)
        sess.rec_from = max(clock.frame(now), clock.written)
        sess.recording = True
        self._recorded[session] = sess
        self._rec_dirty = True
        self._writer.open(session, path, LAW_FORMAT[sess.rec_law])
        self._ensure_tick()

    def stop_record(self, session: str) -> None:
        """Close a recording with what is still in its jitter buffer: the file lasts to now."""
        sess = self._recorded.get(session)
        if sess is None:
            return
        self._flush_recordings()  # the frames gathered so far, before the rows change
        del self._recorded[session]
        self._rec_dirty = True
        sess.recording = False
        if self._writer is None:
            return
        clock = self._rec_clock
        a = sess.legs.get("a")
        codec = a.codec if a is not None and a.codec in _SILENCE else 0
        silence = _SILENCE[codec]
        first = max(clock.written, sess.rec_from)
        assert sess.rec_in is not None and sess.rec_out is not None
        last = max(clock.frame(_monotonic()) - 1, sess.rec_in.last_frame(), sess.rec_out.last_frame())
        last = min(last, first + DELAY + RESYNC)  # (what is further ahead is no part of this call's time)
        if last >= first:
            tail = np.empty((last - first + 1, FRAME, 2), dtype=np.uint8)
            for side, track in ((0, sess.rec_in), (1, sess.rec_out)):
                codes = b"".join(track.take(n, silence) for n in range(first, last + 1))
                tail[:, :, side] = np.frombuffer(codes, dtype=np.uint8).reshape(-1, FRAME)
            if codec != sess.rec_law:
                tail = np.take(g711.transcode_table(codec, sess.rec_law), tail)
            self._writer.put_many([(session, tail.tobytes())])
        sess.rec_in = sess.rec_out = None
        self._writer.close(session)
        if not self._recorded:
            clock.stop()

    def _recording_finished(self, done: Finished) -> None:
        event = RecordingDone(done.key, done.path, round(done.seconds, 3), done.size, done.error)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._emit, event)

    @property
    def recording_stats(self) -> dict[str, int]:
        w = self._writer
        return {"written": w.written, "failures": w.failures, "dropped": w.dropped} if w else \
            {"written": 0, "failures": 0, "dropped": 0}

    def _ensure_tick(self) -> None:
        if self._tick_handle is None and self._loop is not None:
            self._tick_next = self._loop.time() + 0.02
            self._tick_handle = self._loop.call_at(self._tick_next, self._run_tick)

    def delete(self, session: str) -> dict[str, dict[str, float]]:
        """Close a session's sockets and return its per-leg statistics."""
        self.stop_record(session)
        sess = self.sessions.pop(session, None)
        if sess is None:
            return {}
        result = self._stats(sess)
        for lg in sess.legs.values():
            self.counters["rtp_lost"] += lg.stats.lost
            self._processing.pop(id(lg), None)
            self._listening.pop(id(lg), None)
            self._playing.pop(id(lg), None)
            self._inband.forget(id(lg))
            self._tap.remove(id(lg))
            for sock in (lg.rtp, lg.rtcp):
                if self._loop is not None:
                    self._loop.remove_reader(sock.fileno())
                sock.close()
            self._free.append(lg.port)
            lg.other = None
        # and the cycle leg <-> session: refcounting must free a call's media at once, as the cyclic GC
        # runs only every 10 minutes (b2bua.app._collect_garbage; a soak grew 56 MB a minute at 150 cps)
        sess.legs.clear()
        return result

    def tap(self, session: str, leg: str, on: bool = True) -> None:
        """Copy what ``leg`` sends (decoded) to the audio tap, or stop; the leg's codec is read per tick."""
        lg = self.sessions[session].legs[leg]
        if on and lg.codec in (0, 8):
            lg.tap = self._tap.add(id(lg), session, leg, lg)
            if lg.tap is not None:
                self._ensure_tick()
        else:
            lg.tap = None
            self._tap.remove(id(lg))

    def stats(self, session: str) -> dict[str, dict[str, float]]:
        sess = self.sessions.get(session)
        return self._stats(sess) if sess else {}

    # -- internals ---------------------------------------------------------------------
    def _bind(self, port: int, bound: tuple[socket.socket, socket.socket] | None = None
              ) -> tuple[socket.socket, socket.socket]:
        rtp, rtcp = bound if bound is not None else bind_pair(self.config.host, port)
        for s in (rtp, rtcp):
            s.setblocking(False)
        return rtp, rtcp

    def _reconsider(self, sess: Session) -> None:
        """Relay directly when both legs use the same codec, else through the tick."""
        legs = list(sess.legs.values())
        transcode = len(legs) == 2 and legs[0].codec is not None and legs[1].codec is not None \
            and legs[0].codec != legs[1].codec
        sess.transcode = transcode
        for lg in legs:
            if transcode:
                self._processing[id(lg)] = lg
            else:
                self._processing.pop(id(lg), None)
                lg.queue.clear()
            if lg.codec is not None and lg.dtmf_pt is None and self.config.inband_dtmf and lg.inband_keys:
                lg.listen = lg.listen or deque(maxlen=4)
                self._listening[id(lg)] = lg
            else:
                lg.listen = None
                self._listening.pop(id(lg), None)
                self._inband.forget(id(lg))
        if self._processing or self._listening:
            self._ensure_tick()

    def _stats(self, sess: Session) -> dict[str, dict[str, float]]:
        return {name: {
            "packets_received": lg.stats.packets, "octets_received": lg.stats.octets,
            "packets_lost": lg.stats.lost, "jitter_ms": round(lg.stats.jitter / 8.0, 2),
            "packets_sent": lg.out.sent, "dropped": lg.dropped, "strangers": lg.strangers,
            "codec": lg.codec if lg.codec is not None else -1,
        } for name, lg in sess.legs.items()}

    def _emit(self, event: MediaEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("media event handler failed")

    # -- the packet path -----------------------------------------------------------------
    def _on_rtp(self, lg: Leg) -> None:
        """Read one packet, or drain the socket when the leg's previous packet is long past.

        The loop calls again while the socket is readable, so always draining would add a failing
        ``recvfrom`` (an exception) to nearly every wakeup at 50 pps; but reading one packet per
        wakeup leaves a burst (the sender or we were held up) to one packet per loop iteration,
        which is a long wait when the loop is busy. A flooded port gets one read per iteration.
        """
        sock = lg.rtp
        counters = self.counters
        budget = 1  # packets this call may still read
        while budget:
            budget -= 1
            try:
                data, addr = sock.recvfrom(2048)
            except OSError:  # EAGAIN (drained, or another reader was quicker), EINTR, an ICMP error
                return
            counters["rtp_in"] += 1
            if addr != lg.remote:
                if lg.symmetric and (not lg.latched or addr[:2] == lg.signalled):
                    # symmetric RTP / latching (RFC 4961): the first source is taken (an endpoint behind
                    # NAT sends from another address than its SDP's), but the signalled address always
                    # takes the latch back, so a stranger that sent first does not keep the call's media
                    lg.remote = addr[:2]
                    lg.rtcp_remote = (addr[0], addr[1] + 1)
                    lg.latched = True
                elif lg.remote is None or addr[:2] != lg.remote:
                    lg.strangers += 1
                    counters["rtp_strangers"] += 1
                    continue
            elif not lg.latched and lg.symmetric:
                lg.latched = True
            if lg.crypto is not None:
                try:
                    data = lg.crypto.unprotect(data)
                except SrtpError:  # not authentic, replayed or cut short: dropped, counted
                    lg.dropped += 1
                    counters["srtp_failed"] += 1
                    continue
            if len(data) >= 12 and data[0] & 0xDF == 0x80:  # version 2, no CSRC, no extension
                start = 12
            else:
                try:
                    start = payload_offset(data)
                except RtpError:
                    lg.dropped += 1
                    counters["rtp_dropped"] += 1
                    continue
            pt = data[1] & 0x7F
            seq, ts = _SEQ_TS.unpack_from(data, 2)
            now = _monotonic()
            if now - lg.last_rx > _LATE and not budget:
                budget = _DRAIN  # more may have queued up meanwhile
            lg.stats.update(seq, ts, int(now * 8000), len(data))
            lg.last_rx = now
            other = lg.other
            if pt == lg.codec:
                sess = lg.session
                if lg.listen is not None:
                    lg.listen.append(data[start:])
                if lg.tap is not None:
                    lg.tap.append(data[start:])
                if sess.recording and lg.name == "a":
                    sess.rec_in.put(ts, data[start:], now)  # type: ignore[union-attr]
                if other is None or other.remote is None or not other.send:
                    continue
                if other.prompt is not None:
                    if other.prompt_mix:
                        lg.queue.append(data[start:])  # mixed with the prompt by the tick
                    continue  # else the prompt replaces this side's audio
                if sess.transcode:
                    lg.queue.append(data[start:])
                    continue
                try:
                    other.transmit(other.out.forward(data, seq, ts), other.remote)
                    counters["rtp_out"] += 1
                except (OSError, SrtpError):
                    pass
                if sess.recording and other.name == "a":
                    sess.rec_out.put(other.out.ts, data[start:], now)  # type: ignore[union-attr]
            elif pt == lg.dtmf_pt and pt is not None:
                for digit in lg.detector.feed(ts, data[start:], now):
                    self._emit(DtmfEvent(lg.session.id, lg.name, digit.digit, digit.duration_ms, digit.source))
                if lg.relay_dtmf and other is not None and other.remote is not None and other.send \
                        and other.dtmf_pt is not None:
                    try:
                        other.transmit(other.out.relay(data, other.dtmf_pt), other.remote)
                        counters["rtp_out"] += 1
                    except (OSError, SrtpError):
                        pass
            elif lg.codec is None and other is not None and other.remote is not None and other.send \
                    and other.prompt is None:
                # before the answer: relay whatever the offerer sends (early media), unless the
                # other side hears a prompt of ours
                try:
                    other.transmit(other.out.forward(data, seq, ts), other.remote)
                    counters["rtp_out"] += 1
                except (OSError, SrtpError):
                    pass
            else:
                lg.dropped += 1  # a payload type this leg did not negotiate
                counters["rtp_dropped"] += 1

    def _on_rtcp(self, lg: Leg) -> None:
        try:  # one packet per call, as _on_rtp
            data, addr = lg.rtcp.recvfrom(2048)
        except OSError:
            return
        other = lg.other
        if other is None or other.rtcp_remote is None:
            return
        if lg.remote is not None and addr[0] != lg.remote[0]:
            lg.strangers += 1
            return
        try:
            if lg.crypto is not None:
                data = lg.crypto.unprotect_rtcp(data)
            out = rewrite_rtcp(data, other.out.ssrc, {lg.out.ssrc: other.out.ssrc})
            if out is None:
                return
            if other.crypto is not None:
                out = other.crypto.protect_rtcp(out)
        except SrtpError:  # SRTCP that is not authentic (RFC 3711 §3.4): dropped, counted
            self.counters["srtp_failed"] += 1
            return
        self.counters["rtcp"] += 1
        try:
            other.rtcp.sendto(out, other.rtcp_remote)
        except OSError:
            pass

    # -- the tick ------------------------------------------------------------------------
    def _run_tick(self) -> None:
        assert self._loop is not None
        self._tick_handle = None
        self.tick()
        if self._processing or self._listening or self._playing or self._recorded or self._tap.active:
            self._tick_next += 0.02
            now = self._loop.time()
            if self._tick_next < now - 0.1:
                self._tick_next = now + 0.02  # we fell far behind: do not burst
            self._tick_handle = self._loop.call_at(self._tick_next, self._run_tick)

    def tick(self) -> int:
        """Process one 20 ms frame of every stream that needs it, as arrays; returns frames sent.

        Frames are grouped by (source codec, destination codec) and converted with one
        table lookup per group; only the socket sends remain per stream.
        """
        sent = self._play_prompts()
        ready: dict[tuple[int, int, int], list[tuple[Leg, bytes]]] = {}
        for lg in self._processing.values():
            if lg.other is not None and lg.other.prompt is not None:
                continue  # its frames were used by the prompt mix
            if lg.queue and lg.other is not None and lg.other.remote is not None and lg.other.send \
                    and lg.codec is not None and lg.other.codec is not None:
                payload = lg.queue.popleft()
                ready.setdefault((lg.codec, lg.other.codec, len(payload)), []).append((lg, payload))
        for (src, dst, size), items in ready.items():
            # one (streams, samples) block per codec pair and frame size (20 ms, 30 ms, ...)
            codes = np.frombuffer(b"".join(p for _, p in items), dtype=np.uint8).reshape(len(items), size)
            out = np.take(g711.transcode_table(src, dst), codes) if src != dst else codes
            for (lg, _), row in zip(items, out, strict=True):
                other = lg.other
                assert other is not None and other.remote is not None
                try:
                    other.transmit(other.out.own(dst, row.tobytes(), size), other.remote)
                    sent += 1
                except (OSError, SrtpError):
                    pass
                if other.session.recording and other.name == "a":
                    other.session.rec_out.put(other.out.ts, row.tobytes(), _monotonic())  # type: ignore[union-attr]
        self.counters["rtp_out"] += sent
        self._detect_inband()
        self._record_frames()
        if self._tap.active:
            self._tap.collect()
            self.counters.update(self._tap.counters)
        return sent

    def _play_prompts(self) -> int:
        """Next 20 ms of every prompt: replace, or mix with the other side's frame, as arrays."""
        if not self._playing:
            return 0
        legs, frames, voice, has_voice = [], [], [], []
        for lg in list(self._playing.values()):
            if lg.prompt is None or lg.codec is None or lg.remote is None or not lg.send:
                continue
            pos, remaining = lg.prompt_pos, len(lg.prompt) - lg.prompt_pos
            if remaining >= FRAME:
                chunk, lg.prompt_pos = lg.prompt[pos:pos + FRAME], pos + FRAME
            elif lg.prompt_loop and len(lg.prompt) >= FRAME:
                chunk = np.concatenate([lg.prompt[pos:], lg.prompt[:FRAME - remaining]])
                lg.prompt_pos = FRAME - remaining
            else:
                chunk = np.concatenate([lg.prompt[pos:], np.zeros(FRAME - remaining, np.int16)])
                lg.prompt_pos = len(lg.prompt)
            other = lg.other
            frame = None
            if lg.prompt_mix and other is not None and other.queue and other.codec is not None:
                payload = other.queue.popleft()
                if len(payload) == FRAME:
                    frame = g711.decode(np.frombuffer(payload, dtype=np.uint8), other.codec)
            legs.append(lg)
            frames.append(chunk)
            voice.append(frame if frame is not None else np.zeros(FRAME, np.int16))
            has_voice.append(frame is not None)
            if lg.prompt_pos >= len(lg.prompt) and not lg.prompt_loop:
                self._emit(PlayDone(lg.session.id, lg.name, lg.prompt_id))
                self._stop_prompt(lg)
        if not legs:
            return 0
        prompt = np.stack(frames).astype(np.int32)
        mixed = np.stack(voice).astype(np.int32)
        mixed += np.where(np.array(has_voice)[:, None], prompt >> 1, prompt)  # -6 dB when mixed
        np.clip(mixed, -32768, 32767, out=mixed)
        mixed16 = mixed.astype(np.int16)
        sent = 0
        for lg, row in zip(legs, mixed16, strict=True):
            assert lg.codec is not None and lg.remote is not None
            payload = g711.encode(row, lg.codec).tobytes()
            try:
                lg.transmit(lg.out.own(lg.codec, payload, FRAME), lg.remote)
                sent += 1
            except (OSError, SrtpError):
                pass
            if lg.session.recording and lg.name == "a":
                lg.session.rec_out.put(lg.out.ts, payload, _monotonic())  # type: ignore[union-attr]
        return sent

    def _record_frames(self) -> None:
        """The frames of every recorded call that are due, gathered as one array of codes.

        Frames are written :data:`~media.timeline.DELAY` behind the clock from each call's two
        :class:`~media.timeline.Track` jitter buffers, so a packet's place in the file is set by its
        timestamp, not by when the loop read it. Per tick and call that is two dict pops; the codes of
        :data:`RECORD_BATCH` ticks are handed to the writer together, as one block of codes per call.
        When the loop fell behind, the frames due are taken at once (at most :data:`RECORD_BACKLOG_S`;
        beyond that the timeline skips ahead).
        """
        clock = self._rec_clock
        if not self._recorded or self._writer is None:
            return
        self.counters["recording_late"] = clock.late
        frames = clock.due(_monotonic())
        if frames <= 0:
            return
        if self._rec_dirty:
            self._flush_recordings()
            self._rebuild_rec_rows()
        if frames > RECORD_BACKLOG_S * 50:
            self._flush_recordings()
            clock.written += frames - RECORD_BACKLOG_S * 50  # (very late: what is older is lost)
            frames = RECORD_BACKLOG_S * 50
        rows = self._rec_rows
        first = clock.written
        clock.written += frames
        if not rows:
            return
        for n in range(first, first + frames):
            if self._rec_block is None:
                self._rec_block = np.empty((len(rows), RECORD_BATCH * FRAME, 2), dtype=np.uint8)
                self._rec_block_start, self._rec_fill = n, 0
            at = self._rec_fill * FRAME
            block = self._rec_block[:, at:at + FRAME]
            block[:, :, 0] = np.frombuffer(b"".join([i.pop(n, z) for _, i, _, z in rows]), np.uint8).reshape(-1, FRAME)
            block[:, :, 1] = np.frombuffer(b"".join([o.pop(n, z) for _, _, o, z in rows]), np.uint8).reshape(-1, FRAME)
            self._rec_fill += 1
            if self._rec_fill == RECORD_BATCH:
                self._flush_recordings()

    def _rebuild_rec_rows(self) -> None:
        self._rec_rows, self._rec_convert = [], []
        for sid, sess in self._recorded.items():
            a = sess.legs.get("a")
            if a is not None and a.codec in _SILENCE and sess.rec_in is not None and sess.rec_out is not None:
                if a.codec != sess.rec_law:  # (a re-INVITE changed the caller's codec)
                    self._rec_convert.append((len(self._rec_rows), g711.transcode_table(a.codec, sess.rec_law)))
                self._rec_rows.append((sid, sess.rec_in.frames, sess.rec_out.frames, _SILENCE[a.codec]))
        self._rec_dirty = False

    def _flush_recordings(self) -> None:
        """Hand the writer the gathered codes, one block per call (views, not copies). A call whose
        recording began after the block's first frame gets only its own part."""
        block, self._rec_block = self._rec_block, None
        if block is None or not self._rec_fill or self._writer is None:
            return
        codes = block[:, :self._rec_fill * FRAME]  # (calls, samples, 2) uint8; each row contiguous
        for i, table in self._rec_convert:
            codes[i] = np.take(table, codes[i])
        start = self._rec_block_start
        items: list[tuple[str, bytes | memoryview]] = []
        for i, (sid, _, _, _) in enumerate(self._rec_rows):
            sess = self._recorded.get(sid)
            skip = (sess.rec_from - start) * FRAME if sess is not None else 0
            if skip <= 0:
                items.append((sid, codes[i].data.cast("B")))  # (ndarray.data: its memoryview)
            elif skip < codes.shape[1]:
                items.append((sid, codes[i, skip:].data.cast("B")))
        self._writer.put_many(items)

    def _detect_inband(self) -> None:
        """One Goertzel pass over this tick's frame of every listening leg (RFC 4733 absent)."""
        keys: list[int] = []
        payloads: list[bytes] = []
        alaw: list[int] = []
        for key, lg in self._listening.items():
            if lg.listen:
                payload = lg.listen.popleft()
                if len(payload) == FRAME:
                    if lg.codec == 8:
                        alaw.append(len(keys))
                    keys.append(key)
                    payloads.append(payload)
        if not keys:
            return
        codes = np.frombuffer(b"".join(payloads), dtype=np.uint8).reshape(len(keys), FRAME)
        for key, digit in self._inband.feed(keys, g711.decode_rows(codes, alaw)):
            heard = self._listening.get(key)
            if heard is not None:
                self._emit(DtmfEvent(heard.session.id, heard.name, digit.digit, digit.duration_ms, digit.source))

    # -- RTP timeout -----------------------------------------------------------------------
    def _watchdog(self) -> None:
        assert self._loop is not None
        now = time.monotonic()
        for sess in list(self.sessions.values()):
            for lg in sess.legs.values():
                if lg.timed_out or lg.remote is None:
                    continue
                limit = self.config.rtp_timeout if lg.recv else self.config.hold_timeout
                idle = now - lg.last_rx
                if idle > limit:
                    lg.timed_out = True
                    self._emit(MediaTimeout(sess.id, lg.name, idle))
        self._watch = self._loop.call_later(1.0, self._watchdog)


__all__ = ["MediaEngine", "EngineConfig", "DtmfEvent", "MediaTimeout", "PlayDone", "RecordingDone", "PortsExhausted",
           "Digit"]
