"""``b2bua abuse events`` and ``b2bua abuse label``: operators read the evidence and label it.

``events`` prints one JSON object per event (oldest first); ``label`` records a staff member's or an
operator's verdict with who and when. Both read the database of ``storage.url`` in the given config.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import datetime

from ..config import ConfigError, load_config
from ..storage.abuse import AbuseEvents

SHOWN = ("event_id", "call_id", "sip_call_id", "department", "offset", "category", "score", "transcript", "action",
         "shout_excess_db", "reported_by", "asr_engine", "model_version", "clip_path", "clip_sha256", "label",
         "labelled_by", "labelled_at")


def _since(value: str) -> float:
    """``2026-12-03``, ``2026-12-03T09:00+09:00`` (ISO 8601) or Unix seconds."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time or Unix seconds: {value!r}") from exc
    return when.timestamp()


def _store(config_path: str) -> AbuseEvents | None:
    try:
        return AbuseEvents.for_config(load_config(config_path))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def add_events_arguments(parser: argparse.ArgumentParser, default_config: str) -> None:
    parser.add_argument("--config", default=default_config)
    parser.add_argument("--since", type=_since, default=0.0, help="ISO 8601 time or Unix seconds")
    parser.add_argument("--call", help="only this call's events (our call id)")


def cmd_events(args: argparse.Namespace) -> int:
    store = _store(args.config)
    if store is None:
        return 2
    try:
        for row in store.events(args.since, args.call):
            out = {k: row[k] for k in SHOWN}
            out["time"] = datetime.fromtimestamp(row["created"]).astimezone().isoformat(timespec="seconds")
            print(json.dumps(out, ensure_ascii=False))
    finally:
        store.close()
        store.engine.dispose()
    return 0


def add_label_arguments(parser: argparse.ArgumentParser, default_config: str) -> None:
    parser.add_argument("event", metavar="EVENT", help="the event id (b2bua abuse events)")
    verdict = parser.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--confirm", action="store_true", help="it was abuse")
    verdict.add_argument("--reject", action="store_true", help="it was not")
    parser.add_argument("--by", default=None, help="who labels (default: the login name)")
    parser.add_argument("--config", default=default_config)


def cmd_label(args: argparse.Namespace) -> int:
    store = _store(args.config)
    if store is None:
        return 2
    try:
        who = args.by or getpass.getuser()
        if not store.label(args.event, confirmed=bool(args.confirm), who=who):
            print(f"no event {args.event!r}", file=sys.stderr)
            return 1
        print(f"{args.event}: {'confirmed' if args.confirm else 'rejected'} by {who}")
        return 0
    finally:
        store.close()
        store.engine.dispose()


__all__ = ["add_events_arguments", "add_label_arguments", "cmd_events", "cmd_label"]
