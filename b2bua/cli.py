"""Command line: ``b2bua run`` and ``b2bua check-config``."""

from __future__ import annotations

import os

# One BLAS thread, set before numpy loads (see __main__.py): no spinning BLAS pool next to the media tick.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from .config import Config, ConfigError, load_config

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "b2bua.yaml"


#: fields a call's log records carry (see :class:`b2bua.call.model.CallLog`)
CALL_FIELDS = ("call", "sip_call_id")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage(),
        }
        for key in CALL_FIELDS:  # a call's lines (b2bua.call.model.CallLog): grep by SIP Call-ID
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        return json.dumps(line, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    """``logging``'s default text format, the time formatted once a second (``time.strftime`` for every line
    was a sixth of a per-call log line's cost at 300 calls/s)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._second = -1
        self._prefix = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        second = int(record.created)
        if second != self._second:  # (a race between threads only formats the same second twice)
            self._prefix = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return f"{self._prefix},{int(record.msecs):03d}"


def _setup_logging(level: str, fmt: str) -> None:
    # Per-call info lines are on the hot path: skip caller lookup and thread/process fields.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # schema migrations: only what goes wrong


def _event_loop_policy() -> str:
    try:
        import uvloop  # noqa: PLC0415

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    except ImportError:
        return "asyncio"


def cmd_run(args: argparse.Namespace) -> int:
    from .app import Application
    from .transport.server import Listener

    try:
        config = load_config(args.config)
        listeners = [Listener.parse(x) for x in args.listen] if args.listen else None
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"--listen: {exc}", file=sys.stderr)
        return 2
    _setup_logging(config.process.logging.level, config.process.logging.format)
    loop_name = _event_loop_policy()
    logging.getLogger("b2bua").info("event loop: %s", loop_name)
    app = Application(config, listeners)
    try:
        asyncio.run(app.run_forever())
    except OSError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _load_or_report(path: str) -> Config | None:
    """The config, or None after printing every ``file:line: problem``."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for p in exc.problems:
            print(p)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    config = _load_or_report(args.config)
    if config is None:
        return 1
    from datetime import datetime

    from .routing.schedule import SEOUL, situation

    r = config.routing
    now = datetime.now(SEOUL)
    schedules = {sc.name: sc for sc in r.schedules}
    print(f"{config.path}: ok")
    print(f"  listen: {', '.join(config.process.sip.listen)}")
    print(f"  trunks: {len(r.trunks)} ({', '.join(f'{t.name}[{t.kind}]' for t in r.trunks)})")
    names = ", ".join(f"{x.name}[{x.prefix or '*'}]" for x in r.routes)
    print(f"  routes: {len(r.routes)} ({names})")
    print(f"  departments: {len(r.departments)} (situation at {now:%Y-%m-%d %H:%M} KST)")
    for d in r.departments:
        sc = schedules.get(d.schedule or "")
        where = situation(sc, config.holidays, now) if sc else "open (no schedule)"
        abuse = " abuse-detection" if d.policy.abuse.enabled else ""
        print(f"    {d.name:<10} {', '.join(d.numbers):<28} recording={d.policy.recording:<9} {where}{abuse}")
    calendar = f"the {r.holiday_calendar} calendar + " if r.holiday_calendar else ""
    print(f"  holidays: {calendar}{len(config.holidays)} days of {r.holidays_file or 'none'}  "
          f"staff devices: {len(r.devices)}")
    for warning in config.warnings:
        print(f"warning: {warning}")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    """Validate the config files, then make the running process load them: through its control socket (it
    answers what it applied and what needs a restart), else with SIGHUP to the pid in the pid file."""
    import signal
    from pathlib import Path

    from .ctl import ControlError, request

    config = _load_or_report(args.config)
    if config is None:
        print("not reloaded: the running configuration stays in force")
        return 1
    for warning in config.warnings:
        print(f"warning: {warning}")
    base = Path(args.config).resolve().parent
    socket_path = config.process.admin.socket_path(base)
    if socket_path is not None and socket_path.exists():
        try:
            status, answer = request(socket_path, "POST", "/api/reload")
        except ControlError as exc:
            print(f"{exc}; trying the pid file")
        else:
            if not answer.get("ok"):
                for problem in answer.get("problems", []):
                    print(problem)
                print("not reloaded: the running configuration stays in force")
                return 1
            print("reloaded")
            for key in answer.get("needs_restart", []):
                print(f"  {key}: changed, needs restart")
            return 0
    pid_file = (base / config.process.pid_file).resolve()
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError, IndexError) as exc:
        print(f"{pid_file}: no running b2bua to reload ({exc})")
        return 2
    print(f"reload sent to pid {pid}")
    return 0


def _abuse_commands(sub: Any) -> None:
    """``b2bua abuse ...``: what operators test lexicon and model changes with, and the evidence."""
    from .abuse.cli import add_commands
    from .detection.cli import add_events_arguments, add_label_arguments, cmd_events, cmd_label

    abuse = sub.add_parser("abuse", help="abuse detection: classify text, transcribe audio, events and labels")
    commands = abuse.add_subparsers(dest="abuse_command", required=True)
    add_commands(commands)
    transcribe = commands.add_parser("transcribe", help="transcribe audio files with the configured engine")
    transcribe.set_defaults(func=_transcribe)
    from media.speech.cli import add_transcribe_arguments

    add_transcribe_arguments(transcribe)
    events = commands.add_parser("events", help="abuse events as JSON lines, oldest first")
    add_events_arguments(events, str(DEFAULT_CONFIG))
    events.set_defaults(func=cmd_events)
    label = commands.add_parser("label", help="confirm or reject an event")
    add_label_arguments(label, str(DEFAULT_CONFIG))
    label.set_defaults(func=cmd_label)


def _transcribe(args: argparse.Namespace) -> int:
    from media.speech.cli import cmd_transcribe

    return cmd_transcribe(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="b2bua", description="SIP back-to-back user agent")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the B2BUA")
    run.add_argument("--config", default=str(DEFAULT_CONFIG))
    run.add_argument("--listen", action="append", metavar="udp|tcp|tls:HOST:PORT",
                     help="listen address (repeatable; replaces the configured listeners)")
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check-config", help="validate the configuration files")
    check.add_argument("--config", default=str(DEFAULT_CONFIG))
    check.set_defaults(func=cmd_check)
    reload = sub.add_parser("reload", help="validate the config and make the running B2BUA load it")
    reload.add_argument("--config", default=str(DEFAULT_CONFIG))
    reload.set_defaults(func=cmd_reload)
    from .ctl import add_commands as add_control_commands

    add_control_commands(sub, str(DEFAULT_CONFIG))
    _abuse_commands(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # `b2bua check-config | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
