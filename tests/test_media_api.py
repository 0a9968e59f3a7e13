"""media/api.py, the contract between call control and media: its commands and events, and the worker
processes speaking it over their pipes."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import logging
import pickle
import struct
import sys
import time
import typing
from pathlib import Path

import numpy as np
import pytest
from rtp_peer import RtpPeer, speech_like

from media import api, worker
from media.engine import EngineConfig, MediaEngine

ROOT = Path(__file__).resolve().parents[1]

EVENTS = {api.DtmfEvent, api.PlayDone, api.RecordingDone, api.MediaTimeout, api.FinalStats}
COMMANDS = {api.Allocate, api.Update, api.Play, api.StopPlay, api.Record, api.StopRecord, api.Delete, api.Stop,
            api.Tap}
WORKER_OWN = {worker.Ready, worker.Report, worker.WorkerError}

#: one of each, as they travel
SAMPLES = [
    api.DtmfEvent("s1", "a", "5", 160, "rfc4733"), api.PlayDone("s1", "b", "hold"),
    api.RecordingDone("s1", "/r/s1.wav", 1.5, 24058), api.MediaTimeout("s1", "a", 31.0),
    api.FinalStats("s1", {"a": {"packets_received": 3.0}}),
    api.Allocate("s1", "a", 20000), api.Update("s1", "a", remote=("127.0.0.1", 4000), codec=8, dtmf_pt=101),
    api.Play("s1", "a", b"k" * 16, np.zeros(160, np.int16), prompt="hold", loop=True),
    api.StopPlay("s1", "a"), api.Record("s1", "/r/s1.wav"), api.StopRecord("s1"), api.Delete("s1"), api.Stop(),
    api.Tap("s1", "a"), api.Tap("s1", "a", on=False),
    worker.Ready(1234), worker.Report({"rtp_in": 1}, {"s1": {}}, {"written": 0}), worker.WorkerError("s1", "x"),
]


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.add("." * node.level + (node.module or ""))
    return out


def _constructed(path: Path) -> set[str]:
    """Names of everything called like a class (``Name(...)``) in a module."""
    return {node.func.id for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}


def test_api_imports_only_the_standard_library() -> None:
    names = _imports(ROOT / "media" / "api.py")
    assert names
    for name in names:
        assert not name.startswith("."), f"media/api.py imports {name}: no other media module"
        assert name == "__future__" or name.split(".")[0] in sys.stdlib_module_names, f"media/api.py imports {name}"


def test_commands_and_messages_are_frozen_slotted_dataclasses() -> None:
    for cls in EVENTS | COMMANDS | WORKER_OWN:
        assert dataclasses.is_dataclass(cls), cls
        assert cls.__dataclass_params__.frozen, f"{cls.__name__} is not frozen"  # type: ignore[attr-defined]
        assert "__slots__" in cls.__dict__, f"{cls.__name__} has no slots"
    assert {type(m) for m in SAMPLES} == EVENTS | COMMANDS | WORKER_OWN
    with pytest.raises(dataclasses.FrozenInstanceError):
        api.DtmfEvent("s1", "a", "5", 160, "inband").digit = "6"  # type: ignore[misc]


def test_every_message_survives_the_pipe() -> None:
    for msg in SAMPLES:
        back = pickle.loads(pickle.dumps(msg))
        assert type(back) is type(msg)
        if isinstance(msg, api.Play):
            assert isinstance(back, api.Play) and back.key == msg.key
            assert np.array_equal(typing.cast(np.ndarray, back.samples), typing.cast(np.ndarray, msg.samples))
        else:
            assert back == msg


def test_the_unions_cover_what_the_engines_emit_and_the_worker_is_told() -> None:
    assert set(typing.get_args(api.MediaEvent)) == EVENTS
    assert set(typing.get_args(api.Command)) == COMMANDS
    assert set(typing.get_args(worker.WorkerMessage)) == EVENTS | WORKER_OWN
    made = _constructed(ROOT / "media" / "engine.py") | _constructed(ROOT / "media" / "worker.py")
    api_classes = {name for name, obj in vars(api).items() if inspect.isclass(obj) and obj.__module__ == "media.api"}
    # everything of media.api the engine and the worker make is an event or a command, and every event is made
    assert {n for n in made & api_classes if n != "PortsExhausted"} <= {c.__name__ for c in EVENTS | COMMANDS}
    assert {c.__name__ for c in EVENTS} <= made
    assert {c.__name__ for c in COMMANDS} <= made  # the controller sends every command
    assert {c.__name__ for c in WORKER_OWN} <= made


def test_both_engines_offer_every_member_of_the_protocols() -> None:
    """A runtime mirror of what mypy checks (``engine: EngineControl = WorkerEngine(...)``): every
    method with the protocol's parameters, every property."""
    engines = [MediaEngine(EngineConfig()), worker.WorkerEngine(EngineConfig(), 2)]
    members = [n for n in dir(api.EngineControl) if not n.startswith("_")]
    assert {"allocate", "update", "delete", "play", "stop_play", "record", "stop_record", "start", "ready",
            "close", "stats", "counters", "free_ports", "recording_stats"} <= set(members)
    for engine in engines:
        for name in members:
            proto = inspect.getattr_static(api.EngineControl, name)
            if isinstance(proto, property):
                assert isinstance(getattr(engine, name), (int, dict)), (type(engine).__name__, name)
                continue
            have = inspect.signature(getattr(engine, name)).parameters
            want = inspect.signature(proto).parameters
            for p in list(want.values())[1:]:  # (self)
                assert p.name in have, (type(engine).__name__, name, p.name)
                assert have[p.name].kind == p.kind or p.kind is p.POSITIONAL_OR_KEYWORD, (name, p.name)
                assert have[p.name].default == p.default, (type(engine).__name__, name, p.name)
            assert inspect.iscoroutinefunction(getattr(engine, name)) == inspect.iscoroutinefunction(proto), name


def test_media_engine_is_ready_once_started() -> None:
    async def run() -> None:
        engine = MediaEngine(EngineConfig(port_min=38500, port_max=38520))
        with pytest.raises(RuntimeError):
            await engine.ready()
        engine.start(asyncio.get_running_loop())
        try:
            await engine.ready(0.01)
        finally:
            engine.close()

    asyncio.run(run())


def _rtp(pt: int, seq: int, ts: int, payload: bytes, ssrc: int = 0x77) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, ts, ssrc) + payload


def test_worker_round_trip_speaks_the_api(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One worker process: the commands go down as api dataclasses, the events come back as them. Once
    ``ready`` returned, the very first packets a caller sends are relayed (the spawn start-up race)."""
    try:
        import uvloop
        run_loop = uvloop.run
    except ImportError:
        run_loop = asyncio.run  # type: ignore[assignment]
    events: list[api.MediaEvent] = []
    caplog.set_level(logging.WARNING, logger="media.worker")

    async def run() -> tuple[list, dict, dict, float]:
        engine = worker.WorkerEngine(EngineConfig(port_min=38400, port_max=38420), 1, on_event=events.append)
        with pytest.raises(RuntimeError, match="start"):
            await engine.ready()
        started = time.monotonic()
        engine.start(asyncio.get_running_loop())
        a, b = RtpPeer(), RtpPeer()
        try:
            with pytest.raises(RuntimeError, match="not ready after"):
                await engine.ready(0.001)  # a spawned interpreter takes longer than a millisecond
            await engine.ready(60)
            waited = time.monotonic() - started
            _, a_port = engine.allocate("s1", "a")
            engine.allocate("s1", "b")
            engine.update("s1", "a", remote=("127.0.0.1", a.port), codec=0, dtmf_pt=101)
            engine.update("s1", "b", remote=("127.0.0.1", b.port), codec=0)
            engine.update("nobody", "a", codec=0)  # an unknown session: logged, no event
            engine.record("s1", str(tmp_path / "s1.wav"))
            await asyncio.sleep(0.1)  # (the commands cross the pipe; the SDP exchange takes longer than this)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for i in range(25):  # the caller talks at once
                a.send_raw(("127.0.0.1", a_port), _rtp(0, i, 160 * i, bytes(range(160))))
                await asyncio.sleep(max(0.0, t0 + 0.02 * (i + 1) - loop.time()))
            for i, end in enumerate([0, 0, 0x80]):  # key 5 as RFC 4733 events
                event = bytes([5, end | 10]) + (160 * (i + 1)).to_bytes(2, "big")
                a.send_raw(("127.0.0.1", a_port), _rtp(101, 25 + i, 160 * 25, event))
            engine.play("s1", "a", speech_like(0.2), prompt="beep")
            await asyncio.sleep(0.5)
            engine.stop_record("s1")
            await asyncio.sleep(1.2)  # a report
            counters, recording = engine.counters, engine.recording_stats
            engine.delete("s1")
            await asyncio.sleep(0.3)
            return [r for r in b.received if r.pt == 0], counters, recording, waited
        finally:
            engine.close()
            a.close()
            b.close()

    relayed, counters, recording, waited = run_loop(run())
    assert len(relayed) == 25, f"{len(relayed)} of 25 first packets relayed (ready after {waited:.2f} s)"
    assert all(type(ev).__module__ == "media.api" for ev in events), events
    kinds = [type(ev) for ev in events]
    assert kinds.count(api.DtmfEvent) == 1 and kinds.count(api.PlayDone) == 1 \
        and kinds.count(api.RecordingDone) == 1 and kinds[-1] is api.FinalStats, kinds
    dtmf = next(ev for ev in events if isinstance(ev, api.DtmfEvent))
    assert (dtmf.session, dtmf.leg, dtmf.digit, dtmf.source) == ("s1", "a", "5", "rfc4733")
    assert next(ev for ev in events if isinstance(ev, api.PlayDone)) == api.PlayDone("s1", "a", "beep")
    done = next(ev for ev in events if isinstance(ev, api.RecordingDone))
    assert done.path == str(tmp_path / "s1.wav") and done.error is None and done.seconds > 0.3
    final = events[-1]
    assert isinstance(final, api.FinalStats) and final.stats["a"]["packets_received"] == 28
    assert counters["rtp_in"] == 28 and recording == {"written": 1, "failures": 0, "dropped": 0}
    assert any("Update" in r.getMessage() and "nobody" in r.getMessage() for r in caplog.records), caplog.text
