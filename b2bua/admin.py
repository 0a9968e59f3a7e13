"""The admin listener: ``/metrics``, ``/healthz``, ``/readyz`` and the JSON API of live call control.

One aiohttp application served twice, in the event loop:

* on the metrics address (TCP): ``/metrics`` (Prometheus), ``/healthz`` (the process answers: 200),
  ``/readyz`` (200 while new calls are taken; 503 while draining or overloaded, so a dispatcher or an
  orchestrator stops sending), and ``/api/...`` behind ``Authorization: Bearer <token>`` (403 when no
  token is configured: the API is never open by accident);
* on the control socket (a unix socket, mode 0600): the same routes without a token (the file's
  permissions are the access control), for ``b2bua calls``, ``b2bua hangup`` and ``b2bua drain``.

On TCP, ``/api`` takes either the bearer token (automation: an operator) or a browser session:
``POST /api/login`` with a configured user's name and password (scrypt, :mod:`b2bua.admin_auth`; five
failures lock the address and the name out for a minute, 429) sets an HttpOnly, SameSite=Strict cookie
and returns the CSRF token every non-GET request must send back as ``X-CSRF-Token``. Each route needs a
permission of the caller's role (``view``; ``control`` for hangup, drain, reload). Logins, failed logins,
hangups, drains and reloads are written to the audit table with who, role, target and address.

API (JSON):

* ``GET /api/calls`` -> ``{"calls": [CallInfo...], "draining": bool}``
* ``POST /api/calls/{id}/hangup`` (body optional: ``{"announcement": "<prompt>"}``) -> 200, or 404
* ``GET /api/recordings[?call=ID]`` -> ``{"recordings": [...]}`` (rows with SHA-256; ``view``);
  ``GET /api/recordings/{id}/audio[?download=1]`` -> the file (``listen``: auditors; an audit row each time)
* ``GET /api/audit[?since=T]`` -> the audit rows (auditors)
* ``GET /api/abuse/events[?label=unlabelled&call=ID&since=T]`` -> events for review (``view``);
  ``POST /api/abuse/events/{id}/label`` ``{"confirm": true|false}`` (``control``, audited): the label the next
  ``b2bua abuse retrain`` learns from
* ``GET /api/bans`` -> ``{"bans": [{"host", "until", "seconds_left", "reason"}]}``: the front gate's bans
  (``view``); ``POST /api/bans/{host}/lift`` (``control``, audited) lifts one, or 404
* ``POST /api/drain`` -> 202: the process drains and exits, as on SIGTERM
* ``POST /api/reload`` -> 200 ``{"ok": true, "applied": [...], "needs_restart": [...], "warnings": [...]}``,
  or 422 ``{"ok": false, "problems": ["file:line: ..."]}`` (the running configuration stays)
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .admin_http import COOKIE, Controlled, error, recording_file, refused, since, starts_playback, unauthorized
from .admin_http import audit as audit_row
from .console import CLOSING, add_console

log = logging.getLogger("b2bua.admin")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


#: what the API shows of a recording's row
RECORDING_FIELDS = ("id", "call_id", "department", "direction", "reason", "start", "end", "duration", "size", "sha256",
                    "status", "format")
#: paths served without a login (the probes, the metrics, the login itself, the console's script and style)
PUBLIC = frozenset({"/metrics", "/healthz", "/readyz", "/api/login", "/login"})


def make_app(target: Controlled, registry: CollectorRegistry | None, token: Callable[[], str | None], *,
             authenticate: bool) -> web.Application:
    """The routes; ``authenticate``: ``/api`` wants the bearer ``token()`` (TCP; read per request, so a
    reload changes it), or not (the socket)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not authenticate:  # the control socket: its file permissions decided already
            request["who"] = ("socket", "operator")
            return await handler(request)
        path = request.path
        if path in PUBLIC or path.startswith("/static/"):
            return await handler(request)
        api = path.startswith("/api/")
        offered = request.headers.get("Authorization", "")
        wanted = token()
        if api and offered.startswith("Bearer "):
            if wanted is None:
                return error(403, "the API is off on this listener: set admin.token or its environment variable")
            if not hmac.compare_digest(offered.encode(), f"Bearer {wanted}".encode()):
                return unauthorized()
            request["who"] = ("token", "operator")
            return await handler(request)
        session = target.admin_auth.session(request.cookies.get(COOKIE), time.monotonic())
        if session is None:
            if not api:  # a page: the browser goes to the login page, and comes back after it
                raise web.HTTPFound(f"/login?{urlencode({'next': request.path_qs})}")
            if wanted is None and not target.admin_auth.users:
                return error(403, "the API is off on this listener: set admin.token or its environment variable")
            return unauthorized()
        if request.method != "GET" and not hmac.compare_digest(request.headers.get("X-CSRF-Token", ""),
                                                                session.csrf):
            return error(403, "missing or wrong X-CSRF-Token")
        request["who"] = (session.user, session.role)
        request["csrf"] = session.csrf
        return await handler(request)

    def audit(request: web.Request, action: str, target_id: str | None = None, detail: str | None = None) -> None:
        audit_row(target, request, action, target_id, detail)

    async def recordings(request: web.Request) -> web.Response:
        if (no := refused(request, "view")) is not None:
            return no
        rows = await asyncio.to_thread(target.recordings.rows, request.query.get("call"))
        return web.json_response({"recordings": [{k: r[k] for k in RECORDING_FIELDS} for r in rows]})

    async def recording_audio(request: web.Request) -> web.StreamResponse:
        """A recording's file, for an auditor (every access is an audit row: ``play``, or ``download``)."""
        found = await recording_file(target, request)
        if isinstance(found, web.Response):
            return found
        row, path = found
        download = request.query.get("download") == "1"
        if download or starts_playback(request):  # a playback's later ranges are the same playback
            audit(request, "download" if download else "play", str(path))
        headers = {"X-Content-SHA256": row["sha256"] or "", "Cache-Control": "no-store"}
        if download:
            headers["Content-Disposition"] = f'attachment; filename="{path.name}"'
        return web.FileResponse(path, headers=headers)

    async def abuse_events(request: web.Request) -> web.Response:
        """Abuse events for review (``?label=unlabelled``, ``?call=ID``, ``?since=T``), without the clips' paths."""
        if (no := refused(request, "view")) is not None:
            return no
        if (t0 := since(request)) is None:
            return error(400, "since is Unix time")
        rows = await asyncio.to_thread(target.abuse_events.events, t0, request.query.get("call"))
        wanted = request.query.get("label")
        return web.json_response({"events": [{k: v for k, v in r.items() if k != "clip_path"} for r in rows
                                             if wanted is None or r["label"] == wanted]})

    async def abuse_label(request: web.Request) -> web.Response:
        """A team lead's verdict (``{"confirm": true|false}``): stored for the next ``b2bua abuse retrain``."""
        if (no := refused(request, "control")) is not None:
            return no
        try:
            body = await request.json()
            confirm = body["confirm"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            confirm = None
        if not isinstance(confirm, bool):
            return error(400, 'the body is {"confirm": true} or {"confirm": false}')
        event_id = request.match_info["event_id"]
        user, _ = request["who"]
        if not await asyncio.to_thread(target.abuse_events.label, event_id, confirm, user):
            return error(404, f"no event {event_id}")
        audit(request, "label", event_id, "confirmed" if confirm else "rejected")
        return web.json_response({"event": event_id, "label": "confirmed" if confirm else "rejected"})

    async def audit_rows(request: web.Request) -> web.Response:
        if (no := refused(request, "audit")) is not None:
            return no
        if (t0 := since(request)) is None:
            return error(400, "since is Unix time")
        rows = await asyncio.to_thread(target.audit.rows, t0)
        return web.json_response({"audit": rows})

    async def login(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            name, password = str(body["name"]), str(body["password"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            return error(400, 'the body is {"name": ..., "password": ...}')
        remote = request.remote or ""
        auth = target.admin_auth
        if auth.locked((f"addr:{remote}", f"user:{name}"), time.monotonic()):
            return error(429, "too many failed logins: try again in a minute", {"Retry-After": "60"})
        user = await asyncio.to_thread(auth.check, name, password)  # scrypt: never on the event loop
        session = auth.admit(user, name, remote, time.monotonic())
        if session is None:
            target.audit.record(name, None, "login_failed", None, remote)
            return unauthorized()
        target.audit.record(session.user, session.role, "login", None, remote)
        resp = web.json_response({"user": session.user, "role": session.role, "csrf": session.csrf})
        resp.set_cookie(COOKIE, auth.cookie_of(session), httponly=True, samesite="Strict", secure=request.secure,
                        path="/")
        return resp

    async def logout(request: web.Request) -> web.Response:
        target.admin_auth.logout(request.cookies.get(COOKIE))
        resp = web.json_response({"logged_out": True})
        resp.del_cookie(COOKIE, path="/")
        return resp

    async def metrics(_: web.Request) -> web.Response:
        if registry is None:
            return error(404, "metrics are not served here")
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if target.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: draining or overloaded\n")

    async def calls(request: web.Request) -> web.Response:
        if (no := refused(request, "view")) is not None:
            return no
        infos = target.operator.calls()
        return web.json_response({"calls": [c.as_dict() for c in infos],
                                  "draining": target.operator.b2bua.draining})

    async def hangup(request: web.Request) -> web.Response:
        if (no := refused(request, "control")) is not None:
            return no
        announcement = None
        if request.can_read_body:
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                return error(400, "the body is not JSON")
            if not isinstance(body, dict) or not isinstance(body.get("announcement", ""), str | None):
                return error(400, 'the body is {"announcement": "<prompt name>"}')
            announcement = body.get("announcement") or None
        call_id = request.match_info["call_id"]
        if not target.act(lambda: target.operator.hangup(call_id, announcement)):
            return error(404, f"no call {call_id}")
        audit(request, "hangup", call_id, f"announcement={announcement}" if announcement else None)
        return web.json_response({"call": call_id, "hangup": True, "announcement": announcement})

    async def drain(request: web.Request) -> web.Response:
        if (no := refused(request, "control")) is not None:
            return no
        audit(request, "drain")
        target.request_drain()
        return web.json_response({"draining": True}, status=202)

    async def reload(request: web.Request) -> web.Response:
        if (no := refused(request, "control")) is not None:
            return no
        ok = bool(target.act(target.reload))  # as SIGHUP does: in the event loop, between two events
        audit(request, "reload", None, "ok" if ok else "refused")
        return web.json_response(target.last_reload, status=200 if ok else 422)

    async def bans(request: web.Request) -> web.Response:
        if (no := refused(request, "view")) is not None:
            return no
        return web.json_response({"bans": target.act(target.bans)})

    async def lift_ban(request: web.Request) -> web.Response:
        if (no := refused(request, "control")) is not None:
            return no
        host = request.match_info["host"]
        if not target.act(lambda: target.lift_ban(host)):
            return error(404, f"{host} is not banned")
        audit(request, "lift_ban", host)
        return web.json_response({"host": host, "lifted": True})

    app = web.Application(middlewares=[guard])
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/calls", calls)
    app.router.add_post("/api/calls/{call_id}/hangup", hangup)
    app.router.add_post("/api/drain", drain)
    app.router.add_post("/api/reload", reload)
    app.router.add_get("/api/bans", bans)
    app.router.add_post("/api/bans/{host}/lift", lift_ban)
    app.router.add_get("/api/recordings", recordings)
    app.router.add_get("/api/recordings/{rec_id}/audio", recording_audio)
    app.router.add_get("/api/audit", audit_rows)
    app.router.add_get("/api/abuse/events", abuse_events)
    app.router.add_post("/api/abuse/events/{event_id}/label", abuse_label)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    add_console(app, target, registry)
    return app


class AdminServer:
    """The admin application on its TCP address and its control socket."""

    def __init__(self) -> None:
        self._runners: list[web.AppRunner] = []
        self._tcp: web.AppRunner | None = None
        self.socket: Path | None = None

    async def serve_tcp(self, app: web.Application, address: str | None,
                        ssl_context: ssl.SSLContext | None = None) -> None:
        """Serve ``app`` on ``address`` (HOST:PORT), over TLS with ``ssl_context``, instead of where it was served
        before (a reload that moved it); None stops the TCP listener."""
        if self._tcp is not None:
            self._runners.remove(self._tcp)
            await self._cleanup(self._tcp)
            self._tcp = None
        if address is None:
            return
        host, _, port = address.rpartition(":")
        runner = await self._runner(app)
        try:
            await web.TCPSite(runner, host.strip("[]") or "127.0.0.1", int(port), ssl_context=ssl_context).start()
        except OSError:
            self._runners.remove(runner)
            await runner.cleanup()
            raise
        self._tcp = runner
        log.info("admin on %s://%s (/metrics, /healthz, /readyz, /api, the console)",
                 "https" if ssl_context else "http", address)

    async def serve_socket(self, app: web.Application, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # a socket an unclean stop left behind
        runner = await self._runner(app)
        old = os.umask(0o177)  # created 0600: no window in which others could connect
        try:
            await web.UnixSite(runner, str(path)).start()
        finally:
            os.umask(old)
        self.socket = path
        log.info("control socket %s", path)

    async def _runner(self, app: web.Application) -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        return runner

    @staticmethod
    async def _cleanup(runner: web.AppRunner) -> None:
        """Stop a listener: the console's open event streams end first (they would hold the shutdown)."""
        if (closing := runner.app.get(CLOSING)) is not None:
            closing.set()
        await runner.cleanup()

    async def close(self) -> None:
        for runner in self._runners:
            await self._cleanup(runner)
        self._runners.clear()
        if self.socket is not None:
            self.socket.unlink(missing_ok=True)
            self.socket = None


__all__ = ["AdminServer", "Controlled", "make_app"]
