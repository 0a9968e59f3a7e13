"""The media engine as worker processes, one per core, behind the same command interface.

:class:`WorkerEngine` looks like :class:`~media.engine.MediaEngine` to call control (``allocate``,
``update``, ``delete``, ``stats``, ``counters``, ``free_ports``, events through ``on_event``), but
each session lives in one of N child processes, chosen when its first port is allocated: the first
worker (in order) that carries fewer than ``fill`` sessions, else the least busy one, never one that died
(see :meth:`WorkerEngine.place`). Every worker owns a slice
of the port range; the controller hands out ports from that slice, so ``allocate`` answers at once
and the command is sent on without waiting. Commands and events travel over a pipe per worker, in
order, so a port freed by ``delete`` is never reopened before the worker has closed it.

The traffic goes through :mod:`media.channel` (a socket pair each way per worker, a frame per loop
iteration, the RTP sockets' descriptors riding along with their commands).

Statistics come back with a report every second; ``delete`` returns the last report of the session
(at most a second old) at once, and the exact final figures follow as a :class:`FinalStats` event,
with which the CDR is amended.

The channels carry dataclasses: the commands of :mod:`media.api` (:data:`~media.api.Command`) down to a
worker, and the events of :mod:`media.api` plus the worker's own messages here (:class:`Ready`,
:class:`Report`, :class:`WorkerError`: :data:`WorkerMessage`) back up; each side dispatches with ``match``.

A spawned worker needs a while to start (a fresh interpreter importing numpy: a few tenths of a second,
seconds on a loaded machine); a port is bound only once its worker runs, so RTP sent to it before then is
lost. Each worker says :class:`Ready` once its loop serves, and :meth:`WorkerEngine.ready` waits for all
of them: the application awaits it before it takes calls.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import multiprocessing as mp
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

import numpy as np

from .api import (
    WORKER_FILL,
    Allocate,
    Command,
    Delete,
    FinalStats,
    MediaEvent,
    Play,
    PortsExhausted,
    Record,
    SrtpKeys,
    Stop,
    StopPlay,
    StopRecord,
    Tap,
    Update,
)
from .channel import MAX_FDS, QueuedWriter, Reader, Writer
from .engine import EngineConfig, MediaEngine, bind_pair
from .tap import TapChannel

log = logging.getLogger("media.worker")

REPORT_EVERY = 1.0
#: prompts each worker keeps (by content), so a prompt crosses the pipe once, not per call
PROMPT_CACHE = 64
#: seconds :meth:`WorkerEngine.ready` waits by default for the workers to start
READY_TIMEOUT = 30.0


# -- what a worker says besides the events (worker -> controller) --------------------------------
@dataclass(frozen=True, slots=True)
class Ready:
    """The worker's engine serves: its loop runs and reads the pipe, so ports it is told to open are bound
    at once. Sent once, first, before anything else."""

    pid: int


@dataclass(frozen=True, slots=True)
class Report:
    """Sent every :data:`REPORT_EVERY` seconds: the worker's packet counters and recording writer's figures
    (totals since it started) and the statistics of each of its live sessions."""

    counters: dict[str, int]
    stats: dict[str, dict[str, dict[str, float]]]
    recording: dict[str, int]


@dataclass(frozen=True, slots=True)
class WorkerError:
    """A command failed in the worker (an unknown session, a port it could not bind): logged by the
    controller; ``session`` is empty for commands without one."""

    session: str
    what: str


#: everything a worker sends up its pipe
WorkerMessage: TypeAlias = MediaEvent | Ready | Report | WorkerError


class _Outbox:
    """What one side says during a loop iteration, sent as one frame when the iteration ends (or sooner, when
    the descriptors waiting to go would not fit one frame)."""

    def __init__(self, writer: Writer | QueuedWriter, loop: asyncio.AbstractEventLoop,
                 on_error: Callable[[OSError], None]):
        self.writer = writer
        self.loop = loop
        self.on_error = on_error
        self.messages: list[Any] = []
        self.socks: list[socket.socket] = []  # descriptors to pass: closed here once sent

    def put(self, msg: Any, socks: tuple[socket.socket, ...] = ()) -> None:
        if len(self.socks) + len(socks) > MAX_FDS:
            self.flush()
        if not self.messages:
            self.loop.call_soon(self.flush)
        self.messages.append(msg)
        self.socks += socks

    def flush(self) -> None:
        if not self.messages:
            return
        messages, self.messages = self.messages, []
        socks, self.socks = self.socks, []
        try:
            self.writer.send(messages, [s.fileno() for s in socks])
        except OSError as exc:
            self.on_error(exc)
        finally:
            for sock in socks:  # the other side holds its own descriptors now
                sock.close()


def _worker_main(down: socket.socket, up: socket.socket, config: EngineConfig, tap: TapChannel | None = None) -> None:
    """A child process: one MediaEngine on its own event loop, driven by the commands coming ``down``."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    commands = Reader(down)

    def gone(exc: OSError) -> None:  # the controller: nobody to serve
        loop.stop()

    outbox = _Outbox(QueuedWriter(up, loop, gone), loop, gone)
    engine = MediaEngine(config, on_event=outbox.put, tap=tap)
    engine.start(loop)
    prompts: dict[bytes, Any] = {}  # prompt audio by content digest: sent over the channel once

    def run(cmd: Command) -> bool:
        """Carry out one command; False when told to stop."""
        match cmd:
            case Allocate(session, leg, port):
                # the controller bound the pair and sent it with the command (see allocate)
                socks = (commands.take_socket(), commands.take_socket())
                engine.allocate(session, leg, port, sockets=socks)
            case Update(session, leg, remote, codec, dtmf_pt, send, recv, symmetric, relay_dtmf, srtp, inband_keys):
                engine.update(session, leg, remote=remote, codec=codec, dtmf_pt=dtmf_pt, send=send, recv=recv,
                              symmetric=symmetric, relay_dtmf=relay_dtmf, srtp=srtp, inband_keys=inband_keys)
            case Play(session, leg, key, samples, prompt, loop_, mix):
                if samples is not None:
                    prompts[key] = samples
                    while len(prompts) > PROMPT_CACHE:
                        del prompts[next(iter(prompts))]
                engine.play(session, leg, prompts[key], prompt=prompt, loop=loop_, mix=mix)
            case StopPlay(session, leg):
                engine.stop_play(session, leg)
            case Record(session, path):
                engine.record(session, path)
            case StopRecord(session):
                engine.stop_record(session)
            case Tap(session, leg, on):
                engine.tap(session, leg, on)
            case Delete(session):
                outbox.put(FinalStats(session, engine.delete(session)))
            case Stop():
                return False
            case _:
                outbox.put(WorkerError("", f"unknown command {cmd!r}"))
        return True

    def on_commands() -> None:
        received, gone = commands.read()
        for cmd in received:
            try:
                if not run(cmd):
                    gone = True
                    break
            except (KeyError, IndexError, OSError, PortsExhausted) as exc:
                outbox.put(WorkerError(getattr(cmd, "session", ""), f"{type(cmd).__name__}: {exc!r}"))
        if gone:
            outbox.flush()
            loop.stop()

    def report() -> None:
        outbox.put(Report(dict(engine.counters), {sid: engine.stats(sid) for sid in engine.sessions},
                          engine.recording_stats))
        loop.call_later(REPORT_EVERY, report)

    loop.add_reader(commands.fileno(), on_commands)
    loop.call_later(REPORT_EVERY, report)
    outbox.put(Ready(os.getpid()))  # commands sent meanwhile wait in the socket, in order
    try:
        loop.run_forever()
    finally:
        engine.close()
        commands.close()
        outbox.writer.close()


class WorkerEngine:
    """N media worker processes behind the engine's command interface (:class:`~media.api.EngineControl`)."""

    def __init__(self, config: EngineConfig, workers: int, on_event: Callable[[MediaEvent], None] | None = None,
                 tap: TapChannel | None = None, fill: int = WORKER_FILL):
        self.config = config
        #: sessions a worker takes before the next one is used (0: always the least busy; see place)
        self.fill = fill
        #: the audio tap's channel, shared by every worker (a queue of the spawn context: see media.tap)
        self.tap_channel = tap
        self.on_event = on_event
        self.workers = max(1, workers)
        lo = config.port_min + (config.port_min & 1)
        pairs = list(range(lo, config.port_max - 1, 2))
        size = len(pairs) // self.workers
        self._slices = [pairs[i * size:(i + 1) * size] for i in range(self.workers)]
        self._free = [deque(s) for s in self._slices]
        self._configs = [replace(config, port_min=s[0], port_max=s[-1] + 2) if s else config for s in self._slices]
        self._events: list[Reader] = []  # what each worker says
        self._outboxes: list[_Outbox] = []  # what it is told
        self._gone: set[int] = set()
        self._procs: list[Any] = []
        self._ports: dict[str, list[int]] = {}
        #: each session's worker, from its first allocate until its final figures came back
        self._placed: dict[str, int] = {}
        self._load = [0] * self.workers  # sessions each worker carries (placed, not yet deleted)
        self._reports: list[Report | None] = [None] * self.workers
        self._stats: dict[str, dict[str, dict[str, float]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._prompts: list[dict[bytes, None]] = [{} for _ in range(self.workers)]
        #: workers that have not said Ready yet, those that died before, and when they were started
        self._starting: set[int] = set()
        self._failed: set[int] = set()
        self._started = 0.0
        self._ready: asyncio.Event | None = None  # set once no worker is starting any more
        #: deleted sessions whose FinalStats have not come back yet
        self._finals: set[str] = set()

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Spawn the workers and return at once; they serve once :meth:`ready` returns."""
        self._loop = loop or asyncio.get_event_loop()
        self._ready = asyncio.Event()
        self._started = time.monotonic()
        ctx = mp.get_context("spawn")  # a clean child: no copy of the signalling state
        for i in range(self.workers):
            down, down_child = socket.socketpair()
            up, up_child = socket.socketpair()
            proc = ctx.Process(target=_worker_main, args=(down_child, up_child, self._configs[i], self.tap_channel),
                               daemon=True, name=f"media-worker-{i}")
            proc.start()
            down_child.close()
            up_child.close()
            self._outboxes.append(_Outbox(Writer(down), self._loop, functools.partial(self._lost, i)))
            self._events.append(Reader(up))
            self._procs.append(proc)
            self._starting.add(i)
            self._loop.add_reader(up.fileno(), self._on_message, i)
        log.info("media: %d worker processes starting", self.workers)

    async def ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait (without blocking the loop) until every worker serves; RuntimeError when one died first
        or they were not all up within ``timeout`` seconds. Commands sent before wait in the pipes, but a
        port is bound only once its worker runs: RTP sent to it before then is lost."""
        if self._ready is None:
            raise RuntimeError("WorkerEngine.start() first")
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise RuntimeError(f"media workers {sorted(self._starting)} not ready after {timeout:g} s "
                               "(a machine too busy, or a worker stuck starting)") from None
        if self._failed:
            raise RuntimeError(f"media workers {sorted(self._failed)} exited before they were ready (see the log)")

    def _up(self, w: int, failed: bool = False) -> None:
        """Worker ``w`` is ready, or gone before it was."""
        if w not in self._starting:
            return
        self._starting.discard(w)
        if failed:
            self._failed.add(w)
        if not self._starting and self._ready is not None:
            self._ready.set()
            if not self._failed:
                log.info("media: %d worker processes ready after %.2f s", self.workers,
                         time.monotonic() - self._started)

    async def settle(self, timeout: float = 2.0) -> None:
        """Wait (without blocking the loop) until the final figures of every deleted session have come back
        from the workers (a worker that died sends none: ``timeout`` bounds the wait)."""
        deadline = time.monotonic() + timeout
        while self._finals and time.monotonic() < deadline:
            alive = {w for w, proc in enumerate(self._procs) if proc.is_alive()}
            if not any(self._placed.get(s) in alive for s in self._finals):
                return
            await asyncio.sleep(0.01)

    def close(self) -> None:
        for w, outbox in enumerate(self._outboxes):
            try:
                if w not in self._gone and self._loop is not None:
                    self._loop.remove_reader(self._events[w].fileno())
                outbox.flush()
                outbox.writer.send([Stop()])
            except (OSError, ValueError, RuntimeError):  # a worker already gone, a loop already closed
                pass
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        for outbox, events in zip(self._outboxes, self._events, strict=True):
            outbox.writer.close()
            events.close()

    def _lost(self, w: int, exc: OSError | None = None) -> None:
        """Worker ``w`` stopped listening (it died): said once, its reader unwatched."""
        if w in self._gone:
            return
        self._gone.add(w)
        log.error("media worker %d is gone%s", w, f" ({exc})" if exc else "")
        for session in [s for s in self._finals if self._placed.get(s) == w]:  # figures that will not come
            self._finals.discard(session)
            del self._placed[session]
        if self._loop is not None:
            self._loop.remove_reader(self._events[w].fileno())
        self._up(w, failed=True)

    # -- the command interface ---------------------------------------------------------------
    def place(self) -> int:
        """The worker a new session goes to: the first, in order, that carries fewer than :attr:`fill`
        sessions, else the one carrying fewest; a worker that died, or has no free port pair, is passed
        over (PortsExhausted when none is left)."""
        usable = [w for w in range(self.workers) if w not in self._gone and self._free[w]]
        if not usable:
            raise PortsExhausted("no media worker with free RTP ports")
        load = self._load
        return next((w for w in usable if load[w] < self.fill), min(usable, key=load.__getitem__))

    def _worker(self, session: str) -> int:
        """The session's worker (a session never placed, which its worker would not know either: the first)."""
        return self._placed.get(session, 0)

    def allocate(self, session: str, leg: str) -> tuple[str, int]:
        """A port pair from the session's worker's slice, bound here and handed to the worker (SCM_RIGHTS)
        with the command: the pair is bound before call control advertises it in SDP, so what the
        endpoint sends at once waits in the socket until the worker reads it, however busy the worker
        is (binding in the worker lost the first packets when it ran late). A pair another program
        holds is skipped. A session's first allocate places it (:meth:`place`)."""
        placed = session in self._placed
        w = self._placed[session] if placed else self.place()
        free = self._free[w]
        for _ in range(len(free)):
            port = free.popleft()
            try:
                socks = bind_pair(self.config.host, port)
            except OSError:
                free.append(port)  # taken by someone else: try it again later
                continue
            self._outboxes[w].put(Allocate(session, leg, port), socks)  # closed here once sent
            self._ports.setdefault(session, []).append(port)
            if not placed:
                self._placed[session] = w
                self._load[w] += 1
            return self.config.host, port
        raise PortsExhausted(f"no free RTP ports in worker {w}")

    def update(self, session: str, leg: str, *, remote: tuple[str, int] | None = None, codec: int | None = None,
               dtmf_pt: int | None = None, send: bool = True, recv: bool = True, symmetric: bool = True,
               relay_dtmf: bool | None = None, srtp: SrtpKeys | None = None, inband_keys: bool | None = None) -> None:
        self._outboxes[self._worker(session)].put(
            Update(session, leg, remote, codec, dtmf_pt, send, recv, symmetric, relay_dtmf, srtp, inband_keys))

    def play(self, session: str, leg: str, samples: Any, *, prompt: str = "", loop: bool = False,
             mix: bool = False) -> None:
        """The prompt's audio goes to the session's worker only the first time (then its digest)."""
        w = self._worker(session)
        data = np.ascontiguousarray(samples, dtype=np.int16)
        key = hashlib.blake2b(data.tobytes(), digest_size=16).digest()
        known = self._prompts[w]
        fresh = key not in known
        if fresh:
            known[key] = None
            while len(known) > PROMPT_CACHE:  # the same eviction order as the worker's
                del known[next(iter(known))]
        self._outboxes[w].put(Play(session, leg, key, data if fresh else None, prompt, loop, mix))

    def stop_play(self, session: str, leg: str) -> None:
        self._outboxes[self._worker(session)].put(StopPlay(session, leg))

    def record(self, session: str, path: str) -> None:
        self._outboxes[self._worker(session)].put(Record(session, path))

    def stop_record(self, session: str) -> None:
        self._outboxes[self._worker(session)].put(StopRecord(session))

    def tap(self, session: str, leg: str, on: bool = True) -> None:
        self._outboxes[self._worker(session)].put(Tap(session, leg, on))

    def delete(self, session: str) -> dict[str, dict[str, float]]:
        w = self._worker(session)
        self._outboxes[w].put(Delete(session))
        if session in self._placed and session not in self._finals:
            self._load[w] -= 1
            if w in self._gone:  # no figures will come back
                del self._placed[session]
            else:
                self._finals.add(session)  # its exact figures follow as FinalStats
        self._free[w].extend(self._ports.pop(session, []))  # reopened only after the worker closed them
        return self._stats.pop(session, {})

    def stats(self, session: str) -> dict[str, dict[str, float]]:
        return self._stats.get(session, {})

    def _total(self, field: str) -> dict[str, int]:
        total: dict[str, int] = {}
        for report in self._reports:
            if report is not None:
                for k, v in getattr(report, field).items():
                    total[k] = total.get(k, 0) + v
        return total

    @property
    def counters(self) -> dict[str, int]:
        """The workers' packet counters added up (as of their last reports)."""
        return self._total("counters")

    @property
    def recording_stats(self) -> dict[str, int]:
        """The workers' recording writers' figures added up (as of their last reports)."""
        return self._total("recording")

    @property
    def worker_sessions(self) -> dict[int, int]:
        """Sessions each live worker carries (what :meth:`place` weighs), by worker index."""
        return {w: n for w, n in enumerate(self._load) if w not in self._gone}

    @property
    def workers_gone(self) -> int:
        """Worker processes that died (new sessions pass them over; their calls lost their media)."""
        return len(self._gone)

    @property
    def free_ports(self) -> int:
        """Port pairs new sessions can still get: a dead worker's slice is not counted."""
        return sum(len(f) for w, f in enumerate(self._free) if w not in self._gone)

    # -- what the workers say ----------------------------------------------------------------
    def _on_message(self, w: int) -> None:
        received, gone = self._events[w].read()
        for msg in received:
            self._dispatch(w, msg)
        if gone:
            self._lost(w)

    def _dispatch(self, w: int, msg: WorkerMessage) -> None:
        match msg:
            case Report(stats=stats):
                self._reports[w] = msg
                for sid, st in stats.items():
                    if sid in self._ports:
                        self._stats[sid] = st
            case Ready(pid):
                log.debug("media worker %d (pid %d) ready", w, pid)
                self._up(w)
            case WorkerError(session, what):
                log.warning("media worker %d: %s (%s)", w, what, session)
            case _:  # an event: DTMF, prompt done, recording done, RTP timeout, a deleted call's figures
                if isinstance(msg, FinalStats) and msg.session in self._finals:
                    self._finals.discard(msg.session)
                    self._placed.pop(msg.session, None)
                if self.on_event is not None:
                    self.on_event(msg)
