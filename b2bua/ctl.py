"""``b2bua calls``, ``b2bua hangup ID``, ``b2bua drain`` and ``b2bua bans``: the admin API
(:mod:`b2bua.admin`) through the running process's control socket (``admin.socket``; its file permissions are
the access control).

The client is the standard library's ``http.client`` on an ``AF_UNIX`` socket: one request per command,
nothing to keep open, and no event loop in a command-line tool.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
from pathlib import Path
from typing import Any

from .config import ConfigError, load_process

EXIT_NO_PROCESS = 2


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float = 10.0):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self.path))
        self.sock = sock


class ControlError(RuntimeError):
    """No running process answered on the socket."""


def request(path: Path, method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One API request through the control socket: (status, decoded JSON)."""
    conn = _UnixConnection(path)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, url, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    except (OSError, http.client.HTTPException) as exc:
        raise ControlError(f"{path}: no running b2bua answers ({exc})") from exc
    finally:
        conn.close()


def _socket(args: argparse.Namespace) -> Path | None:
    try:
        process = load_process(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None
    path = process.admin.socket_path(Path(args.config).resolve().parent)
    if path is None:
        print(f"{args.config}: admin.socket is off: no live call control from the command line", file=sys.stderr)
    return path


def _call(args: argparse.Namespace, method: str, url: str, body: dict[str, Any] | None = None
          ) -> tuple[int, Any] | None:
    path = _socket(args)
    if path is None:
        return None
    try:
        return request(path, method, url, body)
    except ControlError as exc:
        print(exc, file=sys.stderr)
        return None


def _answered(args: argparse.Namespace, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    """The JSON of a 200 answer; else the exit status, the error printed (1: refused, 2: no process)."""
    got = _call(args, method, url, body)
    if got is None:
        return EXIT_NO_PROCESS
    status, answer = got
    if status != 200:
        print(answer.get("error", f"HTTP {status}") if isinstance(answer, dict) else f"HTTP {status}",
              file=sys.stderr)
        return 1
    return answer


def cmd_calls(args: argparse.Namespace) -> int:
    got = _call(args, "GET", "/api/calls")
    if got is None:
        return EXIT_NO_PROCESS
    _, answer = got
    calls = answer["calls"]
    if args.json:
        for call in calls:
            print(json.dumps(call, ensure_ascii=False))
        return 0
    print(f"{len(calls)} call(s){' (draining: new calls refused)' if answer.get('draining') else ''}")
    if calls:
        print(f"{'id':<12} {'state':<11} {'dur s':>7} {'department':<12} {'trunk':<12} {'codec':<9} {'rec':<3} "
              f"{'caller':<14} {'callee':<14} a-leg Call-ID / b-leg Call-ID")
    for c in calls:
        codec = "/".join(c["codec"].get(leg, "-") for leg in ("a", "b"))
        print(f"{c['id']:<12} {c['state']:<11} {c['duration_s']:>7.0f} {c['department'] or '-':<12} "
              f"{c['trunk'] or '-':<12} {codec:<9} {'on' if c['recording'] else 'off':<3} {c['caller']:<14} "
              f"{c['callee']:<14} {c['a_call_id']} / {c['b_call_id'] or '-'}")
    return 0


def cmd_hangup(args: argparse.Namespace) -> int:
    answer = _answered(args, "POST", f"/api/calls/{args.call}/hangup",
                       {"announcement": args.announce} if args.announce else None)
    if isinstance(answer, int):
        return answer
    print(f"call {args.call}: hanging up{' after ' + args.announce if args.announce else ''}")
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    got = _call(args, "POST", "/api/drain")
    if got is None:
        return EXIT_NO_PROCESS
    print("draining: new calls are refused (503); the process exits when its calls have ended")
    return 0


def cmd_bans(args: argparse.Namespace) -> int:
    """The addresses the front gate has banned, or lift one ban (``--lift ADDR``)."""
    answer = _answered(args, "POST", f"/api/bans/{args.lift}/lift") if args.lift else \
        _answered(args, "GET", "/api/bans")
    if isinstance(answer, int):
        return answer
    if args.lift:
        print(f"{args.lift}: ban lifted")
        return 0
    print(f"{len(answer['bans'])} banned address(es)")
    for ban in answer["bans"]:
        print(f"{ban['host']:<40} {ban['seconds_left']:>6.0f} s left  {ban['reason']}")
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    """A password hash for ``admin.users[].password_hash``: the password from the terminal (not echoed) or,
    piped, from the first line of stdin."""
    import getpass

    from .admin_auth import hash_password

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if len(password) < 12:
        print("a password of at least 12 characters, please", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def add_commands(sub: Any, default_config: str) -> None:
    calls = sub.add_parser("calls", help="list the calls in progress (through the control socket)")
    calls.add_argument("--config", default=default_config)
    calls.add_argument("--json", action="store_true", help="one JSON object per call")
    calls.set_defaults(func=cmd_calls)
    hangup = sub.add_parser("hangup", help="end a call in progress: BYE on both legs with a Reason")
    hangup.add_argument("call", help="the call's id (from `b2bua calls`)")
    hangup.add_argument("--announce", metavar="PROMPT", help="a prompt both parties hear first")
    hangup.add_argument("--config", default=default_config)
    hangup.set_defaults(func=cmd_hangup)
    drain = sub.add_parser("drain", help="refuse new calls, let the calls in progress end, then exit (as SIGTERM)")
    drain.add_argument("--config", default=default_config)
    drain.set_defaults(func=cmd_drain)
    bans = sub.add_parser("bans", help="the addresses banned for repeated failed authentication; lift one")
    bans.add_argument("--lift", metavar="ADDR", help="lift this address's ban")
    bans.add_argument("--config", default=default_config)
    bans.set_defaults(func=cmd_bans)
    admin = sub.add_parser("admin", help="admin API users")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    hashing = admin_commands.add_parser("hash-password", help="print the scrypt hash of a password for admin.users")
    hashing.set_defaults(func=cmd_hash_password)


__all__ = ["ControlError", "add_commands", "request"]
