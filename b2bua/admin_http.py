"""What the admin API (:mod:`b2bua.admin`) and the operator console (:mod:`b2bua.console`) share: the
target they act on, who is asking (set on the request by the admin listener's guard), the permission
check, the audit row, and the JSON error answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from .admin_auth import PERMISSIONS, Authenticator
from .call.operator import OperatorControl
from .config import Config
from .storage.abuse import AbuseEvents
from .storage.audit import AuditLog
from .storage.history import CallHistory
from .storage.recordings import RecordingIndex

#: the browser session's cookie
COOKIE = "b2bua_session"
#: the console's language cookie (ko | en)
LANG_COOKIE = "b2bua_lang"


class Controlled(Protocol):
    """What the API and the console act on (the application satisfies it)."""

    @property
    def admin_auth(self) -> Authenticator: ...
    @property
    def recordings(self) -> RecordingIndex: ...
    @property
    def abuse_events(self) -> AbuseEvents: ...
    @property
    def audit(self) -> AuditLog: ...
    @property
    def history(self) -> CallHistory: ...
    @property
    def config(self) -> Config: ...

    @property
    def operator(self) -> OperatorControl: ...
    @property
    def ready(self) -> bool: ...
    @property
    def started_at(self) -> float: ...
    @property
    def last_reload(self) -> dict[str, object]: ...
    def act(self, fn: Callable[[], object]) -> object: ...
    def request_drain(self) -> None: ...
    def reload(self) -> bool: ...
    def wall_clock(self) -> datetime: ...
    def bans(self) -> list[dict[str, object]]: ...
    def lift_ban(self, host: str) -> bool: ...


def who(request: web.Request) -> tuple[str, str]:
    """(user, role) of the request: a user's session, ``token`` or ``socket`` (set by the guard)."""
    user, role = request["who"]
    return str(user), str(role)


def allowed(request: web.Request, permission: str) -> bool:
    return permission in PERMISSIONS.get(who(request)[1], frozenset())


def refused(request: web.Request, permission: str) -> web.Response | None:
    """A 403 answer when the caller's role lacks ``permission``, else None."""
    if not allowed(request, permission):
        user, role = who(request)
        return error(403, f"{user} ({role}) may not do this")
    return None


def audit(target: Controlled, request: web.Request, action: str, target_id: str | None = None,
          detail: str | None = None) -> None:
    """One audit row: who (the request's user and role), what, on what, from where."""
    user, role = who(request)
    target.audit.record(user, role, action, target_id, request.remote, detail)


def starts_playback(request: web.Request) -> bool:
    """Whether an audio request starts a playback (no Range, or a range from byte 0): a browser fetches one
    file in several ranges, and one playback is one audit row."""
    return request.http_range.start in (None, 0)


async def recording_file(target: Controlled, request: web.Request) -> tuple[dict[str, Any], Path] | web.Response:
    """The recording ``{rec_id}`` of the path and its file, for a user who may listen; else the answer (403, 404)."""
    if (no := refused(request, "listen")) is not None:
        return no
    try:
        rows = await asyncio.to_thread(target.recordings.rows, None, int(request.match_info["rec_id"]))
    except ValueError:
        rows = []
    path = Path(rows[0]["path"]) if rows else None
    if path is None or not path.is_file():
        return error(404, "no such recording (or its file is gone)")
    return rows[0], path


def since(request: web.Request) -> float | None:
    """The ``since`` query parameter (Unix time, 0 when absent), or None when it is not a number."""
    try:
        return float(request.query.get("since", "0"))
    except ValueError:
        return None


def unauthorized() -> web.Response:
    return error(401, "log in (POST /api/login) or send the bearer token",
                 {"WWW-Authenticate": 'Bearer realm="b2bua"'})


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


__all__ = ["COOKIE", "LANG_COOKIE", "Controlled", "allowed", "audit", "error", "recording_file", "refused", "since",
           "starts_playback", "unauthorized", "who"]
