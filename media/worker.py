"""The media engine as worker processes, one per core, behind the same command interface.

:class:`WorkerEngine` looks like :class:`~media.engine.MediaEngine` to call control (``allocate``,
``update``, ``delete``, ``stats``, ``counters``, ``free_ports``, events through ``on_event``), but
each session lives in one of N child processes, chosen by the session id. Every worker owns a slice
of the port range; the controller hands out ports from that slice, so ``allocate`` answers at once
and the command is sent on without waiting. Commands and events travel over a pipe per worker, in
order, so a port freed by ``delete`` is never reopened before the worker has closed it.

Statistics come back with a report every second; ``delete`` returns the last report of the session
(at most a second old) at once, and the exact final figures follow as a :class:`FinalStats` event,
with which the CDR is amended.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import multiprocessing as mp
import os
import zlib
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any, Callable, Iterator

import numpy as np

from .engine import EngineConfig, MediaEngine, PortsExhausted, bind_pair

log = logging.getLogger("media.worker")

REPORT_EVERY = 1.0
#: prompts each worker keeps (by content), so a prompt crosses the pipe once, not per call
PROMPT_CACHE = 64


@dataclass(slots=True)
class FinalStats:
    """A deleted session's exact statistics, after ``delete`` answered with the last report's."""

    session: str
    stats: dict[str, dict[str, float]]


def _bindable(host: str, port: int) -> bool:
    """Whether the RTP/RTCP pair at ``port`` can be bound now (nobody else holds either)."""
    try:
        socks = bind_pair(host, port)
    except OSError:
        return False
    for s in socks:
        s.close()
    return True


@contextmanager
def _blocking(conn: Connection) -> Iterator[None]:
    """Whole messages on a pipe the event loop watches (uvloop makes it non-blocking): a message
    larger than the socket buffer (a prompt's audio, a report of many sessions) arrives and leaves in
    pieces, and on a non-blocking descriptor EAGAIN halfway would corrupt the stream."""
    fd = conn.fileno()
    if os.get_blocking(fd):
        yield
        return
    os.set_blocking(fd, True)
    try:
        yield
    finally:
        os.set_blocking(fd, False)


def _recv(conn: Connection) -> Any:
    with _blocking(conn):
        return conn.recv()


def _send(conn: Connection, msg: tuple) -> None:
    with _blocking(conn):
        conn.send(msg)


def _worker_main(conn: Connection, config: EngineConfig) -> None:
    """A child process: one MediaEngine on its own event loop, driven by the pipe."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    engine = MediaEngine(config, on_event=lambda ev: _send(conn, ("event", ev)))
    engine.start(loop)
    prompts: dict[bytes, Any] = {}  # prompt audio by content digest: sent over the pipe once

    def on_command() -> None:
        while conn.poll():
            try:
                msg = _recv(conn)
            except (EOFError, OSError):
                loop.stop()
                return
            kind = msg[0]
            try:
                if kind == "allocate":
                    engine.allocate(msg[1], msg[2], msg[3])
                elif kind == "update":
                    engine.update(msg[1], msg[2], **msg[3])
                elif kind == "play":
                    key, samples = msg[3], msg[4]
                    if samples is not None:
                        prompts[key] = samples
                        while len(prompts) > PROMPT_CACHE:
                            del prompts[next(iter(prompts))]
                    engine.play(msg[1], msg[2], prompts[key], **msg[5])
                elif kind == "stop_play":
                    engine.stop_play(msg[1], msg[2])
                elif kind == "record":
                    engine.record(msg[1], msg[2])
                elif kind == "stop_record":
                    engine.stop_record(msg[1])
                elif kind == "delete":
                    _send(conn, ("final", msg[1], engine.delete(msg[1])))
                elif kind == "stop":
                    loop.stop()
                    return
            except (KeyError, OSError, PortsExhausted) as exc:
                _send(conn, ("error", msg[1] if len(msg) > 1 else "", f"{kind}: {exc}"))

    def report() -> None:
        _send(conn, ("report", dict(engine.counters), {sid: engine.stats(sid) for sid in engine.sessions}))
        loop.call_later(REPORT_EVERY, report)

    loop.add_reader(conn.fileno(), on_command)
    loop.call_later(REPORT_EVERY, report)
    try:
        loop.run_forever()
    finally:
        engine.close()
        conn.close()


class WorkerEngine:
    """N media worker processes behind the engine's command interface."""

    def __init__(self, config: EngineConfig, workers: int, on_event: Callable[[object], None] | None = None):
        self.config = config
        self.on_event = on_event
        self.workers = max(1, workers)
        lo = config.port_min + (config.port_min & 1)
        pairs = list(range(lo, config.port_max - 1, 2))
        size = len(pairs) // self.workers
        self._slices = [pairs[i * size:(i + 1) * size] for i in range(self.workers)]
        self._free = [deque(s) for s in self._slices]
        self._configs = [replace(config, port_min=s[0], port_max=s[-1] + 2) if s else config for s in self._slices]
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        self._ports: dict[str, list[int]] = {}
        self._reports: list[dict[str, int]] = [{} for _ in range(self.workers)]
        self._stats: dict[str, dict[str, dict[str, float]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._prompts: list[dict[bytes, None]] = [{} for _ in range(self.workers)]

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_event_loop()
        ctx = mp.get_context("spawn")  # a clean child: no copy of the signalling state
        for i in range(self.workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child, self._configs[i]), daemon=True,
                               name=f"media-worker-{i}")
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
            self._loop.add_reader(parent.fileno(), self._on_message, i)
        log.info("media: %d worker processes", self.workers)

    def close(self) -> None:
        for i, conn in enumerate(self._conns):
            try:
                if self._loop is not None:
                    self._loop.remove_reader(conn.fileno())
                conn.send(("stop",))
            except (OSError, ValueError):
                pass
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()

    # -- the command interface ---------------------------------------------------------------
    def _worker(self, session: str) -> int:
        return zlib.crc32(session.encode()) % self.workers

    def allocate(self, session: str, leg: str) -> tuple[str, int]:
        """A port pair from the session's worker's slice, answered at once. Each candidate is
        probed here first: a pair another program holds would make the worker bind a different
        one than our SDP names."""
        w = self._worker(session)
        free = self._free[w]
        for _ in range(len(free)):
            port = free.popleft()
            if _bindable(self.config.host, port):
                self._ports.setdefault(session, []).append(port)
                _send(self._conns[w], ("allocate", session, leg, port))
                return self.config.host, port
            free.append(port)  # taken by someone else: try it again later
        raise PortsExhausted(f"no free RTP ports in worker {w}")

    def update(self, session: str, leg: str, **kwargs: Any) -> None:
        _send(self._conns[self._worker(session)], ("update", session, leg, kwargs))

    def play(self, session: str, leg: str, samples: Any, **kwargs: Any) -> None:
        w = self._worker(session)
        data = np.ascontiguousarray(samples, dtype=np.int16)
        key = hashlib.blake2b(data.tobytes(), digest_size=16).digest()
        known = self._prompts[w]
        fresh = key not in known
        if fresh:
            known[key] = None
            while len(known) > PROMPT_CACHE:  # the same eviction order as the worker's
                del known[next(iter(known))]
        _send(self._conns[w], ("play", session, leg, key, data if fresh else None, kwargs))

    def stop_play(self, session: str, leg: str) -> None:
        _send(self._conns[self._worker(session)], ("stop_play", session, leg))

    def record(self, session: str, path: str) -> None:
        _send(self._conns[self._worker(session)], ("record", session, path))

    def stop_record(self, session: str) -> None:
        _send(self._conns[self._worker(session)], ("stop_record", session))

    def delete(self, session: str) -> dict[str, dict[str, float]]:
        w = self._worker(session)
        _send(self._conns[w], ("delete", session))
        self._free[w].extend(self._ports.pop(session, []))  # reopened only after the worker closed them
        return self._stats.pop(session, {})

    def stats(self, session: str) -> dict[str, dict[str, float]]:
        return self._stats.get(session, {})

    @property
    def counters(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for report in self._reports:
            for k, v in report.items():
                total[k] = total.get(k, 0) + v
        return total

    @property
    def free_ports(self) -> int:
        return sum(len(f) for f in self._free)

    # -- what the workers say ----------------------------------------------------------------
    def _on_message(self, w: int) -> None:
        conn = self._conns[w]
        while True:
            try:
                if not conn.poll():
                    return
                msg = _recv(conn)
            except (EOFError, OSError):
                log.error("media worker %d is gone", w)
                if self._loop is not None:
                    self._loop.remove_reader(conn.fileno())
                return
            kind = msg[0]
            if kind == "event" and self.on_event is not None:
                self.on_event(msg[1])
            elif kind == "report":
                self._reports[w] = msg[1]
                for sid, st in msg[2].items():
                    if sid in self._ports:
                        self._stats[sid] = st
            elif kind == "final" and self.on_event is not None:
                self.on_event(FinalStats(msg[1], msg[2]))
            elif kind == "error":
                log.warning("media worker %d: %s (%s)", w, msg[2], msg[1])
