"""The typed contract between call control and the media engine: its commands, its events, its interface.

This is the only module of ``media/`` that call control may import (``tests/test_walls.py`` checks it),
and it imports only the standard library: call control learns what the engine does from here without
pulling in numpy, sockets or the engine itself. Nothing here knows about SIP either.

* :class:`Engine` is the command interface as call control sees it (``allocate``, ``update``, ``play``,
  ...); :class:`EngineControl` adds what the application's wiring needs (start, stop, metrics). Both
  :class:`~media.engine.MediaEngine` (in process) and :class:`~media.worker.WorkerEngine` (worker
  processes) satisfy them structurally.
* The events (:data:`MediaEvent`) come back through the ``on_event`` callback given to the engine, on
  the event loop's thread.
* The command dataclasses (:data:`Command`) are the same commands as messages: what
  :class:`~media.worker.WorkerEngine` sends down the pipe to a worker process, which runs them on its
  own :class:`~media.engine.MediaEngine`.

Commands and events are frozen: a message is never changed once made (it may already be on its way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop


#: sessions a media worker process takes before the next worker gets new ones (the default of
#: media.worker_fill_calls): a few calls spread over every worker cost each of them a wake-up per packet
#: group where one worker would serve them in one (scripts/bench/media.py at 100 calls on two cores: 21-26 %
#: of a core over two workers, 15-17 % in one); beyond it the load spreads, which keeps the delay low
WORKER_FILL = 100


class PortsExhausted(Exception):
    """No free RTP port pair: call control answers 503."""


# -- events: engine -> call control ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """A key press on ``leg``, reported once when it is recognised: from RFC 4733 telephone-events
    (``source="rfc4733"``, also for keys kept from the other side) or found in the audio of a leg that
    did not negotiate them (``source="inband"``)."""

    session: str
    leg: str
    digit: str
    duration_ms: int
    source: str


@dataclass(frozen=True, slots=True)
class PlayDone:
    """A prompt finished playing to a leg (not sent for looped prompts until stopped)."""

    session: str
    leg: str
    prompt: str


@dataclass(frozen=True, slots=True)
class RecordingDone:
    """A recording was closed (``error`` set when the disk failed; the call went on regardless)."""

    session: str
    path: str
    seconds: float
    size: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class MediaTimeout:
    """No RTP from a leg for ``rtp_timeout`` seconds."""

    session: str
    leg: str
    idle: float


@dataclass(frozen=True, slots=True)
class FinalStats:
    """A deleted session's exact statistics, after ``delete`` answered with the last report's.

    Sent by :class:`~media.worker.WorkerEngine` only (the in-process engine's ``delete`` answers with
    the exact figures itself); the CDR is amended with it."""

    session: str
    stats: dict[str, dict[str, float]]


#: everything ``on_event`` receives
MediaEvent: TypeAlias = DtmfEvent | PlayDone | RecordingDone | MediaTimeout | FinalStats


# -- commands: call control -> engine (as messages: the controller -> a worker process) --------------
@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """SDES-SRTP keys of one leg (RFC 4568): ``suite`` as its ``a=crypto`` names it, ``recv_key`` the
    endpoint's master key and salt (30 bytes: it encrypts what it sends us with it), ``send_key`` ours
    (we encrypt what we send it). Kept out of ``repr`` so that no log line carries a key."""

    suite: str
    recv_key: bytes = field(repr=False)
    send_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Allocate:
    """Open the RTP/RTCP socket pair at ``port`` for ``leg`` of ``session`` (the controller chose the port
    from the worker's slice and already answered ``allocate`` with it); sent when call control reserves
    a leg's ports, before any SDP names them."""

    session: str
    leg: str
    port: int


@dataclass(frozen=True, slots=True)
class Update:
    """What ``leg``'s endpoint negotiated; sent for every offer and answer. ``remote`` is the address
    its SDP gave (None: unchanged, or on hold with no address), ``codec`` the G.711 payload type (None:
    unchanged), ``dtmf_pt`` its telephone-event payload type (None: none, in-band detection instead),
    ``send``/``recv`` whether we may send to it and it sends to us, ``symmetric`` whether to latch to
    where its packets really come from, ``relay_dtmf=False`` to keep its key presses from the other
    side (None: unchanged), ``srtp`` the leg's SRTP keys (None: plain RTP), ``inband_keys`` whether to
    look for key tones in its audio when it has no telephone-event (None: unchanged; a new leg: yes)."""

    session: str
    leg: str
    remote: tuple[str, int] | None = None
    codec: int | None = None
    dtmf_pt: int | None = None
    send: bool = True
    recv: bool = True
    symmetric: bool = True
    relay_dtmf: bool | None = None
    srtp: SrtpKeys | None = None
    inband_keys: bool | None = None


@dataclass(frozen=True, slots=True)
class Play:
    """Play a prompt to ``leg``'s endpoint from the next tick on, replacing what the other side says, or
    mixed into it (``mix``); ``PlayDone`` follows unless ``loop``. ``key`` is the digest of the audio:
    ``samples`` (8 kHz int16) travel only the first time a worker is sent that prompt, None afterwards
    (the worker keeps them by key)."""

    session: str
    leg: str
    key: bytes
    samples: object | None
    prompt: str = ""
    loop: bool = False
    mix: bool = False


@dataclass(frozen=True, slots=True)
class StopPlay:
    """Stop the prompt ``leg`` hears (no ``PlayDone``); it hears the other side again."""

    session: str
    leg: str


@dataclass(frozen=True, slots=True)
class Record:
    """Start recording ``session`` in stereo to the WAV file ``path``; ``RecordingDone`` follows its stop."""

    session: str
    path: str


@dataclass(frozen=True, slots=True)
class StopRecord:
    """Close ``session``'s recording (the call goes on); also implied by ``Delete``."""

    session: str


@dataclass(frozen=True, slots=True)
class Delete:
    """The call ended: close ``session``'s sockets and recording; the worker answers ``FinalStats``."""

    session: str


@dataclass(frozen=True, slots=True)
class Stop:
    """Shut the worker down (the engine is closing): its sessions are deleted, its loop ends."""


#: everything a worker process is told
@dataclass(frozen=True, slots=True)
class Tap:
    """Copy what ``leg`` sends us, decoded to 8 kHz, to the engine's audio tap (abuse detection), or stop
    (``on=False``). Without a tap channel given to the engine this does nothing."""

    session: str
    leg: str
    on: bool = True


Command: TypeAlias = Allocate | Update | Play | StopPlay | Record | StopRecord | Delete | Stop | Tap


# -- the interfaces ------------------------------------------------------------------------------------
class Engine(Protocol):
    """The media engine's command interface as call control sees it.

    Commands answer at once (``allocate`` with our address and port, ``delete`` with the session's
    statistics) and never wait for the media; what happens later comes back as a :data:`MediaEvent`.
    ``allocate`` raises :class:`PortsExhausted` when no port pair is free.
    """

    def allocate(self, session: str, leg: str) -> tuple[str, int]: ...
    def update(self, session: str, leg: str, *, remote: tuple[str, int] | None = None, codec: int | None = None,
               dtmf_pt: int | None = None, send: bool = True, recv: bool = True, symmetric: bool = True,
               relay_dtmf: bool | None = None, srtp: SrtpKeys | None = None,
               inband_keys: bool | None = None) -> None: ...
    def delete(self, session: str) -> dict[str, dict[str, float]]: ...
    def play(self, session: str, leg: str, samples: Any, *, prompt: str = "", loop: bool = False,
             mix: bool = False) -> None: ...
    def stop_play(self, session: str, leg: str) -> None: ...
    def record(self, session: str, path: str) -> None: ...
    def stop_record(self, session: str) -> None: ...
    def tap(self, session: str, leg: str, on: bool = True) -> None: ...


class EngineControl(Engine, Protocol):
    """What the application's wiring needs of an engine beyond the commands: its lifecycle and metrics."""

    def start(self, loop: AbstractEventLoop | None = None) -> None:
        """Begin serving on ``loop``; commands may be sent from now on (worker processes may still be
        starting: see :meth:`ready`)."""
        ...

    async def ready(self, timeout: float = 30.0) -> None:
        """Return once RTP sent to an allocated port is handled (after :meth:`start`); RuntimeError when
        the engine could not get there within ``timeout`` seconds."""
        ...

    async def settle(self, timeout: float = 2.0) -> None:
        """Return once every deleted session's final figures (:class:`FinalStats`) have been delivered, or
        after ``timeout`` seconds: before :meth:`close` at shutdown, so the last CDRs are exact."""
        ...

    def close(self) -> None:
        """Delete every session and stop (worker processes end)."""
        ...

    def stats(self, session: str) -> dict[str, dict[str, float]]:
        """A live session's statistics per leg (empty when unknown)."""
        ...

    @property
    def counters(self) -> dict[str, int]:
        """Packet counters since start (``rtp_in``, ``rtp_out``, ``rtp_dropped``, ...)."""
        ...

    @property
    def free_ports(self) -> int:
        """RTP/RTCP port pairs still free."""
        ...

    @property
    def recording_stats(self) -> dict[str, int]:
        """Recording files ``written``, ``failures`` (disk errors) and frames ``dropped`` (a stalled disk)."""
        ...


__all__ = ["PortsExhausted", "DtmfEvent", "PlayDone", "RecordingDone", "MediaTimeout", "FinalStats", "MediaEvent",
           "SrtpKeys", "Allocate", "Update", "Play", "StopPlay", "Record", "StopRecord", "Delete", "Stop", "Tap",
           "Command", "Engine", "EngineControl"]
