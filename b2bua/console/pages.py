"""The operator console's pages: server-rendered (Jinja2, autoescaped), Korean first with English a click
away, a little JavaScript (``static/console.js``) for what updates by itself or acts: the live calls
(Server-Sent Events), the hang-up and label buttons, the system charts. No front-end build step.

Pages need a browser session (the admin listener's guard sends anyone else to ``/login``); what a page
offers follows the role: hang-up and label buttons for ``control``, players and downloads for ``listen``,
the audit page for ``audit``. The actions themselves are the JSON API's, checked there again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from ..admin_auth import PERMISSIONS
from ..admin_http import LANG_COOKIE, Controlled, allowed, who
from . import format as fmt
from .api import history_query, public_cdr, recording_labels
from .departments import overview
from .i18n import LANGUAGES, pick, situation_name, translate

HERE = Path(__file__).resolve().parent
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters.update(ts=fmt.ts, dur=fmt.dur, size=fmt.size, when=fmt.when)


def _lang(request: web.Request) -> str:
    return pick(request.query.get("lang"), request.cookies.get(LANG_COOKIE))


async def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    """A page in the request's language (``?lang=`` is remembered in a cookie), rendered on a worker thread:
    a hundred rows of history take ~10 ms of Python, which must not hold the event loop (the interpreter
    hands the loop the GIL back every few milliseconds)."""
    lang = _lang(request)
    user, role = who(request) if "who" in request else ("", "")
    page = await asyncio.to_thread(
        _ENV.get_template(template).render,
        lang=lang, other_lang=next(x for x in LANGUAGES if x != lang), user=user, role=role,
        can=PERMISSIONS.get(role, frozenset()), csrf=request.get("csrf", ""), path=request.path,
        t=lambda key, **kw: translate(lang, key, **kw), situation=lambda s: situation_name(lang, s), **context)
    resp = web.Response(text=page, content_type="text/html", status=status,
                        headers={"Cache-Control": "no-store", "Content-Security-Policy": CSP,
                                 "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"})
    if request.query.get("lang") in LANGUAGES:
        resp.set_cookie(LANG_COOKIE, lang, samesite="Strict", max_age=365 * 86400, path="/")
    return resp


#: scripts and styles from this server only; no inline script (the CSRF token is read from a meta tag)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def add_pages(app: web.Application, target: Controlled) -> None:
    for name in _ENV.list_templates():  # compiled now, not on the event loop at a page's first visit (~30 ms)
        _ENV.get_template(name)

    async def login(request: web.Request) -> web.Response:
        nxt = request.query.get("next", "/live")
        if not nxt.startswith("/") or nxt.startswith("//"):  # only a page of this console: no open redirect
            nxt = "/live"
        return await render(request, "login.html", next=nxt)

    async def root(_: web.Request) -> web.Response:
        raise web.HTTPFound("/live")

    async def live(request: web.Request) -> web.Response:
        return await render(request, "live.html", draining=target.operator.b2bua.draining)

    async def history(request: web.Request) -> web.Response:
        try:
            q = history_query(request.query)
        except ValueError:
            q, bad = history_query({}), True
        else:
            bad = False
        show = target.operator.show_numbers

        def read() -> tuple[list[dict[str, Any]], list[str]]:  # on a worker thread, rows shaped there too
            return [public_cdr(r, show) for r in target.history.search(q)], target.history.causes()

        rows, causes = await asyncio.to_thread(read)
        return await render(request, "history.html", rows=rows, causes=causes, bad=bad,
                      departments=[d.name for d in target.config.routing.departments], q=request.query,
                      limit=q.limit)

    async def call(request: web.Request) -> web.Response:
        try:
            row = await asyncio.to_thread(target.history.call, int(request.match_info["cdr_id"]))
        except ValueError:
            row = None
        if row is None:
            return await render(request, "error.html", status=404, message="error.not_found")
        lang = _lang(request)
        cdr = public_cdr(row, target.operator.show_numbers)
        return await render(request, "call.html", cdr=cdr, recordings=row["recordings"], events=row["abuse_events"],
                      labels={r["id"]: recording_labels(r["direction"], lang) for r in row["recordings"]})

    async def recordings(request: web.Request) -> web.Response:
        rows = await asyncio.to_thread(target.recordings.rows, request.query.get("call") or None)
        rows.sort(key=lambda r: r["start"], reverse=True)
        lang = _lang(request)
        return await render(request, "recordings.html", recordings=rows[:200],
                      labels={r["id"]: recording_labels(r["direction"], lang) for r in rows[:200]})

    async def abuse(request: web.Request) -> web.Response:
        rows = await asyncio.to_thread(target.abuse_events.events, 0.0, request.query.get("call") or None)
        unlabelled = request.query.get("label", "unlabelled") == "unlabelled"
        if unlabelled:
            rows = [r for r in rows if r["label"] == "unlabelled"]
        rows.reverse()  # newest first
        return await render(request, "abuse.html", events=rows[:200], unlabelled=unlabelled)

    async def departments(request: web.Request) -> web.Response:
        return await render(request, "departments.html", departments=overview(target.config, target.wall_clock()))

    async def system(request: web.Request) -> web.Response:
        return await render(request, "system.html", ready=target.ready, config=str(target.config.path),
                      reload=target.last_reload)

    async def audit_page(request: web.Request) -> web.Response:
        if not allowed(request, "audit"):
            return await render(request, "error.html", status=403, message="error.forbidden")
        rows = await asyncio.to_thread(target.audit.rows, 0.0)
        rows.reverse()
        return await render(request, "audit.html", rows=rows[:500])

    app.router.add_get("/login", login)
    app.router.add_get("/", root)
    app.router.add_get("/live", live)
    app.router.add_get("/history", history)
    app.router.add_get("/calls/{cdr_id}", call)
    app.router.add_get("/recordings", recordings)
    app.router.add_get("/abuse", abuse)
    app.router.add_get("/departments", departments)
    app.router.add_get("/system", system)
    app.router.add_get("/audit", audit_page)
    app.router.add_static("/static/", HERE / "static")


__all__ = ["CSP", "add_pages", "render"]
